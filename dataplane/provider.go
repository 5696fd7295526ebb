package dataplane

// Provider networks (VLAN and flat) in Neutron's linuxbridge layout: the
// network's brq bridge holds the VLAN device <phys>.<vlan> on the physical
// interface its physical network maps to, or (flat) that interface itself,
// next to the taps. The BPF programs forward between taps and the physical
// interface directly; broadcasts and unknown destinations take the bridge.

import (
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
	ifname, ok := d.opts.PhysicalInterfaceMappings[n.PhysicalNetwork]
	if !ok {
		return fmt.Errorf("%s network %s: physical network %q has no interface on this host: add %s:<interface> to [linux_bridge] physical_interface_mappings%s",
			n.Kind(), networkName(n), n.PhysicalNetwork, n.PhysicalNetwork, d.mappingsWhere())
	}
	phys, err := d.kernel.linkByName(ifname)
	if err != nil {
		return fmt.Errorf("look up %s: %w", ifname, err)
	}
	if phys == nil {
		return fmt.Errorf("%s network %s: interface %s of physical network %q does not exist%s",
			n.Kind(), networkName(n), ifname, n.PhysicalNetwork, d.mappingsWhere())
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
		name := vlanDevName(phys.Attrs().Name, n.vlan)
		var err error
		if dev, err = k.linkByName(name); err != nil {
			return fmt.Errorf("look up %s: %w", name, err)
		}
		made := dev == nil
		if dev == nil {
			v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: phys.Attrs().Index, MTU: n.mtu},
				VlanId: int(n.vlan), VlanProtocol: netlink.VLAN_PROTOCOL_8021Q}
			if err := k.nl.LinkAdd(v); err != nil {
				return fmt.Errorf("create %s: %w", name, err)
			}
			if dev, err = k.nl.LinkByName(name); err != nil {
				return fmt.Errorf("look up %s: %w", name, err)
			}
			rec.op("kernel/vlan", "add", name)
		} else if v, ok := dev.(*netlink.Vlan); !ok || v.ParentIndex != phys.Attrs().Index || v.VlanId != int(n.vlan) {
			return fmt.Errorf("%s exists but is not VLAN %d on %s: rename or remove it", name, n.vlan, phys.Attrs().Name)
		}
		if err := k.claim(dev, made, adoption{}, rec); err != nil {
			return err
		}
		if err := disableIPv6(name); err != nil {
			return err
		}
		if dev.Attrs().MTU != n.mtu {
			if err := k.nl.LinkSetMTU(dev, n.mtu); err != nil {
				return fmt.Errorf("set %s mtu %d: %w", name, n.mtu, err)
			}
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
// arrive (provider_in), its segment device (segment_devs) and its
// networks entry fields.
func providerEntries(n *kernelNet, info *maps.NetInfo, w *bpfWant) {
	info.PhysIfindex = uint32(n.phys.Attrs().Index)
	info.Kind = maps.NetFlat
	if n.kind == state.NetworkVLAN {
		info.Kind, info.Vlan = maps.NetVLAN, n.vlan
	}
	w.providerIn[maps.NewProviderKey(n.phys.Attrs().Index, n.vlan)] = n.seg
	w.segmentDevs[uint32(n.dev.Attrs().Index)] = n.seg
}
