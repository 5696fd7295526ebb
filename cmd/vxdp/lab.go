package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/lab"
	"github.com/vxdp/vxdp/maps"
	"github.com/vxdp/vxdp/state"
)

var labDirFlag = &cli.StringFlag{
	Name:  "dir",
	Value: "vxdp-lab",
	Usage: "lab `DIR`: manifest, state files, agent state and logs",
}

func labCommand() *cli.Command {
	return &cli.Command{
		Name:  "lab",
		Usage: "one-machine lab of the seed topology (node1, node3, node4) in network namespaces",
		Description: `Builds the seed deployment out of network namespaces: an underlay bridge joining
node1 (192.168.248.1), node3 (.3) and node4 (.4) by their tunnel NIC eth2,
vxlan100_net (VNI 100, 172.16.100.0/24) with the DHCP port on node1, vm2 on
node3 and vm1 on node4; the provider networks vlan99 (VLAN 99 of physical
network default, eth1; 172.16.99.0/24) with vm5 and vm6 and external (flat,
eth3; vxlan100_net's addresses again) with vm7 and vm8, and a physical host on
both; one vxdp agent per node. The networks, subnets and ports are created
through the controller (embedded NATS on node1), and every VM gets its address
from a real DHCP client answered at its port. Needs root.`,
		Subcommands: []*cli.Command{labUpCommand(), labDownCommand(), labStatusCommand(), labMigrateCommand()},
	}
}

func labUpCommand() *cli.Command {
	flags := []cli.Flag{
		labDirFlag,
		&cli.StringFlag{Name: "prefix", Value: lab.DefaultPrefix, Usage: "`PREFIX` of every namespace and agent instance"},
		&cli.StringFlag{Name: "bpffs", Value: "/sys/fs/bpf", Usage: "bpffs the agents pin under"},
		&cli.BoolFlag{Name: "second-network", Usage: "add vxlan200_net (VNI 200, same subnet and IPs) with vm3 on node3 and vm4 on node4"},
		&cli.BoolFlag{Name: "rogue", Usage: "add an underlay host 192.168.248.9 that is no VTEP"},
		&cli.StringFlag{Name: "guest", Usage: "make `VM` (e.g. vm1) a real guest: qemu with virtio-net on its tap (KVM where it boots a stock kernel, software emulation otherwise; the image is assembled from Debian packages)"},
		&cli.BoolFlag{Name: "ipv6-underlay", Usage: "run VXLAN over IPv6: the nodes' eth2 also get fd00:192:168:248::<n> and the agents take it as local_ip"},
		&cli.BoolFlag{Name: "no-provider", Usage: "leave out the seed's provider networks (by default: vlan99, VLAN 99 on eth1, with vm5 and vm6; the flat network external on eth3 with vm7 and vm8; a physical host on both)"},
		&cli.BoolFlag{Name: "no-dhcp", Usage: "configure the VMs statically (by default each runs a real DHCP client and gets its address from DHCP at its port)"},
		// The defaults now; accepted for older command lines.
		&cli.BoolFlag{Name: "provider", Hidden: true},
		&cli.BoolFlag{Name: "dhcp", Hidden: true},
		&cli.BoolFlag{Name: "vip", Usage: "give vm1 172.16.100.112 as an allowed address pair (ARP for it floods)"},
		&cli.BoolFlag{Name: "no-smoke", Usage: "skip the vm2 -> vm1 ping"},
		&cli.DurationFlag{Name: "timeout", Value: time.Minute, Usage: "how long the agents may take to apply"},
		&cli.StringFlag{Name: "control", Value: lab.ControlNATS, Usage: "nats: embedded NATS server on node1, networks and ports in its KV; file: one state file per node"},
	}
	for _, n := range lab.Nodes {
		flags = append(flags, &cli.StringFlag{Name: "dataplane-" + n, Value: lab.DataplaneBPF, Usage: "dataplane of " + n + ": bpf or kernel"})
	}
	return &cli.Command{
		Name:  "up",
		Usage: "build the lab, start the agents, wait until they applied and the VMs leased their addresses, ping vm2 -> vm1",
		Flags: flags,
		Action: func(c *cli.Context) error {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			cfg := lab.Config{
				Prefix:        c.String("prefix"),
				Dir:           c.String(labDirFlag.Name),
				Binary:        exe,
				BPFFS:         c.String("bpffs"),
				Dataplane:     map[string]string{},
				SecondNetwork: c.Bool("second-network"),
				Rogue:         c.Bool("rogue"),
				Guest:         c.String("guest"),
				VIP:           c.Bool("vip"),
				DHCP:          !c.Bool("no-dhcp"),
				Provider:      !c.Bool("no-provider"),
				IPv6Underlay:  c.Bool("ipv6-underlay"),
				Control:       c.String("control"),
			}
			for _, f := range []string{"provider", "dhcp"} {
				if c.Bool(f) && c.Bool("no-"+f) {
					return fmt.Errorf("lab up: --%s and --no-%s: give one", f, f)
				}
			}
			for _, n := range lab.Nodes {
				cfg.Dataplane[n] = c.String("dataplane-" + n)
			}
			ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
			defer cancel()
			out := c.App.Writer
			l, err := lab.Up(ctx, cfg, out)
			if err != nil {
				return err
			}
			if !c.Bool("no-smoke") {
				res, err := lab.Ping(l.PortNS(lab.VM2), lab.VM1.IP, 3, 200*time.Millisecond, 2*time.Second)
				if err != nil {
					return fmt.Errorf("smoke ping: %w", err)
				}
				fmt.Fprintf(out, "smoke: vm2 -> vm1 (%s): %d/%d replies\n", lab.VM1.IP, res.Received, res.Sent)
				if res.Received == 0 {
					return fmt.Errorf("smoke ping vm2 -> vm1 got no reply: the lab is up (see `vxdp lab status --dir %s` and the agent logs), tear it down with `vxdp lab down --dir %s`", l.Dir, l.Dir)
				}
			}
			printLab(out, readLabStatus(l))
			return nil
		},
	}
}

func labDownCommand() *cli.Command {
	return &cli.Command{
		Name:  "down",
		Usage: "stop the agents, run their --cleanup and remove every namespace, pin and file of the lab",
		Flags: []cli.Flag{labDirFlag},
		Action: func(c *cli.Context) error {
			dir := c.String(labDirFlag.Name)
			if _, err := lab.ReadManifest(dir); errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(c.App.Writer, "no lab in %s\n", dir)
				return nil
			}
			if err := lab.Teardown(dir, c.App.Writer); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "lab in %s removed\n", dir)
			return nil
		},
	}
}

func labMigrateCommand() *cli.Command {
	return &cli.Command{
		Name:      "migrate",
		Usage:     "live-migrate a VM of a NATS lab: move its NIC to NODE, re-bind its port, report when each agent had it",
		ArgsUsage: "PORT NODE   (e.g. vm1 node3)",
		Flags:     append([]cli.Flag{labDirFlag}, outputFlags(migrationView)...),
		Action: func(c *cli.Context) error {
			args, err := positional(c)
			if err != nil {
				return err
			}
			p, err := printerOf(c)
			if err != nil {
				return err
			}
			if len(args) != 2 {
				return errors.New("want PORT NODE, e.g. `vxdp lab migrate vm1 node3`")
			}
			l, err := lab.Attach(c.String(labDirFlag.Name), nil)
			if err != nil {
				return err
			}
			if l.Control != lab.ControlNATS {
				return errors.New("migrate needs a lab with the NATS control plane (`vxdp lab up --control nats`)")
			}
			name, node := args[0], args[1]
			i := slices.IndexFunc(l.Ports(), func(p lab.Port) bool { return p.Name == name })
			if i < 0 {
				return fmt.Errorf("no port %q in the lab", name)
			}
			if lab.NodeIP(node) == (netip.Addr{}) {
				return fmt.Errorf("no node %q (one of %s)", node, strings.Join(lab.Nodes, ", "))
			}
			ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
			defer cancel()
			res, err := l.Migrate(ctx, l.Ports()[i], node)
			if err != nil {
				return err
			}
			if p.format != formatTable || len(p.columns) > 0 {
				return printRecord(p, migrationView, res)
			}
			fmt.Fprintf(c.App.Writer, "%s: %s -> %s; ACTIVE after %v; every agent had it after %v\n", name, res.From, res.To,
				res.Active.Round(time.Microsecond), res.Converged.Round(time.Microsecond))
			fmt.Fprintln(c.App.Writer, "(`lab status` still lists the port where the lab built it)")
			return nil
		},
	}
}

func labStatusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the lab's nodes, agents, applied revisions, counters and ports",
		Flags: append([]cli.Flag{labDirFlag}, outputFlags(labView)...),
		Action: func(c *cli.Context) error {
			l, err := lab.Attach(c.String(labDirFlag.Name), nil)
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("no lab in %s (start one with `vxdp lab up --dir %s`)", c.String(labDirFlag.Name), c.String(labDirFlag.Name))
			}
			if err != nil {
				return err
			}
			p, err := printerOf(c)
			if err != nil {
				return err
			}
			st := readLabStatus(l)
			if p.format == formatTable && len(p.columns) == 0 {
				printLab(c.App.Writer, st)
				return nil
			}
			return printRecord(p, labView, st)
		},
	}
}

// labStatus is what `lab status` reports, read once.
type labStatus struct {
	lab   *lab.Lab
	nodes []labNode
}

// labNode is one node of a lab: its agent and what it applied.
type labNode struct {
	Name        string
	NS          string
	VTEP        netip.Addr
	Dataplane   string
	PID         int // 0: the agent is not running
	Applied     *lab.Applied
	Counters    []maps.Counter // those that counted something
	CountersErr error          // nil also when the node has no pins (kernel dataplane)
}

func readLabStatus(l *lab.Lab) labStatus {
	st := labStatus{lab: l}
	for _, n := range lab.Nodes {
		node := labNode{Name: n, NS: l.NS(n), VTEP: lab.NodeIP(n), Dataplane: l.DataplaneOf(n), PID: l.AgentPID(n)}
		if a, err := l.ReadApplied(n); err == nil {
			node.Applied = a
		}
		cs, err := l.Counters(n)
		for _, ctr := range cs {
			if ctr.Packets > 0 {
				node.Counters = append(node.Counters, ctr)
			}
		}
		if err != nil && !errors.Is(err, maps.ErrNotPinned) {
			node.CountersErr = err
		}
		st.nodes = append(st.nodes, node)
	}
	return st
}

// labView is how `lab status` prints in a typed format (docs/cli.md).
var labView = view[labStatus]{
	kind: "lab",
	columns: []column[labStatus]{
		{key: "prefix", header: "Prefix", value: func(s labStatus) any { return s.lab.Prefix }},
		{key: "dir", header: "Dir", value: func(s labStatus) any { return s.lab.Dir }},
		{key: "control", header: "Control", value: func(s labStatus) any { return s.lab.Control }},
		{key: "nats_url", header: "NATS URL", value: func(s labStatus) any {
			if s.lab.Control != lab.ControlNATS {
				return nil
			}
			return lab.NATSURL()
		}},
		{key: "bpffs", header: "bpffs", value: func(s labStatus) any { return s.lab.BPFFS }},
		{key: "nodes", header: "Nodes", value: func(s labStatus) any { return labNodeView.objects(s.nodes) }},
		{key: "networks", header: "Networks", value: func(s labStatus) any {
			out := make([]object, 0, len(s.lab.Networks()))
			for _, n := range s.lab.Networks() {
				var phys, seg any
				switch n.Kind() {
				case state.NetworkVXLAN:
					seg = n.VNI
				case state.NetworkVLAN:
					phys, seg = n.PhysicalNetwork, n.VLAN
				default:
					phys = n.PhysicalNetwork
				}
				subnets := make([]object, len(n.Subnets))
				for i, sn := range n.Subnets {
					subnets[i] = object{{"cidr", sn.CIDR.String()}, {"gateway_ip", addrOrNil(sn.Gateway)}, {"enable_dhcp", sn.DHCP}}
				}
				out = append(out, object{{"id", n.ID}, {"name", n.Name}, {"network_type", n.Kind()}, {"physical_network", phys},
					{"segmentation_id", seg}, {"subnets", subnets}})
			}
			return out
		}},
		{key: "ports", header: "Ports", value: func(s labStatus) any {
			out := make([]object, 0, len(s.lab.Ports()))
			for _, p := range s.lab.Ports() {
				out = append(out, object{{"name", p.Name}, {"netns", s.lab.PortNS(p)}, {"node", p.Node}, {"tap", p.Tap()},
					{"mac_address", p.MAC.String()}, {"ip_address", p.IP.String()}, {"network", labNetworkName(s.lab, p)},
					{"dhcp", s.lab.Leased(p)}, {"vni", intOrNil(int(p.VNI))}})
			}
			return out
		}},
		{key: "rogue_ip", header: "Rogue IP", value: func(s labStatus) any {
			if !s.lab.Rogue {
				return nil
			}
			return lab.RogueIP.String()
		}},
	},
}

var labNodeView = view[labNode]{
	kind: "lab node",
	columns: []column[labNode]{
		{key: "node", value: func(n labNode) any { return n.Name }},
		{key: "netns", value: func(n labNode) any { return n.NS }},
		{key: "vtep_ip", value: func(n labNode) any { return n.VTEP.String() }},
		{key: "dataplane", value: func(n labNode) any { return n.Dataplane }},
		{key: "agent_running", value: func(n labNode) any { return n.PID != 0 }},
		{key: "agent_pid", value: func(n labNode) any { return intOrNil(n.PID) }},
		{key: "applied_revision", value: func(n labNode) any {
			if n.Applied == nil {
				return nil
			}
			return n.Applied.Revision
		}},
		{key: "applied_at", value: func(n labNode) any {
			if n.Applied == nil {
				return nil
			}
			return timeOrNil(n.Applied.AppliedAt)
		}},
		{key: "apply_error", value: func(n labNode) any {
			if n.Applied == nil {
				return nil
			}
			return stringOrNil(n.Applied.Error)
		}},
		{key: "counters", value: func(n labNode) any {
			out := make([]object, len(n.Counters))
			for i, c := range n.Counters {
				out[i] = object{{"program", c.Prog}, {"reason", c.Reason}, {"verdict", c.Verdict}, {"packets", c.Packets}, {"bytes", c.Bytes}}
			}
			return out
		}},
		{key: "counters_error", value: func(n labNode) any {
			if n.CountersErr == nil {
				return nil
			}
			return n.CountersErr.Error()
		}},
	},
}

func intOrNil(n int) any {
	if n == 0 {
		return nil
	}
	return n
}

// printLab prints what exists and how to poke at it.
func printLab(out io.Writer, st labStatus) {
	l := st.lab
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\nNODE\tNETNS\tVTEP (eth2)\tDATAPLANE\tAGENT\tAPPLIED\tCOUNTERS\n")
	for _, n := range st.nodes {
		agent := "stopped"
		if n.PID != 0 {
			agent = fmt.Sprintf("running (pid %d)", n.PID)
		}
		applied := "-"
		if a := n.Applied; a != nil {
			applied = fmt.Sprintf("rev %d at %s", a.Revision, a.AppliedAt.Local().Format(time.TimeOnly))
			if a.Error != "" {
				applied += " ERROR: " + a.Error
			}
		}
		var parts []string
		for _, ctr := range n.Counters {
			parts = append(parts, fmt.Sprintf("%s/%s=%d", ctr.Prog, ctr.Reason, ctr.Packets))
		}
		counters := cmp.Or(strings.Join(parts, " "), "-")
		if n.CountersErr != nil {
			counters = n.CountersErr.Error()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.NS, n.VTEP, n.Dataplane, agent, applied, counters)
	}
	fmt.Fprintf(tw, "\nNETWORK\tTYPE\tSEGMENT\tSUBNET\tGATEWAY\tDHCP AT PORT\tPORTS\n")
	for _, n := range l.Networks() {
		var ports []string
		for _, p := range l.Ports() {
			if p.NetworkID == n.ID {
				ports = append(ports, p.Name)
			}
		}
		for _, sn := range n.Subnets {
			dhcp := "off"
			if sn.DHCP {
				dhcp = "on"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Kind(), labSegment(n), sn.CIDR, cmp.Or(addrText(sn.Gateway), "-"),
				dhcp, strings.Join(ports, " "))
		}
	}
	fmt.Fprintf(tw, "\nPORT\tNETNS (eth0)\tNODE\tTAP\tMAC\tIP\tNETWORK\n")
	for _, p := range l.Ports() {
		ip := p.IP.String()
		if l.Leased(p) {
			ip += " (DHCP)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, l.PortNS(p), p.Node, p.Tap(), p.MAC, ip, labNetworkName(l, p))
	}
	if l.Provider {
		fmt.Fprintf(tw, "%s\t%s (eth1.99, eth3)\t-\t-\t-\t%s, %s\tvlan99, external (no port)\n", lab.PhysHost, l.NS(lab.PhysHost),
			lab.PhysHostVLANIP, lab.PhysHostFlatIP)
	}
	if l.Rogue {
		fmt.Fprintf(tw, "rogue\t%s (eth2)\t-\t-\t-\t%s\t-\n", l.NS("rogue"), lab.RogueIP)
	}
	tw.Flush()
	fmt.Fprintf(out, `
Try:
  ip netns exec %[1]svm2 ping %[2]s
  ip netns exec %[1]snode3 bridge fdb show dev vxlan-100
  ip netns exec %[1]snode3 ip neigh show dev vxlan-100
  %[7]s dump --instance %[1]snode3 --netns %[1]snode3 --bpffs %[3]s --state-dir %[4]s fdb stats
  tail -f %[5]s
  %[7]s lab down --dir %[6]s
`, l.Prefix, lab.VM1.IP, l.BPFFS, l.StateDir("node3"), l.LogFile("node3"), l.Dir, selfPath())
	if l.Provider {
		fmt.Fprintf(out, `Provider networks (vlan99: VLAN 99 of physical network default, eth1; external: flat, eth3, with vm2's and vm1's addresses again):
  ip netns exec %[1]svm5 ping %[2]s
  ip netns exec %[1]sunderlay tshark -i %[3]s -f "vlan 99" -T fields -e vlan.id -e ip.src -e ip.dst
  ip netns exec %[1]snode3 bridge link show
  ip netns exec %[1]svm7 ping %[4]s
`, l.Prefix, lab.VM6.IP, lab.SwitchPort("node4"), lab.VM8.IP)
	}
	if l.DHCP {
		fmt.Fprintf(out, `DHCP at the port (the port programs answer; no DHCP server runs anywhere):
  cat %[1]s
  ip netns exec %[2]svm2 busybox udhcpc -i eth0 -n -q -s /bin/true
`, l.LeaseFile(lab.VM2), l.Prefix)
	}
	if l.Control == lab.ControlNATS {
		fmt.Fprintf(out, `Control plane (embedded NATS on node1, %[2]s; log %[4]s):
  %[3]s agent list --netns %[1]snode1 --nats %[2]s
  %[3]s network list --netns %[1]snode1 --nats %[2]s
  %[3]s subnet list --netns %[1]snode1 --nats %[2]s
  %[3]s port list --netns %[1]snode1 --nats %[2]s
  %[3]s lab migrate --dir %[5]s vm1 node3   # live migration: move vm1's NIC, re-bind its port
`, l.Prefix, lab.NATSURL(), selfPath(), l.NATSLog(), l.Dir)
	}
}

// selfPath is how to run this binary again, for the hints printed.
func selfPath() string {
	if exe, err := os.Executable(); err == nil {
		return exe
	}
	return "vxdp"
}

// labNetworkName is the name of p's network.
func labNetworkName(l *lab.Lab, p lab.Port) string {
	for _, n := range l.Networks() {
		if n.ID == p.NetworkID {
			return n.Name
		}
	}
	return p.NetworkID
}

// labSegment is what a lab network carries on the wire.
func labSegment(n state.Network) string {
	switch n.Kind() {
	case state.NetworkVLAN:
		return fmt.Sprintf("VLAN %d of %s", n.VLAN, n.PhysicalNetwork)
	case state.NetworkFlat:
		return n.PhysicalNetwork
	}
	return fmt.Sprintf("VNI %d", n.VNI)
}

func addrText(ip netip.Addr) string {
	if !ip.IsValid() {
		return ""
	}
	return ip.String()
}
