package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"gonum.org/v1/plot/vg"
)

// QuickControlPlane shrinks o to a tiny load (what the caller did not set
// explicitly): it proves the suite runs, its figures mean nothing.
func QuickControlPlane(o ControlPlaneOptions, agentsSet, fanOutSet, portsSet, eventsSet bool) ControlPlaneOptions {
	if !agentsSet {
		o.Agents = 3
	}
	if !fanOutSet {
		o.FanOut = []int{8}
	}
	if !portsSet {
		o.ResyncPorts = []int{2000}
	}
	if !eventsSet {
		o.Events, o.ResyncEvents = 3, 5
	}
	o.DeltaChanges = 10
	return o
}

// cpTables are the report's two tables as cells.
func (r *ControlPlaneReport) cpTables() (fan, resync [][]string) {
	pair := func(a, b float64) string { return num(a) + " / " + num(b) }
	fan = [][]string{{"receivers", "agents", "listeners", "events", "agent p50 / p99 ms", "floor p50 / p99 ms", "agent − floor p99 ms",
		"missed", "agent CPU/event ms", "server CPU/delivery µs", "busy", "load", "agent RSS MiB", "server RSS MiB"}}
	for _, f := range r.FanOut {
		fan = append(fan, []string{fmt.Sprint(f.Receivers), fmt.Sprint(f.Agents), fmt.Sprintf("%d %s", f.Listeners, f.Mode),
			fmt.Sprint(f.Events), pair(f.Agent.P50, f.Agent.P99), pair(f.Floor.P50, f.Floor.P99), num(f.AgentOverFloorP99Ms),
			fmt.Sprint(f.Missed), num(f.AgentCPUPerEventMs), num(f.ServerCPUPerDeliveryUs), fmt.Sprintf("%.0f %%", 100*f.MachineBusy),
			num(f.Load1), num(f.AgentPeakRSSMiB), num(f.ServerPeakRSSMiB)})
	}
	resync = [][]string{{"ports", "full resync ms", "floor ms", "records", "full CPU ms", "event p50 / p99 ms", "floor p50 / p99 ms",
		"agent CPU/event ms", "peak RSS MiB", "restart ms", "records", "mode", "snapshot MB", "load"}}
	for _, f := range r.Resync {
		resync = append(resync, []string{fmt.Sprint(f.Ports), num(f.FullMs), num(f.FloorFullMs), fmt.Sprint(f.FullRecords), num(f.FullCPUMs),
			pair(f.Event.P50, f.Event.P99), pair(f.FloorEvent.P50, f.FloorEvent.P99), num(f.AgentCPUPerEventMs), num(f.PeakRSSMiB),
			num(f.DeltaMs), fmt.Sprint(f.DeltaRecords), f.DeltaMode, num(f.SnapshotMB), num(f.Load1)})
	}
	return fan, resync
}

// WriteTable prints the report for a terminal.
func (r *ControlPlaneReport) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "control plane: vxdp server, agents and listeners as processes (%d CPUs, %s)\n\n", r.CPUs, r.GoVersion)
	fan, resync := r.cpTables()
	for _, t := range [][][]string{fan, resync} {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		for _, line := range t {
			fmt.Fprintln(tw, strings.Join(line, "\t")+"\t")
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	return nil
}

// WriteMarkdown writes the report as a Markdown page showing charts.
func (r *ControlPlaneReport) WriteMarkdown(w io.Writer, charts []string) error {
	fmt.Fprintln(w, "# vxdp bench controlplane: fan-out, resync, memory and CPU per event")
	fmt.Fprintln(w)
	r.Machine.markdown(w)
	fmt.Fprintln(w, "\nEvery part is a process of its own: `vxdp server` (NATS and the broker), real agents (`vxdp bench agent`: "+
		"the agent's control plane and run loop, a dataplane that counts what it is given) and bare listeners (`vxdp bench listen`), "+
		"which receive what an agent would and do nothing: the transport floor, measured with the same events. CPU is read from "+
		"/proc, memory is the process's peak resident set (VmHWM).")
	fmt.Fprintln(w)
	fan, resync := r.cpTables()
	writeMarkdownTable(w, fan)
	fmt.Fprintln(w)
	writeMarkdownTable(w, resync)
	writeChartLinks(w, charts)
	return nil
}

// WriteCharts draws the fan-out latency of agents and floor (p50 bar, p99
// as the whisker's top) and the resync times and CPU per event by size.
func (r *ControlPlaneReport) WriteCharts(dir string) ([]string, error) {
	var panels []panel
	fan := panel{title: "port event to every receiver", unit: "ms (bar p50, whisker to p99)"}
	agents := series{name: "agents", color: modeColors[ModeBPF], showInLegend: true}
	floor := series{name: "floor", color: modeColors[ModePlain], showInLegend: true}
	for _, f := range r.FanOut {
		fan.cats = append(fan.cats, fmt.Sprintf("%d %s", f.Receivers, f.Mode))
		agents.med, agents.lo, agents.hi = append(agents.med, f.Agent.P50), append(agents.lo, f.Agent.P50), append(agents.hi, f.Agent.P99)
		floor.med, floor.lo, floor.hi = append(floor.med, f.Floor.P50), append(floor.lo, f.Floor.P50), append(floor.hi, f.Floor.P99)
	}
	if len(fan.cats) > 0 {
		fan.series = []series{agents, floor}
		panels = append(panels, fan)
	}
	rs := panel{title: "agent resync", unit: "ms"}
	full := series{name: "full", color: modeColors[ModeKernel], showInLegend: true}
	restart := series{name: "restart", color: modeColors[ModeBPF], showInLegend: true}
	cpu := panel{title: "agent CPU per port event", unit: "ms"}
	perEvent := series{name: "CPU", color: modeColors[ModeBPF]}
	for _, f := range r.Resync {
		cat := fmt.Sprintf("%d ports", f.Ports)
		rs.cats, cpu.cats = append(rs.cats, cat), append(cpu.cats, cat)
		full.med, full.lo, full.hi = append(full.med, f.FullMs), append(full.lo, f.FullMs), append(full.hi, f.FullMs)
		restart.med, restart.lo, restart.hi = append(restart.med, f.DeltaMs), append(restart.lo, f.DeltaMs), append(restart.hi, f.DeltaMs)
		perEvent.med, perEvent.lo, perEvent.hi = append(perEvent.med, f.AgentCPUPerEventMs), append(perEvent.lo, f.AgentCPUPerEventMs), append(perEvent.hi, f.AgentCPUPerEventMs)
	}
	if len(rs.cats) > 0 {
		rs.series, cpu.series = []series{full, restart}, []series{perEvent}
		panels = append(panels, rs, cpu)
	}
	if err := writePanels(dir+"/controlplane.png", panels, 3, 4.5*vg.Inch, 3.2*vg.Inch); err != nil {
		return nil, err
	}
	return []string{"controlplane.png"}, nil
}
