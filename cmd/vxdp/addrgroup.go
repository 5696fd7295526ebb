package main

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/control"
)

// addressGroupCommand is `vxdp address-group`, as `openstack address group`.
func addressGroupCommand() *cli.Command {
	findAG := inProject((*control.Controller).FindAddressGroup)
	addressFlag := &cli.StringSliceFlag{Name: "address", Usage: "`CIDR` or address (repeatable)"}
	return &cli.Command{
		Name:  "address-group",
		Usage: "named lists of prefixes, the remote of rules with --remote-address-group (writes the control plane)",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create an address group",
				ArgsUsage: "NAME",
				Flags: slices.Concat(creatorFlags(), []cli.Flag{addressFlag,
					&cli.StringFlag{Name: "description", Usage: "free text"},
					&cli.StringFlag{Name: "id", Usage: "address group `UUID` (default: a new one)"},
					projectFlag(true),
				}, outputFlags(addressGroupView)),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					name, err := oneArg(c, "address group name")
					if err != nil {
						return err
					}
					addrs, err := addressFlags(c)
					if err != nil {
						return err
					}
					ag, err := ctl.CreateAddressGroup(c.Context, control.AddressGroupSpec{Name: name, Description: c.String("description"),
						Project: c.String("project"), Addresses: addrs, ID: c.String("id")})
					if err != nil {
						return err
					}
					return printOne(c, addressGroupView, ag)
				}),
			},
			{
				Name:      "set",
				Usage:     "add addresses to an address group, rename it",
				ArgsUsage: "NAME|ID",
				Description: `--address adds (repeatable); --no-address empties the group first (both
together replace its addresses). Every rule naming the group follows at once,
and flows it no longer allows are cut.`,
				Flags: slices.Concat(controllerFlags(), []cli.Flag{addressFlag,
					&cli.BoolFlag{Name: "no-address", Usage: "remove every address first"},
					&cli.StringFlag{Name: "name", Usage: "new `NAME`"},
					&cli.StringFlag{Name: "description", Usage: "new description"},
					projectFlag(false),
				}, outputFlags(addressGroupView)),
				Action: withRecord("address group", findAG, func(c *cli.Context, ctl *control.Controller, ag control.AddressGroup) error {
					addrs, err := addressFlags(c)
					if err != nil {
						return err
					}
					u := control.AddressGroupUpdate{Name: c.String("name"), Description: c.String("description"), Clear: c.Bool("no-address"), Add: addrs}
					return updateAddressGroup(c, ctl, ag, u)
				}),
			},
			{
				Name:      "unset",
				Usage:     "remove addresses from an address group",
				ArgsUsage: "NAME|ID",
				Flags:     slices.Concat(controllerFlags(), []cli.Flag{addressFlag, projectFlag(false)}, outputFlags(addressGroupView)),
				Action: withRecord("address group", findAG, func(c *cli.Context, ctl *control.Controller, ag control.AddressGroup) error {
					addrs, err := addressFlags(c)
					if err != nil {
						return err
					}
					if len(addrs) == 0 {
						return fmt.Errorf("address-group unset: give --address")
					}
					return updateAddressGroup(c, ctl, ag, control.AddressGroupUpdate{Remove: addrs})
				}),
			},
			listCommand("list address groups", addressGroupView, (*control.Controller).ListAddressGroups,
				func(g control.AddressGroup) string { return g.Project }),
			showCommand("show an address group", "address group", addressGroupView, findAG, projectFlag(false)),
			deleteCommand("delete an address group no rule names", "address group", findAG, (*control.Controller).DeleteAddressGroup,
				func(g control.AddressGroup) deleted { return deleted{Kind: "address_group", ID: g.ID, Name: g.Name} }, projectFlag(false)),
		},
	}
}

func updateAddressGroup(c *cli.Context, ctl *control.Controller, ag control.AddressGroup, u control.AddressGroupUpdate) error {
	ag, err := ctl.UpdateAddressGroup(c.Context, ag.ID, u)
	if err != nil {
		return err
	}
	return printOne(c, addressGroupView, ag)
}

// addressFlags parses every --address; host bits are refused with the fix.
func addressFlags(c *cli.Context) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range c.StringSlice("address") {
		p, err := parsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("--address: %w", err)
		}
		if p.Masked() != p {
			return nil, fmt.Errorf("--address %s has host bits set: write %s", p, p.Masked())
		}
		out = append(out, p)
	}
	return out, nil
}

// addressGroupView is how address groups print (docs/cli.md).
var addressGroupView = view[control.AddressGroup]{
	kind: "address_group",
	columns: []column[control.AddressGroup]{
		{key: "id", header: "ID", value: func(g control.AddressGroup) any { return g.ID }},
		{key: "name", header: "Name", value: func(g control.AddressGroup) any { return g.Name }},
		{key: "description", header: "Description", value: func(g control.AddressGroup) any { return g.Description }},
		{key: "project_id", header: "Project", value: func(g control.AddressGroup) any { return control.ProjectOf(g.Project) }},
		{key: "addresses", header: "Addresses", value: func(g control.AddressGroup) any { return prefixStrings(g.Addresses) },
			text: func(g control.AddressGroup) string { return strings.Join(prefixStrings(g.Addresses), "\n") }},
		{key: "created_at", header: "Created At", value: func(g control.AddressGroup) any { return timeOrNil(g.CreatedAt) }},
		{key: "revision", header: "Revision", value: func(g control.AddressGroup) any { return g.Revision }},
	},
	list: []string{"id", "name", "description", "project_id", "addresses"},
}
