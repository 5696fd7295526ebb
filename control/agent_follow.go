package control

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vxdp/vxdp/state"
)

// viewFollower is the agent's follower: it keeps the view of the part of
// the bucket its host needs (synchronised at start, from a snapshot or in
// full, then following every change), builds the host's state from it and
// hands that to the dataplane, and decides which port statuses to write.
// Everything here runs on run's goroutine; applied and the queues are the
// only ways in.
type viewFollower struct {
	*agentEnv
	out     *latest[state.Update]
	status  *statusWriter
	beat    *heartbeat
	persist *persister

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
	snapshotTried bool
	lastBuild     time.Duration // how long the last full build took
	builtAt       time.Time     // when it ended
	sentRev       uint64        // revision of the last update sent
	sentAt        time.Time     // and when
	// resend asks for the next state to be built whole (state.DeltaProducer).
	resend atomic.Bool
	// The last snapshot: of which revision, when, and how long to wait
	// for the next (encoding is O(records)).
	snapRev   uint64
	snapAt    time.Time
	snapEvery time.Duration

	// kick asks for the statuses to be reconciled with wantStatus, the
	// status of each local port after the last apply.
	kick       chan struct{}
	wantMu     sync.Mutex
	wantStatus map[string]statusWant
}

type statusWant struct {
	net    string
	status string
}

func newViewFollower(env *agentEnv, out *latest[state.Update], status *statusWriter, beat *heartbeat, persist *persister) *viewFollower {
	return &viewFollower{agentEnv: env, out: out, status: status, beat: beat, persist: persist,
		reported: map[string]uint64{}, inflight: map[string]statusOp{}, kick: make(chan struct{}, 1)}
}

// applied takes the status of the local ports after an apply.
func (f *viewFollower) applied(want map[string]statusWant) {
	f.wantMu.Lock()
	f.wantStatus = want
	f.wantMu.Unlock()
	poke(f.kick)
}

// close stops following (after run returned), and writes a last snapshot
// if one is due: a restart after a clean stop then replays nothing.
func (f *viewFollower) close() {
	if f.main != nil {
		f.main.close()
	}
	f.snapEvery = 0
	f.maybeSnapshot()
}

// requestFull asks for the next state to be built whole.
func (f *viewFollower) requestFull() {
	f.resend.Store(true)
	poke(f.kick)
}

func (f *viewFollower) run(ctx context.Context) error {
	wait := 500 * time.Millisecond
	for {
		err := f.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errResync) {
			f.log.Warn("control plane resync", "reason", err)
			f.dropView()
			continue
		}
		if errors.Is(err, errRefused) {
			// The broker refused a filter of the view (a network no longer
			// hosted): what the view says is stale; start from scratch.
			f.log.Warn("control plane resync", "reason", err)
			f.dropView()
		}
		f.log.Warn("control plane sync interrupted; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

func (f *viewFollower) dropView() {
	if f.main != nil {
		f.main.close()
		f.main = nil
	}
	f.v = nil
}

// session synchronises with the bucket and then follows it until an error.
// The snapshot is tried once, at the first session that reaches the bucket.
func (f *viewFollower) session(ctx context.Context) error {
	info, err := f.broker.info(ctx)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", f.bucket, err)
	}
	created, lastSeq := info.Created, info.LastRevision
	f.reconnects = f.nc.Stats().Reconnects

	switch {
	case f.v != nil && created.Equal(f.streamCreated) && lastSeq >= f.watermark:
		// Same bucket, after an interruption: carry on from the watermark.
		if err := f.restartMain(ctx); err != nil {
			return err
		}
	case !f.snapshotTried && f.loadSnapshot(info):
		if err := f.restartMain(ctx); err != nil {
			return err // the next session carries on from the snapshot
		}
	default:
		f.fullSync(created, lastSeq)
		if err := f.reconfigure(ctx); err != nil {
			f.v = nil
			return err
		}
	}
	return f.followChanges(ctx)
}

func (f *viewFollower) resynced(mode string) {
	f.m.resyncs.WithLabelValues(mode).Inc()
	f.updateStats(func(s *AgentStats) {
		if mode == "full" {
			s.FullResyncs++
		} else {
			s.DeltaResyncs++
		}
		s.LastResync = mode
	})
	f.synced = false
	f.markDirty()
}

func (f *viewFollower) fullSync(created time.Time, lastSeq uint64) {
	f.dropView()
	f.v = newView(f.opts.Host, f.opts.VTEP)
	f.watermark, f.maxRev = lastSeq, lastSeq
	f.refs = map[string]bool{}
	f.filters = nil
	f.streamCreated = created
	clear(f.inflight)
	f.log.Info("control plane full resync", "revision", lastSeq)
	f.resynced("full")
}

// loadSnapshot restores the view from the state dir when the snapshot is
// exactly what the dataplane applied and the bucket still holds every
// change since; otherwise it says why not and returns false.
func (f *viewFollower) loadSnapshot(info bucketInfo) bool {
	created, lastSeq := info.Created, info.LastRevision
	f.snapshotTried = true
	if f.opts.StateDir == "" {
		return false
	}
	h, v, err := readSnapshot(f.opts.StateDir, f.opts.Host, f.opts.VTEP)
	why := ""
	switch {
	case errors.Is(err, errSnapshotMissing):
		why = err.Error()
	case err != nil:
		// A corrupt or foreign snapshot costs a full resync, nothing else.
		f.log.Warn("control plane snapshot unreadable; full resync", "err", err)
		return false
	case f.opts.AppliedRevision == 0 || h.DesiredRevision != f.opts.AppliedRevision:
		why = fmt.Sprintf("snapshot is of revision %d, the dataplane applied %d", h.DesiredRevision, f.opts.AppliedRevision)
	case h.Bucket != f.bucket:
		why = fmt.Sprintf("snapshot is of bucket %s", h.Bucket)
	case !h.StreamCreated.Equal(created):
		why = "the bucket was created again since the snapshot (history gone)"
	case h.Watermark > lastSeq:
		why = fmt.Sprintf("the bucket ends at revision %d, before the snapshot's %d (history gone)", lastSeq, h.Watermark)
	case info.Floor > h.Watermark:
		why = fmt.Sprintf("deletions up to revision %d were compacted away (history gone)", info.Floor)
	}
	if why != "" {
		f.log.Info("control plane snapshot not usable; full resync", "reason", why)
		return false
	}
	f.dropView()
	f.v = v
	f.watermark, f.maxRev = h.Watermark, max(h.Watermark, h.DesiredRevision)
	f.refs = map[string]bool{}
	for _, r := range h.Refs {
		f.refs[r] = true
	}
	f.filters = v.filters(f.refs)
	f.streamCreated = created
	f.log.Info("control plane delta resync", "from_revision", h.Watermark, "records", h.Records, "bucket_revision", lastSeq)
	f.resynced("delta")
	return true
}

// restartMain (re)creates the follower of the followed keys after the watermark.
func (f *viewFollower) restartMain(ctx context.Context) error {
	if f.main != nil {
		f.main.close()
		f.main = nil
	}
	main, err := f.reader.follow(ctx, f.filters, followOptions{startRev: f.watermark + 1, proofs: f.v.proofs(f.filters)})
	if err != nil {
		return err
	}
	f.main = main
	f.caughtUp = main.initialPending == 0
	return nil
}

// reconfigure makes the followed part match what the view says the host
// needs: it loads networks and refs (security groups, remote groups'
// members, address groups) newly needed (their latest values), forgets
// those no longer needed, and restarts the follower with
// the new filters from the watermark. Loading can reveal more needs (a new
// network's local ports name security groups), hence the loop.
func (f *viewFollower) reconfigure(ctx context.Context) error {
	changed := f.main == nil
	for range 8 {
		w := f.v.wanted()
		var load []string
		for _, id := range f.v.networkIDs() {
			if !w.nets[id] {
				f.forgetNetwork(id)
				changed = true
			}
		}
		for r := range f.refs {
			if !w.refs[r] {
				f.v.dropRef(r)
				delete(f.refs, r)
				changed = true
			}
		}
		var addedNets, addedRefs []string
		for id := range w.nets {
			if f.v.net(id) == nil {
				f.v.followNetwork(id)
				addedNets = append(addedNets, id)
				load = append(load, NetworkFilter(id))
			}
		}
		for r := range w.refs {
			if !f.refs[r] {
				f.refs[r] = true
				addedRefs = append(addedRefs, r)
				load = append(load, r)
			}
		}
		base := f.filters == nil
		if base {
			load = append(load, baseFilters(f.opts.Host)...)
		}
		if len(load) == 0 {
			break
		}
		changed = true
		// Folded as they arrive: a full resync keeps no copy of them.
		if err := f.reader.eachLatest(ctx, load, f.v.proofs(load), func(e kvEntry) { f.fold(e) }); err != nil {
			// Undo, so that the next attempt loads them again (what the
			// base filters gave is kept: the same revisions fold once).
			for _, id := range addedNets {
				f.v.dropNetwork(id)
			}
			for _, r := range addedRefs {
				f.v.dropRef(r)
				delete(f.refs, r)
			}
			return err
		}
		if base {
			f.filters = []string{}
		}
	}
	if !changed {
		return nil
	}
	f.filters = f.v.filters(f.refs)
	f.m.networks.Set(float64(len(f.v.nets)))
	f.markDirty()
	return f.restartMain(ctx)
}

// forgetNetwork stops following a network; the agent's own statuses in it
// are deleted (they no longer mean anything).
func (f *viewFollower) forgetNetwork(id string) {
	if nv := f.v.net(id); nv != nil {
		var ops []statusOp
		for portID, s := range nv.own {
			ops = append(ops, statusOp{key: StatusKey(id, f.opts.Host, f.v.ids.name(portID)), delRev: s.rev})
		}
		f.queueStatus(ops)
	}
	f.v.dropNetwork(id)
}

// fold applies one message to the view.
func (f *viewFollower) fold(e kvEntry) bool {
	f.fetched.Add(1)
	f.m.fetched.Inc()
	f.maxRev = max(f.maxRev, e.Rev)
	changed, err := f.v.apply(e)
	if err != nil {
		f.reject(err)
	}
	if changed {
		f.markDirty()
	}
	return changed
}

func (f *viewFollower) markDirty() {
	if !f.dirty {
		f.dirty = true
		f.dirtySince = time.Now()
	}
}

// followChanges is the steady state: fold changes, rebuild after quiet periods.
func (f *viewFollower) followChanges(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	arm := func(d time.Duration) {
		if !armed {
			timer.Reset(d)
			armed = true
		}
	}
	if f.caughtUp && f.dirty {
		arm(0)
	}
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	lastMsg := time.Now()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	snap := time.NewTimer(time.Hour)
	snap.Stop()
	snapshot := func() {
		if wait := f.maybeSnapshot(); wait > 0 {
			snap.Reset(wait)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-snap.C:
			snapshot()
		case <-f.main.failed:
			return f.main.err
		case e := <-f.main.ch:
			lastMsg = time.Now()
			f.advance(e)
		drain:
			for range 4096 {
				select {
				case e := <-f.main.ch:
					f.advance(e)
				default:
					break drain
				}
			}
			if f.dirty && (f.caughtUp || f.synced) {
				arm(f.buildDelay())
			}
		case <-timer.C:
			armed = false
			if !f.dirty {
				continue
			}
			if !f.caughtUp && (!f.synced || time.Since(f.dirtySince) < f.opts.MaxDelay) {
				// More is queued: wait for it (the first state only when complete).
				if f.synced {
					arm(f.buildDelay())
				}
				continue
			}
			if err := f.reconfigure(ctx); err != nil {
				return err
			}
			if !f.caughtUp && !f.synced {
				continue
			}
			if wait := f.publish(); wait > 0 {
				arm(wait)
			}
			f.reconcileStatuses()
			snapshot()
		case <-f.kick:
			if f.resend.Load() && f.synced {
				f.markDirty()
				arm(f.buildDelay())
			}
			f.reconcileStatuses()
			snapshot()
		case r := <-f.status.done:
			// A written status stays in flight until the view shows it
			// (reconcileStatuses), so it is not written twice meanwhile.
			if cur, ok := f.inflight[r.op.key]; ok && cur == r.op && (r.err != nil || r.op.rec == nil) {
				delete(f.inflight, r.op.key)
			}
			if r.err != nil {
				retry.Reset(time.Second)
			}
		case <-retry.C:
			f.reconcileStatuses()
		case <-poll.C:
			if idle := time.Since(lastMsg); !f.caughtUp && idle >= 2*time.Second {
				// Behind, yet nothing arrives: ask the server.
				if f.main.caughtUp(ctx) {
					f.caughtUp = true
					if f.dirty {
						arm(f.buildDelay())
					}
				} else if idle >= loadStall {
					return fmt.Errorf("follower delivered nothing for %s with messages pending", idle.Round(time.Second))
				}
			}
			// After a reconnect, make sure the bucket is the same one
			// (checked again every second until JetStream answers).
			if n := f.nc.Stats().Reconnects; n != f.reconnects {
				ok, err := f.checkStream(ctx)
				if err != nil {
					return err
				}
				if ok {
					f.reconnects = n
				}
			}
		}
	}
}

// buildDelay is how long to wait before sending the changes: the
// debounce; before a full state (a resend), also at least four times the
// last full build's duration after it ended, so that building (O(ports
// of the hosted networks)) never takes more than a fifth of the agent's
// time however often it is asked for.
func (f *viewFollower) buildDelay() time.Duration {
	if f.resend.Load() {
		return max(f.opts.Debounce, time.Until(f.builtAt.Add(4*f.lastBuild)))
	}
	return f.opts.Debounce
}

// advance folds a message of the main follower and moves the watermark.
func (f *viewFollower) advance(e kvEntry) {
	if e.Rev <= f.watermark {
		return
	}
	f.fold(e)
	f.watermark = e.Rev
	f.caughtUp = e.Pending == 0
}

// checkStream detects a bucket that lost its history (created again, or
// behind the watermark) after a reconnect.
// It reports false when the bucket cannot be asked yet.
func (f *viewFollower) checkStream(ctx context.Context) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := f.broker.info(cctx)
	if err != nil {
		f.log.Debug("stream check after reconnect", "err", err)
		return false, nil
	}
	if !info.Created.Equal(f.streamCreated) || info.LastRevision < f.watermark {
		return true, fmt.Errorf("%w (bucket revision %d, agent at %d)", errResync, info.LastRevision, f.watermark)
	}
	return true, nil
}

// publish hands the dataplane what changed: the first state after a
// resync, and a state asked for again (Resend, the safety net), are built
// whole from the view; otherwise the changes folded in since the last
// update make a delta — empty when they change nothing the dataplane
// installs, which still tells it the revision it is at.
//
// An update that only moves the revision waits revisionOnlyDelay after the
// last one (a change that matters comes sooner and carries it); publish
// then says how long to wait.
func (f *viewFollower) publish() time.Duration {
	f.dirty = false
	rev := max(f.watermark, f.maxRev)
	var u state.Update
	if !f.synced || f.resend.Swap(false) {
		began := time.Now()
		d := f.buildFull(rev)
		f.lastBuild, f.builtAt = time.Since(began), time.Now()
		if d == nil {
			return 0
		}
		u.Full = d
	} else {
		f.v.flush()
		f.reportConflicts(f.v.inc.conflicts)
		f.v.inc.conflicts = nil
		if f.v.inc.acc.empty() {
			if rev == f.sentRev {
				return 0
			}
			if wait := time.Until(f.sentAt.Add(revisionOnlyDelay)); wait > 0 {
				f.markDirty()
				return wait
			}
		}
		delta := f.v.inc.take(f.sentRev, rev)
		if err := delta.Validate(); err != nil {
			// A bug: the safety net rebuilds the state whole.
			f.reject(&RecordError{Key: "desired", Reason: RejectBadState, Err: err})
			f.resend.Store(true)
			f.markDirty()
			return f.buildDelay()
		}
		u.Delta = delta
	}
	f.synced = true
	f.sentRev, f.sentAt = rev, time.Now()
	f.v.prune(f.watermark)
	f.checkOwnRecord()
	f.updateStats(func(s *AgentStats) {
		s.Sent++
		s.Watermark = f.watermark
		s.Records = f.v.size()
		s.Networks = len(f.v.nets)
	})
	f.out.set(u)
	f.m.sent.Inc()
	f.m.networks.Set(float64(len(f.v.nets))) // also after a delta resync, which reconfigures nothing
	f.m.watermark.Set(float64(f.watermark))
	f.m.records.Set(float64(f.v.size()))
	if u.Full != nil {
		f.log.Debug("desired state", "revision", rev, "networks", len(u.Full.Networks), "local_ports", len(u.Full.LocalPorts), "remote_ports", len(u.Full.RemotePorts))
	} else {
		f.log.Debug("desired state changes", "revision", rev, "entries", u.Delta.Size())
	}
	return 0
}

// revisionOnlyDelay is how long an update that only moves the revision
// waits after the last update.
const revisionOnlyDelay = 100 * time.Millisecond

// buildFull builds the state whole from the view, checks it and makes it
// what the view tracks changes from. When the view already tracked a
// state, the two must be the same: a difference is a bug, logged and
// counted, and the whole state wins.
func (f *viewFollower) buildFull(rev uint64) *state.Desired {
	br := f.v.build()
	f.reportConflicts(br.conflicts)
	d := br.desired
	d.Revision = rev
	if err := d.Validate(); err != nil {
		f.reject(&RecordError{Key: "desired", Reason: RejectBadState, Err: err})
		return nil
	}
	if f.v.inc.on {
		f.v.flush()
		f.v.inc.conflicts = nil
		inc := f.v.materialize()
		inc.Revision = rev
		if diff := state.Difference(inc, d); diff != "" {
			f.m.drift.Inc()
			f.log.Error("the state kept up to date differs from the state built whole; sending the whole one", "difference", diff)
		}
	}
	f.v.reset(d)
	return d
}

// reportConflicts counts and logs each conflict once per version of its record.
func (f *viewFollower) reportConflicts(conflicts []*RecordError) {
	for _, c := range conflicts {
		if rev := f.v.storedRev(ParseKey(c.Key)); f.reported[c.Key] != rev {
			f.reported[c.Key] = rev
			f.reject(c)
		}
	}
}

// maybeSnapshot writes the snapshot of the view when it builds exactly
// what the dataplane applied (nothing folded in since, or only changes
// that leave the state as it is: the agent's own status echoes), at most
// every snapEvery: encoding is O(records), and a snapshot a few seconds
// old only makes a restart replay those seconds.
// It says how long to wait when only the interval holds it back.
func (f *viewFollower) maybeSnapshot() time.Duration {
	if f.opts.StateDir == "" || f.v == nil || !f.v.inc.on || f.sentRev == 0 ||
		f.appliedRev.Load() != f.sentRev || f.snapRev == f.sentRev || !f.stateAsSent() {
		return 0
	}
	if wait := time.Until(f.snapAt.Add(f.snapEvery)); wait > 0 {
		return wait
	}
	began := time.Now()
	raw, err := encodeSnapshot(f.v, snapshotHeader{Host: f.opts.Host, Bucket: f.bucket, StreamCreated: f.streamCreated,
		Watermark: f.watermark, DesiredRevision: f.sentRev, Refs: sortedSet(f.refs)})
	if err != nil {
		f.log.Warn("could not encode the control-plane snapshot", "err", err)
		return 0
	}
	took := time.Since(began)
	f.snapRev, f.snapAt, f.snapEvery = f.sentRev, time.Now(), max(time.Second, 500*took)
	f.persist.write(raw)
	return 0
}

// stateAsSent reports whether the view's state is the last one sent:
// what was folded in since (if anything) changes no entry of it.
func (f *viewFollower) stateAsSent() bool {
	if !f.dirty {
		return true
	}
	f.v.flush()
	return f.v.inc.acc.empty()
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// checkOwnRecord asks for re-registration when the view lacks this
// agent's record or holds another version of it.
func (f *viewFollower) checkOwnRecord() {
	cur, ok := f.v.agents[f.opts.Host]
	if !ok || !sameRecord(cur.Rec, f.agentRecord()) {
		f.beat.reregister()
	}
}

// reconcileStatuses writes the status records that differ from what the
// last apply says, and deletes this host's statuses of ports no longer bound
// here. Writes go through the status writer; the view sees them come back.
func (f *viewFollower) reconcileStatuses() {
	if f.v == nil {
		return
	}
	f.wantMu.Lock()
	want := f.wantStatus
	f.wantMu.Unlock()
	host := f.opts.Host
	var ops []statusOp
	for portID, w := range want {
		nv := f.v.net(w.net)
		id, ok := f.v.ids.find(portID)
		if nv == nil || !ok {
			continue
		}
		p, ok := nv.ports[id]
		if !ok || p.host != f.v.self {
			continue
		}
		key := StatusKey(w.net, host, portID)
		cur, has := nv.own[id]
		if has && cur.String() == w.status && cur.gen == p.gen {
			if in, ok := f.inflight[key]; ok && in.rec != nil {
				delete(f.inflight, key)
			}
			continue
		}
		if in, ok := f.inflight[key]; ok && in.rec != nil && in.rec.Status == w.status && in.rec.Generation == p.gen {
			continue
		}
		ops = append(ops, statusOp{key: key, rec: &StatusRecord{PortID: portID, Host: host, Status: w.status, Generation: p.gen, UpdatedAt: now()}})
	}
	for key, op := range f.inflight {
		if _, ok := want[ParseKey(key).Port]; op.rec != nil && !ok {
			delete(f.inflight, key) // written; the port is no longer here
		}
	}
	for netID, nv := range f.v.nets {
		for portID, s := range nv.own {
			if p, ok := nv.ports[portID]; ok && p.host == f.v.self {
				continue
			}
			key := StatusKey(f.v.ids.name(netID), host, f.v.ids.name(portID))
			if _, ok := f.inflight[key]; ok {
				continue
			}
			ops = append(ops, statusOp{key: key, delRev: s.rev})
		}
	}
	f.queueStatus(ops)
}

func (f *viewFollower) queueStatus(ops []statusOp) {
	if len(ops) == 0 {
		return
	}
	for _, op := range ops {
		f.inflight[op.key] = op
	}
	f.status.queue(ops)
}
