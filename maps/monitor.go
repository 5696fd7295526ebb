package maps

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func init() {
	// Decode VXLAN on the Linux port too, to show the inner frame.
	layers.RegisterUDPPortLayerType(8472, layers.LayerTypeVXLAN)
}

// Monitor reads the programs' decisions while it runs: it turns emission
// on in the config map (drops only, or every decision) and off again on
// Close. Nothing is emitted while no monitor runs.
type Monitor struct {
	set   *Set
	rd    *ringbuf.Reader
	flag  uint8
	clock time.Time // wall time of monotonic zero
}

// StartMonitor starts reading events from set's programs.
func StartMonitor(set *Set, trace bool) (*Monitor, error) {
	rd, err := ringbuf.NewReader(set.Map(Events))
	if err != nil {
		return nil, fmt.Errorf("open events: %w", err)
	}
	m := &Monitor{set: set, rd: rd, flag: MonitorDrops}
	if trace {
		m.flag = MonitorTrace
	}
	m.clock = time.Now().Add(-time.Duration(MonotonicNow()))
	var c ConfigValue
	if err := set.Map(Config).Lookup(uint32(0), &c); err == nil && BE16(c.VxlanPort) != 0 {
		// Decode VXLAN on the agent's port too, whatever it is.
		layers.RegisterUDPPortLayerType(layers.UDPPort(BE16(c.VxlanPort)), layers.LayerTypeVXLAN)
	}
	if err := m.setFlag(true); err != nil {
		rd.Close()
		return nil, err
	}
	return m, nil
}

func (m *Monitor) setFlag(on bool) error {
	var c ConfigValue
	cm := m.set.Map(Config)
	if err := cm.Lookup(uint32(0), &c); err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if on {
		c.Flags |= m.flag
	} else {
		c.Flags &^= m.flag
	}
	if err := cm.Update(uint32(0), c, ebpf.UpdateExist); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// SetDeadline makes Read return os.ErrDeadlineExceeded after t.
func (m *Monitor) SetDeadline(t time.Time) { m.rd.SetDeadline(t) }

// Read returns the next event.
func (m *Monitor) Read() (MonEvent, error) {
	var e MonEvent
	rec, err := m.rd.Read()
	if err != nil {
		return e, err
	}
	if err := binary.Read(bytes.NewReader(rec.RawSample), binary.NativeEndian, &e); err != nil {
		return e, fmt.Errorf("decode event: %w", err)
	}
	return e, nil
}

// Time is the wall-clock time of an event.
func (m *Monitor) Time(e MonEvent) time.Time { return m.clock.Add(time.Duration(e.TsNs)) }

// Close turns emission off and stops reading.
func (m *Monitor) Close() error {
	return errors.Join(m.setFlag(false), m.rd.Close())
}

// Before and After are the frame's bytes as the program saw it and left it.
func Before(e MonEvent) []byte { return e.Before[:min(int(e.BeforeLen), len(e.Before))] }
func After(e MonEvent) []byte  { return e.After[:min(int(e.AfterLen), len(e.After))] }

// VLANTag is an 802.1Q (or 802.1ad) tag.
type VLANTag struct {
	Proto uint16 // TPID: 0x8100 or 0x88a8
	TCI   uint16 // priority, DEI and VLAN id
}

// ID is the tag's VLAN id.
func (t VLANTag) ID() uint16 { return t.TCI & 0xfff }

// Tags are the VLAN tags of the frame on entry and on exit (nil: none):
// the one the kernel held outside the frame's bytes (a tag the driver
// stripped, one bpf_skb_vlan_push added), else one in the frame.
func Tags(e MonEvent) (before, after *VLANTag) {
	return tagOf(e.BeforeVlanProto, e.BeforeVlanTci, Before(e)), tagOf(e.AfterVlanProto, e.AfterVlanTci, After(e))
}

func tagOf(proto, tci uint16, frame []byte) *VLANTag {
	if proto != 0 {
		return &VLANTag{Proto: proto, TCI: tci}
	}
	if len(frame) >= 18 {
		if p := binary.BigEndian.Uint16(frame[12:]); p == 0x8100 || p == 0x88a8 {
			return &VLANTag{Proto: p, TCI: binary.BigEndian.Uint16(frame[14:])}
		}
	}
	return nil
}

// BeforeOnWire and AfterOnWire are the frame as on the wire: with the tag
// the kernel held outside its bytes put back after the MAC addresses.
func BeforeOnWire(e MonEvent) []byte { return withTag(Before(e), e.BeforeVlanProto, e.BeforeVlanTci) }
func AfterOnWire(e MonEvent) []byte  { return withTag(After(e), e.AfterVlanProto, e.AfterVlanTci) }

func withTag(frame []byte, proto, tci uint16) []byte {
	if proto == 0 || len(frame) < 12 {
		return frame
	}
	out := make([]byte, 0, len(frame)+4)
	out = append(out, frame[:12]...)
	out = binary.BigEndian.AppendUint16(out, proto)
	out = binary.BigEndian.AppendUint16(out, tci)
	return append(out, frame[12:]...)
}

// Outer are the outer addresses of a tunnelled frame: the sending and the
// receiving VTEP. They come from the event where the program noted them
// (the vxlan program, which sees what the kernel decapsulated), else from
// the frame on entry (decapsulation, or a drop, on the uplink) or on exit
// (encapsulation) when it is VXLAN. Invalid: no tunnel in sight.
func Outer(e MonEvent) (src, dst netip.Addr) {
	switch e.OuterFamily {
	case 4:
		return netip.AddrFrom4([4]byte(e.OuterSrc[:4])), netip.AddrFrom4([4]byte(e.OuterDst[:4]))
	case 6:
		return netip.AddrFrom16(e.OuterSrc), netip.AddrFrom16(e.OuterDst)
	}
	for _, frame := range [][]byte{Before(e), After(e)} {
		if src, dst, ok := vxlanOuter(frame); ok {
			return src, dst
		}
	}
	return netip.Addr{}, netip.Addr{}
}

// vxlanOuter returns the addresses of the IP header carrying VXLAN.
func vxlanOuter(frame []byte) (src, dst netip.Addr, ok bool) {
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
	for _, l := range p.Layers() {
		switch v := l.(type) {
		case *layers.IPv4:
			src, _ = netip.AddrFromSlice(v.SrcIP.To4())
			dst, _ = netip.AddrFromSlice(v.DstIP.To4())
		case *layers.IPv6:
			src, _ = netip.AddrFromSlice(v.SrcIP)
			dst, _ = netip.AddrFromSlice(v.DstIP)
		case *layers.VXLAN:
			return src, dst, src.IsValid()
		}
	}
	return netip.Addr{}, netip.Addr{}, false
}

// Summary describes a frame in one line: MACs, addresses, protocol and
// ports (of the inner frame for VXLAN, with its VNI).
func Summary(frame []byte) string {
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
	var parts []string
	var eths []*layers.Ethernet
	for _, l := range p.Layers() {
		switch v := l.(type) {
		case *layers.Ethernet:
			eths = append(eths, v)
		case *layers.VXLAN:
			parts = append(parts, fmt.Sprintf("vxlan %d:", v.VNI))
		}
	}
	if len(eths) > 0 {
		e := eths[len(eths)-1]
		parts = append(parts, fmt.Sprintf("%s > %s", e.SrcMAC, e.DstMAC))
	}
	net, tr := innerLayers(p)
	switch v := net.(type) {
	case *layers.IPv4:
		parts = append(parts, fmt.Sprintf("%s > %s %s", v.SrcIP, v.DstIP, transport(tr, v.Protocol.String())))
	case *layers.IPv6:
		parts = append(parts, fmt.Sprintf("%s > %s %s", v.SrcIP, v.DstIP, transport(tr, v.NextHeader.String())))
	case *layers.ARP:
		parts = append(parts, fmt.Sprintf("arp %s > %s", netIP(v.SourceProtAddress), netIP(v.DstProtAddress)))
	default:
		if len(eths) > 0 {
			parts = append(parts, eths[len(eths)-1].EthernetType.String())
		}
	}
	return strings.Join(parts, " ")
}

// innerLayers returns the last network layer and the transport after it.
func innerLayers(p gopacket.Packet) (net, tr gopacket.Layer) {
	for _, l := range p.Layers() {
		switch l.(type) {
		case *layers.IPv4, *layers.IPv6, *layers.ARP:
			net, tr = l, nil
		case *layers.TCP, *layers.UDP, *layers.ICMPv4, *layers.ICMPv6:
			tr = l
		}
	}
	return net, tr
}

func transport(tr gopacket.Layer, proto string) string {
	switch v := tr.(type) {
	case *layers.TCP:
		return fmt.Sprintf("tcp %d > %d", v.SrcPort, v.DstPort)
	case *layers.UDP:
		return fmt.Sprintf("udp %d > %d", v.SrcPort, v.DstPort)
	case *layers.ICMPv4:
		return "icmp " + v.TypeCode.String()
	case *layers.ICMPv6:
		return "icmpv6 " + v.TypeCode.String()
	}
	return strings.ToLower(proto)
}

func netIP(b []byte) string {
	if len(b) == 4 {
		return fmt.Sprintf("%d.%d.%d.%d", b[0], b[1], b[2], b[3])
	}
	return fmt.Sprintf("% x", b)
}
