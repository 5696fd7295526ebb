package bpf_test

import (
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vxdp/vxdp/frames"
	"github.com/vxdp/vxdp/maps"
)

// An IPv6 underlay: local_ip6 and vtepA6, registered for vniA.
var (
	localIP6 = addr("fd00:192:168:248::1")
	vtepA6   = addr("fd00:192:168:248::2")
)

// withUnderlay6 switches the world to an IPv6 underlay.
func withUnderlay6(t *testing.T, w *world) {
	update(t, w, maps.Config, uint32(0), func(c *maps.ConfigValue) {
		c.Flags |= maps.ConfigUnderlayIPv6
		c.LocalIp = 0
		c.LocalIp6 = localIP6.As16()
	})
	w.put(t, maps.VTEPs6, maps.NewVNIAddr6(vniA, vtepA6), uint32(0))
	w.put(t, maps.FDB, maps.NewFDBKey(vniA, mac6(vmR.mac)), maps.NewRemoteFDBEntry(vtepA6))
}

// vxlan6From is inner in VXLAN over IPv6 from src to dst with a correct
// UDP checksum, unless edit changes the frame afterwards.
func vxlan6From(src, dst string, vni uint32, inner []byte) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: addr(src).AsSlice(), DstIP: addr(dst).AsSlice()}
	return frames.Build(frames.Ether(vtepAMAC, uplinkMAC, layers.EthernetTypeIPv6), ip, &layers.UDP{SrcPort: 51234, DstPort: vxlanPort},
		&layers.VXLAN{ValidIDFlag: true, VNI: vni}, gopacket.Payload(inner))
}

// TestUplinkIPv6Underlay: VXLAN over IPv6 in XDP: the same VTEP and VNI
// checks as over IPv4, and the UDP checksum (mandatory over IPv6, and
// the only check of the source address) verified before decapsulating,
// whatever the frame's length.
func TestUplinkIPv6Underlay(t *testing.T) {
	const outer = 14 + 40 + 8 + 8 // bytes before the inner frame
	toBPayload := func(n int) []byte {
		return frames.Build(frames.Ether(vmR.mac, vmB.mac, layers.EthernetTypeIPv4), frames.IPv4(vmR.ip, vmB.ip, layers.IPProtocolUDP),
			&layers.UDP{SrcPort: 40000, DstPort: 5201}, gopacket.Payload(make([]byte, n)))
	}
	valid := vxlan6From(vtepA6.String(), localIP6.String(), vniA, toB())
	runCases(t, progUplink, []testCase{
		{name: "from a registered VTEP: checksum verified, decapsulated", setup: withUnderlay6, in: valid,
			verdict: xdpRedirect, reason: "REDIRECT_LOCAL", want: toB()},
		{name: "odd length (a 1-byte payload)", setup: withUnderlay6, in: vxlan6From(vtepA6.String(), localIP6.String(), vniA, toBPayload(1)),
			verdict: xdpRedirect, reason: "REDIRECT_LOCAL", want: toBPayload(1)},
		{name: "MTU-sized (several chunks)", setup: withUnderlay6, in: vxlan6From(vtepA6.String(), localIP6.String(), vniA, toBPayload(1430-28)),
			verdict: xdpRedirect, reason: "REDIRECT_LOCAL", want: toBPayload(1430 - 28)},
		{name: "a wrong checksum drops", setup: withUnderlay6, in: frames.Edited(valid, frames.Put16(14+40+6, 0xbad0)),
			verdict: xdpDrop, reason: "DROP_UDP_CSUM"},
		{name: "a flipped bit in the inner frame drops", setup: withUnderlay6, in: frames.Edited(valid, frames.Put8(outer+30, valid[outer+30]^1)),
			verdict: xdpDrop, reason: "DROP_UDP_CSUM"},
		{name: "a zero checksum is the kernel's to judge", setup: withUnderlay6, in: frames.Edited(valid, frames.Put16(14+40+6, 0)),
			verdict: xdpPass, reason: "PASS_UDP_CSUM"},
		{name: "an unregistered VTEP drops", setup: withUnderlay6, in: vxlan6From("fd00:192:168:248::9", localIP6.String(), vniA, toB()),
			verdict: xdpDrop, reason: "DROP_VTEP_UNKNOWN"},
		{name: "on a provider network's interface, from a registered VTEP: dropped", setup: offUplink(withUnderlay6), in: valid,
			verdict: xdpDrop, reason: "DROP_NOT_UPLINK"},
		{name: "not to local_ip drops", setup: withUnderlay6, in: vxlan6From(vtepA6.String(), "fd00:192:168:248::7", vniA, toB()),
			verdict: xdpDrop, reason: "DROP_NOT_LOCAL"},
		{name: "a VNI not served here passes", setup: withUnderlay6, in: vxlan6From(vtepA6.String(), localIP6.String(), vniOther, toB()),
			verdict: xdpPass, reason: "PASS_VNI_UNKNOWN"},
		{name: "inner TCP: the kernel's GRO first", setup: withUnderlay6,
			in:      vxlan6From(vtepA6.String(), localIP6.String(), vniA, frames.TCP4(vmR.mac, vmB.mac, vmR.ip, vmB.ip, 40000, 64)),
			verdict: xdpPass, reason: "PASS_TCP_GRO"},
		{name: "VXLAN over IPv4 is not the underlay's", setup: withUnderlay6, in: vxlanTo(vmR, toB(), nil),
			verdict: xdpPass, reason: "PASS_NOT_IPV4"},
	})
}

// TestPortIPv6Underlay: over an IPv6 underlay a remote port is reached
// through the network's vxlan device (the kernel adds the checksummed
// IPv6/UDP headers); the frame leaves the program unchanged.
func TestPortIPv6Underlay(t *testing.T) {
	in := fromA(vmR)
	runCases(t, progPort, []testCase{
		{name: "to a remote port: to the vxlan device", setup: withUnderlay6, in: in, verdict: tcRedirect, reason: "REDIRECT_REMOTE_KERNEL", want: in},
	})
}
