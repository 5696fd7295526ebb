package main

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/state"
)

// subnetCommand is `vxdp subnet`, in the words of `openstack subnet`.
func subnetCommand() *cli.Command {
	return &cli.Command{
		Name:  "subnet",
		Usage: "create, change, list and delete subnets: a network's address ranges and what DHCP at the port hands out (writes the control plane)",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "add a subnet to a network",
				ArgsUsage: "[NAME]",
				Description: `As "openstack subnet create": the gateway defaults to the range's first
address, DHCP at the port is on (the VM's port program answers DHCPv4 with
the port's fixed IP, the gateway, the DNS servers, the network's MTU and DNS
domain, the port's DNS name) unless --no-dhcp leaves DHCP to the network
(e.g. to Neutron's DHCP agent). Answers come from --dhcp-server, default the
gateway: give the address of the network's DHCP port when taking over from
Neutron. Every fixed IP of a port must lie in a subnet of its network.

  vxdp subnet create --network vxlan100_net --subnet-range 172.16.100.0/24 \
      --dns-nameserver 172.16.100.10 --dhcp-server 172.16.100.10 vxlan100_subnet`,
				Flags: slices.Concat(controllerFlags(), []cli.Flag{
					&cli.StringFlag{Name: "network", Usage: "network `NAME|ID` (required)"},
					&cli.StringFlag{Name: "subnet-range", Usage: "`CIDR` of the subnet (required), e.g. 172.16.100.0/24"},
					&cli.StringFlag{Name: "gateway", Usage: "gateway `IP|auto|none` (default auto: the first address)"},
					&cli.BoolFlag{Name: "no-gateway", Usage: "no gateway (same as --gateway none)"},
					repeatableFlag("dns-nameserver", "DNS server `IP` DHCP hands out (repeatable)"),
					&cli.BoolFlag{Name: "dhcp", Usage: "DHCP at the port on (the default)"},
					&cli.BoolFlag{Name: "no-dhcp", Usage: "DHCP at the port off: the VMs' DHCP goes to the network"},
					&cli.StringFlag{Name: "dhcp-server", Usage: "`IP` DHCP answers come from (default: the gateway)"},
					&cli.StringFlag{Name: "lease", Usage: "lease `TIME`: seconds, a duration like 12h, or infinite (default 86400)"},
					&cli.StringFlag{Name: "id", Usage: "subnet `UUID` (default: a new one)"},
				}, outputFlags(subnetView)),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					spec, err := subnetSpec(c)
					if err != nil {
						return err
					}
					s, err := ctl.CreateSubnet(c.Context, spec)
					if err != nil {
						return err
					}
					return printOne(c, subnetView, s)
				}),
			},
			{
				Name:      "set",
				Usage:     "change a subnet's gateway, DNS servers, DHCP, DHCP server, lease or name",
				ArgsUsage: "SUBNET",
				Description: `As "openstack subnet set": --dns-nameserver adds a server (repeatable),
--no-dns-nameservers clears them first (both together replace them). Every
agent with a port on the network applies the change at once; a VM sees it at
its next renewal.`,
				Flags: slices.Concat(controllerFlags(), []cli.Flag{
					&cli.StringFlag{Name: "name", Usage: "new `NAME`"},
					&cli.StringFlag{Name: "gateway", Usage: "gateway `IP|none`"},
					&cli.BoolFlag{Name: "no-gateway", Usage: "no gateway (same as --gateway none)"},
					repeatableFlag("dns-nameserver", "add DNS server `IP` (repeatable)"),
					&cli.BoolFlag{Name: "no-dns-nameservers", Usage: "clear the DNS servers first"},
					&cli.BoolFlag{Name: "dhcp", Usage: "turn DHCP at the port on"},
					&cli.BoolFlag{Name: "no-dhcp", Usage: "turn DHCP at the port off: the VMs' DHCP goes to the network"},
					&cli.StringFlag{Name: "dhcp-server", Usage: "`IP|none` DHCP answers come from (none: the gateway)"},
					&cli.StringFlag{Name: "lease", Usage: "lease `TIME`: seconds, a duration like 12h, or infinite"},
				}, outputFlags(subnetView)),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					ref, err := oneArg(c, "subnet")
					if err != nil {
						return err
					}
					u, err := subnetUpdate(c)
					if err != nil {
						return err
					}
					s, err := ctl.UpdateSubnet(c.Context, ref, u)
					if err != nil {
						return err
					}
					return printOne(c, subnetView, s)
				}),
			},
			{
				Name:  "list",
				Usage: "list subnets",
				Flags: slices.Concat(controllerFlags(), []cli.Flag{
					&cli.StringFlag{Name: "network", Usage: "only subnets of network `NAME|ID`"},
				}, outputFlags(subnetView)),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					subnets, err := ctl.ListSubnets(c.Context, c.String("network"))
					if err != nil {
						return err
					}
					return printList(c, subnetView, subnets)
				}),
			},
			showCommand("show a subnet", "subnet", subnetView, byRef((*control.Controller).GetSubnet)),
			deleteCommand("delete a subnet no port has an address in", "subnet", byRef((*control.Controller).GetSubnet),
				(*control.Controller).DeleteSubnet, func(s control.Subnet) deleted { return deleted{Kind: "subnet", ID: s.ID, Name: s.Name} }),
		},
	}
}

// subnetSpec validates the create flags; nothing is written if it fails.
func subnetSpec(c *cli.Context) (control.SubnetSpec, error) {
	pos, err := positional(c)
	if err != nil {
		return control.SubnetSpec{}, err
	}
	if err := need(c, "network", "subnet-range"); err != nil {
		return control.SubnetSpec{}, err
	}
	spec := control.SubnetSpec{Network: c.String("network"), ID: c.String("id")}
	switch len(pos) {
	case 0:
	case 1:
		spec.Name = pos[0]
	default:
		return spec, fmt.Errorf("subnet create: at most one NAME, got %q", pos)
	}
	if spec.CIDR, err = parseCIDR("--subnet-range", c.String("subnet-range")); err != nil {
		return spec, err
	}
	if gw, set, err := gatewayFlag(c); err != nil {
		return spec, err
	} else if set {
		spec.Gateway, spec.NoGateway = gw, !gw.IsValid()
	}
	if spec.DNS, err = addrFlags(c, "dns-nameserver"); err != nil {
		return spec, err
	}
	dhcp, err := dhcpFlag(c)
	if err != nil {
		return spec, err
	}
	spec.NoDHCP = dhcp != nil && !*dhcp
	if v := c.String("dhcp-server"); v != "" {
		if spec.DHCPServer, err = parseAddr("--dhcp-server", v); err != nil {
			return spec, err
		}
	}
	if v := c.String("lease"); v != "" {
		if spec.LeaseSeconds, err = parseLease(v); err != nil {
			return spec, err
		}
	}
	return spec, nil
}

// subnetUpdate reads the set flags.
func subnetUpdate(c *cli.Context) (control.SubnetUpdate, error) {
	var u control.SubnetUpdate
	if c.IsSet("name") {
		name := c.String("name")
		u.Name = &name
	}
	gw, set, err := gatewayFlag(c)
	if err != nil {
		return u, err
	}
	if set {
		u.Gateway = &gw
	}
	u.ClearDNS = c.Bool("no-dns-nameservers")
	if u.AddDNS, err = addrFlags(c, "dns-nameserver"); err != nil {
		return u, err
	}
	if u.DHCP, err = dhcpFlag(c); err != nil {
		return u, err
	}
	if v := c.String("dhcp-server"); v != "" {
		var ip netip.Addr
		if v != "none" {
			if ip, err = parseAddr("--dhcp-server", v); err != nil {
				return u, err
			}
		}
		u.DHCPServer = &ip
	}
	if v := c.String("lease"); v != "" {
		secs, err := parseLease(v)
		if err != nil {
			return u, err
		}
		u.LeaseSeconds = &secs
	}
	if u.Name == nil && u.Gateway == nil && !u.ClearDNS && len(u.AddDNS) == 0 && u.DHCP == nil && u.DHCPServer == nil && u.LeaseSeconds == nil {
		return u, fmt.Errorf("subnet set: nothing to change: give --name, --gateway, --no-gateway, --dns-nameserver, --no-dns-nameservers, --dhcp, --no-dhcp, --dhcp-server or --lease")
	}
	return u, nil
}

// gatewayFlag reads --gateway IP|auto|none and --no-gateway: the gateway
// (invalid for none) and whether one was given ("auto": not given).
func gatewayFlag(c *cli.Context) (netip.Addr, bool, error) {
	v, no := c.String("gateway"), c.Bool("no-gateway")
	switch {
	case v != "" && no:
		return netip.Addr{}, false, fmt.Errorf("--gateway %s and --no-gateway: give one", v)
	case no || v == "none":
		return netip.Addr{}, true, nil
	case v == "" || v == "auto":
		return netip.Addr{}, false, nil
	}
	ip, err := parseAddr("--gateway", v)
	return ip, err == nil, err
}

// dhcpFlag reads --dhcp and --no-dhcp (nil: neither).
func dhcpFlag(c *cli.Context) (*bool, error) {
	on, off := c.Bool("dhcp"), c.Bool("no-dhcp")
	switch {
	case on && off:
		return nil, fmt.Errorf("--dhcp and --no-dhcp: give one")
	case on || off:
		return &on, nil
	}
	return nil, nil
}

// addrFlags reads a repeatable flag of IP addresses.
func addrFlags(c *cli.Context, name string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, v := range repeated(c, name) {
		ip, err := parseAddr("--"+name, v)
		if err != nil {
			return nil, err
		}
		out = append(out, ip)
	}
	return out, nil
}

// parseLease reads a lease time: seconds, a Go duration or "infinite".
func parseLease(v string) (int, error) {
	if v == "infinite" || v == "-1" {
		return state.InfiniteLease, nil
	}
	secs, err := strconv.Atoi(v)
	if err != nil {
		d, derr := time.ParseDuration(v)
		if derr != nil || d%time.Second != 0 {
			return 0, fmt.Errorf("--lease %q: want seconds (86400), a duration (24h) or infinite", v)
		}
		secs = int(d / time.Second)
	}
	if secs < 120 {
		return 0, fmt.Errorf("--lease %q: at least 120 seconds (2m), or infinite", v)
	}
	return secs, nil
}

// subnetView is how subnets print (docs/cli.md).
var subnetView = view[control.Subnet]{
	kind: "subnet",
	columns: []column[control.Subnet]{
		{key: "id", header: "ID", value: func(s control.Subnet) any { return s.ID }},
		{key: "name", header: "Name", value: func(s control.Subnet) any { return s.Name }},
		{key: "network_id", header: "Network ID", value: func(s control.Subnet) any { return s.NetworkID }},
		{key: "network", header: "Network", value: func(s control.Subnet) any { return s.NetworkName }},
		{key: "cidr", header: "Subnet", value: func(s control.Subnet) any { return s.CIDR.String() }},
		{key: "gateway_ip", header: "Gateway", value: func(s control.Subnet) any { return addrOrNil(s.Gateway) }},
		{key: "dns_nameservers", header: "DNS Nameservers", value: func(s control.Subnet) any { return addrStrings(s.DNS) }},
		{key: "enable_dhcp", header: "DHCP", value: func(s control.Subnet) any { return s.DHCP }},
		{key: "dhcp_server", header: "DHCP Server", value: func(s control.Subnet) any {
			if s.DHCPServer.IsValid() {
				return s.DHCPServer.String()
			}
			return addrOrNil(s.Gateway) // answers come from the gateway
		}},
		{key: "lease_seconds", header: "Lease", value: func(s control.Subnet) any {
			if s.LeaseSeconds == state.InfiniteLease {
				return -1
			}
			return cmp.Or(s.LeaseSeconds, state.DefaultLeaseSeconds)
		}, text: func(s control.Subnet) string {
			if s.LeaseSeconds == state.InfiniteLease {
				return "infinite"
			}
			return (time.Duration(cmp.Or(s.LeaseSeconds, state.DefaultLeaseSeconds)) * time.Second).String()
		}},
		{key: "project_id", header: "Project", value: func(s control.Subnet) any { return control.ProjectOf(s.Project) }},
		{key: "created_at", header: "Created At", value: func(s control.Subnet) any { return timeOrNil(s.CreatedAt) }},
		{key: "updated_at", header: "Updated At", value: func(s control.Subnet) any { return timeOrNil(s.UpdatedAt) }},
		{key: "revision", header: "Revision", value: func(s control.Subnet) any { return s.Revision }},
	},
	list: []string{"id", "name", "network", "cidr", "gateway_ip", "enable_dhcp"},
}
