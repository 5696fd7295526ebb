package control_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/vxdp/vxdp/control"
)

func TestLiveMigrationCAS(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	url := srv.ClientURL()
	c := newController(t, url)
	seedPorts(t, ctx, c)
	agents := map[string]*testAgent{
		"node1": startAgent(t, url, "node1", node1VTEP),
		"node3": startAgent(t, url, "node3", node3VTEP),
		"node4": startAgent(t, url, "node4", node4VTEP),
	}
	waitStatus(t, c, seedVM2ID, control.StatusActive)
	p, err := c.GetPort(ctx, seedVM2ID)
	if err != nil {
		t.Fatal(err)
	}

	// Two controllers move vm2 from the same revision at the same time:
	// exactly one flip wins, the other fails cleanly.
	c2 := newController(t, url)
	targets := []struct {
		c    *control.Controller
		host string
	}{{c, "node4"}, {c2, "node1"}}
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, tg := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = tg.c.BindPort(ctx, seedVM2ID, tg.host, p.Revision)
		}()
	}
	wg.Wait()
	winner, loser := "", ""
	for i, err := range errs {
		switch {
		case err == nil && winner == "":
			winner = targets[i].host
		case errors.Is(err, control.ErrConflict):
			loser = targets[i].host
		default:
			t.Fatalf("bind to %s: %v", targets[i].host, err)
		}
	}
	if winner == "" || loser == "" {
		t.Fatalf("want one winner and one conflict, got %v", errs)
	}
	now, err := c.GetPort(ctx, seedVM2ID)
	if err != nil {
		t.Fatal(err)
	}
	if now.Host != winner || now.Generation != p.Generation+1 {
		t.Fatalf("port on %s generation %d, want %s generation %d", now.Host, now.Generation, winner, p.Generation+1)
	}
	// Only the winner's binding index entry is left.
	for host, want := range map[string]bool{"node3": false, winner: true, loser: false} {
		_, err := c.KV().Get(ctx, control.BindingKey(host, seedVM2ID))
		if got := err == nil; got != want {
			t.Errorf("binding entry of %s present=%v, want %v (err %v)", host, got, want, err)
		}
	}
	// A stale compare-and-set changes nothing.
	if _, err := c.BindPort(ctx, seedVM2ID, "node3", p.Revision); !errors.Is(err, control.ErrConflict) {
		t.Errorf("bind from a stale revision: %v, want ErrConflict", err)
	}
	if again, _ := c.GetPort(ctx, seedVM2ID); again.Revision != now.Revision {
		t.Errorf("stale bind wrote revision %d", again.Revision)
	}

	// Every agent converges on the winner: the MAC at its VTEP, node3 empty.
	vtep := map[string]string{"node1": node1VTEP, "node4": node4VTEP}[winner]
	agents["node3"].waitL2(t)
	for host, a := range agents {
		if host == "node3" {
			continue
		}
		if host == winner {
			a.waitFor(t, "vm2 local", func(d *stateT) bool { return contains(l2pop(d), "local vxlan100_net fa:16:3e:cb:98:2c") })
		} else {
			a.waitFor(t, "vm2 at "+vtep, func(d *stateT) bool {
				return contains(l2pop(d), "remote vxlan100_net fa:16:3e:cb:98:2c @"+vtep)
			})
		}
	}

	// Migrate back and measure the flip until the last agent has it.
	w, err := control.WatchApplies(connect(t, url), "")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	mctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	res, err := c.MigratePort(mctx, w, seedVM2ID, "node3")
	if err != nil {
		t.Fatal(err)
	}
	if res.Converged <= 0 || res.Converged < res.Active || len(res.PerHost) != 3 {
		t.Errorf("migration timing %+v: want a positive convergence time for the 3 hosts", res)
	}
	t.Logf("flip %s -> node3: ACTIVE after %v, all agents after %v (%v)", res.From, res.Active, res.Converged, res.PerHost)
	agents["node4"].waitL2(t,
		"net vxlan100_net vni 100 mtu 1450 flood 192.168.248.1,192.168.248.3",
		"local vxlan100_net fa:16:3e:06:42:34 tap5f0c1a2b-3c 172.16.100.12",
		"remote vxlan100_net fa:16:3e:cb:98:2c @192.168.248.3 172.16.100.19",
		"remote vxlan100_net fa:16:3e:6e:c0:44 @192.168.248.1 172.16.100.10",
	)
}

// A port whose tap is missing is DOWN and not distributed; it becomes
// ACTIVE (and distributed) when the tap appears, DOWN again when it goes.
func TestPortStatusFollowsTap(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	url := srv.ClientURL()
	c := newController(t, url)
	n, _ := seedPorts(t, ctx, c)
	node3 := startAgent(t, url, "node3", node3VTEP)
	node4 := startAgent(t, url, "node4", node4VTEP)
	node4.setMissing("6a1b2c3d-0000-4000-8000-000000000001", true)
	if _, err := c.CreatePort(ctx, control.PortSpec{ID: "6a1b2c3d-0000-4000-8000-000000000001", Network: n.ID, MAC: mac("fa:16:3e:00:00:07"), Host: "node4"}); err != nil {
		t.Fatal(err)
	}
	node4.waitFor(t, "port local", func(d *stateT) bool { return contains(l2pop(d), "fa:16:3e:00:00:07") })
	waitStatus(t, c, "6a1b2c3d-0000-4000-8000-000000000001", control.StatusDown)
	time.Sleep(100 * time.Millisecond)
	if contains(l2pop(node3.current()), "fa:16:3e:00:00:07") {
		t.Fatalf("a DOWN port was distributed:%s", describe(node3.current()))
	}
	node4.setMissing("6a1b2c3d-0000-4000-8000-000000000001", false)
	node4.reapply()
	node3.waitFor(t, "port distributed once ACTIVE", func(d *stateT) bool {
		return contains(l2pop(d), "remote vxlan100_net fa:16:3e:00:00:07 @192.168.248.4")
	})
	node4.setMissing("6a1b2c3d-0000-4000-8000-000000000001", true)
	node4.reapply()
	node3.waitFor(t, "port withdrawn once DOWN", func(d *stateT) bool { return !contains(l2pop(d), "fa:16:3e:00:00:07") })
	waitStatus(t, c, "6a1b2c3d-0000-4000-8000-000000000001", control.StatusDown)
}
