package dataplane

// Provider networks (VLAN and flat) in Neutron's linuxbridge layout: the
// network's brq bridge holds the VLAN device <phys>.<vlan> on the physical
// interface its physical network maps to, or (flat) that interface itself,
// next to the taps. The BPF programs forward between taps and the physical
// interface directly; broadcasts and unknown destinations take the bridge.

import (
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/maps"
	"github.com/vxdp/vxdp/state"
)

// maxIfname is the longest interface name the kernel takes (IFNAMSIZ - 1).
const maxIfname = 15

// vlanDevName is the name of the VLAN device of vlan on phys: Neutron's
// "<phys>.<vlan>", the interface name shortened to fit.
func vlanDevName(phys string, vlan uint16) string {
	suffix := "." + strconv.Itoa(int(vlan))
	if len(phys)+len(suffix) > maxIfname {
		phys = phys[:maxIfname-len(suffix)]
	}
	return phys + suffix
}

// providerNet resolves a provider network's physical interface and BPF
// segment from the agent's physical_interface_mappings.
func (d *Dataplane) providerNet(n state.Network, kn *kernelNet) error {
	phys, err := d.physOf(n)
	if err != nil {
		return err
	}
	if kn.seg, err = d.segment(n); err != nil {
		return err
	}
	kn.phys, kn.vlan = phys, n.VLAN
	if kn.mtu == 0 || kn.mtu > phys.Attrs().MTU {
		kn.mtu = phys.Attrs().MTU // no encapsulation: the physical network's MTU
	}
	return nil
}

// segment is a network's key in the BPF maps: its VNI, or its provider
// segment, whose physical network index is the mapping's rank by name.
func (d *Dataplane) segment(n state.Network) (uint32, error) {
	if !n.Provider() {
		return n.VNI, nil
	}
	names := make([]string, 0, len(d.opts.PhysicalInterfaceMappings))
	for name := range d.opts.PhysicalInterfaceMappings {
		names = append(names, name)
	}
	slices.Sort(names)
	i := slices.Index(names, n.PhysicalNetwork)
	if i < 0 {
		return 0, fmt.Errorf("physical network %q is not mapped", n.PhysicalNetwork)
	}
	return maps.ProviderSegment(i, n.VLAN)
}

func (d *Dataplane) mappingsWhere() string {
	if d.opts.MappingsSource == "" {
		return ""
	}
	return " (" + d.opts.MappingsSource + ")"
}

func networkName(n state.Network) string {
	if n.Name != "" {
		return n.Name + " (" + n.ID + ")"
	}
	return n.ID
}

// ensureProvider puts a provider network's device on its bridge: the VLAN
// device on the physical interface (created, or adopted when Neutron's
// agent made it), or the physical interface itself for a flat network.
func (k *kernel) ensureProvider(n *kernelNet, br netlink.Link, rec *recorder) error {
	phys := n.phys
	// Neutron's agent brings the physical interface up; so do we.
	if err := k.up(phys); err != nil {
		return err
	}
	var dev netlink.Link
	switch n.kind {
	case state.NetworkVLAN:
		var err error
		if dev, err = k.ensureVLANDev(n, rec); err != nil {
			return err
		}
	case state.NetworkFlat:
		dev = phys
		if err := k.flatUsable(phys, br); err != nil {
			return err
		}
	}
	if err := k.enslave(dev, br, 0, rec); err != nil {
		return err
	}
	if err := k.up(br); err != nil {
		return err
	}
	n.bridge, n.dev = br, dev
	return nil
}

// ensureVLANDev creates or adopts the VLAN device <phys>.<vlan>: the
// kernel's 802.1Q device, or, on a kernel without them, a veth pair of
// that name whose far end (vlanPeerName) the segment program tags and
// untags for. An existing device of the name must be one of these.
func (k *kernel) ensureVLANDev(n *kernelNet, rec *recorder) (netlink.Link, error) {
	phys := n.phys
	name, peerName := vlanDevName(phys.Attrs().Name, n.vlan), vlanPeerName(phys.Attrs().Name, n.vlan)
	dev, err := k.linkByName(name)
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", name, err)
	}
	made := dev == nil
	switch v := dev.(type) {
	case nil:
		dev, err = k.addVLANDev(n, name, peerName, rec)
		if err != nil {
			return nil, err
		}
	case *netlink.Vlan:
		if v.ParentIndex != phys.Attrs().Index || v.VlanId != int(n.vlan) {
			return nil, fmt.Errorf("%s exists but is not VLAN %d on %s: rename or remove it", name, n.vlan, phys.Attrs().Name)
		}
	case *netlink.Veth:
		if v.PeerName != "" && v.PeerName != peerName {
			return nil, fmt.Errorf("%s exists but is a veth to %s, not vxdp's VLAN %d on %s: rename or remove it", name, v.PeerName, n.vlan, phys.Attrs().Name)
		}
		if k.ownership(dev) == foreign {
			return nil, fmt.Errorf("%s exists but is a veth vxdp did not make: rename or remove it", name)
		}
	default:
		return nil, fmt.Errorf("%s exists but is a %s, not VLAN %d on %s: rename or remove it", name, dev.Type(), n.vlan, phys.Attrs().Name)
	}
	if err := k.claim(dev, made, adoption{}, rec); err != nil {
		return nil, err
	}
	if _, emulated := dev.(*netlink.Veth); emulated || made && dev.Type() == "veth" {
		if n.peer, err = k.nl.LinkByName(peerName); err != nil {
			return nil, fmt.Errorf("look up %s: %w", peerName, err)
		}
		if err := k.claim(n.peer, made, adoption{}, rec); err != nil {
			return nil, err
		}
		if err := disableIPv6(peerName); err != nil {
			return nil, err
		}
		if err := k.up(n.peer); err != nil {
			return nil, err
		}
	}
	if err := disableIPv6(name); err != nil {
		return nil, err
	}
	if dev.Attrs().MTU != n.mtu {
		if err := k.nl.LinkSetMTU(dev, n.mtu); err != nil {
			return nil, fmt.Errorf("set %s mtu %d: %w", name, n.mtu, err)
		}
	}
	return dev, nil
}

// addVLANDev creates the VLAN device: an 802.1Q device where the kernel
// has them, a veth pair otherwise (the kernel says EOPNOTSUPP).
func (k *kernel) addVLANDev(n *kernelNet, name, peerName string, rec *recorder) (netlink.Link, error) {
	v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: n.phys.Attrs().Index, MTU: n.mtu},
		VlanId: int(n.vlan), VlanProtocol: netlink.VLAN_PROTOCOL_8021Q}
	err := k.nl.LinkAdd(v)
	kind := "vlan"
	if errors.Is(err, unix.EOPNOTSUPP) {
		kind = "veth"
		err = k.nl.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: n.mtu}, PeerName: peerName, PeerMTU: uint32(n.mtu)})
	}
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	dev, err := k.nl.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", name, err)
	}
	rec.op("kernel/"+kind, "add", name)
	return dev, nil
}

// vlanPeerName names the far end of an emulated VLAN device: "v<vlan>.<phys>".
func vlanPeerName(phys string, vlan uint16) string {
	prefix := "v" + strconv.Itoa(int(vlan)) + "."
	if len(prefix)+len(phys) > maxIfname {
		phys = phys[:maxIfname-len(prefix)]
	}
	return prefix + phys
}

// flatUsable refuses a physical interface a flat network cannot take
// whole: the VTEP interface, one with addresses (the host would lose them
// into the bridge), or one on another bridge.
func (k *kernel) flatUsable(phys, br netlink.Link) error {
	name := phys.Attrs().Name
	if k.uplink != nil && phys.Attrs().Index == k.uplink.Attrs().Index {
		return fmt.Errorf("flat network on %s: it is the VTEP interface (local_ip); map the physical network to another interface", name)
	}
	addrs, err := k.nl.AddrList(phys, unix.AF_UNSPEC)
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", name, err)
	}
	for _, a := range addrs {
		if a.IP.IsGlobalUnicast() || a.IP.IsLoopback() || a.IP.To4() != nil {
			return fmt.Errorf("flat network on %s: it has address %s, which a bridge port would take from the host: move it off %s (or use a VLAN network)", name, a.IPNet, name)
		}
	}
	if m := phys.Attrs().MasterIndex; m != 0 && m != br.Attrs().Index {
		master, _ := k.nl.LinkByIndex(m)
		owner := strconv.Itoa(m)
		if master != nil {
			owner = master.Attrs().Name
		}
		return fmt.Errorf("flat network on %s: it is already on %s: one flat network per interface", name, owner)
	}
	return nil
}

// providerEntries are a provider network's BPF entries: how its frames
// arrive (provider_in), the far end of its emulated VLAN device
// (segment_devs) and its networks entry fields.
func providerEntries(n *kernelNet, info *maps.NetInfo, w *bpfWant) {
	info.PhysIfindex = uint32(n.phys.Attrs().Index)
	info.Kind = maps.NetFlat
	if n.kind == state.NetworkVLAN {
		info.Kind, info.Vlan = maps.NetVLAN, n.vlan
	}
	w.providerIn[maps.NewProviderKey(n.phys.Attrs().Index, n.vlan)] = n.seg
	if n.peer != nil {
		info.Flags |= maps.NetVLANEmulated
		info.PeerIfindex = uint32(n.peer.Attrs().Index)
		w.segmentDevs[info.PeerIfindex] = n.seg
	}
}

// physOf is the interface a provider network's physical network maps to.
func (d *Dataplane) physOf(n state.Network) (netlink.Link, error) {
	ifname, ok := d.opts.PhysicalInterfaceMappings[n.PhysicalNetwork]
	if !ok {
		return nil, fmt.Errorf("%s network %s: physical network %q has no interface on this host: add %s:<interface> to [linux_bridge] physical_interface_mappings%s",
			n.Kind(), networkName(n), n.PhysicalNetwork, n.PhysicalNetwork, d.mappingsWhere())
	}
	phys, err := d.kernel.linkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", ifname, err)
	}
	if phys == nil {
		return nil, fmt.Errorf("%s network %s: interface %s of physical network %q does not exist%s",
			n.Kind(), networkName(n), ifname, n.PhysicalNetwork, d.mappingsWhere())
	}
	return phys, nil
}

// UnservableNetwork is a network this host cannot carry, and why.
type UnservableNetwork struct {
	Network string   `json:"network"`
	Reason  string   `json:"reason"`
	Ports   []string `json:"ports"` // its local ports, left pending (DOWN)
}

// servable is want without the provider networks this host cannot carry
// (no mapping for their physical network, or its interface missing):
// one network bound here by mistake must not stop every other tenant's
// changes. Their local ports are pending, so they are reported DOWN, and
// the reason is recorded for `vxdp status`.
func (d *Dataplane) servable(want *state.Desired, rec *recorder) *state.Desired {
	bad := map[string]int{}
	for _, n := range want.Networks {
		if !n.Provider() {
			continue
		}
		if _, err := d.physOf(n); err != nil {
			d.log.Error("network not served on this host; the rest is applied", "network", n.ID, "err", err)
			bad[n.ID] = len(rec.unservable)
			rec.unservable = append(rec.unservable, UnservableNetwork{Network: networkName(n), Reason: err.Error(), Ports: []string{}})
		}
	}
	if len(bad) == 0 {
		return want
	}
	out := *want
	out.Networks = slices.DeleteFunc(slices.Clone(want.Networks), func(n state.Network) bool { _, ok := bad[n.ID]; return ok })
	out.LocalPorts = slices.DeleteFunc(slices.Clone(want.LocalPorts), func(p state.LocalPort) bool {
		i, ok := bad[p.NetworkID]
		if ok {
			rec.pending = append(rec.pending, portName(p))
			rec.unservable[i].Ports = append(rec.unservable[i].Ports, portName(p))
		}
		return ok
	})
	out.RemotePorts = slices.DeleteFunc(slices.Clone(want.RemotePorts), func(p state.RemotePort) bool { _, ok := bad[p.NetworkID]; return ok })
	return &out
}
