package main

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/state"
)

func networkCommand() *cli.Command {
	return &cli.Command{
		Name:  "network",
		Usage: "create, change, list and delete networks: VXLAN, or provider VLAN and flat networks (writes the control plane)",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a network",
				ArgsUsage: "NAME",
				Description: `A VXLAN network by default. Without --vni a VNI is allocated from
--vni-ranges (ml2 vni_ranges, default 1001:2000), as for a regular Neutron
user; an administrator may pick any VNI with --vni.

A provider network rides a physical network, as Neutron's --provider-* flags:
  vxdp network create --provider-network-type vlan --provider-physical-network default --provider-segment 99 vlan99
  vxdp network create --provider-network-type flat --provider-physical-network external external
The server allows what its --network-vlan-ranges (default default:1:4000) and
--flat-networks (default external) say; a VLAN network without a segment gets
one of its physical network's range. Whatever the type, the segment is
reserved atomically: two networks never share one. Agents map physical
networks to interfaces with physical_interface_mappings.

--subnet CIDR makes a subnet with Neutron's defaults (gateway the first
address, DHCP at the port on); "vxdp subnet create" sets the rest.`,
				Flags: slices.Concat(creatorFlags(), []cli.Flag{vniRangesFlag(),
					&cli.StringFlag{Name: "provider-network-type", Aliases: []string{"type"}, Usage: "`TYPE`: vxlan (default), vlan or flat"},
					&cli.StringFlag{Name: "provider-physical-network", Aliases: []string{"physical-network"}, Usage: "`PHYSNET` of a vlan or flat network (e.g. default, external)"},
					&cli.UintFlag{Name: "provider-segment", Aliases: []string{"segment"}, Usage: "`ID`: the VLAN of a vlan network (default: allocated), the VNI of a vxlan one"},
					&cli.UintFlag{Name: "vni", Usage: "VXLAN network identifier 1-16777215 (administrators)"},
					&cli.IntFlag{Name: "mtu", Usage: "network MTU (default 1450 for vxlan, 1500 for vlan and flat)"},
					&cli.StringSliceFlag{Name: "subnet", Usage: "`CIDR` of a subnet with Neutron's defaults (repeatable)"},
					&cli.StringFlag{Name: "dns-domain", Usage: "`DOMAIN` DHCP hands out (default openstacklocal)"},
					&cli.StringFlag{Name: "id", Usage: "network `UUID` (default: a new one)"},
					projectFlag(true),
				}, outputFlags(networkView)),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					name, err := oneArg(c, "network name")
					if err != nil {
						return err
					}
					spec := control.NetworkSpec{Name: name, MTU: c.Int("mtu"), ID: c.String("id"), Project: c.String("project"),
						NetworkType: c.String("provider-network-type"), PhysicalNetwork: c.String("provider-physical-network"),
						DNSDomain: c.String("dns-domain")}
					if v := c.Uint("vni"); c.IsSet("vni") {
						if err := control.ValidateVNI(uint32(min(v, 1<<24))); err != nil || v > 1<<24 {
							return fmt.Errorf("--vni %d: out of range 1-16777215", v)
						}
						spec.VNI = uint32(v)
					}
					if v := c.Uint("provider-segment"); c.IsSet("provider-segment") {
						if v == 0 || v > 1<<24 {
							return fmt.Errorf("--provider-segment %d: a VLAN id 1-4094, or a VNI 1-16777215", v)
						}
						spec.Segment = uint32(v)
					}
					for _, s := range c.StringSlice("subnet") {
						p, err := parseCIDR("--subnet", s)
						if err != nil {
							return err
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
			{
				Name:      "set",
				Usage:     "change a network's name or DNS domain",
				ArgsUsage: "NETWORK",
				Flags: slices.Concat(controllerFlags(), []cli.Flag{
					&cli.StringFlag{Name: "name", Usage: "new `NAME`"},
					&cli.StringFlag{Name: "dns-domain", Usage: "`DOMAIN` DHCP hands out"},
					&cli.BoolFlag{Name: "no-dns-domain", Usage: "hand out the default domain (openstacklocal)"},
				}, outputFlags(networkView)),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					ref, err := oneArg(c, "network")
					if err != nil {
						return err
					}
					var u control.NetworkUpdate
					if c.IsSet("name") {
						name := c.String("name")
						u.Name = &name
					}
					if c.IsSet("dns-domain") && c.Bool("no-dns-domain") {
						return fmt.Errorf("network set: --dns-domain and --no-dns-domain: give one")
					}
					if c.IsSet("dns-domain") || c.Bool("no-dns-domain") {
						d := c.String("dns-domain")
						u.DNSDomain = &d
					}
					if u == (control.NetworkUpdate{}) {
						return fmt.Errorf("network set: nothing to change: give --name, --dns-domain or --no-dns-domain")
					}
					n, err := ctl.UpdateNetwork(c.Context, ref, u)
					if err != nil {
						return err
					}
					return printOne(c, networkView, n)
				}),
			},
			listCommand("list networks", networkView, (*control.Controller).ListNetworks, func(n control.Network) string { return n.Project }),
			showCommand("show a network", "network", networkView, byRef((*control.Controller).GetNetwork)),
			deleteCommand("delete a network without ports and release its segment", "network", byRef((*control.Controller).GetNetwork),
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
		{key: "subnets", header: "Subnets", value: func(n control.Network) any { return prefixStrings(n.CIDRs()) },
			text: func(n control.Network) string { return strings.Join(prefixStrings(n.CIDRs()), ", ") }},
		{key: "network_type", header: "Network Type", value: func(n control.Network) any { return n.Kind() }},
		{key: "physical_network", header: "Physical Network", value: func(n control.Network) any { return stringOrNil(n.PhysicalNetwork) }},
		{key: "segmentation_id", header: "Segment", value: func(n control.Network) any {
			switch n.Kind() {
			case state.NetworkVXLAN:
				return n.VNI
			case state.NetworkVLAN:
				return n.SegmentationID
			}
			return nil
		}},
		{key: "vni", header: "VNI", value: func(n control.Network) any {
			if n.Provider() {
				return nil
			}
			return n.VNI
		}},
		{key: "mtu", header: "MTU", value: func(n control.Network) any { return n.MTU }},
		{key: "dns_domain", header: "DNS Domain", value: func(n control.Network) any { return stringOrNil(n.DNSDomain) }},
		{key: "project_id", header: "Project", value: func(n control.Network) any { return control.ProjectOf(n.Project) }},
		{key: "created_at", header: "Created At", value: func(n control.Network) any { return timeOrNil(n.CreatedAt) }},
		{key: "revision", header: "Revision", value: func(n control.Network) any { return n.Revision }},
	},
	list: []string{"id", "name", "subnets", "network_type", "physical_network", "segmentation_id", "mtu"},
}

// prefixStrings is never nil, so JSON shows [] for none.
func prefixStrings(ps []netip.Prefix) []string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return s
}

// parseCIDR reads a network address in CIDR form for flag.
func parseCIDR(flag, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return p, fmt.Errorf("%s %q: not a CIDR like 172.16.100.0/24", flag, s)
	}
	if p.Masked() != p {
		return p, fmt.Errorf("%s %q has host bits set: write %s", flag, s, p.Masked())
	}
	return p, nil
}

// parseAddr reads an IP address for flag.
func parseAddr(flag, s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return ip, fmt.Errorf("%s %q: not an IP address like 172.16.100.1", flag, s)
	}
	return ip, nil
}
