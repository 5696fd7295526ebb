package bench

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/control/natsd"
	"github.com/vxdp/vxdp/state"
)

// ControlPlaneOptions size the control-plane benchmark.
type ControlPlaneOptions struct {
	// Agents are the fleet sizes for convergence (default 10, 100, 1000).
	Agents []int
	// Events per fleet size and kind (default 20).
	Events int
	// ResyncPorts are the network sizes for resync and memory (default
	// 10000, 100000).
	ResyncPorts []int
	// DeltaChanges made while the agent is down before a delta resync
	// (default 100 ports, i.e. 200 records with their statuses).
	DeltaChanges int
	// Log (default: discarded).
	Log *slog.Logger
	// Commit of the binary, for the report; Progress shows the steps.
	Commit   string
	Progress *Progress
}

// ConvergenceFigure is how long a change takes to reach every agent of a
// network all the agents host.
type ConvergenceFigure struct {
	Agents int    `json:"agents"`
	Kind   string `json:"kind"` // "port-up" or "migration"
	Events int    `json:"events"`
	// Per agent and event, from the controller's write until the agent's
	// dataplane applied a state with the change.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	// Last agent of each event (convergence of the whole fleet): median
	// and worst.
	LastP50Ms float64 `json:"last_p50_ms"`
	LastMaxMs float64 `json:"last_max_ms"`
}

// ResyncFigure is a full and a delta resync of one agent whose network has
// Ports remote ports.
type ResyncFigure struct {
	Ports int `json:"ports"`
	// Full: start with nothing until the first state is applied.
	FullMs      float64 `json:"full_ms"`
	FullRecords uint64  `json:"full_records"`
	// Delta: restart from the snapshot after DeltaChanges new ports.
	DeltaMs      float64 `json:"delta_ms"`
	DeltaRecords uint64  `json:"delta_records"`
	// HeapMB is the agent's live heap (view, last state, snapshot capture).
	HeapMB float64 `json:"heap_mb"`
	// SnapshotMB is the size of the persisted snapshot.
	SnapshotMB float64 `json:"snapshot_mb"`
}

// ControlPlaneReport is the result of RunControlPlane.
type ControlPlaneReport struct {
	Machine     Machine             `json:"machine"`
	CPUs        int                 `json:"cpus"`
	Convergence []ConvergenceFigure `json:"convergence"`
	Resync      []ResyncFigure      `json:"resync"`
}

// RunControlPlane measures the NATS control plane with one embedded server
// and simulated agents (the real agent code, each with its own connection,
// in front of a dataplane that applies instantly): convergence of a port
// coming up and of a live migration across 10/100/1000 agents, and full
// and delta resync time and memory of an agent at 10k/100k ports.
func RunControlPlane(ctx context.Context, o ControlPlaneOptions) (*ControlPlaneReport, error) {
	if o.Agents == nil {
		o.Agents = []int{10, 100, 1000}
	}
	if o.Events == 0 {
		o.Events = 20
	}
	if o.ResyncPorts == nil {
		o.ResyncPorts = []int{10000, 100000}
	}
	if o.DeltaChanges == 0 {
		o.DeltaChanges = 100
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	r := &ControlPlaneReport{Machine: machineInfo(o.Commit), CPUs: runtime.NumCPU()}
	o.Progress.Start(len(o.Agents) + len(o.ResyncPorts))
	defer o.Progress.Done()
	for _, n := range o.Agents {
		o.Progress.Step("convergence with %d agents", n)
		figs, err := cpConvergence(ctx, n, o.Events, o.Log)
		if err != nil {
			return r, fmt.Errorf("convergence with %d agents: %w", n, err)
		}
		r.Convergence = append(r.Convergence, figs...)
	}
	for _, p := range o.ResyncPorts {
		o.Progress.Step("resync at %d ports", p)
		fig, err := cpResync(ctx, p, o.DeltaChanges, o.Log)
		if err != nil {
			return r, fmt.Errorf("resync at %d ports: %w", p, err)
		}
		r.Resync = append(r.Resync, fig)
	}
	return r, nil
}

// WriteTable prints the report for people.
func (r *ControlPlaneReport) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "control plane, one embedded NATS server, %d CPUs\n\n", r.CPUs)
	conv, resync := r.cpTables()
	for _, t := range [][][]string{conv, resync} {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		for _, line := range t {
			fmt.Fprintln(tw, strings.Join(line, "\t")+"\t")
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	return nil
}

// cpEnv is an embedded server with the bucket and a controller.
type cpEnv struct {
	srv  *natsd.Server
	dir  string
	nc   *nats.Conn
	js   jetstream.JetStream
	ctl  *control.Controller
	log  *slog.Logger
	stop func()
}

func cpStart(ctx context.Context, log *slog.Logger) (*cpEnv, error) {
	dir, err := os.MkdirTemp("", "vxdp-bench-cp-")
	if err != nil {
		return nil, err
	}
	srv, err := natsd.Start(ctx, natsd.Options{Listen: "127.0.0.1:0", StoreDir: filepath.Join(dir, "nats"), Log: log})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	e := &cpEnv{srv: srv, dir: dir, log: log}
	e.stop = func() {
		if e.nc != nil {
			e.nc.Close()
		}
		srv.Shutdown()
		os.RemoveAll(dir)
	}
	if e.nc, err = nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1)); err != nil {
		e.stop()
		return nil, err
	}
	if e.js, err = jetstream.New(e.nc); err != nil {
		e.stop()
		return nil, err
	}
	if _, err := control.EnsureBucket(ctx, e.js, control.BucketOptions{}); err != nil {
		e.stop()
		return nil, err
	}
	if e.ctl, err = control.NewController(ctx, e.nc, control.ControllerOptions{Log: log}); err != nil {
		e.stop()
		return nil, err
	}
	return e, nil
}

// cpTarget is what every agent must apply for an event to be done.
type cpTarget struct {
	mac   state.MAC
	owner string
	vtep  netip.Addr
	t0    time.Time
	at    map[string]time.Duration
	done  chan struct{}
	want  int
}

// cpFleet runs simulated agents and records when each applies the target.
type cpFleet struct {
	mu      sync.Mutex
	target  *cpTarget
	ready   map[string]bool
	readyN  int
	started map[string]bool
	stops   []func()
}

// cpSimAgent is one simulated hypervisor: a real Agent, its own
// connection, a dataplane that installs everything at once.
func (f *cpFleet) start(ctx context.Context, url, host string, vtep netip.Addr, log *slog.Logger, wantRemote int) error {
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.Name(host))
	if err != nil {
		return err
	}
	a, err := control.NewAgent(nc, control.AgentOptions{Host: host, VTEP: vtep, Log: log, Version: "bench", Debounce: 5 * time.Millisecond})
	if err != nil {
		nc.Close()
		return err
	}
	actx, cancel := context.WithCancel(ctx)
	updates := make(chan *state.Desired)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = a.Run(actx, updates) }()
	go func() {
		defer wg.Done()
		ackApplies(actx, a, updates, func(d *state.Desired) { f.applied(host, d, wantRemote) })
	}()
	f.mu.Lock()
	f.stops = append(f.stops, func() { cancel(); wg.Wait(); nc.Close() })
	f.mu.Unlock()
	return nil
}

// ackApplies plays a dataplane that installs every state at once: it
// reports each as applied to the agent, then to done, until ctx ends.
func ackApplies(ctx context.Context, a *control.Agent, updates <-chan *state.Desired, done func(*state.Desired)) {
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-updates:
			a.Applied(ctx, d, state.Result{}, nil)
			done(d)
		}
	}
}

func (f *cpFleet) applied(host string, d *state.Desired, wantRemote int) {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(d.LocalPorts) > 0 {
		f.started[host] = true
	}
	if !f.ready[host] && len(d.RemotePorts) >= wantRemote && len(d.LocalPorts) > 0 {
		f.ready[host] = true
		f.readyN++
	}
	t := f.target
	if t == nil {
		return
	}
	if _, done := t.at[host]; done {
		return
	}
	has := false
	if host == t.owner {
		has = slices.ContainsFunc(d.LocalPorts, func(p state.LocalPort) bool { return p.MAC == t.mac })
	} else {
		has = slices.ContainsFunc(d.RemotePorts, func(p state.RemotePort) bool { return p.MAC == t.mac && p.VTEP == t.vtep })
	}
	if has {
		t.at[host] = now.Sub(t.t0)
		if len(t.at) == t.want {
			close(t.done)
		}
	}
}

func (f *cpFleet) stop() {
	var wg sync.WaitGroup
	for _, s := range f.stops {
		wg.Add(1)
		go func() { defer wg.Done(); s() }()
	}
	wg.Wait()
}

func cpHost(i int) string { return fmt.Sprintf("h%04d", i) }

func cpVTEP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

func cpMAC(kind byte, i int) state.MAC {
	return state.MAC{0xfa, 0x16, kind, byte(i >> 16), byte(i >> 8), byte(i)}
}

// cpConvergence runs n agents on one network (one port each) and times
// port-up events (a port created on one host, ACTIVE there, distributed to
// all) and live migrations (a port's host flipped by compare-and-set).
func cpConvergence(ctx context.Context, n, events int, log *slog.Logger) ([]ConvergenceFigure, error) {
	env, err := cpStart(ctx, log)
	if err != nil {
		return nil, err
	}
	defer env.stop()
	netw, err := env.ctl.CreateNetwork(ctx, control.NetworkSpec{Name: "bench", VNI: 4242})
	if err != nil {
		return nil, err
	}
	for i := range n {
		if _, err := env.ctl.CreatePort(ctx, control.PortSpec{Network: netw.ID, MAC: cpMAC(0, i), Host: cpHost(i)}); err != nil {
			return nil, err
		}
	}
	fleet := &cpFleet{ready: map[string]bool{}, started: map[string]bool{}}
	defer fleet.stop()
	// Agents start in waves of 50, as hypervisors do, not all in the same
	// millisecond: 1000 simultaneous full resyncs on two cores measure the
	// thundering herd, not convergence.
	const wave = 50
	for i := 0; i < n; i += wave {
		for j := i; j < min(i+wave, n); j++ {
			if err := fleet.start(ctx, env.srv.ClientURL(), cpHost(j), cpVTEP(j), log, n-1); err != nil {
				return nil, err
			}
		}
		if err := cpWait(ctx, 5*time.Minute, func() bool {
			fleet.mu.Lock()
			defer fleet.mu.Unlock()
			return len(fleet.started) == min(i+wave, n)
		}); err != nil {
			return nil, fmt.Errorf("agents %d-%d never started: %w", i, min(i+wave, n)-1, err)
		}
	}
	if err := cpWait(ctx, 5*time.Minute, func() bool {
		fleet.mu.Lock()
		defer fleet.mu.Unlock()
		return fleet.readyN == n
	}); err != nil {
		return nil, fmt.Errorf("fleet never converged: %w", err)
	}
	run := func(kind string, event func(i int) (owner int, mac state.MAC, err error)) (ConvergenceFigure, error) {
		fig := ConvergenceFigure{Agents: n, Kind: kind, Events: events}
		var all, last []float64
		for e := range events {
			owner := e % n
			mac := cpMAC(0xee, e)
			if kind == "migration" {
				owner = (e + 1) % n
			}
			t := &cpTarget{mac: mac, owner: cpHost(owner), vtep: cpVTEP(owner), at: map[string]time.Duration{}, done: make(chan struct{}), want: n}
			fleet.mu.Lock()
			t.t0 = time.Now()
			fleet.target = t
			fleet.mu.Unlock()
			if _, _, err := event(e); err != nil {
				return fig, err
			}
			select {
			case <-t.done:
			case <-time.After(time.Minute):
				return fig, fmt.Errorf("%s event %d: only %d of %d agents applied it in a minute", kind, e, len(t.at), n)
			case <-ctx.Done():
				return fig, ctx.Err()
			}
			fleet.mu.Lock()
			fleet.target = nil
			worst := 0.0
			for _, d := range t.at {
				ms := float64(d) / 1e6
				all = append(all, ms)
				worst = max(worst, ms)
			}
			fleet.mu.Unlock()
			last = append(last, worst)
		}
		fig.P50Ms, fig.P99Ms = cpPercentile(all, 50), cpPercentile(all, 99)
		fig.LastP50Ms, fig.LastMaxMs = cpPercentile(last, 50), cpPercentile(last, 100)
		return fig, nil
	}
	ports := make([]string, events)
	up, err := run("port-up", func(e int) (int, state.MAC, error) {
		p, err := env.ctl.CreatePort(ctx, control.PortSpec{Network: netw.ID, MAC: cpMAC(0xee, e), Host: cpHost(e % n)})
		ports[e] = p.ID
		return e % n, p.MAC, err
	})
	if err != nil {
		return nil, err
	}
	mig, err := run("migration", func(e int) (int, state.MAC, error) {
		_, err := env.ctl.BindPort(ctx, ports[e], cpHost((e+1)%n), 0)
		return (e + 1) % n, cpMAC(0xee, e), err
	})
	if err != nil {
		return nil, err
	}
	return []ConvergenceFigure{up, mig}, nil
}

func cpWait(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// cpPercentile is the p-th percentile (nearest rank) of v.
func cpPercentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// cpBulk writes records as fast as the server acknowledges them.
func cpBulk(ctx context.Context, js jetstream.JetStream, records map[string]any) error {
	var futures []jetstream.PubAckFuture
	for key, rec := range records {
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		f, err := js.PublishAsync(control.KeySubject(control.DefaultBucket, key), b)
		if err != nil {
			return err
		}
		futures = append(futures, f)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	for _, f := range futures {
		select {
		case err := <-f.Err():
			return err
		default:
		}
	}
	return nil
}

// cpRemotePorts writes count ACTIVE ports of netID bound to hosts r0000...
// (agent records included), directly: the controller's checks make
// 100k creates slow and are not what is measured.
func cpRemotePorts(ctx context.Context, js jetstream.JetStream, netID string, from, count int) error {
	const perHost = 1000
	recs := map[string]any{}
	flush := func() error {
		err := cpBulk(ctx, js, recs)
		clear(recs)
		return err
	}
	for i := from; i < from+count; i++ {
		host := fmt.Sprintf("r%04d", i/perHost)
		if i%perHost == 0 || i == from {
			recs[control.AgentKey(host)] = &control.AgentRecord{Schema: control.SchemaVersion, ID: control.AgentID(host), Host: host,
				AgentType: control.AgentType, Binary: control.AgentBinary, VTEP: cpVTEP(1<<16 + i/perHost), AdminStateUp: true}
		}
		id := cpUUID(i)
		recs[control.PortKey(netID, id)] = &control.PortRecord{Schema: control.SchemaVersion, ID: id, NetworkID: netID,
			MAC: cpMAC(0xbb, i), FixedIPs: []netip.Addr{netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)})},
			PortSecurity: true, Host: host, Generation: 1}
		recs[control.StatusKey(netID, host, id)] = &control.StatusRecord{Schema: control.SchemaVersion, PortID: id, Host: host,
			Status: control.StatusActive, Generation: 1}
		if len(recs) >= 20000 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// cpResync times one agent's full resync with ports remote ports, its
// heap, then a delta resync after changes made while it was down.
func cpResync(ctx context.Context, ports, changes int, log *slog.Logger) (ResyncFigure, error) {
	fig := ResyncFigure{Ports: ports}
	env, err := cpStart(ctx, log)
	if err != nil {
		return fig, err
	}
	defer env.stop()
	netw, err := env.ctl.CreateNetwork(ctx, control.NetworkSpec{Name: "big", VNI: 7000})
	if err != nil {
		return fig, err
	}
	if err := cpRemotePorts(ctx, env.js, netw.ID, 0, ports); err != nil {
		return fig, err
	}
	own, err := env.ctl.CreatePort(ctx, control.PortSpec{Network: netw.ID, MAC: state.MAC{0xfa, 0x16, 0x3e, 0xcc, 0, 1}, Host: "target"})
	if err != nil {
		return fig, err
	}
	stateDir := filepath.Join(env.dir, "agent")

	type run struct {
		d       *state.Desired
		took    time.Duration
		fetched uint64
		applied *atomic.Uint64 // revision of the last state applied
		stop    func()
	}
	start := func(applied uint64) (run, error) {
		nc, err := nats.Connect(env.srv.ClientURL(), nats.MaxReconnects(-1))
		if err != nil {
			return run{}, err
		}
		t0 := time.Now()
		a, err := control.NewAgent(nc, control.AgentOptions{Host: "target", VTEP: netip.MustParseAddr("10.255.0.1"), StateDir: stateDir,
			AppliedRevision: applied, Log: log, Version: "bench"})
		if err != nil {
			nc.Close()
			return run{}, err
		}
		actx, cancel := context.WithCancel(ctx)
		updates := make(chan *state.Desired)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); _ = a.Run(actx, updates) }()
		var d *state.Desired
		select {
		case d = <-updates:
		case <-time.After(5 * time.Minute):
			cancel()
			wg.Wait()
			nc.Close()
			return run{}, errors.New("no state after 5 minutes")
		}
		r := run{d: d, took: time.Since(t0), fetched: a.Stats().Fetched, applied: &atomic.Uint64{}}
		a.Applied(actx, d, state.Result{}, nil)
		r.applied.Store(d.Revision)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ackApplies(actx, a, updates, func(d *state.Desired) { r.applied.Store(d.Revision) })
		}()
		r.stop = func() { cancel(); wg.Wait(); nc.Close() }
		return r, nil
	}

	full, err := start(0)
	if err != nil {
		return fig, err
	}
	if len(full.d.RemotePorts) != ports {
		full.stop()
		return fig, fmt.Errorf("full resync: %d remote ports, want %d", len(full.d.RemotePorts), ports)
	}
	fig.FullMs, fig.FullRecords = float64(full.took)/1e6, full.fetched
	// The agent's registration and its port's ACTIVE status come back as
	// more states: wait until both are applied and the snapshot of the
	// last applied state is on disk.
	kv := env.ctl.KV()
	settled := func() bool {
		st, err1 := kv.Get(ctx, control.StatusKey(netw.ID, "target", own.ID))
		ag, err2 := kv.Get(ctx, control.AgentKey("target"))
		applied := full.applied.Load()
		return err1 == nil && err2 == nil && applied >= max(st.Revision(), ag.Revision()) && cpSnapshotRevision(stateDir) == applied
	}
	if err := cpWait(ctx, 2*time.Minute, settled); err != nil {
		full.stop()
		return fig, fmt.Errorf("snapshot: %w", err)
	}
	// The agent's heap: live heap while it runs, less once it stopped.
	runtime.GC()
	alive := cpHeap()
	full.stop()
	runtime.GC()
	fig.HeapMB = (float64(alive) - float64(cpHeap())) / (1 << 20)
	applied := full.applied.Load()
	if cpSnapshotRevision(stateDir) != applied {
		return fig, errors.New("the agent applied a state after its last snapshot")
	}
	if st, err := os.Stat(filepath.Join(stateDir, control.SnapshotFile)); err == nil {
		fig.SnapshotMB = float64(st.Size()) / (1 << 20)
	}

	if err := cpRemotePorts(ctx, env.js, netw.ID, ports, changes); err != nil {
		return fig, err
	}
	delta, err := start(applied)
	if err != nil {
		return fig, err
	}
	defer delta.stop()
	if len(delta.d.RemotePorts) != ports+changes {
		return fig, fmt.Errorf("delta resync: %d remote ports, want %d", len(delta.d.RemotePorts), ports+changes)
	}
	fig.DeltaMs, fig.DeltaRecords = float64(delta.took)/1e6, delta.fetched
	return fig, nil
}

func cpHeap() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// cpSnapshotRevision is the desired revision of the persisted snapshot.
func cpSnapshotRevision(dir string) uint64 {
	f, err := os.Open(filepath.Join(dir, control.SnapshotFile))
	if err != nil {
		return 0
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadBytes('\n')
	var h struct {
		DesiredRevision uint64 `json:"desired_revision"`
	}
	if json.Unmarshal(line, &h) != nil {
		return 0
	}
	return h.DesiredRevision
}

// cpQuiet discards logs.
func cpQuiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// cpUUID is a UUID derived from i: random-looking, like real port ids.
func cpUUID(i int) string {
	h := sha1.Sum([]byte(strconv.Itoa(i)))
	s := hex.EncodeToString(h[:16])
	return s[0:8] + "-" + s[8:12] + "-4" + s[13:16] + "-8" + s[17:20] + "-" + s[20:32]
}
