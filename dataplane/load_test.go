package dataplane

import (
	"os"
	"testing"

	"github.com/vxdp/vxdp/maps"
)

func TestLoadPrograms(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading BPF programs needs root")
	}
	set, err := maps.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	p, err := LoadPrograms(set)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
}
