package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vxdp/vxdp/state"
)

func TestCheckModeRefusesWhatItCannotBuild(t *testing.T) {
	for _, c := range []Config{
		{Mode: "ovs"},
		{Mode: ModeFlat, SecondNetwork: true},
		{Mode: ModePlain, Guest: "vm1"},
		{Mode: ModeFlat, Firewall: FirewallIptables},
		{Mode: ModeNeutron, Firewall: "nftables"},
		{Firewall: FirewallIptables},
		{Mode: ModeNeutron, Control: ControlNATS},
		{PortGroups: map[string][]state.SecurityGroup{"vm9": nil}},
	} {
		if err := c.checkMode(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	for _, c := range []Config{{}, {Mode: ModeNeutron, Firewall: FirewallIptables, Guest: "vm1"}, {Mode: ModePlain}} {
		if err := c.checkMode(); err != nil {
			t.Errorf("%+v refused: %v", c, err)
		}
	}
}

func TestIptablesRuleIsNeutrons(t *testing.T) {
	u8 := func(v uint8) *uint8 { return &v }
	pfx := func(s string) []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix(s)} }
	tests := []struct {
		rule state.Rule
		want string
	}{
		{state.Rule{Direction: state.Ingress, EtherType: state.IPv4, Protocol: 6, PortMin: 22, PortMax: 22, RemotePrefixes: pfx("10.0.0.0/8")},
			"-s 10.0.0.0/8 -p tcp -m tcp --dport 22 -j RETURN"},
		{state.Rule{Direction: state.Egress, EtherType: state.IPv4, Protocol: 17, PortMin: 8000, PortMax: 8099, RemotePrefixes: pfx("203.0.113.0/24")},
			"-d 203.0.113.0/24 -p udp -m udp -m multiport --dports 8000:8099 -j RETURN"},
		{state.Rule{Direction: state.Ingress, EtherType: state.IPv4, Protocol: 1, ICMPType: u8(8), ICMPCode: u8(0)},
			"-p icmp -m icmp --icmp-type 8/0 -j RETURN"},
		{state.Rule{Direction: state.Ingress, EtherType: state.IPv4, RemoteGroup: "sg-1", RemotePrefixes: pfx("172.16.100.19/32")},
			"-m set --match-set NIPv4sg-1 src -j RETURN"},
		{state.Rule{Direction: state.Ingress, EtherType: state.IPv4, Protocol: 1, RemotePrefixes: pfx("172.16.100.19/32")},
			"-s 172.16.100.19/32 -p icmp -j RETURN"},
		{state.Rule{Direction: state.Egress, EtherType: state.IPv4}, "-j RETURN"},
	}
	for _, tt := range tests {
		if got := iptablesRule(tt.rule); got != tt.want {
			t.Errorf("%+v:\n got %s\nwant %s", tt.rule, got, tt.want)
		}
	}
}

// TestNeutronFirewallChains: the port's chains are reached the way the
// driver wires them, and its group's remote group is an ipset.
func TestNeutronFirewallChains(t *testing.T) {
	fw := Config{}.neutronFirewall([]Port{VM1})
	for _, want := range []string{
		"-A neutron-linuxbri-FORWARD -m physdev --physdev-out tap9784ef08-97 --physdev-is-bridged",
		"-A neutron-linuxbri-sg-chain -m physdev --physdev-out tap9784ef08-97 --physdev-is-bridged -m comment --comment \"Jump to the VM specific chain.\" -j neutron-linuxbri-i9784ef08-9",
		"-A neutron-linuxbri-i9784ef08-9 -m state --state RELATED,ESTABLISHED",
		"-A neutron-linuxbri-i9784ef08-9 -m set --match-set " + ipsetName(DefaultGroupID) + " src -j RETURN",
		"-A neutron-linuxbri-s9784ef08-9 -s 172.16.100.12/32 -m mac --mac-source FA:16:3E:06:42:34",
		"-j CT --zone 4097",
	} {
		if !strings.Contains(fw.iptables, want) {
			t.Errorf("rules lack %q:\n%s", want, fw.iptables)
		}
	}
	if !strings.Contains(fw.ipsets, "add "+ipsetName(DefaultGroupID)+" 172.16.100.19/32") {
		t.Errorf("ipset lacks vm2's address:\n%s", fw.ipsets)
	}
}

// TestBenchModes builds each benchmark mode and checks that vm2 reaches
// vm1 through what the mode claims and through nothing of vxdp's.
func TestBenchModes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces")
	}
	for i, mode := range []string{ModePlain, ModeFlat, ModeNeutron} {
		t.Run(mode, func(t *testing.T) {
			l := upMode(t, Config{Prefix: fmt.Sprintf("vxm%d%d-", os.Getpid(), i), Mode: mode})
			for _, n := range Nodes {
				links, _ := Links(l.NS(n))
				for _, dev := range links {
					if progs, _ := BPFAttachments(l.NS(n), dev); len(progs) > 0 {
						t.Errorf("%s %s: BPF programs %v in a mode without vxdp", n, dev, progs)
					}
				}
			}
			switch mode {
			case ModeFlat:
				eth2, err := LinkInfo(l.NS("node4"), VTEPDev)
				if err != nil || eth2.Attrs().MasterIndex == 0 {
					t.Errorf("node4's NIC is not on a bridge: %v", err)
				}
			case ModeNeutron:
				link, err := LinkInfo(l.NS("node4"), state.VXLANName(100))
				vx, ok := link.(*netlink.Vxlan)
				if err != nil || !ok || vx.Port != VXLANPort || vx.Learning || vx.UDPCSum || vx.VxlanId != 100 || vx.MTU != NetworkMTU {
					t.Errorf("vxlan-100 on node4: %+v %v, want Neutron's (id 100, dstport 8472, nolearning, noudpcsum, mtu 1450)", link, err)
				}
				fdb, err := KernelFDB(l.NS("node4"), state.VXLANName(100))
				if err != nil || !strings.Contains(fmt.Sprint(fdb), VM2.MAC.String()+" dst 192.168.248.3 self permanent") {
					t.Errorf("node4's l2pop FDB %v (%v) lacks vm2 at node3", fdb, err)
				}
			}
		})
	}
}

// TestNeutronFirewallEnforces: with Neutron's iptables firewall, vm1's
// groups decide what reaches it, and a change applies.
func TestNeutronFirewallEnforces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces")
	}
	onlySSH := state.SecurityGroup{ID: "ssh-only", Rules: []state.Rule{
		{ID: "e4", Direction: state.Egress, EtherType: state.IPv4},
		{ID: "ssh", Direction: state.Ingress, EtherType: state.IPv4, Protocol: state.ProtoTCP, PortMin: 22, PortMax: 22}}}
	l := upMode(t, Config{Prefix: fmt.Sprintf("vxw%d-", os.Getpid()), Mode: ModeNeutron, Firewall: FirewallIptables,
		PortGroups: map[string][]state.SecurityGroup{VM1.Name: {onlySSH}}})
	if res, _ := Ping(l.PortNS(VM2), VM1.IP, 2, 50*time.Millisecond, 500*time.Millisecond); res.Received != 0 {
		t.Errorf("ping reached vm1, whose group allows TCP 22 only: %+v", res)
	}
	withICMP := onlySSH
	withICMP.Rules = append(withICMP.Rules, state.Rule{ID: "icmp", Direction: state.Ingress, EtherType: state.IPv4, Protocol: state.ProtoICMP,
		RemotePrefixes: []netip.Prefix{netip.PrefixFrom(VM2.IP, 32)}})
	if err := l.SetPortGroups(t.Context(), map[string][]state.SecurityGroup{VM1.Name: {withICMP}}); err != nil {
		t.Fatal(err)
	}
	if res, err := Ping(l.PortNS(VM2), VM1.IP, 3, 50*time.Millisecond, time.Second); err != nil || res.Received == 0 {
		t.Errorf("ping after allowing ICMP from vm2: %+v %v", res, err)
	}
}

// upMode brings a mode's lab up with GRO on as the benchmark does, pings
// vm2 -> vm1 once (but for a firewall), and tears it down at the end.
func upMode(t *testing.T, cfg Config) *Lab {
	t.Helper()
	cfg.Dir, cfg.Control = t.TempDir(), ControlFile
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	l, err := Up(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, l)
	if err := l.LikeHardware(); err != nil {
		t.Fatal(err)
	}
	if cfg.Firewall == "" {
		if res, err := Ping(l.PortNS(VM2), VM1.IP, 3, 50*time.Millisecond, time.Second); err != nil || res.Received == 0 {
			t.Fatalf("ping vm2 -> vm1 in mode %s: %+v %v", cfg.Mode, res, err)
		}
	}
	return l
}

// closeAtEnd tears l down when the test ends and fails it if anything of
// the lab is left.
func closeAtEnd(t *testing.T, l *Lab) {
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("teardown: %v", err)
		}
		if left := Leftovers(l.Config); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
	})
}
