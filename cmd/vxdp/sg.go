package main

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/control"
)

func sgCommand() *cli.Command {
	return &cli.Command{
		Name:    "sg",
		Aliases: []string{"security-group"},
		Usage:   "security groups and their rules (writes the control plane)",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a security group (no rules: ingress is denied, as in Neutron)",
				ArgsUsage: "NAME",
				Flags: append(controllerFlags(),
					&cli.StringFlag{Name: "description", Usage: "free text"},
					&cli.StringFlag{Name: "id", Usage: "group `UUID` (default: a new one)"},
					jsonFlag),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					name, err := oneArg(c, "group name")
					if err != nil {
						return err
					}
					sg, err := ctl.CreateSecurityGroup(c.Context, control.SecurityGroupSpec{Name: name, Description: c.String("description"), ID: c.String("id")})
					if err != nil {
						return err
					}
					return printGroups(c, []control.SecurityGroup{sg})
				}),
			},
			{
				Name:  "list",
				Usage: "list security groups with their rules",
				Flags: append(controllerFlags(), jsonFlag),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					sgs, err := ctl.ListSecurityGroups(c.Context)
					if err != nil {
						return err
					}
					return printGroups(c, sgs)
				}),
			},
			{
				Name:      "delete",
				Usage:     "delete a security group no port uses",
				ArgsUsage: "NAME|ID",
				Flags:     controllerFlags(),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					ref, err := oneArg(c, "group")
					if err != nil {
						return err
					}
					return ctl.DeleteSecurityGroup(c.Context, ref)
				}),
			},
			{
				Name:  "rule",
				Usage: "add or delete rules",
				Subcommands: []*cli.Command{
					{
						Name:      "add",
						Usage:     "add a rule to a group",
						ArgsUsage: "GROUP",
						Description: `For example the seed's fix for ping between vm1 and vm2:
   vxdp sg rule add default --direction ingress --protocol icmp`,
						Flags: append(controllerFlags(),
							&cli.StringFlag{Name: "direction", Value: "ingress", Usage: "ingress or egress"},
							&cli.StringFlag{Name: "ethertype", Usage: "IPv4 or IPv6 (default: from --remote-ip, else IPv4)"},
							&cli.StringFlag{Name: "protocol", Usage: "tcp, udp, icmp, icmpv6, sctp, a number, or any"},
							&cli.StringFlag{Name: "port-range", Aliases: []string{"dst-port"}, Usage: "`MIN[:MAX]` ports (tcp/udp/sctp) or TYPE[:CODE] (icmp)"},
							&cli.StringFlag{Name: "remote-ip", Usage: "remote `CIDR`"},
							&cli.StringFlag{Name: "remote-group", Usage: "remote security group `NAME|ID`"},
							jsonFlag),
						Action: withController(func(c *cli.Context, ctl *control.Controller) error {
							ref, err := oneArg(c, "group")
							if err != nil {
								return err
							}
							rule, err := ruleSpec(c)
							if err != nil {
								return err
							}
							r, err := ctl.AddSecurityGroupRule(c.Context, ref, rule)
							if err != nil {
								return err
							}
							if c.Bool("json") {
								return printJSON(c.App.Writer, r)
							}
							return writeTable(c.App.Writer, ruleHeader, [][]string{ruleRow(r)})
						}),
					},
					{
						Name:      "delete",
						Usage:     "delete a rule",
						ArgsUsage: "RULE_ID",
						Flags:     controllerFlags(),
						Action: withController(func(c *cli.Context, ctl *control.Controller) error {
							id, err := oneArg(c, "rule id")
							if err != nil {
								return err
							}
							return ctl.DeleteSecurityGroupRule(c.Context, id)
						}),
					},
				},
			},
		},
	}
}

// ruleSpec validates the rule flags.
func ruleSpec(c *cli.Context) (control.SGRule, error) {
	r := control.SGRule{Direction: c.String("direction"), Ethertype: c.String("ethertype"), RemoteGroupID: c.String("remote-group")}
	if p := strings.ToLower(c.String("protocol")); p != "any" {
		r.Protocol = p
	}
	if s := c.String("remote-ip"); s != "" {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			ip, ierr := netip.ParseAddr(s)
			if ierr != nil {
				return r, fmt.Errorf("--remote-ip %q: not a CIDR like 0.0.0.0/0", s)
			}
			p = netip.PrefixFrom(ip, ip.BitLen())
		}
		r.RemoteIPPrefix = p
	}
	if s := c.String("port-range"); s != "" {
		lo, hi, ranged := strings.Cut(s, ":")
		a, err1 := strconv.Atoi(lo)
		b, err2 := a, error(nil)
		if ranged {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil {
			return r, fmt.Errorf("--port-range %q: want MIN[:MAX], e.g. 22 or 8000:8080", s)
		}
		r.PortRangeMin, r.PortRangeMax = a, b
	}
	return r, nil
}

var ruleHeader = []string{"ID", "Direction", "Ethertype", "Protocol", "Port Range", "Remote"}

func ruleRow(r control.SGRule) []string {
	proto := r.Protocol
	if proto == "" {
		proto = "any"
	}
	ports := ""
	if r.PortRangeMin != 0 || r.PortRangeMax != 0 {
		ports = fmt.Sprintf("%d:%d", r.PortRangeMin, r.PortRangeMax)
	}
	remote := ""
	switch {
	case r.RemoteIPPrefix.IsValid():
		remote = r.RemoteIPPrefix.String()
	case r.RemoteGroupID != "":
		remote = "group " + r.RemoteGroupID
	}
	return []string{r.ID, r.Direction, r.Ethertype, proto, ports, remote}
}

func printGroups(c *cli.Context, sgs []control.SecurityGroup) error {
	if c.Bool("json") {
		return printJSON(c.App.Writer, sgs)
	}
	rows := make([][]string, len(sgs))
	for i, sg := range sgs {
		rules := make([]string, len(sg.Rules))
		for j, r := range sg.Rules {
			cells := ruleRow(r)
			rules[j] = strings.TrimSpace(strings.Join(cells[1:], " ")) + " (" + r.ID + ")"
		}
		rows[i] = []string{sg.ID, sg.Name, sg.Description, strings.Join(rules, "\n")}
	}
	return writeTable(c.App.Writer, []string{"ID", "Name", "Description", "Rules"}, rows)
}
