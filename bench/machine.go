package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Machine is where a report was measured, and how idle it was.
type Machine struct {
	CPUModel string    `json:"cpu_model"`
	CPUs     int       `json:"cpus"`
	Kernel   string    `json:"kernel"`
	Commit   string    `json:"commit"`
	Go       string    `json:"go"`
	Date     time.Time `json:"date"`
	// LoadAvg is /proc/loadavg's 1, 5 and 15 minute averages at the start.
	LoadAvg [3]float64 `json:"load_avg"`
	// IdleCheck is the CPU accounting of a few seconds before the first
	// measurement, the benchmark doing nothing: what others used then.
	IdleCheck *CPUUse `json:"idle_check,omitempty"`
}

// machineInfo describes this machine; commit is the binary's.
func machineInfo(commit string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), Kernel: kernelRelease(), Commit: commit, Go: runtime.Version(), Date: time.Now().UTC()}
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(raw))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if raw, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Sscan(string(raw), &m.LoadAvg[0], &m.LoadAvg[1], &m.LoadAvg[2])
	}
	return m
}

// checkIdle measures what the machine does without the benchmark for d.
func checkIdle(d time.Duration, noiseLimit float64) (CPUUse, error) {
	a, err := takeCPU()
	if err != nil {
		return CPUUse{}, err
	}
	time.Sleep(d)
	b, err := takeCPU()
	if err != nil {
		return CPUUse{}, err
	}
	self := os.Getpid()
	return cpuBetween(a, b, func(pid int, _ procTimes, all map[int]procTimes) bool {
		return descendantOf(pid, self, all)
	}, noiseLimit), nil
}

// waitQuiet waits (at most max) until others leave the machine alone:
// a second in which they took less than noiseLimit of it.
func waitQuiet(ctx context.Context, noiseLimit float64, max time.Duration, p *Progress) error {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		u, err := checkIdle(time.Second, noiseLimit)
		if err != nil {
			return err
		}
		if !u.Noisy {
			return nil
		}
	}
	p.Logf("the machine stayed busy for %s: measuring anyway", max)
	return nil
}

func (m Machine) markdown(w io.Writer) {
	fmt.Fprintf(w, "- Machine: %s, %d CPUs, Linux %s, %s\n", m.CPUModel, m.CPUs, m.Kernel, m.Go)
	fmt.Fprintf(w, "- Commit: `%s`, %s\n", m.Commit, m.Date.Format(time.RFC3339))
	fmt.Fprintf(w, "- Load average at the start: %.2f %.2f %.2f", m.LoadAvg[0], m.LoadAvg[1], m.LoadAvg[2])
	if c := m.IdleCheck; c != nil {
		fmt.Fprintf(w, "; idle check (%.0f s, nothing running): other processes %.1f %% and steal %.1f %% of the machine, busy %.1f %%",
			c.Seconds, 100*c.Other/(c.Seconds*float64(c.CPUs)), 100*c.Steal/(c.Seconds*float64(c.CPUs)), 100*c.Busy/(c.Seconds*float64(c.CPUs)))
	}
	fmt.Fprintln(w)
}

// Figure is a measurement repeated: its median, min and max over runs.
type Figure struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Runs   []float64 `json:"runs"`
}

func figureOf(runs []float64) Figure {
	if len(runs) == 0 {
		return Figure{}
	}
	s := slices.Clone(runs)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Figure{Median: med, Min: s[0], Max: s[len(s)-1], Runs: runs}
}

// quantile of sorted durations (q in [0, 1]).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}
