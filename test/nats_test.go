package test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vxdp/vxdp/lab"
	"github.com/vxdp/vxdp/maps"
	"github.com/vxdp/vxdp/state"
)

// natsLab is the seed lab with its control plane: an embedded NATS server
// on node1 and the agents following its KV bucket.
func natsLab(t *testing.T, noPublish bool) *lab.Lab {
	return newLab(t, lab.Config{Control: lab.ControlNATS, NoPublish: noPublish})
}

// cli runs a controller command of the vxdp binary against the lab's
// server, from the controller node, and returns its standard output.
func cli(t *testing.T, l *lab.Lab, args ...string) string {
	t.Helper()
	out, err := cliErr(l, args...)
	if err != nil {
		t.Fatalf("vxdp %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// selfFDB is what `bridge fdb show dev vxlan-100 | grep self` prints on
// node, or nil when the device does not exist.
func selfFDB(t *testing.T, l *lab.Lab, node string) []string {
	t.Helper()
	fdb, err := lab.KernelFDB(l.NS(node), state.VXLANName(100))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range fdb {
		if e.Self {
			out = append(out, e.String())
		}
	}
	slices.Sort(out)
	return out
}

func waitFDB(t *testing.T, l *lab.Lab, node string, want []string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := selfFDB(t, l, node)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: vxlan-100 self FDB %v, want %v", node, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// linkExists reports whether dev exists in node's namespace.
func linkExists(l *lab.Lab, node, dev string) bool {
	_, err := lab.KernelFDB(l.NS(node), dev)
	return err == nil
}

// TestNATSSeedDrivenByCLI builds the walkthrough's state with the
// controller commands only (as an operator would with the openstack CLI):
// every node's kernel and BPF FDB match the seed, vm2 reaches vm1, and
// removing ports removes their entries everywhere, down to the network
// disappearing from a host with no port left on it.
func TestNATSSeedDrivenByCLI(t *testing.T) {
	l := natsLab(t, true)
	cli(t, l, "network", "create", "--vni", "100", "--id", lab.Net100ID, "--subnet", "172.16.100.0/24", lab.Net100Name)
	for _, p := range []lab.Port{lab.DHCP, lab.VM2, lab.VM1} {
		owner := "compute:nova"
		if p == lab.DHCP {
			owner = "network:dhcp"
		}
		cli(t, l, "port", "create", "--network", lab.Net100Name, "--id", p.ID, "--mac", p.MAC.String(),
			"--fixed-ip", p.IP.String(), "--host", p.Node, "--device-owner", owner, p.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := l.WaitApplied(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range lab.Nodes {
		checkKernelFDB(t, l, n)
		checkBPFMaps(t, l, n)
	}
	before := snapshot(t, l, "node3", "node4")
	ping(t, l, lab.VM2, lab.VM1.IP.String(), 10)
	checkBPFCarried(t, before, snapshot(t, l, "node3", "node4"), lab.VM2, lab.VM1, 10, 0)

	var agents []struct {
		Host  string `json:"Host"`
		Alive bool   `json:"Alive"`
	}
	if err := json.Unmarshal([]byte(cli(t, l, "agent", "list", "--json")), &agents); err != nil {
		t.Fatal(err)
	}
	var alive []string
	for _, a := range agents {
		if a.Alive {
			alive = append(alive, a.Host)
		}
	}
	slices.Sort(alive)
	if !slices.Equal(alive, lab.Nodes) {
		t.Errorf("agent list: alive %v, want %v", alive, lab.Nodes)
	}
	if out := cli(t, l, "port", "list"); strings.Count(out, "ACTIVE") != 3 {
		t.Errorf("port list: want 3 ACTIVE ports:\n%s", out)
	}

	// The DHCP port goes: node1 has no port left on the network, so its
	// bridge and vxlan device go; the others drop node1 from the flood
	// list and the DHCP MAC.
	cli(t, l, "port", "delete", lab.DHCP.ID)
	waitFDB(t, l, "node3", []string{"00:00:00:00:00:00 dst 192.168.248.4 self permanent", "fa:16:3e:06:42:34 dst 192.168.248.4 self permanent"})
	waitFDB(t, l, "node4", []string{"00:00:00:00:00:00 dst 192.168.248.3 self permanent", "fa:16:3e:cb:98:2c dst 192.168.248.3 self permanent"})
	waitFor(t, "node1's bridge and vxlan device to go", func() bool {
		return !linkExists(l, "node1", state.VXLANName(100)) && !linkExists(l, "node1", state.BridgeName(lab.Net100ID))
	})
	set, err := maps.OpenPinned(l.PinDir("node1") + "/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	for _, m := range []string{maps.FDB, maps.Networks, maps.VTEPs, maps.ARP} {
		if tbl, err := set.Read(m, maps.DumpOptions{}); err != nil || len(tbl.Rows) > 0 {
			t.Errorf("node1 map %s after its last port went: %v %v", m, tbl.Rows, err)
		}
	}
	// The DHCP port's tap still exists: it stays, disabled.
	if ports, err := maps.Entries[uint32, maps.PortInfo](set.Map(maps.Ports)); err != nil || len(ports) != 1 {
		t.Errorf("node1 ports after its last port went: %v %v, want the tap, disabled", ports, err)
	} else {
		for _, p := range ports {
			if p.Flags != maps.PortDisabled {
				t.Errorf("node1's deleted DHCP port: %+v, want disabled", p)
			}
		}
	}

	// vm1 is unbound: node4 leaves the network, node3 forgets vm1.
	cli(t, l, "port", "unbind", lab.VM1.ID)
	waitFDB(t, l, "node3", nil)
	waitFor(t, "node4's vxlan device to go", func() bool { return !linkExists(l, "node4", state.VXLANName(100)) })
}

// TestNATSRestartUnderTraffic restarts the agents of both ends of a running
// TCP transfer: the flow survives, the agents resume from their snapshot
// (delta resync) and change nothing in the kernel or the maps.
func TestNATSRestartUnderTraffic(t *testing.T) {
	l := natsLab(t, false)
	nodes := []string{"node3", "node4"}
	const size, rate = 16 * mb, 6 * mb
	tr, err := lab.StartTCP(l.PortNS(lab.VM2), l.PortNS(lab.VM1), lab.VM1.IP, size, lab.TCPOptions{Rate: rate, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the transfer to get going", func() bool { return tr.Received() > mb })
	for _, n := range nodes {
		if err := l.StopAgent(n); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	startUnchanged(t, l, nodes...)
	for _, n := range nodes {
		if log := l.LogTail(n, 40); !strings.Contains(log, "delta resync") {
			t.Errorf("%s: no delta resync after the restart:\n%s", n, log)
		}
	}
	res, err := tr.Wait(context.Background())
	if err != nil || !res.OK() || res.Received != size {
		t.Fatalf("transfer across the restarts: %v %v", res, err)
	}
	t.Logf("transfer across the restarts: %v", res)
}

// TestNATSLiveMigration moves vm1 from node4 to node3 while vm2 pings it:
// the VM's NIC moves, then its port is re-bound (compare-and-set) and
// every agent follows. Losses are reported; the pings must recover and the
// fleet converge on the new location.
func TestNATSLiveMigration(t *testing.T) {
	l := natsLab(t, false)
	type pingRes struct {
		res lab.PingResult
		err error
	}
	done := make(chan pingRes, 1)
	const pings = 300 // 3 s at 10 ms
	go func() {
		r, err := lab.Ping(l.PortNS(lab.VM2), lab.VM1.IP, pings, 10*time.Millisecond, 200*time.Millisecond)
		done <- pingRes{r, err}
	}()
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	if _, err := l.MovePort(lab.VM1, "node3"); err != nil {
		t.Fatal(err)
	}
	out := cli(t, l, "port", "bind", "--host", "node3", "--wait", "10s", lab.VM1.ID)
	t.Logf("migration: %s", strings.TrimSpace(out))
	waitFDB(t, l, "node1", []string{
		"00:00:00:00:00:00 dst 192.168.248.3 self permanent",
		"fa:16:3e:06:42:34 dst 192.168.248.3 self permanent",
		"fa:16:3e:cb:98:2c dst 192.168.248.3 self permanent",
	})
	waitFor(t, "node4 to leave the network", func() bool { return !linkExists(l, "node4", state.VXLANName(100)) })
	converged := time.Since(start)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("live migration converged in %v; vm2 -> vm1 pings: %d/%d answered, %d lost", converged.Round(time.Millisecond),
		r.res.Received, r.res.Sent, r.res.Sent-r.res.Received)
	ping(t, l, lab.VM2, lab.VM1.IP.String(), 5)
	set, err := maps.OpenPinned(l.PinDir("node3") + "/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	var e maps.FDBEntry
	if err := set.Map(maps.FDB).Lookup(maps.NewFDBKey(100, lab.VM1.MAC), &e); err != nil || e.Kind != maps.FDBLocal {
		t.Errorf("node3 BPF fdb entry of vm1 %+v (%v), want local", e, err)
	}
}

// TestNATSOutage stops the NATS server: forwarding goes on, the agents keep
// their state and keep running; when it returns they resync and apply
// changes made after.
func TestNATSOutage(t *testing.T) {
	l := natsLab(t, false)
	if err := l.StopNATS(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	ping(t, l, lab.VM2, lab.VM1.IP.String(), 10)
	for _, n := range lab.Nodes {
		if !l.AgentRunning(n) {
			t.Fatalf("agent of %s exited during the outage", n)
		}
	}
	if err := l.StartNATS(context.Background()); err != nil {
		t.Fatal(err)
	}
	cli(t, l, "port", "delete", lab.DHCP.ID)
	waitFDB(t, l, "node3", []string{"00:00:00:00:00:00 dst 192.168.248.4 self permanent", "fa:16:3e:06:42:34 dst 192.168.248.4 self permanent"})
	ping(t, l, lab.VM2, lab.VM1.IP.String(), 5)
}
