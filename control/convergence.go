package control

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// ApplyWatcher collects the ApplyReports agents publish after every apply,
// to measure convergence: when did every agent apply a given revision.
type ApplyWatcher struct {
	sub *nats.Subscription
	mu  sync.Mutex
	// history per host: ascending revisions with the time each arrived.
	history map[string][]appliedAt
	changed chan struct{}
}

type appliedAt struct {
	rev uint64
	at  time.Time
}

// WatchApplies subscribes to the apply reports of every agent of bucket.
func WatchApplies(nc *nats.Conn, bucket string) (*ApplyWatcher, error) {
	if bucket == "" {
		bucket = DefaultBucket
	}
	w := &ApplyWatcher{history: map[string][]appliedAt{}, changed: make(chan struct{})}
	sub, err := nc.Subscribe(AppliedWildcard(bucket), func(m *nats.Msg) {
		// Only the agent of a host may publish on its subject; a report
		// that names another host is not believed.
		var r ApplyReport
		tok := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		if json.Unmarshal(m.Data, &r) != nil || r.Error != "" || HostToken(r.Host) != tok {
			return
		}
		at := time.Now()
		w.mu.Lock()
		h := w.history[r.Host]
		if len(h) == 0 || h[len(h)-1].rev < r.Revision {
			h = append(h, appliedAt{r.Revision, at})
			if len(h) > 1024 {
				h = h[len(h)-512:]
			}
			w.history[r.Host] = h
		}
		close(w.changed)
		w.changed = make(chan struct{})
		w.mu.Unlock()
	})
	if err != nil {
		return nil, fmt.Errorf("watch applies: %w", err)
	}
	if err := nc.Flush(); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("watch applies: %w", err)
	}
	w.sub = sub
	return w, nil
}

// Stop ends the subscription.
func (w *ApplyWatcher) Stop() {
	if w.sub != nil {
		_ = w.sub.Unsubscribe()
	}
}

// WaitApplied waits until every host in targets applied at least its
// revision and returns when each did (receive time of its report).
func (w *ApplyWatcher) WaitApplied(ctx context.Context, targets map[string]uint64) (map[string]time.Time, error) {
	for {
		w.mu.Lock()
		out := map[string]time.Time{}
		var missing []string
		for host, rev := range targets {
			h := w.history[host]
			i := slices.IndexFunc(h, func(a appliedAt) bool { return a.rev >= rev })
			if i < 0 {
				missing = append(missing, host)
				continue
			}
			out[host] = h[i].at
		}
		ch := w.changed
		w.mu.Unlock()
		if len(missing) == 0 {
			return out, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			slices.Sort(missing)
			return out, fmt.Errorf("agents %v did not apply in time: %w", missing, ctx.Err())
		}
	}
}

// MigrationResult is the timing of a live migration flip.
type MigrationResult struct {
	Port           string `json:"port"`
	From, To       string
	FlipRevision   uint64 `json:"flip_revision"`
	ActiveRevision uint64 `json:"active_revision"`
	// Active is the time from the flip until the new host reported the
	// port ACTIVE.
	Active time.Duration `json:"active"`
	// Converged is the time from the flip until the last agent hosting the
	// network applied the state with the MAC at the new VTEP.
	Converged time.Duration `json:"converged"`
	// PerHost is when each agent had it, from the flip.
	PerHost map[string]time.Duration `json:"per_host"`
}

// MigratePort flips a port's binding to host (compare-and-set, as
// BindPort) and measures how long every agent hosting the network takes to
// apply it: the new host must report the port ACTIVE, then every other
// host must apply a state at least that recent. w must have been started
// before (it sees the apply reports).
func (c *Controller) MigratePort(ctx context.Context, w *ApplyWatcher, ref, host string) (MigrationResult, error) {
	p, err := c.GetPort(ctx, ref)
	if err != nil {
		return MigrationResult{}, err
	}
	if host == "" || host == p.Host {
		return MigrationResult{}, invalidf("migrate port %s: new host %q must differ from %q", p.ID, host, p.Host)
	}
	stream, err := c.js.Stream(ctx, StreamName(c.bucket))
	if err != nil {
		return MigrationResult{}, fmt.Errorf("migrate: %w", err)
	}
	from := stream.CachedInfo().State.LastSeq + 1
	f, err := c.reader.follow(ctx, []string{StatusKey(p.NetworkID, host, p.ID)}, followOptions{startRev: from, buffer: 16})
	if err != nil {
		return MigrationResult{}, err
	}
	defer f.close()

	t0 := time.Now()
	np, err := c.BindPort(ctx, p.ID, host, p.Revision)
	if err != nil {
		return MigrationResult{}, err
	}
	res := MigrationResult{Port: p.ID, From: p.Host, To: host, FlipRevision: np.Revision, PerHost: map[string]time.Duration{}}
	for res.ActiveRevision == 0 {
		select {
		case e := <-f.ch:
			if e.Deleted {
				continue
			}
			if _, rec, err := DecodeRecord(e.Key, e.Value); err == nil {
				st := rec.(*StatusRecord)
				if st.Generation == np.Generation && st.Status == StatusActive {
					res.ActiveRevision = e.Rev
					res.Active = time.Since(t0)
				}
			}
		case <-ctx.Done():
			return res, fmt.Errorf("migrate %s: %s never reported it ACTIVE: %w", p.ID, host, ctx.Err())
		}
	}
	ports, err := c.ListPorts(ctx, PortFilter{Network: p.NetworkID})
	if err != nil {
		return res, err
	}
	targets := map[string]uint64{host: np.Revision}
	for _, q := range ports {
		if q.Host != "" && q.Host != host {
			targets[q.Host] = res.ActiveRevision
		}
	}
	at, err := w.WaitApplied(ctx, targets)
	for h, t := range at {
		d := max(t.Sub(t0), 0)
		res.PerHost[h] = d
		res.Converged = max(res.Converged, d)
	}
	res.Converged = max(res.Converged, res.Active)
	return res, err
}
