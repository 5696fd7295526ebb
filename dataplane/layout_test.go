package dataplane

import (
	"os"
	"regexp"
	"strconv"
	"testing"
)

// TestLayoutVersion: the layout the agent records and checks in pinned maps
// is bpf/include/abi.h's VXDP_LAYOUT, so an agent whose maps changed never
// reuses maps pinned by one with another layout.
func TestLayoutVersion(t *testing.T) {
	b, err := os.ReadFile("../bpf/include/abi.h")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^#define VXDP_LAYOUT (\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("abi.h defines no VXDP_LAYOUT")
	}
	if want, _ := strconv.Atoi(string(m[1])); layoutVersion != want {
		t.Errorf("layoutVersion = %d, abi.h's VXDP_LAYOUT = %d: bump layoutVersion with it", layoutVersion, want)
	}
}
