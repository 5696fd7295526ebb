package test

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/vxdp/vxdp/lab"
	"github.com/vxdp/vxdp/maps"
	"github.com/vxdp/vxdp/state"
)

// TestVTEPNextHop: once the kernel has resolved a VTEP's next hop (here
// node4 itself, on the tunnel network), node3's agent puts its MAC in
// vtep_nexthop, so encapsulation skips the per-packet neighbour lookup;
// when node4's address changes, the entry follows the kernel's neighbour
// table, and traffic keeps flowing.
func TestVTEPNextHop(t *testing.T) {
	l := newLab(t, lab.Config{})
	m, err := ebpf.LoadPinnedMap(filepath.Join(l.PinDir("node3"), "maps", maps.VTEPNextHop), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	nodeMAC := func(node string) state.MAC {
		var mac state.MAC
		if err := lab.Do(l.NS(node), func() error {
			i, err := net.InterfaceByName(lab.VTEPDev)
			if err == nil {
				mac = state.MAC(i.HardwareAddr)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return mac
	}
	// The kernel confirms a changed neighbour after its DELAY state
	// (delay_first_probe_time, 5 s) and a probe.
	waitNextHop := func(want state.MAC) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		var got maps.MACValue
		for {
			err := m.Lookup(maps.BE32(lab.NodeIP("node4")), &got)
			if err == nil && state.MAC(got.Mac) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("node3's next hop of VTEP %s: %s (%v), want %s", lab.NodeIP("node4"), state.MAC(got.Mac), err, want)
			}
			ping(t, l, lab.VM2, lab.VM1.IP.String(), 2)
			time.Sleep(100 * time.Millisecond)
		}
	}
	ping(t, l, lab.VM2, lab.VM1.IP.String(), 3)
	waitNextHop(nodeMAC("node4"))

	// node4's NIC gets a new MAC and announces it (as after a NIC swap).
	newMAC := state.MAC{0x02, 0, 0xc0, 0xa8, 0xf8, 0x44}
	if err := lab.Do(l.NS("node4"), func() error {
		return lab.SetMACAndAnnounce(lab.VTEPDev, newMAC, lab.NodeIP("node4"))
	}); err != nil {
		t.Fatal(err)
	}
	waitNextHop(newMAC)
	before := snapshot(t, l, "node3")
	ping(t, l, lab.VM2, lab.VM1.IP.String(), 5)
	after := snapshot(t, l, "node3")
	if p, _ := grown(before, after, "node3", "port", "REDIRECT_REMOTE"); p < 5 {
		t.Errorf("node3 encapsulated %d of 5 echoes after the change (grown:%s)", p, nonZeroGrowth(before, after, "node3"))
	}

	// vxdp status compares the entries with the kernel's neighbours (they
	// change between applies): in agreement no drift; a MAC the kernel no
	// longer has for that next hop is drift.
	if out, stderr, ok := agentCmd(t, l, "node3", "status", "drift"); !ok || strings.Contains(out, maps.VTEPNextHop) {
		t.Errorf("status drift with vtep_nexthop as the kernel has it: ok %v\n%s%s", ok, out, stderr)
	}
	wrong := state.MAC{0x02, 0, 0, 0, 0, 0x66}
	if err := m.Put(maps.BE32(lab.NodeIP("node4")), maps.MACValue{Mac: wrong}); err != nil {
		t.Fatal(err)
	}
	out, stderr, ok := agentCmd(t, l, "node3", "status", "drift")
	if ok || !strings.Contains(out+stderr, maps.VTEPNextHop) || !strings.Contains(out+stderr, wrong.String()) {
		t.Errorf("status drift with a wrong next-hop MAC in vtep_nexthop: ok %v, want exit 1 naming it\n%s%s", ok, out, stderr)
	}
}
