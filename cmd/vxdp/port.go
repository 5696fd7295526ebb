package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/state"
)

func portCommand() *cli.Command {
	revisionFlag := &cli.Uint64Flag{Name: "revision", Usage: "fail unless the port is at this `REVISION` (compare-and-set; default: the one just read)"}
	return &cli.Command{
		Name:  "port",
		Usage: "create, bind, unbind, set, unset, delete and list ports (writes the control plane)",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a port on a network",
				ArgsUsage: "[NAME]",
				Description: `The port id is a new UUID; its tap is "tap" + the first 11 characters of
the id, as Neutron names it. Without --mac a MAC fa:16:3e:xx:xx:xx is drawn.
MAC and fixed IPs are unique per network; a bad MAC, IP, CIDR or an unknown
network or security group is refused and nothing is written.`,
				Flags: slices.Concat(controllerFlags(), []cli.Flag{
					&cli.StringFlag{Name: "network", Usage: "network `NAME|ID` (required)"},
					&cli.StringFlag{Name: "mac", Aliases: []string{"mac-address"}, Usage: "`MAC` address (default fa:16:3e:xx:xx:xx)"},
					&cli.StringSliceFlag{Name: "fixed-ip", Usage: "fixed `IP` (or ip-address=IP; repeatable)"},
					&cli.BoolFlag{Name: "no-port-security", Usage: "turn port security off (no anti-spoofing, no security groups)"},
					repeatableFlag("allowed-address-pair", "`IP[/LEN][,MAC]` the port may also send from (repeatable)", "allowed-address"),
					&cli.StringSliceFlag{Name: "security-group", Usage: "security group `NAME|ID` (repeatable)"},
					&cli.StringFlag{Name: "host", Usage: "bind the port to `HOST` at once"},
					&cli.StringFlag{Name: "device-owner", Usage: "device owner (e.g. compute:nova, network:dhcp)"},
					&cli.StringFlag{Name: "dns-name", Usage: "host `NAME` DHCP gives the VM (default host-<address>)"},
					&cli.StringFlag{Name: "id", Usage: "port `UUID` (default: a new one)"},
					projectFlag(true),
				}, outputFlags(portView)),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					spec, err := portSpec(c)
					if err != nil {
						return err
					}
					p, err := ctl.CreatePort(c.Context, spec)
					if err != nil {
						return err
					}
					return printPort(c, p)
				}),
			},
			{
				Name:      "bind",
				Usage:     "bind a port to a host (live migration: compare-and-set on the port's revision)",
				ArgsUsage: "PORT",
				Flags: slices.Concat(controllerFlags(), []cli.Flag{revisionFlag,
					&cli.StringFlag{Name: "host", Usage: "`HOST` the port is bound to (required)"},
					&cli.DurationFlag{Name: "wait", Usage: "wait up to `DURATION` until every agent hosting the network applied the move, and print how long it took"},
				}, outputFlags(portView)),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					ref, err := oneArg(c, "port")
					if err != nil {
						return err
					}
					if err := need(c, "host"); err != nil {
						return err
					}
					if c.Duration("wait") > 0 {
						return bindAndWait(c, ctl, ref)
					}
					p, err := ctl.BindPort(c.Context, ref, c.String("host"), c.Uint64("revision"))
					if err != nil {
						return err
					}
					return printPort(c, p)
				}),
			},
			{
				Name:      "unbind",
				Usage:     "unbind a port from its host",
				ArgsUsage: "PORT",
				Flags:     slices.Concat(controllerFlags(), []cli.Flag{revisionFlag}, outputFlags(portView)),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					ref, err := oneArg(c, "port")
					if err != nil {
						return err
					}
					p, err := ctl.UnbindPort(c.Context, ref, c.Uint64("revision"))
					if err != nil {
						return err
					}
					return printPort(c, p)
				}),
			},
			{
				Name:      "delete",
				Usage:     "delete a port",
				ArgsUsage: "PORT",
				Flags:     slices.Concat(controllerFlags(), []cli.Flag{revisionFlag}, outputFlags(deletedView)),
				Action: withRecord("port", byRef((*control.Controller).GetPort), func(c *cli.Context, ctl *control.Controller, p control.Port) error {
					if err := ctl.DeletePort(c.Context, p.ID, c.Uint64("revision")); err != nil {
						return err
					}
					return printDeleted(c, deleted{Kind: "port", ID: p.ID, Name: p.Name})
				}),
			},
			portSetCommand(revisionFlag),
			portUnsetCommand(revisionFlag),
			showCommand("show a port", "port", portView, byRef((*control.Controller).GetPort)),
			{
				Name:  "list",
				Usage: "list ports with their status",
				Flags: slices.Concat(controllerFlags(), []cli.Flag{
					&cli.StringFlag{Name: "network", Usage: "only ports of network `NAME|ID`"},
					&cli.StringFlag{Name: "host", Usage: "only ports bound to `HOST`"},
				}, outputFlags(portView)),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					ports, err := ctl.ListPorts(c.Context, control.PortFilter{Network: c.String("network"), Host: c.String("host")})
					if err != nil {
						return err
					}
					return printList(c, portView, ports)
				}),
			},
		},
	}
}

// portSpec validates the create flags; nothing is written if it fails.
func portSpec(c *cli.Context) (control.PortSpec, error) {
	pos, err := positional(c)
	if err != nil {
		return control.PortSpec{}, err
	}
	if err := need(c, "network"); err != nil {
		return control.PortSpec{}, err
	}
	spec := control.PortSpec{
		Network: c.String("network"), NoPortSecurity: c.Bool("no-port-security"), SecurityGroups: c.StringSlice("security-group"),
		Host: c.String("host"), DeviceOwner: c.String("device-owner"), ID: c.String("id"), Project: c.String("project"),
		DNSName: c.String("dns-name"),
	}
	switch len(pos) {
	case 0:
	case 1:
		spec.Name = pos[0]
	default:
		return spec, fmt.Errorf("port create: at most one NAME, got %q", pos)
	}
	if m := c.String("mac"); m != "" {
		mac, err := state.ParseMAC(m)
		if err != nil {
			return spec, fmt.Errorf("--mac: %w", err)
		}
		if !mac.IsUnicast() {
			return spec, fmt.Errorf("--mac %s: not a unicast address (the first octet must be even)", m)
		}
		spec.MAC = mac
	}
	for _, s := range c.StringSlice("fixed-ip") {
		v := strings.TrimPrefix(strings.TrimSpace(s), "ip-address=")
		ip, err := netip.ParseAddr(v)
		if err != nil {
			return spec, fmt.Errorf("--fixed-ip %q: not an IP address like 172.16.100.19", s)
		}
		spec.FixedIPs = append(spec.FixedIPs, ip)
	}
	for _, s := range repeated(c, "allowed-address-pair") {
		ap, err := parseAddressPair(s)
		if err != nil {
			return spec, fmt.Errorf("--allowed-address-pair %q: %w", s, err)
		}
		spec.AllowedAddressPairs = append(spec.AllowedAddressPairs, ap)
	}
	return spec, nil
}

// parseAddressPair reads "IP[/LEN][,MAC]" (or the openstack client's
// "ip-address=IP[,mac-address=MAC]").
func parseAddressPair(s string) (state.AddressPair, error) {
	var ap state.AddressPair
	ipPart, macPart, _ := strings.Cut(strings.TrimSpace(s), ",")
	ipPart = strings.TrimPrefix(strings.TrimSpace(ipPart), "ip-address=")
	macPart = strings.TrimPrefix(strings.TrimSpace(macPart), "mac-address=")
	if strings.Contains(ipPart, "/") {
		p, err := netip.ParsePrefix(ipPart)
		if err != nil {
			return ap, fmt.Errorf("%q is not an IP/LEN like 10.0.0.0/24", ipPart)
		}
		if p.Masked() != p {
			return ap, fmt.Errorf("%s has host bits set: write %s", p, p.Masked())
		}
		ap.IP = p
	} else {
		ip, err := netip.ParseAddr(ipPart)
		if err != nil {
			return ap, fmt.Errorf("%q is not an IP address", ipPart)
		}
		ap.IP = netip.PrefixFrom(ip, ip.BitLen())
	}
	if macPart != "" {
		mac, err := state.ParseMAC(macPart)
		if err != nil {
			return ap, err
		}
		if !mac.IsUnicast() {
			return ap, fmt.Errorf("mac %s is not unicast", mac)
		}
		ap.MAC = mac
	}
	return ap, nil
}

func bindAndWait(c *cli.Context, ctl *control.Controller, ref string) error {
	nc, err := natsConnect(c, "vxdp-cli", cliLogger())
	if err != nil {
		return err
	}
	defer nc.Close()
	w, err := control.WatchApplies(nc, c.String("bucket"))
	if err != nil {
		return err
	}
	defer w.Stop()
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("wait"))
	defer cancel()
	res, err := ctl.MigratePort(ctx, w, ref, c.String("host"))
	p, perr := printerOf(c)
	if perr != nil {
		return perr
	}
	if p.format != formatTable || len(p.columns) > 0 {
		// Partial results (e.g. an agent that never applied) print too.
		return errors.Join(printRecord(p, migrationView, res), err)
	}
	if res.FlipRevision != 0 {
		fmt.Fprintf(c.App.Writer, "port %s: %s -> %s at revision %d\n", res.Port, orNone(res.From), res.To, res.FlipRevision)
	}
	if res.ActiveRevision != 0 {
		fmt.Fprintf(c.App.Writer, "ACTIVE on %s after %v (revision %d)\n", res.To, res.Active.Round(time.Microsecond), res.ActiveRevision)
	}
	for _, h := range slices.Sorted(maps.Keys(res.PerHost)) {
		fmt.Fprintf(c.App.Writer, "  %-20s applied after %v\n", h, res.PerHost[h].Round(time.Microsecond))
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "all %d agents converged after %v\n", len(res.PerHost), res.Converged.Round(time.Microsecond))
	return nil
}

// migrationView is how `port bind --wait` prints its result.
var migrationView = view[control.MigrationResult]{
	kind: "migration",
	columns: []column[control.MigrationResult]{
		{key: "port", header: "Port", value: func(r control.MigrationResult) any { return r.Port }},
		{key: "from", header: "From", value: func(r control.MigrationResult) any { return stringOrNil(r.From) }},
		{key: "to", header: "To", value: func(r control.MigrationResult) any { return r.To }},
		{key: "flip_revision", header: "Flip Revision", value: func(r control.MigrationResult) any { return r.FlipRevision }},
		{key: "active_revision", header: "Active Revision", value: func(r control.MigrationResult) any { return r.ActiveRevision }},
		{key: "active_seconds", header: "Active After", value: func(r control.MigrationResult) any { return r.Active.Seconds() }},
		{key: "converged_seconds", header: "Converged After", value: func(r control.MigrationResult) any { return r.Converged.Seconds() }},
		{key: "per_host_seconds", header: "Applied After", value: func(r control.MigrationResult) any {
			o := object{}
			for _, h := range slices.Sorted(maps.Keys(r.PerHost)) {
				o = append(o, pair{h, r.PerHost[h].Seconds()})
			}
			return o
		}},
	},
}

func orNone(s string) string {
	if s == "" {
		return "(unbound)"
	}
	return s
}

func printPort(c *cli.Context, p control.Port) error { return printOne(c, portView, p) }

// portView is how ports print (docs/cli.md).
var portView = view[control.Port]{
	kind: "port",
	columns: []column[control.Port]{
		{key: "id", header: "ID", value: func(p control.Port) any { return p.ID }},
		{key: "name", header: "Name", value: func(p control.Port) any { return p.Name }},
		{key: "network_id", header: "Network ID", value: func(p control.Port) any { return p.NetworkID }},
		{key: "mac_address", header: "MAC Address", value: func(p control.Port) any { return p.MAC.String() }},
		{key: "fixed_ips", header: "Fixed IP Addresses", value: func(p control.Port) any { return addrStrings(p.FixedIPs) },
			text: func(p control.Port) string { return fixedIPs(p.FixedIPs) }},
		{key: "port_security_enabled", header: "Port Security", value: func(p control.Port) any { return p.PortSecurity }},
		{key: "allowed_address_pairs", header: "Allowed Address Pairs", value: func(p control.Port) any {
			out := make([]object, len(p.AllowedAddressPairs))
			for i, ap := range p.AllowedAddressPairs {
				var mac any
				if !ap.MAC.IsZero() {
					mac = ap.MAC.String()
				}
				out[i] = object{{"ip_address", ap.IP.String()}, {"mac_address", mac}}
			}
			return out
		}, text: func(p control.Port) string {
			pairs := make([]string, len(p.AllowedAddressPairs))
			for i, ap := range p.AllowedAddressPairs {
				pairs[i] = ap.IP.String()
				if !ap.MAC.IsZero() {
					pairs[i] += "," + ap.MAC.String()
				}
			}
			return strings.Join(pairs, "\n")
		}},
		{key: "security_groups", header: "Security Groups", value: func(p control.Port) any { return append([]string{}, p.SecurityGroups...) }},
		{key: "project_id", header: "Project", value: func(p control.Port) any { return control.ProjectOf(p.Project) }},
		{key: "binding_host_id", header: "Host", value: func(p control.Port) any { return stringOrNil(p.Host) }},
		{key: "device_owner", header: "Device Owner", value: func(p control.Port) any { return p.DeviceOwner }},
		{key: "dns_name", header: "DNS Name", value: func(p control.Port) any { return stringOrNil(p.DNSName) }},
		{key: "status", header: "Status", value: func(p control.Port) any { return p.Status }},
		{key: "tap", header: "Tap", value: func(p control.Port) any { return p.Tap() }},
		{key: "binding_generation", header: "Binding Generation", value: func(p control.Port) any { return p.Generation }},
		{key: "created_at", header: "Created At", value: func(p control.Port) any { return timeOrNil(p.CreatedAt) }},
		{key: "updated_at", header: "Updated At", value: func(p control.Port) any { return timeOrNil(p.UpdatedAt) }},
		{key: "revision", header: "Revision", value: func(p control.Port) any { return p.Revision }},
	},
	list: []string{"id", "name", "mac_address", "fixed_ips", "status", "binding_host_id", "tap"},
}

// addrStrings is never nil, so JSON shows [] for none.
func addrStrings(ips []netip.Addr) []string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return s
}

func fixedIPs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = "ip_address='" + ip.String() + "'"
	}
	return strings.Join(s, ", ")
}
