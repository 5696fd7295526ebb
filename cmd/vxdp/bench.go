package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/bench"
)

func benchCommand() *cli.Command {
	jsonFlag := &cli.BoolFlag{Name: "json", Usage: "print the report as JSON"}
	return &cli.Command{
		Name:  "bench",
		Usage: "measure vxdp (figures for operators and release notes, not pass/fail)",
		Subcommands: []*cli.Command{{
			Name:  "bpf",
			Usage: "per-packet cost of the port and uplink programs next to an empty program (BPF_PROG_TEST_RUN, root)",
			Flags: []cli.Flag{
				&cli.IntFlag{Name: "repeat", Value: bench.DefaultBPFRepeat, Usage: "packets per measurement"},
				jsonFlag,
			},
			Action: func(c *cli.Context) error {
				r, err := bench.RunBPF(c.Context, c.Int("repeat"))
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
				jsonFlag,
			},
			Action: func(c *cli.Context) error {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				r, err := bench.RunControlPlane(c.Context, bench.ControlPlaneOptions{
					Binary: exe, Agents: c.Int("agents"), FanOut: c.IntSlice("fanout"), Modes: c.StringSlice("listen-mode"),
					Events: c.Int("events"), ResyncPorts: c.IntSlice("ports"), ResyncEvents: c.Int("port-events"),
					DeltaChanges: c.Int("delta-changes"), Progress: os.Stderr})
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
			},
			Action: func(c *cli.Context) error {
				ip, err := netip.ParseAddr(c.String("local-ip"))
				if err != nil {
					return fmt.Errorf("--local-ip: %w", err)
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
			Usage: "BPF fast path vs the kernel path (bridge + vxlan device) end to end in the seed lab: TCP, small UDP, RTT (root)",
			Flags: []cli.Flag{
				&cli.Int64Flag{Name: "tcp-bytes", Value: 256 << 20, Usage: "bytes per TCP transfer"},
				&cli.IntFlag{Name: "runs", Value: 3, Usage: "TCP transfers per dataplane (median reported)"},
				&cli.DurationFlag{Name: "udp-period", Value: 2 * time.Second, Usage: "length of the 64-byte UDP flood"},
				bpffsFlag, jsonFlag,
			},
			Action: func(c *cli.Context) error {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				r, err := bench.RunPath(c.Context, bench.PathOptions{Binary: exe, BPFFS: c.String(bpffsFlag.Name),
					TCPBytes: c.Int64("tcp-bytes"), Runs: c.Int("runs"), UDPPeriod: c.Duration("udp-period"), Log: os.Stderr})
				return printReport(c, r, err)
			},
		}},
	}
}

// printReport prints a benchmark report as a table, or JSON with --json.
func printReport(c *cli.Context, r interface{ WriteTable(io.Writer) error }, err error) error {
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return json.NewEncoder(c.App.Writer).Encode(r)
	}
	return r.WriteTable(c.App.Writer)
}
