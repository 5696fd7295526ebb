package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/control/natsd"
	"github.com/vxdp/vxdp/state"
)

// lastRevision is the bucket's last revision: any write moves it.
func lastRevision(t *testing.T, srv *natsd.Server) uint64 {
	t.Helper()
	s, err := adminJS(t, srv).Stream(context.Background(), control.StreamName(control.DefaultBucket))
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.LastSeq
}

// refusal is a request that must fail with want and a message holding
// msg, and write nothing.
type refusal struct {
	name string
	do   func() error
	want error
	msg  string
}

func checkRefusals(t *testing.T, srv *natsd.Server, cases []refusal) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := lastRevision(t, srv)
			err := tc.do()
			if !errors.Is(err, tc.want) || !contains(fmt.Sprint(err), tc.msg) {
				t.Errorf("got %v, want %v with %q", err, tc.want, tc.msg)
			}
			if after := lastRevision(t, srv); after != before {
				t.Errorf("the refused request wrote %d record(s)", after-before)
			}
		})
	}
}

func mustRanges(t *testing.T, s string) []control.VLANRange {
	t.Helper()
	r, err := control.ParseNetworkVLANRanges(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Provider networks are checked against the server's network_vlan_ranges
// and flat_networks; a segment is never used twice, and is released with
// its network.
func TestProviderNetworkRequests(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	c := newController(t, srv.ClientURL())
	if err := c.SetML2Config(ctx, control.ML2Config{NetworkVLANRanges: mustRanges(t, "default:1:4000,alloc:10:11,any"),
		FlatNetworks: []string{"external"}}); err != nil {
		t.Fatal(err)
	}
	vlan := func(name, phys string, seg uint32) func() error {
		return func() error {
			_, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: name, NetworkType: state.NetworkVLAN, PhysicalNetwork: phys, Segment: seg})
			return err
		}
	}
	flat := func(name, phys string) func() error {
		return func() error {
			_, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: name, NetworkType: state.NetworkFlat, PhysicalNetwork: phys})
			return err
		}
	}
	vlan99, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: "vlan99", NetworkType: "vlan", PhysicalNetwork: "default", Segment: 99,
		Subnets: []netip.Prefix{netip.MustParsePrefix("172.16.99.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	if vlan99.Kind() != state.NetworkVLAN || vlan99.SegmentationID != 99 || vlan99.VNI != 0 || vlan99.MTU != control.DefaultPhysnetMTU {
		t.Errorf("vlan99: %+v, want VLAN 99 of default with MTU %d", vlan99.NetworkRecord, control.DefaultPhysnetMTU)
	}
	// A reader of version 1 would take it for a VXLAN network: it is
	// written so that such a reader refuses it.
	e, err := c.KV().Get(ctx, control.NetworkKey(vlan99.ID))
	if err != nil {
		t.Fatal(err)
	}
	var raw struct{ Schema int }
	if json.Unmarshal(e.Value(), &raw); raw.Schema != control.NetworkSchema {
		t.Errorf("vlan99 stored with schema %d, want %d", raw.Schema, control.NetworkSchema)
	}
	if err := flat("external", "external")(); err != nil {
		t.Fatal(err)
	}

	checkRefusals(t, srv, []refusal{
		{"vlan outside the range", vlan("x", "default", 4001), control.ErrInvalid,
			"vlan 4001 of physical network default is outside network_vlan_ranges default:1:4000,alloc:10:11,any: pick a --provider-segment in 1-4000"},
		{"no vlan id", vlan("x", "default", 4095), control.ErrInvalid, "out of range 1-4094"},
		{"physical network without vlans", vlan("x", "physnet9", 5), control.ErrInvalid,
			`physical network "physnet9" is not in network_vlan_ranges default:1:4000,alloc:10:11,any: use one of default, alloc, any`},
		{"vlan without physical network", vlan("x", "", 5), control.ErrInvalid, "a vlan network needs --provider-physical-network, one of: default, alloc, any"},
		{"vlan in use", vlan("x", "default", 99), control.ErrExists, "vlan 99 of physical network default is already used by network " + vlan99.ID},
		{"flat in use", flat("x", "external"), control.ErrExists, "physical network external already carries a flat network"},
		{"flat not allowed", flat("x", "default"), control.ErrInvalid, `physical network "default" is not in flat_networks external`},
		{"flat with a segment", func() error {
			_, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: "x", NetworkType: "flat", PhysicalNetwork: "external", Segment: 3})
			return err
		}, control.ErrInvalid, "a flat network has no segment"},
		{"vxlan on a physical network", func() error {
			_, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: "x", PhysicalNetwork: "default"})
			return err
		}, control.ErrInvalid, "a vxlan network has no physical network"},
		{"unknown type", func() error {
			_, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: "x", NetworkType: "gre"})
			return err
		}, control.ErrInvalid, `network type "gre": want vxlan, vlan or flat`},
		{"nothing to allocate from", vlan("x", "any", 0), control.ErrInvalid, "physical network any has no VLAN range to allocate from"},
		{"bad physical network name", vlan("x", "phys.net", 5), control.ErrInvalid, "not in network_vlan_ranges"},
	})

	// Allocation draws from the physical network's range until it is used up.
	got := map[uint16]bool{}
	for i := range 2 {
		n, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: fmt.Sprint("a", i), NetworkType: "vlan", PhysicalNetwork: "alloc"})
		if err != nil {
			t.Fatal(err)
		}
		got[n.SegmentationID] = true
	}
	if !got[10] || !got[11] {
		t.Errorf("allocated VLANs %v, want 10 and 11", got)
	}
	checkRefusals(t, srv, []refusal{{"range used up", vlan("a2", "alloc", 0), control.ErrExhausted, "no free VLAN of physical network alloc"}})
	// A bare physical network allows any VLAN chosen.
	if err := vlan("any4094", "any", 4094)(); err != nil {
		t.Error(err)
	}
	// Deleting a network releases its segment.
	if err := c.DeleteNetwork(ctx, vlan99.ID); err != nil {
		t.Fatal(err)
	}
	if err := vlan("vlan99again", "default", 99)(); err != nil {
		t.Errorf("VLAN 99 after its network was deleted: %v", err)
	}
	// flat_networks = * allows any physical network.
	if err := c.SetML2Config(ctx, control.ML2Config{FlatNetworks: []string{"*"}}); err != nil {
		t.Fatal(err)
	}
	if err := flat("anyflat", "physnet7")(); err != nil {
		t.Errorf("flat network with flat_networks = *: %v", err)
	}
	checkRefusals(t, srv, []refusal{{"no vlan ranges left", vlan("x", "default", 100), control.ErrInvalid, "not in network_vlan_ranges (none)"}})
	// Bad options are refused.
	if _, err := control.ParseNetworkVLANRanges("default:10:5"); err == nil || !contains(err.Error(), "1 <= MIN <= MAX <= 4094") {
		t.Errorf("default:10:5: %v", err)
	}
	if _, err := control.ParseFlatNetworks("ext_1"); err == nil {
		t.Error("flat network ext_1 accepted")
	}
}

// Records written before provider networks and subnet settings keep their
// meaning: a network without a type is VXLAN, its bare subnets are ranges
// for fixed IPs without DHCP.
func TestLegacyNetworkRecord(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	c := newController(t, srv.ClientURL())
	id := "6a1f7b2c-4d3e-4f5a-8b6c-7d8e9f0a1b2c"
	legacy := fmt.Sprintf(`{"schema":1,"id":%q,"name":"old","vni":300,"mtu":1450,"subnets":["10.3.0.0/24"]}`, id)
	if _, err := c.KV().Put(ctx, control.NetworkKey(id), []byte(legacy)); err != nil {
		t.Fatal(err)
	}
	n, err := c.GetNetwork(ctx, "old")
	if err != nil {
		t.Fatal(err)
	}
	if n.Kind() != state.NetworkVXLAN || n.VNI != 300 || len(n.Subnets) != 1 || n.Subnets[0].CIDR.String() != "10.3.0.0/24" ||
		n.Subnets[0].DHCP || n.Subnets[0].Gateway.IsValid() {
		t.Fatalf("legacy network read as %+v", n.NetworkRecord)
	}
	if _, err := c.CreatePort(ctx, control.PortSpec{Network: "old", FixedIPs: addrs("10.3.0.5")}); err != nil {
		t.Error(err)
	}
	if _, err := c.CreatePort(ctx, control.PortSpec{Network: "old", FixedIPs: addrs("10.4.0.5")}); !errors.Is(err, control.ErrInvalid) {
		t.Errorf("fixed ip outside the legacy subnet: %v", err)
	}
	// Changing it stores the subnet with its settings; its id stays.
	gw := netip.MustParseAddr("10.3.0.1")
	if _, err := c.UpdateSubnet(ctx, n.Subnets[0].ID, control.SubnetUpdate{Gateway: &gw}); err != nil {
		t.Fatal(err)
	}
	e, err := c.KV().Get(ctx, control.NetworkKey(id))
	if err != nil {
		t.Fatal(err)
	}
	var stored map[string]json.RawMessage
	if err := json.Unmarshal(e.Value(), &stored); err != nil {
		t.Fatal(err)
	}
	again, err := c.GetNetwork(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if stored["subnets"] != nil || stored["subnet_details"] == nil || len(again.Subnets) != 1 || again.Subnets[0].ID != n.Subnets[0].ID ||
		again.Subnets[0].Gateway != gw {
		t.Errorf("rewritten legacy record: %s", e.Value())
	}
}

// What agents build of provider networks and subnets: the type, physical
// network and VLAN of each network, its subnets and DNS domain, remote
// ports of provider networks without VTEP (and no flood list), the DNS
// names of local ports; subnet changes follow at once, and survive a
// restart from the snapshot.
func TestProviderNetworksOnAgents(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	url := srv.ClientURL()
	c := newController(t, url)
	vlan99, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: "vlan99", NetworkType: "vlan", PhysicalNetwork: "default", Segment: 99})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSubnet(ctx, control.SubnetSpec{Network: "vlan99", CIDR: prefix("172.16.99.0/24"), DNS: addrs("172.16.99.1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: "external", NetworkType: "flat", PhysicalNetwork: "external",
		Subnets: []netip.Prefix{prefix("172.16.100.0/24")}, DNSDomain: "example.org"}); err != nil {
		t.Fatal(err)
	}
	n, _ := seedPorts(t, ctx, c)
	for _, p := range []control.PortSpec{
		{Name: "vm5", Network: "vlan99", MAC: mac("fa:16:3e:f1:99:75"), FixedIPs: addrs("172.16.99.117"), Host: "node3", DNSName: "vm5"},
		{Name: "vm6", Network: "vlan99", MAC: mac("fa:16:3e:f1:99:12"), FixedIPs: addrs("172.16.99.112"), Host: "node4"},
		{Name: "vm7", Network: "external", MAC: mac("fa:16:3e:f1:98:19"), FixedIPs: addrs("172.16.100.19"), Host: "node3"},
		{Name: "vm8", Network: "external", MAC: mac("fa:16:3e:f1:98:12"), FixedIPs: addrs("172.16.100.12"), Host: "node4"},
	} {
		if _, err := c.CreatePort(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	node3 := startAgent(t, url, "node3", node3VTEP, func(o *control.AgentOptions) { o.StateDir = dir })
	startAgent(t, url, "node4", node4VTEP)
	startAgent(t, url, "node1", node1VTEP)
	d := node3.waitL2(t,
		"net vxlan100_net vni 100 mtu 1450 flood 192.168.248.1,192.168.248.4",
		"local vxlan100_net fa:16:3e:cb:98:2c tap9784ef08-97 172.16.100.19",
		"remote vxlan100_net fa:16:3e:06:42:34 @192.168.248.4 172.16.100.12",
		"remote vxlan100_net fa:16:3e:6e:c0:44 @192.168.248.1 172.16.100.10",
		"net vlan99 vlan default/99 mtu 1500",
		"local vlan99 fa:16:3e:f1:99:75 "+state.TapName(portID(t, c, "vm5"))+" 172.16.99.117",
		"remote vlan99 fa:16:3e:f1:99:12 @- 172.16.99.112",
		"net external flat external/0 mtu 1500",
		"local external fa:16:3e:f1:98:19 "+state.TapName(portID(t, c, "vm7"))+" 172.16.100.19",
		"remote external fa:16:3e:f1:98:12 @- 172.16.100.12",
	)
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	nets := map[string]state.Network{}
	for _, net := range d.Networks {
		nets[net.Name] = net
	}
	v := nets["vlan99"]
	if len(v.Subnets) != 1 || v.Subnets[0].CIDR != prefix("172.16.99.0/24") || v.Subnets[0].Gateway != addr("172.16.99.1") ||
		!v.Subnets[0].DHCP || v.Subnets[0].Source != v.Source || v.Source.Key != control.NetworkKey(vlan99.ID) || len(v.VTEPs) != 0 {
		t.Errorf("vlan99 on node3: %+v", v)
	}
	if nets["external"].Domain() != "example.org" || nets[n.Name].Domain() != state.DefaultDNSDomain {
		t.Errorf("DNS domains: external %q, vxlan100_net %q", nets["external"].Domain(), nets[n.Name].Domain())
	}
	if len(nets[n.Name].Subnets) != 1 || !nets[n.Name].Subnets[0].DHCP {
		t.Errorf("vxlan100_net's --subnet makes a subnet with DHCP: %+v", nets[n.Name].Subnets)
	}
	for _, p := range d.LocalPorts {
		if want := map[string]string{"fa:16:3e:f1:99:75": "vm5"}[p.MAC.String()]; p.DNSName != want {
			t.Errorf("local port %s dns name %q, want %q", p.MAC, p.DNSName, want)
		}
	}

	// DHCP off on vlan99's subnet: node3 follows.
	off := false
	sn := v.Subnets[0].ID
	if _, err := c.UpdateSubnet(ctx, sn, control.SubnetUpdate{DHCP: &off}); err != nil {
		t.Fatal(err)
	}
	node3.waitFor(t, "vlan99's subnet without DHCP", func(d *state.Desired) bool {
		for _, net := range d.Networks {
			if net.Name == "vlan99" {
				return len(net.Subnets) == 1 && !net.Subnets[0].DHCP
			}
		}
		return false
	})

	// A second network on VLAN 99 written past the controller: the older
	// one wins on node3, the other is a conflict.
	rogue := `{"schema":2,"id":"0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e","name":"rogue","network_type":"vlan","physical_network":"default","segmentation_id":99,"mtu":1500}`
	if _, err := c.KV().Put(ctx, control.NetworkKey("0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"), []byte(rogue)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.KV().Put(ctx, control.PortKey("0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e", "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"),
		[]byte(`{"schema":1,"id":"1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f","network_id":"0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e","mac_address":"fa:16:3e:00:00:99","port_security_enabled":false,"binding_host_id":"node3","binding_generation":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.KV().Put(ctx, control.BindingKey("node3", "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"),
		[]byte(`{"schema":1,"port_id":"1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f","network_id":"0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e","binding_generation":1}`)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for rejected(t, node3)["network/conflict"] < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("node3 counted no conflict for a second network on VLAN 99: %v", rejected(t, node3))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := l2pop(node3.current()); contains(got, "rogue") {
		t.Errorf("a second network on VLAN 99 was applied:%s", describe(node3.current()))
	}

	// The snapshot keeps it all: a restart replays nothing and builds the same state.
	before := waitSnapshot(t, c, node3, dir)
	a, after, st := firstState(t, url, "node3", node3VTEP, func(o *control.AgentOptions) { o.StateDir, o.AppliedRevision = dir, before.Revision })
	defer a.stop()
	if st.LastResync != "delta" || !sameState(before, after) {
		t.Errorf("restart from the snapshot: %s resync, state%s\nwas%s", st.LastResync, describe(after), describe(before))
	}
}

func portID(t *testing.T, c *control.Controller, name string) string {
	t.Helper()
	p, err := c.GetPort(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return p.ID
}
