package test

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vxdp/vxdp/lab"
)

// TestLabSafety: a second `lab up` on the prefix or the directory of a lab
// that is up is refused and changes nothing (the first lab's agents keep
// running and vm2 still reaches vm1); `lab down` removes exactly what the
// lab made, and reports a namespace that merely shares the prefix, leaves
// it, and succeeds.
func TestLabSafety(t *testing.T) {
	l := newLab(t, lab.Config{})
	pids := map[string]int{}
	for _, n := range lab.Nodes {
		pids[n] = l.AgentPID(n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	samePrefix := l.Config
	samePrefix.Dir = filepath.Join(t.TempDir(), "second")
	if _, err := lab.Up(ctx, samePrefix, testWriter{t}); err == nil || !strings.Contains(err.Error(), "is in use") ||
		!strings.Contains(err.Error(), "lab down --dir "+l.Dir) {
		t.Errorf("lab up on the prefix of a running lab: %v, want a refusal naming the lab's directory", err)
	}
	sameDir := labConfig(t, lab.Config{})
	sameDir.Dir = l.Dir
	if _, err := lab.Up(ctx, sameDir, testWriter{t}); err == nil || !strings.Contains(err.Error(), "holds a lab already") {
		t.Errorf("lab up in the directory of a running lab: %v, want a refusal", err)
	}
	out, err := exec.Command(l.Binary, "lab", "up", "--prefix", l.Prefix, "--dir", samePrefix.Dir, "--control", "file", "--no-smoke").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "is in use") {
		t.Errorf("vxdp lab up --prefix %s: %v\n%s\nwant a refusal", l.Prefix, err, out)
	}

	// The first lab is untouched and works.
	for _, n := range lab.Nodes {
		if got := l.AgentPID(n); got == 0 || got != pids[n] {
			t.Errorf("agent of %s: pid %d, was %d", n, got, pids[n])
		}
	}
	for _, ns := range l.Namespaces() {
		if !lab.NSExists(ns) {
			t.Errorf("namespace %s of the first lab is gone", ns)
		}
	}
	ping(t, l, lab.VM2, lab.VM1.IP.String(), 3)
	var st struct {
		Prefix string `json:"prefix"`
		Nodes  []struct {
			Node            string `json:"node"`
			AgentRunning    bool   `json:"agent_running"`
			AgentPID        int    `json:"agent_pid"`
			AppliedRevision uint64 `json:"applied_revision"`
		} `json:"nodes"`
	}
	out, err = exec.Command(l.Binary, "lab", "status", "--dir", l.Dir, "-o", "json").Output()
	if err != nil || json.Unmarshal(out, &st) != nil || st.Prefix != l.Prefix || len(st.Nodes) != len(lab.Nodes) {
		t.Fatalf("lab status -o json: %v\n%s", err, out)
	}
	for _, n := range st.Nodes {
		if !n.AgentRunning || n.AgentPID != pids[n.Node] || n.AppliedRevision == 0 {
			t.Errorf("lab status: node %+v, want its agent (pid %d) running with a revision applied", n, pids[n.Node])
		}
	}

	// A namespace that shares the prefix is not the lab's.
	stray := l.Prefix + "stray"
	if out, err := exec.Command("ip", "netns", "add", stray).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", stray, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", stray).Run() })
	out, err = exec.Command(l.Binary, "lab", "down", "--dir", l.Dir).CombinedOutput()
	if err != nil {
		t.Fatalf("lab down with a stray namespace: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "left alone: netns "+stray) {
		t.Errorf("lab down did not report the stray namespace:\n%s", out)
	}
	if !lab.NSExists(stray) {
		t.Errorf("lab down deleted %s, which the lab did not make", stray)
	}
	if left := lab.Leftovers(l.Config); !slices.Equal(left, []string{"netns " + stray}) {
		t.Errorf("after lab down: %v, want only the stray namespace", left)
	}
}
