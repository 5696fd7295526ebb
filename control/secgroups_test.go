package control_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/state"
)

// bucketKeys lists every live key of the bucket.
func bucketKeys(t *testing.T, c *control.Controller) []string {
	t.Helper()
	keys, err := c.KV().ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for k := range keys.Keys() {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Bad rules are refused with the field and the fix, and write nothing.
func TestRuleValidation(t *testing.T) {
	ctx := context.Background()
	c := newController(t, startServer(t).ClientURL())
	web, err := c.CreateSecurityGroup(ctx, control.SecurityGroupSpec{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSecurityGroup(ctx, control.SecurityGroupSpec{Name: "theirs", Project: "demo"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAddressGroup(ctx, control.AddressGroupSpec{Name: "theirs-ag", Project: "demo"}); err != nil {
		t.Fatal(err)
	}
	ptr := control.IntPtr
	prefix := netip.MustParsePrefix
	before := bucketKeys(t, c)
	for _, tc := range []struct {
		name string
		rule control.SGRule
		want error
		msg  string
	}{
		{"unknown protocol", control.SGRule{Protocol: "tcpp"}, control.ErrInvalid, `protocol "tcpp": want a name`},
		{"protocol number too big", control.SGRule{Protocol: "256"}, control.ErrInvalid, `protocol "256"`},
		{"min above max", control.SGRule{Protocol: "tcp", PortRangeMin: ptr(30), PortRangeMax: ptr(20)}, control.ErrInvalid, "port range 30:20: want 1 <= min <= max <= 65535"},
		{"port 0", control.SGRule{Protocol: "udp", PortRangeMin: ptr(0), PortRangeMax: ptr(10)}, control.ErrInvalid, "port range 0:10"},
		{"port above 65535", control.SGRule{Protocol: "tcp", PortRangeMin: ptr(1), PortRangeMax: ptr(65536)}, control.ErrInvalid, "port range 1:65536"},
		{"half a range", control.SGRule{Protocol: "tcp", PortRangeMax: ptr(22)}, control.ErrInvalid, "give both port_range_min and port_range_max"},
		{"ports on gre", control.SGRule{Protocol: "gre", PortRangeMin: ptr(1), PortRangeMax: ptr(2)}, control.ErrInvalid, "protocol gre has no ports"},
		{"ports without protocol", control.SGRule{PortRangeMin: ptr(22), PortRangeMax: ptr(22)}, control.ErrInvalid, "a port range needs a protocol"},
		{"icmp type above 255", control.SGRule{Protocol: "icmp", PortRangeMin: ptr(300)}, control.ErrInvalid, "icmp type 300 (port_range_min): want 0-255"},
		{"icmp code without type", control.SGRule{Protocol: "icmp", PortRangeMax: ptr(3)}, control.ErrInvalid, "icmp code 3 (port_range_max) without a type"},
		{"icmpv6 on IPv4", control.SGRule{Protocol: "ipv6-icmp", Ethertype: "IPv4"}, control.ErrInvalid, "is IPv6 only"},
		{"IPv6 prefix on an IPv4 rule", control.SGRule{Ethertype: "IPv4", RemoteIPPrefix: prefix("2001:db8::/32")}, control.ErrInvalid,
			"remote_ip_prefix 2001:db8::/32 is not an IPv4 prefix"},
		{"two remotes", control.SGRule{RemoteIPPrefix: prefix("10.0.0.0/8"), RemoteGroupID: web.ID}, control.ErrInvalid, "give at most one"},
		{"unknown direction", control.SGRule{Direction: "inbound"}, control.ErrInvalid, `direction "inbound": want ingress`},
		{"remote group that does not exist", control.SGRule{RemoteGroupID: "nope"}, control.ErrNotFound, `remote_group_id: security group "nope" in project admin`},
		{"remote group of another project", control.SGRule{RemoteGroupID: "theirs"}, control.ErrNotFound, `security group "theirs" in project admin`},
		{"address group that does not exist", control.SGRule{RemoteAddressGroupID: "nope"}, control.ErrNotFound, `remote_address_group_id: address group "nope"`},
		{"address group of another project", control.SGRule{RemoteAddressGroupID: "theirs-ag"}, control.ErrNotFound, `address group "theirs-ag" in project admin`},
		{"the same as a default rule", control.SGRule{Direction: "egress", Protocol: "any"}, control.ErrExists, "already has rule"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.rule
			if r.Direction == "" {
				r.Direction = "ingress"
			}
			_, err := c.AddSecurityGroupRule(ctx, web.ID, r)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("got %v, want %v with %q", err, tc.want, tc.msg)
			}
		})
	}
	after, err := c.GetSecurityGroup(ctx, web.ID)
	if err != nil {
		t.Fatal(err)
	}
	if after.Revision != web.Revision || !slices.Equal(bucketKeys(t, c), before) {
		t.Errorf("refused rules wrote: group at revision %d (was %d), %d rules", after.Revision, web.Revision, len(after.Rules))
	}

	// ICMP type 0 (echo reply) is not "any type"; "6" is tcp.
	echoReply, err := c.AddSecurityGroupRule(ctx, web.ID, control.SGRule{Direction: "ingress", Protocol: "icmp", PortRangeMin: ptr(0)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.GetSecurityGroup(ctx, web.ID)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(got.Rules, func(r control.SGRule) bool { return r.ID == echoReply.ID })
	if i < 0 || got.Rules[i].PortRangeMin == nil || *got.Rules[i].PortRangeMin != 0 || got.Rules[i].PortRangeMax != nil {
		t.Errorf("echo reply rule read back as %+v", got.Rules[i])
	}
	if _, err := c.AddSecurityGroupRule(ctx, web.ID, control.SGRule{Direction: "ingress", Protocol: "tcp", PortRangeMin: ptr(22), PortRangeMax: ptr(22)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddSecurityGroupRule(ctx, web.ID, control.SGRule{Direction: "ingress", Protocol: "6", PortRangeMin: ptr(22), PortRangeMax: ptr(22)}); !errors.Is(err, control.ErrExists) {
		t.Errorf("protocol 6 next to tcp: %v, want a duplicate", err)
	}

	// Host bits of a remote prefix are masked, as in Neutron: the rule
	// is for the network, and another address of it is the same rule.
	masked, err := c.AddSecurityGroupRule(ctx, web.ID, control.SGRule{Direction: "ingress", RemoteIPPrefix: prefix("10.1.2.3/8")})
	if err != nil || masked.RemoteIPPrefix != prefix("10.0.0.0/8") {
		t.Errorf("rule from 10.1.2.3/8: %v, remote %s; want it stored for 10.0.0.0/8", err, masked.RemoteIPPrefix)
	}
	got, err = c.GetSecurityGroup(ctx, web.ID)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(got.Rules, func(r control.SGRule) bool { return r.ID == masked.ID }); i < 0 || got.Rules[i].RemoteIPPrefix != prefix("10.0.0.0/8") {
		t.Errorf("rule from 10.1.2.3/8 read back as %+v, want remote 10.0.0.0/8", got.Rules)
	}
	if _, err := c.AddSecurityGroupRule(ctx, web.ID, control.SGRule{Direction: "ingress", RemoteIPPrefix: prefix("10.9.9.9/8")}); !errors.Is(err, control.ErrExists) {
		t.Errorf("10.9.9.9/8 next to 10.0.0.0/8: %v, want a duplicate", err)
	}
}

// The protocol a rule names, for the dataplane.
func TestProtocolNumber(t *testing.T) {
	for _, tc := range []struct {
		proto, ethertype string
		want             uint8
		bad              bool
	}{
		{"", "IPv4", 0, false}, {"any", "IPv6", 0, false}, {"0", "IPv4", 0, false},
		{"tcp", "IPv4", 6, false}, {"TCP", "IPv6", 6, false}, {"17", "IPv4", 17, false},
		{"icmp", "IPv4", 1, false}, {"icmp", "IPv6", 58, false}, {"1", "IPv6", 58, false},
		{"icmpv6", "IPv6", 58, false}, {"ipv6-icmp", "IPv6", 58, false}, {"icmpv6", "IPv4", 0, true}, {"58", "IPv4", 0, true},
		{"dccp", "IPv4", 33, false}, {"udplite", "IPv4", 136, false}, {"sctp", "IPv6", 132, false}, {"vrrp", "IPv4", 112, false},
		{"255", "IPv4", 255, false}, {"256", "IPv4", 0, true}, {"-1", "IPv4", 0, true}, {"http", "IPv4", 0, true},
	} {
		got, err := control.ProtocolNumber(tc.proto, tc.ethertype)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("ProtocolNumber(%q, %s) = %d, %v; want %d (error %v)", tc.proto, tc.ethertype, got, err, tc.want, tc.bad)
		}
	}
}

// Quotas are per project, refused with the quota's name, and a refused
// request writes nothing.
func TestQuotas(t *testing.T) {
	ctx := context.Background()
	c := newController(t, startServer(t).ClientURL())
	if err := c.SetQuotas(ctx, control.Quotas{Networks: 2, Ports: 2, SecurityGroups: 3, SecurityGroupRules: 9}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetQuotas(ctx, control.Quotas{Networks: -2}); !errors.Is(err, control.ErrInvalid) {
		t.Errorf("quota -2: %v", err)
	}
	refused := func(what string, err error, msg string) {
		t.Helper()
		if !errors.Is(err, control.ErrQuota) || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: %v, want a quota error with %q", what, err, msg)
		}
	}
	var nets []control.Network
	for i := range 2 {
		n, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: "n" + string(rune('a'+i)), Project: "demo"})
		if err != nil {
			t.Fatal(err)
		}
		nets = append(nets, n)
	}
	before := bucketKeys(t, c)
	_, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: "nc", Project: "demo"})
	refused("third network", err, "quota network of project demo is 2, 2 in use, 1 more asked")
	if !slices.Equal(bucketKeys(t, c), before) {
		t.Error("the refused network wrote keys (a VNI?)")
	}
	if _, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: "admins"}); err != nil {
		t.Errorf("another project's network: %v", err)
	}

	// Ports: the first makes the project's default group (1 group, 4 rules).
	for range 2 {
		if _, err := c.CreatePort(ctx, control.PortSpec{Network: nets[0].ID, Project: "demo"}); err != nil {
			t.Fatal(err)
		}
	}
	before = bucketKeys(t, c)
	_, err = c.CreatePort(ctx, control.PortSpec{Network: nets[0].ID, Project: "demo"})
	refused("third port", err, "quota port of project demo is 2")
	// Groups: default + a + b; rules 4 + 2 + 2, one more fits.
	for _, name := range []string{"a", "b"} {
		if _, err := c.CreateSecurityGroup(ctx, control.SecurityGroupSpec{Name: name, Project: "demo"}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = c.CreateSecurityGroup(ctx, control.SecurityGroupSpec{Name: "c", Project: "demo"})
	refused("fourth group", err, "quota security_group of project demo is 3, 3 in use")
	if _, err := c.AddSecurityGroupRule(ctx, "b", control.SGRule{Direction: "ingress", Protocol: "tcp"}); err != nil {
		t.Fatal(err)
	}
	_, err = c.AddSecurityGroupRule(ctx, "b", control.SGRule{Direction: "ingress", Protocol: "udp"})
	refused("tenth rule", err, "quota security_group_rule of project demo is 9, 9 in use")
	if got := len(bucketKeys(t, c)); got != len(before)+2 {
		t.Errorf("refused requests wrote: %d keys, want %d (the two groups)", got, len(before)+2)
	}
	u, err := c.Usage(ctx, "demo")
	if err != nil || u != (control.Quotas{Networks: 2, Ports: 2, SecurityGroups: 3, SecurityGroupRules: 9}) {
		t.Errorf("usage of demo: %+v %v", u, err)
	}
}

// Each project has its own default group, made on first use: everything
// out, and in from its own members; every new group allows everything
// out. Names are per project; a port uses only its project's groups, all
// stateful or all stateless.
func TestProjectDefaults(t *testing.T) {
	ctx := context.Background()
	c := newController(t, startServer(t).ClientURL())
	n, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: "net", Project: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.CreatePort(ctx, control.PortSpec{Network: n.ID, Project: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	def := control.DefaultGroupIDOf("demo")
	if def == control.DefaultGroupID || !control.IsUUID(def) || !slices.Equal(p.SecurityGroups, []string{def}) || p.Project != "demo" {
		t.Fatalf("port of demo in groups %v (project %q), want [%s]", p.SecurityGroups, p.Project, def)
	}
	g, err := c.GetSecurityGroup(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, r := range g.Rules {
		rules = append(rules, r.Direction+" "+r.Ethertype+" "+r.RemoteGroupID)
	}
	if want := []string{"egress IPv4 ", "egress IPv6 ", "ingress IPv4 " + def, "ingress IPv6 " + def}; g.Name != "default" || g.Project != "demo" || !slices.Equal(rules, want) {
		t.Errorf("demo's default group %s of %s: %q, want %q", g.Name, g.Project, rules, want)
	}

	for _, project := range []string{"", "demo"} {
		web, err := c.CreateSecurityGroup(ctx, control.SecurityGroupSpec{Name: "web", Project: project})
		if err != nil {
			t.Fatal(err)
		}
		if len(web.Rules) != 2 || web.Rules[0].Direction != "egress" || web.Rules[1].Ethertype != "IPv6" || web.Project != control.ProjectOf(project) {
			t.Errorf("new group %+v: want the two egress rules", web)
		}
	}
	if _, err := c.GetSecurityGroup(ctx, control.DefaultGroupID); err != nil {
		t.Errorf("admin's default group was not made with its first group: %v", err)
	}
	if _, err := c.GetSecurityGroup(ctx, "web"); !errors.Is(err, control.ErrInvalid) || !strings.Contains(err.Error(), "used in projects admin, demo") {
		t.Errorf("ambiguous name: %v", err)
	}
	if _, err := c.CreateSecurityGroup(ctx, control.SecurityGroupSpec{Name: "web", Project: "demo"}); !errors.Is(err, control.ErrExists) {
		t.Errorf("second web in demo: %v", err)
	}
	adminWeb, err := c.FindSecurityGroup(ctx, "admin", "web")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := c.CreateSecurityGroup(ctx, control.SecurityGroupSpec{Name: "raw", Project: "demo", Stateless: true})
	if err != nil {
		t.Fatal(err)
	}
	before := bucketKeys(t, c)
	for _, tc := range []struct {
		name string
		do   func() error
		msg  string
	}{
		{"another project's group", func() error {
			_, err := c.CreatePort(ctx, control.PortSpec{Network: n.ID, Project: "demo", SecurityGroups: []string{adminWeb.ID}})
			return err
		}, "belongs to project admin, the port to demo"},
		{"stateful and stateless", func() error {
			_, err := c.CreatePort(ctx, control.PortSpec{Network: n.ID, Project: "demo", SecurityGroups: []string{"web", "raw"}})
			return err
		}, "one port cannot mix them"},
		{"adding a stateless group", func() error {
			_, err := c.UpdatePort(ctx, p.ID, control.PortUpdate{AddSecurityGroups: []string{raw.ID}}, 0)
			return err
		}, "one port cannot mix them"},
		{"port security off with groups", func() error {
			off := false
			_, err := c.UpdatePort(ctx, p.ID, control.PortUpdate{PortSecurity: &off}, 0)
			return err
		}, "port security cannot be off while the port has security groups"},
	} {
		if err := tc.do(); !errors.Is(err, control.ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.msg)
		}
	}
	if !slices.Equal(bucketKeys(t, c), before) {
		t.Error("refused port requests wrote keys")
	}
	// Replacing the groups: --no-security-group --security-group raw.
	p2, err := c.UpdatePort(ctx, p.ID, control.PortUpdate{ClearSecurityGroups: true, AddSecurityGroups: []string{"raw"}}, 0)
	if err != nil || !slices.Equal(p2.SecurityGroups, []string{raw.ID}) {
		t.Errorf("replace groups: %v %v", p2.SecurityGroups, err)
	}
}

// Records written before projects existed are the admin project's, and
// keep working: listed, used by new ports, counted in admin's quota.
func TestRecordsWithoutProject(t *testing.T) {
	ctx := context.Background()
	c := newController(t, startServer(t).ClientURL())
	const legacyNet, legacySG = "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b", "1e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"
	for key, value := range map[string]string{
		control.NetworkKey(legacyNet): `{"schema":1,"id":"` + legacyNet + `","name":"old","vni":77,"mtu":1450}`,
		control.VNIKey(77):            `{"schema":1,"vni":77,"network_id":"` + legacyNet + `"}`,
		control.SecGroupKey(legacySG): `{"schema":1,"id":"` + legacySG + `","name":"ssh","rules":[{"id":"r1","direction":"ingress","ethertype":"IPv4","protocol":"tcp","port_range_min":22,"port_range_max":22}]}`,
	} {
		if _, err := c.KV().Put(ctx, key, []byte(value)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := c.GetNetwork(ctx, "old")
	if err != nil || control.ProjectOf(n.Project) != control.AdminProject {
		t.Fatalf("legacy network: %+v %v", n, err)
	}
	sg, err := c.FindSecurityGroup(ctx, control.AdminProject, "ssh")
	if err != nil || *sg.Rules[0].PortRangeMin != 22 || *sg.Rules[0].PortRangeMax != 22 {
		t.Fatalf("legacy group: %+v %v", sg, err)
	}
	p, err := c.CreatePort(ctx, control.PortSpec{Network: "old", SecurityGroups: []string{"ssh"}})
	if err != nil {
		t.Fatalf("port in a legacy group: %v", err)
	}
	if _, err := c.AddSecurityGroupRule(ctx, "ssh", control.SGRule{Direction: "ingress", Protocol: "icmp"}); err != nil {
		t.Errorf("rule on a legacy group: %v", err)
	}
	u, err := c.Usage(ctx, control.AdminProject)
	if err != nil || u.Networks != 1 || u.Ports != 1 || u.SecurityGroups != 1 || u.SecurityGroupRules != 2 {
		t.Errorf("admin's usage %+v (%v): the legacy records count", u, err)
	}
	if _, err := c.UpdatePort(ctx, p.ID, control.PortUpdate{AddAllowedAddressPairs: []state.AddressPair{{IP: netip.MustParsePrefix("10.0.0.0/24")}}}, 0); err != nil {
		t.Errorf("update a port in a legacy group: %v", err)
	}
}
