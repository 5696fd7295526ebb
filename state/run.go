package state

import (
	"context"
	"log/slog"
	"time"
)

// DeltaProducer is a Producer that can send deltas. The run loop prefers
// RunUpdates; a producer of deltas must start with a full update and send
// another whenever Resend asks for one.
type DeltaProducer interface {
	Producer
	RunUpdates(ctx context.Context, updates chan<- Update) error
	// Resend asks for a complete state, recomputed from the producer's
	// input, as a next update: the safety net of a periodic full apply,
	// and the way back after a failed delta.
	Resend()
}

// DeltaReconciler is a Reconciler that applies deltas to what it
// installed. ApplyDelta must leave the host as Apply of the state the delta
// makes would; a failed ApplyDelta is followed by a full Apply.
type DeltaReconciler interface {
	Reconciler
	ApplyDelta(ctx context.Context, d *Delta) (Result, error)
}

// Loop runs a producer against a reconciler: it applies every update the
// producer sends, re-applies the whole state every Resync period and when
// Wake fires (a tap appeared, a reload), retries failed applies with
// backoff and tells the observer each outcome. Nothing is applied before
// the first state arrives: an agent restarting while its source is away
// keeps what is installed.
//
// Deltas reach the reconciler as deltas when it takes them
// (DeltaReconciler); the periodic re-apply then asks the producer for a
// recomputed full state, which the reconciler diffs against what is
// installed. Otherwise the loop keeps the complete state (Tracker) and
// applies it whole.
type Loop struct {
	Producer   Producer
	Reconciler Reconciler
	Observer   Observer // may be nil
	// First is applied before the producer's first update (a state file
	// read at start).
	First *Desired
	// Resync is the period of the full re-apply that repairs drift
	// (default a minute).
	Resync time.Duration
	// Wake asks for a full re-apply now (may be nil).
	Wake <-chan struct{}
	// AfterApply, if set, is told every apply and how long it took
	// (metrics, readiness). The state has no remote ports when the
	// reconciler took a delta.
	AfterApply func(d *Desired, res Result, err error, took time.Duration)
	Log        *slog.Logger
}

// Run runs the loop until ctx ends.
func (l *Loop) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	log := l.Log
	if log == nil {
		log = slog.Default()
	}
	resync := l.Resync
	if resync <= 0 {
		resync = time.Minute
	}
	updates := make(chan Update)
	dprod, deltas := l.Producer.(DeltaProducer)
	drec, _ := l.Reconciler.(DeltaReconciler)
	tr := &Tracker{SkipRemote: deltas && drec != nil}
	// The producer is waited for at the end: it may have state to keep
	// (the agent's snapshot of what was applied).
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		var err error
		if deltas {
			err = dprod.RunUpdates(ctx, updates)
		} else {
			err = runFull(ctx, l.Producer, updates)
		}
		if err != nil && ctx.Err() == nil {
			log.Error("state producer stopped", "err", err)
		}
	}()
	if l.First != nil {
		tr.Apply(Update{Full: l.First})
	}
	retry := time.NewTimer(0) // a first state applies right away
	defer retry.Stop()
	tick := time.NewTicker(resync)
	defer tick.Stop()
	backoff := time.Second
	// resend: a full state is wanted but only the producer can make it.
	resend := func() bool {
		if tr.SkipRemote && tr.Valid() {
			dprod.Resend()
			return true
		}
		return false
	}
	for {
		var delta *Delta
		var full *Desired // a complete state received (the tracker may keep less of it)
		select {
		case <-ctx.Done():
			log.Info("stopping; installed state stays in place")
			cancel()
			<-produced
			return nil
		case u := <-updates:
			if !tr.Apply(u) {
				continue
			}
			delta, full = u.Delta, u.Full
		case <-l.Wake:
			if resend() {
				continue
			}
		case <-tick.C:
			if resend() {
				continue
			}
		case <-retry.C:
			if resend() {
				continue
			}
		}
		if !tr.Valid() {
			continue
		}
		d := tr.Desired()
		if full != nil {
			d = full
		}
		start := time.Now()
		var res Result
		var err error
		// An update that only moves the revision is applied too: the
		// reconciler persists the revision the agent's snapshot must match.
		if delta != nil && drec != nil {
			res, err = drec.ApplyDelta(ctx, delta)
		} else {
			res, err = l.Reconciler.Apply(ctx, d)
		}
		took := time.Since(start)
		if l.AfterApply != nil {
			l.AfterApply(d, res, err, took)
		}
		if l.Observer != nil {
			l.Observer.Applied(ctx, d, res, err)
		}
		if err != nil {
			log.Error("apply failed, will retry", "err", err, "retry_in", backoff)
			retry.Reset(backoff)
			backoff = min(backoff*2, time.Minute)
			continue
		}
		backoff = time.Second
		logApply(log, d, res, took)
	}
}

// runFull runs a producer of full states as a producer of updates.
func runFull(ctx context.Context, p Producer, updates chan<- Update) error {
	full := make(chan *Desired)
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, full) }()
	for {
		select {
		case d := <-full:
			select {
			case updates <- Update{Full: d}:
			case <-ctx.Done():
				return <-done
			}
		case err := <-done:
			return err
		}
	}
}

func logApply(log *slog.Logger, d *Desired, res Result, took time.Duration) {
	level := slog.LevelDebug
	if len(res.Ops) > 0 {
		level = slog.LevelInfo
	}
	log.Log(context.Background(), level, "applied", "revision", d.Revision, "changes", len(res.Ops),
		"unchanged", res.Unchanged, "pending_ports", len(res.Pending), "took", took.Round(time.Microsecond))
	for _, op := range res.Ops {
		log.Debug("change", "object", op.Object, "action", op.Action, "key", op.Key)
	}
}
