package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// procCPU is the CPU time process pid has used: the sum of its threads'
// run times from /proc/<pid>/task/*/schedstat (nanoseconds; /proc/<pid>/stat
// counts 10 ms ticks, too coarse for a fraction of a millisecond per event).
// Threads that ended are not counted; Go keeps its threads.
func procCPU(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("cpu of pid %d: no tasks", pid)
	}
	var sum time.Duration
	for _, t := range tasks {
		raw, err := os.ReadFile(t)
		if err != nil {
			continue // a thread that just ended
		}
		f := strings.Fields(string(raw))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err == nil {
			sum += time.Duration(ns)
		}
	}
	return sum, nil
}

// procMemory is the peak (VmHWM) and current (VmRSS) resident set of pid,
// in MiB.
func procMemory(pid int) (peak, now float64, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmHWM" && name != "VmRSS") {
			continue
		}
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 64)
		if name == "VmHWM" {
			peak = kb / 1024
		} else {
			now = kb / 1024
		}
	}
	return peak, now, nil
}

// loadAverage is the one-minute load average.
func loadAverage() float64 {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(raw))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// cpuMeter measures the CPU processes and the machine use over an interval.
type cpuMeter struct {
	pids    []int
	start   []time.Duration
	machine cpuSnapshot
	began   time.Time
}

func startCPU(pids ...int) *cpuMeter {
	m := &cpuMeter{pids: pids, began: time.Now()}
	for _, p := range pids {
		c, _ := procCPU(p)
		m.start = append(m.start, c)
	}
	m.machine, _ = takeCPU()
	return m
}

// cpuUse is what a cpuMeter measured.
type cpuUse struct {
	// PerPID is each process's CPU time over the interval.
	PerPID []time.Duration
	// Total is their sum.
	Total time.Duration
	// MachineBusy is the fraction of all the machine's CPUs busy.
	MachineBusy float64
	// Load1 is the one-minute load average at the end.
	Load1   float64
	Elapsed time.Duration
}

func (m *cpuMeter) stop() cpuUse {
	u := cpuUse{Elapsed: time.Since(m.began), Load1: loadAverage()}
	for i, p := range m.pids {
		c, err := procCPU(p)
		if err != nil {
			c = m.start[i]
		}
		u.PerPID = append(u.PerPID, c-m.start[i])
		u.Total += c - m.start[i]
	}
	if end, err := takeCPU(); err == nil {
		c := cpuBetween(m.machine, end, func(int, procTimes, map[int]procTimes) bool { return true }, 1)
		if capacity := c.Seconds * float64(c.CPUs); capacity > 0 {
			u.MachineBusy = c.Busy / capacity
		}
	}
	return u
}
