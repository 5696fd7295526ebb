package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"gonum.org/v1/plot/vg"
)

// The cost targets for the programs, in ns above the empty
// program of the hook (the loop figure where there is one).
var bpfTargets = map[string]float64{
	"port/encap":   100,
	"uplink/decap": 60,
	"port/local":   40,
}

// best is the figure closest to a packet's real cost: the loop's (warm,
// no per-call set-up) where there is one.
func (c BPFCase) best() (BPFFigure, string) {
	if c.Loop != nil {
		return *c.Loop, "loop"
	}
	return c.Single, "single"
}

// Target is one of the goals and what this run measured.
type Target struct {
	Goal     string  `json:"goal"`
	Measured float64 `json:"measured"`
	Limit    float64 `json:"limit"`
	Met      bool    `json:"met"`
}

// Targets holds the run against the per-program and
// security-group goals.
func (r *BPFReport) Targets() []Target {
	var out []Target
	byID := map[string]BPFCase{}
	for _, c := range r.Cases {
		byID[c.ID] = c
	}
	for _, id := range []string{"port/encap", "uplink/decap", "port/local"} {
		c, ok := byID[id]
		if !ok {
			continue
		}
		f, how := c.best()
		out = append(out, Target{Goal: fmt.Sprintf("%s: ns above the empty program (%s)", c.Name, how),
			Measured: f.AboveEmpty, Limit: bpfTargets[id], Met: f.AboveEmpty <= bpfTargets[id]})
	}
	// Security groups: established at most 30 ns above the same path
	// without groups; a new flow at the largest size at most 1.2x the
	// smallest.
	for _, base := range []string{"port/local", "uplink/decap", "deliver/nosg"} {
		b, ok := byID[base]
		if !ok {
			continue
		}
		prog, _, _ := strings.Cut(base, "/")
		var smallest, largest *BPFCase
		for i := range r.Cases {
			c := &r.Cases[i]
			if c.Rules == 0 || c.Program != prog {
				continue
			}
			if c.Flow == "established" {
				with, without := c.Single, b.Single
				if c.Loop != nil && b.Loop != nil {
					with, without = *c.Loop, *b.Loop
				}
				d := with.NsPerPacket - without.NsPerPacket
				out = append(out, Target{Goal: c.Name + ": ns above no groups", Measured: d, Limit: 30, Met: d <= 30})
				continue
			}
			if smallest == nil || c.Rules < smallest.Rules {
				smallest = c
			}
			if largest == nil || c.Rules > largest.Rules {
				largest = c
			}
		}
		if smallest != nil && largest != nil && largest.Rules > smallest.Rules {
			ratio := largest.Single.NsPerPacket / smallest.Single.NsPerPacket
			out = append(out, Target{Goal: fmt.Sprintf("%s new flow: %d rules / %d rules", prog, largest.Rules, smallest.Rules),
				Measured: ratio, Limit: 1.2, Met: ratio <= 1.2})
		}
	}
	return out
}

// table is the cases as cells with a header.
func (r *BPFReport) table() [][]string {
	out := [][]string{{"hook", "case", "reason", "loop ns/pkt", "empty", "above", "single ns/pkt", "empty", "above"}}
	for _, c := range r.Cases {
		loop := []string{"-", "-", "-"}
		if c.Loop != nil {
			loop = c.Loop.cells()
		}
		out = append(out, append(append([]string{c.Hook, c.Name, c.Reason}, loop...), c.Single.cells()...))
	}
	return out
}

func (f BPFFigure) cells() []string {
	ns := fmt.Sprintf("%.0f", f.NsPerPacket)
	if f.Passes > 1 {
		ns += fmt.Sprintf(" (%.0f–%.0f)", f.MinNs, f.MaxNs)
	}
	return []string{ns, fmt.Sprintf("%.0f", f.EmptyNsPerPacket), fmt.Sprintf("%+.0f", f.AboveEmpty)}
}

func (r *BPFReport) noiseLine() string {
	share := 0.0
	for _, p := range r.Passes {
		share = max(share, p.OtherShare)
	}
	return fmt.Sprintf("noisy passes: %d of %d (others and steal above the noise limit; largest share %.1f %%)", r.NoisyPasses, len(r.Passes), 100*share)
}

// WriteTable writes the report as an aligned table.
func (r *BPFReport) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "BPF per-packet cost by BPF_PROG_TEST_RUN (kernel %s, %d CPUs), against an empty program of the same hook\n", r.Machine.Kernel, r.Machine.CPUs)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, line := range r.table() {
		fmt.Fprintln(tw, strings.Join(line, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "loop: repeated runs on one packet in one call (- : the program rewrites the packet, or a new flow); single: one call per run;")
	fmt.Fprintf(w, "medians (min–max) of %d passes, the cases in turn; %s\n", len(r.Passes), r.noiseLine())
	for _, t := range r.Targets() {
		fmt.Fprintf(w, "target %s: %.1f (limit %.1f) %s\n", t.Goal, t.Measured, t.Limit, map[bool]string{true: "met", false: "MISSED"}[t.Met])
	}
	for _, n := range r.NotMeasured {
		fmt.Fprintf(w, "not measured: %s\n", n)
	}
	return nil
}

// WriteMarkdown writes the report as a Markdown page showing charts.
func (r *BPFReport) WriteMarkdown(w io.Writer, charts []string) error {
	fmt.Fprintln(w, "# vxdp bench bpf: per-packet cost of the programs")
	fmt.Fprintln(w)
	r.Machine.markdown(w)
	fmt.Fprintf(w, "- %d runs per loop figure, up to %d calls per single figure; every case measured in %d passes, the cases in turn: medians (min–max)\n",
		r.Repeat, maxSingleRuns, len(r.Passes))
	fmt.Fprintf(w, "- %s\n\n", strings.ToUpper(r.noiseLine()[:1])+r.noiseLine()[1:])
	fmt.Fprintln(w, "Each case is measured with BPF_PROG_TEST_RUN next to an empty program of its hook (returning TC_ACT_OK or "+
		"XDP_PASS), the same way and in the same run; *above* is the difference. **Loop**: the kernel runs the program "+
		"on the same packet `repeat` times in one call and times the loop (warm caches); not possible for a program "+
		"that rewrites the packet or for a new flow. **Single**: one call per run, the kernel timing each; every call "+
		"sets up an skb or xdp_buff, which the empty program pays too. Every figure is checked to have counted its "+
		"reason (and security-group event) on every run.")
	fmt.Fprintln(w)
	writeMarkdownTable(w, r.table())
	fmt.Fprintln(w, "\n| target | measured | limit | |\n|---|---|---|---|")
	for _, t := range r.Targets() {
		fmt.Fprintf(w, "| %s | %.1f | %.1f | %s |\n", t.Goal, t.Measured, t.Limit, map[bool]string{true: "met", false: "**missed**"}[t.Met])
	}
	fmt.Fprintln(w)
	for _, n := range r.NotMeasured {
		fmt.Fprintf(w, "- Not measured: %s\n", n)
	}
	writeChartLinks(w, charts)
	return nil
}

// WriteCharts draws ns per packet of every case next to the empty
// program, loop and single figures apart.
func (r *BPFReport) WriteCharts(dir string) ([]string, error) {
	var panels []panel
	for _, kind := range []string{"loop", "single"} {
		pn := panel{title: kind + ": ns per packet", unit: "ns", horizontal: true}
		prog := series{name: "program", color: modeColors["program"], showInLegend: true}
		empty := series{name: "empty program", color: modeColors["empty"], showInLegend: true}
		// Bottom to top: the first case on top.
		for i := len(r.Cases) - 1; i >= 0; i-- {
			c := r.Cases[i]
			f := c.Single
			if kind == "loop" {
				if c.Loop == nil {
					continue
				}
				f = *c.Loop
			}
			pn.cats = append(pn.cats, c.Name)
			prog.med, prog.lo, prog.hi = append(prog.med, f.NsPerPacket), append(prog.lo, f.MinNs), append(prog.hi, f.MaxNs)
			empty.med, empty.lo, empty.hi = append(empty.med, f.EmptyNsPerPacket), append(empty.lo, f.EmptyNsPerPacket), append(empty.hi, f.EmptyNsPerPacket)
		}
		pn.series = []series{prog, empty}
		if len(pn.cats) > 0 {
			panels = append(panels, pn)
		}
	}
	rows := 0
	for _, p := range panels {
		rows = max(rows, len(p.cats))
	}
	if err := writePanels(dir+"/bpf.png", panels, 2, 7*vg.Inch, vg.Length(rows)*0.28*vg.Inch+1.2*vg.Inch); err != nil {
		return nil, err
	}
	return []string{"bpf.png"}, nil
}
