package main

import (
	"fmt"
	"net/netip"

	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/control"
)

// hostCommand is `vxdp host`: the registered VTEP address of each host.
func hostCommand() *cli.Command {
	return &cli.Command{
		Name:  "host",
		Usage: "register, list and delete hosts' VTEP addresses (the only ones other hosts send to)",
		Description: `A host's VTEP is the address every other host sends its tenant traffic to and
accepts it from. It is the registered one, not the one the host's agent claims:
the first agent record of a host registers it, and only these commands change
it afterwards (docs/security.md). "vxdp agent list" flags an agent whose
local_ip differs from its host's registration.`,
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "register a host's VTEP address",
				ArgsUsage: "HOST",
				Flags: append(controllerFlags(),
					&cli.StringFlag{Name: "vtep", Usage: "the host's VTEP `IP` ([vxlan] local_ip of its agent)"},
					&cli.BoolFlag{Name: "replace", Usage: "change the VTEP of a host registered with another one"},
					jsonFlag,
				),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					host, err := oneArg(c, "host name")
					if err != nil {
						return err
					}
					if err := need(c, "vtep"); err != nil {
						return err
					}
					ip, err := netip.ParseAddr(c.String("vtep"))
					if err != nil {
						return fmt.Errorf("--vtep %q: not an IPv4 address like 192.168.248.3", c.String("vtep"))
					}
					h, err := ctl.RegisterHost(c.Context, host, ip, c.Bool("replace"))
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return printJSON(c.App.Writer, h)
					}
					return writeHostTable(c, []control.HostInfo{h})
				}),
			},
			{
				Name:  "list",
				Usage: "list registered hosts and the VTEP their agents claim",
				Flags: append(controllerFlags(), jsonFlag),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					hosts, err := ctl.ListHosts(c.Context)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return printJSON(c.App.Writer, hosts)
					}
					return writeHostTable(c, hosts)
				}),
			},
			{
				Name:      "delete",
				Usage:     "remove a decommissioned host: its registration, agent record and heartbeat",
				ArgsUsage: "HOST",
				Flags:     controllerFlags(),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					host, err := oneArg(c, "host name")
					if err != nil {
						return err
					}
					return ctl.DeleteHost(c.Context, host)
				}),
			},
		},
	}
}

// writeHostTable prints hosts:
//
//	| Host | VTEP | Registered By | Agent VTEP | State |
func writeHostTable(c *cli.Context, hosts []control.HostInfo) error {
	rows := make([][]string, len(hosts))
	for i, h := range hosts {
		vtep, by, agent, st := "-", "-", "-", "ok"
		if h.Registration != nil {
			vtep, by = h.Registration.VTEP.String(), h.Registration.RegisteredBy
		}
		if h.AgentVTEP.IsValid() {
			agent = h.AgentVTEP.String()
		}
		switch {
		case h.Registration == nil:
			st = "UNREGISTERED"
		case h.Mismatch():
			st = "MISMATCH"
		case !h.AgentVTEP.IsValid():
			st = "no agent"
		}
		rows[i] = []string{h.Host, vtep, by, agent, st}
	}
	return writeTable(c.App.Writer, []string{"Host", "VTEP", "Registered By", "Agent VTEP", "State"}, rows)
}
