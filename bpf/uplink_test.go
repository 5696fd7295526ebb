package bpf_test

import (
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/vxdp/vxdp/frames"
	"github.com/vxdp/vxdp/maps"
)

var vtepAMAC = mac("02:00:c0:a8:f8:02")

// toB is what remote vmR sends local vmB: UDP, which BPF decapsulates
// (TCP goes to the kernel's GRO first).
func toB() []byte { return frames.UDP4(vmR.mac, vmB.mac, vmR.ip, vmB.ip, 40000, 5201) }

// vxlanTo is a VXLAN frame from src's VTEP for its VNI around inner, to
// local_ip, after change.
func vxlanTo(src vm, inner []byte, change func(*frames.VXLAN)) []byte {
	p := frames.FromVTEP(vtepAMAC, uplinkMAC, src.vtep, localIP, src.vni, inner)
	if change != nil {
		change(p)
	}
	return p.Bytes()
}

func TestUplinkProgram(t *testing.T) {
	valid := vxlanTo(vmR, toB(), nil)
	withIP := func(f func(*layers.IPv4)) []byte {
		return vxlanTo(vmR, toB(), func(p *frames.VXLAN) { f(&p.IP) })
	}
	withVXLAN := func(f func(*layers.VXLAN)) []byte {
		return vxlanTo(vmR, toB(), func(p *frames.VXLAN) { f(&p.VX) })
	}
	withInner := func(inner []byte) []byte { return vxlanTo(vmR, inner, nil) }
	// A frame of another tenant's VTEP and VNI, addressed to a port of vniA.
	fromB := func(inner []byte) []byte { return vxlanTo(vmS, inner, nil) }
	innerToC := frames.UDP4(vmS.mac, vmC.mac, vmS.ip, vmC.ip, 40000, 5201)
	stray := func(p *frames.VXLAN) { p.IP.SrcIP = vtepStray.AsSlice() }
	ipOptions := []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}

	runCases(t, progUplink, []testCase{
		// Not ours: passed untouched.
		{name: "ARP passes", in: frames.ARPRequest(vtepAMAC, vtepA, localIP).Bytes(), verdict: xdpPass, reason: "PASS_NOT_IPV4"},
		{name: "IPv6 passes", in: frames.UDP6(vtepAMAC, uplinkMAC, addr("fe80::1"), addr("fe80::2"), 1, 2), verdict: xdpPass, reason: "PASS_NOT_IPV4"},
		{name: "VLAN 10 passes", in: frames.Tagged(valid, 10), verdict: xdpPass, reason: "PASS_VLAN_TAGGED"},
		{name: "three VLAN 0 tags pass", in: frames.Tagged(frames.Tagged(valid, 0), 0, 0), verdict: xdpPass, reason: "PASS_VLAN_TAGGED"},
		{name: "truncated IPv4 passes", in: frames.Edited(valid, frames.Truncate(frames.OffIP+19)), verdict: xdpPass, reason: "PASS_MALFORMED"},
		{name: "IPv4 header length below 5 passes", in: frames.Edited(valid, frames.Put8(frames.OffIP, 0x44)), verdict: xdpPass, reason: "PASS_MALFORMED"},
		{name: "truncated UDP passes", in: frames.Edited(valid, frames.Truncate(frames.OffUDP+7)), verdict: xdpPass, reason: "PASS_MALFORMED"},
		{name: "bad IPv4 header checksum passes", in: frames.Edited(valid, frames.Put16(frames.OffIP+10, 0xbad0)), verdict: xdpPass, reason: "PASS_MALFORMED"},
		{name: "TCP passes", in: frames.TCP4(vtepAMAC, uplinkMAC, vtepA, localIP, 40000, 64), verdict: xdpPass, reason: "PASS_NOT_UDP"},
		{name: "IPv4 options pass", verdict: xdpPass, reason: "PASS_IP_OPTIONS", in: withIP(func(ip *layers.IPv4) { ip.Options = ipOptions })},
		{name: "first fragment (MF) passes", in: withIP(func(ip *layers.IPv4) { ip.Flags = layers.IPv4MoreFragments }),
			verdict: xdpPass, reason: "PASS_FRAGMENT"},
		{name: "later fragment (offset) passes", in: withIP(func(ip *layers.IPv4) { ip.FragOffset = 185 }),
			verdict: xdpPass, reason: "PASS_FRAGMENT"},
		{name: "UDP to another port passes", in: vxlanTo(vmR, toB(), func(p *frames.VXLAN) { p.UDP.DstPort = 4789 }),
			verdict: xdpPass, reason: "PASS_NOT_VXLAN"},

		// VXLAN that the kernel vxlan socket would reject.
		{name: "truncated VXLAN header drops", in: frames.Edited(valid, frames.Truncate(frames.OffVXLAN+7)), verdict: xdpDrop, reason: "DROP_VXLAN_TRUNCATED"},
		{name: "truncated inner Ethernet drops", in: withInner(toB()[:13]), verdict: xdpDrop, reason: "DROP_VXLAN_TRUNCATED"},
		{name: "IPv4 length beyond the frame drops", in: frames.Edited(valid, frames.Truncate(len(valid)-1)), verdict: xdpDrop, reason: "DROP_VXLAN_TRUNCATED"},
		{name: "UDP length disagreeing with IPv4 drops", in: frames.Edited(valid, frames.Put16(frames.OffUDP+4, uint16(len(valid)-frames.OffUDP-1))),
			verdict: xdpDrop, reason: "DROP_VXLAN_TRUNCATED"},
		{name: "trailing garbage drops", in: frames.Edited(valid, frames.Append(4)), verdict: xdpDrop, reason: "DROP_VXLAN_TRUNCATED"},
		{name: "I flag missing drops", in: withVXLAN(func(v *layers.VXLAN) { v.ValidIDFlag = false }), verdict: xdpDrop, reason: "DROP_VXLAN_FLAGS"},
		{name: "reserved flag (G) drops", in: withVXLAN(func(v *layers.VXLAN) { v.GBPExtension = true }), verdict: xdpDrop, reason: "DROP_VXLAN_FLAGS"},
		{name: "reserved bits after the flags drop", in: withVXLAN(func(v *layers.VXLAN) { v.GBPGroupPolicyID = 1 }),
			verdict: xdpDrop, reason: "DROP_VXLAN_FLAGS"},
		{name: "reserved byte after the VNI drops", in: frames.Edited(valid, frames.Put8(frames.OffVXLAN+7, 1)), verdict: xdpDrop, reason: "DROP_VXLAN_FLAGS"},

		// Served VNIs and registered VTEPs.
		{name: "unknown VNI passes", in: withVXLAN(func(v *layers.VXLAN) { v.VNI = vniOther }), verdict: xdpPass, reason: "PASS_VNI_UNKNOWN"},
		{name: "unregistered VTEP drops", in: vxlanTo(vmR, toB(), stray), verdict: xdpDrop, reason: "DROP_VTEP_UNKNOWN"},
		{name: "VTEP registered for another VNI drops", in: withIP(func(ip *layers.IPv4) { ip.SrcIP = vtepB.AsSlice() }),
			verdict: xdpDrop, reason: "DROP_VTEP_UNKNOWN"},
		// The bypasses: another local destination, VLAN 0 tags.
		{name: "unregistered VTEP to the subnet broadcast drops", verdict: xdpDrop, reason: "DROP_VTEP_UNKNOWN",
			in: vxlanTo(vmR, toB(), func(p *frames.VXLAN) {
				stray(p)
				p.IP.DstIP = addr("192.168.248.255").AsSlice()
				p.Eth.DstMAC = frames.Broadcast
			})},
		{name: "unregistered VTEP to 255.255.255.255 drops", verdict: xdpDrop, reason: "DROP_VTEP_UNKNOWN",
			in: vxlanTo(vmR, toB(), func(p *frames.VXLAN) { stray(p); p.IP.DstIP = addr("255.255.255.255").AsSlice() })},
		{name: "unregistered VTEP to another local address drops", verdict: xdpDrop, reason: "DROP_VTEP_UNKNOWN",
			in: vxlanTo(vmR, toB(), func(p *frames.VXLAN) { stray(p); p.IP.DstIP = addr("10.30.1.203").AsSlice() })},
		{name: "registered VTEP to a broadcast drops", verdict: xdpDrop, reason: "DROP_NOT_LOCAL",
			in: withIP(func(ip *layers.IPv4) { ip.DstIP = addr("255.255.255.255").AsSlice() })},
		{name: "unregistered VTEP behind a VLAN 0 tag drops", in: frames.Tagged(vxlanTo(vmR, toB(), stray), 0),
			verdict: xdpDrop, reason: "DROP_VTEP_UNKNOWN"},
		{name: "unregistered VTEP behind two VLAN 0 tags (802.1ad) drops", in: frames.Tagged(vxlanTo(vmR, toB(), stray), 0, 0),
			verdict: xdpDrop, reason: "DROP_VTEP_UNKNOWN"},
		// Frames the kernel would decapsulate itself are held to the same
		// VTEP check first: neither options nor fragmentation may smuggle
		// VXLAN from an unregistered source past it.
		// A header with options is the kernel's to verify and decapsulate;
		// the vxlan program checks its VTEP (TestVxlanProgram, and the
		// isolation e2e test sends one).
		{name: "IPv4 options from an unregistered VTEP pass to the kernel", verdict: xdpPass, reason: "PASS_IP_OPTIONS",
			in: withIP(func(ip *layers.IPv4) { ip.SrcIP = vtepStray.AsSlice(); ip.Options = ipOptions })},
		{name: "first fragment from an unregistered VTEP drops", verdict: xdpDrop, reason: "DROP_VTEP_UNKNOWN",
			in: withIP(func(ip *layers.IPv4) { ip.SrcIP = vtepStray.AsSlice(); ip.Flags = layers.IPv4MoreFragments })},
		// A checksummed frame is left for the kernel to verify.
		{name: "non-zero UDP checksum passes to the kernel", in: vxlanTo(vmR, toB(), func(p *frames.VXLAN) { p.UDPCsum = true }),
			verdict: xdpPass, reason: "PASS_UDP_CSUM"},
		{name: "wrong UDP checksum passes to the kernel, which drops it", verdict: xdpPass, reason: "PASS_UDP_CSUM",
			in: frames.Edited(valid, frames.Put16(frames.OffUDP+6, 0xbad0))},

		// Inner frame.
		{name: "inner source of a local port drops", in: withInner(frames.UDP4(vmA.mac, vmB.mac, vmA.ip, vmB.ip, 1, 2)),
			verdict: xdpDrop, reason: "DROP_INNER_SRC_LOCAL"},
		{name: "inner broadcast from a local port's MAC drops", in: withInner(frames.ARPRequest(vmB.mac, vmB.ip, vmA.ip).Bytes()),
			verdict: xdpDrop, reason: "DROP_INNER_SRC_LOCAL"},
		{name: "inner broadcast passes", in: withInner(frames.ARPRequest(vmR.mac, vmR.ip, vmB.ip).Bytes()), verdict: xdpPass, reason: "PASS_INNER_BUM"},
		{name: "inner multicast passes", in: withInner(frames.UDP4(vmR.mac, frames.Multicast, vmR.ip, addr("224.0.0.251"), 5353, 5353)),
			verdict: xdpPass, reason: "PASS_INNER_BUM"},
		{name: "inner unicast miss passes", in: withInner(frames.TCP4(vmR.mac, strayMAC, vmR.ip, unknownIP, 40000, 64)),
			verdict: xdpPass, reason: "PASS_INNER_FDB_MISS"},
		{name: "inner remote MAC passes", in: withInner(frames.UDP4(strayMAC, vmR.mac, unknownIP, vmR.ip, 1, 2)),
			verdict: xdpPass, reason: "PASS_INNER_FDB_MISS"},
		{name: "inner TCP to a local port goes to GRO", in: withInner(frames.TCP4(vmR.mac, vmB.mac, vmR.ip, vmB.ip, 40000, 64)),
			verdict: xdpPass, reason: "PASS_TCP_GRO"},
		{name: "inner TCP over IPv6 goes to GRO", in: withInner(frames.TCP6(vmR.mac, vmB.mac, addr("fe80::1"), vmB6, 40000, 64)),
			verdict: xdpPass, reason: "PASS_TCP_GRO"},
		{name: "local port not in tx_ports passes", in: withInner(frames.UDP4(vmR.mac, vmD.mac, vmR.ip, vmD.ip, 40000, 5201)),
			verdict: xdpPass, reason: "PASS_NO_TXPORT"},
		{name: "local port is decapsulated and redirected", in: valid, verdict: xdpRedirect, reason: "REDIRECT_LOCAL", want: toB()},
		{name: "VLAN 0 tagged VXLAN is decapsulated too", in: frames.Tagged(valid, 0), verdict: xdpRedirect, reason: "REDIRECT_LOCAL", want: toB()},
		{name: "local port of the other tenant is redirected", in: fromB(innerToC), verdict: xdpRedirect, reason: "REDIRECT_LOCAL", want: innerToC},
		{name: "decapsulated IPv6 is redirected", in: withInner(frames.UDP6(vmR.mac, vmB.mac, addr("fe80::1"), vmB6, 1, 2)),
			verdict: xdpRedirect, reason: "REDIRECT_LOCAL", want: frames.UDP6(vmR.mac, vmB.mac, addr("fe80::1"), vmB6, 1, 2)},
		{name: "kernel forwarding: a checked frame passes", setup: forwardOff, in: valid, verdict: xdpPass, reason: "PASS_KERNEL_FORWARDING"},

		// Tenant isolation: a frame of vniB never reaches a port of vniA.
		{name: "other tenant's frame to a vniA port is a miss", in: fromB(frames.UDP4(vmS.mac, vmB.mac, vmS.ip, vmB.ip, 1, 2)),
			verdict: xdpPass, reason: "PASS_INNER_FDB_MISS"},
		{name: "stale vniB entry to a vniA port drops", in: fromB(frames.UDP4(vmS.mac, vmB.mac, vmS.ip, vmB.ip, 1, 2)),
			verdict: xdpDrop, reason: "DROP_VNI_MISMATCH",
			setup: func(t *testing.T, w *world) {
				w.put(t, maps.FDB, maps.NewFDBKey(vniB, mac6(vmB.mac)), maps.FDBEntry{Ifindex: vmB.ifindex, Kind: maps.FDBLocal})
			}},
	})
}
