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

// Build information, set with -ldflags "-X main.version=... -X
// main.commit=... -X main.buildDate=..." (see the Makefile); a plain `go
// build` falls back to what the Go toolchain recorded (vxdp version).
var (
	version   = "dev"
	commit    = ""
	buildDate = ""
)

// newApp is the whole command line; main and the tests run the same one.
func newApp() *cli.App {
	app := &cli.App{
		Name:    "vxdp",
		Usage:   "eBPF/XDP fast path for VXLAN overlay networks (Neutron linuxbridge + l2population compatible)",
		Version: version,
		Description: `One binary for every role: "vxdp agent" on each hypervisor, "vxdp server" on the
controllers, the controller commands (network, port, sg, agent list), "vxdp dump"
to read an agent's BPF maps, and "vxdp lab" for a one-machine lab of the seed
topology. Commands that print records take -o table|json|yaml|value and -c COLUMN;
docs/cli.md describes their JSON.`,
		Suggest:              true,
		EnableBashCompletion: true,
		// "help" is handled by groupAction, so that an unknown command is an
		// error instead of "No help topic".
		HideHelpCommand: true,
		Commands: []*cli.Command{
			agentCommand(),
			dumpCommand(),
			statusCommand(),
			fdbCommand(),
			monitorCommand(),
			benchCommand(),
			labCommand(),
			serverCommand(),
			networkCommand(),
			subnetCommand(),
			portCommand(),
			sgCommand(),
			addressGroupCommand(),
			hostCommand(),
			versionCommand(),
			completionCommand(),
			manCommand(),
		},
	}
	setGroupActions(app)
	return app
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newApp().RunContext(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "vxdp:", err)
		os.Exit(1)
	}
}
