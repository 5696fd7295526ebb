package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/control/config"
	"github.com/vxdp/vxdp/state"
)

// checkConfig is `vxdp agent --check-config`: beyond what reading the
// settings checked (syntax, values), it checks them against this host —
// the interface holding local_ip, the files the settings name, the state
// file — and changes nothing. Every problem names its file and line (or
// its flag) and the fix.
func checkConfig(c *cli.Context, s *agentSettings) error {
	// where names the origin of a setting: its flag when the command line
	// set it, else the file and line that did.
	where := func(option, flag string) (string, int) {
		if src, ok := s.cfg.Sources[option]; ok && !c.IsSet(flag) {
			return src.File, src.Line
		}
		return "--" + flag, 0
	}
	var errs []error
	problem := func(option, flag, msg, fix string) {
		file, line := where(option, flag)
		errs = append(errs, &config.Error{File: file, Line: line, Msg: msg, Fix: fix})
	}

	uplink, err := interfaceOf(s.cfg.LocalIP)
	if err != nil {
		problem("vxlan.local_ip", "local-ip", err.Error(),
			"write the address of this host's VTEP interface (the one facing the other hypervisors)")
	}
	for _, f := range []struct{ option, flag, path string }{
		{"nats.nkey_seed_file", "nats-nkey", s.nats.NKeySeedFile},
		{"nats.creds_file", "nats-creds", s.nats.CredsFile},
		{"nats.tls_ca_file", "nats-ca", s.nats.TLSCA},
		{"nats.tls_cert_file", "nats-cert", s.nats.TLSCert},
		{"nats.tls_key_file", "nats-key", s.nats.TLSKey},
	} {
		if f.path == "" || s.stateFile != "" {
			continue
		}
		if fh, err := os.Open(f.path); err != nil {
			problem(f.option, f.flag, fmt.Sprintf("cannot read %s: %v", f.path, errors.Unwrap(err)), "give a readable file, or remove the option")
		} else {
			fh.Close()
		}
	}
	for phys, ifname := range s.cfg.PhysicalInterfaceMappings {
		if _, err := net.InterfaceByName(ifname); err != nil {
			problem("linux_bridge.physical_interface_mappings", "physical-interface-mappings",
				fmt.Sprintf("interface %s of physical network %q does not exist on this host", ifname, phys),
				"map the physical network to an interface of this host (ip link show), e.g. "+phys+":eth1")
		}
	}
	if s.metrics != "" {
		if _, port, err := net.SplitHostPort(s.metrics); err != nil || port == "" {
			problem("agent.metrics_listen", "metrics-addr", fmt.Sprintf("metrics_listen %q is not host:port", s.metrics),
				"write e.g. metrics_listen = 127.0.0.1:9641")
		}
	}
	if s.stateFile != "" {
		if _, err := state.LoadFile(s.stateFile); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	source := "NATS " + strings.Join(s.nats.URLs, ",") + " bucket " + s.cfg.NATS.Bucket
	if s.stateFile != "" {
		source = "state file " + s.stateFile
	}
	dp := "bpf"
	if s.dp.Kernel {
		dp = "kernel"
	}
	files := strings.Join(s.cfg.Files, ", ")
	if files == "" {
		files = "no files, flags only"
	}
	_, err = fmt.Fprintf(c.App.Writer, "configuration OK (%s)\n  host %s, instance %s, VTEP %s on %s, dataplane %s, desired state from %s\n",
		files, s.cfg.Host, s.dp.Instance, s.cfg.LocalIP, uplink, dp, source)
	return err
}

// interfaceOf returns the interface holding ip in this network namespace.
func interfaceOf(ip netip.Addr) (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("list interfaces: %w", err)
	}
	var seen []string
	for _, i := range ifs {
		addrs, err := i.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			p, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			if got, ok := netip.AddrFromSlice(p.IP); ok && got.Unmap() == ip {
				return i.Name, nil
			}
			if p.IP.To4() != nil && !p.IP.IsLoopback() {
				seen = append(seen, i.Name+" "+p.String())
			}
		}
	}
	have := "none"
	if len(seen) > 0 {
		have = strings.Join(seen, ", ")
	}
	return "", fmt.Errorf("local_ip %s is not an address of any interface of this host (IPv4 addresses here: %s)", ip, have)
}
