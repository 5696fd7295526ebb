package bpf_test

// The IPv6 underlay in the fuzz test: decide6's model (only a VTEP
// registered for the VNI, to local_ip6, with a right UDP checksum, is
// decapsulated) and VXLAN-over-IPv6 frames.

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vxdp/vxdp/frames"
)

var vtepStray6 = addr("fd00:192:168:248::9") // registered for nothing

// withUnderlay6Model is withUnderlay6 in the model.
func withUnderlay6Model(t *testing.T, w *world, m *model) {
	withUnderlay6(t, w)
	m.underlay6, m.localIP6 = true, localIP6
	m.localIP = netip.IPv4Unspecified()
	m.vteps6[vniAddrOf(vniA, vtepA6)] = true
	m.fdb[fdbKeyOf(vniA, vmR.mac)] = modelFDB{vtep: vtepA6}
}

// uplink6 is decide6 for the IPv6 header at off.
func (m *model) uplink6(f []byte, off int) uplinkOutcome {
	if len(f) < off+40 || f[off]>>4 != 6 {
		return uplinkOutcome{reason: "PASS_MALFORMED"}
	}
	ip := f[off:]
	if ip[6] != 17 {
		return uplinkOutcome{reason: "PASS_NOT_UDP"}
	}
	if len(ip) < 48 {
		return uplinkOutcome{reason: "PASS_MALFORMED"}
	}
	udp := ip[40:]
	if binary.BigEndian.Uint16(udp[2:]) != m.vxlanPort {
		return uplinkOutcome{reason: "PASS_NOT_VXLAN"}
	}
	if !m.onUplink {
		return uplinkOutcome{reason: "DROP_NOT_UPLINK"}
	}
	n := int(binary.BigEndian.Uint16(ip[4:]))
	if len(udp) < 8+8+14 || len(udp) != n || int(binary.BigEndian.Uint16(udp[4:])) != n {
		return uplinkOutcome{reason: "DROP_VXLAN_TRUNCATED"}
	}
	out := m.acceptVXLAN(udp[8:16], netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40])), m.localIP6, m.vteps6)
	if out.reason != "" {
		return out
	}
	inner := udp[16:]
	if m.isLocalPort(out.vni, inner[6:12]) {
		out.reason = "DROP_INNER_SRC_LOCAL"
		return out
	}
	if binary.BigEndian.Uint16(udp[6:]) == 0 {
		out.reason = "PASS_UDP_CSUM"
		return out
	}
	out = m.decapsulated(out, f, off+40+16)
	if out.reason == "REDIRECT_LOCAL" && !udp6SumOK(ip) {
		// Checked last: security groups (and their flows) have seen it.
		out.reason, out.target, out.inner = "DROP_UDP_CSUM", 0, nil
	}
	return out
}

// udp6SumOK: the UDP checksum of the IPv6 packet ip (its whole payload)
// is right.
func udp6SumOK(ip []byte) bool {
	var s uint32
	add := func(b []byte) {
		for i := 0; i < len(b); i += 2 {
			w := uint32(b[i]) << 8
			if i+1 < len(b) {
				w |= uint32(b[i+1])
			}
			s += w
		}
	}
	add(ip[8:40])
	payload := ip[40:]
	s += uint32(len(payload)) + 17
	add(payload)
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return s == 0xffff
}

// vxlan6Frame is VXLAN over IPv6 from registered and unregistered
// VTEPs, to local_ip6 and elsewhere, with a right checksum unless a byte
// past the outer IPv6 header (the UDP header, VXLAN, the inner frame) is
// then flipped, or the frame mutated.
func (g *frameGen) vxlan6Frame() []byte {
	src := []netip.Addr{vtepA6, vtepA6, vtepA6, vtepA6, vtepStray6, localIP6}[g.pick(6)]
	dst := []netip.Addr{localIP6, localIP6, localIP6, localIP6, addr("fd00:192:168:248::7"), addr("ff02::1")}[g.pick(6)]
	innerSrc := g.mac(vmR.mac, vmR.mac, vmS.mac, vmA.mac, strayMAC)
	innerDst := g.mac(vmB.mac, vmB.mac, vmB.mac, vmA.mac, vmC.mac, vmD.mac, vmR.mac, frames.Broadcast, strayMAC)
	var inner []byte
	switch g.pick(3) {
	case 0:
		inner = frames.UDP4(innerSrc, innerDst, vmR.ip, vmB.ip, 1, uint16(g.pick(8)))
	case 1:
		inner = frames.TCP4(innerSrc, innerDst, vmR.ip, vmB.ip, 40000, g.pick(100))
	default:
		inner = frames.Build(frames.Ether(innerSrc, innerDst, layers.EthernetType(g.port16(0x0806, 0x86dd, 0x88b5))), frames.Payload(1+g.pick(600)))
	}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	vni := []uint32{vniA, vniA, vniA, vniB, vniOther}[g.pick(5)]
	dport := uint16(vxlanPort)
	if g.chance(0.1) {
		dport = g.port16(4789)
	}
	f := frames.Build(frames.Ether(vtepAMAC, uplinkMAC, layers.EthernetTypeIPv6), ip,
		&layers.UDP{SrcPort: layers.UDPPort(g.port16(51234)), DstPort: layers.UDPPort(dport)},
		&layers.VXLAN{ValidIDFlag: true, VNI: vni}, gopacket.Payload(inner))
	switch {
	case g.chance(0.05):
		binary.BigEndian.PutUint16(f[14+40+6:], 0) // no checksum: the kernel's
	case g.chance(0.3):
		i := 14 + 40 + g.pick(len(f)-14-40)
		f[i] ^= byte(1 << g.pick(8))
	}
	if g.chance(0.05) {
		f = frames.Tagged(f, 0)
	}
	return g.mutate(f)
}
