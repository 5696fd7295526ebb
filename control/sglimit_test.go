package control_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/state"
)

// hostPrefix is a /32 of its own for every i.
func hostPrefix(base byte, i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, base, byte(i >> 8), byte(i)}), 32)
}

// tcpRule allows TCP ports lo..hi in, from remote (any when invalid).
func tcpRule(lo, hi int, remote netip.Prefix) control.SGRule {
	return control.SGRule{Direction: "ingress", Protocol: "tcp", PortRangeMin: control.IntPtr(lo), PortRangeMax: control.IntPtr(hi), RemoteIPPrefix: remote}
}

// A group of a port may hold rules with up to 256 distinct remotes and
// any number of ports, or the other way round, or 256 of both: the
// dataplane compiles them. The 257th rule with a remote and a port of its
// own is refused with the counts, the limit and the fix, and writes
// nothing; rules sharing a remote (or a remote group, or a port range)
// are not limited that way.
func TestPolicyClassLimit(t *testing.T) {
	const rules = 300
	for gi, tc := range []struct {
		name string
		rule func(i int) control.SGRule
		// refused is the message from rule MaxPolicyClasses on ("": none refused).
		refused string
	}{
		{"a remote and a port each", func(i int) control.SGRule { return tcpRule(1000+i, 1000+i, hostPrefix(1, i)) },
			"rule refused: invalid: security group g0: every port in it would pass only always-allowed traffic: its ingress IPv4 rules " +
				"would have 257 distinct remotes and 257 distinct protocol/port matches, and a port's policy holds at most 256 of either " +
				"(rules sharing a remote, or sharing a protocol and ports, count once): give these rules a common remote " +
				"(a remote group or an address group) or fewer distinct protocols and port ranges"},
		{"one remote, a port each", func(i int) control.SGRule {
			return tcpRule(1000+i, 1000+i, netip.MustParsePrefix("192.0.2.0/24"))
		}, ""},
		{"a remote each, one port range", func(i int) control.SGRule { return tcpRule(8000, 8080, hostPrefix(2, i)) }, ""},
		{"a remote group, a port each", func(i int) control.SGRule {
			r := tcpRule(1000+i, 1000+i, netip.Prefix{})
			r.RemoteGroupID = "members"
			return r
		}, ""},
		{"host bits of one network, a port each", func(i int) control.SGRule {
			return tcpRule(1000+i, 1000+i, netip.PrefixFrom(hostPrefix(3, i).Addr(), 16))
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := newController(t, startServer(t).ClientURL())
			if _, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: "net", VNI: 100, Subnets: []netip.Prefix{netip.MustParsePrefix("172.16.100.0/24")}}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.CreateSecurityGroup(ctx, control.SecurityGroupSpec{Name: "members"}); err != nil {
				t.Fatal(err)
			}
			g, err := c.CreateSecurityGroup(ctx, control.SecurityGroupSpec{Name: fmt.Sprintf("g%d", gi)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.CreatePort(ctx, control.PortSpec{Network: "net", Name: fmt.Sprintf("vm%d", gi), SecurityGroups: []string{g.ID}}); err != nil {
				t.Fatal(err)
			}
			var keys []string
			var last control.SecurityGroup
			for i := range rules {
				_, err := c.AddSecurityGroupRule(ctx, g.ID, tc.rule(i))
				if tc.refused == "" || i < state.MaxPolicyClasses {
					if err != nil {
						t.Fatalf("rule %d: %v", i, err)
					}
					continue
				}
				if i == state.MaxPolicyClasses {
					keys = bucketKeys(t, c)
					var gerr error
					if last, gerr = c.GetSecurityGroup(ctx, g.ID); gerr != nil {
						t.Fatal(gerr)
					}
				}
				if !errors.Is(err, control.ErrInvalid) || err.Error() != tc.refused {
					t.Fatalf("rule %d: got %v\nwant %s", i, err, tc.refused)
				}
			}
			after, err := c.GetSecurityGroup(ctx, g.ID)
			if err != nil {
				t.Fatal(err)
			}
			want := rules + 2 // and the default egress rules
			if tc.refused != "" {
				want = state.MaxPolicyClasses + 2
				if after.Revision != last.Revision || !slices.Equal(bucketKeys(t, c), keys) {
					t.Errorf("refused rules wrote: group at revision %d, was %d", after.Revision, last.Revision)
				}
			}
			if len(after.Rules) != want {
				t.Errorf("%d rules, want %d", len(after.Rules), want)
			}
		})
	}
}

// The limit holds for the union of a port's groups: joining a group,
// creating a port in two groups and adding a rule to one group of a port
// are refused when the port's groups together would not compile, naming
// the port; nothing is written.
func TestPolicyClassLimitPerPort(t *testing.T) {
	ctx := context.Background()
	c := newController(t, startServer(t).ClientURL())
	if _, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: "net", VNI: 100, Subnets: []netip.Prefix{netip.MustParsePrefix("172.16.100.0/24")}}); err != nil {
		t.Fatal(err)
	}
	group := func(name string, base byte, n int) control.SecurityGroup {
		g, err := c.CreateSecurityGroup(ctx, control.SecurityGroupSpec{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if _, err := c.AddSecurityGroupRule(ctx, g.ID, tcpRule(int(base)*1000+i, int(base)*1000+i, hostPrefix(base, i))); err != nil {
				t.Fatalf("group %s rule %d: %v", name, i, err)
			}
		}
		return g
	}
	a, cg := group("a", 1, 200), group("c", 3, 56)
	group("b", 2, 200)
	port := func(name string, groups ...string) control.Port {
		p, err := c.CreatePort(ctx, control.PortSpec{Network: "net", Name: name, SecurityGroups: groups})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p1, p3 := port("p1", a.ID), port("p3", a.ID, cg.ID)
	cBefore, err := c.GetSecurityGroup(ctx, cg.ID)
	if err != nil {
		t.Fatal(err)
	}
	// over is the refusal for port in groups with n of each; a port
	// name ending in "(" stands for the name and an id unknown here.
	over := func(port, groups string, n int) []string {
		msg := fmt.Sprintf("port %s) in %s would pass only always-allowed traffic: its ingress IPv4 rules would have %d distinct remotes and %d distinct protocol/port matches, "+
			"and a port's policy holds at most 256 of either", port, groups, n, n)
		if strings.HasSuffix(port, "(") {
			return strings.SplitN(msg, ")", 2)
		}
		return []string{msg}
	}
	before := bucketKeys(t, c)
	for _, tc := range []struct {
		name string
		do   func() error
		msg  []string // in this order
	}{
		{"port joins a second group", func() error {
			_, err := c.UpdatePort(ctx, "p1", control.PortUpdate{AddSecurityGroups: []string{"b"}}, 0)
			return err
		}, over("p1 ("+p1.ID, "security groups a, b", 400)},
		{"port created in two groups", func() error {
			_, err := c.CreatePort(ctx, control.PortSpec{Network: "net", Name: "p2", SecurityGroups: []string{"b", "a"}})
			return err
		}, over("p2 (", "security groups b, a", 400)},
		{"rule added to a port's other group", func() error {
			_, err := c.AddSecurityGroupRule(ctx, "c", tcpRule(5000, 5000, hostPrefix(5, 0)))
			return err
		}, append([]string{"rule refused: invalid: security group c: "}, over("p3 ("+p3.ID, "groups a, c", 257)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			rest := fmt.Sprint(err)
			for _, m := range tc.msg {
				_, after, ok := strings.Cut(rest, m)
				if !ok || !errors.Is(err, control.ErrInvalid) {
					t.Fatalf("got %v\nwant %v with %q", err, control.ErrInvalid, tc.msg)
				}
				rest = after
			}
		})
	}
	if after := bucketKeys(t, c); !slices.Equal(after, before) {
		t.Errorf("refused requests changed the keys:\n%q\nwas\n%q", after, before)
	}
	if now, err := c.GetSecurityGroup(ctx, cg.ID); err != nil || now.Revision != cBefore.Revision {
		t.Errorf("group c after the refused rule: revision %d (was %d), %v", now.Revision, cBefore.Revision, err)
	}
	if p, err := c.GetPort(ctx, "p1"); err != nil || !slices.Equal(p.SecurityGroups, []string{a.ID}) || p.Revision != p1.Revision {
		t.Errorf("p1 after the refused update: %v at revision %d (was %d), %v", p.SecurityGroups, p.Revision, p1.Revision, err)
	}
}
