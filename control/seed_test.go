package control_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/state"
)

// The seed deployment (docs/seed.md).
const (
	seedNetID  = "85ae5035-203b-4ef7-b65c-397f80b5a8af"
	seedDHCPID = "d40d05b8-bd6e-4a3c-9f43-2b4c5d6e7f80" // tapd40d05b8-bd
	seedVM2ID  = "9784ef08-97d1-4a5b-8c6d-7e8f9a0b1c2d" // tap9784ef08-97
	seedVM1ID  = "5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
	node1VTEP  = "192.168.248.1"
	node3VTEP  = "192.168.248.3"
	node4VTEP  = "192.168.248.4"
)

func mac(s string) state.MAC {
	m, err := state.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

// seedPorts creates vxlan100_net and its three ports as in the walkthrough.
func seedPorts(t *testing.T, ctx context.Context, c *control.Controller) (control.Network, map[string]control.Port) {
	t.Helper()
	n, err := c.CreateNetwork(ctx, control.NetworkSpec{ID: seedNetID, Name: "vxlan100_net", VNI: 100, Subnets: []netip.Prefix{netip.MustParsePrefix("172.16.100.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]control.Port{}
	for _, s := range []control.PortSpec{
		{ID: seedDHCPID, Name: "dhcp", Network: "vxlan100_net", MAC: mac("fa:16:3e:6e:c0:44"), FixedIPs: addrs("172.16.100.10"), Host: "node1", DeviceOwner: "network:dhcp"},
		{ID: seedVM2ID, Name: "centos7.6-vm2", Network: "vxlan100_net", MAC: mac("fa:16:3e:cb:98:2c"), FixedIPs: addrs("172.16.100.19"), Host: "node3", DeviceOwner: "compute:nova"},
		{ID: seedVM1ID, Name: "centos7.6-vm1", Network: "vxlan100_net", MAC: mac("fa:16:3e:06:42:34"), FixedIPs: addrs("172.16.100.12"), Host: "node4", DeviceOwner: "compute:nova"},
	} {
		p, err := c.CreatePort(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		ports[s.Name] = p
	}
	return n, ports
}

// Each host's state is the walkthrough's l2pop view: node3's vxlan-100
// floods to .1 and .4 and knows vm1's MAC at .4 and the DHCP MAC at .1;
// node4 the mirror image; node1 both VMs.
func TestSeedL2Population(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	c := newController(t, srv.ClientURL())
	n, ports := seedPorts(t, ctx, c)

	node1 := startAgent(t, srv.ClientURL(), "node1", node1VTEP)
	node3 := startAgent(t, srv.ClientURL(), "node3", node3VTEP)
	node4 := startAgent(t, srv.ClientURL(), "node4", node4VTEP)

	node3.waitL2(t,
		"net vxlan100_net vni 100 mtu 1450 flood 192.168.248.1,192.168.248.4",
		"local vxlan100_net fa:16:3e:cb:98:2c tap9784ef08-97 172.16.100.19",
		"remote vxlan100_net fa:16:3e:06:42:34 @192.168.248.4 172.16.100.12",
		"remote vxlan100_net fa:16:3e:6e:c0:44 @192.168.248.1 172.16.100.10",
	)
	node4.waitL2(t,
		"net vxlan100_net vni 100 mtu 1450 flood 192.168.248.1,192.168.248.3",
		"local vxlan100_net fa:16:3e:06:42:34 tap5f0c1a2b-3c 172.16.100.12",
		"remote vxlan100_net fa:16:3e:cb:98:2c @192.168.248.3 172.16.100.19",
		"remote vxlan100_net fa:16:3e:6e:c0:44 @192.168.248.1 172.16.100.10",
	)
	d1 := node1.waitL2(t,
		"net vxlan100_net vni 100 mtu 1450 flood 192.168.248.3,192.168.248.4",
		"local vxlan100_net fa:16:3e:6e:c0:44 tapd40d05b8-bd 172.16.100.10",
		"remote vxlan100_net fa:16:3e:06:42:34 @192.168.248.4 172.16.100.12",
		"remote vxlan100_net fa:16:3e:cb:98:2c @192.168.248.3 172.16.100.19",
	)

	// Provenance: every entry names the key and revision that caused it.
	if got, want := d1.Networks[0].Source, (state.Source{Key: control.NetworkKey(n.ID), Revision: n.Revision}); got != want {
		t.Errorf("network source %v, want %v", got, want)
	}
	if got, want := d1.LocalPorts[0].Source, (state.Source{Key: control.PortKey(n.ID, seedDHCPID), Revision: ports["dhcp"].Revision}); got != want {
		t.Errorf("local port source %v, want %v", got, want)
	}
	for _, rp := range d1.RemotePorts {
		p := ports["centos7.6-vm1"]
		if rp.ID == seedVM2ID {
			p = ports["centos7.6-vm2"]
		}
		if want := (state.Source{Key: control.PortKey(n.ID, rp.ID), Revision: p.Revision}); rp.Source != want {
			t.Errorf("remote port %s source %v, want %v", rp.ID, rp.Source, want)
		}
	}
	for _, v := range d1.Networks[0].VTEPs {
		if v.Source.Key != control.RegistrationKey("node3") && v.Source.Key != control.RegistrationKey("node4") || v.Source.Revision == 0 {
			t.Errorf("vtep %s source %v, want a host registration", v.IP, v.Source)
		}
	}
	if d1.Revision == 0 {
		t.Error("Desired.Revision is 0")
	}

	// The controller sees the ports ACTIVE (reported through Applied).
	list, err := c.ListPorts(ctx, control.PortFilter{Network: "vxlan100_net"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list {
		if p.Status != control.StatusActive {
			t.Errorf("port %s status %s, want ACTIVE", p.Name, p.Status)
		}
	}

	// A network is on a host only while it has a port there.
	if _, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: "net2", VNI: 200}); err != nil {
		t.Fatal(err)
	}
	p2, err := c.CreatePort(ctx, control.PortSpec{Network: "net2", MAC: mac("fa:16:3e:00:00:02"), Host: "node3"})
	if err != nil {
		t.Fatal(err)
	}
	node3.waitFor(t, "net2 on node3", func(d *state.Desired) bool { return len(d.Networks) == 2 })
	for _, other := range []*testAgent{node1, node4} {
		if d := other.current(); len(d.Networks) != 1 {
			t.Errorf("%s serves %d networks, want only vxlan100_net:%s", other.host, len(d.Networks), describe(d))
		}
	}
	if _, err := c.UnbindPort(ctx, p2.ID, 0); err != nil {
		t.Fatal(err)
	}
	node3.waitFor(t, "net2 gone from node3", func(d *state.Desired) bool { return len(d.Networks) == 1 })

	// Unbind removes vm1 everywhere; node4 no longer serves the network.
	if _, err := c.UnbindPort(ctx, seedVM1ID, 0); err != nil {
		t.Fatal(err)
	}
	node3.waitL2(t,
		"net vxlan100_net vni 100 mtu 1450 flood 192.168.248.1",
		"local vxlan100_net fa:16:3e:cb:98:2c tap9784ef08-97 172.16.100.19",
		"remote vxlan100_net fa:16:3e:6e:c0:44 @192.168.248.1 172.16.100.10",
	)
	node4.waitL2(t)
	// Delete removes vm2 everywhere.
	if err := c.DeletePort(ctx, seedVM2ID, 0); err != nil {
		t.Fatal(err)
	}
	node1.waitL2(t,
		"net vxlan100_net vni 100 mtu 1450 flood ",
		"local vxlan100_net fa:16:3e:6e:c0:44 tapd40d05b8-bd 172.16.100.10",
	)
	node3.waitL2(t)
}
