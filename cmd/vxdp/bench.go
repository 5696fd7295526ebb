package main

import (
	"encoding/json"
	"io"
	"os"
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
			Name:  "controlplane",
			Usage: "NATS control plane: port-event convergence over many simulated agents, full and delta resync, agent memory (embedded server, minutes)",
			Flags: []cli.Flag{
				&cli.IntSliceFlag{Name: "agents", Value: cli.NewIntSlice(10, 100, 1000), Usage: "fleet sizes"},
				&cli.IntSliceFlag{Name: "ports", Value: cli.NewIntSlice(10000, 100000), Usage: "network sizes for resync and memory"},
				&cli.IntFlag{Name: "events", Value: 20, Usage: "port events per fleet size and kind"},
				jsonFlag,
			},
			Action: func(c *cli.Context) error {
				r, err := bench.RunControlPlane(c.Context, bench.ControlPlaneOptions{
					Agents: c.IntSlice("agents"), ResyncPorts: c.IntSlice("ports"), Events: c.Int("events")})
				return printReport(c, r, err)
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
