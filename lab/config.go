// Package lab builds the seed topology (docs/seed.md) on
// one machine out of network namespaces: an underlay bridge joining node1,
// node3 and node4 by their tunnel NIC eth2, VMs and the DHCP port as
// namespaces whose eth0 is a veth peered with a Neutron-named tap inside
// their node, one vxdp agent per node fed the desired state l2population
// would push, and traffic helpers (ICMP, TCP, capture, injection) that run
// inside the namespaces. `vxdp lab` and the end-to-end tests in test/ use it.
//
// Every name the lab makes in the host (namespaces, agent instances, pin
// directories) starts with a prefix, so several labs can coexist; links
// live inside the lab's namespaces only, so their names never collide. A
// lab refuses a prefix or directory in use, records what it makes in its
// directory's manifest as it makes it, and Teardown removes exactly that,
// after a crash too.
package lab

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vxdp/vxdp/state"
)

// DefaultPrefix starts every namespace and instance name of a lab.
const DefaultPrefix = "vxdp-"

// Dataplanes an agent can run.
const (
	DataplaneBPF    = "bpf"
	DataplaneKernel = "kernel"
)

// Config describes a lab. The zero value (plus Binary) is the seed topology
// with the BPF dataplane on every node.
type Config struct {
	// Prefix starts every namespace and instance name (default "vxdp-").
	Prefix string
	// Dir holds the manifest, state files, agent state dirs and logs.
	Dir string
	// Binary is the vxdp executable the agents run.
	Binary string
	// BPFFS is the bpffs the agents pin under (default /sys/fs/bpf,
	// mounted if it is not a bpffs yet).
	BPFFS string
	// Dataplane per node name ("node1", "node3", "node4"); default bpf.
	Dataplane map[string]string
	// SecondNetwork adds vxlan200_net (VNI 200) with the same subnet and
	// IPs as vxlan100_net and VMs on node3 (vm3, .19) and node4 (vm4, .12).
	SecondNetwork bool
	// Rogue adds an underlay host at 192.168.248.9 that is no VTEP.
	Rogue bool
	// VIP gives vm1 a second address, 172.16.100.112, as an allowed
	// address pair: l2population never pushes it, so ARP for it is only
	// resolved by flooding.
	VIP bool
	// AgentArgs are appended to every agent's command line.
	AgentArgs []string
	// Control is how agents get their state: ControlFile (default; one
	// JSON state file per node, what l2population would push) or ControlNATS
	// (an embedded NATS server on node1, the controller, reached over the
	// management network; networks and ports are written to its KV).
	Control string
	// NoPublish leaves the networks and ports to the caller (e.g. the
	// controller CLI in NATS mode); the topology still has their taps.
	NoPublish bool
	// Guest makes a VM (by port name, e.g. "vm1") a real guest: qemu with
	// virtio-net on a tap of the port's name in its node, as Nova/libvirt
	// creates it, instead of a namespace on a veth.
	Guest string
	// DHCP gives the VMs no static address: each runs a real DHCP client
	// (busybox udhcpc) at lab-up and gets its address from DHCP at the
	// port. Without it, VMs are configured statically.
	DHCP bool
	// NoDHCPAtPort turns DHCP at the port off on the lab's subnets
	// (Neutron's --no-dhcp, as far as vxdp is concerned): DHCP goes to the
	// network, where the DHCP port (trusted, as Neutron trusts
	// network:dhcp ports: no port security) may run a server.
	NoDHCPAtPort bool
	// Provider adds the seed's provider networks: vlan99 (VLAN 99 on eth1)
	// with vm5 (node3) and vm6 (node4), a flat network on eth3 with vm7
	// and vm8 (vm2's and vm1's addresses), and a physical host on both.
	Provider bool
	// IPv6Underlay runs VXLAN over IPv6: the nodes' eth2 also get
	// fd00:192:168:248::<n>/64, which the agents take as local_ip.
	IPv6Underlay bool
	// Mode wires the lab without vxdp, for benchmarks (lab/modes.go):
	// ModePlain, ModeFlat or ModeNeutron; "" runs the agents.
	Mode string
	// Firewall is ModeNeutron's security-group driver: FirewallIptables
	// (Neutron's iptables+ipset driver) or "" (none).
	Firewall string
	// PortGroups puts ports (by name) in these security groups instead
	// of the default group.
	PortGroups map[string][]state.SecurityGroup
}

// Control planes of a lab.
const (
	ControlFile = "file"
	ControlNATS = "nats"
)

func (c Config) withDefaults() (Config, error) {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(c.Prefix, "/ \t\n") || len(c.Prefix) > 40 {
		return c, fmt.Errorf("lab prefix %q: use at most 40 characters without '/' or spaces", c.Prefix)
	}
	if c.BPFFS == "" {
		c.BPFFS = "/sys/fs/bpf"
	}
	if c.Dir == "" {
		return c, fmt.Errorf("lab: no directory given")
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return c, err
	}
	c.Dir = dir
	switch c.Control {
	case "":
		c.Control = ControlFile
	case ControlFile, ControlNATS:
	default:
		return c, fmt.Errorf("lab: control %q: want file or nats", c.Control)
	}
	if c.DHCP && c.NoDHCPAtPort {
		return c, fmt.Errorf("lab: DHCP clients and no DHCP at the port: nothing would answer them")
	}
	if _, ok := c.GuestPort(); c.Guest != "" && !ok {
		return c, fmt.Errorf("lab: guest %q is not a port of the lab (vm1, vm2, ...)", c.Guest)
	}
	if err := c.checkMode(); err != nil {
		return c, err
	}
	for node, dp := range c.Dataplane {
		if _, ok := nodeIPs[node]; !ok {
			return c, fmt.Errorf("lab: dataplane for unknown node %q (one of node1, node3, node4)", node)
		}
		if dp != DataplaneBPF && dp != DataplaneKernel {
			return c, fmt.Errorf("lab: dataplane %q for %s: want bpf or kernel", dp, node)
		}
	}
	return c, nil
}

// DataplaneOf returns the dataplane a node runs.
func (c Config) DataplaneOf(node string) string {
	if dp := c.Dataplane[node]; dp != "" {
		return dp
	}
	return DataplaneBPF
}

// The seed's networks, hosts and ports.
const (
	Net100ID    = "85ae5035-203b-4ef7-b65c-397f80b5a8af"
	Net100Name  = "vxlan100_net"
	Net200ID    = "5f0c8b7e-2a41-4d93-b6e8-0c1d9e7a3f20"
	Net200Name  = "vxlan200_net"
	NetworkMTU  = 1450
	UnderlayMTU = 1500
	VXLANPort   = 8472
)

// Nodes in the order they are built.
var Nodes = []string{"node1", "node3", "node4"}

var nodeIPs = map[string]netip.Addr{
	"node1": netip.MustParseAddr("192.168.248.1"),
	"node3": netip.MustParseAddr("192.168.248.3"),
	"node4": netip.MustParseAddr("192.168.248.4"),
}

// mgmtIPs are the nodes' management addresses (eth0), as in the seed; the
// control plane (NATS on node1, the controller) is reached over them.
var mgmtIPs = map[string]netip.Addr{
	"node1": netip.MustParseAddr("10.30.1.208"),
	"node3": netip.MustParseAddr("10.30.1.203"),
	"node4": netip.MustParseAddr("10.30.1.204"),
}

// MgmtIP returns a node's management address.
func MgmtIP(node string) netip.Addr { return mgmtIPs[node] }

// ControllerNode runs the NATS server in NATS mode, as node1 runs
// neutron-server in the seed.
const ControllerNode = "node1"

// NATSURL is the client URL of the lab's NATS server (NATS mode).
func NATSURL() string { return "nats://" + mgmtIPs[ControllerNode].String() + ":4222" }

// RogueIP is the underlay address of the rogue host (no VTEP of any network).
var RogueIP = netip.MustParseAddr("192.168.248.9")

// VIP is vm1's allowed-address-pair address (Config.VIP).
var VIP = netip.MustParseAddr("172.16.100.112")

// NodeIP returns a node's VTEP address.
func NodeIP(node string) netip.Addr { return nodeIPs[node] }

// nodeIP6s are the nodes' underlay addresses in the IPv6 variant
// (Config.IPv6Underlay), next to the IPv4 ones on the same eth2.
var nodeIP6s = map[string]netip.Addr{
	"node1": netip.MustParseAddr("fd00:192:168:248::1"),
	"node3": netip.MustParseAddr("fd00:192:168:248::3"),
	"node4": netip.MustParseAddr("fd00:192:168:248::4"),
}

// MTU is the VXLAN networks' MTU: the underlay's less VXLAN's overhead,
// 20 bytes more over IPv6.
func (c Config) MTU() int {
	if c.IPv6Underlay {
		return NetworkMTU - 20
	}
	return NetworkMTU
}

// portMTU is the MTU of a port's NIC: its network's.
func (c Config) portMTU(p Port) int {
	for _, n := range c.Networks() {
		if n.ID == p.NetworkID && n.MTU > 0 {
			return n.MTU
		}
	}
	return UnderlayMTU // provider networks: the physical network's
}

// VTEP is a node's VTEP address: its IPv6 underlay address with
// IPv6Underlay, else the IPv4 one.
func (c Config) VTEP(node string) netip.Addr {
	if c.IPv6Underlay {
		return nodeIP6s[node]
	}
	return nodeIPs[node]
}

// Port is a tenant port of the lab: a namespace holding eth0, peered with
// the tap in its node.
type Port struct {
	Name      string // short name: "dhcp", "vm1", ...; also the namespace suffix
	ID        string
	NetworkID string
	VNI       uint32
	Node      string
	MAC       state.MAC
	IP        netip.Addr
	// NSName is the namespace suffix when it differs from Name.
	NSName string
}

// Tap is the Neutron tap name of the port.
func (p Port) Tap() string { return state.TapName(p.ID) }

// TapMAC is the MAC libvirt gives the host side of a VM NIC: the guest's
// with fe as first octet.
func (p Port) TapMAC() state.MAC {
	m := p.MAC
	m[0] = 0xfe
	return m
}

func mac(s string) state.MAC {
	m, err := state.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

var (
	// DHCP is the DHCP port of vxlan100_net on node1.
	DHCP = Port{Name: "dhcp", ID: "d40d05b8-bd6b-4c1e-9a3f-5c2d7e8f9a01", NetworkID: Net100ID, VNI: 100, Node: "node1",
		MAC: mac("fa:16:3e:6e:c0:44"), IP: netip.MustParseAddr("172.16.100.10"), NSName: "qdhcp-" + Net100ID}
	// VM2 is centos7.6-vm2 on node3.
	VM2 = Port{Name: "vm2", ID: "31c64a21-7658-4d2b-8f0e-3a9c1b2d4e5f", NetworkID: Net100ID, VNI: 100, Node: "node3",
		MAC: mac("fa:16:3e:cb:98:2c"), IP: netip.MustParseAddr("172.16.100.19")}
	// VM1 is centos7.6-vm1 on node4.
	VM1 = Port{Name: "vm1", ID: "9784ef08-97a1-4b8e-9c3d-2e6f0a1b7c58", NetworkID: Net100ID, VNI: 100, Node: "node4",
		MAC: mac("fa:16:3e:06:42:34"), IP: netip.MustParseAddr("172.16.100.12")}
	// VM3 is on vxlan200_net on node3, with vm2's IP.
	VM3 = Port{Name: "vm3", ID: "c2a7e5d1-3b94-4f6a-8e21-7d5c9b0a4e63", NetworkID: Net200ID, VNI: 200, Node: "node3",
		MAC: mac("fa:16:3e:5a:21:7c"), IP: netip.MustParseAddr("172.16.100.19")}
	// VM4 is on vxlan200_net on node4, with vm1's IP.
	VM4 = Port{Name: "vm4", ID: "e81f0c36-5d27-4a98-b3c4-1f6e2d8a9b70", NetworkID: Net200ID, VNI: 200, Node: "node4",
		MAC: mac("fa:16:3e:b3:0d:96"), IP: netip.MustParseAddr("172.16.100.12")}
)

// Ports returns the tenant ports of a configuration, in build order.
func (c Config) Ports() []Port {
	ps := []Port{DHCP, VM2, VM1}
	if c.SecondNetwork {
		ps = append(ps, VM3, VM4)
	}
	if c.Provider {
		ps = append(ps, VM5, VM6, VM7, VM8)
	}
	return ps
}

// Networks returns the networks of a configuration, in build order.
func (c Config) Networks() []state.Network {
	ns := []state.Network{{ID: Net100ID, Name: Net100Name, VNI: 100, MTU: c.MTU(), Subnets: []state.Subnet{c.subnet(Net100ID)}}}
	if c.SecondNetwork {
		ns = append(ns, state.Network{ID: Net200ID, Name: Net200Name, VNI: 200, MTU: c.MTU(), Subnets: []state.Subnet{c.subnet(Net200ID)}})
	}
	if c.Provider {
		ns = append(ns, c.providerNetworks()...)
	}
	return ns
}

// localPort is the local_ports entry of p.
func (c Config) localPort(p Port) state.LocalPort {
	lp := state.LocalPort{ID: p.ID, NetworkID: p.NetworkID, MAC: p.MAC, IPs: []netip.Addr{p.IP}, Tap: p.Tap(),
		SecurityGroups: c.groupIDsOf(p)}
	if c.VIP && p.ID == VM1.ID {
		lp.AllowedAddressPairs = []state.AddressPair{{IP: netip.PrefixFrom(VIP, 32)}}
	}
	if c.NoDHCPAtPort && p.ID == DHCP.ID {
		off := false
		lp.PortSecurity = &off
	}
	return lp
}

// DefaultGroupID is the lab's "default" security group: every port is in
// it, as Neutron puts a port created without groups in its project's.
const DefaultGroupID = "0d7d1f3c-5e1a-4c7b-9a24-6f3e2b1d8c50"

// defaultGroup is Neutron's default group: everything out, and in from
// the group's own members (here, every lab port).
func (c Config) defaultGroup() state.SecurityGroup {
	g := state.SecurityGroup{ID: DefaultGroupID, Name: "default", Rules: []state.Rule{
		{ID: "egress-v4", Direction: state.Egress, EtherType: state.IPv4},
		{ID: "egress-v6", Direction: state.Egress, EtherType: state.IPv6},
		{ID: "ingress-default-v4", Direction: state.Ingress, EtherType: state.IPv4, RemoteGroup: DefaultGroupID},
		{ID: "ingress-default-v6", Direction: state.Ingress, EtherType: state.IPv6, RemoteGroup: DefaultGroupID},
	}}
	for _, p := range c.Ports() {
		if gs, ok := c.PortGroups[p.Name]; ok && !slices.ContainsFunc(gs, func(g state.SecurityGroup) bool { return g.ID == DefaultGroupID }) {
			continue
		}
		g.Rules[2].RemotePrefixes = append(g.Rules[2].RemotePrefixes, netip.PrefixFrom(p.IP, 32))
		if c.VIP && p.ID == VM1.ID {
			g.Rules[2].RemotePrefixes = append(g.Rules[2].RemotePrefixes, netip.PrefixFrom(VIP, 32))
		}
	}
	return g
}

// DesiredState is what l2population pushes to node: every network with a
// port on node, that network's other VTEPs (the flood list), its local
// ports, and every port of it on another node with its fixed IPs (proxy
// ARP) and VTEP. Allowed address pairs are not pushed to other nodes, as
// in Neutron.
func (c Config) DesiredState(node string) *state.Desired {
	d := &state.Desired{Networks: []state.Network{}, LocalPorts: []state.LocalPort{}, RemotePorts: []state.RemotePort{}}
	ports := c.Ports()
	for _, n := range c.Networks() {
		hosts := map[string]bool{}
		for _, p := range ports {
			if p.NetworkID == n.ID {
				hosts[p.Node] = true
			}
		}
		if !hosts[node] {
			continue
		}
		for _, other := range Nodes {
			if other != node && hosts[other] && !n.Provider() {
				n.VTEPs = append(n.VTEPs, state.VTEP{IP: c.VTEP(other)})
			}
		}
		d.Networks = append(d.Networks, n)
		if len(d.SecurityGroups) == 0 {
			d.SecurityGroups = c.securityGroups()
		}
		for _, p := range ports {
			switch {
			case p.NetworkID != n.ID:
			case p.Node == node:
				d.LocalPorts = append(d.LocalPorts, c.localPort(p))
			default:
				r := state.RemotePort{ID: p.ID, NetworkID: p.NetworkID, MAC: p.MAC, IPs: []netip.Addr{p.IP}}
				if !n.Provider() {
					r.VTEP = c.VTEP(p.Node)
				}
				d.RemotePorts = append(d.RemotePorts, r)
			}
		}
	}
	return d
}

// Names of what a lab makes in the host.

// NS returns the namespace name of a node, port or "underlay"/"rogue".
func (c Config) NS(name string) string { return c.Prefix + name }

// PortNS returns the namespace of a port.
func (c Config) PortNS(p Port) string {
	if p.NSName != "" {
		return c.NS(p.NSName)
	}
	return c.NS(p.Name)
}

// Instance returns the agent instance name of a node.
func (c Config) Instance(node string) string { return c.Prefix + node }

// PinDir is where the agent of node pins its programs and maps.
func (c Config) PinDir(node string) string {
	return filepath.Join(c.BPFFS, "vxdp", c.Instance(node))
}

// StateFile is the desired-state file of node's agent.
func (c Config) StateFile(node string) string { return filepath.Join(c.Dir, node+".state.json") }

// StateDir is the agent's --state-dir.
func (c Config) StateDir(node string) string { return filepath.Join(c.Dir, node+".agent") }

// NATSStore is the JetStream store of the lab's server (NATS mode).
func (c Config) NATSStore() string { return filepath.Join(c.Dir, "nats") }

// NATSLog is the server's log (NATS mode).
func (c Config) NATSLog() string { return filepath.Join(c.Dir, "nats.log") }

// LogFile is the agent's log.
func (c Config) LogFile(node string) string { return filepath.Join(c.Dir, node+".log") }

// processPaths are what a lab process makes: a node's agent its state
// directory, log and pins; the NATS server (key "nats") its store, log and
// ready file.
func (c Config) processPaths(key string) []string {
	if key == natsKey {
		return []string{c.NATSStore(), c.NATSLog(), filepath.Join(c.Dir, "nats.ready")}
	}
	if key == guestKey {
		return []string{c.GuestLog(), c.GuestLog() + ".qemu"}
	}
	if isServerKey(key) {
		return []string{c.LogFile(key)}
	}
	return []string{c.StateDir(key), c.LogFile(key), c.PinDir(key)}
}

// Namespaces lists every namespace of the lab, in build order.
func (c Config) Namespaces() []string {
	out := []string{c.NS("underlay")}
	for _, n := range Nodes {
		out = append(out, c.NS(n))
	}
	if c.Rogue {
		out = append(out, c.NS("rogue"))
	}
	if c.Provider {
		out = append(out, c.NS(PhysHost))
	}
	for _, p := range c.Ports() {
		if p.Name != c.Guest {
			out = append(out, c.PortNS(p))
		}
	}
	return out
}

// GuestPort is the port the guest is (ok false without a guest).
func (c Config) GuestPort() (Port, bool) {
	for _, p := range c.Ports() {
		if c.Guest != "" && p.Name == c.Guest {
			return p, true
		}
	}
	return Port{}, false
}

// GuestLog is the guest's console.
func (c Config) GuestLog() string { return filepath.Join(c.Dir, "guest-"+c.Guest+".console") }

// GuestImageDir caches the guest image (kernel package, initramfs) across
// labs: assembling it downloads a Debian kernel package once.
const GuestImageDir = "/var/cache/vxdp/guest"

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
