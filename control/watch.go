package control

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

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
// revision order, through an ordered consumer that survives reconnects and
// server restarts (it re-creates itself after the last delivered revision).
type follower struct {
	js   jetstream.JetStream
	cons jetstream.Consumer
	cc   jetstream.ConsumeContext
	ch   chan kvEntry
	done chan struct{}
	// initialPending is the number of messages the consumer had to deliver
	// when it was created; 0 means caught up from the start.
	initialPending uint64
}

// followOptions say where a follower starts.
type followOptions struct {
	// lastPerSubject delivers only the latest message of each key (a full
	// load); otherwise delivery starts at startRev.
	lastPerSubject bool
	startRev       uint64
	buffer         int
}

// follow starts a follower of bucket on filters (key patterns).
func follow(ctx context.Context, js jetstream.JetStream, bucket string, filters []string, o followOptions, log *slog.Logger) (*follower, error) {
	prefix := KeyPrefix(bucket)
	subjects := make([]string, len(filters))
	for i, f := range filters {
		subjects[i] = prefix + f
	}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects:    subjects,
		InactiveThreshold: time.Minute,
	}
	if o.lastPerSubject {
		cfg.DeliverPolicy = jetstream.DeliverLastPerSubjectPolicy
	} else {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = max(o.startRev, 1)
	}
	cons, err := js.OrderedConsumer(ctx, StreamName(bucket), cfg)
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", strings.Join(filters, ","), err)
	}
	buf := o.buffer
	if buf == 0 {
		buf = 1024
	}
	f := &follower{js: js, cons: cons, ch: make(chan kvEntry, buf), done: make(chan struct{})}
	handler := func(m jetstream.Msg) {
		e, ok := toEntry(prefix, m)
		if !ok {
			return
		}
		select {
		case f.ch <- e:
		case <-f.done:
		}
	}
	cc, err := cons.Consume(handler,
		jetstream.PullMaxMessages(512),
		jetstream.PullHeartbeat(5*time.Second),
		jetstream.PullExpiry(30*time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			log.Debug("kv follower", "err", err)
		}))
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", strings.Join(filters, ","), err)
	}
	f.cc = cc
	if info := cons.CachedInfo(); info != nil {
		f.initialPending = info.NumPending
	}
	return f, nil
}

// caughtUp asks the server whether the follower has nothing left to
// deliver. Message metadata says so too (NumPending 0), but under churn a
// consumer can deliver its last pending message before the count settles,
// so an idle follower double-checks here.
func (f *follower) caughtUp(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := f.cons.Info(ctx)
	return err == nil && info.NumPending == 0
}

// stop ends the follower; it delivers nothing afterwards. Its consumer is
// deleted in the background (the server would drop it after a minute of
// inactivity anyway).
func (f *follower) stop() {
	select {
	case <-f.done:
		return
	default:
		close(f.done)
	}
	f.cc.Stop()
	if info := f.cons.CachedInfo(); info != nil && f.js != nil {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = f.js.DeleteConsumer(ctx, info.Stream, info.Name)
		}()
	}
}

func toEntry(prefix string, m jetstream.Msg) (kvEntry, bool) {
	meta, err := m.Metadata()
	if err != nil || !strings.HasPrefix(m.Subject(), prefix) {
		return kvEntry{}, false
	}
	e := kvEntry{
		Key:     m.Subject()[len(prefix):],
		Rev:     meta.Sequence.Stream,
		Value:   m.Data(),
		Pending: meta.NumPending,
		Created: meta.Timestamp,
	}
	if h := m.Headers(); h != nil {
		switch {
		case h.Get("KV-Operation") == "DEL" || h.Get("KV-Operation") == "PURGE":
			e.Deleted = true
		case h.Get(jetstream.MarkerReasonHeader) != "":
			e.Deleted = true
		}
	}
	return e, true
}

// loadLatest reads the latest message of every key matching filters
// (deleted keys included, marked Deleted) and returns once caught up.
func loadLatest(ctx context.Context, js jetstream.JetStream, bucket string, filters []string, log *slog.Logger) ([]kvEntry, error) {
	if len(filters) == 0 {
		return nil, nil
	}
	f, err := follow(ctx, js, bucket, filters, followOptions{lastPerSubject: true}, log)
	if err != nil {
		return nil, err
	}
	defer f.stop()
	if f.initialPending == 0 {
		return nil, nil
	}
	out := make([]kvEntry, 0, f.initialPending)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case e := <-f.ch:
			out = append(out, e)
			last = time.Now()
			if e.Pending == 0 {
				return out, nil
			}
		case <-tick.C:
			idle := time.Since(last)
			if idle >= 2*time.Second && f.caughtUp(ctx) {
				return out, nil
			}
			if idle >= loadStall {
				return nil, fmt.Errorf("load %s: nothing delivered for %s with messages pending; retrying", strings.Join(filters, ","), idle.Round(time.Second))
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("load %s: %w", strings.Join(filters, ","), ctx.Err())
		}
	}
}

// loadStall is how long a load may deliver nothing before it is retried.
const loadStall = 15 * time.Second

// loadRecords is loadLatest with the values decoded; deleted keys are left
// out and undecodable records are reported through bad (may be nil).
func loadRecords(ctx context.Context, js jetstream.JetStream, bucket string, filters []string, log *slog.Logger, bad func(error)) ([]loadedRecord, error) {
	entries, err := loadLatest(ctx, js, bucket, filters, log)
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
