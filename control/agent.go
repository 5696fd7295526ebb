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
	// Debounce waits this long after a change for more before building a
	// state (default 10ms); a burst of changes makes one apply.
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
type Agent struct {
	nc     *nats.Conn
	broker *brokerClient
	reader bucketReader
	opts   AgentOptions
	bucket string
	id     string
	log    *slog.Logger
	m      *agentMetrics
	start  time.Time
	ran    atomic.Bool

	// Owned by the sync loop.
	v             *view
	watermark     uint64          // every followed change up to here is in v
	maxRev        uint64          // highest revision merged into v (loads run ahead)
	refs          map[string]bool // followed ref filters (see wanted)
	filters       []string
	main          *follower
	caughtUp      bool
	synced        bool // a complete state was sent since the last resync
	dirty         bool
	dirtySince    time.Time
	streamCreated time.Time
	reported      map[string]uint64 // conflicts already logged, key -> revision
	inflight      map[string]statusOp
	reconnects    uint64
	appliedOnce   atomic.Bool
	snapshotTried bool
	lastBuild     time.Duration // how long the last build took
	builtAt       time.Time     // when it ended

	fetched atomic.Uint64

	mu         sync.Mutex
	stats      AgentStats
	next       *state.Desired // mailbox of the sender
	captures   map[uint64]*snapshot
	wantStatus map[string]statusWant // local port -> status from the last apply
	appliedRev uint64
	statusQ    []statusOp
	persistQ   *snapshot

	nextCh     chan struct{}
	kick       chan struct{}
	statusKick chan struct{}
	statusDone chan statusResult
	persistCh  chan struct{}
	reregister chan struct{}
	beatNow    chan struct{}
}

type statusWant struct {
	net    string
	status string
}

// statusOp writes (rec != nil) or deletes (at revision delRev) a status key.
type statusOp struct {
	key    string
	rec    *StatusRecord
	delRev uint64
}

type statusResult struct {
	op  statusOp
	err error
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
		opts.Debounce = 10 * time.Millisecond
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
	return &Agent{
		nc: nc, broker: broker, reader: bucketReader{src: broker, nc: nc, bucket: opts.Bucket, log: log},
		opts: opts, bucket: opts.Bucket, id: AgentID(opts.Host),
		log: log, m: m, start: time.Now().UTC(),
		reported: map[string]uint64{}, inflight: map[string]statusOp{},
		captures: map[uint64]*snapshot{},
		nextCh:   make(chan struct{}, 1), kick: make(chan struct{}, 1), statusKick: make(chan struct{}, 1),
		statusDone: make(chan statusResult, 64), persistCh: make(chan struct{}, 1), reregister: make(chan struct{}, 1),
		beatNow: make(chan struct{}, 1), appliedRev: opts.AppliedRevision,
	}, nil
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

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Run follows the bucket and sends the host's complete, validated Desired
// on updates: once synchronised at start, then after every relevant change
// (debounced; the dataplane always gets the newest state, intermediate ones
// are dropped while it is busy). It also heartbeats and publishes port
// status. It returns when ctx ends; NATS outages do not end it (the
// dataplane keeps its last state meanwhile, and the agent resyncs when NATS
// is back).
func (a *Agent) Run(ctx context.Context, updates chan<- *state.Desired) error {
	if !a.ran.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, f := range []func(context.Context){
		func(ctx context.Context) { a.sendLoop(ctx, updates) },
		a.heartbeatLoop, a.statusLoop, a.persistLoop,
	} {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	err := a.syncLoop(ctx)
	cancel()
	wg.Wait()
	if a.main != nil {
		a.main.close()
	}
	if parent.Err() != nil {
		return nil
	}
	return err
}

func (a *Agent) sendLoop(ctx context.Context, updates chan<- *state.Desired) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.nextCh:
		}
		a.mu.Lock()
		d := a.next
		a.next = nil
		a.mu.Unlock()
		if d == nil {
			continue
		}
		select {
		case updates <- d:
		case <-ctx.Done():
			return
		}
	}
}

func (a *Agent) syncLoop(ctx context.Context) error {
	wait := 500 * time.Millisecond
	for {
		err := a.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errResync) {
			a.log.Warn("control plane resync", "reason", err)
			a.dropView()
			continue
		}
		if errors.Is(err, errRefused) {
			// The broker refused a filter of the view (a network no longer
			// hosted): what the view says is stale; start from scratch.
			a.log.Warn("control plane resync", "reason", err)
			a.dropView()
		}
		a.log.Warn("control plane sync interrupted; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

func (a *Agent) dropView() {
	if a.main != nil {
		a.main.close()
		a.main = nil
	}
	a.v = nil
}

// session synchronises with the bucket and then follows it until an error.
// The snapshot is tried once, at the first session that reaches the bucket.
func (a *Agent) session(ctx context.Context) error {
	info, err := a.broker.info(ctx)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", a.bucket, err)
	}
	created, lastSeq := info.Created, info.LastRevision
	a.reconnects = a.nc.Stats().Reconnects

	switch {
	case a.v != nil && created.Equal(a.streamCreated) && lastSeq >= a.watermark:
		// Same bucket, after an interruption: carry on from the watermark.
		if err := a.restartMain(ctx); err != nil {
			return err
		}
	case !a.snapshotTried && a.loadSnapshot(info):
		if err := a.restartMain(ctx); err != nil {
			return err // the next session carries on from the snapshot
		}
	default:
		a.fullSync(created, lastSeq)
		if err := a.reconfigure(ctx); err != nil {
			a.v = nil
			return err
		}
	}
	return a.follow(ctx)
}

func (a *Agent) resynced(mode string) {
	a.m.resyncs.WithLabelValues(mode).Inc()
	a.mu.Lock()
	if mode == "full" {
		a.stats.FullResyncs++
	} else {
		a.stats.DeltaResyncs++
	}
	a.stats.LastResync = mode
	a.mu.Unlock()
	a.synced = false
	a.markDirty()
}

func (a *Agent) fullSync(created time.Time, lastSeq uint64) {
	a.dropView()
	a.v = newView(a.opts.Host)
	a.watermark, a.maxRev = lastSeq, lastSeq
	a.refs = map[string]bool{}
	a.filters = nil
	a.streamCreated = created
	clear(a.inflight)
	a.log.Info("control plane full resync", "revision", lastSeq)
	a.resynced("full")
}

// loadSnapshot restores the view from the state dir when the snapshot is
// exactly what the dataplane applied and the bucket still holds every
// change since; otherwise it says why not and returns false.
func (a *Agent) loadSnapshot(info bucketInfo) bool {
	created, lastSeq := info.Created, info.LastRevision
	a.snapshotTried = true
	if a.opts.StateDir == "" {
		return false
	}
	h, v, err := readSnapshot(a.opts.StateDir, a.opts.Host)
	why := ""
	switch {
	case err != nil:
		why = err.Error()
	case a.opts.AppliedRevision == 0 || h.DesiredRevision != a.opts.AppliedRevision:
		why = fmt.Sprintf("snapshot is of revision %d, the dataplane applied %d", h.DesiredRevision, a.opts.AppliedRevision)
	case h.Bucket != a.bucket:
		why = fmt.Sprintf("snapshot is of bucket %s", h.Bucket)
	case !h.StreamCreated.Equal(created):
		why = "the bucket was created again since the snapshot (history gone)"
	case h.Watermark > lastSeq:
		why = fmt.Sprintf("the bucket ends at revision %d, before the snapshot's %d (history gone)", lastSeq, h.Watermark)
	case info.Floor > h.Watermark:
		why = fmt.Sprintf("deletions up to revision %d were compacted away (history gone)", info.Floor)
	}
	if why != "" {
		a.log.Info("control plane snapshot not usable; full resync", "reason", why)
		return false
	}
	a.dropView()
	a.v = v
	a.watermark, a.maxRev = h.Watermark, max(h.Watermark, h.DesiredRevision)
	a.refs = map[string]bool{}
	for _, f := range h.Refs {
		a.refs[f] = true
	}
	a.filters = v.filters(a.refs)
	a.streamCreated = created
	a.log.Info("control plane delta resync", "from_revision", h.Watermark, "records", h.Records, "bucket_revision", lastSeq)
	a.resynced("delta")
	return true
}

// restartMain (re)creates the follower of the followed keys after the watermark.
func (a *Agent) restartMain(ctx context.Context) error {
	if a.main != nil {
		a.main.close()
		a.main = nil
	}
	f, err := a.reader.follow(ctx, a.filters, followOptions{startRev: a.watermark + 1, proofs: a.v.proofs(a.filters)})
	if err != nil {
		return err
	}
	a.main = f
	a.caughtUp = f.initialPending == 0
	return nil
}

// reconfigure makes the followed part match what the view says the host
// needs: it loads networks and security groups newly needed (their latest
// values), forgets those no longer needed, and restarts the follower with
// the new filters from the watermark. Loading can reveal more needs (a new
// network's local ports name security groups), hence the loop.
func (a *Agent) reconfigure(ctx context.Context) error {
	changed := a.main == nil
	for range 8 {
		w := a.v.wanted()
		var load []string
		for id := range a.v.nets {
			if !w.nets[id] {
				a.forgetNetwork(id)
				changed = true
			}
		}
		for f := range a.refs {
			if !w.refs[f] {
				a.v.dropRef(f)
				delete(a.refs, f)
				changed = true
			}
		}
		var addedNets, addedRefs []string
		for id := range w.nets {
			if a.v.nets[id] == nil {
				a.v.followNetwork(id)
				addedNets = append(addedNets, id)
				load = append(load, NetworkFilter(id))
			}
		}
		for f := range w.refs {
			if !a.refs[f] {
				a.refs[f] = true
				addedRefs = append(addedRefs, f)
				load = append(load, f)
			}
		}
		base := a.filters == nil
		if base {
			load = append(load, baseFilters(a.opts.Host)...)
		}
		if len(load) == 0 {
			break
		}
		changed = true
		entries, err := a.reader.loadLatest(ctx, load, a.v.proofs(load))
		if err != nil {
			// Undo, so that the next attempt loads them again.
			for _, id := range addedNets {
				a.v.dropNetwork(id)
			}
			for _, f := range addedRefs {
				delete(a.refs, f)
			}
			return err
		}
		if base {
			a.filters = []string{}
		}
		for _, e := range entries {
			a.fold(e)
		}
	}
	if !changed {
		return nil
	}
	a.filters = a.v.filters(a.refs)
	a.m.networks.Set(float64(len(a.v.nets)))
	a.markDirty()
	return a.restartMain(ctx)
}

// forgetNetwork stops following a network; the agent's own statuses in it
// are deleted (they no longer mean anything).
func (a *Agent) forgetNetwork(id string) {
	if nv := a.v.nets[id]; nv != nil {
		var ops []statusOp
		for portID, s := range nv.own {
			ops = append(ops, statusOp{key: StatusKey(id, a.opts.Host, portID), delRev: s.Rev})
		}
		a.queueStatus(ops)
	}
	a.v.dropNetwork(id)
}

// fold applies one message to the view.
func (a *Agent) fold(e kvEntry) bool {
	a.fetched.Add(1)
	a.m.fetched.Inc()
	a.maxRev = max(a.maxRev, e.Rev)
	changed, err := a.v.apply(e)
	if err != nil {
		a.reject(err)
	}
	if changed {
		a.markDirty()
	}
	return changed
}

func (a *Agent) reject(err error) {
	var re *RecordError
	kind, reason := "unknown", string(RejectParse)
	key := ""
	if errors.As(err, &re) {
		kind, reason, key = ParseKey(re.Key).Kind.String(), string(re.Reason), re.Key
	}
	a.m.rejected.WithLabelValues(kind, reason).Inc()
	a.mu.Lock()
	a.stats.Rejected++
	a.mu.Unlock()
	a.log.Warn("record rejected, not applied", "key", key, "reason", reason, "err", err)
}

func (a *Agent) markDirty() {
	if !a.dirty {
		a.dirty = true
		a.dirtySince = time.Now()
	}
}

// follow is the steady state: fold changes, rebuild after quiet periods.
func (a *Agent) follow(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	arm := func(d time.Duration) {
		if !armed {
			timer.Reset(d)
			armed = true
		}
	}
	if a.caughtUp && a.dirty {
		arm(0)
	}
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	lastMsg := time.Now()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.main.failed:
			return a.main.err
		case e := <-a.main.ch:
			lastMsg = time.Now()
			a.advance(e)
		drain:
			for range 4096 {
				select {
				case e := <-a.main.ch:
					a.advance(e)
				default:
					break drain
				}
			}
			if a.dirty && (a.caughtUp || a.synced) {
				arm(a.buildDelay())
			}
		case <-timer.C:
			armed = false
			if !a.dirty {
				continue
			}
			if !a.caughtUp && (!a.synced || time.Since(a.dirtySince) < a.opts.MaxDelay) {
				// More is queued: wait for it (the first state only when complete).
				if a.synced {
					arm(a.buildDelay())
				}
				continue
			}
			if err := a.reconfigure(ctx); err != nil {
				return err
			}
			if !a.caughtUp && !a.synced {
				continue
			}
			began := time.Now()
			a.publish()
			a.lastBuild = time.Since(began)
			a.builtAt = time.Now()
			a.reconcileStatuses()
		case <-a.kick:
			a.reconcileStatuses()
		case r := <-a.statusDone:
			// A written status stays in flight until the view shows it
			// (reconcileStatuses), so it is not written twice meanwhile.
			if cur, ok := a.inflight[r.op.key]; ok && cur == r.op && (r.err != nil || r.op.rec == nil) {
				delete(a.inflight, r.op.key)
			}
			if r.err != nil {
				retry.Reset(time.Second)
			}
		case <-retry.C:
			a.reconcileStatuses()
		case <-poll.C:
			if idle := time.Since(lastMsg); !a.caughtUp && idle >= 2*time.Second {
				// Behind, yet nothing arrives: ask the server.
				if a.main.caughtUp(ctx) {
					a.caughtUp = true
					if a.dirty {
						arm(a.buildDelay())
					}
				} else if idle >= loadStall {
					return fmt.Errorf("follower delivered nothing for %s with messages pending", idle.Round(time.Second))
				}
			}
			// After a reconnect, make sure the bucket is the same one
			// (checked again every second until JetStream answers).
			if n := a.nc.Stats().Reconnects; n != a.reconnects {
				ok, err := a.checkStream(ctx)
				if err != nil {
					return err
				}
				if ok {
					a.reconnects = n
				}
			}
		}
	}
}

// buildDelay is how long to wait before building: the debounce, and at
// least four times the last build's duration after it ended, so that
// building (O(ports of the hosted networks)) never takes more than a fifth
// of the agent's time however fast changes come. Under CPU contention the
// builds take longer and the agent batches more.
func (a *Agent) buildDelay() time.Duration {
	return max(a.opts.Debounce, time.Until(a.builtAt.Add(4*a.lastBuild)))
}

// advance folds a message of the main follower and moves the watermark.
func (a *Agent) advance(e kvEntry) {
	if e.Rev <= a.watermark {
		return
	}
	a.fold(e)
	a.watermark = e.Rev
	a.caughtUp = e.Pending == 0
}

// checkStream detects a bucket that lost its history (created again, or
// behind the watermark) after a reconnect.
// It reports false when the bucket cannot be asked yet.
func (a *Agent) checkStream(ctx context.Context) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := a.broker.info(cctx)
	if err != nil {
		a.log.Debug("stream check after reconnect", "err", err)
		return false, nil
	}
	if !info.Created.Equal(a.streamCreated) || info.LastRevision < a.watermark {
		return true, fmt.Errorf("%w (bucket revision %d, agent at %d)", errResync, info.LastRevision, a.watermark)
	}
	return true, nil
}

// publish builds the Desired from the view and hands it to the sender.
func (a *Agent) publish() {
	br := a.v.build(a.opts.VTEP)
	for _, c := range br.conflicts {
		if a.reported[c.Key] != a.v.storedRev(ParseKey(c.Key)) {
			a.reported[c.Key] = a.v.storedRev(ParseKey(c.Key))
			a.reject(c)
		}
	}
	d := br.desired
	d.Revision = max(a.watermark, a.maxRev)
	a.dirty = false
	if err := d.Validate(); err != nil {
		a.reject(&RecordError{Key: "desired", Reason: RejectBadState, Err: err})
		return
	}
	a.synced = true
	a.v.prune(a.watermark)
	a.checkOwnRecord()
	a.mu.Lock()
	if a.opts.StateDir != "" {
		a.captures[d.Revision] = a.capture(a.v, a.watermark, d.Revision, a.refs)
		for r := range a.captures {
			if len(a.captures) > 4 && r < d.Revision {
				delete(a.captures, r)
			}
		}
	}
	a.next = d
	a.stats.Sent++
	a.stats.Watermark = a.watermark
	a.stats.Records = a.v.size()
	a.stats.Networks = len(a.v.nets)
	a.mu.Unlock()
	poke(a.nextCh)
	a.m.sent.Inc()
	a.m.networks.Set(float64(len(a.v.nets))) // also after a delta resync, which reconfigures nothing
	a.m.watermark.Set(float64(a.watermark))
	a.m.records.Set(float64(a.v.size()))
	a.log.Debug("desired state", "revision", d.Revision, "networks", len(d.Networks), "local_ports", len(d.LocalPorts), "remote_ports", len(d.RemotePorts))
}

// checkOwnRecord asks for re-registration when the view lacks this
// agent's record or holds another version of it.
func (a *Agent) checkOwnRecord() {
	cur, ok := a.v.agents[a.opts.Host]
	if !ok || !sameRecord(cur.Rec, a.agentRecord()) {
		poke(a.reregister)
	}
}

func sameRecord(x, y any) bool {
	bx, err1 := encodeRecord(x)
	by, err2 := encodeRecord(y)
	return err1 == nil && err2 == nil && bytes.Equal(bx, by)
}

func (a *Agent) agentRecord() *AgentRecord {
	return &AgentRecord{
		ID: a.id, Host: a.opts.Host, AgentType: AgentType, Binary: AgentBinary, VTEP: a.opts.VTEP,
		Version: a.opts.Version, AvailabilityZone: a.opts.AvailabilityZone, AdminStateUp: true,
		Configurations: a.opts.Configurations,
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
	a.mu.Lock()
	a.wantStatus = want
	a.appliedRev = d.Revision
	if snap := a.captures[d.Revision]; snap != nil {
		a.persistQ = snap
	}
	for r := range a.captures {
		if r <= d.Revision {
			delete(a.captures, r)
		}
	}
	a.mu.Unlock()
	if !a.appliedOnce.Swap(true) {
		// The heartbeat written at start carried the revision applied
		// before the restart: report the new one now, not a report
		// interval later.
		poke(a.beatNow)
	}
	poke(a.kick)
	poke(a.persistCh)
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

// reconcileStatuses writes the status records that differ from what the
// last apply says, and deletes this host's statuses of ports no longer bound
// here. Writes go through the status loop; the view sees them come back.
func (a *Agent) reconcileStatuses() {
	if a.v == nil {
		return
	}
	a.mu.Lock()
	want := a.wantStatus
	a.mu.Unlock()
	host := a.opts.Host
	var ops []statusOp
	for portID, w := range want {
		nv := a.v.nets[w.net]
		if nv == nil {
			continue
		}
		p, ok := nv.ports[portID]
		if !ok || p.Rec.Host != host {
			continue
		}
		key := StatusKey(w.net, host, portID)
		cur, has := nv.status[statusID{portID, host}]
		if has && cur.Rec.Status == w.status && cur.Rec.Generation == p.Rec.Generation {
			if in, ok := a.inflight[key]; ok && in.rec != nil {
				delete(a.inflight, key)
			}
			continue
		}
		if in, ok := a.inflight[key]; ok && in.rec != nil && in.rec.Status == w.status && in.rec.Generation == p.Rec.Generation {
			continue
		}
		ops = append(ops, statusOp{key: key, rec: &StatusRecord{PortID: portID, Host: host, Status: w.status, Generation: p.Rec.Generation, UpdatedAt: now()}})
	}
	for key, op := range a.inflight {
		if _, ok := want[ParseKey(key).Port]; op.rec != nil && !ok {
			delete(a.inflight, key) // written; the port is no longer here
		}
	}
	for netID, nv := range a.v.nets {
		for portID, s := range nv.own {
			if p, ok := nv.ports[portID]; ok && p.Rec.Host == host {
				continue
			}
			key := StatusKey(netID, host, portID)
			if _, ok := a.inflight[key]; ok {
				continue
			}
			ops = append(ops, statusOp{key: key, delRev: s.Rev})
		}
	}
	a.queueStatus(ops)
}

func (a *Agent) queueStatus(ops []statusOp) {
	if len(ops) == 0 {
		return
	}
	for _, op := range ops {
		a.inflight[op.key] = op
	}
	a.mu.Lock()
	a.statusQ = append(a.statusQ, ops...)
	a.mu.Unlock()
	poke(a.statusKick)
}

// persistLoop writes the snapshot of the last applied state.
func (a *Agent) persistLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.persistCh:
		}
		a.mu.Lock()
		s := a.persistQ
		a.persistQ = nil
		a.mu.Unlock()
		if s == nil {
			continue
		}
		began := time.Now()
		if err := writeSnapshot(a.opts.StateDir, s); err != nil {
			a.log.Warn("could not persist the control-plane snapshot; the next start resyncs fully", "err", err)
		}
		// Writing is O(records): under constant change, write at most a
		// fifth of the time; the newest applied state is written next.
		select {
		case <-ctx.Done():
			return
		case <-time.After(4 * time.Since(began)):
		}
	}
}
