package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vxdp/vxdp/state"
)

// Benchmark modes wire the same namespaces without vxdp, so `vxdp bench
// path` can hold vxdp against what an operator would run instead, hop for
// hop. No agent runs and no BPF program is loaded in any of them.
const (
	// ModePlain plugs the VMs' NICs straight into the underlay bridge:
	// the same wire, no node namespace and no overlay (the two veth hops
	// of the taps fewer).
	ModePlain = "plain"
	// ModeFlat gives each node a bridge holding its taps and its NIC
	// (eth2), as Neutron's flat provider networks do: the same node
	// namespaces and hops as the overlay, kernel bridges, no
	// encapsulation.
	ModeFlat = "flat"
	// ModeNeutron makes what Neutron's linuxbridge agent with
	// l2population makes, with iproute2 as the agent does: the brq
	// bridge, vxlan-<VNI> (dstport 8472 nolearning ageing 300 noudpcsum,
	// MTU 1450, no proxy ARP: the seed leaves arp_responder off), the taps
	// on the bridge and the l2pop FDB entries. Firewall adds Neutron's
	// security groups.
	ModeNeutron = "neutron"
	// FirewallIptables is Neutron's iptables firewall driver with ipset
	// (the seed's firewall_driver = iptables, enable_ipset = true) and
	// the linuxbridge agent's ebtables ARP and MAC spoofing protection.
	FirewallIptables = "iptables"
)

// checkMode refuses combinations the benchmark modes do not build.
func (c Config) checkMode() error {
	switch c.Mode {
	case "":
		if c.Firewall != "" {
			return fmt.Errorf("lab: firewall %q needs mode %s (the agents enforce security groups themselves)", c.Firewall, ModeNeutron)
		}
	case ModePlain, ModeFlat, ModeNeutron:
		if c.SecondNetwork || c.Rogue || c.VIP || c.Control == ControlNATS {
			return fmt.Errorf("lab: mode %s builds the seed's one network with file control only (no second network, rogue host, VIP or NATS)", c.Mode)
		}
		if c.Guest != "" && c.Mode != ModeNeutron {
			return fmt.Errorf("lab: mode %s cannot hold a guest: use mode %s or the agents", c.Mode, ModeNeutron)
		}
		if c.Firewall != "" && (c.Mode != ModeNeutron || c.Firewall != FirewallIptables) {
			return fmt.Errorf("lab: firewall %q in mode %s: only %s in mode %s", c.Firewall, c.Mode, FirewallIptables, ModeNeutron)
		}
	default:
		return fmt.Errorf("lab: mode %q: want %s, %s or %s (or none: the agents)", c.Mode, ModePlain, ModeFlat, ModeNeutron)
	}
	for name := range c.PortGroups {
		if !slices.ContainsFunc(c.Ports(), func(p Port) bool { return p.Name == name }) {
			return fmt.Errorf("lab: security groups for %q, which is not a port of the lab", name)
		}
	}
	return nil
}

// groupsOf is a port's security groups: its PortGroups, else the default.
func (c Config) groupsOf(p Port) []state.SecurityGroup {
	if gs, ok := c.PortGroups[p.Name]; ok {
		return gs
	}
	return []state.SecurityGroup{c.defaultGroup()}
}

func (c Config) groupIDsOf(p Port) []string {
	var ids []string
	for _, g := range c.groupsOf(p) {
		ids = append(ids, g.ID)
	}
	return ids
}

// securityGroups is every group a port of the lab is in, once each.
func (c Config) securityGroups() []state.SecurityGroup {
	var out []state.SecurityGroup
	for _, p := range c.Ports() {
		for _, g := range c.groupsOf(p) {
			if !slices.ContainsFunc(out, func(o state.SecurityGroup) bool { return o.ID == g.ID }) {
				out = append(out, g)
			}
		}
	}
	return out
}

// addModePort makes a port's NIC: on the underlay wire in ModePlain, on
// a tap in its node otherwise.
func addModePort(c Config, p Port) error {
	if c.Mode != ModePlain {
		return addPort(c, p)
	}
	host := p.Name
	if p.NSName != "" {
		host = p.NSName
	}
	if err := plug(c, host, plainPort(p), underlayBridge, VMDev, p.IP, true); err != nil {
		return err
	}
	return Do(c.PortNS(p), func() error {
		l, err := netlink.LinkByName(VMDev)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetMTU(l, NetworkMTU); err != nil {
			return err
		}
		if err := netlink.LinkSetHardwareAddr(l, hw(p.MAC)); err != nil {
			return err
		}
		return prepareVMNIC(VMDev)
	})
}

// plainPort is the underlay side of a VM NIC in ModePlain.
func plainPort(p Port) string { return "v-" + p.Name }

// HostDev is where a VM's NIC meets the host: its tap in its node, or the
// underlay port in ModePlain. Its TX counters are what the VM received.
func (l *Lab) HostDev(p Port) (ns, dev string) {
	if l.Mode == ModePlain {
		return l.NS("underlay"), plainPort(p)
	}
	return l.NS(p.Node), p.Tap()
}

// wireMode builds a benchmark mode's forwarding in place of the agents.
func (l *Lab) wireMode() error {
	for _, node := range Nodes {
		ports := l.portsOn(node)
		if len(ports) == 0 || l.Mode == ModePlain {
			continue
		}
		if p, ok := l.GuestPort(); ok && p.Node == node {
			if err := waitLink(l.NS(node), p.Tap(), 30*time.Second); err != nil {
				return fmt.Errorf("guest %s: %w", p.Name, err)
			}
		}
		var err error
		if l.Mode == ModeFlat {
			err = l.wireFlat(node, ports)
		} else {
			err = l.wireNeutron(node, ports)
		}
		if err != nil {
			return fmt.Errorf("%s mode on %s: %w", l.Mode, node, err)
		}
	}
	if l.Firewall == FirewallIptables {
		return l.applyFirewall()
	}
	return nil
}

func (l *Lab) portsOn(node string) []Port {
	var out []Port
	for _, p := range l.Ports() {
		if p.Node == node {
			out = append(out, p)
		}
	}
	return out
}

// wireFlat bridges the node's taps with its NIC.
func (l *Lab) wireFlat(node string, ports []Port) error {
	br := state.BridgeName(Net100ID)
	cmds := [][]string{{"link", "add", br, "type", "bridge"}, {"link", "set", VTEPDev, "master", br}}
	for _, p := range ports {
		cmds = append(cmds, []string{"link", "set", p.Tap(), "master", br, "up"})
	}
	cmds = append(cmds, []string{"link", "set", br, "up"})
	if err := ipCommands(l.NS(node), "ip", cmds); err != nil {
		return err
	}
	return Do(l.NS(node), func() error { return writeSysctl("net/ipv6/conf/"+br+"/disable_ipv6", "1") })
}

// wireNeutron makes the linuxbridge agent's objects of the node: bridge,
// vxlan device, taps enslaved, l2pop FDB (flood entries per other VTEP,
// one per remote port).
func (l *Lab) wireNeutron(node string, ports []Port) error {
	d := l.DesiredState(node)
	for _, n := range d.Networks {
		br, vx := state.BridgeName(n.ID), state.VXLANName(n.VNI)
		mtu := fmt.Sprint(n.MTU)
		cmds := [][]string{
			{"link", "add", br, "type", "bridge"},
			{"link", "add", vx, "mtu", mtu, "type", "vxlan", "id", fmt.Sprint(n.VNI), "dev", VTEPDev, "local", NodeIP(node).String(),
				"dstport", fmt.Sprint(VXLANPort), "nolearning", "ageing", "300", "noudpcsum"},
			{"link", "set", vx, "master", br, "up"},
		}
		for _, p := range ports {
			if p.NetworkID == n.ID {
				cmds = append(cmds, []string{"link", "set", p.Tap(), "master", br, "mtu", mtu, "up"})
			}
		}
		cmds = append(cmds, []string{"link", "set", br, "up"})
		if err := ipCommands(l.NS(node), "ip", cmds); err != nil {
			return err
		}
		if err := Do(l.NS(node), func() error {
			for _, dev := range []string{br, vx} {
				if err := writeSysctl("net/ipv6/conf/"+dev+"/disable_ipv6", "1"); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
		var fdb [][]string
		for _, v := range n.VTEPs {
			fdb = append(fdb, []string{"fdb", "append", "00:00:00:00:00:00", "dev", vx, "dst", v.IP.String(), "self", "permanent"})
		}
		for _, rp := range d.RemotePorts {
			if rp.NetworkID == n.ID {
				fdb = append(fdb, []string{"fdb", "replace", rp.MAC.String(), "dev", vx, "dst", rp.VTEP.String(), "self", "permanent"})
			}
		}
		if err := ipCommands(l.NS(node), "bridge", fdb); err != nil {
			return err
		}
	}
	return nil
}

// ipCommands runs iproute2's tool (ip or bridge) with each argument list
// in namespace ns.
func ipCommands(ns, tool string, cmds [][]string) error {
	for _, args := range cmds {
		if err := runIn(ns, nil, tool, args...); err != nil {
			return err
		}
	}
	return nil
}

// runIn runs a command in namespace ns (ip netns exec), stdin from in.
func runIn(ns string, in io.Reader, name string, args ...string) error {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.Stdin = in
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// waitLink waits until dev exists in namespace ns.
func waitLink(ns, dev string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := LinkInfo(ns, dev); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear in %s within %s", dev, ns, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// LikeHardware makes the lab's NICs behave as a hypervisor's do, for
// benchmarks, in every mode alike: GRO on each node's NIC (eth2; a
// physical NIC aggregates, VXLAN included, before the stack sees a frame)
// and on the host side of every namespace VM's NIC (a VM's frames then
// enter the host through NAPI, as from vhost-net; the benchmark's
// XDP_TX generator needs that to deliver), and bridge netfilter off on
// the underlay's switch and on the nodes unless Neutron's iptables
// firewall runs (br_netfilter is not loaded on a Debian host; the
// firewall driver turns it on).
func (l *Lab) LikeHardware() error {
	brnf := "0"
	if l.Firewall == FirewallIptables {
		brnf = "1"
	}
	bridgeNF := func(v string) error {
		for _, k := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"} {
			if err := writeSysctl("net/bridge/"+k, v); err != nil {
				return err
			}
		}
		return nil
	}
	// The underlay is a switch: no netfilter on its bridge.
	if err := Do(l.NS("underlay"), func() error { return bridgeNF("0") }); err != nil {
		return fmt.Errorf("underlay: %w", err)
	}
	for _, node := range Nodes {
		if err := Do(l.NS(node), func() error {
			if err := bridgeNF(brnf); err != nil {
				return err
			}
			return ethtoolSet(VTEPDev, ethtoolSGRO, true)
		}); err != nil {
			return fmt.Errorf("%s: %w", node, err)
		}
	}
	for _, p := range l.Ports() {
		if p.Name == l.Guest {
			continue // a real tap: the guest's virtio queues feed it
		}
		ns, dev := l.HostDev(p)
		if err := Do(ns, func() error { return ethtoolSet(dev, ethtoolSGRO, true) }); err != nil {
			return fmt.Errorf("%s: %w", dev, err)
		}
	}
	return nil
}

// serverKey names a server process of the lab in its manifest.
const serverKeyPrefix = "server-"

func isServerKey(key string) bool { return strings.HasPrefix(key, serverKeyPrefix) }

// StartServer runs argv in namespace ns as a process of the lab (recorded
// in its manifest, stopped by Close and by `vxdp lab down`), logging to
// LogFile("server-"+name). It returns the pid.
func (l *Lab) StartServer(name, ns string, argv ...string) (int, error) {
	key := serverKeyPrefix + name
	ip, err := exec.LookPath("ip")
	if err != nil {
		return 0, err
	}
	a, err := l.spawnExec(key, ip, append([]string{"netns", "exec", ns}, argv...), l.LogFile(key))
	if err != nil {
		return 0, fmt.Errorf("start %s in %s: %w", name, ns, err)
	}
	return a.pid, l.writeManifest()
}

// PIDs lists the processes the lab started that still run.
func (l *Lab) PIDs() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int
	for _, a := range l.agents {
		if a.running() {
			out = append(out, a.pid)
		}
	}
	slices.Sort(out)
	return out
}

// PauseGuest stops (SIGSTOP) or resumes (SIGCONT) the guest's qemu, so
// an idle guest's emulation does not run beside another lab's figures.
func (l *Lab) PauseGuest(pause bool) error {
	l.mu.Lock()
	a := l.agents[guestKey]
	l.mu.Unlock()
	if !a.running() {
		return nil
	}
	sig := syscall.SIGCONT
	if pause {
		sig = syscall.SIGSTOP
	}
	return a.proc.Signal(sig)
}

// SetPortGroups changes the ports' security groups and waits until they
// are enforced: the agents have applied them, or Neutron's firewall
// rules are rewritten.
func (l *Lab) SetPortGroups(ctx context.Context, groups map[string][]state.SecurityGroup) error {
	c := l.Config
	c.PortGroups = groups
	if err := c.checkMode(); err != nil {
		return err
	}
	l.mu.Lock()
	l.Config.PortGroups = groups
	l.mu.Unlock()
	switch {
	case l.Mode == "":
		if err := l.Publish(); err != nil {
			return err
		}
		return l.WaitApplied(ctx)
	case l.Firewall == FirewallIptables:
		return l.applyFirewall()
	}
	return nil
}

// InstallPackages installs the Debian packages (command -> package) whose
// command is not on PATH.
func InstallPackages(pkgs map[string]string, log io.Writer, what string) error {
	var missing []string
	for cmd, pkg := range pkgs {
		if _, err := exec.LookPath(cmd); err != nil && !slices.Contains(missing, pkg) {
			missing = append(missing, pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	fmt.Fprintf(log, "%s: installing %s\n", what, strings.Join(missing, " "))
	if out, err := apt(append([]string{"install", "-y", "-q", "--no-install-recommends"}, missing...)...); err != nil {
		return fmt.Errorf("apt-get install %s: %w\n%s", strings.Join(missing, " "), err, out)
	}
	return nil
}

func apt(args ...string) ([]byte, error) {
	cmd := exec.Command("apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	return cmd.CombinedOutput()
}
