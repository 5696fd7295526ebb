package main

import (
	"fmt"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/state"
)

// portSetCommand is `vxdp port set`, in the words of `openstack port set`.
func portSetCommand(revisionFlag cli.Flag) *cli.Command {
	return &cli.Command{
		Name:      "set",
		Usage:     "change a port's security groups, port security, allowed address pairs and DNS name",
		ArgsUsage: "PORT",
		Description: `As "openstack port set": --security-group adds a group (repeatable),
--no-security-group clears them first (both together replace them), and
likewise --allowed-address and --no-allowed-address. Port security can be
turned off only on a port without groups and address pairs. Every agent
enforcing a rule that names one of the port's groups as remote group follows
at once, and flows the change no longer allows are cut.

  vxdp port set vm1 --no-security-group --security-group web`,
		Flags: slices.Concat(controllerFlags(), []cli.Flag{revisionFlag,
			&cli.StringSliceFlag{Name: "security-group", Usage: "add security group `NAME|ID` of the port's project (repeatable)"},
			&cli.BoolFlag{Name: "no-security-group", Usage: "take the port out of every group first"},
			&cli.BoolFlag{Name: "enable-port-security", Usage: "turn port security (anti-spoofing, security groups) on"},
			&cli.BoolFlag{Name: "disable-port-security", Usage: "turn port security off (the port must have no groups and address pairs)"},
			repeatableFlag("allowed-address", "add `ip-address=IP[/LEN][,mac-address=MAC]` the port may also send from (repeatable)"),
			&cli.BoolFlag{Name: "no-allowed-address", Usage: "clear the allowed address pairs first"},
			&cli.StringFlag{Name: "dns-name", Usage: "host `NAME` DHCP gives the VM"},
		}, outputFlags(portView)),
		Action: withController(func(c *cli.Context, ctl *control.Controller) error {
			ref, err := oneArg(c, "port")
			if err != nil {
				return err
			}
			u := control.PortUpdate{ClearSecurityGroups: c.Bool("no-security-group"), AddSecurityGroups: c.StringSlice("security-group"),
				ClearAllowedAddressPairs: c.Bool("no-allowed-address")}
			switch on, off := c.Bool("enable-port-security"), c.Bool("disable-port-security"); {
			case on && off:
				return fmt.Errorf("port set: --enable-port-security and --disable-port-security: give one")
			case on || off:
				u.PortSecurity = &on
			}
			if u.AddAllowedAddressPairs, err = addressPairFlags(c); err != nil {
				return err
			}
			if c.IsSet("dns-name") {
				name := c.String("dns-name")
				u.DNSName = &name
			}
			p, err := ctl.UpdatePort(c.Context, ref, u, c.Uint64("revision"))
			if err != nil {
				return err
			}
			return printPort(c, p)
		}),
	}
}

// portUnsetCommand is `vxdp port unset`, as `openstack port unset`.
func portUnsetCommand(revisionFlag cli.Flag) *cli.Command {
	return &cli.Command{
		Name:      "unset",
		Usage:     "take a port out of security groups, remove allowed address pairs or its DNS name",
		ArgsUsage: "PORT",
		Flags: slices.Concat(controllerFlags(), []cli.Flag{revisionFlag,
			&cli.StringSliceFlag{Name: "security-group", Usage: "leave security group `NAME|ID` (repeatable)"},
			repeatableFlag("allowed-address", "remove `ip-address=IP[/LEN][,mac-address=MAC]` (repeatable)"),
			&cli.BoolFlag{Name: "dns-name", Usage: "remove the DNS name (DHCP then gives host-<address>)"},
		}, outputFlags(portView)),
		Action: withController(func(c *cli.Context, ctl *control.Controller) error {
			ref, err := oneArg(c, "port")
			if err != nil {
				return err
			}
			u := control.PortUpdate{RemoveSecurityGroups: c.StringSlice("security-group")}
			if u.RemoveAllowedAddressPairs, err = addressPairFlags(c); err != nil {
				return err
			}
			if c.Bool("dns-name") {
				u.DNSName = new(string)
			}
			if len(u.RemoveSecurityGroups)+len(u.RemoveAllowedAddressPairs) == 0 && u.DNSName == nil {
				return fmt.Errorf("port unset: nothing to unset: give --security-group, --allowed-address or --dns-name")
			}
			p, err := ctl.UpdatePort(c.Context, ref, u, c.Uint64("revision"))
			if err != nil {
				return err
			}
			return printPort(c, p)
		}),
	}
}

// addressPairFlags parses every --allowed-address.
func addressPairFlags(c *cli.Context) ([]state.AddressPair, error) {
	var out []state.AddressPair
	for _, s := range repeated(c, "allowed-address") {
		ap, err := parseAddressPair(s)
		if err != nil {
			return nil, fmt.Errorf("--allowed-address %q: %w (want ip-address=IP[/LEN][,mac-address=MAC])", s, err)
		}
		out = append(out, ap)
	}
	return out, nil
}
