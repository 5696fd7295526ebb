package bpf_test

import (
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vxdp/vxdp/frames"
	"github.com/vxdp/vxdp/maps"
	"github.com/vxdp/vxdp/state"
)

// Provider networks on the physical interface "lo" (ifindex 1: the
// ingress device of an XDP test run and the skb device of a TC one):
// VLAN 99 and a flat network, as physical network 0 of the agent.
var (
	segVLAN = mustSegment(0, 99)
	segFlat = mustSegment(0, 0)
	// vmP, vmP2 are local ports of VLAN 99; vmQ is one on another host.
	vmP  = vm{ifindex: 6, vni: segVLAN, mac: mac("fa:16:3e:00:02:0a"), ip: addr("172.16.99.10")}
	vmP2 = vm{ifindex: 7, vni: segVLAN, mac: mac("fa:16:3e:00:02:0b"), ip: addr("172.16.99.11")}
	vmQ  = vm{vni: segVLAN, mac: mac("fa:16:3e:00:02:0c"), ip: addr("172.16.99.20")}
	// vmF is a local port of the flat network.
	vmF = vm{ifindex: 8, vni: segFlat, mac: mac("fa:16:3e:00:03:0a"), ip: addr("172.16.98.10")}
	// physMAC is a host on the physical network, no port of ours.
	physMAC = mac("02:00:00:00:99:01")
)

const vlanDevIfindex = 20 // the VLAN device on the bridge (not used by XDP)

func mustSegment(phys int, vlan uint16) uint32 {
	s, err := maps.ProviderSegment(phys, vlan)
	if err != nil {
		panic(err)
	}
	return s
}

// withProvider serves VLAN 99 and the flat network on lo, with their ports.
func withProvider(t *testing.T, w *world) {
	w.put(t, maps.Networks, segVLAN, maps.NetInfo{DevIfindex: vlanDevIfindex, PhysIfindex: loIfindex, Mtu: 1500, Kind: maps.NetVLAN, Vlan: 99})
	w.put(t, maps.Networks, segFlat, maps.NetInfo{DevIfindex: loIfindex, PhysIfindex: loIfindex, Mtu: 1500, Kind: maps.NetFlat})
	w.put(t, maps.ProviderIn, maps.NewProviderKey(loIfindex, 99), segVLAN)
	w.put(t, maps.ProviderIn, maps.NewProviderKey(loIfindex, 0), segFlat)
	for _, p := range []vm{vmP, vmP2, vmF} {
		w.put(t, maps.Ports, p.ifindex, maps.PortInfo{Vni: p.vni, Mtu: 1500, Flags: maps.PortSecurity | maps.PortBridged,
			Mac: mac6(p.mac), Ip4: maps.BE32(p.ip)})
		w.put(t, maps.FDB, maps.NewFDBKey(p.vni, mac6(p.mac)), maps.FDBEntry{Ifindex: p.ifindex, Kind: maps.FDBLocal})
		w.put(t, maps.TxPorts, p.ifindex, uint32(loIfindex))
	}
	w.put(t, maps.FDB, maps.NewFDBKey(vmQ.vni, mac6(vmQ.mac)), maps.FDBEntry{Kind: maps.FDBProvider})
}

// withVLANOnly serves VLAN 99 on lo, which carries no flat network.
func withVLANOnly(t *testing.T, w *world) {
	withProvider(t, w)
	w.del(t, maps.ProviderIn, maps.NewProviderKey(loIfindex, 0))
}

// offUplink makes lo (a test run's ingress) a provider network's
// interface only: the tunnel interface is another.
func offUplink(setup func(*testing.T, *world)) func(*testing.T, *world) {
	return func(t *testing.T, w *world) {
		setup(t, w)
		update(t, w, maps.Config, uint32(0), func(c *maps.ConfigValue) { c.UplinkIfindex = loIfindex + 1 })
	}
}

// asPort makes the TC test run's device (lo) port p.
func asPort(p vm) func(*testing.T, *world) {
	return func(t *testing.T, w *world) {
		withProvider(t, w)
		w.put(t, maps.Ports, uint32(loIfindex), maps.PortInfo{Vni: p.vni, Mtu: 1500, Flags: maps.PortSecurity | maps.PortBridged,
			Mac: mac6(p.mac), Ip4: maps.BE32(p.ip)})
		w.put(t, maps.PortAddrs, maps.NewPortMACKey(loIfindex, mac6(p.mac)), maps.PortAddrValue{Kind: maps.AddrMACOnly})
		w.put(t, maps.PortAddrs, maps.NewPortAddrKey(loIfindex, mac6(p.mac), netip.PrefixFrom(p.ip, 32)), maps.PortAddrValue{Kind: maps.AddrAllowed})
	}
}

// TestProviderPortProgram: what a VM on a provider network sends. A
// remote port of the network is reached out of the physical interface
// (tagged with its VLAN by bpf_skb_vlan_push: the tag rides in the skb,
// which a test run does not show; the lab's e2e test sees it on the wire).
func TestProviderPortProgram(t *testing.T) {
	udp := func(src, dst vm) []byte { return frames.UDP4(src.mac, dst.mac, src.ip, dst.ip, 40000, 5201) }
	runCases(t, progPort, []testCase{
		{name: "to a remote port of VLAN 99: out of the physical interface", setup: asPort(vmP), in: udp(vmP, vmQ),
			verdict: tcRedirect, reason: "REDIRECT_PROVIDER"},
		{name: "to a local port of VLAN 99: to its tap", setup: asPort(vmP), in: udp(vmP, vmP2), verdict: tcRedirect, reason: "REDIRECT_LOCAL"},
		{name: "to a VXLAN port's MAC: no entry in this network", setup: asPort(vmP), in: udp(vmP, vmB), verdict: tcOK, reason: "PASS_FDB_MISS"},
		{name: "a host on the physical network: the bridge", setup: asPort(vmP), in: frames.UDP4(vmP.mac, physMAC, vmP.ip, addr("172.16.99.1"), 1, 2),
			verdict: tcOK, reason: "PASS_FDB_MISS"},
		{name: "broadcast: the bridge floods it", setup: asPort(vmP), in: udp(vmP, vm{mac: frames.Broadcast, ip: addr("172.16.99.255")}),
			verdict: tcOK, reason: "PASS_BUM"},
		{name: "larger than the network MTU: the kernel", setup: asPort(vmP),
			in: frames.TCP4(vmP.mac, vmQ.mac, vmP.ip, vmQ.ip, 40000, 1500), verdict: tcOK, reason: "PASS_TOO_BIG"},
		{name: "port security holds on a provider port", setup: asPort(vmP), in: udp(vm{mac: vmP.mac, ip: vmQ.ip}, vmQ),
			verdict: tcShot, reason: "DROP_SPOOF_IP"},
		{name: "a VLAN tag from the VM drops", setup: asPort(vmP), in: frames.Tagged(udp(vmP, vmQ), 99), verdict: tcShot, reason: "DROP_VLAN"},
		{name: "security groups, no egress rule: dropped", setup: withPortGroups(loIfindex, asPort(vmP)), in: udp(vmP, vmQ),
			verdict: tcShot, reason: "DROP_SG_EGRESS"},
		{name: "security groups, an egress rule to it: out of the physical interface", setup: withPortGroups(loIfindex, asPort(vmP), toQ),
			in: udp(vmP, vmQ), verdict: tcRedirect, reason: "REDIRECT_PROVIDER"},
		{name: "security groups, to another port of the VLAN than the rule's: dropped", setup: withPortGroups(loIfindex, asPort(vmP), toQ),
			in: frames.UDP4(vmP.mac, vmQ.mac, vmP.ip, addr("172.16.99.21"), 40000, 5201), verdict: tcShot, reason: "DROP_SG_EGRESS"},
	})
}

// Rules between vmP and vmQ of VLAN 99: UDP 5201 from vmP to vmQ, and
// from vmQ to vmP.
var (
	toQ = state.Rule{Direction: state.Egress, EtherType: state.IPv4, Protocol: state.ProtoUDP, PortMin: 5201, PortMax: 5201,
		RemotePrefixes: []netip.Prefix{netip.PrefixFrom(vmQ.ip, 32)}}
	fromQRule = state.Rule{Direction: state.Ingress, EtherType: state.IPv4, Protocol: state.ProtoUDP, PortMin: 5201, PortMax: 5201,
		RemotePrefixes: []netip.Prefix{netip.PrefixFrom(vmQ.ip, 32)}}
)

// withPortGroups serves the provider networks (setup) and gives the port
// of ifindex security groups with rules.
func withPortGroups(ifindex uint32, setup func(*testing.T, *world), rules ...state.Rule) func(*testing.T, *world) {
	return func(t *testing.T, w *world) {
		setup(t, w)
		groupsOn(t, w, ifindex, false, rules...)
	}
}

// TestProviderUplinkProgram: what arrives on the physical interface. A
// frame of VLAN 99 for a local port of it is untagged and redirected; no
// frame crosses into another network.
func TestProviderUplinkProgram(t *testing.T) {
	fromQ := func(dst vm) []byte { return frames.UDP4(vmQ.mac, dst.mac, vmQ.ip, dst.ip, 40000, 5201) }
	toF := frames.UDP4(physMAC, vmF.mac, addr("172.16.98.1"), vmF.ip, 40000, 5201)
	runCases(t, progUplink, []testCase{
		{name: "VLAN 99 to a local port: untagged and redirected", setup: withProvider, in: frames.Tagged(fromQ(vmP), 99),
			verdict: xdpRedirect, reason: "REDIRECT_FROM_PROVIDER", want: fromQ(vmP)},
		{name: "VLAN 99 TCP: the kernel's GRO first", setup: withProvider,
			in: frames.Tagged(frames.TCP4(vmQ.mac, vmP.mac, vmQ.ip, vmP.ip, 40000, 64), 99), verdict: xdpPass, reason: "PASS_TCP_GRO"},
		{name: "VLAN 99 broadcast: the VLAN device and bridge", setup: withProvider,
			in: frames.Tagged(frames.UDP4(vmQ.mac, frames.Broadcast, vmQ.ip, addr("172.16.99.255"), 1, 2), 99), verdict: xdpPass, reason: "PASS_PROVIDER_BUM"},
		{name: "VLAN 99 to a VXLAN port's MAC: not in this network", setup: withProvider, in: frames.Tagged(fromQ(vmB), 99),
			verdict: xdpPass, reason: "PASS_PROVIDER_FDB_MISS"},
		{name: "VLAN 99 from a local port's MAC: a forgery", setup: withProvider,
			in: frames.Tagged(frames.UDP4(vmP2.mac, vmP.mac, vmP2.ip, vmP.ip, 1, 2), 99), verdict: xdpDrop, reason: "DROP_INNER_SRC_LOCAL"},
		{name: "a VLAN not served here: the kernel", setup: withProvider, in: frames.Tagged(fromQ(vmP), 98), verdict: xdpPass, reason: "PASS_VLAN_TAGGED"},
		{name: "VLAN 99 carrying another tag: the kernel path", setup: withProvider, in: frames.Tagged(frames.Tagged(fromQ(vmP), 5), 99),
			verdict: xdpPass, reason: "PASS_INNER_TAGGED"},
		{name: "untagged to a flat port: redirected as it is", setup: withProvider, in: toF, verdict: xdpRedirect, reason: "REDIRECT_FROM_PROVIDER", want: toF},
		{name: "untagged to a VLAN 99 port: not the flat network's", setup: withProvider,
			in: frames.UDP4(physMAC, vmP.mac, addr("172.16.99.1"), vmP.ip, 1, 2), verdict: xdpPass, reason: "PASS_NOT_VXLAN"},
		{name: "VXLAN on a provider interface that is also the tunnel interface: decapsulated", setup: withProvider, in: vxlanTo(vmR, toB(), nil),
			verdict: xdpRedirect, reason: "REDIRECT_LOCAL", want: toB()},
		// A host of the flat network, or untagged on the VLAN trunk, forging
		// a registered VTEP's address: the kernel's VXLAN socket would take it.
		{name: "VXLAN from a registered VTEP's address on a flat network's interface: dropped", setup: offUplink(withProvider),
			in: vxlanTo(vmR, toB(), nil), verdict: xdpDrop, reason: "DROP_NOT_UPLINK"},
		{name: "VXLAN untagged on a VLAN trunk: dropped", setup: offUplink(withVLANOnly),
			in: vxlanTo(vmR, toB(), nil), verdict: xdpDrop, reason: "DROP_NOT_UPLINK"},
		{name: "other traffic on a provider interface is the host's", setup: offUplink(withVLANOnly),
			in: frames.UDP4(physMAC, vmP.mac, addr("172.16.99.1"), vmP.ip, 1, 2), verdict: xdpPass, reason: "PASS_NOT_VXLAN"},
		// A bridge hands link-local group frames to its port's own stack
		// (eth1.99, eth3), whose sockets bound to any address would take IP.
		{name: "IPv4 on VLAN 99 to a link-local group address: dropped", setup: withProvider,
			in: frames.Tagged(frames.UDP4(physMAC, frames.LLDP, addr("172.16.99.1"), vmP.ip, 1, 8472), 99), verdict: xdpDrop, reason: "DROP_LINK_LOCAL_DST"},
		{name: "LLDP on the flat network's interface: the host's, as on any NIC", setup: withProvider,
			in: frames.Build(frames.Ether(physMAC, frames.LLDP, layers.EthernetTypeLinkLayerDiscovery), gopacket.Payload(make([]byte, 46))), verdict: xdpPass, reason: "PASS_PROVIDER_BUM"},
		{name: "no provider network on the interface: tags pass as before", in: frames.Tagged(fromQ(vmP), 99), verdict: xdpPass, reason: "PASS_VLAN_TAGGED"},
		{name: "VLAN 99 to a port with security groups, no rule: dropped", setup: withPortGroups(vmP.ifindex, withProvider),
			in: frames.Tagged(fromQ(vmP), 99), verdict: xdpDrop, reason: "DROP_SG_INGRESS"},
		{name: "VLAN 99 to a port with security groups, a rule from the sender: untagged and redirected",
			setup: withPortGroups(vmP.ifindex, withProvider, fromQRule), in: frames.Tagged(fromQ(vmP), 99),
			verdict: xdpRedirect, reason: "REDIRECT_FROM_PROVIDER", want: fromQ(vmP)},
		{name: "VLAN 99 to a port with security groups, from another address than the rule's: dropped",
			setup: withPortGroups(vmP.ifindex, withProvider, fromQRule),
			in:    frames.Tagged(frames.UDP4(vmQ.mac, vmP.mac, addr("172.16.99.21"), vmP.ip, 40000, 5201), 99), verdict: xdpDrop, reason: "DROP_SG_INGRESS"},
		{name: "untagged to a flat port with security groups, no rule: dropped", setup: withPortGroups(vmF.ifindex, withProvider),
			in: toF, verdict: xdpDrop, reason: "DROP_SG_INGRESS"},
	})
}

// TestSegmentProgram: what the kernel received on a provider network's
// physical interface (here lo, carrying the flat network untagged), and
// the far end of an emulated VLAN device. (A test run cannot give the skb
// a VLAN tag: the tagged paths are the lab's e2e test's.)
func TestSegmentProgram(t *testing.T) {
	fromPhys := func(dst vm) []byte { return frames.TCP4(physMAC, dst.mac, addr("172.16.98.1"), dst.ip, 40000, 64) }
	emulated := func(t *testing.T, w *world) {
		withProvider(t, w)
		update(t, w, maps.Networks, segVLAN, func(n *maps.NetInfo) { n.Flags |= maps.NetVLANEmulated; n.PeerIfindex = loIfindex })
		w.put(t, maps.SegmentDevs, uint32(loIfindex), segVLAN)
	}
	runCases(t, progSegment, []testCase{
		{name: "to a local port: redirected", setup: withProvider, in: fromPhys(vmF), verdict: tcRedirect, reason: "REDIRECT_LOCAL"},
		{name: "to another network's port: the bridge", setup: withProvider, in: fromPhys(vmP), verdict: tcOK, reason: "PASS_PROVIDER_FDB_MISS"},
		{name: "IPv4 to a link-local group address: dropped", setup: withProvider,
			in: frames.UDP4(physMAC, frames.LLDP, addr("172.16.98.1"), vmF.ip, 1, 8472), verdict: tcShot, reason: "DROP_LINK_LOCAL_DST"},
		{name: "broadcast: the bridge", setup: withProvider, in: fromPhys(vm{mac: frames.Broadcast, ip: addr("172.16.98.255")}),
			verdict: tcOK, reason: "PASS_PROVIDER_BUM"},
		{name: "from a local port's MAC: a forgery", setup: withProvider,
			in: frames.TCP4(vmF.mac, vmF.mac, vmF.ip, vmF.ip, 1, 64), verdict: tcShot, reason: "DROP_INNER_SRC_LOCAL"},
		{name: "no provider network on the interface: the kernel", in: fromPhys(vmF), verdict: tcOK, reason: "PASS_NOT_PROVIDER"},
		{name: "out of an emulated VLAN device: tagged, to the physical interface", setup: emulated, in: fromPhys(vmQ),
			verdict: tcRedirect, reason: "REDIRECT_TO_PHYSICAL"},
		{name: "an emulated device of a network not emulated: dropped", setup: func(t *testing.T, w *world) {
			withProvider(t, w)
			w.put(t, maps.SegmentDevs, uint32(loIfindex), segVLAN)
		}, in: fromPhys(vmQ), verdict: tcShot, reason: "DROP_SEGMENT_UNKNOWN"},
	})
}
