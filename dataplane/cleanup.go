package dataplane

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
)

// removeBPF detaches every program this instance attached and removes its
// pins: the pinned links (detaching TCX/XDP), clsact filters of the
// fallback path, and the pinned maps.
func removeBPF(opts Options, nl *netlink.Handle) error {
	att := &attacher{linkDir: opts.linkDir(), nl: nl, refreshed: map[string]bool{}}
	entries, err := os.ReadDir(opts.linkDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("list pinned links: %w", err)
	}
	for _, e := range entries {
		kind, ifname, ok := cutKind(e.Name())
		if !ok {
			continue
		}
		if err := att.detach(kind, ifname); err != nil {
			return err
		}
	}
	links, err := nl.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		fs, _ := att.clsactFilters(l.Attrs().Index, "vxdp_")
		for _, f := range fs {
			if err := nl.FilterDel(f); err != nil {
				return fmt.Errorf("remove clsact filter on %s: %w", l.Attrs().Name, err)
			}
		}
	}
	if err := os.RemoveAll(opts.PinDir()); err != nil {
		return fmt.Errorf("remove pins %s: %w", opts.PinDir(), err)
	}
	return nil
}

// cutKind splits a link pin name "<kind>_<ifname>".
func cutKind(pin string) (kind, ifname string, ok bool) {
	kind, ifname, ok = strings.Cut(pin, "_")
	_, tc := hookOf(kind)
	return kind, pinUnescape.Replace(ifname), ok && (tc || kind == xdpKind)
}

// Cleanup removes everything this instance installed: programs, pins, the
// bridges and vxlan devices it created (taps are left to their owner, but
// leave the deleted bridges), and its state directory. Devices it adopted
// (from Neutron's agent) are handed back as they were found, with their
// bridge ports and FDB, so the kernel keeps forwarding.
func Cleanup(opts Options) error {
	nl, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer nl.Close()
	if err := removeBPF(opts, nl); err != nil {
		return err
	}
	k := &kernel{nl: nl, owner: opts.Owner()}
	if _, err := k.handBackAdopted(); err != nil {
		return err
	}
	rec := &recorder{prov: map[string]string{}}
	if err := k.removeStale(nil, rec); err != nil {
		return err
	}
	// The tun_id rule serves every instance in this namespace: it goes
	// with the last one.
	if others, _ := os.ReadDir(filepath.Join(opts.BPFFS, "vxdp")); len(others) == 0 {
		if err := removeTunnelMetadata(); err != nil {
			return err
		}
	}
	if opts.StateDir != "" {
		if err := os.RemoveAll(opts.StateDir); err != nil {
			return fmt.Errorf("remove state dir: %w", err)
		}
	}
	return nil
}
