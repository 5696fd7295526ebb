package lab

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/vxdp/vxdp/state"
)

func TestDesiredStateIsL2Population(t *testing.T) {
	ip := netip.MustParseAddr
	type want struct {
		vteps  map[uint32][]netip.Addr
		local  []string              // port ids
		remote map[string]netip.Addr // port id -> vtep
	}
	tests := []struct {
		name   string
		cfg    Config
		node   string
		expect want
	}{
		{"seed node1", Config{}, "node1", want{
			vteps:  map[uint32][]netip.Addr{100: {ip("192.168.248.3"), ip("192.168.248.4")}},
			local:  []string{DHCP.ID},
			remote: map[string]netip.Addr{VM2.ID: ip("192.168.248.3"), VM1.ID: ip("192.168.248.4")}}},
		{"seed node3", Config{}, "node3", want{
			vteps:  map[uint32][]netip.Addr{100: {ip("192.168.248.1"), ip("192.168.248.4")}},
			local:  []string{VM2.ID},
			remote: map[string]netip.Addr{DHCP.ID: ip("192.168.248.1"), VM1.ID: ip("192.168.248.4")}}},
		{"two networks node4", Config{SecondNetwork: true}, "node4", want{
			vteps:  map[uint32][]netip.Addr{100: {ip("192.168.248.1"), ip("192.168.248.3")}, 200: {ip("192.168.248.3")}},
			local:  []string{VM1.ID, VM4.ID},
			remote: map[string]netip.Addr{DHCP.ID: ip("192.168.248.1"), VM2.ID: ip("192.168.248.3"), VM3.ID: ip("192.168.248.3")}}},
		{"two networks node1 does not serve vni 200", Config{SecondNetwork: true}, "node1", want{
			vteps:  map[uint32][]netip.Addr{100: {ip("192.168.248.3"), ip("192.168.248.4")}},
			local:  []string{DHCP.ID},
			remote: map[string]netip.Addr{VM2.ID: ip("192.168.248.3"), VM1.ID: ip("192.168.248.4")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.cfg.DesiredState(tt.node)
			if err := d.Validate(); err != nil {
				t.Fatalf("state does not validate: %v", err)
			}
			gotVTEPs := map[uint32][]netip.Addr{}
			for _, n := range d.Networks {
				for _, v := range n.VTEPs {
					gotVTEPs[n.VNI] = append(gotVTEPs[n.VNI], v.IP)
				}
			}
			if fmt.Sprint(gotVTEPs) != fmt.Sprint(tt.expect.vteps) {
				t.Errorf("flood lists %v, want %v", gotVTEPs, tt.expect.vteps)
			}
			var local []string
			for _, p := range d.LocalPorts {
				local = append(local, p.ID)
				if p.TapName() != state.TapName(p.ID) || len(p.TapName()) != 14 {
					t.Errorf("tap of %s is %q, want Neutron's %q", p.ID, p.TapName(), state.TapName(p.ID))
				}
			}
			if !slices.Equal(local, tt.expect.local) {
				t.Errorf("local ports %v, want %v", local, tt.expect.local)
			}
			remote := map[string]netip.Addr{}
			for _, p := range d.RemotePorts {
				remote[p.ID] = p.VTEP
				if len(p.IPs) != 1 {
					t.Errorf("remote port %s has IPs %v, want its fixed IP", p.ID, p.IPs)
				}
			}
			if fmt.Sprint(remote) != fmt.Sprint(tt.expect.remote) {
				t.Errorf("remote ports %v, want %v", remote, tt.expect.remote)
			}
		})
	}
}

func TestSeedTapNames(t *testing.T) {
	for _, tc := range []struct {
		p   Port
		tap string
	}{
		{DHCP, "tapd40d05b8-bd"}, {VM2, "tap31c64a21-76"}, {VM1, "tap9784ef08-97"},
	} {
		if tc.p.Tap() != tc.tap {
			t.Errorf("%s: tap %q, want %q", tc.p.Name, tc.p.Tap(), tc.tap)
		}
	}
}

func TestVIPIsNotPushedToOtherNodes(t *testing.T) {
	c := Config{VIP: true}
	for _, p := range c.DesiredState("node3").RemotePorts {
		if slices.Contains(p.IPs, VIP) {
			t.Errorf("node3 learns the VIP %s from l2population: ARP for it would never flood", VIP)
		}
	}
	var pairs []state.AddressPair
	for _, p := range c.DesiredState("node4").LocalPorts {
		if p.ID == VM1.ID {
			pairs = p.AllowedAddressPairs
		}
	}
	if len(pairs) != 1 || pairs[0].IP.Addr() != VIP {
		t.Errorf("vm1's allowed address pairs %v, want %s", pairs, VIP)
	}
}

func TestCmdlineHas(t *testing.T) {
	tests := []struct {
		cmdline string
		want    bool
	}{
		{"/tmp/vxdp\x00agent\x00--state\x00f\x00--instance\x00vx-node3\x00", true},
		{"/tmp/vxdp\x00agent\x00--instance=vx-node3\x00", true},
		{"/tmp/vxdp\x00agent\x00--instance\x00vx-node33\x00", false},
		{"/tmp/vxdp\x00dump\x00--instance\x00vx-node3\x00", false},
		{"/tmp/vxdp\x00agent\x00--instance\x00", false},
		{"/tmp/vxdp\x00server\x00--instance\x00vx-node3\x00", false},
	}
	for _, tt := range tests {
		if got := cmdlineHas([]byte(tt.cmdline), "agent", "--instance", "vx-node3"); got != tt.want {
			t.Errorf("%q: %v, want %v", tt.cmdline, got, tt.want)
		}
	}
}

// TestTopology builds the namespaces and links without agents and checks
// the underlay and the VM NICs; teardown must leave nothing.
func TestTopology(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces")
	}
	cfg := Config{Prefix: fmt.Sprintf("vxl%d-", os.Getpid()), Dir: t.TempDir(), Rogue: true, SecondNetwork: true, BPFFS: "/sys/fs/bpf"}
	l, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, l)
	if err := l.Build(); err != nil {
		t.Fatal(err)
	}
	for _, from := range []string{"node1", "node3", "node4", "rogue"} {
		for _, to := range Nodes {
			if from == to {
				continue
			}
			res, err := Ping(l.NS(from), NodeIP(to), 1, 0, 2*time.Second)
			if err != nil || res.Received != 1 {
				t.Errorf("underlay ping %s -> %s: %+v %v", from, to, res, err)
			}
		}
	}
	for _, p := range l.Ports() {
		eth, err := LinkInfo(l.PortNS(p), VMDev)
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		if a := eth.Attrs(); a.MTU != NetworkMTU || a.HardwareAddr.String() != p.MAC.String() || (a.Xdp != nil && a.Xdp.Attached) {
			t.Errorf("%s eth0: mtu %d mac %s xdp %+v, want mtu %d mac %s and no XDP program", p.Name, a.MTU, a.HardwareAddr, a.Xdp, NetworkMTU, p.MAC)
		}
		var gro bool
		if err := Do(l.PortNS(p), func() (err error) { gro, err = ethtoolGet(VMDev, ethtoolGGRO); return err }); err != nil || !gro {
			t.Errorf("%s eth0: GRO %v (%v), want on, as a virtio guest has it", p.Name, gro, err)
		}
		tap, err := LinkInfo(l.NS(p.Node), p.Tap())
		if err != nil {
			t.Fatalf("%s tap: %v", p.Name, err)
		}
		if a := tap.Attrs(); a.MTU != NetworkMTU || a.OperState.String() != "up" {
			t.Errorf("%s: tap %s mtu %d state %s, want %d up", p.Name, p.Tap(), a.MTU, a.OperState, NetworkMTU)
		}
	}
}
