package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// kvEntry is one message of the bucket: a put or a delete of a key.
type kvEntry struct {
	Key     string
	Rev     uint64
	Deleted bool
	Value   []byte
	// Pending is how many matching messages the consumer still had to
	// deliver after this one; 0 means caught up.
	Pending uint64
	Created time.Time
}

// follower streams the bucket's messages matching a set of filters, in
// revision order, from a push consumer of src. It keeps that order across
// failures as nats.go's ordered consumers do: on a gap in the consumer's
// sequence, missing heartbeats or a reconnect (a restarted server has lost
// the consumer) it asks src for a new consumer starting after the last
// revision it delivered.
type follower struct {
	src    consumerSource
	nc     *nats.Conn
	prefix string
	spec   consumerSpec
	log    *slog.Logger

	ch     chan kvEntry
	done   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	// failed is closed when src refused a new consumer; err says why.
	failed chan struct{}
	err    error
	// initialPending is the number of messages the consumer had to deliver
	// when it was created; 0 means caught up from the start.
	initialPending uint64

	kick       chan struct{} // asks the run loop for a new consumer
	lastMsg    atomic.Int64  // unix nanos of the last message handled
	delivering atomic.Bool   // a handler waits for the reader of ch

	// deliverMu orders deliveries: a handler holds it while it delivers
	// (possibly waiting for the reader), a new consumer starts only between
	// deliveries.
	deliverMu sync.Mutex
	serial    int    // of the current consumer; older consumers' messages are dropped
	dseq      uint64 // consumer sequence of the last message handled
	sseq      uint64 // revision of the last message delivered

	// mu guards the current consumer; never held while delivering.
	mu         sync.Mutex
	sub        *nats.Subscription
	name       string
	reconnects uint64
}

// followOptions say where a follower starts.
type followOptions struct {
	// lastPerSubject delivers only the latest message of each key (a full
	// load); otherwise delivery starts at startRev.
	lastPerSubject bool
	startRev       uint64
	buffer         int
	// proofs: see consumerSpec.Proofs.
	proofs map[string]string
}

// bucketReader reads a bucket through the consumers of src.
type bucketReader struct {
	src    consumerSource
	nc     *nats.Conn
	bucket string
	log    *slog.Logger
}

// directReader reads the bucket through the JetStream API of js.
func directReader(js jetstream.JetStream, bucket string, log *slog.Logger) bucketReader {
	return bucketReader{src: newDirectConsumers(js, bucket), nc: js.Conn(), bucket: bucket, log: log}
}

// follow starts a follower of the bucket on filters (key patterns).
func (r bucketReader) follow(ctx context.Context, filters []string, o followOptions) (*follower, error) {
	buf := o.buffer
	if buf == 0 {
		buf = 1024
	}
	f := &follower{
		src: r.src, nc: r.nc, prefix: KeyPrefix(r.bucket), log: r.log,
		spec: consumerSpec{Filters: filters, Proofs: o.proofs, LastPerSubject: o.lastPerSubject, StartRevision: o.startRev},
		ch:   make(chan kvEntry, buf), done: make(chan struct{}), failed: make(chan struct{}), kick: make(chan struct{}, 1),
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	pending, err := f.open(ctx)
	if err != nil {
		f.cancel()
		return nil, fmt.Errorf("follow %s: %w", strings.Join(filters, ","), err)
	}
	f.initialPending = pending
	go f.run()
	return f, nil
}

// open subscribes to a fresh inbox and makes a consumer delivering there,
// after the last delivered revision if there is one.
func (f *follower) open(ctx context.Context) (uint64, error) {
	f.deliverMu.Lock()
	f.serial++
	serial := f.serial
	f.dseq = 0
	spec := f.spec
	if f.sseq > 0 {
		spec.LastPerSubject, spec.StartRevision = false, f.sseq+1
	}
	f.deliverMu.Unlock()
	f.drop()

	spec.DeliverSubject = f.src.newInbox()
	reconnects := f.nc.Stats().Reconnects
	sub, err := f.nc.Subscribe(spec.DeliverSubject, f.handler(serial))
	if err != nil {
		return 0, err
	}
	f.lastMsg.Store(time.Now().UnixNano())
	name, pending, err := f.src.create(ctx, spec)
	if err != nil {
		_ = sub.Unsubscribe()
		return 0, err
	}
	// Not deliverMu: the consumer may already deliver, and wait for a
	// reader who waits for this function.
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.done: // closed meanwhile: nobody will remove these
		_ = sub.Unsubscribe()
		f.src.remove(name)
		return 0, errors.New("follower closed")
	default:
	}
	f.sub, f.name, f.reconnects = sub, name, reconnects
	return pending, nil
}

// handler handles the messages of the consumer of serial.
func (f *follower) handler(serial int) nats.MsgHandler {
	return func(m *nats.Msg) {
		f.lastMsg.Store(time.Now().UnixNano())
		f.deliverMu.Lock()
		defer f.deliverMu.Unlock()
		if serial != f.serial {
			return
		}
		if isStatus(m) {
			f.status(m)
			return
		}
		meta, err := m.Metadata()
		if err != nil || !strings.HasPrefix(m.Subject, f.prefix) {
			return
		}
		if meta.Sequence.Consumer != f.dseq+1 {
			f.restart("gap in the consumer sequence")
			return
		}
		f.dseq, f.sseq = meta.Sequence.Consumer, meta.Sequence.Stream
		e := toEntry(f.prefix, m, meta)
		f.delivering.Store(true)
		select {
		case f.ch <- e:
		case <-f.done:
		}
		f.delivering.Store(false)
		f.lastMsg.Store(time.Now().UnixNano())
	}
}

// status handles an idle heartbeat or a flow-control request.
func (f *follower) status(m *nats.Msg) {
	if m.Reply != "" {
		_ = m.Respond(nil) // flow control: send more
		return
	}
	if stalled := m.Header.Get("Nats-Consumer-Stalled"); stalled != "" {
		_ = f.nc.Publish(stalled, nil) // a lost flow-control reply
	}
	if last := m.Header.Get("Nats-Last-Consumer"); last != "" {
		if n, err := strconv.ParseUint(last, 10, 64); err == nil && n != f.dseq {
			f.restart("heartbeat reports messages this follower did not get")
		}
	}
}

// restart asks the run loop for a new consumer (deliverMu held).
func (f *follower) restart(why string) {
	f.serial++ // drop whatever the current consumer still sends
	f.log.Debug("kv follower: new consumer", "why", why, "after_revision", f.sseq)
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// run replaces the consumer when asked to, when heartbeats stop and after
// a reconnect, until the follower stops.
func (f *follower) run() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-f.done:
			return
		case <-f.kick:
		case <-tick.C:
			f.mu.Lock()
			reconnected := f.nc.Stats().Reconnects != f.reconnects
			f.mu.Unlock()
			idle := time.Since(time.Unix(0, f.lastMsg.Load()))
			if !reconnected && (idle < 2*consumerHeartbeat || f.delivering.Load()) {
				continue
			}
		}
		f.reopen()
	}
}

// reopen makes a new consumer, retrying until it succeeds, the follower
// stops or src refuses (then the follower fails).
func (f *follower) reopen() {
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
		_, err := f.open(ctx)
		cancel()
		switch {
		case err == nil:
			return
		case errors.Is(err, errRefused):
			f.err = fmt.Errorf("follow %s: %w", strings.Join(f.spec.Filters, ","), err)
			close(f.failed)
			return
		}
		f.log.Debug("kv follower: no new consumer yet", "err", err, "retry_in", wait)
		select {
		case <-f.done:
			return
		case <-time.After(wait):
		}
	}
}

// caughtUp asks the server whether the follower has nothing left to
// deliver. Message metadata says so too (NumPending 0), but under churn a
// consumer can deliver its last pending message before the count settles,
// so an idle follower double-checks here.
func (f *follower) caughtUp(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	f.mu.Lock()
	name := f.name
	f.mu.Unlock()
	if name == "" {
		return false
	}
	n, err := f.src.pending(ctx, name)
	return err == nil && n == 0
}

// close ends the follower; it delivers nothing afterwards. Its consumer is
// deleted in the background.
func (f *follower) close() {
	select {
	case <-f.done:
		return
	default:
		close(f.done)
	}
	f.cancel()
	f.deliverMu.Lock() // a handler waiting for the reader has seen done
	f.serial++
	f.deliverMu.Unlock()
	f.drop()
}

// drop unsubscribes from the current consumer and removes it.
func (f *follower) drop() {
	f.mu.Lock()
	sub, name := f.sub, f.name
	f.sub, f.name = nil, ""
	f.mu.Unlock()
	if sub != nil {
		_ = sub.Unsubscribe()
		f.src.remove(name)
	}
}

func toEntry(prefix string, m *nats.Msg, meta *nats.MsgMetadata) kvEntry {
	e := kvEntry{
		Key:     m.Subject[len(prefix):],
		Rev:     meta.Sequence.Stream,
		Value:   m.Data,
		Pending: meta.NumPending,
		Created: meta.Timestamp,
	}
	if h := m.Header; h != nil {
		switch {
		case h.Get("KV-Operation") == "DEL" || h.Get("KV-Operation") == "PURGE":
			e.Deleted = true
		case h.Get(jetstream.MarkerReasonHeader) != "":
			e.Deleted = true
		}
	}
	return e
}

// loadLatest reads the latest message of every key matching filters
// (deleted keys included, marked Deleted) and returns once caught up.
func (r bucketReader) loadLatest(ctx context.Context, filters []string, proofs map[string]string) ([]kvEntry, error) {
	var out []kvEntry
	err := r.eachLatest(ctx, filters, proofs, func(e kvEntry) { out = append(out, e) })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// eachLatest hands each latest value of the keys matching filters to each
// as it arrives (a full resync of 100k ports keeps none of them longer
// than folding it takes).
func (r bucketReader) eachLatest(ctx context.Context, filters []string, proofs map[string]string, each func(kvEntry)) error {
	if len(filters) == 0 {
		return nil
	}
	f, err := r.follow(ctx, filters, followOptions{lastPerSubject: true, proofs: proofs})
	if err != nil {
		return err
	}
	defer f.close()
	if f.initialPending == 0 {
		return nil
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case e := <-f.ch:
			each(e)
			last = time.Now()
			if e.Pending == 0 {
				return nil
			}
		case <-tick.C:
			idle := time.Since(last)
			if idle >= 2*time.Second && f.caughtUp(ctx) {
				return nil
			}
			if idle >= loadStall {
				return fmt.Errorf("load %s: nothing delivered for %s with messages pending; retrying", strings.Join(filters, ","), idle.Round(time.Second))
			}
		case <-f.failed:
			return f.err
		case <-ctx.Done():
			return fmt.Errorf("load %s: %w", strings.Join(filters, ","), ctx.Err())
		}
	}
}

// loadStall is how long a load may deliver nothing before it is retried.
const loadStall = 15 * time.Second

// loadRecords is loadLatest with the values decoded; deleted keys are left
// out and undecodable records are reported through bad (may be nil).
func (r bucketReader) loadRecords(ctx context.Context, filters []string, bad func(error)) ([]loadedRecord, error) {
	entries, err := r.loadLatest(ctx, filters, nil)
	if err != nil {
		return nil, err
	}
	out := make([]loadedRecord, 0, len(entries))
	for _, e := range entries {
		if e.Deleted {
			continue
		}
		k, rec, err := DecodeRecord(e.Key, e.Value)
		if err != nil {
			if bad != nil {
				bad(err)
			}
			continue
		}
		out = append(out, loadedRecord{Key: e.Key, Parsed: k, Rev: e.Rev, Rec: rec, Created: e.Created})
	}
	return out, nil
}

// loadedRecord is a decoded record with its revision.
type loadedRecord struct {
	Key     string
	Parsed  Key
	Rev     uint64
	Rec     any
	Created time.Time
}
