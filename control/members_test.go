package control_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/state"
)

// memberAddrs reads the member record of port in group sg ("" when none).
func memberAddrs(t *testing.T, c *control.Controller, sg, port string) string {
	t.Helper()
	e, err := c.KV().Get(context.Background(), control.MemberKey(sg, port))
	if err != nil {
		return ""
	}
	var m control.MemberRecord
	if err := json.Unmarshal(e.Value(), &m); err != nil {
		t.Fatal(err)
	}
	return prefixList(m.Addresses)
}

// The controller keeps a member record per (group, port) with the port's
// fixed IPs and address pairs, through every change; SyncMembers repairs
// what a crashed controller leaves.
func TestMemberRecords(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	c := newController(t, srv.ClientURL())
	n, ports := seedPorts(t, ctx, c)
	vm2 := ports["centos7.6-vm2"]
	def := control.DefaultGroupID
	if got := memberAddrs(t, c, def, vm2.ID); got != "172.16.100.19/32" {
		t.Fatalf("vm2 in default: %q", got)
	}
	web, err := c.CreateSecurityGroup(ctx, control.SecurityGroupSpec{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	pair := state.AddressPair{IP: netip.MustParsePrefix("172.16.100.128/25")}
	if _, err := c.UpdatePort(ctx, vm2.ID, control.PortUpdate{ClearSecurityGroups: true, AddSecurityGroups: []string{"web"},
		AddAllowedAddressPairs: []state.AddressPair{pair}}, 0); err != nil {
		t.Fatal(err)
	}
	if got := memberAddrs(t, c, web.ID, vm2.ID); got != "172.16.100.128/25,172.16.100.19/32" {
		t.Errorf("vm2 in web: %q", got)
	}
	if got := memberAddrs(t, c, def, vm2.ID); got != "" {
		t.Errorf("vm2 still a member of default: %q", got)
	}
	if _, err := c.UpdatePort(ctx, vm2.ID, control.PortUpdate{RemoveAllowedAddressPairs: []state.AddressPair{pair}}, 0); err != nil {
		t.Fatal(err)
	}
	if got := memberAddrs(t, c, web.ID, vm2.ID); got != "172.16.100.19/32" {
		t.Errorf("vm2 in web after the pair went: %q", got)
	}
	// A refused update leaves the members as they were.
	if _, err := c.UpdatePort(ctx, vm2.ID, control.PortUpdate{AddSecurityGroups: []string{"nope"}}, 0); err == nil {
		t.Error("unknown group accepted")
	}
	if _, err := c.UpdatePort(ctx, vm2.ID, control.PortUpdate{AddSecurityGroups: []string{"default"}}, vm2.Revision); err == nil {
		t.Error("stale revision accepted")
	}
	if got := memberAddrs(t, c, def, vm2.ID); got != "" {
		t.Errorf("a refused update made vm2 a member of default: %q", got)
	}

	// Port security off: no groups, no membership.
	off := false
	if _, err := c.UpdatePort(ctx, vm2.ID, control.PortUpdate{ClearSecurityGroups: true, PortSecurity: &off}, 0); err != nil {
		t.Fatal(err)
	}
	if got := memberAddrs(t, c, web.ID, vm2.ID); got != "" {
		t.Errorf("vm2 without port security is a member of web: %q", got)
	}
	if _, err := c.UpdatePort(ctx, vm2.ID, control.PortUpdate{AddSecurityGroups: []string{"web"}}, 0); err == nil ||
		!strings.Contains(err.Error(), "has port security off: security groups and allowed address pairs need it on (--enable-port-security)") {
		t.Errorf("a group on a port without port security: %v", err)
	}
	on := true
	if _, err := c.UpdatePort(ctx, vm2.ID, control.PortUpdate{AddSecurityGroups: []string{"web"}, PortSecurity: &on}, 0); err != nil {
		t.Fatal(err)
	}
	if got := memberAddrs(t, c, web.ID, vm2.ID); got != "172.16.100.19/32" {
		t.Errorf("vm2 with port security on again, in web: %q", got)
	}
	vm1 := ports["centos7.6-vm1"]
	if err := c.DeletePort(ctx, vm1.ID, 0); err != nil {
		t.Fatal(err)
	}
	if got := memberAddrs(t, c, def, vm1.ID); got != "" {
		t.Errorf("deleted vm1 is a member of default: %q", got)
	}

	// What a crash leaves: a member of a port that is gone, and a missing
	// one. SyncMembers (grace 0: nothing is in flight) repairs both.
	dhcp := ports["dhcp"]
	if _, err := c.KV().Put(ctx, control.MemberKey(def, vm1.ID), []byte(`{"schema":1,"security_group_id":"`+def+`","port_id":"`+vm1.ID+`","addresses":["172.16.100.12/32"]}`)); err != nil {
		t.Fatal(err)
	}
	if err := c.KV().Delete(ctx, control.MemberKey(def, dhcp.ID)); err != nil {
		t.Fatal(err)
	}
	repair, err := control.NewController(ctx, connect(t, srv.ClientURL()), control.ControllerOptions{Log: testLog(), MemberSyncGrace: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	res, err := repair.SyncMembers(ctx)
	if err != nil || res != (control.MemberSync{Written: 1, Deleted: 1}) {
		t.Errorf("sync: %+v %v, want one written, one deleted", res, err)
	}
	if memberAddrs(t, c, def, vm1.ID) != "" || memberAddrs(t, c, def, dhcp.ID) != "172.16.100.10/32" {
		t.Error("sync did not repair the members")
	}
	if res, err := repair.SyncMembers(ctx); err != nil || res != (control.MemberSync{}) {
		t.Errorf("second sync: %+v %v, want nothing to do", res, err)
	}
	// ... but spares records written within the grace period (a port
	// change in flight).
	if _, err := c.KV().Put(ctx, control.MemberKey(def, vm1.ID), []byte(`{"schema":1,"security_group_id":"`+def+`","port_id":"`+vm1.ID+`","addresses":[]}`)); err != nil {
		t.Fatal(err)
	}
	if res, err := c.SyncMembers(ctx); err != nil || res.Deleted != 0 {
		t.Errorf("sync within the grace period: %+v %v", res, err)
	}
	if err := c.DeleteNetwork(ctx, n.ID); err == nil {
		t.Error("network with ports deleted")
	}
}

// ruleOf returns the resolved rule id of group gid in d.
func ruleOf(d *state.Desired, gid, rid string) (state.Rule, bool) {
	for _, g := range d.SecurityGroups {
		if g.ID != gid {
			continue
		}
		for _, r := range g.Rules {
			if r.ID == rid {
				return r, true
			}
		}
	}
	return state.Rule{}, false
}

func prefixList(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	slices.Sort(s)
	return strings.Join(s, ",")
}

// An agent resolves a rule's remote group from the group's member records
// (members on networks the host does not carry too) and its address
// groups, and follows every change without a restart; rule changes too.
func TestRemoteGroupsOnAgents(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	c := newController(t, srv.ClientURL())
	_, ports := seedPorts(t, ctx, c)
	vm1, vm2 := ports["centos7.6-vm1"], ports["centos7.6-vm2"]
	other, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: "other", Subnets: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	members, err := c.CreateSecurityGroup(ctx, control.SecurityGroupSpec{Name: "members"})
	if err != nil {
		t.Fatal(err)
	}
	// vm3 is on a network node4 does not carry, bound to a host without agent.
	vm3, err := c.CreatePort(ctx, control.PortSpec{Network: other.ID, Name: "vm3", FixedIPs: addrs("10.20.0.3"), Host: "node9",
		SecurityGroups: []string{"members"}, AllowedAddressPairs: []state.AddressPair{{IP: netip.MustParsePrefix("fd00::/64")}}})
	if err != nil {
		t.Fatal(err)
	}
	web, err := c.CreateSecurityGroup(ctx, control.SecurityGroupSpec{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	fromMembers, err := c.AddSecurityGroupRule(ctx, "web", control.SGRule{Direction: "ingress", Protocol: "icmp", RemoteGroupID: "members"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdatePort(ctx, vm1.ID, control.PortUpdate{ClearSecurityGroups: true, AddSecurityGroups: []string{"web"}}, 0); err != nil {
		t.Fatal(err)
	}
	node4 := startAgent(t, srv.ClientURL(), "node4", node4VTEP)
	remotes := func(want string) *state.Desired {
		t.Helper()
		return node4.waitFor(t, "web's icmp rule from "+want, func(d *state.Desired) bool {
			r, ok := ruleOf(d, web.ID, fromMembers.ID)
			return ok && r.RemoteGroup == members.ID && prefixList(r.RemotePrefixes) == want
		})
	}
	d := remotes("10.20.0.3/32")
	if len(d.Networks) != 1 {
		t.Errorf("node4 carries %d networks, want only vxlan100_net", len(d.Networks))
	}
	if len(d.LocalPorts) != 1 || !slices.Equal(d.LocalPorts[0].SecurityGroups, []string{web.ID}) {
		t.Errorf("vm1 on node4: %+v", d.LocalPorts)
	}

	// vm2 joins members; vm3 leaves: node4 follows both.
	if _, err := c.UpdatePort(ctx, vm2.ID, control.PortUpdate{AddSecurityGroups: []string{"members"}}, 0); err != nil {
		t.Fatal(err)
	}
	remotes("10.20.0.3/32,172.16.100.19/32")
	if _, err := c.UpdatePort(ctx, vm3.ID, control.PortUpdate{RemoveSecurityGroups: []string{"members"}}, 0); err != nil {
		t.Fatal(err)
	}
	remotes("172.16.100.19/32")

	// A new rule with an address group; the group changes; the rule goes.
	ag, err := c.CreateAddressGroup(ctx, control.AddressGroupSpec{Name: "admins", Addresses: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	ssh, err := c.AddSecurityGroupRule(ctx, "web", control.SGRule{Direction: "ingress", Protocol: "tcp",
		PortRangeMin: control.IntPtr(22), PortRangeMax: control.IntPtr(22), RemoteAddressGroupID: "admins"})
	if err != nil {
		t.Fatal(err)
	}
	sshFrom := func(want string) {
		t.Helper()
		node4.waitFor(t, "ssh from "+want, func(d *state.Desired) bool {
			r, ok := ruleOf(d, web.ID, ssh.ID)
			return ok && r.RemoteAddressGroup == ag.ID && r.Protocol == state.ProtoTCP && r.PortMin == 22 && prefixList(r.RemotePrefixes) == want
		})
	}
	sshFrom("192.0.2.0/24")
	if _, err := c.UpdateAddressGroup(ctx, "admins", control.AddressGroupUpdate{Add: []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32")}}); err != nil {
		t.Fatal(err)
	}
	sshFrom("192.0.2.0/24,198.51.100.7/32")
	if err := c.DeleteAddressGroup(ctx, "admins"); err == nil || !strings.Contains(err.Error(), "delete that rule first") {
		t.Errorf("deleting a used address group: %v", err)
	}
	if err := c.DeleteSecurityGroupRule(ctx, ssh.ID); err != nil {
		t.Fatal(err)
	}
	node4.waitFor(t, "ssh rule gone", func(d *state.Desired) bool { _, ok := ruleOf(d, web.ID, ssh.ID); return !ok })

	// ICMP type 0 reaches the dataplane as type 0.
	echo, err := c.AddSecurityGroupRule(ctx, "web", control.SGRule{Direction: "ingress", Protocol: "icmp", PortRangeMin: control.IntPtr(0)})
	if err != nil {
		t.Fatal(err)
	}
	node4.waitFor(t, "echo reply rule", func(d *state.Desired) bool {
		r, ok := ruleOf(d, web.ID, echo.ID)
		return ok && r.ICMPType != nil && *r.ICMPType == 0 && r.ICMPCode == nil
	})
}

// A port whose groups mix stateful and stateless (written past the
// controller) gets no group at all: it fails closed, and is reported.
func TestMixedGroupsFailClosed(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	c := newController(t, srv.ClientURL())
	_, ports := seedPorts(t, ctx, c)
	raw, err := c.CreateSecurityGroup(ctx, control.SecurityGroupSpec{Name: "raw", Stateless: true})
	if err != nil {
		t.Fatal(err)
	}
	node4 := startAgent(t, srv.ClientURL(), "node4", node4VTEP)
	node4.waitFor(t, "vm1 in default", func(d *state.Desired) bool {
		return len(d.LocalPorts) == 1 && len(d.LocalPorts[0].SecurityGroups) == 1
	})
	vm1, err := c.GetPort(ctx, ports["centos7.6-vm1"].ID)
	if err != nil {
		t.Fatal(err)
	}
	rec := vm1.PortRecord
	rec.SecurityGroups = append(rec.SecurityGroups, raw.ID)
	b, _ := json.Marshal(rec)
	if _, err := c.KV().Put(ctx, control.PortKey(rec.NetworkID, rec.ID), b); err != nil {
		t.Fatal(err)
	}
	node4.waitFor(t, "vm1 without groups", func(d *state.Desired) bool {
		return len(d.LocalPorts) == 1 && len(d.LocalPorts[0].SecurityGroups) == 0 && d.Validate() == nil
	})
	eventually(t, "the conflict counted", func(context.Context) error {
		if v := counter(t, node4.reg, control.MetricRejected, map[string]string{"kind": "port", "reason": "conflict"}); v < 1 {
			return fmt.Errorf("conflicts %v", v)
		}
		return nil
	})
}

// The broker lets an agent follow a group's members or an address group
// only while a port bound to its host is in a group whose rules name them.
func TestBrokerMemberEntitlement(t *testing.T) {
	ctx := context.Background()
	srv, c, n := credServer(t, control.BrokerOptions{})
	members, err := c.CreateSecurityGroup(ctx, control.SecurityGroupSpec{Name: "members"})
	if err != nil {
		t.Fatal(err)
	}
	web, err := c.CreateSecurityGroup(ctx, control.SecurityGroupSpec{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	ag, err := c.CreateAddressGroup(ctx, control.AddressGroupSpec{Name: "admins"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []control.SGRule{{Direction: "ingress", RemoteGroupID: "members"}, {Direction: "ingress", Protocol: "tcp", RemoteAddressGroupID: "admins"}} {
		if _, err := c.AddSecurityGroupRule(ctx, "web", r); err != nil {
			t.Fatal(err)
		}
	}
	vm1, err := c.GetPort(ctx, seedVM1ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdatePort(ctx, vm1.ID, control.PortUpdate{AddSecurityGroups: []string{"web"}}, 0); err != nil {
		t.Fatal(err)
	}
	node4, node3 := connectIntruder(t, srv.ClientURL(), "node4"), connectIntruder(t, srv.ClientURL(), "node3")
	proof := control.PortKey(n.ID, vm1.ID)
	for _, tc := range []struct {
		name   string
		in     *intruder
		filter string
		proof  string
		ok     bool
	}{
		{"members of a group its port's rules name", node4, control.MembersFilter(members.ID), proof, true},
		{"... found without a proof", node4, control.MembersFilter(members.ID), "", true},
		{"an address group its port's rules name", node4, control.AddressGroupKey(ag.ID), proof, true},
		{"the default group's members (its own rule names it)", node4, control.MembersFilter(control.DefaultGroupID), "", true},
		{"members of a group no rule of its ports names", node4, control.MembersFilter(web.ID), proof, false},
		{"members of every group", node4, control.AllMembersFilter, "", false},
		{"every address group", node4, control.AddressGroupsFilter, "", false},
		{"another host's needs", node3, control.MembersFilter(members.ID), proof, false},
		{"... address group", node3, control.AddressGroupKey(ag.ID), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proofs := map[string]string{}
			if tc.proof != "" {
				proofs[tc.filter] = tc.proof
			}
			a := tc.in.ask(t, "consumer.create", consumerSpec(tc.in.host, []string{tc.filter}, proofs))
			if tc.ok && a.Error != "" {
				t.Errorf("refused: %+v", a)
			}
			if !tc.ok {
				refusedWith(t, a, control.ReasonFilter)
			}
		})
	}
	// The agent of node4 itself, with its credential, resolves the members.
	agent := startAgentConn(t, connect(t, srv.ClientURL(), as("node4", "node4")), "node4", node4VTEP)
	agent.waitFor(t, "web resolved", func(d *state.Desired) bool {
		for _, g := range d.SecurityGroups {
			if g.ID == control.DefaultGroupID && len(g.Rules) == 4 && prefixList(g.Rules[2].RemotePrefixes) == "172.16.100.10/32,172.16.100.12/32,172.16.100.19/32" {
				return true
			}
		}
		return false
	})
}
