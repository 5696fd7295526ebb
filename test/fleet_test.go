package test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/vxdp/vxdp/lab"
	"github.com/vxdp/vxdp/maps"
	"github.com/vxdp/vxdp/state"
)

// TestMixedFleet: node4 runs the kernel dataplane only (like a node not
// yet migrated, or with vxdp switched off); vm2 on BPF node3 and vm1 on
// node4 still talk both ways, node3 encapsulates and decapsulates in BPF,
// node4 has no BPF anywhere and its kernel FDB is the seed's.
func TestMixedFleet(t *testing.T) {
	l := newLab(t, lab.Config{Dataplane: map[string]string{"node4": lab.DataplaneKernel}})

	// node4 forwards with the kernel only: no XDP on its uplink, and
	// forwarding off in its config; its programs still filter.
	if att, err := lab.BPFAttachments(l.NS("node4"), lab.VTEPDev); err != nil || len(att) > 0 {
		t.Errorf("node4 runs the kernel dataplane but its uplink has BPF attached: %v %v", att, err)
	}
	if att, err := lab.BPFAttachments(l.NS("node4"), lab.VM1.Tap()); err != nil || len(att) == 0 {
		t.Errorf("node4 runs the kernel dataplane but its tap is not filtered: %v %v", att, err)
	}
	if set, err := l.Maps("node4"); err != nil {
		t.Errorf("node4 maps: %v", err)
	} else {
		var cfg maps.ConfigValue
		if err := set.Map(maps.Config).Lookup(uint32(0), &cfg); err != nil || cfg.Flags&maps.ConfigForward != 0 {
			t.Errorf("node4 runs the kernel dataplane but its config %+v (%v) says BPF forwards", cfg, err)
		}
		set.Close()
	}
	for _, dev := range []string{lab.VTEPDev, lab.VM2.Tap()} {
		att, err := lab.BPFAttachments(l.NS("node3"), dev)
		if err != nil {
			t.Fatal(err)
		}
		if len(att) == 0 {
			t.Errorf("node3 runs the BPF dataplane but %s has no BPF attached", dev)
		}
	}
	for _, n := range lab.Nodes {
		checkKernelFDB(t, l, n)
	}

	const size = 4 * mb
	before := snapshot(t, l, "node3")
	ping(t, l, lab.VM2, lab.VM1.IP.String(), 10)
	ping(t, l, lab.VM1, lab.VM2.IP.String(), 10)
	transfer(t, l, lab.VM2, lab.VM1, size)
	transfer(t, l, lab.VM1, lab.VM2, size)
	after := snapshot(t, l, "node3")

	if p, by := grown(before, after, "node3", "port", "REDIRECT_REMOTE", "REDIRECT_REMOTE_GSO"); p < 20 || by < size {
		t.Errorf("node3 port program encapsulated %d packets / %d bytes toward the kernel node, want >= 20 / %d (grown:%s)",
			p, by, size, nonZeroGrowth(before, after, "node3"))
	}
	if p, by := deliveredByBPF(before, after, "node3"); p < 20 || by < size {
		t.Errorf("node3 delivered %d packets / %d bytes from the kernel node, want >= 20 / %d (grown:%s)",
			p, by, size, nonZeroGrowth(before, after, "node3"))
	}
}

// TestRogueVTEP: VXLAN of VNI 100 sent to node4 from an underlay host that
// is no VTEP of the network is dropped in XDP and never reaches vm1; the
// same frame from node3, a registered VTEP, is delivered (so the capture
// would have seen it).
func TestRogueVTEP(t *testing.T) {
	l := newLab(t, lab.Config{Rogue: true})
	dst := netip.AddrPortFrom(lab.NodeIP("node4"), lab.VXLANPort)
	frame := func(marker []byte) []byte {
		return lab.VXLAN(100, lab.UDPFrame(lab.VM2.MAC, lab.VM1.MAC,
			netip.AddrPortFrom(lab.VM2.IP, 40000), netip.AddrPortFrom(lab.VM1.IP, 9), marker))
	}
	send := func(from string, marker []byte, n int) []lab.Frame {
		t.Helper()
		capture, err := lab.StartCapture(l.PortNS(lab.VM1), lab.VMDev)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if err := lab.SendUDP(l.NS(from), dst, frame(marker)); err != nil {
				t.Fatalf("send from %s: %v", from, err)
			}
		}
		time.Sleep(300 * time.Millisecond)
		frames, err := capture.Stop()
		if err != nil {
			t.Fatal(err)
		}
		return frames
	}
	seen := func(frames []lab.Frame, marker []byte) int {
		n := 0
		for _, f := range frames {
			// vm1's own ICMP port-unreachable quotes the datagram: not counted.
			if !f.Outgoing && f.Contains(marker) {
				n++
			}
		}
		return n
	}

	const n = 5
	rogueMarker := []byte(fmt.Sprintf("rogue-vtep-%d", time.Now().UnixNano()))
	before := snapshot(t, l, "node4")
	frames := send("rogue", rogueMarker, n)
	after := snapshot(t, l, "node4")
	if got := seen(frames, rogueMarker); got != 0 {
		t.Errorf("vm1 received %d frames injected by the rogue VTEP %s", got, lab.RogueIP)
	}
	if p, _ := grown(before, after, "node4", "uplink", "DROP_VTEP_UNKNOWN"); p < n {
		t.Errorf("node4 uplink dropped %d frames as DROP_VTEP_UNKNOWN, want >= %d (grown:%s)", p, n, nonZeroGrowth(before, after, "node4"))
	}

	goodMarker := []byte(fmt.Sprintf("node3-vtep-%d", time.Now().UnixNano()))
	before = snapshot(t, l, "node4")
	frames = send("node3", goodMarker, n)
	after = snapshot(t, l, "node4")
	if got := seen(frames, goodMarker); got != n {
		t.Errorf("vm1 received %d of %d frames sent from registered VTEP node3: the capture or the path is broken", got, n)
	}
	if p, _ := deliveredByBPF(before, after, "node4"); p < n {
		t.Errorf("node4 uplink delivered %d frames from node3, want >= %d (grown:%s)", p, n, nonZeroGrowth(before, after, "node4"))
	}
}

// TestVNIIsolation: vxlan200_net reuses vxlan100_net's subnet and IPs on the
// same nodes. Pings and unicast/broadcast datagrams within each network
// work, and no frame of one network is ever seen on the other's VMs.
func TestVNIIsolation(t *testing.T) {
	l := newLab(t, lab.Config{SecondNetwork: true})
	vms := []lab.Port{lab.VM1, lab.VM2, lab.VM3, lab.VM4}
	caps := map[string]*lab.Capture{}
	for _, p := range vms {
		c, err := lab.StartCapture(l.PortNS(p), lab.VMDev)
		if err != nil {
			t.Fatal(err)
		}
		caps[p.Name] = c
	}

	// Same destination IP, different networks.
	ping(t, l, lab.VM2, "172.16.100.12", 5)
	ping(t, l, lab.VM3, "172.16.100.12", 5)
	ping(t, l, lab.VM4, "172.16.100.19", 5)
	ping(t, l, lab.VM1, "172.16.100.19", 5)
	transfer(t, l, lab.VM3, lab.VM4, 2*mb)
	markers := map[uint32][]byte{}
	for _, p := range []lab.Port{lab.VM2, lab.VM3} {
		m := []byte(fmt.Sprintf("vni-%d-only-%d", p.VNI, time.Now().UnixNano()))
		markers[p.VNI] = m
		for _, dst := range []string{"172.16.100.12", "172.16.100.255"} {
			if err := lab.SendUDP(l.PortNS(p), netip.AddrPortFrom(netip.MustParseAddr(dst), 9), m); err != nil {
				t.Fatalf("udp from %s to %s: %v", p.Name, dst, err)
			}
		}
	}
	time.Sleep(300 * time.Millisecond)

	macs := map[state.MAC]lab.Port{}
	for _, p := range vms {
		macs[p.MAC] = p
		macs[p.TapMAC()] = p
	}
	for _, p := range vms {
		frames, err := caps[p.Name].Stop()
		if err != nil {
			t.Fatal(err)
		}
		own := 0
		for _, f := range frames {
			if f.Outgoing {
				continue
			}
			if src, ok := macs[f.SrcMAC()]; ok && src.VNI != p.VNI {
				t.Errorf("%s (VNI %d) received a frame from %s (VNI %d): % x", p.Name, p.VNI, src.Name, src.VNI, f.Data[:min(len(f.Data), 64)])
			}
			for vni, m := range markers {
				if f.Contains(m) {
					if vni != p.VNI {
						t.Errorf("%s (VNI %d) received VNI %d's datagram", p.Name, p.VNI, vni)
					} else {
						own++
					}
				}
			}
		}
		// The receivers (vm1 and vm4 hold .12) get their network's unicast
		// and broadcast datagram.
		if (p.Name == "vm1" || p.Name == "vm4") && own != 2 {
			t.Errorf("%s received %d of its network's 2 datagrams (unicast, broadcast)", p.Name, own)
		}
	}
}
