package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// PathReport is a path suite's result: the machine, the settings, what
// each mode is, a row of figures per metric (median, min, max over runs
// for each mode, and bpf's ratio to the others), the latency
// distributions and every sample.
type PathReport struct {
	Suite    string       `json:"suite"`
	Machine  Machine      `json:"machine"`
	Settings PathSettings `json:"settings"`
	Modes    []ModeInfo   `json:"modes"`
	Rows     []Row        `json:"rows"`
	// Latency is each mode's request/response time distribution over
	// all runs: Quantiles[i] is the i-th percentile in µs.
	Latency []Distribution `json:"latency,omitempty"`
	Samples []Sample       `json:"samples"`
	// NoisySamples were taken while others used more than NoiseLimit of
	// the machine; MaxOtherShare is the largest share seen.
	NoisySamples  int     `json:"noisy_samples"`
	MaxOtherShare float64 `json:"max_other_share"`
}

// PathSettings are how a suite was run.
type PathSettings struct {
	Runs          int     `json:"runs"`
	WindowSeconds float64 `json:"window_seconds"`
	OmitSeconds   int     `json:"tcp_omit_seconds"`
	NoiseLimit    float64 `json:"noise_limit"`
	Retries       int     `json:"noisy_retries"`
	SGRules       []int   `json:"sg_rules,omitempty"`
	Quick         bool    `json:"quick"`
	BPFStats      bool    `json:"bpf_stats"`
	Method        string  `json:"method"`
}

// ModeInfo says what a mode is and which security groups it enforces.
type ModeInfo struct {
	Name           string `json:"name"`
	What           string `json:"what"`
	SecurityGroups string `json:"security_groups"`
}

// Row is one figure for every mode.
type Row struct {
	Group   string             `json:"group,omitempty"`
	Metric  string             `json:"metric"`
	Field   string             `json:"field"`
	Label   string             `json:"label"`
	Unit    string             `json:"unit"`
	Better  string             `json:"better"` // "higher" or "lower"
	Figures map[string]Figure  `json:"figures"`
	Ratios  map[string]float64 `json:"ratios,omitempty"` // "bpf/kernel": of the medians
}

// Distribution is a latency distribution in percentiles (µs).
type Distribution struct {
	Group     string    `json:"group,omitempty"`
	Metric    string    `json:"metric"`
	Mode      string    `json:"mode"`
	Quantiles []float64 `json:"percentiles_us"`
}

const pathMethod = "Each mode is a lab of its own, all up at once; every metric runs once per mode per round, the modes " +
	"alternating (the order reversed every other round). TCP: iperf3 vm2 -> vm1 (its first seconds omitted). UDP: 64-byte " +
	"frames (60 B + FCS, 18 B payload) made by an XDP program returning XDP_TX, run by BPF_PROG_RUN with " +
	"BPF_F_TEST_XDP_LIVE_FRAMES on vm2's NIC; vm1's kernel counts what reaches its UDP layer (InDatagrams + RcvbufErrors " +
	"of a socket nobody reads). Request/response: 1 byte each way, blocking sockets on threads of their own. CPU: busy time " +
	"of all CPUs from /proc/stat over the counted window, less the time of processes outside the benchmark (/proc/PID/stat), " +
	"per unit delivered (bytes and packets into vm1 from its host device's TX counters); kernel threads count as the path's. " +
	"A run is noisy when other processes and steal took more than the noise limit of the machine. Every NIC as on a " +
	"hypervisor: GRO on the nodes' NICs and the VMs' host sides, checksums completed on the wire."

func newPathReport(o PathOptions) *PathReport {
	r := &PathReport{Suite: o.Suite, Machine: machineInfo(o.Commit), Settings: PathSettings{
		Runs: o.Runs, WindowSeconds: o.Window.Seconds(), OmitSeconds: o.Omit, NoiseLimit: o.NoiseLimit, Quick: o.Quick, Method: pathMethod,
		BPFStats: o.BPFStats, Retries: o.Retries,
	}}
	if o.Suite == SuiteSG {
		r.Settings.SGRules = o.SGRules
	}
	for _, m := range o.Modes {
		r.Modes = append(r.Modes, ModeInfo{Name: m, What: pathModes[m].what, SecurityGroups: pathModes[m].groupsIn(o.Suite)})
	}
	return r
}

// rowSpec is a field of a metric as a row.
type rowSpec struct {
	field, suffix, unit string
	higher              bool
}

func metricRows(m pathMetric) []rowSpec {
	rx := "vm1"
	if m.reverse {
		rx = "vm2"
	}
	switch {
	case m.streams > 0:
		return []rowSpec{{FieldValue, "", "Gbit/s", true}, {FieldCPU, ": CPU per GB", "CPU s/GB", false},
			{FieldBPP, ": bytes per packet into " + rx, "B/packet", true}}
	case m.udp:
		return []rowSpec{{FieldValue, " delivered", "k packets/s", true}, {FieldCPU, ": CPU per packet", "CPU ns/packet", false}}
	}
	return []rowSpec{{FieldValue, "", "transactions/s", true}, {FieldP50, ": p50 latency", "µs", false},
		{FieldP99, ": p99 latency", "µs", false}, {FieldCPU, ": CPU per transaction", "CPU µs", false}}
}

// ratioBases are the modes bpf is compared with, in the table's order.
var ratioBases = []string{ModeKernel, ModeFlat, ModePlain, ModeKernelFiltered}

// summarize turns the samples into rows and distributions.
func (r *PathReport) summarize(metrics []pathMetric, groups []int) {
	for _, s := range r.Samples {
		r.MaxOtherShare = max(r.MaxOtherShare, s.CPU.OtherShare)
		if s.CPU.Noisy {
			r.NoisySamples++
		}
	}
	for _, n := range groups {
		group := ""
		if n > 0 {
			group = fmt.Sprintf("N=%d", n)
		}
		for _, m := range metrics {
			for _, spec := range metricRows(m) {
				row := Row{Group: group, Metric: m.id, Field: spec.field, Label: m.label + spec.suffix, Unit: spec.unit,
					Better: map[bool]string{true: "higher", false: "lower"}[spec.higher], Figures: map[string]Figure{}, Ratios: map[string]float64{}}
				for _, mode := range r.Modes {
					var runs []float64
					for _, s := range r.Samples {
						if s.Group == group && s.Metric == m.id && s.Mode == mode.Name {
							runs = append(runs, s.Values[spec.field])
						}
					}
					row.Figures[mode.Name] = figureOf(runs)
				}
				if bpf, ok := row.Figures[ModeBPF]; ok {
					for _, base := range ratioBases {
						if f, ok := row.Figures[base]; ok && f.Median != 0 {
							row.Ratios[ModeBPF+"/"+base] = bpf.Median / f.Median
						}
					}
				}
				r.Rows = append(r.Rows, row)
			}
			if !m.rr && !m.crr {
				continue
			}
			for _, mode := range r.Modes {
				var all []float64
				for _, s := range r.Samples {
					if s.Group == group && s.Metric == m.id && s.Mode == mode.Name {
						all = append(all, s.Latencies...)
					}
				}
				if len(all) == 0 {
					continue
				}
				slices.Sort(all)
				d := Distribution{Group: group, Metric: m.id, Mode: mode.Name}
				for q := 0; q <= 100; q++ {
					d.Quantiles = append(d.Quantiles, all[min(len(all)-1, q*len(all)/100)])
				}
				r.Latency = append(r.Latency, d)
			}
		}
	}
}

// ratioColumns are the ratios present in the rows, in the table's order.
func (r *PathReport) ratioColumns() []string {
	var out []string
	for _, base := range ratioBases {
		key := ModeBPF + "/" + base
		for _, row := range r.Rows {
			if _, ok := row.Ratios[key]; ok {
				out = append(out, key)
				break
			}
		}
	}
	return out
}

var suiteTitles = map[string]string{
	SuitePath:  "vm2 -> vm1 across the lab, every mode",
	SuiteGuest: "vm2 -> vm1 with vm1 a real guest (qemu, virtio-net)",
	SuiteSG:    "vm1's port in a security group of N rules: Neutron's iptables firewall against vxdp's BPF groups",
}

// cell is a figure as "median (min–max)".
func (f Figure) cell() string {
	if len(f.Runs) == 0 {
		return "-"
	}
	return fmt.Sprintf("%s (%s–%s)", num(f.Median), num(f.Min), num(f.Max))
}

// num prints a figure with three significant digits, at least.
func num(v float64) string {
	switch a := max(v, -v); {
	case a == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

// table is the rows as cells, with a header: shared by the text and
// Markdown forms.
func (r *PathReport) table() [][]string {
	head := []string{"metric", "unit"}
	if r.Suite == SuiteSG {
		head = append([]string{"rules"}, head...)
	}
	for _, m := range r.Modes {
		head = append(head, m.Name)
	}
	ratios := r.ratioColumns()
	head = append(head, ratios...)
	out := [][]string{head}
	for _, row := range r.Rows {
		line := []string{row.Label, row.Unit}
		if r.Suite == SuiteSG {
			line = append([]string{strings.TrimPrefix(row.Group, "N=")}, line...)
		}
		for _, m := range r.Modes {
			line = append(line, row.Figures[m.Name].cell())
		}
		for _, k := range ratios {
			if v, ok := row.Ratios[k]; ok {
				line = append(line, fmt.Sprintf("%.2f", v))
			} else {
				line = append(line, "-")
			}
		}
		out = append(out, line)
	}
	return out
}

// WriteTable prints the report for a terminal.
func (r *PathReport) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "%s (median (min–max) of %d runs, %s windows; kernel %s, %d CPUs)\n", suiteTitles[r.Suite], r.Settings.Runs,
		time.Duration(r.Settings.WindowSeconds*float64(time.Second)), r.Machine.Kernel, r.Machine.CPUs)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, line := range r.table() {
		fmt.Fprintln(tw, strings.Join(line, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, m := range r.Modes {
		fmt.Fprintf(w, "%s: security groups %s\n", m.Name, m.SecurityGroups)
	}
	_, err := fmt.Fprintln(w, r.noiseLine())
	return err
}

func (r *PathReport) noiseLine() string {
	retried, failed := 0, 0
	for _, s := range r.Samples {
		if s.Tries > 1 {
			retried++
		}
		failed += s.Failed
	}
	line := fmt.Sprintf("noisy runs: %d of %d (others and steal above %.0f %% of the machine; largest share %.1f %%; %d runs measured again, up to %d times)",
		r.NoisySamples, len(r.Samples), 100*r.Settings.NoiseLimit, 100*r.MaxOtherShare, retried, r.Settings.Retries)
	if failed > 0 {
		line += fmt.Sprintf("; %d transactions failed (refused or reset) and are not counted", failed)
	}
	return line
}

// WriteMarkdown writes the report as a Markdown page showing charts.
func (r *PathReport) WriteMarkdown(w io.Writer, charts []string) error {
	fmt.Fprintf(w, "# vxdp bench %s: %s\n\n", r.Suite, suiteTitles[r.Suite])
	r.Machine.markdown(w)
	fmt.Fprintf(w, "- Settings: %d runs per mode and metric, %s windows", r.Settings.Runs, time.Duration(r.Settings.WindowSeconds*float64(time.Second)))
	if r.Settings.OmitSeconds > 0 {
		fmt.Fprintf(w, " (TCP: after %d s omitted)", r.Settings.OmitSeconds)
	}
	if r.Settings.Quick {
		fmt.Fprint(w, ", --quick (a tiny load: proves the suite runs, not a measurement)")
	}
	if r.Settings.BPFStats {
		fmt.Fprint(w, ", --bpf-stats (the kernel timed every BPF program run: a profile, the bpf mode pays for it)")
	}
	fmt.Fprintf(w, "\n- %s\n\n", strings.ToUpper(r.noiseLine()[:1])+r.noiseLine()[1:])
	fmt.Fprintln(w, "| mode | what | security groups |\n|---|---|---|")
	for _, m := range r.Modes {
		fmt.Fprintf(w, "| `%s` | %s | %s |\n", m.Name, m.What, m.SecurityGroups)
	}
	fmt.Fprintln(w, "\nMedian (min–max) over the runs; ratios are of the medians.")
	fmt.Fprintln(w)
	writeMarkdownTable(w, r.table())
	r.writeProgramTable(w)
	fmt.Fprintf(w, "\nHow: %s\n", r.Settings.Method)
	writeChartLinks(w, charts)
	return nil
}

// writeChartLinks shows each chart on a Markdown page.
func writeChartLinks(w io.Writer, charts []string) {
	for _, c := range charts {
		fmt.Fprintf(w, "\n![%s](%s)\n", strings.TrimSuffix(c, ".png"), c)
	}
}

func writeMarkdownTable(w io.Writer, t [][]string) {
	for i, line := range t {
		fmt.Fprintf(w, "| %s |\n", strings.Join(line, " | "))
		if i == 0 {
			fmt.Fprintf(w, "|%s\n", strings.Repeat("---|", len(line)))
		}
	}
}
