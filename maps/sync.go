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

// SyncResult lists what Sync changed.
type SyncResult[K comparable] struct {
	Added, Updated, Removed []K
	Unchanged               int
}

// Sync makes m hold exactly want. Entries already equal are not touched, so
// a packet in flight never sees a missing or changed entry that is not
// really changing. Additions and updates come before removals.
func Sync[K comparable, V comparable](m *ebpf.Map, want map[K]V) (SyncResult[K], error) {
	var res SyncResult[K]
	have, err := Entries[K, V](m)
	if err != nil {
		return res, err
	}
	for k, v := range want {
		old, ok := have[k]
		if ok && old == v {
			res.Unchanged++
			continue
		}
		if err := m.Update(k, v, ebpf.UpdateAny); err != nil {
			return res, fmt.Errorf("update %+v: %w", k, err)
		}
		if ok {
			res.Updated = append(res.Updated, k)
		} else {
			res.Added = append(res.Added, k)
		}
	}
	for k := range have {
		if _, ok := want[k]; ok {
			continue
		}
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return res, fmt.Errorf("delete %+v: %w", k, err)
		}
		res.Removed = append(res.Removed, k)
	}
	return res, nil
}
