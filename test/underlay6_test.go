package test

import (
	"bytes"
	be "encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vxdp/vxdp/frames"
	"github.com/vxdp/vxdp/lab"
)

// TestIPv6Underlay: VXLAN over IPv6 (local_ip fd00:192:168:248::<n>):
// ping and TCP across nodes over the BPF path and with node4 on the
// kernel path (a mixed fleet), UDP checksums on the wire as RFC 6935 and
// the kernel vxlan device want, and the per-VNI VTEP check in XDP: an
// unregistered IPv6 VTEP and a corrupted checksum are dropped.
func TestIPv6Underlay(t *testing.T) {
	for _, dp := range []string{lab.DataplaneBPF, lab.DataplaneKernel} {
		t.Run("node4 "+dp, func(t *testing.T) {
			l := newLab(t, lab.Config{IPv6Underlay: true, Dataplane: map[string]string{"node4": dp}})
			// The first packets wait for the underlay's neighbour discovery.
			for _, w := range [][2]lab.Port{{lab.VM2, lab.VM1}, {lab.VM1, lab.VM2}} {
				lab.Ping(l.PortNS(w[0]), w[1].IP, 1, 0, 3*time.Second)
			}
			wire, err := lab.StartCapture(l.NS("underlay"), "node4")
			if err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, l, "node3", "node4")
			ping(t, l, lab.VM2, lab.VM1.IP.String(), 5)
			ping(t, l, lab.VM1, lab.VM2.IP.String(), 5)
			after := snapshot(t, l, "node3", "node4")
			onWire, err := wire.Stop()
			if err != nil {
				t.Fatal(err)
			}
			vx, zero := vxlan6(onWire)
			if vx < 20 || zero != 0 {
				t.Errorf("the wire to node4 carried %d VXLAN-over-IPv6 frames (%d with a zero UDP checksum), want the 20 of the pings, all checksummed", vx, zero)
			}
			if p, _ := grown(before, after, "node3", "port", "REDIRECT_REMOTE_KERNEL"); p < 10 {
				t.Errorf("node3 sent %d echoes through its vxlan device from BPF, want 10 (grown:%s)", p, nonZeroGrowth(before, after, "node3"))
			}
			if p, _ := grown(before, after, "node3", "uplink", "REDIRECT_LOCAL"); p < 10 {
				t.Errorf("node3 decapsulated %d echoes in XDP, want 10 (grown:%s)", p, nonZeroGrowth(before, after, "node3"))
			}
			transfer(t, l, lab.VM2, lab.VM1, 4<<20)
			transfer(t, l, lab.VM1, lab.VM2, 4<<20)
			if dp != lab.DataplaneBPF {
				return
			}

			// Forgeries on node4's underlay NIC, from node1's: a VTEP no
			// network registered, and node3's address with a bad checksum.
			inner := frames.UDP4(lab.VM2.MAC[:], lab.VM1.MAC[:], lab.VM2.IP, lab.VM1.IP, 40000, 9)
			stray := vxlan6Frame(mustAddr("fd00:192:168:248::9"), l.VTEP("node4"), 100, inner, false)
			bad := vxlan6Frame(l.VTEP("node3"), l.VTEP("node4"), 100, inner, true)
			before = snapshot(t, l, "node4")
			for _, f := range [][]byte{stray, bad} {
				sendFrame(t, l.NS("node1"), lab.VTEPDev, f)
			}
			waitGrown(t, l, before, "node4", "uplink", "DROP_VTEP_UNKNOWN", 1)
			waitGrown(t, l, before, "node4", "uplink", "DROP_UDP_CSUM", 1)
		})
	}
}

// vxlan6 counts VXLAN-over-IPv6 frames and those of them with a zero UDP checksum.
func vxlan6(fs []lab.Frame) (n, zero int) {
	for _, f := range fs {
		d := f.Data
		if len(d) >= 14+40+8 && be.BigEndian.Uint16(d[12:]) == 0x86dd && d[14+6] == 17 && be.BigEndian.Uint16(d[14+40+2:]) == lab.VXLANPort {
			n++
			if be.BigEndian.Uint16(d[14+40+6:]) == 0 {
				zero++
			}
		}
	}
	return n, zero
}

// vxlan6Frame is inner in VXLAN over IPv6 from src to dst, to node4's
// MAC-less underlay (broadcast, as the test cannot know it), with a
// correct UDP checksum or a corrupted one.
func vxlan6Frame(src, dst netip.Addr, vni uint32, inner []byte, corrupt bool) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	udp := &layers.UDP{SrcPort: 51234, DstPort: lab.VXLANPort}
	b := frames.Build(frames.Ether(frames.MAC("02:00:00:00:66:01"), frames.Broadcast, layers.EthernetTypeIPv6), ip, udp,
		&layers.VXLAN{ValidIDFlag: true, VNI: vni}, gopacket.Payload(inner))
	if corrupt {
		b[14+40+6] ^= 0x55
	}
	return bytes.Clone(b)
}
