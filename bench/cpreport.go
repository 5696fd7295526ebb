package bench

import (
	"fmt"
	"io"

	"gonum.org/v1/plot/vg"
)

// QuickControlPlane shrinks o to a tiny load (what the caller did not set
// explicitly): it proves the suite runs, its figures mean nothing.
func QuickControlPlane(o ControlPlaneOptions, agentsSet, portsSet, eventsSet bool) ControlPlaneOptions {
	if !agentsSet {
		o.Agents = []int{4}
	}
	if !portsSet {
		o.ResyncPorts = []int{2000}
	}
	if !eventsSet {
		o.Events = 3
	}
	o.DeltaChanges = 10
	return o
}

// cpTables are the report's two tables as cells.
func (r *ControlPlaneReport) cpTables() (conv, resync [][]string) {
	conv = [][]string{{"agents", "event", "events", "p50 ms", "p99 ms", "last agent p50 ms", "last agent max ms"}}
	for _, f := range r.Convergence {
		conv = append(conv, []string{fmt.Sprint(f.Agents), f.Kind, fmt.Sprint(f.Events), num(f.P50Ms), num(f.P99Ms), num(f.LastP50Ms), num(f.LastMaxMs)})
	}
	resync = [][]string{{"ports", "full resync ms", "records", "delta resync ms", "records", "agent heap MB", "snapshot MB"}}
	for _, f := range r.Resync {
		resync = append(resync, []string{fmt.Sprint(f.Ports), num(f.FullMs), fmt.Sprint(f.FullRecords), num(f.DeltaMs),
			fmt.Sprint(f.DeltaRecords), num(f.HeapMB), num(f.SnapshotMB)})
	}
	return conv, resync
}

// WriteMarkdown writes the report as a Markdown page showing charts.
func (r *ControlPlaneReport) WriteMarkdown(w io.Writer, charts []string) error {
	fmt.Fprintln(w, "# vxdp bench controlplane: convergence and resync")
	fmt.Fprintln(w)
	r.Machine.markdown(w)
	fmt.Fprintln(w, "\nOne embedded NATS server; simulated agents run the real agent code, each with its own connection, in "+
		"front of a dataplane that applies instantly. Convergence: from the controller's write until each agent applied "+
		"it. Resync: an agent starting with nothing (full) or from its snapshot after changes (delta).")
	fmt.Fprintln(w)
	conv, resync := r.cpTables()
	writeMarkdownTable(w, conv)
	fmt.Fprintln(w)
	writeMarkdownTable(w, resync)
	writeChartLinks(w, charts)
	return nil
}

// WriteCharts draws convergence (p50 bar, p99 as the whisker's top) by
// fleet size and resync time by network size.
func (r *ControlPlaneReport) WriteCharts(dir string) ([]string, error) {
	var panels []panel
	for _, kind := range []string{"port-up", "migration"} {
		pn := panel{title: "convergence: " + kind, unit: "ms (bar p50, whisker to p99)"}
		s := series{name: kind, color: modeColors[ModeBPF]}
		for _, f := range r.Convergence {
			if f.Kind == kind {
				pn.cats = append(pn.cats, fmt.Sprintf("%d agents", f.Agents))
				s.med, s.lo, s.hi = append(s.med, f.P50Ms), append(s.lo, f.P50Ms), append(s.hi, f.P99Ms)
			}
		}
		if len(pn.cats) > 0 {
			pn.series = []series{s}
			panels = append(panels, pn)
		}
	}
	rs := panel{title: "agent resync", unit: "ms"}
	full := series{name: "full", color: modeColors[ModeKernel], showInLegend: true}
	delta := series{name: "delta", color: modeColors[ModeBPF], showInLegend: true}
	for _, f := range r.Resync {
		rs.cats = append(rs.cats, fmt.Sprintf("%d ports", f.Ports))
		full.med, full.lo, full.hi = append(full.med, f.FullMs), append(full.lo, f.FullMs), append(full.hi, f.FullMs)
		delta.med, delta.lo, delta.hi = append(delta.med, f.DeltaMs), append(delta.lo, f.DeltaMs), append(delta.hi, f.DeltaMs)
	}
	if len(rs.cats) > 0 {
		rs.series = []series{full, delta}
		panels = append(panels, rs)
	}
	if err := writePanels(dir+"/controlplane.png", panels, 3, 4.5*vg.Inch, 3.2*vg.Inch); err != nil {
		return nil, err
	}
	return []string{"controlplane.png"}, nil
}
