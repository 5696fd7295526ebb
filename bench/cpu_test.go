package bench

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestCPUAccounting splits a window's CPU time between the benchmark,
// kernel threads and others, and flags the window noisy by the others'
// share (with steal).
func TestCPUAccounting(t *testing.T) {
	at := time.Unix(1000, 0)
	snap := func(sec int, busy, steal uint64, procs map[int]procTimes) cpuSnapshot {
		return cpuSnapshot{at: at.Add(time.Duration(sec) * time.Second), cpus: []cpuTimes{{busy: busy, steal: steal}, {busy: busy}}, procs: procs}
	}
	const self = 100
	ours := func(pid int, _ procTimes, all map[int]procTimes) bool { return descendantOf(pid, self, all) }
	tests := []struct {
		name   string
		a, b   cpuSnapshot
		path   float64
		other  float64
		kernel float64
		share  float64
		noisy  bool
	}{
		{"only the benchmark", snap(0, 0, 0, map[int]procTimes{self: {ppid: 1}}),
			snap(1, 50, 0, map[int]procTimes{self: {ppid: 1, self: 60}, 101: {ppid: self, self: 40}}), 1.0, 0, 0, 0, false},
		{"another process and its reaped children", snap(0, 0, 0, map[int]procTimes{self: {ppid: 1}, 7: {ppid: 1, self: 10, reaped: 5}}),
			snap(1, 50, 0, map[int]procTimes{self: {ppid: 1, self: 70}, 7: {ppid: 1, self: 20, reaped: 15}}), 0.8, 0.2, 0, 0.1, true},
		{"kernel threads count as the path's", snap(0, 0, 0, map[int]procTimes{}),
			snap(1, 50, 0, map[int]procTimes{12: {ppid: 2, kthread: true, self: 30}}), 1.0, 0, 0.3, 0, false},
		{"steal is others' too", snap(0, 0, 0, map[int]procTimes{}),
			snap(1, 50, 10, map[int]procTimes{}), 1.0, 0, 0, 0.05, true},
		{"a process started in the window", snap(0, 0, 0, map[int]procTimes{}),
			snap(1, 50, 0, map[int]procTimes{9: {ppid: 1, self: 4}}), 0.96, 0.04, 0, 0.02, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := cpuBetween(tt.a, tt.b, ours, 0.03)
			if !near(u.Path, tt.path) || !near(u.Other, tt.other) || !near(u.Kernel, tt.kernel) || !near(u.OtherShare, tt.share) || u.Noisy != tt.noisy {
				t.Errorf("%+v, want path %.2f other %.2f kernel %.2f share %.3f noisy %v", u, tt.path, tt.other, tt.kernel, tt.share, tt.noisy)
			}
		})
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// TestNoiseDetectionCatchesABusyMachine burns a CPU in a process that is
// not the benchmark's during a window: the window must be flagged.
func TestNoiseDetectionCatchesABusyMachine(t *testing.T) {
	burner := exec.Command("sh", "-c", "while :; do :; done")
	if err := burner.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		burner.Process.Kill()
		burner.Wait()
	}()
	time.Sleep(100 * time.Millisecond)
	a, err := takeCPU()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	b, err := takeCPU()
	if err != nil {
		t.Fatal(err)
	}
	self, burnerPID := os.Getpid(), burner.Process.Pid
	u := cpuBetween(a, b, func(pid int, _ procTimes, all map[int]procTimes) bool {
		return pid != burnerPID && descendantOf(pid, self, all)
	}, 0.03)
	// The burner had a CPU to itself or shared one: at least a quarter of
	// a CPU-second, on any machine.
	if !u.Noisy || u.Other < 0.25 {
		t.Errorf("a process burning a CPU for 1 s: %+v, want it counted as other and the window noisy", u)
	}
}
