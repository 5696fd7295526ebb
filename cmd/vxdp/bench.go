package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/bench"
)

var (
	benchJSONFlag  = &cli.BoolFlag{Name: "json", Usage: "print the report as JSON"}
	benchOutFlag   = &cli.StringFlag{Name: "out", Usage: "write report.json, README.md (Markdown) and PNG charts to `DIR`"}
	benchQuickFlag = &cli.BoolFlag{Name: "quick", Usage: "a tiny load that proves the suite runs end to end (its figures mean nothing)"}
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure vxdp (figures for operators and release notes, not pass/fail)",
		Description: `Every suite compares against a baseline measured in the same run, shows its
progress on stderr, prints a table (or --json) and, with --out DIR, writes the
report as JSON, a Markdown page and PNG charts.`,
		Subcommands: []*cli.Command{{
			Name:  "bpf",
			Usage: "per-packet cost of every program and case next to an empty program of the same hook (BPF_PROG_TEST_RUN, root)",
			Flags: []cli.Flag{
				&cli.IntFlag{Name: "repeat", Value: bench.DefaultBPFRepeat, Usage: "packets per measurement"},
				&cli.IntFlag{Name: "passes", Value: 5, Usage: "measurements of every case, the cases in turn (medians reported)"},
				&cli.IntSliceFlag{Name: "sg", Value: cli.NewIntSlice(1, 100, 1000, 10000), Usage: "security-group sizes (rules) of the security-group cases"},
				benchQuickFlag, benchOutFlag, benchJSONFlag,
			},
			Action: func(c *cli.Context) error {
				repeat, passes := c.Int("repeat"), c.Int("passes")
				if c.Bool(benchQuickFlag.Name) {
					if !c.IsSet("repeat") {
						repeat = 1000
					}
					if !c.IsSet("passes") {
						passes = 2
					}
				}
				r, err := bench.RunBPF(c.Context, bench.BPFOptions{Repeat: repeat, Passes: passes, SGRules: c.IntSlice("sg"),
					Commit: currentBuild().Commit, Progress: bench.NewProgress(c.App.ErrWriter)})
				return printReport(c, r, err)
			},
		}, {
			Name: "controlplane",
			Usage: "NATS control plane at fleet scale: vxdp server, agents and listeners as processes; fan-out of port events " +
				"to 1,000 and 10,000 receivers next to the transport floor, resync, memory and CPU per event up to 100k ports (many minutes)",
			Flags: []cli.Flag{
				&cli.IntFlag{Name: "agents", Value: 50, Usage: "real agent processes in the fan-out"},
				&cli.IntSliceFlag{Name: "fanout", Value: cli.NewIntSlice(1000, 10000), Usage: "receivers of each event: the agents plus bare listeners"},
				&cli.StringSliceFlag{Name: "listen-mode", Value: cli.NewStringSlice(bench.ListenConsumer, bench.ListenRePublish),
					Usage: "how bare listeners receive: consumer (a consumer per listener, as agents) or republish (core NATS subscribers of the stream's republished changes)"},
				&cli.IntFlag{Name: "events", Value: 20, Usage: "port events per fan-out measurement"},
				&cli.IntSliceFlag{Name: "ports", Value: cli.NewIntSlice(1000, 10000, 100000), Usage: "network sizes for resync, memory and CPU per event"},
				&cli.IntFlag{Name: "port-events", Value: 50, Usage: "port events timed at each network size"},
				&cli.IntFlag{Name: "delta-changes", Value: 100, Usage: "ports added while the agent is down, before its restart"},
				benchQuickFlag, benchOutFlag, benchJSONFlag,
			},
			Action: func(c *cli.Context) error {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				o := bench.ControlPlaneOptions{Binary: exe, Agents: c.Int("agents"), FanOut: c.IntSlice("fanout"), Modes: c.StringSlice("listen-mode"),
					Events: c.Int("events"), ResyncPorts: c.IntSlice("ports"), ResyncEvents: c.Int("port-events"),
					DeltaChanges: c.Int("delta-changes"), Commit: currentBuild().Commit}
				if c.Bool(benchQuickFlag.Name) {
					o = bench.QuickControlPlane(o, c.IsSet("agents"), c.IsSet("fanout"), c.IsSet("ports"), c.IsSet("events"))
				}
				o.Progress = bench.NewProgress(c.App.ErrWriter)
				r, err := bench.RunControlPlane(c.Context, o)
				return printReport(c, r, err)
			},
		}, {
			Name:   "agent",
			Usage:  "one agent of the control-plane benchmark (started by bench controlplane)",
			Hidden: true,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "nats", Required: true}, &cli.StringFlag{Name: "host", Required: true},
				&cli.StringFlag{Name: "local-ip", Required: true}, &cli.StringFlag{Name: "state-dir"},
				&cli.DurationFlag{Name: "resync", Value: time.Minute},
				&cli.StringFlag{Name: "cpuprofile", Usage: "write a CPU profile to `FILE`"},
			},
			Action: func(c *cli.Context) error {
				ip, err := netip.ParseAddr(c.String("local-ip"))
				if err != nil {
					return fmt.Errorf("--local-ip: %w", err)
				}
				if f := c.String("cpuprofile"); f != "" {
					out, err := os.Create(f)
					if err != nil {
						return err
					}
					defer out.Close()
					if err := pprof.StartCPUProfile(out); err != nil {
						return err
					}
					defer pprof.StopCPUProfile()
				}
				ctx, stop := signal.NotifyContext(c.Context, syscall.SIGTERM, os.Interrupt)
				defer stop()
				return bench.RunAgentProcess(ctx, bench.AgentProcessOptions{URL: c.String("nats"), Host: c.String("host"), VTEP: ip,
					StateDir: c.String("state-dir"), Resync: c.Duration("resync"), Out: c.App.Writer})
			},
		}, {
			Name:   "listen",
			Usage:  "bare listeners of the control-plane benchmark (started by bench controlplane)",
			Hidden: true,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "nats", Required: true}, &cli.IntFlag{Name: "count", Value: 1}, &cli.IntFlag{Name: "first"},
				&cli.StringFlag{Name: "mode", Value: bench.ListenConsumer}, &cli.StringFlag{Name: "network", Required: true},
				&cli.StringFlag{Name: "watch", Required: true},
			},
			Action: func(c *cli.Context) error {
				ctx, stop := signal.NotifyContext(c.Context, syscall.SIGTERM, os.Interrupt)
				defer stop()
				return bench.RunListeners(ctx, bench.ListenOptions{URL: c.String("nats"), Count: c.Int("count"), First: c.Int("first"),
					Mode: c.String("mode"), Network: c.String("network"), Watch: c.String("watch"), Out: c.App.Writer})
			},
		}, {
			Name:  "path",
			Usage: "vm2 -> vm1 end to end in the lab: plain wire, flat network, Neutron's kernel path and vxdp's BPF path, alternating (root)",
			Description: `Builds one lab per mode and measures, alternating the modes round by round: TCP
with 1 and 4 streams (iperf3), 64-byte UDP from an XDP live-frames generator,
TCP request/response latency, and the CPU time per delivered packet and GB.
--guest makes vm1 a real guest (qemu, virtio-net) and compares kernel and bpf;
--sg N,... puts vm1's port in a group of N rules: Neutron's iptables firewall
against vxdp's BPF groups, established and new flows.`,
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "guest", Usage: "vm1 a real guest (qemu): TCP both ways and bytes per packet into the guest, kernel vs bpf"},
				&cli.IntSliceFlag{Name: "sg", Usage: "security-group suite: vm1's port in a group of `N` rules (e.g. 1,100,1000), kernel (iptables) vs bpf"},
				&cli.StringSliceFlag{Name: "modes", Usage: "modes to compare, in order: plain, flat, kernel, bpf, kernel-filtered (default: the suite's)"},
				&cli.StringSliceFlag{Name: "metrics", Usage: "metrics to run (default: the suite's): tcp1, tcp4, udp64, rr; guest: tcp1, tcp4, tcp1-rev; sg: udp64, tcp1, crr"},
				&cli.IntFlag{Name: "runs", Usage: "runs of every metric per mode (default 5; --quick 2)"},
				&cli.DurationFlag{Name: "window", Usage: "how long each run counts (default 5s; TCP in whole seconds)"},
				&cli.IntFlag{Name: "omit", Value: 1, Usage: "TCP seconds left out at the start (slow start)"},
				&cli.Float64Flag{Name: "noise-limit", Value: 0.03, Usage: "flag a run when other processes and steal take more than this share of the machine"},
				&cli.IntFlag{Name: "retries", Usage: "measure a noisy run again up to this many times, the quietest try counting (default 2; --quick 0)"},
				&cli.BoolFlag{Name: "bpf-stats", Usage: "profile: the kernel times every run of vxdp's programs; report ns per run and runs per packet (slows the bpf mode)"},
				bpffsFlag, benchQuickFlag, benchOutFlag, benchJSONFlag,
			},
			Action: func(c *cli.Context) error {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				o := bench.PathOptions{Binary: exe, BPFFS: c.String(bpffsFlag.Name), Commit: currentBuild().Commit,
					Modes: c.StringSlice("modes"), Metrics: c.StringSlice("metrics"), Runs: c.Int("runs"), Window: c.Duration("window"), Omit: c.Int("omit"),
					NoiseLimit: c.Float64("noise-limit"), Quick: c.Bool(benchQuickFlag.Name), BPFStats: c.Bool("bpf-stats"), Retries: c.Int("retries"),
					Progress: bench.NewProgress(c.App.ErrWriter)}
				if o.Quick && !c.IsSet("omit") {
					o.Omit = 0
				}
				if !o.Quick && !c.IsSet("retries") {
					o.Retries = 2
				}
				switch {
				case c.Bool("guest") && c.IsSet("sg"):
					return errors.New("bench path: --guest and --sg are separate suites: run one, then the other")
				case c.Bool("guest"):
					o.Suite = bench.SuiteGuest
				case c.IsSet("sg"):
					o.Suite, o.SGRules = bench.SuiteSG, c.IntSlice("sg")
				}
				r, err := bench.RunPath(c.Context, o)
				return printReport(c, r, err)
			},
		}},
	}
}

// printReport prints a benchmark report as a table, or JSON with --json,
// and writes it to --out.
func printReport[R bench.Report](c *cli.Context, r R, err error) error {
	if err != nil {
		return err
	}
	if dir := c.String(benchOutFlag.Name); dir != "" {
		if err := bench.WriteOutput(dir, r); err != nil {
			return err
		}
	}
	if c.Bool(benchJSONFlag.Name) {
		return json.NewEncoder(c.App.Writer).Encode(r)
	}
	return r.WriteTable(c.App.Writer)
}
