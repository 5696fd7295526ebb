package maps

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// Entries reads every entry of a (non per-CPU) map.
func Entries[K comparable, V any](m *ebpf.Map) (map[K]V, error) {
	out := map[K]V{}
	var k K
	var v V
	it := m.Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate map: %w", err)
	}
	return out, nil
}

// Plan is the difference between a map's content and what it should hold.
// Upsert and Delete are separate so a caller syncing several maps can add
// everything in dependency order first and remove in reverse order after:
// an entry never points at something not yet (or no longer) installed.
type Plan[K comparable, V comparable] struct {
	Map                     string
	m                       *ebpf.Map
	upserts                 map[K]V
	Added, Updated, Removed []K
	Unchanged               int
}

// Diff compares the named map m with want. Entries already equal are left
// alone, so a packet in flight never sees an entry flap.
func Diff[K comparable, V comparable](name string, m *ebpf.Map, want map[K]V) (*Plan[K, V], error) {
	have, err := Entries[K, V](m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &Plan[K, V]{Map: name, m: m, upserts: map[K]V{}}
	for k, v := range want {
		old, ok := have[k]
		switch {
		case ok && old == v:
			p.Unchanged++
			continue
		case ok:
			p.Updated = append(p.Updated, k)
		default:
			p.Added = append(p.Added, k)
		}
		p.upserts[k] = v
	}
	for k := range have {
		if _, ok := want[k]; !ok {
			p.Removed = append(p.Removed, k)
		}
	}
	return p, nil
}

// Upsert writes the added and updated entries.
func (p *Plan[K, V]) Upsert() error {
	for k, v := range p.upserts {
		if err := p.m.Update(k, v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("update %s %+v: %w", p.Map, k, err)
		}
	}
	return nil
}

// Delete removes the entries no longer wanted.
func (p *Plan[K, V]) Delete() error {
	for _, k := range p.Removed {
		if err := p.m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete %s %+v: %w", p.Map, k, err)
		}
	}
	return nil
}
