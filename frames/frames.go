// Package frames builds Ethernet frames from gopacket layers, so a reader
// sees headers rather than byte literals: the one frame kit of the BPF
// tests, the fuzz model, the lab's traffic and the benchmarks. Frames come
// out as a sender would put them on a wire (lengths and checksums
// computed, short frames padded); Edit changes what gopacket will not
// build (truncation, bad lengths, garbage).
package frames

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// VXLANPort is the Linux default VXLAN port, the seed's.
const VXLANPort = 8472

func init() {
	// Let gopacket decode the Linux vxlan port in dumps.
	layers.RegisterUDPPortLayerType(VXLANPort, layers.LayerTypeVXLAN)
}

// Offsets in a VXLAN frame whose outer IPv4 header has no options.
const (
	EthLen   = 14
	OffIP    = EthLen
	OffUDP   = OffIP + 20
	OffVXLAN = OffUDP + 8
	OffInner = OffVXLAN + 8
)

// Well-known addresses.
var (
	Broadcast = MAC("ff:ff:ff:ff:ff:ff")
	Multicast = MAC("01:00:5e:00:00:fb") // 224.0.0.251 (mDNS)
	ZeroMAC   = MAC("00:00:00:00:00:00")
	// AllNodes is ff02::1's MAC, AllRouters ff02::2's.
	AllNodesMAC = MAC("33:33:00:00:00:01")
	// LLDP is an IEEE 802.1D link-local group address.
	LLDP = MAC("01:80:c2:00:00:0e")
)

// MAC parses a MAC address or panics (for literals).
func MAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// Build serializes layers the way a sender would: lengths and checksums
// computed (a transport layer gets the network layer before it for its
// pseudo-header). Ethernet frames shorter than 60 bytes get zero padding.
func Build(ls ...gopacket.SerializableLayer) []byte {
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

// ZeroCsumUDP is a UDP header sent with checksum 0, as the kernel vxlan
// device does over IPv4 unless udpcsum is on.
type ZeroCsumUDP struct{ *layers.UDP }

func (u ZeroCsumUDP) SerializeTo(b gopacket.SerializeBuffer, o gopacket.SerializeOptions) error {
	o.ComputeChecksums = false
	u.Checksum = 0
	return u.UDP.SerializeTo(b, o)
}

// Ether is an Ethernet header.
func Ether(src, dst net.HardwareAddr, typ layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: typ}
}

// IPv4 is an IPv4 header with DF set and TTL 64.
func IPv4(src, dst netip.Addr, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
}

// IPv6 is an IPv6 header with hop limit 64.
func IPv6(src, dst netip.Addr, next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, NextHeader: next, HopLimit: 64, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
}

// Payload is n bytes that differ per position, so shifted data shows.
func Payload(n int) gopacket.Payload {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i)
	}
	return p
}

// TCP4 is a TCP segment with n payload bytes, srcMAC/src:sport -> dstMAC/dst:80.
func TCP4(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, sport uint16, n int) []byte {
	return Build(Ether(srcMAC, dstMAC, layers.EthernetTypeIPv4), IPv4(src, dst, layers.IPProtocolTCP),
		&layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: 80, Seq: 1, ACK: true, PSH: true, Ack: 1, Window: 502},
		Payload(n))
}

// TCP6 is TCP4 over IPv6.
func TCP6(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, sport uint16, n int) []byte {
	return Build(Ether(srcMAC, dstMAC, layers.EthernetTypeIPv6), IPv6(src, dst, layers.IPProtocolTCP),
		&layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: 80, Seq: 1, ACK: true, PSH: true, Ack: 1, Window: 502},
		Payload(n))
}

// UDP4 is a UDP datagram with a 32-byte payload.
func UDP4(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16) []byte {
	return Build(Ether(srcMAC, dstMAC, layers.EthernetTypeIPv4), IPv4(src, dst, layers.IPProtocolUDP),
		&layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}, Payload(32))
}

// UDP6 is an IPv6 UDP datagram with a 40-byte payload.
func UDP6(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16) []byte {
	return Build(Ether(srcMAC, dstMAC, layers.EthernetTypeIPv6), IPv6(src, dst, layers.IPProtocolUDP),
		&layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}, Payload(40))
}

// DHCPDiscover is a DHCP discover's IP/UDP framing: 0.0.0.0:68 -> 255.255.255.255:67.
func DHCPDiscover(srcMAC net.HardwareAddr) []byte {
	return UDP4(srcMAC, Broadcast, netip.IPv4Unspecified(), netip.MustParseAddr("255.255.255.255"), 68, 67)
}

// ICMPv6 is an ICMPv6 message (hop limit 255, as ND requires) with body
// after the 4-byte type/code/checksum header.
func ICMPv6(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, typ, code uint8, body []byte) []byte {
	ip := IPv6(src, dst, layers.IPProtocolICMPv6)
	ip.HopLimit = 255
	return Build(Ether(srcMAC, dstMAC, layers.EthernetTypeIPv6), ip,
		&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}, gopacket.Payload(body))
}

// ICMPv6 types.
const (
	ICMPv6MLDReport  = 131
	ICMPv6RouterAdv  = 134
	ICMPv6NeighSol   = 135
	ICMPv6NeighAdv   = 136
	ICMPv6MLD2Report = 143
)

// ndBody is a neighbour solicitation/advertisement body: 4 bytes of flags
// and the target address.
func ndBody(flags uint32, target netip.Addr) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint32(b, flags)
	t := target.As16()
	copy(b[4:], t[:])
	return b
}

// NeighborAdvert is an unsolicited advertisement "target is at srcMAC".
func NeighborAdvert(srcMAC net.HardwareAddr, src, target netip.Addr) []byte {
	return ICMPv6(srcMAC, AllNodesMAC, src, netip.MustParseAddr("ff02::1"), ICMPv6NeighAdv, 0, ndBody(0x20000000, target))
}

// DADProbe is duplicate address detection for target: a solicitation
// from :: to target's solicited-node group.
func DADProbe(srcMAC net.HardwareAddr, target netip.Addr) []byte {
	t := target.As16()
	group := netip.AddrFrom16([16]byte{0xff, 0x02, 11: 1, 12: 0xff, 13: t[13], 14: t[14], 15: t[15]})
	dst := net.HardwareAddr{0x33, 0x33, 0xff, t[13], t[14], t[15]}
	return ICMPv6(srcMAC, dst, netip.IPv6Unspecified(), group, ICMPv6NeighSol, 0, ndBody(0, target))
}

// RouterAdvert is a router advertisement to all nodes.
func RouterAdvert(srcMAC net.HardwareAddr, src netip.Addr) []byte {
	return ICMPv6(srcMAC, AllNodesMAC, src, netip.MustParseAddr("ff02::1"), ICMPv6RouterAdv, 0, make([]byte, 12))
}

// Tagged inserts VLAN tags after the Ethernet addresses: one 802.1Q tag,
// or an 802.1ad outer tag and an 802.1Q inner one, with these VLAN ids.
func Tagged(frame []byte, vids ...uint16) []byte {
	out := append([]byte(nil), frame[:12]...)
	for i, vid := range vids {
		tpid := uint16(0x8100)
		if len(vids) > 1 && i == 0 {
			tpid = 0x88a8
		}
		out = binary.BigEndian.AppendUint16(out, tpid)
		out = binary.BigEndian.AppendUint16(out, vid)
	}
	return append(out, frame[12:]...)
}

// ARP is an Ethernet/IPv4 ARP message.
type ARP struct {
	Op       uint16
	Eth      *layers.Ethernet
	SHA, THA net.HardwareAddr
	SPA, TPA netip.Addr
}

// Bytes serializes the message.
func (a ARP) Bytes() []byte {
	return Build(a.Eth, &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: a.Op,
		SourceHwAddress: a.SHA, SourceProtAddress: a.SPA.AsSlice(), DstHwAddress: a.THA, DstProtAddress: a.TPA.AsSlice()})
}

// ARPRequest is a broadcast who-has tpa from sha/spa.
func ARPRequest(sha net.HardwareAddr, spa, tpa netip.Addr) ARP {
	return ARP{Op: layers.ARPRequest, Eth: Ether(sha, Broadcast, layers.EthernetTypeARP), SHA: sha, SPA: spa, THA: ZeroMAC, TPA: tpa}
}

// ARPReply is the unicast answer "spa is at sha" to tha/tpa.
func ARPReply(sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) ARP {
	return ARP{Op: layers.ARPReply, Eth: Ether(sha, tha, layers.EthernetTypeARP), SHA: sha, SPA: spa, THA: tha, TPA: tpa}
}

// VXLAN is the outer Ethernet/IPv4/UDP/VXLAN around an inner frame.
// Change fields before serializing.
type VXLAN struct {
	Eth   layers.Ethernet
	IP    layers.IPv4
	UDP   layers.UDP
	VX    layers.VXLAN
	Inner []byte
	// UDPCsum computes the outer UDP checksum; by default it is 0, as the
	// kernel vxlan device sends over IPv4.
	UDPCsum bool
}

// FromVTEP is what a Linux VTEP at src (MAC srcMAC) sends to dst (dstMAC)
// for vni: DF clear, UDP checksum 0, to port 8472.
func FromVTEP(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, vni uint32, inner []byte) *VXLAN {
	return &VXLAN{
		Eth:   *Ether(srcMAC, dstMAC, layers.EthernetTypeIPv4),
		IP:    layers.IPv4{Version: 4, TTL: 64, Id: 0x4242, Protocol: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()},
		UDP:   layers.UDP{SrcPort: 51234, DstPort: VXLANPort},
		VX:    layers.VXLAN{ValidIDFlag: true, VNI: vni},
		Inner: inner,
	}
}

// Bytes serializes the packet.
func (p *VXLAN) Bytes() []byte {
	var udp gopacket.SerializableLayer = ZeroCsumUDP{&p.UDP}
	if p.UDPCsum {
		udp = &p.UDP
	}
	return Build(&p.Eth, &p.IP, udp, &p.VX, gopacket.Payload(p.Inner))
}

// OuterSrcPort is the UDP source port of a VXLAN frame (outer IPv4 without options).
func OuterSrcPort(b []byte) uint16 {
	if len(b) < OffUDP+2 {
		return 0
	}
	return binary.BigEndian.Uint16(b[OffUDP:])
}

// Edit changes a serialized frame, for what gopacket will not build.
type Edit func([]byte) []byte

// Truncate cuts the frame to n bytes.
func Truncate(n int) Edit { return func(b []byte) []byte { return b[:n] } }

// Append adds n zero bytes.
func Append(n int) Edit {
	return func(b []byte) []byte { return append(b, make([]byte, n)...) }
}

// Put8 sets the byte at off.
func Put8(off int, v byte) Edit {
	return func(b []byte) []byte { b[off] = v; return b }
}

// Put16 sets the big-endian 16 bits at off.
func Put16(off int, v uint16) Edit {
	return func(b []byte) []byte { binary.BigEndian.PutUint16(b[off:], v); return b }
}

// Edited returns a copy of b with the edits applied in order.
func Edited(b []byte, edits ...Edit) []byte {
	b = bytes.Clone(b)
	for _, e := range edits {
		b = e(b)
	}
	return b
}

// Decode describes a frame layer by layer, for failure messages.
func Decode(b []byte) string {
	return gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default).Dump()
}

// Diff describes how got differs from want ("" when equal), both decoded.
func Diff(got, want []byte) string {
	if bytes.Equal(got, want) {
		return ""
	}
	at := 0
	for at < len(got) && at < len(want) && got[at] == want[at] {
		at++
	}
	return fmt.Sprintf("output differs at byte %d (got %d bytes, want %d)\ngot:\n%s\nwant:\n%s", at, len(got), len(want), Decode(got), Decode(want))
}

// TCP flags for Segment.
const (
	FIN = 1 << iota
	SYN
	RST
	PSH
	ACK
)

// Segment is a TCP segment over IPv4 or IPv6 (by the addresses) with
// the given flags and n payload bytes.
func Segment(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, flags, n int) []byte {
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: 1, Window: 502,
		FIN: flags&FIN != 0, SYN: flags&SYN != 0, RST: flags&RST != 0, PSH: flags&PSH != 0, ACK: flags&ACK != 0}
	if flags&ACK != 0 {
		tcp.Ack = 1
	}
	if src.Is4() {
		return Build(Ether(srcMAC, dstMAC, layers.EthernetTypeIPv4), IPv4(src, dst, layers.IPProtocolTCP), tcp, Payload(n))
	}
	return Build(Ether(srcMAC, dstMAC, layers.EthernetTypeIPv6), IPv6(src, dst, layers.IPProtocolTCP), tcp, Payload(n))
}

// Echo is an ICMP echo request (reply when reply is set) with identifier
// id, over IPv4 or IPv6 by the addresses.
func Echo(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, id uint16, reply bool) []byte {
	if src.Is4() {
		typ := uint8(layers.ICMPv4TypeEchoRequest)
		if reply {
			typ = layers.ICMPv4TypeEchoReply
		}
		return Build(Ether(srcMAC, dstMAC, layers.EthernetTypeIPv4), IPv4(src, dst, layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: 1}, Payload(16))
	}
	typ := uint8(layers.ICMPv6TypeEchoRequest)
	if reply {
		typ = layers.ICMPv6TypeEchoReply
	}
	body := binary.BigEndian.AppendUint16(nil, id)
	body = binary.BigEndian.AppendUint16(body, 1)
	return ICMPv6(srcMAC, dstMAC, src, dst, typ, 0, append(body, Payload(16)...))
}

// Unreachable is an ICMP destination unreachable (port unreachable) from
// src to dst quoting the IP packet of frame quoted (IPv4 only).
func Unreachable(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, quoted []byte) []byte {
	q := quoted[EthLen:]
	if len(q) > 28 {
		q = q[:28]
	}
	return Build(Ether(srcMAC, dstMAC, layers.EthernetTypeIPv4), IPv4(src, dst, layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort)},
		gopacket.Payload(q))
}
