package main

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
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
				Flags: slices.Concat(creatorFlags(), []cli.Flag{
					&cli.StringFlag{Name: "description", Usage: "free text"},
					&cli.StringFlag{Name: "id", Usage: "group `UUID` (default: a new one)"},
				}, outputFlags(sgView)),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					name, err := oneArg(c, "group name")
					if err != nil {
						return err
					}
					sg, err := ctl.CreateSecurityGroup(c.Context, control.SecurityGroupSpec{Name: name, Description: c.String("description"), ID: c.String("id")})
					if err != nil {
						return err
					}
					return printOne(c, sgView, sg)
				}),
			},
			listCommand("list security groups with their rules", sgView, (*control.Controller).ListSecurityGroups),
			showCommand("show a security group and its rules", "group", sgView, (*control.Controller).GetSecurityGroup),
			{
				Name:      "delete",
				Usage:     "delete a security group no port uses",
				ArgsUsage: "NAME|ID",
				Flags:     append(controllerFlags(), outputFlags(deletedView)...),
				Action: withRecord("group", (*control.Controller).GetSecurityGroup, func(c *cli.Context, ctl *control.Controller, sg control.SecurityGroup) error {
					if err := ctl.DeleteSecurityGroup(c.Context, sg.ID); err != nil {
						return err
					}
					return printDeleted(c, deleted{Kind: "security_group", ID: sg.ID, Name: sg.Name})
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
						Flags: slices.Concat(controllerFlags(), []cli.Flag{
							&cli.StringFlag{Name: "direction", Value: "ingress", Usage: "ingress or egress"},
							&cli.StringFlag{Name: "ethertype", Usage: "IPv4 or IPv6 (default: from --remote-ip, else IPv4)"},
							&cli.StringFlag{Name: "protocol", Usage: "tcp, udp, icmp, icmpv6, sctp, a number, or any"},
							&cli.StringFlag{Name: "port-range", Aliases: []string{"dst-port"}, Usage: "`MIN[:MAX]` ports (tcp/udp/sctp) or TYPE[:CODE] (icmp)"},
							&cli.StringFlag{Name: "remote-ip", Usage: "remote `CIDR`"},
							&cli.StringFlag{Name: "remote-group", Usage: "remote security group `NAME|ID`"},
						}, outputFlags(ruleView)),
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
							return printOne(c, ruleView, r)
						}),
					},
					{
						Name:      "delete",
						Usage:     "delete a rule",
						ArgsUsage: "RULE_ID",
						Flags:     append(controllerFlags(), outputFlags(deletedView)...),
						Action: withController(func(c *cli.Context, ctl *control.Controller) error {
							id, err := oneArg(c, "rule id")
							if err != nil {
								return err
							}
							if err := ctl.DeleteSecurityGroupRule(c.Context, id); err != nil {
								return err
							}
							return printDeleted(c, deleted{Kind: "security_group_rule", ID: id})
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

// ruleView is how security group rules print (docs/cli.md).
var ruleView = view[control.SGRule]{
	kind: "security_group_rule",
	columns: []column[control.SGRule]{
		{key: "id", header: "ID", value: func(r control.SGRule) any { return r.ID }},
		{key: "direction", header: "Direction", value: func(r control.SGRule) any { return r.Direction }},
		{key: "ethertype", header: "Ethertype", value: func(r control.SGRule) any { return r.Ethertype }},
		{key: "protocol", header: "Protocol", value: func(r control.SGRule) any { return stringOrNil(r.Protocol) },
			text: func(r control.SGRule) string { return cmp.Or(r.Protocol, "any") }},
		{key: "port_range_min", header: "Port Range Min", value: func(r control.SGRule) any { return portBound(r, r.PortRangeMin) }},
		{key: "port_range_max", header: "Port Range Max", value: func(r control.SGRule) any { return portBound(r, r.PortRangeMax) }},
		{key: "remote_ip_prefix", header: "Remote IP Prefix", value: func(r control.SGRule) any {
			if !r.RemoteIPPrefix.IsValid() {
				return nil
			}
			return r.RemoteIPPrefix.String()
		}},
		{key: "remote_group_id", header: "Remote Group", value: func(r control.SGRule) any { return stringOrNil(r.RemoteGroupID) }},
	},
}

// portBound is a port range bound, null when the rule has no range.
func portBound(r control.SGRule, v int) any {
	if r.PortRangeMin == 0 && r.PortRangeMax == 0 {
		return nil
	}
	return v
}

// ruleSummary is a rule on one line of a group's table.
func ruleSummary(r control.SGRule) string {
	parts := []string{r.Direction, r.Ethertype, cmp.Or(r.Protocol, "any")}
	if r.PortRangeMin != 0 || r.PortRangeMax != 0 {
		parts = append(parts, fmt.Sprintf("%d:%d", r.PortRangeMin, r.PortRangeMax))
	}
	switch {
	case r.RemoteIPPrefix.IsValid():
		parts = append(parts, r.RemoteIPPrefix.String())
	case r.RemoteGroupID != "":
		parts = append(parts, "group "+r.RemoteGroupID)
	}
	return strings.Join(parts, " ") + " (" + r.ID + ")"
}

// sgView is how security groups print (docs/cli.md).
var sgView = view[control.SecurityGroup]{
	kind: "security_group",
	columns: []column[control.SecurityGroup]{
		{key: "id", header: "ID", value: func(g control.SecurityGroup) any { return g.ID }},
		{key: "name", header: "Name", value: func(g control.SecurityGroup) any { return g.Name }},
		{key: "description", header: "Description", value: func(g control.SecurityGroup) any { return g.Description }},
		{key: "rules", header: "Rules", value: func(g control.SecurityGroup) any { return ruleView.objects(g.Rules) },
			text: func(g control.SecurityGroup) string {
				lines := make([]string, len(g.Rules))
				for i, r := range g.Rules {
					lines[i] = ruleSummary(r)
				}
				return strings.Join(lines, "\n")
			}},
		{key: "created_at", header: "Created At", value: func(g control.SecurityGroup) any { return timeOrNil(g.CreatedAt) }},
		{key: "revision", header: "Revision", value: func(g control.SecurityGroup) any { return g.Revision }},
	},
	list: []string{"id", "name", "description", "rules"},
}
