package test

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vxdp/vxdp/lab"
	"github.com/vxdp/vxdp/maps"
	"github.com/vxdp/vxdp/state"
)

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

const mb = 1 << 20

// seedFDB is `bridge fdb show dev vxlan-100 | grep self` of the walkthrough,
// per node: a flood entry per other VTEP and a unicast entry per remote port.
var seedFDB = map[string][]string{
	"node1": {
		"00:00:00:00:00:00 dst 192.168.248.3 self permanent",
		"00:00:00:00:00:00 dst 192.168.248.4 self permanent",
		"fa:16:3e:06:42:34 dst 192.168.248.4 self permanent",
		"fa:16:3e:cb:98:2c dst 192.168.248.3 self permanent",
	},
	"node3": {
		"00:00:00:00:00:00 dst 192.168.248.1 self permanent",
		"00:00:00:00:00:00 dst 192.168.248.4 self permanent",
		"fa:16:3e:06:42:34 dst 192.168.248.4 self permanent",
		"fa:16:3e:6e:c0:44 dst 192.168.248.1 self permanent",
	},
	"node4": {
		"00:00:00:00:00:00 dst 192.168.248.1 self permanent",
		"00:00:00:00:00:00 dst 192.168.248.3 self permanent",
		"fa:16:3e:6e:c0:44 dst 192.168.248.1 self permanent",
		"fa:16:3e:cb:98:2c dst 192.168.248.3 self permanent",
	},
}

// seedNeigh is the proxy-ARP table l2population installs on vxlan-100.
var seedNeigh = map[string][]string{
	"node1": {"172.16.100.12 fa:16:3e:06:42:34", "172.16.100.19 fa:16:3e:cb:98:2c"},
	"node3": {"172.16.100.10 fa:16:3e:6e:c0:44", "172.16.100.12 fa:16:3e:06:42:34"},
	"node4": {"172.16.100.10 fa:16:3e:6e:c0:44", "172.16.100.19 fa:16:3e:cb:98:2c"},
}

// checkKernelFDB compares the device's own (self) FDB entries of vxlan-100
// with the seed listing, and its permanent neighbours with the l2pop ARP
// entries.
func checkKernelFDB(t *testing.T, l *lab.Lab, node string) {
	t.Helper()
	dev := state.VXLANName(100)
	fdb, err := lab.KernelFDB(l.NS(node), dev)
	if err != nil {
		t.Fatalf("%s: bridge fdb show dev %s: %v", node, dev, err)
	}
	var self []string
	for _, e := range fdb {
		if e.Self {
			self = append(self, e.String())
		}
	}
	slices.Sort(self)
	if !slices.Equal(self, seedFDB[node]) {
		t.Errorf("%s: bridge fdb show dev %s (self entries):\n  %s\nwant the seed's:\n  %s", node, dev,
			strings.Join(self, "\n  "), strings.Join(seedFDB[node], "\n  "))
	}
	neighs, err := lab.Neighbours(l.NS(node), dev)
	if err != nil {
		t.Fatalf("%s: ip neigh show dev %s: %v", node, dev, err)
	}
	var perm []string
	for _, n := range neighs {
		if n.Permanent {
			perm = append(perm, n.IP.String()+" "+n.MAC)
		}
	}
	slices.Sort(perm)
	if !slices.Equal(perm, seedNeigh[node]) {
		t.Errorf("%s: permanent neighbours of %s %v, want the remote ports' %v", node, dev, perm, seedNeigh[node])
	}
}

// checkBPFMaps compares node's fdb, vteps and arp maps with the ports of
// the seed: local ports to their tap, remote ports to their VTEP.
func checkBPFMaps(t *testing.T, l *lab.Lab, node string) {
	t.Helper()
	set, err := l.Maps(node)
	if err != nil {
		t.Fatalf("%s maps: %v", node, err)
	}
	defer set.Close()
	fdb, err := maps.Entries[maps.FDBKey, maps.FDBEntry](set.Map(maps.FDB))
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for k, v := range fdb {
		target := "vtep " + maps.AddrBE32(v.Vtep).String()
		if v.Kind == maps.FDBLocal {
			target = fmt.Sprintf("ifindex %d", v.Ifindex)
		}
		got = append(got, fmt.Sprintf("%d %s %s", k.Vni, state.MAC(k.Mac), target))
	}
	vteps := map[string]bool{}
	var arp []string
	for _, p := range l.Ports() {
		if p.Node == node {
			tap, err := lab.LinkInfo(l.NS(node), p.Tap())
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, fmt.Sprintf("%d %s ifindex %d", p.VNI, p.MAC, tap.Attrs().Index))
			continue
		}
		want = append(want, fmt.Sprintf("%d %s vtep %s", p.VNI, p.MAC, lab.NodeIP(p.Node)))
		vteps[fmt.Sprintf("%d %s", p.VNI, lab.NodeIP(p.Node))] = true
		arp = append(arp, fmt.Sprintf("%d %s %s", p.VNI, p.IP, p.MAC))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s: BPF fdb map\n  %s\nwant\n  %s", node, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	vm, err := maps.Entries[maps.VNIAddr, uint32](set.Map(maps.VTEPs))
	if err != nil {
		t.Fatal(err)
	}
	var gotV, wantV []string
	for k := range vm {
		gotV = append(gotV, fmt.Sprintf("%d %s", k.Vni, maps.AddrBE32(k.Addr)))
	}
	for v := range vteps {
		wantV = append(wantV, v)
	}
	slices.Sort(gotV)
	slices.Sort(wantV)
	if !slices.Equal(gotV, wantV) {
		t.Errorf("%s: BPF vteps map %v, want %v", node, gotV, wantV)
	}
	am, err := maps.Entries[maps.VNIAddr, maps.MACValue](set.Map(maps.ARP))
	if err != nil {
		t.Fatal(err)
	}
	var gotA []string
	for k, v := range am {
		gotA = append(gotA, fmt.Sprintf("%d %s %s", k.Vni, maps.AddrBE32(k.Addr), state.MAC(v.Mac)))
	}
	slices.Sort(gotA)
	slices.Sort(arp)
	if !slices.Equal(gotA, arp) {
		t.Errorf("%s: BPF arp map %v, want %v", node, gotA, arp)
	}
}

// checkBPFCarried asserts that a flow from port a to port b went through
// vxdp: a's node encapsulated it in its port program and b's node
// delivered it to the tap in BPF (decapsulated by the uplink program, or,
// for TCP, aggregated by the kernel's GRO and redirected by the vxlan
// program), at least minPackets packets and
// minBytes bytes, and no frame of it fell back to the kernel for size or
// encapsulation failure. A TSO super-frame is one packet before
// encapsulation and many on the wire, so with minBytes set the sending side
// is held to the bytes only.
func checkBPFCarried(t *testing.T, before, after counters, a, b lab.Port, minPackets, minBytes uint64) {
	t.Helper()
	p, by := grown(before, after, a.Node, "port", "REDIRECT_REMOTE", "REDIRECT_REMOTE_GSO")
	if (minBytes == 0 && p < minPackets) || by < minBytes {
		t.Errorf("%s -> %s: %s port program encapsulated %d packets / %d bytes, want >= %d / %d (grown:%s)",
			a.Name, b.Name, a.Node, p, by, minPackets, minBytes, nonZeroGrowth(before, after, a.Node))
	}
	p, by = deliveredByBPF(before, after, b.Node)
	if p < minPackets/64 || by < minBytes {
		t.Errorf("%s -> %s: %s delivered in BPF %d packets / %d bytes, want >= %d / %d (grown:%s)",
			a.Name, b.Name, b.Node, p, by, minPackets, minBytes, nonZeroGrowth(before, after, b.Node))
	}
	for _, n := range []string{a.Node, b.Node} {
		if p, _ := grown(before, after, n, "port", "PASS_TOO_BIG", "PASS_ENCAP_FAILED", "DROP_ENCAP_FAILED"); p > 0 {
			t.Errorf("%s: %d frames were too big or failed encapsulation (grown:%s)", n, p, nonZeroGrowth(before, after, n))
		}
	}
}

// TestSeedScenario is the walkthrough's state with vxdp on every node: the
// kernel shows exactly the l2pop FDB and ARP entries, the BPF maps agree,
// and vm2 <-> vm1 ping and TCP go through the BPF fast path.
func TestSeedScenario(t *testing.T) {
	l := newLab(t, lab.Config{})
	for _, n := range lab.Nodes {
		checkKernelFDB(t, l, n)
		checkBPFMaps(t, l, n)
	}
	nodes := []string{"node3", "node4"}

	const pings = 20
	before := snapshot(t, l, nodes...)
	ping(t, l, lab.VM2, lab.VM1.IP.String(), pings)
	after := snapshot(t, l, nodes...)
	checkBPFCarried(t, before, after, lab.VM2, lab.VM1, pings, 0)
	checkBPFCarried(t, before, after, lab.VM1, lab.VM2, pings, 0)

	const size = 8 * mb
	before = snapshot(t, l, nodes...)
	transfer(t, l, lab.VM2, lab.VM1, size)
	after = snapshot(t, l, nodes...)
	checkBPFCarried(t, before, after, lab.VM2, lab.VM1, size/1500, size)
	// The VMs send with TSO on: super-frames must be encapsulated as such.
	if p, _ := grown(before, after, "node3", "port", "REDIRECT_REMOTE_GSO"); p == 0 {
		t.Errorf("node3 encapsulated no TSO/GSO frame of an %d byte transfer (grown:%s)", size, nonZeroGrowth(before, after, "node3"))
	}

	before = snapshot(t, l, nodes...)
	transfer(t, l, lab.VM1, lab.VM2, size)
	after = snapshot(t, l, nodes...)
	checkBPFCarried(t, before, after, lab.VM1, lab.VM2, size/1500, size)

	// The DHCP port on node1 is reachable from both VMs, through BPF too.
	before = snapshot(t, l, "node1", "node3", "node4")
	ping(t, l, lab.VM2, lab.DHCP.IP.String(), 5)
	ping(t, l, lab.VM1, lab.DHCP.IP.String(), 5)
	after = snapshot(t, l, "node1", "node3", "node4")
	checkBPFCarried(t, before, after, lab.VM2, lab.DHCP, 5, 0)
	checkBPFCarried(t, before, after, lab.DHCP, lab.VM1, 5, 0)
}

// TestBUMThroughKernel: vm1's VIP is an allowed address pair, which
// l2population never pushes, so no proxy answers ARP for it: requests must
// be flooded by the kernel along the l2pop flood list (head-end
// replication to node1 and node4), and vm1's reply must come back.
func TestBUMThroughKernel(t *testing.T) {
	l := newLab(t, lab.Config{VIP: true})
	nodes := []string{"node1", "node3", "node4"}
	captures := map[string]*lab.Capture{}
	for _, p := range []lab.Port{lab.VM1, lab.VM2, lab.DHCP} {
		c, err := lab.StartCapture(l.PortNS(p), lab.VMDev)
		if err != nil {
			t.Fatal(err)
		}
		captures[p.Name] = c
	}

	// Exactly n requests, so background BUM (IGMP reports of the bridges)
	// can only add to the counters, never stand in for them.
	const n = 20
	before := snapshot(t, l, nodes...)
	for i := 0; i < n; i++ {
		if err := lab.SendFrame(l.PortNS(lab.VM2), lab.VMDev, lab.ARPRequest(lab.VM2.MAC, lab.VM2.IP, lab.VIP)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	after := snapshot(t, l, nodes...)
	frames := map[string][]lab.Frame{}
	for name, c := range captures {
		frames[name], _ = c.Stop()
	}

	if p, _ := grown(before, after, "node3", "port", "PASS_BUM"); p < n {
		t.Errorf("node3 port program passed %d broadcast frames to the kernel bridge, want >= %d (grown:%s)", p, n, nonZeroGrowth(before, after, "node3"))
	}
	if p, _ := grown(before, after, "node3", "port", "TX_ARP_REPLY"); p != 0 {
		t.Errorf("node3 answered %d ARP requests itself for an address l2population never pushed", p)
	}
	for _, node := range []string{"node1", "node4"} {
		if p, _ := grown(before, after, node, "uplink", "PASS_INNER_BUM"); p < n {
			t.Errorf("%s uplink passed %d flooded frames to its vxlan device, want >= %d: the kernel on node3 did not flood along the l2pop list (grown:%s)",
				node, p, n, nonZeroGrowth(before, after, node))
		}
	}
	count := func(frames []lab.Frame, op uint16, from lab.Port, outgoing bool) int {
		k := 0
		for _, f := range frames {
			target, _ := f.ARPTarget()
			sender, _ := f.ARPSender()
			switch {
			case f.Outgoing != outgoing || f.ARPOp() != op || f.SrcMAC() != from.MAC:
			case op == 1 && target == lab.VIP:
				k++
			case op == 2 && sender == lab.VIP:
				k++
			}
		}
		return k
	}
	if got := count(frames["vm1"], 1, lab.VM2, false); got < n {
		t.Errorf("vm1 received %d of vm2's %d ARP requests for %s", got, n, lab.VIP)
	}
	if got := count(frames["dhcp"], 1, lab.VM2, false); got < n {
		t.Errorf("the DHCP port on node1 received %d of vm2's %d ARP requests: the flood list was not used", got, n)
	}
	replied := count(frames["vm1"], 2, lab.VM1, true)
	if replied == 0 {
		t.Errorf("vm1 sent no ARP reply for %s", lab.VIP)
	}
	if got := count(frames["vm2"], 2, lab.VM1, false); got < replied || got == 0 {
		t.Errorf("vm2 received %d of vm1's %d ARP replies for %s", got, replied, lab.VIP)
	}

	// And the kernel's own resolution gets vm2 to the VIP.
	res, err := lab.Ping(l.PortNS(lab.VM2), lab.VIP, 3, 20*time.Millisecond, 2*time.Second)
	if err != nil || res.Received != res.Sent {
		t.Errorf("ping vm2 -> %s (vm1's VIP): %d/%d replies, %v", lab.VIP, res.Received, res.Sent, err)
	}
}
