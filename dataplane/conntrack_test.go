package dataplane

import (
	"os"
	"testing"

	"github.com/vxdp/vxdp/maps"
)

// TestSweepCT: expired flows go; a table above 90 % loses the flows
// closest to expiring down to 80 %; every removal is counted.
func TestSweepCT(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create BPF maps")
	}
	set, err := maps.Create(maps.Sizes{maps.CTOther: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	m := set.Map(maps.CTOther)
	now := maps.MonotonicNow()
	put := func(i int, expires uint64) {
		k := maps.CTKey{Ifindex: 1, Proto: 17, Family: 4, LocalPort: uint16(i)}
		if err := m.Put(k, maps.CTEntry{Expires: expires, State: maps.CTOpen}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 10; i++ {
		put(i, now-1) // expired
	}
	for i := 10; i < 95; i++ {
		put(i, now+uint64(i)*1e9)
	}
	s, err := sweepTable(m, maps.CTOther, now)
	if err != nil {
		t.Fatal(err)
	}
	if s.Expired != 10 || s.Evicted != 0 || s.Entries != 85 || s.Capacity != 100 {
		t.Errorf("first sweep %+v, want 10 expired, 0 evicted, 85 left of 100", s)
	}
	for i := 95; i < 105; i++ {
		put(i, now+uint64(i)*1e9)
	}
	s, err = sweepTable(m, maps.CTOther, now)
	if err != nil {
		t.Fatal(err)
	}
	if s.Expired != 0 || s.Evicted != 15 || s.Entries != 80 {
		t.Errorf("second sweep %+v, want 15 evicted, 80 left", s)
	}
	// The evicted are those closest to expiring: 10..24.
	var e maps.CTEntry
	for i := 10; i < 105; i++ {
		err := m.Lookup(maps.CTKey{Ifindex: 1, Proto: 17, Family: 4, LocalPort: uint16(i)}, &e)
		if (i < 25) != (err != nil) {
			t.Errorf("flow %d: present %v", i, err == nil)
		}
	}
}
