package dataplane

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cilium/ebpf"

	"github.com/vxdp/vxdp/maps"
)

// The tracked-flow tables are plain hash maps: the programs never evict.
// The sweeper removes what expired and, when a table fills, the flows
// closest to expiring (the idle ones first: an active flow's deadline
// keeps moving), so an established flow is never dropped for a new one
// and every removal is counted.
const (
	// DefaultSweepInterval is how often the agent sweeps.
	DefaultSweepInterval = 10 * time.Second
	// ctEvictAbove is the fill above which a sweep evicts; it evicts
	// down to ctEvictTo.
	ctEvictAbove = 0.90
	ctEvictTo    = 0.80
	sweepBatch   = 4096
)

// CTSweep is what one sweep found and did, per table.
type CTSweep struct {
	Table    string
	Entries  int // after the sweep
	Capacity int
	Expired  int
	Evicted  int
}

// SweepCT sweeps every tracked-flow table once.
func (d *Dataplane) SweepCT() ([]CTSweep, error) {
	var out []CTSweep
	for _, name := range []string{maps.CTTCP, maps.CTOther} {
		s, err := sweepTable(d.set.Map(name), name, maps.MonotonicNow())
		if err != nil {
			return out, err
		}
		out = append(out, s)
	}
	return out, nil
}

// RunSweeper sweeps every interval until ctx ends, reporting each sweep.
func (d *Dataplane) RunSweeper(ctx context.Context, interval time.Duration, report func([]CTSweep)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s, err := d.SweepCT()
			if err != nil {
				d.log.Warn("conntrack sweep", "err", err)
			}
			if report != nil {
				report(s)
			}
		}
	}
}

type ctItem struct {
	k maps.CTKey
	e maps.CTEntry
}

func sweepTable(m *ebpf.Map, name string, now uint64) (CTSweep, error) {
	s := CTSweep{Table: name, Capacity: int(m.MaxEntries())}
	var live []ctItem
	var dead []maps.CTKey
	keys := make([]maps.CTKey, sweepBatch)
	vals := make([]maps.CTEntry, sweepBatch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := 0; i < n; i++ {
			if vals[i].Expires <= now {
				dead = append(dead, keys[i])
			} else {
				live = append(live, ctItem{keys[i], vals[i]})
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return s, fmt.Errorf("read %s: %w", name, err)
		}
	}
	if over := len(live) - int(float64(s.Capacity)*ctEvictTo); float64(len(live)) > float64(s.Capacity)*ctEvictAbove && over > 0 {
		slices.SortFunc(live, func(a, b ctItem) int {
			switch {
			case a.e.Expires < b.e.Expires:
				return -1
			case a.e.Expires > b.e.Expires:
				return 1
			}
			return 0
		})
		for _, it := range live[:over] {
			dead = append(dead, it.k)
		}
		s.Evicted = over
		live = live[over:]
	}
	expired := len(dead) - s.Evicted
	for i, k := range dead {
		// A packet may have renewed an expired flow since it was read.
		var e maps.CTEntry
		if i < expired && m.Lookup(k, &e) == nil && e.Expires > now {
			expired--
			continue
		}
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return s, fmt.Errorf("delete from %s: %w", name, err)
		}
	}
	s.Expired = expired
	s.Entries = len(live)
	return s, nil
}
