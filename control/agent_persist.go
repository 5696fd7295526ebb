package control

import (
	"context"
	"time"
)

// persister writes the snapshots the follower encodes (of exactly the
// state the dataplane applied) to the state dir, off the follower's
// goroutine: the newest waiting one replaces an older not yet written.
type persister struct {
	*agentEnv
	next *latest[[]byte]
}

func newPersister(env *agentEnv) *persister {
	return &persister{agentEnv: env, next: newLatest[[]byte](nil)}
}

// write hands over an encoded snapshot.
func (p *persister) write(raw []byte) { p.next.set(raw) }

func (p *persister) run(ctx context.Context) {
	for {
		raw, ok := p.next.wait(ctx)
		if !ok {
			return
		}
		began := time.Now()
		p.store(raw)
		// Writing is O(records): under constant change, write at most a
		// fifth of the time; the newest snapshot is written next.
		select {
		case <-ctx.Done():
			return
		case <-time.After(4 * time.Since(began)):
		}
	}
}

// flush writes what waits, now (after run ended).
func (p *persister) flush() {
	if raw, ok := p.next.take(); ok {
		p.store(raw)
	}
}

func (p *persister) store(raw []byte) {
	if err := writeSnapshot(p.opts.StateDir, raw); err != nil {
		p.log.Warn("could not persist the control-plane snapshot; the next start resyncs fully", "err", err)
	}
}
