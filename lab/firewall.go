package lab

import (
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/vxdp/vxdp/state"
)

// Neutron's security groups on a linuxbridge host, as its iptables
// firewall driver (with ipset) and the agent's ARP/MAC spoofing protection
// write them, for ModeNeutron with FirewallIptables: per port an ingress,
// an egress and an anti-spoofing chain reached through physdev matches
// from FORWARD (bridged frames pass iptables with br_netfilter on),
// stateful through conntrack (a zone per network in the raw table),
// remote groups as ipsets, and ebtables chains on each tap. IPv4 only:
// the benchmark's traffic is IPv4, so Neutron's ip6tables rules would not
// be consulted.

// firewallPackages are the tools the firewall needs on the host.
var firewallPackages = map[string]string{
	"iptables-restore": "iptables",
	"ipset":            "ipset",
	"conntrack":        "conntrack",
	"ebtables":         "ebtables",
}

// iptablesBinary is the chain prefix of the linuxbridge agent
// ("neutron-" + its binary name, truncated as iptables_manager does).
const iptablesBinary = "neutron-linuxbri"

// conntrackZone is the zone Neutron's linuxbridge driver gives the
// network's ports (one zone per network, from 4097).
const conntrackZone = 4097

// applyFirewall writes every node's rules (ipsets first: the rules use
// them), replacing the filter and raw tables.
func (l *Lab) applyFirewall() error {
	if err := InstallPackages(firewallPackages, l.log, "firewall"); err != nil {
		return err
	}
	for _, node := range Nodes {
		ports := l.portsOn(node)
		if len(ports) == 0 {
			continue
		}
		fw := l.neutronFirewall(ports)
		ns := l.NS(node)
		if err := runIn(ns, strings.NewReader(fw.ipsets), "ipset", "restore"); err != nil {
			return err
		}
		if err := runIn(ns, strings.NewReader(fw.iptables), "iptables-restore"); err != nil {
			return err
		}
		for _, args := range fw.ebtables {
			if err := runIn(ns, nil, "ebtables", args...); err != nil {
				return err
			}
		}
	}
	return nil
}

// neutronRules is one node's firewall: `ipset restore` input,
// `iptables-restore` input and ebtables commands.
type neutronRules struct {
	ipsets   string
	iptables string
	ebtables [][]string
}

// neutronFirewall writes the rules of ports (all on one node).
func (c Config) neutronFirewall(ports []Port) neutronRules {
	var sets, raw, filter strings.Builder
	chains := []string{"FORWARD", "INPUT", "OUTPUT", "local", "sg-chain", "sg-fallback"}
	var forward, input, sgChain, portChains []string
	ebt := [][]string{{"-t", "nat", "-F"}, {"-t", "nat", "-X"}}
	seenSets := map[string]bool{}
	rawRules := []string{}
	for _, p := range ports {
		tap := p.Tap()
		in, out, spoof := portChain("i", tap), portChain("o", tap), portChain("s", tap)
		chains = append(chains, in[len(iptablesBinary)+1:], out[len(iptablesBinary)+1:], spoof[len(iptablesBinary)+1:])
		physOut := fmt.Sprintf("-m physdev --physdev-out %s --physdev-is-bridged", tap)
		physIn := fmt.Sprintf("-m physdev --physdev-in %s --physdev-is-bridged", tap)
		forward = append(forward,
			physOut+` -m comment --comment "Direct traffic from the VM interface to the security group chain." -j `+chain("sg-chain"),
			physIn+` -m comment --comment "Direct traffic from the VM interface to the security group chain." -j `+chain("sg-chain"))
		input = append(input, physIn+` -m comment --comment "Direct incoming traffic from VM to the security group chain." -j `+out)
		sgChain = append(sgChain,
			physOut+` -m comment --comment "Jump to the VM specific chain." -j `+in,
			physIn+` -m comment --comment "Jump to the VM specific chain." -j `+out)
		ip := p.IP.String() + "/32"
		established := `-m state --state RELATED,ESTABLISHED -m comment --comment "Direct packets associated with a known session to the RETURN chain." -j RETURN`
		invalid := `-m state --state INVALID -m comment --comment "Drop packets that appear related to an existing connection (e.g. TCP ACK/FIN) but do not have an entry in conntrack." -j DROP`
		fallback := `-m comment --comment "Send unmatched traffic to the fallback chain." -j ` + chain("sg-fallback")
		ingress := []string{established,
			"-d " + ip + " -p udp -m udp --sport 67 --dport 68 -j RETURN",
			"-d 255.255.255.255/32 -p udp -m udp --sport 67 --dport 68 -j RETURN"}
		egress := []string{
			`-s 0.0.0.0/32 -d 255.255.255.255/32 -p udp -m udp --sport 68 --dport 67 -m comment --comment "Allow DHCP client traffic." -j RETURN`,
			"-j " + spoof,
			`-p udp -m udp --sport 68 --dport 67 -m comment --comment "Allow DHCP client traffic." -j RETURN`,
			`-p udp -m udp --sport 67 --dport 68 -m comment --comment "Prevent DHCP Spoofing by VM." -j DROP`,
			established}
		for _, g := range c.groupsOf(p) {
			for _, r := range g.Rules {
				if r.EtherType != state.IPv4 {
					continue
				}
				if r.RemoteGroup != "" && !seenSets[r.RemoteGroup] {
					seenSets[r.RemoteGroup] = true
					writeIPSet(&sets, r.RemoteGroup, r.RemotePrefixes)
				}
				if r.Direction == state.Ingress {
					ingress = append(ingress, iptablesRule(r))
				} else {
					egress = append(egress, iptablesRule(r))
				}
			}
		}
		ingress = append(ingress, invalid, fallback)
		egress = append(egress, invalid, fallback)
		portChains = append(portChains, appendRules(in, ingress)...)
		portChains = append(portChains, appendRules(out, egress)...)
		portChains = append(portChains, appendRules(spoof, []string{
			fmt.Sprintf(`-s %s -m mac --mac-source %s -m comment --comment "Allow traffic from defined IP/MAC pairs." -j RETURN`, ip, strings.ToUpper(p.MAC.String())),
			`-m comment --comment "Drop traffic without an IP/MAC allow rule." -j DROP`})...)

		comment := fmt.Sprintf(`-m comment --comment "Set zone for %s"`, p.ID[4:])
		br := state.BridgeName(p.NetworkID)
		for _, match := range []string{"-m physdev --physdev-in " + br, "-i " + br, "-m physdev --physdev-in " + tap} {
			rawRules = append(rawRules, fmt.Sprintf("%s %s -j CT --zone %d", match, comment, conntrackZone))
		}
		// The linuxbridge agent's arp_protect: every frame from the tap
		// must carry the port's MAC, every ARP its address.
		mac, arp := "neutronMAC-"+tap, "neutronARP-"+tap
		ebt = append(ebt,
			[]string{"-t", "nat", "-N", mac, "-P", "DROP"},
			[]string{"-t", "nat", "-A", "PREROUTING", "-i", tap, "-j", mac},
			[]string{"-t", "nat", "-A", mac, "-i", tap, "--among-src", p.MAC.String(), "-j", "RETURN"},
			[]string{"-t", "nat", "-N", arp, "-P", "DROP"},
			[]string{"-t", "nat", "-A", arp, "-p", "ARP", "--arp-ip-src", p.IP.String(), "-j", "ACCEPT"},
			[]string{"-t", "nat", "-A", "PREROUTING", "-i", tap, "-j", arp, "-p", "ARP"})
	}

	raw.WriteString("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	fmt.Fprintf(&raw, ":%s - [0:0]\n:%s - [0:0]\n", chain("OUTPUT"), chain("PREROUTING"))
	fmt.Fprintf(&raw, "-A PREROUTING -j %s\n-A OUTPUT -j %s\n", chain("PREROUTING"), chain("OUTPUT"))
	for _, r := range rawRules {
		fmt.Fprintf(&raw, "-A %s %s\n", chain("PREROUTING"), r)
	}
	raw.WriteString("COMMIT\n")

	filter.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:neutron-filter-top - [0:0]\n")
	for _, ch := range chains {
		fmt.Fprintf(&filter, ":%s - [0:0]\n", chain(ch))
	}
	fmt.Fprintf(&filter, "-A FORWARD -j neutron-filter-top\n-A FORWARD -j %s\n-A INPUT -j %s\n-A OUTPUT -j neutron-filter-top\n-A OUTPUT -j %s\n",
		chain("FORWARD"), chain("INPUT"), chain("OUTPUT"))
	fmt.Fprintf(&filter, "-A neutron-filter-top -j %s\n", chain("local"))
	writeRules(&filter, chain("FORWARD"), forward)
	writeRules(&filter, chain("INPUT"), input)
	writeRules(&filter, chain("sg-chain"), append(sgChain, "-j ACCEPT"))
	writeRules(&filter, chain("sg-fallback"), []string{`-m comment --comment "Default drop rule for unmatched traffic." -j DROP`})
	for _, r := range portChains {
		filter.WriteString(r)
	}
	filter.WriteString("COMMIT\n")
	return neutronRules{ipsets: sets.String(), iptables: raw.String() + filter.String(), ebtables: ebt}
}

// chain is the agent's chain of a name.
func chain(name string) string { return iptablesBinary + "-" + name }

// portChain is a port's chain: i (ingress), o (egress) or s (spoofing)
// and the tap name without "tap", to the 28 characters iptables allows.
func portChain(kind, tap string) string {
	name := kind + tap[3:]
	return chain(name[:min(len(name), 28-len(iptablesBinary)-1)])
}

func appendRules(ch string, rules []string) []string {
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = fmt.Sprintf("-A %s %s\n", ch, r)
	}
	return out
}

func writeRules(w io.Writer, ch string, rules []string) {
	for _, r := range appendRules(ch, rules) {
		io.WriteString(w, r)
	}
}

// ipsetName is Neutron's set of a remote group's IPv4 members.
func ipsetName(groupID string) string {
	name := "NIPv4" + groupID
	return name[:min(len(name), 31-len("_new"))]
}

func writeIPSet(w io.Writer, groupID string, members []netip.Prefix) {
	name := ipsetName(groupID)
	fmt.Fprintf(w, "create %s hash:net family inet -exist\nflush %s\n", name, name)
	for _, m := range members {
		if m.Addr().Is4() {
			fmt.Fprintf(w, "add %s %s -exist\n", name, m.Masked())
		}
	}
}

// iptablesRule is a security-group rule as the driver writes it
// (_convert_sgr_to_iptables_rules): remote, protocol, ports, RETURN.
func iptablesRule(r state.Rule) string {
	var a []string
	remote, ipsetDir := "-s", "src"
	if r.Direction == state.Egress {
		remote, ipsetDir = "-d", "dst"
	}
	switch {
	case r.RemoteGroup != "":
		a = append(a, "-m set --match-set", ipsetName(r.RemoteGroup), ipsetDir)
	case len(r.RemotePrefixes) > 0 && r.RemotePrefixes[0].Bits() > 0:
		a = append(a, remote, r.RemotePrefixes[0].Masked().String())
	}
	icmpType := state.IsICMP(r.Protocol, r.EtherType) && r.ICMPType != nil
	ports := state.HasPorts(r.Protocol) && r.PortMin != 0
	if r.Protocol != 0 {
		// "-m proto" only with a port or ICMP type, as the driver writes it.
		name := protoName(r.Protocol)
		a = append(a, "-p", name)
		if ports || icmpType {
			a = append(a, "-m", name)
		}
	}
	switch {
	case icmpType:
		t := fmt.Sprint(*r.ICMPType)
		if r.ICMPCode != nil {
			t += fmt.Sprintf("/%d", *r.ICMPCode)
		}
		a = append(a, "--icmp-type", t)
	case ports && r.PortMin == r.PortMax:
		a = append(a, "--dport", fmt.Sprint(r.PortMin))
	case ports:
		a = append(a, "-m multiport --dports", fmt.Sprintf("%d:%d", r.PortMin, r.PortMax))
	}
	return strings.Join(append(a, "-j RETURN"), " ")
}

func protoName(p uint8) string {
	switch p {
	case state.ProtoTCP:
		return "tcp"
	case state.ProtoUDP:
		return "udp"
	case state.ProtoICMP:
		return "icmp"
	case state.ProtoSCTP:
		return "sctp"
	case state.ProtoDCCP:
		return "dccp"
	case state.ProtoUDPLite:
		return "udplite"
	}
	return fmt.Sprint(p)
}
