package bench

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/vxdp/vxdp/lab"
)

// With --bpf-stats the kernel counts the runs and run time of every BPF
// program (BPF_ENABLE_STATS), and the bpf mode's samples say what each of
// vxdp's programs on the path cost per run and how often it ran per
// delivered packet: a profile of the live path, program by program. The
// counting itself costs two clock reads per run, so those figures, and
// that run's throughput, are a profile, not the reference.

// ProgramStat is one program on one node during a sample.
type ProgramStat struct {
	Node    string  `json:"node"`
	Program string  `json:"program"`
	Runs    uint64  `json:"runs"`
	NsRun   float64 `json:"ns_per_run"`
	// PerUnit is runs per delivered packet (UDP, TCP: packets into the
	// receiving VM) or per transaction.
	PerUnit float64 `json:"runs_per_unit"`
}

// progCounters are a lab's attached programs' cumulative counters, by
// node and program name.
type progCounters map[[2]string]ebpf.ProgramStats

// readProgCounters reads the counters of every program attached to a
// device of the sending and receiving nodes.
func readProgCounters(l *lab.Lab) (progCounters, error) {
	out := progCounters{}
	for _, node := range []string{lab.VM2.Node, lab.VM1.Node} {
		links, err := lab.Links(l.NS(node))
		if err != nil {
			return nil, err
		}
		seen := map[ebpf.ProgramID]bool{}
		for _, dev := range links {
			atts, err := lab.BPFAttachments(l.NS(node), dev)
			if err != nil {
				return nil, err
			}
			for _, a := range atts {
				f := strings.Fields(a)
				id, err := strconv.ParseUint(f[len(f)-1], 10, 32)
				if err != nil || seen[ebpf.ProgramID(id)] {
					continue
				}
				seen[ebpf.ProgramID(id)] = true
				if err := addProgCounters(out, node, ebpf.ProgramID(id)); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

func addProgCounters(out progCounters, node string, id ebpf.ProgramID) error {
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return fmt.Errorf("program %d: %w", id, err)
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		return err
	}
	st, err := p.Stats()
	if err != nil {
		return err
	}
	k := [2]string{node, strings.TrimPrefix(info.Name, "vxdp_")}
	sum := out[k]
	sum.RunCount += st.RunCount
	sum.Runtime += st.Runtime
	out[k] = sum
	return nil
}

// programStats is what each program did between a and b, per unit.
func programStats(a, b progCounters, units float64) []ProgramStat {
	var out []ProgramStat
	for k, sb := range b {
		sa := a[k]
		runs := sb.RunCount - sa.RunCount
		if runs == 0 {
			continue
		}
		out = append(out, ProgramStat{Node: k[0], Program: k[1], Runs: runs,
			NsRun: float64(sb.Runtime-sa.Runtime) / float64(runs), PerUnit: float64(runs) / units})
	}
	slices.SortFunc(out, func(x, y ProgramStat) int { return strings.Compare(x.Node+x.Program, y.Node+y.Program) })
	return out
}

// writeProgramTable writes the medians of the samples' program figures,
// by metric, node and program.
func (r *PathReport) writeProgramTable(w io.Writer) {
	type key struct{ group, metric, node, prog string }
	var order []key
	ns, per := map[key][]float64{}, map[key][]float64{}
	for _, s := range r.Samples {
		for _, p := range s.Programs {
			k := key{s.Group, s.Metric, p.Node, p.Program}
			if _, ok := ns[k]; !ok {
				order = append(order, k)
			}
			ns[k], per[k] = append(ns[k], p.NsRun), append(per[k], p.PerUnit)
		}
	}
	if len(order) == 0 {
		return
	}
	fmt.Fprintln(w, "\nvxdp's programs on the path, bpf mode (--bpf-stats: the kernel's run counters; counting adds two clock reads per run):")
	fmt.Fprintln(w)
	t := [][]string{{"group", "metric", "node", "program", "ns per run", "runs per unit"}}
	for _, k := range order {
		t = append(t, []string{k.group, k.metric, k.node, k.prog, num(figureOf(ns[k]).Median), num(figureOf(per[k]).Median)})
	}
	writeMarkdownTable(w, t)
}
