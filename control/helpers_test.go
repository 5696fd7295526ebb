package control_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/control/natsd"
	"github.com/vxdp/vxdp/state"
)

// testLog is quiet unless VXDP_TEST_LOG is set.
func testLog() *slog.Logger {
	if os.Getenv("VXDP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startServer runs an embedded NATS server on a random port with a
// temporary store, and the control-plane bucket in it.
func startServer(t *testing.T, users ...natsd.User) *natsd.Server {
	t.Helper()
	return startServerAt(t, "127.0.0.1:0", users...)
}

// startServerAt is startServer listening on listen.
func startServerAt(t *testing.T, listen string, users ...natsd.User) *natsd.Server {
	t.Helper()
	return startServerWith(t, natsd.Options{Listen: listen, Users: users})
}

// startServerWith is startServer with options (a temporary store, a quiet
// log and a random port unless set).
func startServerWith(t *testing.T, o natsd.Options) *natsd.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	o.StoreDir, o.Log = t.TempDir(), testLog()
	srv, err := natsd.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := control.EnsureBucket(ctx, js, control.BucketOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.BrokerReady():
	case <-ctx.Done():
		t.Fatal("the broker does not serve")
	}
	return srv
}

func connect(t *testing.T, url string, mod ...func(*control.ConnectOptions)) *nats.Conn {
	t.Helper()
	o := control.ConnectOptions{URLs: []string{url}, Log: testLog(), Timeout: 2 * time.Second}
	for _, m := range mod {
		m(&o)
	}
	nc, err := control.Connect(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func newController(t *testing.T, url string) *control.Controller {
	t.Helper()
	c, err := control.NewController(context.Background(), connect(t, url), control.ControllerOptions{Log: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testAgent is an agent wired to a fake dataplane that applies every
// Desired at once and reports ports whose tap is "missing" as pending.
type testAgent struct {
	host  string
	vtep  netip.Addr
	agent *control.Agent
	reg   *prometheus.Registry

	mu       sync.Mutex
	last     *state.Desired
	applies  int
	missing  map[string]bool // port ids without a tap
	changed  chan struct{}
	cancel   context.CancelFunc
	stopOnce sync.Once
	done     chan error
	appliedC chan *state.Desired // every applied state, if not nil
}

type agentOpt func(*control.AgentOptions)

func startAgent(t *testing.T, url, host, vtep string, opts ...agentOpt) *testAgent {
	t.Helper()
	return startAgentConn(t, connect(t, url), host, vtep, opts...)
}

func startAgentConn(t *testing.T, nc *nats.Conn, host, vtep string, opts ...agentOpt) *testAgent {
	t.Helper()
	reg := prometheus.NewRegistry()
	o := control.AgentOptions{
		Host: host, VTEP: netip.MustParseAddr(vtep), Version: "test", Log: testLog().With("agent", host),
		Metrics: reg, ReportInterval: time.Second, Debounce: 5 * time.Millisecond,
	}
	for _, f := range opts {
		f(&o)
	}
	a, err := control.NewAgent(nc, o)
	if err != nil {
		t.Fatal(err)
	}
	ta := &testAgent{host: host, vtep: o.VTEP, agent: a, reg: reg, missing: map[string]bool{}, changed: make(chan struct{}, 1), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	ta.cancel = cancel
	updates := make(chan *state.Desired)
	go func() { ta.done <- a.Run(ctx, updates) }()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case d := <-updates:
				ta.apply(ctx, d)
			}
		}
	}()
	t.Cleanup(ta.stop)
	return ta
}

func (ta *testAgent) apply(ctx context.Context, d *state.Desired) {
	ta.mu.Lock()
	var res state.Result
	for _, p := range d.LocalPorts {
		if ta.missing[p.ID] {
			res.Pending = append(res.Pending, p.ID)
		}
	}
	ta.last = d
	ta.applies++
	ch := ta.appliedC
	ta.mu.Unlock()
	ta.agent.Applied(ctx, d, res, nil)
	if ch != nil {
		ch <- d
	}
	select {
	case ta.changed <- struct{}{}:
	default:
	}
}

// reapply re-runs the last state, as the dataplane does when a tap appears
// or disappears.
func (ta *testAgent) reapply() {
	ta.mu.Lock()
	d := ta.last
	ta.mu.Unlock()
	if d != nil {
		ta.apply(context.Background(), d)
	}
}

func (ta *testAgent) setMissing(portID string, missing bool) {
	ta.mu.Lock()
	ta.missing[portID] = missing
	ta.mu.Unlock()
}

func (ta *testAgent) stop() {
	ta.stopOnce.Do(func() {
		ta.cancel()
		select {
		case err := <-ta.done:
			if err != nil {
				panic(fmt.Sprintf("agent %s: Run: %v", ta.host, err))
			}
		case <-time.After(10 * time.Second):
			panic(fmt.Sprintf("agent %s: Run did not return 10s after cancel", ta.host))
		}
	})
}

func (ta *testAgent) current() *state.Desired {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return ta.last
}

// waitFor waits until the last applied state satisfies cond.
func (ta *testAgent) waitFor(t *testing.T, what string, cond func(*state.Desired) bool) *state.Desired {
	t.Helper()
	return ta.waitWithin(t, 15*time.Second, what, cond)
}

// waitWithin is waitFor with its own timeout (failovers take longer).
func (ta *testAgent) waitWithin(t *testing.T, timeout time.Duration, what string, cond func(*state.Desired) bool) *state.Desired {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if d := ta.current(); d != nil && cond(d) {
			return d
		}
		select {
		case <-ta.changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%s: timed out waiting for %s; last state: %s", ta.host, what, describe(ta.current()))
		}
	}
}

// l2pop renders a Desired as sorted lines, the way an operator reads
// `bridge fdb show`: flood entries per network, local and remote MACs.
func l2pop(d *state.Desired) string {
	if d == nil {
		return "<none>"
	}
	names := map[string]string{}
	var lines []string
	for _, n := range d.Networks {
		names[n.ID] = n.Name
		var flood []string
		for _, v := range d.FloodList(n.ID) {
			flood = append(flood, v.IP.String())
		}
		slices.Sort(flood)
		switch n.Kind() {
		case state.NetworkVXLAN:
			lines = append(lines, fmt.Sprintf("net %s vni %d mtu %d flood %s", n.Name, n.VNI, n.MTU, strings.Join(flood, ",")))
		default:
			lines = append(lines, fmt.Sprintf("net %s %s %s/%d mtu %d", n.Name, n.Kind(), n.PhysicalNetwork, n.VLAN, n.MTU))
		}
	}
	ips := func(a []netip.Addr) string {
		s := make([]string, len(a))
		for i, ip := range a {
			s[i] = ip.String()
		}
		return strings.Join(s, ",")
	}
	for _, p := range d.LocalPorts {
		lines = append(lines, fmt.Sprintf("local %s %s %s %s", names[p.NetworkID], p.MAC, p.TapName(), ips(p.IPs)))
	}
	for _, p := range d.RemotePorts {
		vtep := "-" // a provider network's port: on the physical network
		if p.VTEP.IsValid() {
			vtep = p.VTEP.String()
		}
		lines = append(lines, fmt.Sprintf("remote %s %s @%s %s", names[p.NetworkID], p.MAC, vtep, ips(p.IPs)))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func describe(d *state.Desired) string { return "\n" + l2pop(d) }

// waitL2 waits until the host's l2pop view is want (lines in any order).
func (ta *testAgent) waitL2(t *testing.T, want ...string) *state.Desired {
	t.Helper()
	slices.Sort(want)
	w := strings.Join(want, "\n")
	if len(want) == 0 {
		w = ""
	}
	return ta.waitFor(t, "l2pop view\n"+w, func(d *state.Desired) bool { return l2pop(d) == w })
}

type stateT = state.Desired
