package main

import (
	"fmt"
	"net/netip"
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
				Flags: append(controllerFlags(),
					&cli.UintFlag{Name: "vni", Usage: "VXLAN network identifier 1-16777215 (administrators)"},
					&cli.IntFlag{Name: "mtu", Value: control.DefaultMTU, Usage: "tenant MTU"},
					&cli.StringSliceFlag{Name: "subnet", Usage: "`CIDR` the ports' fixed IPs must be in (repeatable)"},
					&cli.StringFlag{Name: "id", Usage: "network `UUID` (default: a new one)"},
					jsonFlag,
				),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					name, err := oneArg(c, "network name")
					if err != nil {
						return err
					}
					spec := control.NetworkSpec{Name: name, MTU: c.Int("mtu"), ID: c.String("id")}
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
					if c.Bool("json") {
						return printJSON(c.App.Writer, n)
					}
					return writeTable(c.App.Writer, []string{"Field", "Value"}, networkFields(n))
				}),
			},
			{
				Name:  "list",
				Usage: "list networks",
				Flags: append(controllerFlags(), jsonFlag),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					nets, err := ctl.ListNetworks(c.Context)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return printJSON(c.App.Writer, nets)
					}
					rows := make([][]string, len(nets))
					for i, n := range nets {
						rows[i] = []string{n.ID, n.Name, prefixes(n.Subnets), fmt.Sprint(n.VNI), fmt.Sprint(n.MTU)}
					}
					return writeTable(c.App.Writer, []string{"ID", "Name", "Subnets", "VNI", "MTU"}, rows)
				}),
			},
			{
				Name:      "show",
				Usage:     "show a network",
				ArgsUsage: "NAME|ID",
				Flags:     append(controllerFlags(), jsonFlag),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					ref, err := oneArg(c, "network")
					if err != nil {
						return err
					}
					n, err := ctl.GetNetwork(c.Context, ref)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return printJSON(c.App.Writer, n)
					}
					return writeTable(c.App.Writer, []string{"Field", "Value"}, networkFields(n))
				}),
			},
			{
				Name:      "delete",
				Usage:     "delete a network without ports and release its VNI",
				ArgsUsage: "NAME|ID",
				Flags:     controllerFlags(),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					ref, err := oneArg(c, "network")
					if err != nil {
						return err
					}
					return ctl.DeleteNetwork(c.Context, ref)
				}),
			},
		},
	}
}

func networkFields(n control.Network) [][]string {
	return [][]string{
		{"id", n.ID}, {"name", n.Name}, {"provider:network_type", "vxlan"},
		{"provider:segmentation_id", fmt.Sprint(n.VNI)}, {"mtu", fmt.Sprint(n.MTU)},
		{"subnets", prefixes(n.Subnets)}, {"revision", fmt.Sprint(n.Revision)},
	}
}

func prefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}
