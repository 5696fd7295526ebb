package dataplane

import (
	"os"
	"testing"

	"github.com/vxdp/vxdp/maps"
)

// TestLoadProgramsSizedTables: the programs load over tracked-flow tables
// the agent sized ([dataplane] ct_tcp_max, ct_other_max), not only over
// tables of the object's default size.
func TestLoadProgramsSizedTables(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs")
	}
	set, err := maps.Create(maps.Sizes{maps.CTTCP: 1024, maps.CTOther: 2048})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	p, err := LoadPrograms(set)
	if err != nil {
		t.Fatalf("load the programs over sized tables: %v", err)
	}
	p.Close()
}
