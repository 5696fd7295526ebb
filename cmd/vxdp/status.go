package main

// `vxdp status`: is this host forwarding what its agent applied? Programs
// (hook, attach mode, program id, pin), the agent and its control-plane
// connection, map fill and drift, through the output layer; exit 1 on a
// problem, so monitoring and systemd's ExecStartPost can use it.

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/control/config"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/maps"
)

// The agent's /readyz asks the dataplane what `vxdp status` reports.
var _ attachmentChecker = (*dataplane.Dataplane)(nil)

// agentConfigFlag gives the commands that inspect an agent its ini files.
var agentConfigFlag = &cli.StringSliceFlag{Name: "config",
	Usage: "the agent's ini `FILE`s, to find its instance (host), bpffs, state dir and metrics listener"}

// agentLocation is where an agent instance keeps what it installed.
type agentLocation struct {
	instance, bpffs, stateDir string
	metrics                   string // its metrics listener, "" when unknown
}

// locateAgent reads --config (the agent's own files) and the flags, which
// win, as the agent itself does.
func locateAgent(c *cli.Context) (agentLocation, error) {
	loc := agentLocation{instance: instanceName(c), bpffs: c.String(bpffsFlag.Name), stateDir: stateDir(c)}
	loc.metrics = c.String("metrics-addr") // status only
	files := c.StringSlice(agentConfigFlag.Name)
	if len(files) == 0 {
		return loc, nil
	}
	cfg, err := config.Load(files...)
	if err != nil {
		return loc, err
	}
	if !c.IsSet(instanceFlag.Name) {
		loc.instance = cfg.Host
	}
	if !c.IsSet(bpffsFlag.Name) {
		loc.bpffs = cfg.Dataplane.BPFFS
	}
	if !c.IsSet(stateDirFlag.Name) {
		loc.stateDir = filepath.Join(cfg.StateDir, loc.instance)
	}
	if loc.metrics == "" {
		loc.metrics = cfg.MetricsListen
	}
	return loc, nil
}

// inspectAgent prepares a command that reads what an agent installed:
// the output flags (checked before anything else), the agent's network
// namespace (--netns re-executes there) and where the agent keeps things.
func inspectAgent(c *cli.Context) (printer, agentLocation, error) {
	p, err := printerOf(c)
	if err != nil {
		return p, agentLocation{}, err
	}
	if err := enterNetns(c); err != nil {
		return p, agentLocation{}, err
	}
	loc, err := locateAgent(c)
	return p, loc, err
}

func (l agentLocation) options() dataplane.Options {
	return dataplane.Options{Instance: l.instance, BPFFS: l.bpffs, StateDir: l.stateDir}
}

// openMaps opens the instance's pinned maps.
func (l agentLocation) openMaps() (*maps.Set, error) {
	set, err := maps.OpenPinned(filepath.Join(l.options().PinDir(), "maps"))
	if errors.Is(err, maps.ErrNotPinned) {
		return nil, fmt.Errorf("%w: is an agent with --instance %s running (and --bpffs %s)?", err, l.instance, l.bpffs)
	}
	return set, err
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "check this host's dataplane: programs, agent, control plane, map fill, drift (exit 1 on a problem)",
		ArgsUsage: "[programs|maps|drift]",
		Description: `Reports, for the agent instance of this host (or of --netns), every program with
its hook, attach mode (native/generic XDP, TCX/clsact), program id and link pin;
the agent and its control-plane connection (asked at its metrics listener:
--metrics-addr or [agent] metrics_listen); the revision the maps hold; the fill
of every map; and drift: entries where the BPF maps, the kernel FDB and
neighbours and the desired state the agent last applied disagree.

Exits 1 when something is wrong: a program not attached where the last apply
attached it, drift, a failed apply, nothing applied, or an agent that does not
answer at its metrics listener. A nearly full map, pending ports and a lost
NATS connection are warnings (forwarding goes on). --wait checks again until
nothing is wrong, e.g. in systemd's ExecStartPost.

With a section (programs, maps, drift) it prints that list only; -c picks its
columns. docs/operations.md explains every field.`,
		Flags: slices.Concat(agentFlags(), []cli.Flag{
			&cli.StringFlag{Name: "metrics-addr", Usage: "the agent's metrics listener `ADDR`, to ask it about its control plane ([agent] metrics_listen)"},
			&cli.DurationFlag{Name: "wait", Usage: "check again until nothing is wrong or `DURATION` passed"},
		}, outputFlags(nil)),
		Action: runStatus,
	}
}

// statusSections are the lists `vxdp status SECTION` prints alone.
var statusSections = []string{"programs", "maps", "drift"}

func runStatus(c *cli.Context) error {
	args, err := positional(c)
	if err != nil {
		return err
	}
	section := ""
	switch len(args) {
	case 0:
	case 1:
		section = args[0]
		if !slices.Contains(statusSections, section) {
			return fmt.Errorf("status %q: the sections are %s", section, strings.Join(statusSections, ", "))
		}
	default:
		return fmt.Errorf("status takes at most one section (%s), not %q", strings.Join(statusSections, ", "), args)
	}
	p, loc, err := inspectAgent(c)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(c.Duration("wait"))
	var st *statusReport
	for {
		if st, err = readStatus(c.Context, loc); err != nil {
			return err
		}
		if len(st.Problems) == 0 || !time.Now().Before(deadline) {
			break
		}
		select {
		case <-c.Context.Done():
			return c.Context.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	if err := printStatus(p, section, st); err != nil {
		return err
	}
	if n := len(st.Problems); n > 0 {
		what := fmt.Sprintf("%d problems", n)
		if n == 1 {
			what = "1 problem"
		}
		if section == "" && p.format == formatTable && len(p.columns) == 0 {
			return fmt.Errorf("status: %s (listed above)", what)
		}
		return fmt.Errorf("status: %s: %s", what, strings.Join(st.Problems, "; "))
	}
	return nil
}

// statusReport is the dataplane's status and what the agent says.
type statusReport struct {
	*dataplane.Status
	Agent agentAnswer
}

// agentAnswer is what the running agent says at its metrics listener.
type agentAnswer struct {
	Addr        string // "" when not asked
	Err         error  // it did not answer
	Ready       bool
	NotReady    string  // /readyz's reasons
	Connected   *bool   // NATS connection; nil: file mode
	SeenRev     *uint64 // revision the control plane delivered up to
	ControlMode string  // nats or file
}

func readStatus(ctx context.Context, loc agentLocation) (*statusReport, error) {
	st, err := dataplane.ReadStatus(loc.options())
	if err != nil {
		return nil, err
	}
	r := &statusReport{Status: st}
	if loc.metrics == "" {
		r.Warnings = append(r.Warnings, "the agent was not asked about its control plane: give --metrics-addr or --config with [agent] metrics_listen")
		return r, nil
	}
	r.Agent = askAgent(ctx, loc.metrics)
	switch a := r.Agent; {
	case a.Err != nil:
		r.Problems = append(r.Problems, fmt.Sprintf("the agent does not answer at %s: %v", a.Addr, a.Err))
	case a.Connected != nil && !*a.Connected:
		r.Warnings = append(r.Warnings, "the agent is not connected to NATS: changes do not arrive, forwarding goes on")
	}
	return r, nil
}

// askAgent reads the agent's /readyz and its control-plane metrics.
func askAgent(ctx context.Context, addr string) agentAnswer {
	a := agentAnswer{Addr: addr}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	get := func(path string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			return 0, "", err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		return resp.StatusCode, string(body), err
	}
	code, body, err := get("/readyz")
	if err != nil {
		a.Err = err
		return a
	}
	a.Ready = code == http.StatusOK
	if !a.Ready {
		a.NotReady = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(body), "not ready:"))
	}
	if _, body, err = get("/metrics"); err != nil {
		a.Err = err
		return a
	}
	vals := gauges(body, control.MetricNATSConnected, "vxdp_control_revision")
	a.ControlMode = "file"
	if v, ok := vals[control.MetricNATSConnected]; ok {
		a.ControlMode = "nats"
		connected := v == 1
		a.Connected = &connected
	}
	if v, ok := vals["vxdp_control_revision"]; ok {
		rev := uint64(v)
		a.SeenRev = &rev
	}
	return a
}

// gauges picks the values of label-less metrics out of Prometheus' text
// format.
func gauges(text string, names ...string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		for _, n := range names {
			if name == n {
				if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
					out[n] = v
				}
			}
		}
	}
	return out
}

// statusView is `vxdp status` as one record (docs/cli.md).
var statusView = view[*statusReport]{
	kind: "status",
	columns: []column[*statusReport]{
		{key: "instance", header: "Instance", value: func(s *statusReport) any { return s.Instance }},
		{key: "ok", header: "OK", value: func(s *statusReport) any { return len(s.Problems) == 0 }},
		{key: "problems", header: "Problems", value: func(s *statusReport) any { return nonNil(s.Problems) }},
		{key: "warnings", header: "Warnings", value: func(s *statusReport) any { return nonNil(s.Warnings) }},
		{key: "dataplane", header: "Dataplane", value: func(s *statusReport) any { return stringOrNil(s.Dataplane) }},
		{key: "pin_dir", header: "Pin Dir", value: func(s *statusReport) any { return s.PinDir }},
		{key: "agent_addr", header: "Agent", value: func(s *statusReport) any { return stringOrNil(s.Agent.Addr) }},
		{key: "agent_answers", header: "Agent Answers", value: func(s *statusReport) any {
			if s.Agent.Addr == "" {
				return nil
			}
			return s.Agent.Err == nil
		}},
		{key: "agent_ready", header: "Ready", value: func(s *statusReport) any {
			if s.Agent.Addr == "" || s.Agent.Err != nil {
				return nil
			}
			return s.Agent.Ready
		}},
		{key: "not_ready", header: "Not Ready", value: func(s *statusReport) any { return stringOrNil(s.Agent.NotReady) }},
		{key: "control_plane", header: "Control Plane", value: func(s *statusReport) any { return stringOrNil(s.Agent.ControlMode) }},
		{key: "nats_connected", header: "NATS Connected", value: func(s *statusReport) any {
			if s.Agent.Connected == nil {
				return nil
			}
			return *s.Agent.Connected
		}},
		{key: "control_revision", header: "Control Revision", value: func(s *statusReport) any {
			if s.Agent.SeenRev == nil {
				return nil
			}
			return *s.Agent.SeenRev
		}},
		{key: "applied_revision", header: "Applied Revision", value: func(s *statusReport) any { return s.AppliedRevision }},
		{key: "applied_at", header: "Applied At", value: func(s *statusReport) any { return timeOrNil(s.AppliedAt) }},
		{key: "apply_error", header: "Apply Error", value: func(s *statusReport) any { return stringOrNil(s.ApplyError) }},
		{key: "pending_ports", header: "Pending Ports", value: func(s *statusReport) any { return nonNil(s.Pending) }},
		{key: "programs", header: "Programs", value: func(s *statusReport) any { return programView.objects(s.Programs) }},
		{key: "maps", header: "Maps", value: func(s *statusReport) any { return mapFillView.objects(s.Maps) }},
		{key: "drift", header: "Drift", value: func(s *statusReport) any { return driftView.objects(s.Drift) }},
	},
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// programView is one program of `vxdp status`.
var programView = view[dataplane.ProgramStatus]{
	kind: "status program",
	columns: []column[dataplane.ProgramStatus]{
		{key: "program", header: "Program", value: func(p dataplane.ProgramStatus) any { return p.Program }},
		{key: "hook", header: "Hook", value: func(p dataplane.ProgramStatus) any { return p.Hook }},
		{key: "device", header: "Device", value: func(p dataplane.ProgramStatus) any { return p.Device }},
		{key: "ifindex", header: "Ifindex", value: func(p dataplane.ProgramStatus) any { return intOrNil(p.Ifindex) }},
		{key: "mode", header: "Mode", value: func(p dataplane.ProgramStatus) any { return stringOrNil(p.Mode) }},
		{key: "prog_id", header: "Prog ID", value: func(p dataplane.ProgramStatus) any { return intOrNil(int(p.ProgID)) }},
		{key: "prog_name", header: "Prog Name", value: func(p dataplane.ProgramStatus) any { return stringOrNil(p.ProgName) }},
		{key: "pin", header: "Pin", value: func(p dataplane.ProgramStatus) any { return stringOrNil(p.Pin) }},
		{key: "state", header: "State", value: func(p dataplane.ProgramStatus) any { return p.State }},
		{key: "expected", header: "Expected", value: func(p dataplane.ProgramStatus) any { return p.Expected },
			text: func(p dataplane.ProgramStatus) string {
				return map[bool]string{true: "yes", false: "no (disabled tap or stale pin)"}[p.Expected]
			}},
	},
	list: []string{"program", "hook", "device", "mode", "prog_id", "pin", "state"},
}

// mapFillView is one map of `vxdp status`.
var mapFillView = view[dataplane.MapFill]{
	kind: "status map",
	columns: []column[dataplane.MapFill]{
		{key: "map", header: "Map", value: func(m dataplane.MapFill) any { return m.Name }},
		{key: "type", header: "Type", value: func(m dataplane.MapFill) any { return m.Type }},
		{key: "entries", header: "Entries", value: func(m dataplane.MapFill) any {
			if m.Entries < 0 {
				return nil
			}
			return m.Entries
		}, text: func(m dataplane.MapFill) string {
			if m.Entries < 0 {
				return "-"
			}
			return strconv.Itoa(m.Entries)
		}},
		{key: "capacity", header: "Capacity", value: func(m dataplane.MapFill) any { return m.Capacity }},
		{key: "fill_percent", header: "Fill %", value: func(m dataplane.MapFill) any {
			if m.Percent() < 0 {
				return nil
			}
			return m.Percent()
		}, text: func(m dataplane.MapFill) string {
			if m.Percent() < 0 {
				return "-"
			}
			return strconv.FormatFloat(m.Percent(), 'f', 1, 64)
		}},
	},
}

// driftView is one drifted entry of `vxdp status`.
var driftView = view[dataplane.Drift]{
	kind: "status drift",
	columns: []column[dataplane.Drift]{
		{key: "entry", header: "Entry", value: func(d dataplane.Drift) any { return d.Entry }},
		{key: "vni", header: "VNI", value: func(d dataplane.Drift) any { return intOrNil(int(d.VNI)) }},
		{key: "key", header: "Key", value: func(d dataplane.Drift) any { return d.Key }},
		{key: "place", header: "Place", value: func(d dataplane.Drift) any { return d.Place }},
		{key: "want", header: "Want", value: func(d dataplane.Drift) any { return stringOrNil(d.Want) },
			text: func(d dataplane.Drift) string { return cmp.Or(d.Want, "(nothing)") }},
		{key: "have", header: "Have", value: func(d dataplane.Drift) any { return stringOrNil(d.Have) },
			text: func(d dataplane.Drift) string { return cmp.Or(d.Have, "(missing)") }},
	},
}

// printStatus prints one section, the record in a typed format or with
// -c, or the screen: a summary, then the programs, maps and drift tables.
func printStatus(p printer, section string, st *statusReport) error {
	switch section {
	case "programs":
		return printRecords(p, programView, st.Programs)
	case "maps":
		return printRecords(p, mapFillView, st.Maps)
	case "drift":
		return printRecords(p, driftView, st.Drift)
	}
	if p.format != formatTable || len(p.columns) > 0 {
		return printRecord(p, statusView, st)
	}
	w := p.w
	fmt.Fprintf(w, "Instance:  %s (pins %s), %s dataplane\n", st.Instance, st.PinDir, cmp.Or(st.Dataplane, "unknown"))
	fmt.Fprintf(w, "Agent:     %s\n", agentLine(st.Agent))
	applied := "nothing"
	if !st.AppliedAt.IsZero() {
		applied = fmt.Sprintf("revision %d at %s", st.AppliedRevision, st.AppliedAt.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "Applied:   %s\n", applied)
	for _, s := range []struct {
		title string
		print func() error
		empty bool
	}{
		{"Programs", func() error { return printRecords(p, programView, st.Programs) }, len(st.Programs) == 0},
		{"Maps", func() error { return printRecords(p, mapFillView, st.Maps) }, len(st.Maps) == 0},
		{"Drift", func() error { return printRecords(p, driftView, st.Drift) }, len(st.Drift) == 0},
	} {
		if s.empty {
			fmt.Fprintf(w, "\n%s: none\n", s.title)
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", s.title)
		if err := s.print(); err != nil {
			return err
		}
	}
	for _, l := range []struct {
		title string
		items []string
	}{{"Warnings", st.Warnings}, {"Problems", st.Problems}} {
		if len(l.items) > 0 {
			fmt.Fprintf(w, "\n%s:\n  %s\n", l.title, strings.Join(l.items, "\n  "))
		}
	}
	if len(st.Problems) == 0 {
		fmt.Fprintln(w, "\nOK: every program attached, no drift")
	}
	return nil
}

// agentLine is the agent's answer in a line.
func agentLine(a agentAnswer) string {
	switch {
	case a.Addr == "":
		return "not asked (--metrics-addr)"
	case a.Err != nil:
		return fmt.Sprintf("no answer at %s: %v", a.Addr, a.Err)
	}
	s := "serving at " + a.Addr
	if a.Ready {
		s += ", ready"
	} else {
		s += ", not ready: " + a.NotReady
	}
	switch {
	case a.Connected == nil:
		s += "; control plane: state file"
	case *a.Connected:
		s += "; NATS connected"
	default:
		s += "; NATS disconnected"
	}
	if a.SeenRev != nil {
		s += fmt.Sprintf(", revision %d seen", *a.SeenRev)
	}
	return s
}
