package main

import (
	"encoding/json"
	"os"

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
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return json.NewEncoder(os.Stdout).Encode(r)
				}
				return r.WriteTable(os.Stdout)
			},
		}},
	}
}
