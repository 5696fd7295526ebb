package maps

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
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

// Before and After are the frame as the program saw it and left it.
func Before(e MonEvent) []byte { return e.Before[:min(int(e.BeforeLen), len(e.Before))] }
func After(e MonEvent) []byte  { return e.After[:min(int(e.AfterLen), len(e.After))] }

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
