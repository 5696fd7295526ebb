package test

import (
	"bytes"
	be "encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vxdp/vxdp/frames"
	"github.com/vxdp/vxdp/lab"
)

// TestProviderNetworks: the seed's vlan99 (VLAN 99 on eth1) and a flat
// network on eth3, across node3 and node4, over the BPF path (counters
// prove it), with the VLAN tag on the wire, to and from a machine of the
// physical network that is no port, and never meeting the VXLAN network
// whose addresses the flat network reuses.
func TestProviderNetworks(t *testing.T) {
	for _, dp := range []string{lab.DataplaneBPF, lab.DataplaneKernel} {
		t.Run("node4 "+dp, func(t *testing.T) {
			l := newLab(t, lab.Config{Control: lab.ControlFile, Provider: true, Dataplane: map[string]string{"node4": dp}})

			vlan99AcrossNodes(t, l, dp == lab.DataplaneBPF)

			// The flat network, across nodes; a TCP transfer too.
			ping(t, l, lab.VM7, lab.VM8.IP.String(), 3)
			transfer(t, l, lab.VM7, lab.VM8, 4<<20)

			// A host of the physical network (no port): the kernel bridge
			// path both ways, VLAN and flat.
			ping(t, l, lab.VM6, lab.PhysHostVLANIP.String(), 3)
			ping(t, l, lab.VM8, lab.PhysHostFlatIP.String(), 3)

			// Overlapping addresses: vm2 (VNI 100) and vm7 (flat) both ping
			// 172.16.100.12, each reaching only its own network's VM.
			seen := watch(t, l, []lab.Port{lab.VM1, lab.VM8}, func() {
				ping(t, l, lab.VM2, lab.VM1.IP.String(), 3)
				ping(t, l, lab.VM7, lab.VM8.IP.String(), 3)
			})
			for _, c := range []struct {
				in    lab.Port
				never lab.Port
			}{{lab.VM1, lab.VM7}, {lab.VM8, lab.VM2}} {
				for _, f := range seen[c.in.Name] {
					if bytes.Contains(f.Data, c.never.MAC[:]) {
						t.Errorf("%s saw a frame of %s (another network with the same addresses)", c.in.Name, c.never.Name)
						break
					}
				}
			}
		})
	}
}

// TestProviderIsolation: a VM on VLAN 99 cannot reach a port of another
// network by its MAC, nor its broadcasts leak, and the physical network
// cannot send into VLAN 99 as a local port.
func TestProviderIsolation(t *testing.T) {
	l := newLab(t, lab.Config{Control: lab.ControlFile, Provider: true})
	marker := []byte(fmt.Sprintf("provider-isolation-%d", time.Now().UnixNano()))
	bcast := []byte(fmt.Sprintf("provider-broadcast-%d", time.Now().UnixNano()))
	seen := watch(t, l, []lab.Port{lab.VM1, lab.VM8, lab.VM6}, func() {
		// vm5 (VLAN 99) to vm1's and vm8's MACs with their addresses.
		for _, dst := range []lab.Port{lab.VM1, lab.VM8} {
			if err := lab.SendFrame(l.PortNS(lab.VM5), lab.VMDev, udpFrame(lab.VM5, dst.MAC[:], dst.IP, marker)); err != nil {
				t.Fatal(err)
			}
		}
		// A broadcast on VLAN 99 reaches vm6 only.
		if err := lab.SendUDP(l.PortNS(lab.VM5), netip.AddrPortFrom(mustAddr("172.16.99.255"), 9), bcast); err != nil {
			t.Fatal(err)
		}
	})
	count := func(p lab.Port, m []byte) int {
		n := 0
		for _, f := range seen[p.Name] {
			if !f.Outgoing && bytes.Contains(f.Data, m) {
				n++
			}
		}
		return n
	}
	for _, p := range []lab.Port{lab.VM1, lab.VM8} {
		if n := count(p, marker) + count(p, bcast); n != 0 {
			t.Errorf("vm5's frames crossed networks: %s got %d", p.Name, n)
		}
	}
	// Unknown unicast floods within VLAN 99, as on a switch: vm6 sees
	// the two frames for MACs that are no port of it, and the broadcast.
	if count(lab.VM6, bcast) != 1 || count(lab.VM6, marker) != 2 {
		t.Errorf("vm6 got %d of vm5's broadcasts and %d of its unknown unicasts on VLAN 99, want 1 and 2", count(lab.VM6, bcast), count(lab.VM6, marker))
	}
}

// vlan99AcrossNodes pings vm5 -> vm6 (VLAN 99, node3 -> node4), watched
// on the wire (the physical switch's port to node4: node4's own eth1 does
// not see what its XDP program takes): tagged there, sent by node3's port
// program and, when node4 runs BPF, delivered by its uplink program.
func vlan99AcrossNodes(t *testing.T, l *lab.Lab, node4BPF bool) {
	t.Helper()
	wire, err := lab.StartCapture(l.NS("underlay"), lab.SwitchPort("node4"))
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, l, "node3", "node4")
	ping(t, l, lab.VM5, lab.VM6.IP.String(), 5)
	after := snapshot(t, l, "node3", "node4")
	onWire, err := wire.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if n := taggedICMP(onWire, 99); n < 10 {
		t.Errorf("the wire to node4 carried %d ICMP frames tagged with VLAN 99, want the 10 of the ping", n)
	}
	if p, _ := grown(before, after, "node3", "port", "REDIRECT_PROVIDER"); p < 5 {
		t.Errorf("node3 sent %d of vm5's echoes out of eth1 in BPF, want 5 (grown:%s)", p, nonZeroGrowth(before, after, "node3"))
	}
	if !node4BPF {
		return
	}
	if p, _ := grown(before, after, "node4", "uplink", "REDIRECT_FROM_PROVIDER"); p < 5 {
		t.Errorf("node4 delivered %d of vm5's echoes in XDP, want 5 (grown:%s)", p, nonZeroGrowth(before, after, "node4"))
	}
}

// udpFrame is a UDP datagram from port src to (mac, ip) carrying payload.
func udpFrame(src lab.Port, dstMAC net.HardwareAddr, dst netip.Addr, payload []byte) []byte {
	return frames.Build(frames.Ether(src.MAC[:], dstMAC, layers.EthernetTypeIPv4), frames.IPv4(src.IP, dst, layers.IPProtocolUDP),
		&layers.UDP{SrcPort: 40000, DstPort: 9}, gopacket.Payload(payload))
}

// taggedICMP counts frames with an 802.1Q tag of vid carrying ICMP.
func taggedICMP(fs []lab.Frame, vid uint16) int {
	n := 0
	for _, f := range fs {
		d := f.Data
		if len(d) >= 14+4+20 && be.BigEndian.Uint16(d[12:]) == 0x8100 && be.BigEndian.Uint16(d[14:])&0xfff == vid &&
			be.BigEndian.Uint16(d[16:]) == 0x0800 && d[18+9] == 1 {
			n++
		}
	}
	return n
}

// TestPhysicalHostCannotInject: a host of a physical network (here the
// lab's physhost) sends VXLAN from a registered VTEP's address (node4's) to
// node3's local_ip, VNI 100, with an inner frame to vm2: out of the flat
// network's eth3 and untagged on the VLAN trunk eth1. Only the tunnel
// interface carries VXLAN; the kernel's VXLAN socket, bound to any
// address, would take it from anywhere, and XDP runs before rp_filter.
func TestPhysicalHostCannotInject(t *testing.T) {
	l := newLab(t, lab.Config{Control: lab.ControlFile, Provider: true})
	setRPFilter(t, l, 2) // loose, as systemd sets it
	forged := func(dstMAC net.HardwareAddr, marker []byte) []byte {
		inner := frames.Build(frames.Ether(injectedSrc, vmMAC(lab.VM2), layers.EthernetType(injectedType)), gopacket.Payload(marker))
		return frames.FromVTEP(frames.MAC("02:00:00:00:99:09"), dstMAC, lab.NodeIP("node4"), lab.NodeIP("node3"), 100, inner).Bytes()
	}
	cases := []struct {
		name, dev string
		dstMAC    net.HardwareAddr
		dropped   uint64 // DROP_NOT_UPLINK on node3
	}{
		{"flat network's eth3, to its MAC", lab.ExternalDev, linkMAC(t, l.NS("node3"), lab.ExternalDev), 1},
		{"VLAN trunk eth1, untagged, to its MAC", lab.ProviderDev, linkMAC(t, l.NS("node3"), lab.ProviderDev), 1},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			marker := []byte(fmt.Sprintf("physhost-inject-%d-%d", i, time.Now().UnixNano()))
			before := snapshot(t, l, "node3")
			seen := watch(t, l, []lab.Port{lab.VM2}, func() { sendFrame(t, l.NS(lab.PhysHost), c.dev, forged(c.dstMAC, marker)) })
			after := snapshot(t, l, "node3")
			if n := injected(seen[lab.VM2.Name], marker); n != 0 {
				t.Errorf("vm2 (VNI 100) received %d frame(s) a physical-network host sent as node4's VTEP (grown:%s)", n, nonZeroGrowth(before, after, "node3"))
			}
			if p, _ := grown(before, after, "node3", "uplink", "DROP_NOT_UPLINK"); p != c.dropped {
				t.Errorf("node3 uplink/DROP_NOT_UPLINK grew by %d, want %d (grown:%s)", p, c.dropped, nonZeroGrowth(before, after, "node3"))
			}
		})
	}
}
