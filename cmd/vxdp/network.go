package main

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/control"
)

func networkCommand() *cli.Command {
	return &cli.Command{
		Name:  "network",
		Usage: "create, list and delete VXLAN tenant networks (writes the control plane)",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a VXLAN network",
				ArgsUsage: "NAME",
				Description: `Without --vni a VNI is allocated from --vni-ranges (ml2 vni_ranges,
default 1001:2000), as for a regular Neutron user; an administrator may pick
any VNI with --vni. Either way the VNI is reserved atomically: two concurrent
creates never share one.`,
				Flags: slices.Concat(creatorFlags(), []cli.Flag{vniRangesFlag(),
					&cli.UintFlag{Name: "vni", Usage: "VXLAN network identifier 1-16777215 (administrators)"},
					&cli.IntFlag{Name: "mtu", Value: control.DefaultMTU, Usage: "tenant MTU"},
					&cli.StringSliceFlag{Name: "subnet", Usage: "`CIDR` the ports' fixed IPs must be in (repeatable)"},
					&cli.StringFlag{Name: "id", Usage: "network `UUID` (default: a new one)"},
					projectFlag(true),
				}, outputFlags(networkView)),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					name, err := oneArg(c, "network name")
					if err != nil {
						return err
					}
					spec := control.NetworkSpec{Name: name, MTU: c.Int("mtu"), ID: c.String("id"), Project: c.String("project")}
					if v := c.Uint("vni"); c.IsSet("vni") {
						if err := control.ValidateVNI(uint32(min(v, 1<<24))); err != nil || v > 1<<24 {
							return fmt.Errorf("--vni %d: out of range 1-16777215", v)
						}
						spec.VNI = uint32(v)
					}
					for _, s := range c.StringSlice("subnet") {
						p, err := netip.ParsePrefix(strings.TrimSpace(s))
						if err != nil {
							return fmt.Errorf("--subnet %q: not a CIDR like 172.16.100.0/24", s)
						}
						if p.Masked() != p {
							return fmt.Errorf("--subnet %q has host bits set: write %s", s, p.Masked())
						}
						spec.Subnets = append(spec.Subnets, p)
					}
					n, err := ctl.CreateNetwork(c.Context, spec)
					if err != nil {
						return err
					}
					return printOne(c, networkView, n)
				}),
			},
			listCommand("list networks", networkView, (*control.Controller).ListNetworks, func(n control.Network) string { return n.Project }),
			showCommand("show a network", "network", networkView, byRef((*control.Controller).GetNetwork)),
			deleteCommand("delete a network without ports and release its VNI", "network", byRef((*control.Controller).GetNetwork),
				(*control.Controller).DeleteNetwork, func(n control.Network) deleted { return deleted{Kind: "network", ID: n.ID, Name: n.Name} }),
		},
	}
}

// networkView is how networks print (docs/cli.md).
var networkView = view[control.Network]{
	kind: "network",
	columns: []column[control.Network]{
		{key: "id", header: "ID", value: func(n control.Network) any { return n.ID }},
		{key: "name", header: "Name", value: func(n control.Network) any { return n.Name }},
		{key: "subnets", header: "Subnets", value: func(n control.Network) any { return prefixStrings(n.Subnets) },
			text: func(n control.Network) string { return strings.Join(prefixStrings(n.Subnets), ", ") }},
		{key: "network_type", header: "Network Type", value: func(control.Network) any { return "vxlan" }},
		{key: "vni", header: "VNI", value: func(n control.Network) any { return n.VNI }},
		{key: "mtu", header: "MTU", value: func(n control.Network) any { return n.MTU }},
		{key: "project_id", header: "Project", value: func(n control.Network) any { return control.ProjectOf(n.Project) }},
		{key: "created_at", header: "Created At", value: func(n control.Network) any { return timeOrNil(n.CreatedAt) }},
		{key: "revision", header: "Revision", value: func(n control.Network) any { return n.Revision }},
	},
	list: []string{"id", "name", "subnets", "vni", "mtu"},
}

// prefixStrings is never nil, so JSON shows [] for none.
func prefixStrings(ps []netip.Prefix) []string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return s
}
