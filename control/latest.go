package control

import (
	"context"
	"sync"
)

// latest hands values from one goroutine to another that may be busy: a
// value set while the last one waits replaces it (or is merged into it),
// so the taker always gets the newest and never falls behind.
type latest[T any] struct {
	mu    sync.Mutex
	v     T
	has   bool
	merge func(waiting, next T) T // nil: next replaces what waits
	ready chan struct{}
}

func newLatest[T any](merge func(waiting, next T) T) *latest[T] {
	return &latest[T]{merge: merge, ready: make(chan struct{}, 1)}
}

// set hands v over.
func (l *latest[T]) set(v T) {
	l.mu.Lock()
	if l.has && l.merge != nil {
		v = l.merge(l.v, v)
	}
	l.v, l.has = v, true
	l.mu.Unlock()
	poke(l.ready)
}

// take returns what waits, if anything, and leaves nothing.
func (l *latest[T]) take() (T, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.v, l.has
	var zero T
	l.v, l.has = zero, false
	return v, ok
}

// wait takes the next value; false when ctx ended first.
func (l *latest[T]) wait(ctx context.Context) (T, bool) {
	for {
		if v, ok := l.take(); ok {
			return v, true
		}
		select {
		case <-ctx.Done():
			var zero T
			return zero, false
		case <-l.ready:
		}
	}
}

// appendOps merges queued status operations.
func appendOps(waiting, next []statusOp) []statusOp { return append(waiting, next...) }
