package control

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vxdp/vxdp/state"
)

// Agent type and binary, as `openstack network agent list` shows them.
const (
	AgentType   = "Linux bridge agent"
	AgentBinary = "vxdp-agent"
)

// DefaultReportInterval is Neutron's [agent] report_interval.
const DefaultReportInterval = 30 * time.Second

// AgentOptions configure the agent side of the control plane of one host.
type AgentOptions struct {
	// Host is this hypervisor's name, as ports are bound to it (required).
	Host string
	// VTEP is this host's tunnel address ([vxlan] local_ip; required).
	VTEP netip.Addr
	// StateDir keeps the snapshot of the agent's view for delta resyncs
	// after a restart ("" disables them: every start is a full resync).
	StateDir string
	// AppliedRevision is the Desired.Revision the dataplane applied last
	// (persisted next to its pinned maps). A snapshot of exactly that
	// revision allows a delta resync.
	AppliedRevision uint64
	// Bucket name (default DefaultBucket).
	Bucket string
	// Version of the agent, reported in its agent record.
	Version string
	// AvailabilityZone reported in the agent record ("" shows as None).
	AvailabilityZone string
	// Configurations reported in the agent record (as Neutron agents do:
	// tunnel types, l2_population, interface mappings...).
	Configurations map[string]any
	// ReportInterval between heartbeats (default DefaultReportInterval).
	ReportInterval time.Duration
	// Debounce waits this long after a change for more before handing the
	// dataplane what changed (default 2ms); a burst of changes (a port's
	// record and its status) makes one apply.
	Debounce time.Duration
	// MaxDelay bounds how long a change waits while changes keep coming
	// (default 250ms).
	MaxDelay time.Duration
	// Log (default slog.Default()).
	Log *slog.Logger
	// Metrics registers the agent's metrics (default: a private registry).
	Metrics prometheus.Registerer
}

// AgentStats are counters for tests, benchmarks and logs.
type AgentStats struct {
	// Fetched counts KV messages received since Run started.
	Fetched uint64
	// FullResyncs and DeltaResyncs count synchronisations by kind.
	FullResyncs, DeltaResyncs int
	// LastResync is "full" or "delta".
	LastResync string
	// Rejected counts records refused.
	Rejected uint64
	// Sent counts Desired states handed to the dataplane.
	Sent uint64
	// Watermark is the revision up to which every followed change is seen.
	Watermark uint64
	// Records is the size of the view.
	Records int
	// Networks is the number of followed networks.
	Networks int
}

// Agent is the control-plane side of a vxdp agent: it follows the part of
// the bucket its host needs (l2pop semantics), builds the host's
// state.Desired and hands it to the dataplane (state.Producer), publishes
// port status from the outcome of each apply (state.Observer), and writes
// its agent record and heartbeats. It reads and writes the bucket only
// through the broker (its consumers, its writes), so that it works with
// an agent credential (AgentPermissions).
//
// Run runs its parts, each a type of its own: the follower (the view of
// the bucket and the states built from it), the status writer, the
// heartbeat and the snapshot persister.
type Agent struct {
	*agentEnv
	ran     atomic.Bool
	follow  *viewFollower
	status  *statusWriter
	beat    *heartbeat
	persist *persister
	// out hands the states and changes to the dataplane; changes waiting
	// while it is busy are merged.
	out *latest[state.Update]
}

// agentEnv is what the parts of an agent share: its options, connection,
// broker client, metrics, log and counters.
type agentEnv struct {
	nc     *nats.Conn
	broker *brokerClient
	reader bucketReader
	opts   AgentOptions
	bucket string
	id     string
	log    *slog.Logger
	m      *agentMetrics
	start  time.Time

	fetched    atomic.Uint64
	appliedRev atomic.Uint64 // the revision the dataplane applied last
	mu         sync.Mutex
	stats      AgentStats
}

var errResync = errors.New("bucket changed identity: full resync")

// NewAgent makes the agent of opts.Host on connection nc. Nothing is read
// or written before Run.
func NewAgent(nc *nats.Conn, opts AgentOptions) (*Agent, error) {
	if err := ValidHost(opts.Host); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if err := ValidVTEP(opts.VTEP); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if opts.Bucket == "" {
		opts.Bucket = DefaultBucket
	}
	if opts.ReportInterval <= 0 {
		opts.ReportInterval = DefaultReportInterval
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 2 * time.Millisecond
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = 250 * time.Millisecond
	}
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	m, err := newAgentMetrics(opts.Metrics, nc)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	log = log.With("host", opts.Host)
	broker := &brokerClient{nc: nc, bucket: opts.Bucket, host: opts.Host}
	env := &agentEnv{
		nc: nc, broker: broker, reader: bucketReader{src: broker, nc: nc, bucket: opts.Bucket, log: log},
		opts: opts, bucket: opts.Bucket, id: AgentID(opts.Host), log: log, m: m, start: time.Now().UTC(),
	}
	env.appliedRev.Store(opts.AppliedRevision)
	a := &Agent{agentEnv: env, out: newLatest(state.Update.Then)}
	a.status = newStatusWriter(env)
	a.beat = newHeartbeat(env)
	a.persist = newPersister(env)
	a.follow = newViewFollower(env, a.out, a.status, a.beat, a.persist)
	return a, nil
}

// AgentID is the stable agent id of a host (a name-based UUID), so that
// `agent list` shows the same id across restarts and reinstalls.
func AgentID(host string) string {
	h := sha1.Sum([]byte("vxdp-agent:" + host))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// ID is the agent's id.
func (a *Agent) ID() string { return a.id }

// Stats returns the agent's counters.
func (a *Agent) Stats() AgentStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.stats
	s.Fetched = a.fetched.Load()
	return s
}

func (e *agentEnv) updateStats(f func(*AgentStats)) {
	e.mu.Lock()
	f(&e.stats)
	e.mu.Unlock()
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// RunUpdates follows the bucket and sends what the host's state needs
// (state.DeltaProducer): the complete, validated state once synchronised
// at start (and whenever Resend asks), then the changes of every relevant
// change of the bucket, as deltas; changes waiting while the dataplane is
// busy are merged into one update. It also heartbeats and publishes port
// status. It returns when ctx ends; NATS outages do not end it (the
// dataplane keeps its last state meanwhile, and the agent resyncs when NATS
// is back).
func (a *Agent) RunUpdates(ctx context.Context, updates chan<- state.Update) error {
	if !a.ran.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, f := range []func(context.Context){
		func(ctx context.Context) { a.send(ctx, updates) },
		a.beat.run, a.status.run, a.persist.run,
	} {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	err := a.follow.run(ctx)
	cancel()
	wg.Wait()
	a.follow.close()
	a.persist.flush()
	if parent.Err() != nil {
		return nil
	}
	return err
}

// Resend asks for the next update to be the complete state, built whole
// from the view (state.DeltaProducer: the periodic safety net).
func (a *Agent) Resend() { a.follow.requestFull() }

// Run is RunUpdates for a consumer of complete states (state.Producer):
// every update is applied to the last state, and the result sent, sorted.
func (a *Agent) Run(ctx context.Context, updates chan<- *state.Desired) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	inner := make(chan state.Update)
	done := make(chan error, 1)
	go func() { done <- a.RunUpdates(ctx, inner) }()
	var t state.Tracker
	for {
		select {
		case u := <-inner:
			if !t.Apply(u) {
				continue
			}
			d := t.Desired().Clone()
			d.Sort()
			select {
			case updates <- d:
			case err := <-done:
				return err
			}
		case err := <-done:
			return err
		}
	}
}

// send hands the updates to the dataplane, until ctx ends.
func (a *Agent) send(ctx context.Context, updates chan<- state.Update) {
	for {
		u, ok := a.out.wait(ctx)
		if !ok {
			return
		}
		select {
		case updates <- u:
		case <-ctx.Done():
			return
		}
	}
}

// reject counts and logs a record refused.
func (e *agentEnv) reject(err error) {
	var re *RecordError
	kind, reason := "unknown", string(RejectParse)
	key := ""
	if errors.As(err, &re) {
		kind, reason, key = ParseKey(re.Key).Kind.String(), string(re.Reason), re.Key
	}
	e.m.rejected.WithLabelValues(kind, reason).Inc()
	e.updateStats(func(s *AgentStats) { s.Rejected++ })
	e.log.Warn("record rejected, not applied", "key", key, "reason", reason, "err", err)
}

func sameRecord(x, y any) bool {
	bx, err1 := encodeRecord(x)
	by, err2 := encodeRecord(y)
	return err1 == nil && err2 == nil && bytes.Equal(bx, by)
}

func (e *agentEnv) agentRecord() *AgentRecord {
	return &AgentRecord{
		ID: e.id, Host: e.opts.Host, AgentType: AgentType, Binary: AgentBinary, VTEP: e.opts.VTEP,
		Version: e.opts.Version, AvailabilityZone: e.opts.AvailabilityZone, AdminStateUp: true,
		Configurations: e.opts.Configurations,
	}
}

// Applied is told the outcome of each apply (state.Observer): it records
// the applied revision (and persists the view snapshot of it), and sets the
// status of the local ports: ACTIVE when installed, DOWN while their tap is
// missing (listed in res.Pending by port id or tap name). Only ACTIVE ports
// are distributed to the other hosts.
func (a *Agent) Applied(ctx context.Context, d *state.Desired, res state.Result, err error) {
	if d == nil {
		return
	}
	if err != nil {
		a.m.applyErrors.Inc()
		a.log.Warn("dataplane apply failed; port status unchanged", "revision", d.Revision, "err", err)
		a.report(d, res, err)
		return
	}
	pending := make(map[string]bool, len(res.Pending))
	for _, p := range res.Pending {
		pending[p] = true
	}
	want := make(map[string]statusWant, len(d.LocalPorts))
	for _, lp := range d.LocalPorts {
		st := StatusActive
		if pending[lp.ID] || pending[lp.TapName()] {
			st = StatusDown
		}
		want[lp.ID] = statusWant{net: lp.NetworkID, status: st}
	}
	a.appliedRev.Store(d.Revision)
	a.beat.applied()
	a.follow.applied(want)
	a.report(d, res, nil)
}

// ApplyReport is what an agent announces after every apply on
// AppliedSubject, so convergence can be measured from outside.
type ApplyReport struct {
	Host        string    `json:"host"`
	Revision    uint64    `json:"revision"`
	Time        time.Time `json:"time"`
	Networks    int       `json:"networks"`
	LocalPorts  int       `json:"local_ports"`
	RemotePorts int       `json:"remote_ports"`
	Pending     int       `json:"pending"`
	Ops         int       `json:"ops"`
	Error       string    `json:"error,omitempty"`
}

func (a *Agent) report(d *state.Desired, res state.Result, err error) {
	r := ApplyReport{Host: a.opts.Host, Revision: d.Revision, Time: time.Now().UTC(), Networks: len(d.Networks),
		LocalPorts: len(d.LocalPorts), RemotePorts: len(d.RemotePorts), Pending: len(res.Pending), Ops: len(res.Ops)}
	if err != nil {
		r.Error = err.Error()
	}
	if b, merr := json.Marshal(r); merr == nil {
		_ = a.nc.Publish(AppliedSubject(a.bucket, a.opts.Host), b)
	}
}
