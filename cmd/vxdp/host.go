package main

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

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
				Flags: slices.Concat(controllerFlags(), []cli.Flag{
					&cli.StringFlag{Name: "vtep", Usage: "the host's VTEP `IP` ([vxlan] local_ip of its agent)"},
					&cli.BoolFlag{Name: "replace", Usage: "change the VTEP of a host registered with another one"},
				}, outputFlags(hostView)),
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
					return printOne(c, hostView, h)
				}),
			},
			{
				Name:  "list",
				Usage: "list registered hosts and the VTEP their agents claim",
				Flags: slices.Concat(controllerFlags(), outputFlags(hostView)),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					hosts, err := ctl.ListHosts(c.Context)
					if err != nil {
						return err
					}
					return printList(c, hostView, hosts)
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

// hostView is how hosts print (docs/cli.md).
var hostView = view[control.HostInfo]{
	kind: "host",
	columns: []column[control.HostInfo]{
		{key: "host", header: "Host", value: func(h control.HostInfo) any { return h.Host }},
		{key: "vtep_ip", header: "VTEP", value: func(h control.HostInfo) any { return addrOrNil(registration(h).VTEP) },
			text: func(h control.HostInfo) string { return cmp.Or(cellText(addrOrNil(registration(h).VTEP)), "-") }},
		{key: "registered_by", header: "Registered By", value: func(h control.HostInfo) any { return stringOrNil(registration(h).RegisteredBy) },
			text: func(h control.HostInfo) string { return cmp.Or(registration(h).RegisteredBy, "-") }},
		{key: "agent_vtep_ip", header: "Agent VTEP", value: func(h control.HostInfo) any { return addrOrNil(h.AgentVTEP) },
			text: func(h control.HostInfo) string { return cmp.Or(cellText(addrOrNil(h.AgentVTEP)), "-") }},
		{key: "state", header: "State", value: func(h control.HostInfo) any { return hostState(h) }},
		{key: "registered_at", header: "Registered At", value: func(h control.HostInfo) any { return timeOrNil(registration(h).CreatedAt) }},
		{key: "revision", header: "Revision", value: func(h control.HostInfo) any { return h.Revision }},
	},
	list: []string{"host", "vtep_ip", "registered_by", "agent_vtep_ip", "state"},
}

// registration is h's registration, zero when it has none.
func registration(h control.HostInfo) control.RegistrationRecord {
	if h.Registration == nil {
		return control.RegistrationRecord{}
	}
	return *h.Registration
}

// hostState says whether other hosts use what the host's agent claims.
func hostState(h control.HostInfo) string {
	switch {
	case h.Registration == nil:
		return "UNREGISTERED"
	case h.Mismatch():
		return "MISMATCH"
	case !h.AgentVTEP.IsValid():
		return "no agent"
	}
	return "ok"
}
