package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/state"
)

// vxlanOverhead is what VXLAN over IPv4 adds: outer IP, UDP, VXLAN and
// inner Ethernet headers. A 1500 underlay carries a 1450 tenant MTU; over
// IPv6, 20 more (1430).
const vxlanOverhead = 50

// overhead is VXLAN's overhead over the underlay of local.
func overhead(local netip.Addr) int {
	if local.Is6() {
		return vxlanOverhead + 20
	}
	return vxlanOverhead
}

// kernel keeps the Neutron linuxbridge objects correct: the brq bridge, the
// vxlan-<VNI> device, the taps enslaved to the bridge, the l2pop FDB entries
// and proxy-ARP neighbours. It works in the caller's network namespace.
type kernel struct {
	nl        *netlink.Handle
	owner     string // link alias marking objects this agent instance owns
	uplink    netlink.Link
	localIP   netip.Addr
	vxlanPort int
	// arpProxy sets the vxlan device's proxy flag (Neutron's [vxlan]
	// arp_responder): the kernel then answers ARP from the l2pop neighbour
	// entries, but drops every other ARP instead of flooding it.
	arpProxy bool
	ttl      uint8 // 0: the kernel default
	log      *slog.Logger
}

// kernelNet is what the kernel needs to know of one network.
type kernelNet struct {
	id   string
	kind string // state.NetworkVXLAN, NetworkVLAN or NetworkFlat
	vni  uint32 // VXLAN
	// seg is the network's key in the BPF maps: the VNI, or the provider
	// segment (maps.ProviderSegment).
	seg  uint32
	vlan uint16 // VLAN
	mtu  int
	// phys is a provider network's physical interface.
	phys   netlink.Link
	bridge netlink.Link
	// dev is the network's device on its bridge: the vxlan device, the
	// VLAN device on phys, or phys itself (flat).
	dev netlink.Link
	// vxlan is dev for a VXLAN network, nil otherwise.
	vxlan netlink.Link
	// peer is the far end of an emulated VLAN device (a veth pair standing
	// in for <phys>.<vlan> where the kernel has no 802.1Q devices).
	peer netlink.Link
}

func (k *kernel) linkByName(name string) (netlink.Link, error) {
	l, err := k.nl.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil, nil
	}
	return l, err
}

// ensureNetwork creates or adopts the bridge and vxlan device of a network.
// Existing objects with the right names are adopted, so a node migrating
// from Neutron's agent keeps its bridges and vxlan devices and loses no
// packet; a vxlan device is recreated only when it cannot carry the
// network (see reuseVXLAN).
func (k *kernel) ensureNetwork(n *kernelNet, rec *recorder) error {
	br, err := k.ensureBridge(n.id, rec)
	if err != nil {
		return err
	}
	if n.kind != state.NetworkVXLAN {
		return k.ensureProvider(n, br, rec)
	}
	return k.ensureVXLAN(n, br, rec)
}

// ensureBridge creates or adopts the brq bridge of network id.
func (k *kernel) ensureBridge(id string, rec *recorder) (netlink.Link, error) {
	brName := state.BridgeName(id)
	br, err := k.linkByName(brName)
	if err != nil {
		return nil, fmt.Errorf("look up bridge %s: %w", brName, err)
	}
	madeBridge := br == nil
	if br == nil {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = brName
		if err := k.nl.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
			return nil, fmt.Errorf("create bridge %s: %w", brName, err)
		}
		if br, err = k.nl.LinkByName(brName); err != nil {
			return nil, fmt.Errorf("look up bridge %s: %w", brName, err)
		}
		rec.op("kernel/bridge", "add", brName)
	} else if _, ok := br.(*netlink.Bridge); !ok {
		return nil, fmt.Errorf("%s exists but is a %s, not a bridge: rename or remove it", brName, br.Type())
	}
	if err := k.claim(br, madeBridge, adoption{}, rec); err != nil {
		return nil, err
	}
	return br, disableIPv6(brName)
}

// ensureVXLAN creates or adopts the vxlan device of a VXLAN network and
// puts it on the network's bridge.
func (k *kernel) ensureVXLAN(n *kernelNet, br netlink.Link, rec *recorder) error {
	vxName := state.VXLANName(n.vni)
	vx, err := k.linkByName(vxName)
	if err != nil {
		return fmt.Errorf("look up %s: %w", vxName, err)
	}
	if vx != nil {
		reuse, err := k.reuseVXLAN(vx, n.vni, rec)
		if err != nil {
			return err
		}
		if !reuse {
			if err := k.nl.LinkDel(vx); err != nil {
				return fmt.Errorf("replace %s: %w", vxName, err)
			}
			rec.op("kernel/vxlan", "remove", vxName)
			vx = nil
		} else if vx, err = k.nl.LinkByName(vxName); err != nil {
			return fmt.Errorf("look up %s: %w", vxName, err)
		}
	}
	madeVXLAN := vx == nil
	if vx == nil {
		if err := k.addVXLAN(vxName, n.vni, n.mtu); err != nil {
			return fmt.Errorf("create %s: %w", vxName, err)
		}
		if vx, err = k.nl.LinkByName(vxName); err != nil {
			return fmt.Errorf("look up %s: %w", vxName, err)
		}
		rec.op("kernel/vxlan", "add", vxName)
	}
	if err := k.claim(vx, madeVXLAN, adoption{}, rec); err != nil {
		return err
	}
	if err := disableIPv6(vxName); err != nil {
		return err
	}
	if vx.Attrs().MTU != n.mtu {
		if err := k.nl.LinkSetMTU(vx, n.mtu); err != nil {
			return fmt.Errorf("set %s mtu %d: %w", vxName, n.mtu, err)
		}
		rec.op("kernel/vxlan", "update", vxName)
	}
	// One bridge, one VNI: a vxlan device left from an earlier VNI of this
	// network leaves the bridge before a new one joins it.
	if vx.Attrs().MasterIndex != br.Attrs().Index {
		all, err := k.nl.LinkList()
		if err != nil {
			return fmt.Errorf("list links: %w", err)
		}
		for _, l := range slavesOf(all, br) {
			if l.Type() == "vxlan" {
				if err := k.release(l, rec); err != nil {
					return err
				}
			}
		}
	}
	if err := k.enslave(vx, br, 0, rec); err != nil {
		return err
	}
	if err := k.up(br); err != nil {
		return err
	}
	n.bridge, n.vxlan, n.dev = br, vx, vx
	return nil
}

// vxlanAgeing is the FDB ageing time of the vxlan device, as in the seed.
const vxlanAgeing = 300

// addVXLAN creates the vxlan device of a network the way Neutron's
// linuxbridge agent does with l2population: `ip link add vxlan-<VNI> type
// vxlan id VNI dev <uplink> local <local_ip> dstport 8472 nolearning
// ageing 300 noudpcsum` (`proxy` too with arpProxy). A raw request, because netlink.LinkAdd cannot
// express noudpcsum (it omits IFLA_VXLAN_UDP_CSUM=0 and the kernel then
// defaults to checksums on).
func (k *kernel) addVXLAN(name string, vni uint32, mtu int) error {
	var port [2]byte
	binary.BigEndian.PutUint16(port[:], uint16(k.vxlanPort))
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(mtu))))
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("vxlan"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	data.AddRtAttr(nl.IFLA_VXLAN_ID, nl.Uint32Attr(vni))
	data.AddRtAttr(nl.IFLA_VXLAN_LINK, nl.Uint32Attr(uint32(k.uplink.Attrs().Index)))
	if k.localIP.Is6() {
		// Over IPv6 the UDP checksum stays on both ways (RFC 6935), as
		// the kernel's default is.
		data.AddRtAttr(nl.IFLA_VXLAN_LOCAL6, k.localIP.AsSlice())
		data.AddRtAttr(nl.IFLA_VXLAN_UDP_ZERO_CSUM6_TX, []byte{0})
		data.AddRtAttr(nl.IFLA_VXLAN_UDP_ZERO_CSUM6_RX, []byte{0})
	} else {
		data.AddRtAttr(nl.IFLA_VXLAN_LOCAL, k.localIP.AsSlice())
		data.AddRtAttr(nl.IFLA_VXLAN_UDP_CSUM, []byte{0})
	}
	data.AddRtAttr(nl.IFLA_VXLAN_LEARNING, []byte{0})
	data.AddRtAttr(nl.IFLA_VXLAN_PROXY, boolByte(k.arpProxy))
	data.AddRtAttr(nl.IFLA_VXLAN_AGEING, nl.Uint32Attr(vxlanAgeing))
	data.AddRtAttr(nl.IFLA_VXLAN_PORT, port[:])
	data.AddRtAttr(nl.IFLA_VXLAN_TTL, []byte{k.ttl})
	req.AddData(info)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

func boolByte(b bool) []byte {
	if b {
		return []byte{1}
	}
	return []byte{0}
}

func (k *kernel) up(l netlink.Link) error {
	if l.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := k.nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", l.Attrs().Name, err)
	}
	return nil
}

// enslave puts l on bridge br (with the network MTU when mtu > 0) and up.
func (k *kernel) enslave(l, br netlink.Link, mtu int, rec *recorder) error {
	name := l.Attrs().Name
	if l.Attrs().MasterIndex != br.Attrs().Index {
		if err := k.nl.LinkSetMaster(l, br); err != nil {
			return fmt.Errorf("enslave %s to %s: %w", name, br.Attrs().Name, err)
		}
		rec.op("kernel/slave", "add", name+"@"+br.Attrs().Name)
	}
	if mtu > 0 && l.Attrs().MTU != mtu {
		if err := k.nl.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("set %s mtu %d: %w", name, mtu, err)
		}
	}
	return k.up(l)
}

// slavesOf picks the links enslaved to bridge br out of all.
func slavesOf(all []netlink.Link, br netlink.Link) []netlink.Link {
	var out []netlink.Link
	for _, l := range all {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			out = append(out, l)
		}
	}
	return out
}

// release takes l off its bridge.
func (k *kernel) release(l netlink.Link, rec *recorder) error {
	if err := k.nl.LinkSetNoMaster(l); err != nil {
		return fmt.Errorf("release %s from its bridge: %w", l.Attrs().Name, err)
	}
	rec.op("kernel/slave", "remove", l.Attrs().Name)
	return nil
}

// releaseSlaves takes off each network's bridge every link that is neither
// its vxlan device nor the tap of one of its present ports, and returns
// their names.
func (k *kernel) releaseSlaves(nets map[string]*kernelNet, present []localPort, rec *recorder) ([]string, error) {
	belongs := map[int]bool{}
	for _, n := range nets {
		belongs[n.dev.Attrs().Index] = true
	}
	for _, p := range present {
		belongs[p.ifindex()] = true
	}
	all, err := k.nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var released []string
	for _, n := range nets {
		for _, l := range slavesOf(all, n.bridge) {
			if belongs[l.Attrs().Index] {
				continue
			}
			if err := k.release(l, rec); err != nil {
				return nil, err
			}
			released = append(released, l.Attrs().Name)
		}
	}
	return released, nil
}

// fdbDst is one kernel FDB entry of a vxlan device: MAC → remote VTEP.
type fdbDst struct {
	mac state.MAC
	dst netip.Addr
}

// syncFDB makes the `self` entries of a vxlan device exactly want: the
// l2pop flood entries (zero MAC, one per remote VTEP) and one unicast entry
// per remote port. A unicast MAC that moves is replaced in place, so it
// never points at two VTEPs at once.
func (k *kernel) syncFDB(vx netlink.Link, want map[fdbDst]state.Source, rec *recorder) error {
	idx := vx.Attrs().Index
	have, err := k.nl.NeighList(idx, unix.AF_BRIDGE)
	if err != nil {
		return fmt.Errorf("list fdb of %s: %w", vx.Attrs().Name, err)
	}
	existing := map[fdbDst]bool{}
	for _, n := range have {
		if n.Flags&netlink.NTF_SELF == 0 || n.IP == nil || len(n.HardwareAddr) != 6 {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		existing[fdbDst{state.MAC(n.HardwareAddr), ip.Unmap()}] = true
	}
	entry := func(e fdbDst) *netlink.Neigh {
		return &netlink.Neigh{
			LinkIndex:    idx,
			Family:       unix.AF_BRIDGE,
			Flags:        netlink.NTF_SELF,
			State:        netlink.NUD_PERMANENT,
			HardwareAddr: net.HardwareAddr(e.mac[:]),
			IP:           net.IP(e.dst.AsSlice()),
		}
	}
	// Unicast MACs whose VTEP changed: replace the entry in place.
	moved := map[state.MAC]bool{}
	for e := range want {
		if existing[e] {
			continue
		}
		var err error
		if !e.mac.IsZero() && hasMAC(existing, e.mac) {
			err = k.nl.NeighSet(entry(e))
			moved[e.mac] = true
			rec.op("kernel/fdb", "update", e.mac.String()+" dst "+e.dst.String())
		} else {
			err = k.nl.NeighAppend(entry(e))
			rec.op("kernel/fdb", "add", e.mac.String()+" dst "+e.dst.String())
		}
		if err != nil {
			return fmt.Errorf("add fdb %s dst %s on %s: %w", e.mac, e.dst, vx.Attrs().Name, err)
		}
	}
	for e := range existing {
		if _, ok := want[e]; ok {
			continue
		}
		err := k.nl.NeighDel(entry(e))
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("delete fdb %s dst %s on %s: %w", e.mac, e.dst, vx.Attrs().Name, err)
		}
		if !moved[e.mac] {
			rec.op("kernel/fdb", "remove", e.mac.String()+" dst "+e.dst.String())
		}
	}
	return nil
}

func hasMAC(set map[fdbDst]bool, mac state.MAC) bool {
	for e := range set {
		if e.mac == mac {
			return true
		}
	}
	return false
}

// syncProxyARP makes the permanent IPv4 neighbours of a vxlan device exactly
// want, so the device (created with proxy on) answers ARP for remote ports.
func (k *kernel) syncProxyARP(vx netlink.Link, want map[netip.Addr]state.MAC, rec *recorder) error {
	idx := vx.Attrs().Index
	have, err := k.nl.NeighList(idx, unix.AF_INET)
	if err != nil {
		return fmt.Errorf("list neighbours of %s: %w", vx.Attrs().Name, err)
	}
	existing := map[netip.Addr]state.MAC{}
	for _, n := range have {
		ip, ok := netip.AddrFromSlice(n.IP)
		if n.State&netlink.NUD_PERMANENT == 0 || !ok || len(n.HardwareAddr) != 6 {
			continue
		}
		existing[ip.Unmap()] = state.MAC(n.HardwareAddr)
	}
	neigh := func(ip netip.Addr, mac state.MAC) *netlink.Neigh {
		return &netlink.Neigh{LinkIndex: idx, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
			IP: net.IP(ip.AsSlice()), HardwareAddr: net.HardwareAddr(mac[:])}
	}
	for ip, mac := range want {
		old, ok := existing[ip]
		if ok && old == mac {
			continue
		}
		if err := k.nl.NeighSet(neigh(ip, mac)); err != nil {
			return fmt.Errorf("set proxy neighbour %s on %s: %w", ip, vx.Attrs().Name, err)
		}
		rec.op("kernel/neigh", map[bool]string{true: "update", false: "add"}[ok], ip.String()+" lladdr "+mac.String())
	}
	for ip, mac := range existing {
		if _, ok := want[ip]; ok {
			continue
		}
		if err := k.nl.NeighDel(neigh(ip, mac)); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("delete proxy neighbour %s on %s: %w", ip, vx.Attrs().Name, err)
		}
		rec.op("kernel/neigh", "remove", ip.String())
	}
	return nil
}

// ownedLinks lists the links this instance owns.
func (k *kernel) ownedLinks() ([]netlink.Link, error) {
	all, err := k.nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	return slices.DeleteFunc(all, func(l netlink.Link) bool { return !k.isOwned(l) }), nil
}

// removeStale deletes owned bridges and vxlan devices not in keep (names).
// Vxlan devices go first so the bridge is empty of tunnels when it goes.
func (k *kernel) removeStale(keep map[string]bool, rec *recorder) error {
	owned, err := k.ownedLinks()
	if err != nil {
		return err
	}
	slices.SortFunc(owned, func(a, b netlink.Link) int {
		return boolInt(a.Type() == "bridge") - boolInt(b.Type() == "bridge")
	})
	for _, l := range owned {
		name := l.Attrs().Name
		if keep[name] {
			continue
		}
		if err := k.nl.LinkDel(l); err != nil {
			// A veth goes with its peer (an emulated VLAN device and its
			// far end): already removed is removed.
			if errors.Is(err, unix.ENODEV) {
				continue
			}
			return fmt.Errorf("remove %s: %w", name, err)
		}
		rec.op("kernel/"+l.Type(), "remove", name)
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// findUplink returns the link that holds addr, the VTEP address: like
// Neutron's [vxlan] local_ip, the address names the interface.
func findUplink(nl *netlink.Handle, addr netip.Addr) (netlink.Link, error) {
	addrs, err := nl.AddrList(nil, unix.AF_UNSPEC)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == addr {
			l, err := nl.LinkByIndex(a.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("link of %s: %w", addr, err)
			}
			return l, nil
		}
	}
	return nil, fmt.Errorf("no interface holds local_ip %s: add the address to the VTEP interface or fix local_ip", addr)
}
