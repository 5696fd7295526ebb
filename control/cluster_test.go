package control_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/control/natsd"
)

// testCluster is three `vxdp server` processes on loopback, routed
// together, as three controller nodes would run them.
type testCluster struct {
	bin     string
	opts    []natsd.Options
	servers []*natsd.Process
	urls    []string
}

// buildVXDP builds the vxdp binary for tests that run it as a process.
func buildVXDP(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vxdp")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/vxdp/vxdp/cmd/vxdp").CombinedOutput(); err != nil {
		t.Fatalf("build vxdp: %v\n%s", err, out)
	}
	return bin
}

func startCluster(t *testing.T) *testCluster {
	t.Helper()
	return startClusterWith(t, nil)
}

// startClusterWith is startCluster with each member's options changed by mod.
func startClusterWith(t *testing.T, mod func(i int, o *natsd.Options)) *testCluster {
	t.Helper()
	tc := &testCluster{bin: buildVXDP(t)}
	var routes []string
	for i := range 3 {
		cp, err := natsd.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		p, err := natsd.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		tc.opts = append(tc.opts, natsd.Options{
			Name: fmt.Sprintf("n%d", i+1), Listen: fmt.Sprintf("127.0.0.1:%d", p), StoreDir: t.TempDir(),
			Cluster: "vxdp", ClusterListen: fmt.Sprintf("127.0.0.1:%d", cp), Log: testLog(),
		})
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", cp))
		tc.urls = append(tc.urls, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	for i := range tc.opts {
		tc.opts[i].Routes = routes
		if mod != nil {
			mod(i, &tc.opts[i])
		}
	}
	tc.servers = make([]*natsd.Process, 3)
	tc.startAll(t)
	t.Cleanup(func() {
		for _, s := range tc.servers {
			if s != nil {
				s.Stop()
			}
		}
	})
	return tc
}

// startAll starts every member at once: a member reports ready only once
// the cluster has formed around it.
func (tc *testCluster) startAll(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := make(chan error, len(tc.opts))
	for i := range tc.opts {
		go func() {
			s, err := natsd.StartProcess(ctx, tc.bin, tc.opts[i], "--replicas", "3", "--log-level", "warn")
			tc.servers[i] = s
			errs <- err
		}()
	}
	for range tc.opts {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// stop kills member i, as a crashed node.
func (tc *testCluster) stop(i int) {
	tc.servers[i].Kill()
	tc.servers[i] = nil
}

// eventually retries f for up to 30s (leader elections take seconds).
// withAll has a connection try every member, and retry.
func (tc *testCluster) withAll(o *control.ConnectOptions) { o.URLs = tc.urls; o.Retry = true }

// controller creates the R3 bucket once the cluster can, and a controller
// of it.
func (tc *testCluster) controller(t *testing.T) (jetstream.JetStream, *control.Controller) {
	t.Helper()
	admin := connect(t, tc.urls[0], tc.withAll)
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "create the R3 bucket", func(ctx context.Context) error {
		_, err := control.EnsureBucket(ctx, js, control.BucketOptions{Replicas: 3})
		return err
	})
	var c *control.Controller
	eventually(t, "controller", func(ctx context.Context) error {
		c, err = control.NewController(ctx, admin, control.ControllerOptions{Log: testLog()})
		return err
	})
	return js, c
}

// stopStreamLeader stops the member leading the bucket's stream and
// returns its name.
func (tc *testCluster) stopStreamLeader(t *testing.T, js jetstream.JetStream) string {
	t.Helper()
	var leader string
	eventually(t, "stream leader", func(ctx context.Context) error {
		s, err := js.Stream(ctx, control.StreamName(control.DefaultBucket))
		if err != nil {
			return err
		}
		if leader = s.CachedInfo().Cluster.Leader; leader == "" {
			return fmt.Errorf("no leader yet")
		}
		return nil
	})
	for i, o := range tc.opts {
		if o.Name == leader {
			tc.stop(i)
		}
	}
	return leader
}

func eventually(t *testing.T, what string, f func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err = f(ctx)
		cancel()
		if err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

// A three-node cluster with an R3 bucket: losing a node (the bucket's
// leader) does not stop convergence; losing all of them leaves every agent
// on its last state, and they resync when the cluster is back.
func TestThreeNodeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster failover takes ~20s")
	}
	t0 := time.Now()
	phase := func(what string) { t.Logf("%6.2fs %s", time.Since(t0).Seconds(), what) }
	tc := startCluster(t)
	phase("cluster started")
	withAll := tc.withAll
	js, c := tc.controller(t)
	phase("bucket ready")
	seedPorts(t, context.Background(), c)
	agents := []*testAgent{
		startAgentConn(t, connect(t, tc.urls[0], withAll), "node1", node1VTEP),
		startAgentConn(t, connect(t, tc.urls[1], withAll), "node3", node3VTEP),
		startAgentConn(t, connect(t, tc.urls[2], withAll), "node4", node4VTEP),
	}
	node3 := agents[1]
	node3.waitFor(t, "seed view", func(d *stateT) bool { return len(d.RemotePorts) == 2 })

	phase("converged")
	// Kill the bucket's stream leader.
	leader := tc.stopStreamLeader(t, js)
	phase("killed the leader " + leader)
	eventually(t, "create a port after losing the leader", func(ctx context.Context) error {
		_, err := c.CreatePort(ctx, control.PortSpec{Network: seedNetID, Name: "vm5", MAC: mac("fa:16:3e:00:00:05"), Host: "node4"})
		return err
	})
	for _, a := range agents {
		if a.host == "node4" {
			continue
		}
		// The agents of the killed member reconnect to another one and
		// recreate their consumers once the stream has a new leader.
		a.waitWithin(t, 60*time.Second, "vm5 after losing "+leader, func(d *stateT) bool {
			return contains(l2pop(d), "remote vxlan100_net fa:16:3e:00:00:05 @192.168.248.4")
		})
	}

	phase("converged without the leader")
	// Full outage: the agents keep their last state and send nothing.
	node3.mu.Lock()
	applies, last := node3.applies, node3.last
	node3.mu.Unlock()
	for i := range tc.servers {
		if tc.servers[i] != nil {
			tc.stop(i)
		}
	}
	time.Sleep(3 * time.Second)
	node3.mu.Lock()
	if node3.applies != applies || node3.last != last {
		t.Errorf("node3 got %d new states during the outage", node3.applies-applies)
	}
	node3.mu.Unlock()
	select {
	case err := <-node3.done:
		t.Fatalf("agent stopped during the outage: %v", err)
	default:
	}

	// Back: a change made after the restart reaches every agent.
	tc.startAll(t)
	phase("cluster restarted")
	eventually(t, "delete vm1 after the outage", func(ctx context.Context) error {
		return c.DeletePort(ctx, seedVM1ID, 0)
	})
	phase("deleted vm1")
	node3.waitL2(t,
		"net vxlan100_net vni 100 mtu 1450 flood 192.168.248.1,192.168.248.4",
		"local vxlan100_net fa:16:3e:cb:98:2c tap9784ef08-97 172.16.100.19",
		"remote vxlan100_net fa:16:3e:00:00:05 @192.168.248.4 ",
		"remote vxlan100_net fa:16:3e:6e:c0:44 @192.168.248.1 172.16.100.10",
	)
	phase("converged after the outage")
	if st := node3.agent.Stats(); st.FullResyncs != 1 {
		t.Errorf("node3 resynced fully %d times, want only at start (it continues from its watermark)", st.FullResyncs)
	}
}
