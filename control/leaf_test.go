package control_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/control/natsd"
)

// Agents of a rack on a leafnode (`vxdp server --leaf`): they converge
// with an agent on the core, their consumers read the leafnode's mirror of
// the bucket (the core holds none of theirs), their writes reach the core,
// and they keep converging when the core loses a member.
func TestLeafnode(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-member cluster and a leafnode; failover takes ~20s")
	}
	t0 := time.Now()
	phase := func(what string) { t.Logf("%6.2fs %s", time.Since(t0).Seconds(), what) }
	var leafURLs []string
	tc := startClusterWith(t, func(i int, o *natsd.Options) {
		p, err := natsd.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		o.Domain, o.LeafListen = "core", fmt.Sprintf("127.0.0.1:%d", p)
		leafURLs = append(leafURLs, fmt.Sprintf("nats-leaf://127.0.0.1:%d", p))
	})
	lp, err := natsd.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leaf, err := natsd.StartProcess(lctx, tc.bin, natsd.Options{Name: "rack1", Listen: fmt.Sprintf("127.0.0.1:%d", lp),
		StoreDir: t.TempDir(), Domain: "rack1", Leaf: leafURLs}, "--log-level", "warn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(leaf.Stop)
	phase("cluster and leafnode started")

	withAll := tc.withAll
	js, c := tc.controller(t)
	seedPorts(t, context.Background(), c)
	onLeaf := func(o *control.ConnectOptions) { o.Retry = true }
	node1 := startAgentConn(t, connect(t, tc.urls[0], withAll), "node1", node1VTEP)
	node3 := startAgentConn(t, connect(t, leaf.ClientURL(), onLeaf), "node3", node3VTEP)
	node4 := startAgentConn(t, connect(t, leaf.ClientURL(), onLeaf), "node4", node4VTEP)
	seed := []string{
		"net vxlan100_net vni 100 mtu 1450 flood 192.168.248.1,192.168.248.4",
		"local vxlan100_net fa:16:3e:cb:98:2c tap9784ef08-97 172.16.100.19",
		"remote vxlan100_net fa:16:3e:06:42:34 @192.168.248.4 172.16.100.12",
		"remote vxlan100_net fa:16:3e:6e:c0:44 @192.168.248.1 172.16.100.10",
	}
	// node3's view needs node4's ACTIVE status (written from the leaf,
	// through the mirror, into the core) and node1's (written on the core).
	node3.waitL2(t, seed...)
	node1.waitFor(t, "node3's port from the leaf", func(d *stateT) bool {
		return contains(l2pop(d), "remote vxlan100_net fa:16:3e:cb:98:2c @192.168.248.3")
	})
	phase("converged: agents on the core and on the leaf")

	// The leaf's agents read the leaf's mirror: the core holds no consumer of theirs.
	hosts := func(ctx context.Context, js jetstream.JetStream) map[string]bool {
		out := map[string]bool{}
		s, err := js.Stream(ctx, control.StreamName(control.DefaultBucket))
		if err != nil {
			t.Fatal(err)
		}
		for ci := range s.ListConsumers(ctx).Info() {
			if h := ci.Config.Metadata["vxdp_host"]; h != "" {
				out[h] = true
			}
		}
		return out
	}
	lnc := connect(t, leaf.ClientURL())
	ljs, err := jetstream.New(lnc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if core, mirror := hosts(ctx, js), hosts(ctx, ljs); core["node3"] || core["node4"] || !mirror["node3"] || !mirror["node4"] || mirror["node1"] {
		t.Errorf("consumers by host: core %v, leaf mirror %v; want node3 and node4 on the leaf only", core, mirror)
	}

	// Lose the core's stream leader; a port created afterwards reaches
	// every agent, and its host on the leaf reports it ACTIVE.
	leader := tc.stopStreamLeader(t, js)
	phase("killed the core's leader " + leader)
	eventually(t, "create a port after losing the leader", func(ctx context.Context) error {
		_, err := c.CreatePort(ctx, control.PortSpec{Network: seedNetID, Name: "vm5", MAC: mac("fa:16:3e:00:00:05"), Host: "node4"})
		return err
	})
	for _, a := range []*testAgent{node1, node3} {
		a.waitWithin(t, 60*time.Second, "vm5 after losing "+leader, func(d *stateT) bool {
			return contains(l2pop(d), "remote vxlan100_net fa:16:3e:00:00:05 @192.168.248.4")
		})
	}
	node4.waitFor(t, "vm5 local", func(d *stateT) bool { return contains(l2pop(d), "local vxlan100_net fa:16:3e:00:00:05") })
	phase("converged without the leader")
	if st := node3.agent.Stats(); st.FullResyncs != 1 {
		t.Errorf("node3 resynced fully %d times, want only at start", st.FullResyncs)
	}
}
