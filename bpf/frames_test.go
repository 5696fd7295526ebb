package bpf_test

// Frame builders: every test frame is built from gopacket layers, so a
// reader sees the headers rather than byte literals.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func init() {
	// Let gopacket decode the Linux vxlan port in failure dumps.
	layers.RegisterUDPPortLayerType(vxlanPort, layers.LayerTypeVXLAN)
}

// Offsets in an encapsulated frame (outer IPv4 without options).
const (
	ethHeaderLen = 14
	offIP        = ethHeaderLen
	offUDP       = offIP + 20
	offVXLAN     = offUDP + 8
	offInner     = offVXLAN + 8
)

var (
	broadcastMAC = mac("ff:ff:ff:ff:ff:ff")
	multicastMAC = mac("01:00:5e:00:00:fb") // 224.0.0.251 (mDNS)
	zeroMAC      = mac("00:00:00:00:00:00")
)

// frame serializes layers the way a sender would: lengths and checksums
// computed. Ethernet frames shorter than 60 bytes get zero padding.
func frame(ls ...gopacket.SerializableLayer) []byte {
	for i, l := range ls {
		if nl, ok := l.(interface {
			SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
		}); ok && i > 0 {
			if ip, ok := ls[i-1].(gopacket.NetworkLayer); ok {
				if err := nl.SetNetworkLayerForChecksum(ip); err != nil {
					panic(err)
				}
			}
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		panic(fmt.Sprintf("serialize %v: %v", ls, err))
	}
	return bytes.Clone(buf.Bytes())
}

// zeroCsumUDP is a UDP header sent with checksum 0, as the kernel vxlan
// device does over IPv4 unless udpcsum is on.
type zeroCsumUDP struct{ *layers.UDP }

func (u zeroCsumUDP) SerializeTo(b gopacket.SerializeBuffer, o gopacket.SerializeOptions) error {
	o.ComputeChecksums = false
	u.Checksum = 0
	return u.UDP.SerializeTo(b, o)
}

func ether(src, dst net.HardwareAddr, typ layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: typ}
}

func ipv4(src, dst netip.Addr, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
}

// payload is n bytes that differ per position, so shifted data shows.
func payload(n int) gopacket.Payload {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i)
	}
	return p
}

// tcp4 is a TCP segment with n payload bytes, srcMAC/src:sport -> dstMAC/dst:80.
func tcp4(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, sport uint16, n int) []byte {
	return frame(ether(srcMAC, dstMAC, layers.EthernetTypeIPv4), ipv4(src, dst, layers.IPProtocolTCP),
		&layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: 80, Seq: 1, ACK: true, PSH: true, Ack: 1, Window: 502},
		payload(n))
}

// udp4 is a UDP datagram with a small payload.
func udp4(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16) []byte {
	return frame(ether(srcMAC, dstMAC, layers.EthernetTypeIPv4), ipv4(src, dst, layers.IPProtocolUDP),
		&layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}, payload(32))
}

// dhcpDiscover is a DHCP discover's IP/UDP framing: 0.0.0.0:68 -> 255.255.255.255:67.
func dhcpDiscover(srcMAC net.HardwareAddr) []byte {
	return udp4(srcMAC, broadcastMAC, netip.IPv4Unspecified(), netip.MustParseAddr("255.255.255.255"), 68, 67)
}

// udp6 is an IPv6 UDP datagram between link-local addresses.
func udp6(srcMAC, dstMAC net.HardwareAddr) []byte {
	return frame(ether(srcMAC, dstMAC, layers.EthernetTypeIPv6),
		&layers.IPv6{Version: 6, NextHeader: layers.IPProtocolUDP, HopLimit: 64,
			SrcIP: net.ParseIP("fe80::f816:3eff:fe00:a"), DstIP: net.ParseIP("fe80::f816:3eff:fe00:10a")},
		&layers.UDP{SrcPort: 5000, DstPort: 5001}, payload(40))
}

// vlanTCP is tcp4 carried in an 802.1Q tag (VLAN 10).
func vlanTCP(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr) []byte {
	return frame(ether(srcMAC, dstMAC, layers.EthernetTypeDot1Q),
		&layers.Dot1Q{VLANIdentifier: 10, Type: layers.EthernetTypeIPv4}, ipv4(src, dst, layers.IPProtocolTCP),
		&layers.TCP{SrcPort: 40000, DstPort: 80, Window: 502}, payload(16))
}

// arpMsg is an Ethernet/IPv4 ARP message.
type arpMsg struct {
	op       uint16
	eth      *layers.Ethernet
	sha, tha net.HardwareAddr
	spa, tpa netip.Addr
}

func (a arpMsg) bytes() []byte {
	return frame(a.eth, &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: a.op,
		SourceHwAddress: a.sha, SourceProtAddress: a.spa.AsSlice(), DstHwAddress: a.tha, DstProtAddress: a.tpa.AsSlice()})
}

// arpRequest is a broadcast who-has tpa from sha/spa.
func arpRequest(sha net.HardwareAddr, spa, tpa netip.Addr) arpMsg {
	return arpMsg{op: layers.ARPRequest, eth: ether(sha, broadcastMAC, layers.EthernetTypeARP), sha: sha, spa: spa, tha: zeroMAC, tpa: tpa}
}

// arpReply is the unicast answer "spa is at sha" to tha/tpa.
func arpReply(sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) arpMsg {
	return arpMsg{op: layers.ARPReply, eth: ether(sha, tha, layers.EthernetTypeARP), sha: sha, spa: spa, tha: tha, tpa: tpa}
}

// vxlanPacket is the outer Ethernet/IPv4/UDP/VXLAN around an inner frame.
// Tests change fields before serializing.
type vxlanPacket struct {
	eth   layers.Ethernet
	ip    layers.IPv4
	udp   layers.UDP
	vx    layers.VXLAN
	inner []byte
}

// fromVTEP is what a Linux VTEP at src sends us for vni: DF clear, UDP
// checksum 0, to local_ip:8472.
func fromVTEP(src netip.Addr, vni uint32, inner []byte) *vxlanPacket {
	return &vxlanPacket{
		eth:   *ether(mac("02:00:c0:a8:f8:02"), uplinkMAC, layers.EthernetTypeIPv4),
		ip:    layers.IPv4{Version: 4, TTL: outerTTL, Id: 0x4242, Protocol: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: localIP.AsSlice()},
		udp:   layers.UDP{SrcPort: 51234, DstPort: vxlanPort},
		vx:    layers.VXLAN{ValidIDFlag: true, VNI: vni},
		inner: inner,
	}
}

// encapOf is the frame the port program must produce for inner to vtep:
// outer MACs left for bpf_redirect_neigh (source: the uplink's), IPv4 with
// ihl 5, tos 0, DF clear, TTL from config.
func encapOf(inner []byte, vni uint32, vtep netip.Addr, ipID, srcPort uint16) []byte {
	p := vxlanPacket{
		eth:   *ether(uplinkMAC, zeroMAC, layers.EthernetTypeIPv4),
		ip:    layers.IPv4{Version: 4, TTL: outerTTL, Id: ipID, Protocol: layers.IPProtocolUDP, SrcIP: localIP.AsSlice(), DstIP: vtep.AsSlice()},
		udp:   layers.UDP{SrcPort: layers.UDPPort(srcPort), DstPort: vxlanPort},
		vx:    layers.VXLAN{ValidIDFlag: true, VNI: vni},
		inner: inner,
	}
	return p.bytes()
}

func (p *vxlanPacket) bytes() []byte {
	return frame(&p.eth, &p.ip, zeroCsumUDP{&p.udp}, &p.vx, gopacket.Payload(p.inner))
}

// outerSrcPort is the UDP source port of an encapsulated frame.
func outerSrcPort(b []byte) uint16 {
	if len(b) < offUDP+2 {
		return 0
	}
	return binary.BigEndian.Uint16(b[offUDP:])
}

// Edits of serialized frames, for what gopacket will not build.
type edit func([]byte) []byte

func truncate(n int) edit { return func(b []byte) []byte { return b[:n] } }

func appendBytes(n int) edit {
	return func(b []byte) []byte { return append(b, make([]byte, n)...) }
}

func put8(off int, v byte) edit {
	return func(b []byte) []byte { b[off] = v; return b }
}

func put16(off int, v uint16) edit {
	return func(b []byte) []byte { binary.BigEndian.PutUint16(b[off:], v); return b }
}

func edited(b []byte, edits ...edit) []byte {
	b = bytes.Clone(b)
	for _, e := range edits {
		b = e(b)
	}
	return b
}

// diffFrames describes how got differs from want, with both decoded.
func diffFrames(t *testing.T, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	at := 0
	for at < len(got) && at < len(want) && got[at] == want[at] {
		at++
	}
	t.Errorf("output differs at byte %d (got %d bytes, want %d)\ngot:\n%s\nwant:\n%s", at, len(got), len(want), decode(got), decode(want))
}

func decode(b []byte) string {
	return gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default).Dump()
}
