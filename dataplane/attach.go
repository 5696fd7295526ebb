package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Attach modes.
const (
	ModeAuto    = "auto"
	ModeNative  = "native"  // XDP in the driver
	ModeGeneric = "generic" // XDP on the skb path
	ModeTCX     = "tcx"
	ModeClsact  = "clsact"
)

// tcHook is a TC attachment point: which program, ingress or egress, the
// prefix of its link pins ("<kind>_<ifname>") and the name of its clsact
// filter in the pre-TCX fallback, so cleanup finds both without other
// state.
type tcHook struct {
	kind   string
	filter string
	egress bool
	prog   func(*Programs) *ebpf.Program
}

var (
	// portHook: frames a VM sends (TC ingress of its tap).
	portHook = tcHook{kind: "tc", filter: "vxdp_port", prog: func(p *Programs) *ebpf.Program { return p.Port }}
	// vxlanHook: frames the kernel decapsulated (TC ingress of vxlan-<VNI>).
	vxlanHook = tcHook{kind: "vxlan", filter: "vxdp_vxlan", prog: func(p *Programs) *ebpf.Program { return p.VXLAN }}
	// bridgeHook: frames a bridge hands to the host (TC ingress of brq…).
	bridgeHook = tcHook{kind: "bridge", filter: "vxdp_bridge", prog: func(p *Programs) *ebpf.Program { return p.Bridge }}
	// deliverHook: frames on their way into a VM (TC egress of its tap).
	deliverHook = tcHook{kind: "deliver", filter: "vxdp_deliver", egress: true, prog: func(p *Programs) *ebpf.Program { return p.Deliver }}
	// segmentHook: what the kernel received of a provider network (TC
	// ingress of its VLAN device or flat interface).
	segmentHook = tcHook{kind: "segment", filter: "vxdp_segment", prog: func(p *Programs) *ebpf.Program { return p.Segment }}
	tcHooks     = []tcHook{portHook, deliverHook, vxlanHook, segmentHook, bridgeHook}
)

// xdpKind prefixes the link pin of the uplink's XDP program.
const xdpKind = "xdp"

// hookOf returns the TC hook whose pins are named kind_….
func hookOf(kind string) (tcHook, bool) {
	for _, h := range tcHooks {
		if h.kind == kind {
			return h, true
		}
	}
	return tcHook{}, false
}

// attacher attaches programs through pinned bpf_links, so they keep
// forwarding after the agent exits, and swaps a restarted agent's freshly
// loaded program into an existing link atomically (no packet sees a gap).
type attacher struct {
	linkDir string
	nl      *netlink.Handle
	progs   *Programs
	xdpMode string
	tcMode  string
	// refreshed holds pins whose program was already swapped to progs.
	refreshed map[string]bool
	log       *slog.Logger
}

func (a *attacher) pinPath(kind, ifname string) string {
	return filepath.Join(a.linkDir, kind+"_"+pinEscape.Replace(ifname))
}

// bpffs refuses names with a dot, which VLAN devices have (eth1.99): a
// pin name spells '.' as "~2e" (and '~' as "~7e").
var (
	pinEscape   = strings.NewReplacer("~", "~7e", ".", "~2e")
	pinUnescape = strings.NewReplacer("~2e", ".", "~7e", "~")
)

// adopt opens a pinned link and reports whether it still targets ifindex.
// A link whose device went away (ifindex 0) or was recreated is unpinned.
func (a *attacher) adopt(path string, ifindex int) (link.Link, error) {
	l, err := link.LoadPinnedLink(path, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open pinned link %s: %w", path, err)
	}
	target, err := linkTarget(l)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("pinned link %s: %w", path, err)
	}
	if target != ifindex {
		err := l.Unpin()
		l.Close()
		if err != nil {
			return nil, fmt.Errorf("unpin stale link %s: %w", path, err)
		}
		return nil, nil
	}
	return l, nil
}

// linkTarget returns the ifindex an XDP or TCX link is attached to: 0 once
// its device is gone, -1 for other link types.
func linkTarget(l link.Link) (int, error) {
	info, err := l.Info()
	if err != nil {
		return 0, err
	}
	if x := info.XDP(); x != nil {
		return int(x.Ifindex), nil
	}
	if t := info.TCX(); t != nil {
		return int(t.Ifindex), nil
	}
	return -1, nil
}

// ensure attaches prog to ifindex via attach() unless a pinned link already
// does, in which case the link is switched to prog once per agent run.
// It reports whether anything was newly attached.
func (a *attacher) ensure(path string, ifindex int, prog *ebpf.Program, attach func() (link.Link, error)) (bool, error) {
	l, err := a.adopt(path, ifindex)
	if err != nil {
		return false, err
	}
	if l != nil {
		defer l.Close()
		if a.refreshed[path] {
			return false, nil
		}
		if err := l.Update(prog); err != nil {
			return false, fmt.Errorf("update pinned link %s: %w", path, err)
		}
		a.refreshed[path] = true
		return false, nil
	}
	l, err = attach()
	if err != nil {
		return false, err
	}
	defer l.Close()
	if err := os.MkdirAll(a.linkDir, 0o700); err != nil {
		return false, err
	}
	if err := l.Pin(path); err != nil {
		return false, fmt.Errorf("pin link %s: %w", path, err)
	}
	a.refreshed[path] = true
	return true, nil
}

// attachXDP attaches the uplink program to an interface frames arrive by
// from outside (the VTEP interface, a provider network's physical
// interface): in native mode a copy bound to the device, which can ask the
// driver for VLAN tags it stripped (falling back to the unbound program
// when the driver refuses bound programs), in generic mode the unbound one.
func (a *attacher) attachXDP(ifname string, ifindex int) (bool, error) {
	var modes []link.XDPAttachFlags
	switch a.xdpMode {
	case ModeNative:
		modes = []link.XDPAttachFlags{link.XDPDriverMode}
	case ModeGeneric:
		modes = []link.XDPAttachFlags{link.XDPGenericMode}
	default:
		modes = []link.XDPAttachFlags{link.XDPDriverMode, link.XDPGenericMode}
	}
	prog := a.progs.Uplink
	if modes[0] == link.XDPDriverMode {
		if bound, err := a.progs.boundUplink(ifindex); err == nil {
			prog = bound
		} else if a.log != nil {
			a.log.Warn("XDP program not bound to its device: VLAN tags the driver strips stay invisible to it (provider networks then take the kernel path on this interface)",
				"dev", ifname, "err", err)
		}
	}
	return a.ensure(a.pinPath(xdpKind, ifname), ifindex, prog, func() (link.Link, error) {
		var errs []error
		for _, m := range modes {
			p := prog
			if m == link.XDPGenericMode {
				p = a.progs.Uplink // a bound program cannot attach in generic mode
			}
			l, err := link.AttachXDP(link.XDPOptions{Program: p, Interface: ifindex, Flags: m})
			if err == nil {
				return l, nil
			}
			errs = append(errs, err)
		}
		return nil, fmt.Errorf("attach xdp to %s: %w", ifname, errors.Join(errs...))
	})
}

// attachTC attaches the program of hook h to a device's TC ingress: TCX
// where the kernel has it, clsact otherwise.
func (a *attacher) attachTC(h tcHook, ifname string, ifindex int) (bool, error) {
	prog := h.prog(a.progs)
	if a.tcMode != ModeClsact {
		attach := ebpf.AttachTCXIngress
		if h.egress {
			attach = ebpf.AttachTCXEgress
		}
		added, err := a.ensure(a.pinPath(h.kind, ifname), ifindex, prog, func() (link.Link, error) {
			return link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: attach})
		})
		if err == nil || a.tcMode == ModeTCX || !errors.Is(err, ebpf.ErrNotSupported) {
			if err != nil {
				err = fmt.Errorf("attach tcx to %s: %w", ifname, err)
			}
			return added, err
		}
	}
	return a.attachClsact(h, ifname, ifindex)
}

// attachClsact is the pre-TCX fallback: a direct-action filter on the
// clsact ingress hook, replaced in place on every agent run.
func (a *attacher) attachClsact(h tcHook, ifname string, ifindex int) (bool, error) {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	if err := a.nl.QdiscReplace(qdisc); err != nil {
		return false, fmt.Errorf("add clsact to %s: %w", ifname, err)
	}
	existing, err := a.clsactFilters(ifindex, h.filter)
	if err != nil {
		return false, err
	}
	parent := uint32(netlink.HANDLE_MIN_INGRESS)
	if h.egress {
		parent = netlink.HANDLE_MIN_EGRESS
	}
	filter := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: ifindex, Parent: parent,
			Handle: 1, Priority: 1, Protocol: unix.ETH_P_ALL},
		Fd:           h.prog(a.progs).FD(),
		Name:         h.filter,
		DirectAction: true,
	}
	key := "clsact_" + h.kind + "_" + ifname
	if len(existing) > 0 && a.refreshed[key] {
		return false, nil
	}
	if err := a.nl.FilterReplace(filter); err != nil {
		return false, fmt.Errorf("attach clsact filter to %s: %w", ifname, err)
	}
	a.refreshed[key] = true
	return len(existing) == 0, nil
}

// clsactFilters lists the clsact filters of ours, ingress and egress, on a
// device whose name starts with prefix ("vxdp_" for all of them).
func (a *attacher) clsactFilters(ifindex int, prefix string) ([]*netlink.BpfFilter, error) {
	l, err := a.nl.LinkByIndex(ifindex)
	if err != nil {
		return nil, err
	}
	var out []*netlink.BpfFilter
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		filters, err := a.nl.FilterList(l, parent)
		if err != nil {
			return nil, nil // no clsact qdisc
		}
		for _, f := range filters {
			if bf, ok := f.(*netlink.BpfFilter); ok && strings.HasPrefix(bf.Name, prefix) {
				out = append(out, bf)
			}
		}
	}
	return out, nil
}

// pinned lists the device names with a pinned link of kind.
func (a *attacher) pinned(kind string) ([]string, error) {
	entries, err := os.ReadDir(a.linkDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if name, ok := strings.CutPrefix(e.Name(), kind+"_"); ok {
			out = append(out, pinUnescape.Replace(name))
		}
	}
	return out, nil
}

// pinnedTarget returns the ifindex the pinned link of kind on ifname is
// attached to: 0 when its device is gone, -1 when there is no pin.
func (a *attacher) pinnedTarget(kind, ifname string) (int, error) {
	l, err := link.LoadPinnedLink(a.pinPath(kind, ifname), nil)
	if errors.Is(err, os.ErrNotExist) {
		return -1, nil
	}
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return linkTarget(l)
}

// detach removes the pinned link of kind ("tc", "vxlan", "bridge", "xdp")
// on ifname, which detaches the program, and the hook's clsact filter on
// the device.
func (a *attacher) detach(kind, ifname string) error {
	path := a.pinPath(kind, ifname)
	l, err := link.LoadPinnedLink(path, nil)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		// Unreadable pin: removing the file still drops the reference.
		if rmErr := os.Remove(path); rmErr != nil {
			return fmt.Errorf("remove pin %s: %w", path, errors.Join(err, rmErr))
		}
	default:
		err := l.Unpin()
		l.Close()
		if err != nil {
			return fmt.Errorf("unpin %s: %w", path, err)
		}
	}
	delete(a.refreshed, path)
	if h, ok := hookOf(kind); ok && a.nl != nil {
		if l, err := a.nl.LinkByName(ifname); err == nil {
			fs, _ := a.clsactFilters(l.Attrs().Index, h.filter)
			for _, f := range fs {
				if err := a.nl.FilterDel(f); err != nil {
					return fmt.Errorf("remove clsact filter on %s: %w", ifname, err)
				}
			}
			delete(a.refreshed, "clsact_"+kind+"_"+ifname)
		}
	}
	return nil
}
