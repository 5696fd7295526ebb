package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"testing"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/state"
)

func prefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr     { return netip.MustParseAddr(s) }

// Subnets: Neutron's defaults, every setting checked before anything is
// written, fixed IPs inside them, no delete while a port has an address
// in one.
func TestSubnets(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	c := newController(t, srv.ClientURL())
	if _, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: "net", VNI: 100}); err != nil {
		t.Fatal(err)
	}
	s, err := c.CreateSubnet(ctx, control.SubnetSpec{Network: "net", Name: "net-v4", CIDR: prefix("172.16.100.0/24"),
		DNS: addrs("172.16.100.10"), DHCPServer: addr("172.16.100.10")})
	if err != nil {
		t.Fatal(err)
	}
	if s.Gateway != addr("172.16.100.1") || !s.DHCP || s.LeaseSeconds != 0 || !control.IsUUID(s.ID) {
		t.Errorf("subnet %+v, want the first address as gateway and DHCP on (Neutron's defaults)", s.SubnetRecord)
	}
	create := func(spec control.SubnetSpec) func() error {
		return func() error {
			spec.Network = "net"
			_, err := c.CreateSubnet(ctx, spec)
			return err
		}
	}
	set := func(ref string, u control.SubnetUpdate) func() error {
		return func() error { _, err := c.UpdateSubnet(ctx, ref, u); return err }
	}
	none := netip.Addr{}
	checkRefusals(t, srv, []refusal{
		{"host bits", create(control.SubnetSpec{CIDR: prefix("10.0.0.1/24")}), control.ErrInvalid, "has host bits set: write 10.0.0.0/24"},
		{"overlap", create(control.SubnetSpec{CIDR: prefix("172.16.100.128/25")}), control.ErrInvalid, "overlaps subnet net-v4 (172.16.100.0/24)"},
		{"gateway outside", create(control.SubnetSpec{CIDR: prefix("10.0.0.0/24"), Gateway: addr("10.0.1.1")}), control.ErrInvalid,
			"gateway_ip 10.0.1.1 is not a host address of 10.0.0.0/24"},
		{"dhcp with nothing to answer from", create(control.SubnetSpec{CIDR: prefix("10.0.0.0/24"), NoGateway: true}), control.ErrInvalid,
			"give --gateway or --dhcp-server, or --no-dhcp"},
		{"short lease", create(control.SubnetSpec{CIDR: prefix("10.0.0.0/24"), LeaseSeconds: 60}), control.ErrInvalid, "lease_seconds 60"},
		{"dns of the other family", create(control.SubnetSpec{CIDR: prefix("10.0.0.0/24"), DNS: addrs("2001:db8::1")}), control.ErrInvalid,
			"dns_nameservers: 2001:db8::1 is not an IPv4 address"},
		{"no range", create(control.SubnetSpec{}), control.ErrInvalid, "give --subnet-range"},
		{"unknown network", func() error {
			_, err := c.CreateSubnet(ctx, control.SubnetSpec{Network: "nope", CIDR: prefix("10.0.0.0/24")})
			return err
		}, control.ErrNotFound, `network "nope"`},
	})
	if err := set(s.ID, control.SubnetUpdate{Gateway: &none, DHCPServer: &none})(); !errors.Is(err, control.ErrInvalid) {
		t.Errorf("no gateway and no DHCP server with DHCP on: %v", err)
	}

	// Fixed IPs must lie in a subnet of the network.
	if _, err := c.CreatePort(ctx, control.PortSpec{Name: "vm1", Network: "net", FixedIPs: addrs("172.16.100.12"), DNSName: "vm1"}); err != nil {
		t.Fatal(err)
	}
	checkRefusals(t, srv, []refusal{
		{"fixed ip outside", func() error {
			_, err := c.CreatePort(ctx, control.PortSpec{Network: "net", FixedIPs: addrs("10.1.1.1")})
			return err
		}, control.ErrInvalid, "fixed ip 10.1.1.1 is not in a subnet of network net (172.16.100.0/24)"},
		{"bad dns name", func() error {
			_, err := c.CreatePort(ctx, control.PortSpec{Network: "net", FixedIPs: addrs("172.16.100.13"), DNSName: "vm.one"})
			return err
		}, control.ErrInvalid, `dns_name "vm.one" is not a host name`},
	})
	// Delete marks the subnet, finds vm1 in it and unmarks it (checked below).
	if err := c.DeleteSubnet(ctx, "net-v4"); !errors.Is(err, control.ErrInUse) || !contains(err.Error(), "(vm1 172.16.100.12): delete those ports first") {
		t.Errorf("delete a subnet in use: %v", err)
	}

	// Changes: DHCP off, a gateway gone (answers from the DHCP server), DNS replaced, an infinite lease.
	off, inf := false, state.InfiniteLease
	got, err := c.UpdateSubnet(ctx, "net-v4", control.SubnetUpdate{DHCP: &off, Gateway: &none, ClearDNS: true, AddDNS: addrs("192.0.2.53"),
		LeaseSeconds: &inf})
	if err != nil {
		t.Fatal(err)
	}
	if got.DHCP || got.Gateway.IsValid() || len(got.DNS) != 1 || got.DNS[0] != addr("192.0.2.53") || got.LeaseSeconds != inf {
		t.Errorf("after set: %+v", got.SubnetRecord)
	}

	// A second subnet; a name on two networks is ambiguous.
	if _, err := c.CreateSubnet(ctx, control.SubnetSpec{Network: "net", CIDR: prefix("2001:db8::/64")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: "other", VNI: 200}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSubnet(ctx, control.SubnetSpec{Network: "other", Name: "net-v4", CIDR: prefix("172.16.100.0/24")}); err != nil {
		t.Fatalf("the same range on another network: %v", err)
	}
	if _, err := c.GetSubnet(ctx, "net-v4"); !errors.Is(err, control.ErrInvalid) || !contains(err.Error(), "ambiguous") {
		t.Errorf("ambiguous name: %v", err)
	}
	list, err := c.ListSubnets(ctx, "net")
	if err != nil || len(list) != 2 {
		t.Fatalf("subnets of net: %v %v", list, err)
	}

	// Deleting: refused while vm1 has an address in it, nothing marked.
	n, _ := c.GetNetwork(ctx, "net")
	for _, sn := range n.Subnets {
		if sn.Deleting {
			t.Errorf("subnet %s left marked deleting", sn.CIDR)
		}
	}
	// A port created while the subnet is being deleted backs out.
	marked := n.NetworkRecord
	marked.Subnets = append([]control.SubnetRecord(nil), n.Subnets...)
	marked.Subnets[0].Deleting = true
	raw, _ := json.Marshal(marked)
	if _, err := c.KV().Update(ctx, control.NetworkKey(n.ID), raw, n.Revision); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreatePort(ctx, control.PortSpec{Network: "net", FixedIPs: addrs("172.16.100.30")}); !errors.Is(err, control.ErrConflict) {
		t.Errorf("port in a subnet being deleted: %v", err)
	}
	marked.Subnets[0].Deleting = false
	raw, _ = json.Marshal(marked)
	if _, err := c.KV().Put(ctx, control.NetworkKey(n.ID), raw); err != nil {
		t.Fatal(err)
	}
	if err := c.DeletePort(ctx, "vm1", 0); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteSubnet(ctx, list[0].ID); err != nil {
		t.Fatal(err)
	}
	if list, _ := c.ListSubnets(ctx, "net"); len(list) != 1 || list[0].CIDR != prefix("2001:db8::/64") {
		t.Errorf("after delete: %+v", list)
	}

	// The network's DNS domain.
	bad, good := "exa mple", "example.org"
	checkRefusals(t, srv, []refusal{{"bad dns domain", func() error {
		_, err := c.UpdateNetwork(ctx, "net", control.NetworkUpdate{DNSDomain: &bad})
		return err
	}, control.ErrInvalid, `dns domain "exa mple"`}})
	if n, err := c.UpdateNetwork(ctx, "net", control.NetworkUpdate{DNSDomain: &good}); err != nil || n.DNSDomain != good {
		t.Errorf("network set --dns-domain: %+v %v", n.NetworkRecord, err)
	}
}
