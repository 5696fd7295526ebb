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
	"github.com/vxdp/vxdp/state"
)

func sgCommand() *cli.Command {
	findSG := inProject((*control.Controller).FindSecurityGroup)
	return &cli.Command{
		Name:    "sg",
		Aliases: []string{"security-group"},
		Usage:   "security groups and their rules (writes the control plane)",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a security group (it allows everything out and nothing in, as in Neutron)",
				ArgsUsage: "NAME",
				Description: `A new group has Neutron's two rules: everything out, IPv4 and IPv6. Each
project also has a group "default", made on its first use (a port created
without groups joins it), which allows in what comes from its own members.`,
				Flags: slices.Concat(creatorFlags(), []cli.Flag{
					&cli.StringFlag{Name: "description", Usage: "free text"},
					&cli.StringFlag{Name: "id", Usage: "group `UUID` (default: a new one)"},
					&cli.BoolFlag{Name: "stateless", Usage: "track nothing: replies need rules of their own (Neutron's stateful=false)"},
					&cli.BoolFlag{Name: "stateful", Usage: "replies of allowed flows pass (the default)"},
					projectFlag(true),
				}, outputFlags(sgView)),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					name, err := oneArg(c, "group name")
					if err != nil {
						return err
					}
					if c.Bool("stateless") && c.Bool("stateful") {
						return fmt.Errorf("sg create: --stateful and --stateless: give one")
					}
					sg, err := ctl.CreateSecurityGroup(c.Context, control.SecurityGroupSpec{Name: name, Description: c.String("description"),
						ID: c.String("id"), Project: c.String("project"), Stateless: c.Bool("stateless")})
					if err != nil {
						return err
					}
					return printOne(c, sgView, sg)
				}),
			},
			listCommand("list security groups with their rules", sgView, (*control.Controller).ListSecurityGroups,
				func(g control.SecurityGroup) string { return g.Project }),
			showCommand("show a security group and its rules", "group", sgView, findSG, projectFlag(false)),
			deleteCommand("delete a security group no port or rule uses", "group", findSG, (*control.Controller).DeleteSecurityGroup,
				func(g control.SecurityGroup) deleted { return deleted{Kind: "security_group", ID: g.ID, Name: g.Name} }, projectFlag(false)),
			{
				Name:  "rule",
				Usage: "add, list and delete rules",
				Subcommands: []*cli.Command{
					ruleAddCommand(findSG),
					{
						Name:      "list",
						Usage:     "list the rules of a group, or of every group",
						ArgsUsage: "[GROUP]",
						Flags:     slices.Concat(controllerFlags(), []cli.Flag{projectFlag(false)}, outputFlags(ruleView)),
						Action: withController(func(c *cli.Context, ctl *control.Controller) error {
							pos, err := positional(c)
							if err != nil {
								return err
							}
							if len(pos) > 1 {
								return fmt.Errorf("sg rule list: at most one GROUP, got %q", pos)
							}
							rules, err := ctl.ListSecurityGroupRules(c.Context, c.String("project"), strings.Join(pos, ""))
							if err != nil {
								return err
							}
							return printList(c, ruleView, rules)
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

// ruleAddCommand is `vxdp sg rule add`, with the flags of `openstack
// security group rule create`.
func ruleAddCommand(findSG finder[control.SecurityGroup]) *cli.Command {
	return &cli.Command{
		Name:      "add",
		Usage:     "add a rule to a group and print it (its id first)",
		ArgsUsage: "GROUP",
		Description: `For example the seed's fix for ping between vm1 and vm2:
   vxdp sg rule add default --ingress --protocol icmp
Rules only allow; a port gets the union of its groups' rules. A bad rule is
refused with the field and the fix, and nothing is written.`,
		Flags: slices.Concat(controllerFlags(), []cli.Flag{
			&cli.StringFlag{Name: "direction", Value: "ingress", Usage: "ingress (to the VM) or egress (from the VM)"},
			&cli.BoolFlag{Name: "ingress", Usage: "same as --direction ingress"},
			&cli.BoolFlag{Name: "egress", Usage: "same as --direction egress"},
			&cli.StringFlag{Name: "ethertype", Usage: "IPv4 or IPv6 (default: from --remote-ip, else IPv4)"},
			&cli.StringFlag{Name: "protocol", Usage: "tcp, udp, icmp, icmpv6, sctp, dccp, udplite, gre, ..., a number 0-255, or any"},
			&cli.StringFlag{Name: "port-range", Aliases: []string{"dst-port"}, Usage: "destination `PORT[:PORT]` (tcp, udp, sctp, dccp, udplite)"},
			&cli.IntFlag{Name: "icmp-type", Usage: "ICMP `TYPE` 0-255 (every type without it)"},
			&cli.IntFlag{Name: "icmp-code", Usage: "ICMP `CODE` 0-255 (every code of the type without it)"},
			&cli.StringFlag{Name: "remote-ip", Usage: "remote `CIDR`"},
			&cli.StringFlag{Name: "remote-group", Usage: "remote security group `NAME|ID`: its members' addresses"},
			&cli.StringFlag{Name: "remote-address-group", Usage: "remote address group `NAME|ID`: its prefixes"},
			projectFlag(false),
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
			sg, err := findSG(c, ctl, ref)
			if err != nil {
				return err
			}
			r, err := ctl.AddSecurityGroupRule(c.Context, sg.ID, rule)
			if err != nil {
				return err
			}
			if p := rule.RemoteIPPrefix; p.IsValid() && p.Masked() != p {
				fmt.Fprintf(c.App.ErrWriter, "note: --remote-ip %s has host bits set; the rule is for %s (as Neutron normalizes it)\n", p, p.Masked())
			}
			return printOne(c, ruleView, r)
		}),
	}
}

// ruleSpec reads the rule flags; the controller validates the rule.
func ruleSpec(c *cli.Context) (control.SGRule, error) {
	r := control.SGRule{Direction: c.String("direction"), Ethertype: c.String("ethertype"),
		RemoteGroupID: c.String("remote-group"), RemoteAddressGroupID: c.String("remote-address-group")}
	if in, out := c.Bool("ingress"), c.Bool("egress"); in || out {
		want := map[bool]string{true: "ingress", false: "egress"}[in]
		if in && out || c.IsSet("direction") && c.String("direction") != want {
			return r, fmt.Errorf("--ingress, --egress and --direction disagree: give one direction")
		}
		r.Direction = want
	}
	r.Protocol = c.String("protocol")
	if s := c.String("remote-ip"); s != "" {
		p, err := parsePrefix(s)
		if err != nil {
			return r, fmt.Errorf("--remote-ip: %w", err)
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
			return r, fmt.Errorf("--port-range %q: want PORT or MIN:MAX, e.g. 22 or 8000:8080", s)
		}
		r.PortRangeMin, r.PortRangeMax = control.IntPtr(a), control.IntPtr(b)
	}
	if c.IsSet("icmp-type") || c.IsSet("icmp-code") {
		if r.PortRangeMin != nil {
			return r, fmt.Errorf("--icmp-type/--icmp-code and --port-range: ports are for tcp and udp, type and code for icmp; give one")
		}
		if !c.IsSet("icmp-type") {
			return r, fmt.Errorf("--icmp-code %d without --icmp-type: give the type too", c.Int("icmp-code"))
		}
		if p, err := control.ProtocolNumber(r.Protocol, cmp.Or(r.Ethertype, "IPv4")); err == nil && p != state.ProtoICMP && p != state.ProtoICMPv6 {
			return r, fmt.Errorf("--icmp-type/--icmp-code are for --protocol icmp (or icmpv6), not %q", cmp.Or(r.Protocol, "any"))
		}
		r.PortRangeMin = control.IntPtr(c.Int("icmp-type"))
		if c.IsSet("icmp-code") {
			r.PortRangeMax = control.IntPtr(c.Int("icmp-code"))
		}
	}
	return r, nil
}

// parsePrefix reads a CIDR, or an address as its host prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p, nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR like 10.0.0.0/24 or an address", s)
	}
	return netip.PrefixFrom(ip, ip.BitLen()), nil
}

// ruleView is how security group rules print (docs/cli.md).
var ruleView = view[control.SecurityGroupRule]{
	kind: "security_group_rule",
	columns: []column[control.SecurityGroupRule]{
		{key: "id", header: "ID", value: func(r control.SecurityGroupRule) any { return r.ID }},
		{key: "direction", header: "Direction", value: func(r control.SecurityGroupRule) any { return r.Direction }},
		{key: "ethertype", header: "Ethertype", value: func(r control.SecurityGroupRule) any { return r.Ethertype }},
		{key: "protocol", header: "Protocol", value: func(r control.SecurityGroupRule) any { return stringOrNil(r.Protocol) },
			text: func(r control.SecurityGroupRule) string { return cmp.Or(r.Protocol, "any") }},
		{key: "port_range_min", header: "Port Range Min", value: func(r control.SecurityGroupRule) any { return intPtrOrNil(r.PortRangeMin) }},
		{key: "port_range_max", header: "Port Range Max", value: func(r control.SecurityGroupRule) any { return intPtrOrNil(r.PortRangeMax) }},
		{key: "remote_ip_prefix", header: "Remote IP Prefix", value: func(r control.SecurityGroupRule) any {
			if !r.RemoteIPPrefix.IsValid() {
				return nil
			}
			return r.RemoteIPPrefix.String()
		}},
		{key: "remote_group_id", header: "Remote Group", value: func(r control.SecurityGroupRule) any { return stringOrNil(r.RemoteGroupID) }},
		{key: "remote_address_group_id", header: "Remote Address Group", value: func(r control.SecurityGroupRule) any {
			return stringOrNil(r.RemoteAddressGroupID)
		}},
		{key: "security_group_id", header: "Security Group", value: func(r control.SecurityGroupRule) any { return r.SecurityGroupID }},
		{key: "project_id", header: "Project", value: func(r control.SecurityGroupRule) any { return r.Project }},
	},
	list: []string{"id", "direction", "ethertype", "protocol", "port_range_min", "port_range_max", "remote_ip_prefix",
		"remote_group_id", "remote_address_group_id", "security_group_id"},
}

// intPtrOrNil is a pointer's number, null when nil.
func intPtrOrNil(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

// ruleSummary is a rule on one line of a group's table.
func ruleSummary(r control.SGRule) string {
	parts := []string{r.Direction, r.Ethertype, cmp.Or(r.Protocol, "any")}
	if r.PortRangeMin != nil {
		rng := strconv.Itoa(*r.PortRangeMin)
		if r.PortRangeMax != nil {
			rng += ":" + strconv.Itoa(*r.PortRangeMax)
		}
		parts = append(parts, rng)
	}
	switch {
	case r.RemoteIPPrefix.IsValid():
		parts = append(parts, r.RemoteIPPrefix.String())
	case r.RemoteGroupID != "":
		parts = append(parts, "group "+r.RemoteGroupID)
	case r.RemoteAddressGroupID != "":
		parts = append(parts, "address group "+r.RemoteAddressGroupID)
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
		{key: "project_id", header: "Project", value: func(g control.SecurityGroup) any { return control.ProjectOf(g.Project) }},
		{key: "stateful", header: "Stateful", value: func(g control.SecurityGroup) any { return !g.Stateless }},
		{key: "rules", header: "Rules", value: func(g control.SecurityGroup) any { return ruleView.objects(g.GroupRules()) },
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
	list: []string{"id", "name", "description", "project_id", "rules"},
}
