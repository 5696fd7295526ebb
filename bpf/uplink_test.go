package bpf_test

import (
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/vxdp/vxdp/maps"
)

// toB is what remote vmR sends local vmB.
func toB() []byte { return tcp4(vmR.mac, vmB.mac, vmR.ip, vmB.ip, 40000, 64) }

// vxlanTo is a VXLAN frame from vtep for vni around inner, after change.
func vxlanTo(vtep vm, inner []byte, change func(*vxlanPacket)) []byte {
	p := fromVTEP(vtep.vtep, vtep.vni, inner)
	if change != nil {
		change(p)
	}
	return p.bytes()
}

func TestUplinkProgram(t *testing.T) {
	valid := vxlanTo(vmR, toB(), nil)
	withIP := func(f func(*layers.IPv4)) []byte {
		return vxlanTo(vmR, toB(), func(p *vxlanPacket) { f(&p.ip) })
	}
	withVXLAN := func(f func(*layers.VXLAN)) []byte {
		return vxlanTo(vmR, toB(), func(p *vxlanPacket) { f(&p.vx) })
	}
	withInner := func(inner []byte) []byte { return vxlanTo(vmR, inner, nil) }
	// A frame of another tenant's VTEP and VNI, addressed to a port of vniA.
	fromB := func(inner []byte) []byte { return vxlanTo(vmS, inner, nil) }
	innerToC := tcp4(vmS.mac, vmC.mac, vmS.ip, vmC.ip, 40000, 64)

	runCases(t, progUplink, []testCase{
		// Not ours: passed untouched.
		{name: "ARP passes", in: arpRequest(mac("02:00:c0:a8:f8:02"), vtepA, localIP).bytes(), verdict: xdpPass, reason: "PASS_NOT_IPV4"},
		{name: "IPv6 passes", in: udp6(mac("02:00:c0:a8:f8:02"), uplinkMAC), verdict: xdpPass, reason: "PASS_NOT_IPV4"},
		{name: "VLAN passes", in: vlanTCP(mac("02:00:c0:a8:f8:02"), uplinkMAC, vtepA, localIP), verdict: xdpPass, reason: "PASS_VLAN"},
		{name: "truncated IPv4 passes", in: edited(valid, truncate(offIP+19)), verdict: xdpPass, reason: "PASS_MALFORMED"},
		{name: "IPv4 header length below 5 passes", in: edited(valid, put8(offIP, 0x44)), verdict: xdpPass, reason: "PASS_MALFORMED"},
		{name: "truncated UDP passes", in: edited(valid, truncate(offUDP+7)), verdict: xdpPass, reason: "PASS_MALFORMED"},
		{name: "bad IPv4 header checksum passes", in: edited(valid, put16(offIP+10, 0xbad0)), verdict: xdpPass, reason: "PASS_MALFORMED"},
		{name: "TCP passes", in: tcp4(mac("02:00:c0:a8:f8:02"), uplinkMAC, vtepA, localIP, 40000, 64), verdict: xdpPass, reason: "PASS_NOT_UDP"},
		{name: "IPv4 options pass", verdict: xdpPass, reason: "PASS_IP_OPTIONS",
			in: withIP(func(ip *layers.IPv4) {
				ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
			})},
		{name: "first fragment (MF) passes", in: withIP(func(ip *layers.IPv4) { ip.Flags = layers.IPv4MoreFragments }),
			verdict: xdpPass, reason: "PASS_FRAGMENT"},
		{name: "later fragment (offset) passes", in: withIP(func(ip *layers.IPv4) { ip.FragOffset = 185 }),
			verdict: xdpPass, reason: "PASS_FRAGMENT"},
		{name: "not to local_ip passes", in: withIP(func(ip *layers.IPv4) { ip.DstIP = ip4("192.168.248.7").AsSlice() }),
			verdict: xdpPass, reason: "PASS_NOT_LOCAL"},
		{name: "UDP to another port passes", in: vxlanTo(vmR, toB(), func(p *vxlanPacket) { p.udp.DstPort = 4789 }),
			verdict: xdpPass, reason: "PASS_NOT_VXLAN"},

		// VXLAN to us that the kernel vxlan socket would reject.
		{name: "truncated VXLAN header drops", in: edited(valid, truncate(offVXLAN+7)), verdict: xdpDrop, reason: "DROP_VXLAN_TRUNCATED"},
		{name: "truncated inner Ethernet drops", in: withInner(toB()[:13]), verdict: xdpDrop, reason: "DROP_VXLAN_TRUNCATED"},
		{name: "IPv4 length beyond the frame drops", in: edited(valid, truncate(len(valid)-1)), verdict: xdpDrop, reason: "DROP_VXLAN_TRUNCATED"},
		{name: "UDP length disagreeing with IPv4 drops", in: edited(valid, put16(offUDP+4, uint16(len(valid)-offUDP-1))),
			verdict: xdpDrop, reason: "DROP_VXLAN_TRUNCATED"},
		{name: "trailing garbage drops", in: edited(valid, appendBytes(4)), verdict: xdpDrop, reason: "DROP_VXLAN_TRUNCATED"},
		{name: "I flag missing drops", in: withVXLAN(func(v *layers.VXLAN) { v.ValidIDFlag = false }), verdict: xdpDrop, reason: "DROP_VXLAN_FLAGS"},
		{name: "reserved flag (G) drops", in: withVXLAN(func(v *layers.VXLAN) { v.GBPExtension = true }), verdict: xdpDrop, reason: "DROP_VXLAN_FLAGS"},
		{name: "reserved bits after the flags drop", in: withVXLAN(func(v *layers.VXLAN) { v.GBPGroupPolicyID = 1 }),
			verdict: xdpDrop, reason: "DROP_VXLAN_FLAGS"},
		{name: "reserved byte after the VNI drops", in: edited(valid, put8(offVXLAN+7, 1)), verdict: xdpDrop, reason: "DROP_VXLAN_FLAGS"},

		// Served VNIs and registered VTEPs.
		{name: "unknown VNI passes", in: withVXLAN(func(v *layers.VXLAN) { v.VNI = vniOther }), verdict: xdpPass, reason: "PASS_VNI_UNKNOWN"},
		{name: "unregistered VTEP drops", in: withIP(func(ip *layers.IPv4) { ip.SrcIP = vtepStray.AsSlice() }),
			verdict: xdpDrop, reason: "DROP_VTEP_UNKNOWN"},
		{name: "VTEP registered for another VNI drops", in: withIP(func(ip *layers.IPv4) { ip.SrcIP = vtepB.AsSlice() }),
			verdict: xdpDrop, reason: "DROP_VTEP_UNKNOWN"},
		// Frames the kernel would decapsulate itself are held to the same
		// VTEP check first: neither options nor fragmentation may smuggle
		// VXLAN from an unregistered source past it.
		{name: "IPv4 options from an unregistered VTEP drop", verdict: xdpDrop, reason: "DROP_VTEP_UNKNOWN",
			in: withIP(func(ip *layers.IPv4) {
				ip.SrcIP = vtepStray.AsSlice()
				ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
			})},
		{name: "first fragment from an unregistered VTEP drops", verdict: xdpDrop, reason: "DROP_VTEP_UNKNOWN",
			in: withIP(func(ip *layers.IPv4) { ip.SrcIP = vtepStray.AsSlice(); ip.Flags = layers.IPv4MoreFragments })},
		{name: "IPv4 options with a bad header checksum pass", verdict: xdpPass, reason: "PASS_MALFORMED",
			in: edited(withIP(func(ip *layers.IPv4) {
				ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
			}), put16(offIP+10, 0xbad0))},

		// Inner destination.
		{name: "inner broadcast passes", in: withInner(arpRequest(vmR.mac, vmR.ip, vmB.ip).bytes()), verdict: xdpPass, reason: "PASS_INNER_BUM"},
		{name: "inner multicast passes", in: withInner(udp4(vmR.mac, multicastMAC, vmR.ip, ip4("224.0.0.251"), 5353, 5353)),
			verdict: xdpPass, reason: "PASS_INNER_BUM"},
		{name: "inner unicast miss passes", in: withInner(tcp4(vmR.mac, strayMAC, vmR.ip, unknownIP, 40000, 64)),
			verdict: xdpPass, reason: "PASS_INNER_FDB_MISS"},
		{name: "inner remote MAC passes", in: withInner(tcp4(vmB.mac, vmR.mac, vmB.ip, vmR.ip, 40000, 64)),
			verdict: xdpPass, reason: "PASS_INNER_FDB_MISS"},
		{name: "local port not in tx_ports passes", in: withInner(tcp4(vmR.mac, vmD.mac, vmR.ip, vmD.ip, 40000, 64)),
			verdict: xdpPass, reason: "PASS_NO_TXPORT"},
		{name: "local port is decapsulated and redirected", in: valid, verdict: xdpRedirect, reason: "REDIRECT_LOCAL", want: toB()},
		{name: "local port of the other tenant is redirected", in: fromB(innerToC), verdict: xdpRedirect, reason: "REDIRECT_LOCAL", want: innerToC},
		{name: "decapsulated IPv6 is redirected", in: withInner(udp6(vmR.mac, vmB.mac)), verdict: xdpRedirect, reason: "REDIRECT_LOCAL",
			want: udp6(vmR.mac, vmB.mac)},

		// Tenant isolation: a frame of vniB never reaches a port of vniA.
		{name: "other tenant's frame to a vniA port is a miss", in: fromB(tcp4(vmS.mac, vmB.mac, vmS.ip, vmB.ip, 40000, 64)),
			verdict: xdpPass, reason: "PASS_INNER_FDB_MISS"},
		{name: "stale vniB entry to a vniA port drops", in: fromB(tcp4(vmS.mac, vmB.mac, vmS.ip, vmB.ip, 40000, 64)),
			verdict: xdpDrop, reason: "DROP_VNI_MISMATCH",
			setup: func(t *testing.T, w *world) {
				w.put(t, maps.FDB, maps.NewFDBKey(vniB, mac6(vmB.mac)), maps.FDBEntry{Ifindex: vmB.ifindex, Kind: maps.FDBLocal})
			}},
	})
}
