package control

import (
	"context"
	"sync"
	"time"
)

// persister writes the snapshot of the view the last applied state was
// built from, so that a restart resumes from it. The follower captures a
// snapshot with every state it sends; the one of the revision the
// dataplane applies is written.
type persister struct {
	*agentEnv
	mu       sync.Mutex
	captures map[uint64]*snapshot // by desired revision, not applied yet
	next     *latest[*snapshot]
}

func newPersister(env *agentEnv) *persister {
	return &persister{agentEnv: env, captures: map[uint64]*snapshot{}, next: newLatest[*snapshot](nil)}
}

// capture keeps s until its state is applied (the last few only).
func (p *persister) capture(s *snapshot) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.captures[s.DesiredRevision] = s
	for r := range p.captures {
		if len(p.captures) > 4 && r < s.DesiredRevision {
			delete(p.captures, r)
		}
	}
}

// applied writes the snapshot of rev, which the dataplane applied.
func (p *persister) applied(rev uint64) {
	p.mu.Lock()
	s := p.captures[rev]
	for r := range p.captures {
		if r <= rev {
			delete(p.captures, r)
		}
	}
	p.mu.Unlock()
	if s != nil {
		p.next.set(s)
	}
}

func (p *persister) run(ctx context.Context) {
	for {
		s, ok := p.next.wait(ctx)
		if !ok {
			return
		}
		began := time.Now()
		if err := writeSnapshot(p.opts.StateDir, s); err != nil {
			p.log.Warn("could not persist the control-plane snapshot; the next start resyncs fully", "err", err)
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
