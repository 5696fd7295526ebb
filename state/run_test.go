package state

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// stoppingProducer sends one state, and when its context ends takes a
// while to keep what it must (as the agent writes its last snapshot).
type stoppingProducer struct{ kept atomic.Bool }

func (p *stoppingProducer) Run(ctx context.Context, updates chan<- *Desired) error {
	select {
	case updates <- &Desired{Revision: 1}:
	case <-ctx.Done():
	}
	<-ctx.Done()
	time.Sleep(50 * time.Millisecond)
	p.kept.Store(true)
	return nil
}

type appliedRecorder struct{ applied chan uint64 }

func (r *appliedRecorder) Apply(_ context.Context, d *Desired) (Result, error) {
	r.applied <- d.Revision
	return Result{}, nil
}

// The loop returns only after its producer did: what the producer keeps
// at the end (the snapshot matching the applied revision) is kept before
// the process exits.
func TestLoopWaitsForProducer(t *testing.T) {
	p := &stoppingProducer{}
	r := &appliedRecorder{applied: make(chan uint64, 4)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- (&Loop{Producer: p, Reconciler: r, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}).Run(ctx)
	}()
	if rev := <-r.applied; rev != 1 {
		t.Fatalf("applied revision %d, want 1", rev)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !p.kept.Load() {
		t.Error("the loop returned before its producer finished")
	}
}
