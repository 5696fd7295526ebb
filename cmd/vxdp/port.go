package main

import (
	"context"
	"fmt"
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
		Usage: "create, bind, unbind, delete and list ports (writes the control plane)",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a port on a network",
				ArgsUsage: "[NAME]",
				Description: `The port id is a new UUID; its tap is "tap" + the first 11 characters of
the id, as Neutron names it. Without --mac a MAC fa:16:3e:xx:xx:xx is drawn.
MAC and fixed IPs are unique per network; a bad MAC, IP, CIDR or an unknown
network or security group is refused and nothing is written.`,
				Flags: append(controllerFlags(),
					&cli.StringFlag{Name: "network", Usage: "network `NAME|ID` (required)"},
					&cli.StringFlag{Name: "mac", Aliases: []string{"mac-address"}, Usage: "`MAC` address (default fa:16:3e:xx:xx:xx)"},
					&cli.StringSliceFlag{Name: "fixed-ip", Usage: "fixed `IP` (or ip-address=IP; repeatable)"},
					&cli.BoolFlag{Name: "no-port-security", Usage: "turn port security off (no anti-spoofing, no security groups)"},
					repeatableFlag("allowed-address-pair", "`IP[/LEN][,MAC]` the port may also send from (repeatable)", "allowed-address"),
					&cli.StringSliceFlag{Name: "security-group", Usage: "security group `NAME|ID` (repeatable)"},
					&cli.StringFlag{Name: "host", Usage: "bind the port to `HOST` at once"},
					&cli.StringFlag{Name: "device-owner", Usage: "device owner (e.g. compute:nova, network:dhcp)"},
					&cli.StringFlag{Name: "id", Usage: "port `UUID` (default: a new one)"},
					jsonFlag,
				),
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
				Flags: append(controllerFlags(), revisionFlag,
					&cli.StringFlag{Name: "host", Usage: "`HOST` the port is bound to (required)"},
					&cli.DurationFlag{Name: "wait", Usage: "wait up to `DURATION` until every agent hosting the network applied the move, and print how long it took"},
					jsonFlag),
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
				Flags:     append(controllerFlags(), revisionFlag, jsonFlag),
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
				Flags:     append(controllerFlags(), revisionFlag),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					ref, err := oneArg(c, "port")
					if err != nil {
						return err
					}
					return ctl.DeletePort(c.Context, ref, c.Uint64("revision"))
				}),
			},
			{
				Name:      "show",
				Usage:     "show a port",
				ArgsUsage: "PORT",
				Flags:     append(controllerFlags(), jsonFlag),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					ref, err := oneArg(c, "port")
					if err != nil {
						return err
					}
					p, err := ctl.GetPort(c.Context, ref)
					if err != nil {
						return err
					}
					return printPort(c, p)
				}),
			},
			{
				Name:  "list",
				Usage: "list ports with their status",
				Flags: append(controllerFlags(),
					&cli.StringFlag{Name: "network", Usage: "only ports of network `NAME|ID`"},
					&cli.StringFlag{Name: "host", Usage: "only ports bound to `HOST`"},
					jsonFlag),
				Action: withController(func(c *cli.Context, ctl *control.Controller) error {
					ports, err := ctl.ListPorts(c.Context, control.PortFilter{Network: c.String("network"), Host: c.String("host")})
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return printJSON(c.App.Writer, ports)
					}
					rows := make([][]string, len(ports))
					for i, p := range ports {
						rows[i] = []string{p.ID, p.Name, p.MAC.String(), fixedIPs(p.FixedIPs), p.Status, p.Host, p.Tap()}
					}
					return writeTable(c.App.Writer, []string{"ID", "Name", "MAC Address", "Fixed IP Addresses", "Status", "Host", "Tap"}, rows)
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
		Host: c.String("host"), DeviceOwner: c.String("device-owner"), ID: c.String("id"),
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
	if c.Bool("json") {
		if perr := printJSON(c.App.Writer, res); perr != nil {
			return perr
		}
		return err
	}
	if res.FlipRevision != 0 {
		fmt.Fprintf(c.App.Writer, "port %s: %s -> %s at revision %d\n", res.Port, orNone(res.From), res.To, res.FlipRevision)
	}
	if res.ActiveRevision != 0 {
		fmt.Fprintf(c.App.Writer, "ACTIVE on %s after %v (revision %d)\n", res.To, res.Active.Round(time.Microsecond), res.ActiveRevision)
	}
	hosts := make([]string, 0, len(res.PerHost))
	for h := range res.PerHost {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	for _, h := range hosts {
		fmt.Fprintf(c.App.Writer, "  %-20s applied after %v\n", h, res.PerHost[h].Round(time.Microsecond))
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "all %d agents converged after %v\n", len(res.PerHost), res.Converged.Round(time.Microsecond))
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "(unbound)"
	}
	return s
}

func printPort(c *cli.Context, p control.Port) error {
	if c.Bool("json") {
		return printJSON(c.App.Writer, p)
	}
	pairs := make([]string, len(p.AllowedAddressPairs))
	for i, ap := range p.AllowedAddressPairs {
		pairs[i] = ap.IP.String()
		if !ap.MAC.IsZero() {
			pairs[i] += "," + ap.MAC.String()
		}
	}
	return writeTable(c.App.Writer, []string{"Field", "Value"}, [][]string{
		{"id", p.ID}, {"name", p.Name}, {"network_id", p.NetworkID}, {"mac_address", p.MAC.String()},
		{"fixed_ips", fixedIPs(p.FixedIPs)}, {"port_security_enabled", fmt.Sprint(p.PortSecurity)},
		{"allowed_address_pairs", strings.Join(pairs, "\n")}, {"security_group_ids", strings.Join(p.SecurityGroups, "\n")},
		{"binding:host_id", p.Host}, {"device_owner", p.DeviceOwner}, {"status", p.Status}, {"tap", p.Tap()},
		{"revision", fmt.Sprint(p.Revision)},
	})
}

func fixedIPs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = "ip_address='" + ip.String() + "'"
	}
	return strings.Join(s, ", ")
}
