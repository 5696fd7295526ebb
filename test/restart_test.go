package test

import (
	"context"
	"testing"
	"time"

	"github.com/vxdp/vxdp/lab"
)

// TestAgentRestartUnderTraffic: the agents of node3 and node4 are stopped
// (SIGTERM) in the middle of a TCP transfer vm2 -> vm1 and started again.
// The pinned programs keep forwarding while they are down, the restarted
// agents adopt their pinned maps (counters keep counting from where they
// were), and the established connection finishes with every byte intact.
func TestAgentRestartUnderTraffic(t *testing.T) {
	l := newLab(t, lab.Config{})
	nodes := []string{"node3", "node4"}
	const (
		size = 24 * mb
		rate = 6 * mb // bytes per second: the transfer lasts about 4 s
	)
	tr, err := lab.StartTCP(l.PortNS(lab.VM2), l.PortNS(lab.VM1), lab.VM1.IP, size, lab.TCPOptions{Rate: rate, Timeout: 60 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the transfer to get going", func() bool { return tr.Received() > 2*mb })

	before := snapshot(t, l, nodes...)
	for _, n := range nodes {
		if err := l.StopAgent(n); err != nil {
			t.Fatalf("stop agent of %s: %v", n, err)
		}
		if l.AgentRunning(n) {
			t.Fatalf("agent of %s still runs after SIGTERM", n)
		}
	}
	recvDown := tr.Received()
	time.Sleep(time.Second)
	if got := tr.Received() - recvDown; got < rate/4 {
		t.Errorf("only %d bytes arrived in the second both agents were down, want >= %d", got, rate/4)
	}
	down := snapshot(t, l, nodes...)
	checkBPFCarried(t, before, down, lab.VM2, lab.VM1, 100, rate/4)

	startUnchanged(t, l, nodes...)
	restarted := snapshot(t, l, nodes...)
	// Counters never go backwards: the restarted agent adopted the pinned
	// maps instead of creating new ones.
	for _, n := range nodes {
		for _, c := range down[n] {
			for _, r := range restarted[n] {
				if r.Prog == c.Prog && r.Reason == c.Reason && r.Packets < c.Packets {
					t.Errorf("%s: counter %s/%s went from %d to %d across the restart: maps were not adopted", n, c.Prog, c.Reason, c.Packets, r.Packets)
				}
			}
		}
	}

	res, err := tr.Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || res.Received != size {
		t.Fatalf("transfer across the agent restart: %v", res)
	}
	t.Logf("transfer across the agent restart: %v", res)
	// The restarted agents forward in BPF too: a second transfer, since on a
	// loaded machine the first may finish while they start.
	tr2, err := lab.StartTCP(l.PortNS(lab.VM2), l.PortNS(lab.VM1), lab.VM1.IP, 4*mb, lab.TCPOptions{Timeout: 60 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res2, err := tr2.Wait(context.Background()); err != nil || !res2.OK() {
		t.Fatalf("transfer after the agent restart: %v %v", res2, err)
	}
	end := snapshot(t, l, nodes...)
	checkBPFCarried(t, restarted, end, lab.VM2, lab.VM1, 100, 0)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startUnchanged starts the (stopped) agents of nodes, waits until they
// applied their state, and fails t if any of them changed anything: a
// restarted agent adopts what is installed and removes or re-adds nothing.
func startUnchanged(t *testing.T, l *lab.Lab, nodes ...string) {
	t.Helper()
	for _, n := range nodes {
		if err := l.StartAgent(n); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.WaitApplied(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		a, err := l.ReadApplied(n)
		if err != nil {
			t.Fatal(err)
		}
		if a.Ops != 0 {
			t.Errorf("%s: the restarted agent made %d changes, want none (no entry removed and re-added)", n, a.Ops)
		}
	}
}
