package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/state"
)

// AgentProcessOptions configure one benchmark agent process (`vxdp bench
// agent`, started by RunControlPlane).
type AgentProcessOptions struct {
	URL      string
	Host     string
	VTEP     netip.Addr
	StateDir string // snapshots and the applied revision ("" = none)
	// Resync is the period of the full re-apply (default a minute, as the agent's).
	Resync time.Duration
	// Out receives a JSON line per apply (agentLine).
	Out io.Writer
	Log *slog.Logger
}

// agentLine is what a benchmark agent prints after every apply.
type agentLine struct {
	Rev    uint64 `json:"rev"`
	UnixNS int64  `json:"unix_ns"`
	// RunMS is the time since the agent's Run started.
	RunMS   float64 `json:"run_ms"`
	Remote  int     `json:"remote"`
	Local   int     `json:"local"`
	Ops     int     `json:"ops"`
	Full    bool    `json:"full"`
	Fetched uint64  `json:"fetched"`
	Resync  string  `json:"resync,omitempty"`
	Error   string  `json:"error,omitempty"`
}

// appliedRevisionFile keeps, in a benchmark agent's state dir, the
// revision it applied last (what the dataplane keeps next to its pins).
const appliedRevisionFile = "applied-revision"

// RunAgentProcess runs the real agent (control plane, state run loop) with
// a dataplane that only counts what it is asked to install — the kernel's
// maps are not this process's memory, and their cost is the dataplane
// benchmark's — until ctx ends.
func RunAgentProcess(ctx context.Context, o AgentProcessOptions) error {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	var applied uint64
	if o.StateDir != "" {
		if raw, err := os.ReadFile(filepath.Join(o.StateDir, appliedRevisionFile)); err == nil {
			applied, _ = strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
		}
	}
	nc, err := control.Connect(ctx, control.ConnectOptions{URLs: []string{o.URL}, Name: "vxdp-bench-agent " + o.Host,
		InboxPrefix: control.InboxPrefix(o.Host), Retry: true, Log: o.Log})
	if err != nil {
		return err
	}
	defer nc.Close()
	agent, err := control.NewAgent(nc, control.AgentOptions{Host: o.Host, VTEP: o.VTEP, StateDir: o.StateDir,
		AppliedRevision: applied, Version: "bench", Log: o.Log})
	if err != nil {
		return err
	}
	out := &lineWriter{w: bufio.NewWriter(o.Out)}
	began := time.Now()
	rec := &countingReconciler{}
	loop := &state.Loop{Producer: agent, Reconciler: rec, Observer: agent, Resync: o.Resync, Log: o.Log,
		AfterApply: func(d *state.Desired, res state.Result, err error, _ time.Duration) {
			st := agent.Stats()
			l := agentLine{Rev: d.Revision, UnixNS: time.Now().UnixNano(), RunMS: float64(time.Since(began)) / 1e6,
				Remote: rec.remotes, Local: len(d.LocalPorts), Ops: rec.entries, Full: rec.full,
				Fetched: st.Fetched, Resync: st.LastResync}
			if err != nil {
				l.Error = err.Error()
			}
			if err == nil {
				applied = d.Revision
			}
			out.write(l)
		}}
	if o.StateDir != "" {
		if err := os.MkdirAll(o.StateDir, 0o750); err != nil {
			return fmt.Errorf("state dir: %w", err)
		}
	}
	err = loop.Run(ctx)
	// Kept at exit only: what the dataplane persists per apply is the
	// dataplane benchmark's cost.
	if o.StateDir != "" && applied != 0 {
		if werr := os.WriteFile(filepath.Join(o.StateDir, appliedRevisionFile), []byte(strconv.FormatUint(applied, 10)), 0o644); werr != nil {
			return werr
		}
	}
	return err
}

// countingReconciler is the benchmark agents' dataplane: it installs
// nothing, it counts the entries of each state or delta it is given.
type countingReconciler struct {
	remotes int  // remote ports installed
	entries int  // entries of the last state or delta
	full    bool // the last apply was of a full state
}

func (c *countingReconciler) Apply(_ context.Context, d *state.Desired) (state.Result, error) {
	c.remotes, c.full = len(d.RemotePorts), true
	c.entries = len(d.Networks) + len(d.LocalPorts) + len(d.RemotePorts) + len(d.SecurityGroups)
	return state.Result{}, nil
}

func (c *countingReconciler) ApplyDelta(_ context.Context, d *state.Delta) (state.Result, error) {
	c.remotes += len(d.RemotePorts.Put) - len(d.RemotePorts.Remove)
	c.entries, c.full = d.Size(), false
	return state.Result{}, nil
}
