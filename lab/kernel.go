package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/maps"
)

// FDBEntry is one kernel FDB entry as `bridge fdb show` prints it.
type FDBEntry struct {
	MAC       string
	Dst       netip.Addr // remote VTEP (vxlan devices), or invalid
	Self      bool       // NTF_SELF: the device's own table (vxlan: l2pop entries)
	Master    bool       // NTF_MASTER: the bridge's table
	Permanent bool
}

func (e FDBEntry) String() string {
	s := e.MAC
	if e.Dst.IsValid() {
		s += " dst " + e.Dst.String()
	}
	if e.Self {
		s += " self"
	}
	if e.Master {
		s += " master"
	}
	if e.Permanent {
		s += " permanent"
	}
	return s
}

// KernelFDB lists the FDB entries of dev in namespace ns (AF_BRIDGE),
// sorted by MAC then destination.
func KernelFDB(ns, dev string) ([]FDBEntry, error) {
	var out []FDBEntry
	err := Do(ns, func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		neighs, err := netlink.NeighList(l.Attrs().Index, unix.AF_BRIDGE)
		if err != nil {
			return err
		}
		for _, n := range neighs {
			e := FDBEntry{
				MAC:       n.HardwareAddr.String(),
				Self:      n.Flags&netlink.NTF_SELF != 0,
				Master:    n.Flags&netlink.NTF_MASTER != 0,
				Permanent: n.State&netlink.NUD_PERMANENT != 0,
			}
			if a, ok := netip.AddrFromSlice(n.IP); ok && n.IP != nil {
				e.Dst = a.Unmap()
			}
			out = append(out, e)
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].MAC != out[j].MAC {
			return out[i].MAC < out[j].MAC
		}
		return out[i].Dst.Less(out[j].Dst)
	})
	return out, err
}

// Neighbour is an IPv4 neighbour entry (`ip neigh show dev X`).
type Neighbour struct {
	IP        netip.Addr
	MAC       string
	Permanent bool
}

// Neighbours lists the IPv4 neighbour entries of dev in namespace ns.
func Neighbours(ns, dev string) ([]Neighbour, error) {
	var out []Neighbour
	err := Do(ns, func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		neighs, err := netlink.NeighList(l.Attrs().Index, unix.AF_INET)
		if err != nil {
			return err
		}
		for _, n := range neighs {
			a, _ := netip.AddrFromSlice(n.IP)
			out = append(out, Neighbour{IP: a.Unmap(), MAC: n.HardwareAddr.String(), Permanent: n.State&netlink.NUD_PERMANENT != 0})
		}
		return nil
	})
	return out, err
}

// LinkInfo returns a link of namespace ns by name.
func LinkInfo(ns, dev string) (netlink.Link, error) {
	var l netlink.Link
	err := Do(ns, func() (err error) {
		l, err = netlink.LinkByName(dev)
		return err
	})
	return l, err
}

// Links lists the link names of namespace ns.
func Links(ns string) ([]string, error) {
	var out []string
	err := Do(ns, func() error {
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			out = append(out, i.Name)
		}
		return err
	})
	return out, err
}

// BPFAttachments lists the BPF programs attached to dev in namespace ns:
// XDP, TCX ingress/egress and clsact (tc) filters, e.g. "xdp id 12".
func BPFAttachments(ns, dev string) ([]string, error) {
	var out []string
	err := Do(ns, func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			out = append(out, fmt.Sprintf("xdp id %d", x.ProgId))
		}
		for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
			res, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: at})
			if err != nil {
				continue // no TCX on this device
			}
			for _, p := range res.Programs {
				out = append(out, fmt.Sprintf("%s id %d", at, p.ID))
			}
		}
		for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
			fs, err := netlink.FilterList(l, parent)
			if err != nil {
				continue
			}
			for _, f := range fs {
				if bf, ok := f.(*netlink.BpfFilter); ok {
					out = append(out, fmt.Sprintf("tc %x bpf id %d", parent, bf.Id))
				}
			}
		}
		return nil
	})
	return out, err
}

// Maps opens the maps pinned by node's agent.
func (l *Lab) Maps(node string) (*maps.Set, error) {
	dir := l.PinDir(node)
	s, err := maps.OpenPinned(dir)
	if errors.Is(err, maps.ErrNotPinned) {
		// Pins may sit in a subdirectory of the instance's.
		if s2, err2 := maps.OpenPinned(filepath.Join(dir, "maps")); err2 == nil {
			return s2, nil
		}
	}
	return s, err
}

// Counters reads node's per-(program, reason) counters, all of them.
func (l *Lab) Counters(node string) ([]maps.Counter, error) {
	s, err := l.Maps(node)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return maps.ReadStats(s.Map(maps.Stats), true)
}

// PinsExist reports whether node's pin directory exists.
func (l *Lab) PinsExist(node string) bool {
	_, err := os.Stat(l.PinDir(node))
	return err == nil
}
