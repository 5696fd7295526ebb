// Command vxdp is the eBPF/XDP VXLAN dataplane: the per-hypervisor agent,
// map dumps, the one-machine lab and the control-plane commands.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	app := &cli.App{
		Name:    "vxdp",
		Usage:   "eBPF/XDP fast path for VXLAN overlay networks (Neutron linuxbridge + l2population compatible)",
		Version: version,
		Commands: []*cli.Command{
			agentCommand(),
			dumpCommand(),
			benchCommand(),
			labCommand(),
			serverCommand(),
			networkCommand(),
			portCommand(),
			sgCommand(),
			hostCommand(),
		},
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.RunContext(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "vxdp:", err)
		os.Exit(1)
	}
}
