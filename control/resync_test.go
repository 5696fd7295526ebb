package control_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/state"
)

// waitSnapshot waits until the agent persisted the snapshot of the last
// state it applied, stops it, and returns that state: what the dataplane
// would have recorded as applied.
//
// It first waits for the agent's own writes (its agent record, the status
// of its ports) to be applied: a write still in flight when the agent
// stops would come back as a change to replay.
func waitSnapshot(t *testing.T, c *control.Controller, ta *testAgent, dir string) *state.Desired {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	ownWritesApplied := func(d *state.Desired) bool {
		keys := []string{control.AgentKey(ta.host)}
		for _, p := range d.LocalPorts {
			keys = append(keys, control.StatusKey(p.NetworkID, ta.host, p.ID))
		}
		for _, k := range keys {
			e, err := c.KV().Get(context.Background(), k)
			if err != nil || e.Revision() > d.Revision {
				return false
			}
		}
		return true
	}
	for time.Now().Before(deadline) {
		d := ta.current()
		rev := d.Revision
		if !ownWritesApplied(d) {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if control.SnapshotRevision(dir) == rev {
			ta.stop()
			if ta.current() == d {
				return d
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no snapshot of revision %d in %s", ta.current().Revision, dir)
	return nil
}

// firstState starts an agent and returns its first state with the stats
// it had when it sent it.
func firstState(t *testing.T, url, host, vtep string, opts ...agentOpt) (*testAgent, *state.Desired, control.AgentStats) {
	t.Helper()
	ch := make(chan *state.Desired, 16)
	ta := startAgent(t, url, host, vtep, append(opts, func(o *control.AgentOptions) {})...)
	ta.mu.Lock()
	ta.appliedC = ch
	d := ta.last
	ta.mu.Unlock()
	if d == nil {
		select {
		case d = <-ch:
		case <-time.After(15 * time.Second):
			t.Fatalf("%s: no state", host)
		}
	}
	st := ta.agent.Stats()
	ta.mu.Lock()
	ta.appliedC = nil
	ta.mu.Unlock()
	return ta, d, st
}

func sameState(a, b *state.Desired) bool {
	return reflect.DeepEqual(a.Networks, b.Networks) && reflect.DeepEqual(a.LocalPorts, b.LocalPorts) && reflect.DeepEqual(a.RemotePorts, b.RemotePorts)
}

func TestRestartResync(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	url := srv.ClientURL()
	c := newController(t, url)
	n, _ := seedPorts(t, ctx, c)
	startAgent(t, url, "node1", node1VTEP)
	node4 := startAgent(t, url, "node4", node4VTEP)
	dir := t.TempDir()
	withState := func(applied uint64) agentOpt {
		return func(o *control.AgentOptions) { o.StateDir, o.AppliedRevision = dir, applied }
	}

	node3 := startAgent(t, url, "node3", node3VTEP, withState(0))
	d := node3.waitL2(t,
		"net vxlan100_net vni 100 mtu 1450 flood 192.168.248.1,192.168.248.4",
		"local vxlan100_net fa:16:3e:cb:98:2c tap9784ef08-97 172.16.100.19",
		"remote vxlan100_net fa:16:3e:06:42:34 @192.168.248.4 172.16.100.12",
		"remote vxlan100_net fa:16:3e:6e:c0:44 @192.168.248.1 172.16.100.10",
	)
	d = waitSnapshot(t, c, node3, dir)
	applied := d.Revision

	t.Run("no change replays nothing", func(t *testing.T) {
		a, d2, st := firstState(t, url, "node3", node3VTEP, withState(applied))
		defer a.stop()
		if st.LastResync != "delta" || st.Fetched != 0 {
			t.Errorf("resync %q fetched %d records, want delta with 0", st.LastResync, st.Fetched)
		}
		if !sameState(d, d2) || d2.Revision != applied {
			t.Errorf("state after restart differs (revision %d, was %d):%s\nwas:%s", d2.Revision, applied, describe(d2), describe(d))
		}
	})

	// While node3 is down: vm3 appears on node4 (port record, node4's
	// ACTIVE status and its member record in the default group: 3 records
	// node3 follows) and 30 ports of another project come and go on a
	// network node3 does not host (nothing node3 follows: their default
	// group is their project's).
	other, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: "other", Project: "other"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 15 {
		p, err := c.CreatePort(ctx, control.PortSpec{Network: other.ID, Host: "node9", Project: "other"})
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := c.DeletePort(ctx, p.ID, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	vm3, err := c.CreatePort(ctx, control.PortSpec{Network: n.ID, Name: "vm3", MAC: mac("fa:16:3e:00:00:03"), Host: "node4"})
	if err != nil {
		t.Fatal(err)
	}
	node4.waitFor(t, "vm3 local", func(d *state.Desired) bool { return len(d.LocalPorts) == 2 })
	waitStatus(t, c, vm3.ID, control.StatusActive)

	var delta *state.Desired
	t.Run("replays only later changes", func(t *testing.T) {
		a, d2, st := firstState(t, url, "node3", node3VTEP, withState(applied))
		if st.LastResync != "delta" || st.Fetched != 3 {
			t.Errorf("resync %q fetched %d records, want delta with 3 (vm3's port, status and membership)", st.LastResync, st.Fetched)
		}
		if got := l2pop(d2); !contains(got, "remote vxlan100_net fa:16:3e:00:00:03 @192.168.248.4") {
			t.Errorf("vm3 missing after delta resync:%s", describe(d2))
		}
		delta = waitSnapshot(t, c, a, dir)
		applied = delta.Revision
	})

	t.Run("full resync builds the same state", func(t *testing.T) {
		a, full, st := firstState(t, url, "node3", node3VTEP)
		defer a.stop()
		if st.LastResync != "full" || st.Fetched < 8 {
			t.Errorf("resync %q fetched %d, want a full load of every followed record", st.LastResync, st.Fetched)
		}
		if !sameState(delta, full) {
			t.Errorf("delta and full states differ:\ndelta:%s\nfull:%s", describe(delta), describe(full))
		}
	})

	t.Run("mismatched applied revision", func(t *testing.T) {
		other := t.TempDir()
		raw, err := os.ReadFile(filepath.Join(dir, control.SnapshotFile))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(other, control.SnapshotFile), raw, 0o600); err != nil {
			t.Fatal(err)
		}
		a, _, st := firstState(t, url, "node3", node3VTEP, func(o *control.AgentOptions) { o.StateDir, o.AppliedRevision = other, applied-1 })
		defer a.stop()
		if st.LastResync != "full" {
			t.Errorf("resync %q, want full: the snapshot is not what the dataplane applied", st.LastResync)
		}
	})

	t.Run("history gone", func(t *testing.T) {
		// vm3 is deleted and the deletion marker compacted away: replay
		// from the snapshot could not see it, so the agent must load fully.
		if err := c.DeletePort(ctx, vm3.ID, 0); err != nil {
			t.Fatal(err)
		}
		if err := c.Compact(ctx, 0); err != nil {
			t.Fatal(err)
		}
		a, d2, st := firstState(t, url, "node3", node3VTEP, withState(applied))
		defer a.stop()
		if st.LastResync != "full" {
			t.Errorf("resync %q, want full after compaction", st.LastResync)
		}
		if contains(l2pop(d2), "fa:16:3e:00:00:03") {
			t.Errorf("deleted vm3 still there:%s", describe(d2))
		}
	})
}

func contains(s, sub string) bool { return len(sub) == 0 || indexOf(s, sub) >= 0 }

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// waitStatus waits until the controller reports the port's status.
func waitStatus(t *testing.T, c *control.Controller, portID, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		p, err := c.GetPort(context.Background(), portID)
		if err == nil && p.Status == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("port %s never became %s", portID, want)
}
