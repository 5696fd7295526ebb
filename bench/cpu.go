package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// CPU time of a measurement, from the kernel's own accounting: per-CPU
// busy time from /proc/stat, and every process's time from
// /proc/PID/stat, so the share other work took during the measurement is
// known and reported instead of silently counted as the path's.

// clockTicks is USER_HZ, the unit of /proc/stat and /proc/PID/stat
// (100 on every Linux architecture vxdp runs on).
const clockTicks = 100

// cpuTimes is one CPU's line of /proc/stat, in ticks.
type cpuTimes struct {
	busy  uint64 // user + nice + system + irq + softirq
	idle  uint64 // idle + iowait
	steal uint64 // taken by the hypervisor this machine runs on
}

// procTimes is one process of /proc/PID/stat.
type procTimes struct {
	ppid    int
	kthread bool   // a kernel thread (child of kthreadd)
	self    uint64 // utime + stime, all threads
	reaped  uint64 // cutime + cstime: children it has waited for
}

// cpuSnapshot is the machine's CPU accounting at one instant.
type cpuSnapshot struct {
	at    time.Time
	cpus  []cpuTimes
	procs map[int]procTimes
}

// takeCPU reads /proc/stat and every /proc/PID/stat.
func takeCPU() (cpuSnapshot, error) {
	s := cpuSnapshot{at: time.Now(), procs: map[int]procTimes{}}
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, err
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 9 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		var v [8]uint64
		for i := range v {
			v[i], _ = strconv.ParseUint(f[i+1], 10, 64)
		}
		// user nice system idle iowait irq softirq steal
		s.cpus = append(s.cpus, cpuTimes{busy: v[0] + v[1] + v[2] + v[5] + v[6], idle: v[3] + v[4], steal: v[7]})
	}
	if len(s.cpus) == 0 {
		return s, fmt.Errorf("/proc/stat: no per-CPU lines")
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return s, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProcTimes(pid); ok {
			s.procs[pid] = p
		}
	}
	return s, nil
}

// readProcTimes parses /proc/PID/stat; ok false if the process is gone.
func readProcTimes(pid int) (procTimes, bool) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procTimes{}, false
	}
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return procTimes{}, false
	}
	f := strings.Fields(string(raw[i+1:]))
	// After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
	if len(f) < 15 {
		return procTimes{}, false
	}
	n := func(field int) uint64 { v, _ := strconv.ParseUint(f[field-3], 10, 64); return v }
	ppid, _ := strconv.Atoi(f[1])
	return procTimes{ppid: ppid, kthread: ppid == 2 || pid == 2, self: n(14) + n(15), reaped: n(16) + n(17)}, true
}

// CPUUse is the CPU time of one measurement window on all CPUs.
type CPUUse struct {
	Seconds float64 `json:"seconds"` // wall time of the window
	CPUs    int     `json:"cpus"`
	// Busy is the time the CPUs were busy (user, system, irq, softirq).
	Busy float64 `json:"busy_cpu_seconds"`
	// Other is the time processes outside the benchmark ran (their own
	// and their reaped children's); Kernel, kernel threads (softirq
	// work deferred to ksoftirqd, workqueues: counted as the path's).
	Other  float64 `json:"other_cpu_seconds"`
	Kernel float64 `json:"kernel_thread_cpu_seconds"`
	// Steal is time the hypervisor under this machine gave to others.
	Steal float64 `json:"steal_cpu_seconds"`
	// Path is Busy - Other: what the measured path cost.
	Path float64 `json:"path_cpu_seconds"`
	// OtherShare is (Other + Steal) / (Seconds * CPUs): the machine's
	// capacity that went elsewhere. A window above the noise limit is
	// noisy: its figures are reported but flagged.
	OtherShare float64 `json:"other_share"`
	Noisy      bool    `json:"noisy"`
}

// cpuBetween accounts the window a..b. ours tells the benchmark's
// processes (the harness, the measured lab's agents, servers and
// clients) from others.
func cpuBetween(a, b cpuSnapshot, ours func(pid int, p procTimes, all map[int]procTimes) bool, noiseLimit float64) CPUUse {
	u := CPUUse{Seconds: b.at.Sub(a.at).Seconds(), CPUs: len(b.cpus)}
	var busy, steal uint64
	for i := range min(len(a.cpus), len(b.cpus)) {
		busy += b.cpus[i].busy - a.cpus[i].busy
		steal += b.cpus[i].steal - a.cpus[i].steal
	}
	var other, kernel uint64
	for pid, pb := range b.procs {
		pa := a.procs[pid] // zero for a process started in the window
		d := pb.self + pb.reaped - min(pb.self+pb.reaped, pa.self+pa.reaped)
		switch {
		case d == 0:
		case pb.kthread:
			kernel += d
		case !ours(pid, pb, b.procs):
			other += d
		}
	}
	u.Busy = float64(busy) / clockTicks
	u.Steal = float64(steal) / clockTicks
	u.Other = min(float64(other)/clockTicks, u.Busy)
	u.Kernel = float64(kernel) / clockTicks
	u.Path = u.Busy - u.Other
	if capacity := u.Seconds * float64(u.CPUs); capacity > 0 {
		u.OtherShare = (u.Other + u.Steal) / capacity
	}
	u.Noisy = u.OtherShare > noiseLimit
	return u
}

// descendantOf reports whether pid is root or runs under it.
func descendantOf(pid, root int, all map[int]procTimes) bool {
	for range 64 { // a bound: pid 1 ends every chain long before
		if pid == root {
			return true
		}
		p, ok := all[pid]
		if !ok || pid <= 1 {
			return false
		}
		pid = p.ppid
	}
	return false
}
