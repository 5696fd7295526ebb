package dataplane

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vxdp/vxdp/maps"
	"github.com/vxdp/vxdp/state"
)

func u8p(v uint8) *uint8 { return &v }

func TestRangePrefixes(t *testing.T) {
	for _, c := range []struct {
		lo, hi uint16
		want   []portPrefix
	}{
		{22, 22, []portPrefix{{22, 16}}},
		{0, 65535, []portPrefix{{0, 0}}},
		{1, 65535, nil}, // checked for coverage below
		{1024, 2047, []portPrefix{{1024, 6}}},
		{20, 23, []portPrefix{{20, 14}}},
		{21, 24, []portPrefix{{21, 16}, {22, 15}, {24, 16}}},
	} {
		got := rangePrefixes(c.lo, c.hi)
		if c.want != nil && !slices.Equal(got, c.want) {
			t.Errorf("%d-%d: %v, want %v", c.lo, c.hi, got, c.want)
		}
		// The blocks cover exactly lo..hi.
		n := 0
		for _, p := range got {
			size := 1 << (16 - p.bits)
			if int(p.start) < int(c.lo) || int(p.start)+size-1 > int(c.hi) || int(p.start)%size != 0 {
				t.Errorf("%d-%d: block %v out of range or unaligned", c.lo, c.hi, p)
			}
			n += size
		}
		if n != int(c.hi)-int(c.lo)+1 {
			t.Errorf("%d-%d: blocks cover %d ports", c.lo, c.hi, n)
		}
	}
}

// packet is what the BPF policy lookups see.
type packet struct {
	dir    uint8
	family uint8
	remote netip.Addr
	proto  uint8
	l4     uint16 // destination port, or ICMP type<<8|code
}

// lpmAllows evaluates the compiled entries as the BPF program does: the
// longest matching remote prefix and the longest l4 match, classes ANDed.
func lpmAllows(cp *compiledPolicy, p packet) bool {
	var rem, l4 *maps.SGMask
	best := -1
	for k, m := range cp.remote {
		if k.Dir != p.dir || k.Family != p.family {
			continue
		}
		bits := int(k.Prefixlen) - 64
		pre := netip.PrefixFrom(familyAddr(k.Family, k.Addr), bits)
		if pre.Contains(p.remote) && bits > best {
			best, rem = bits, &m
		}
	}
	best = -1
	for k, m := range cp.l4 {
		if k.Dir != p.dir || k.Family != p.family {
			continue
		}
		lm := l4Match{bits: int(k.Prefixlen), proto: k.Proto, port: maps.BE16(k.Port)}
		if l4Contains(lm, l4Match{bits: 80, proto: p.proto, port: p.l4}) || lm.bits <= 48 || (lm.bits <= 56 && lm.proto == p.proto) {
			if lm.bits > best {
				best, l4 = lm.bits, &m
			}
		}
	}
	if rem == nil || l4 == nil {
		return false
	}
	for i := range rem.W {
		if rem.W[i]&l4.W[i] != 0 {
			return true
		}
	}
	return false
}

func familyAddr(f uint8, b [16]byte) netip.Addr {
	if f == 4 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}

// ruleAllows is the specification: a rule matches a packet.
func ruleAllows(r state.Rule, p packet) bool {
	dir := maps.SGIngress
	if r.Direction == state.Egress {
		dir = maps.SGEgress
	}
	fam := uint8(4)
	if r.EtherType == state.IPv6 {
		fam = 6
	}
	if dir != p.dir || fam != p.family {
		return false
	}
	if !r.AnyRemote() && !slices.ContainsFunc(r.RemotePrefixes, func(pre netip.Prefix) bool { return pre.Contains(p.remote) }) {
		return false
	}
	switch {
	case r.Protocol == 0:
		return true
	case r.Protocol != p.proto:
		return false
	case state.IsICMP(r.Protocol, r.EtherType):
		return r.ICMPType == nil || (uint16(*r.ICMPType) == p.l4>>8 && (r.ICMPCode == nil || uint16(*r.ICMPCode) == p.l4&0xff))
	case state.HasPorts(r.Protocol) && r.PortMin != 0:
		return p.l4 >= r.PortMin && p.l4 <= r.PortMax
	}
	return true
}

// TestPolicyCompilation: for random rule sets and random packets, the
// compiled two-lookup policy allows exactly what some rule allows.
func TestPolicyCompilation(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	prefixes4 := []string{"10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32", "192.168.0.0/16", "172.16.100.0/24"}
	prefixes6 := []string{"2001:db8::/32", "2001:db8:1::/48", "fe80::/10"}
	randRule := func() state.Rule {
		rule := state.Rule{Direction: []state.Direction{state.Ingress, state.Egress}[r.IntN(2)], EtherType: state.IPv4}
		pool := prefixes4
		if r.IntN(4) == 0 {
			rule.EtherType, pool = state.IPv6, prefixes6
		}
		switch r.IntN(4) {
		case 0: // any protocol
		case 1:
			rule.Protocol = []uint8{6, 17, 132}[r.IntN(3)]
			if r.IntN(3) > 0 {
				lo := uint16(1 + r.IntN(2000))
				rule.PortMin, rule.PortMax = lo, lo+uint16(r.IntN(300))
			}
		case 2:
			rule.Protocol = 1
			if rule.EtherType == state.IPv6 {
				rule.Protocol = 58
			}
			if r.IntN(2) == 0 {
				rule.ICMPType = u8p(uint8(r.IntN(12)))
				if r.IntN(2) == 0 {
					rule.ICMPCode = u8p(uint8(r.IntN(3)))
				}
			}
		default:
			rule.Protocol = 47
		}
		switch r.IntN(3) {
		case 0: // any remote
		case 1:
			rule.RemotePrefixes = []netip.Prefix{netip.MustParsePrefix(pool[r.IntN(len(pool))])}
		default:
			rule.RemoteGroup = "g"
			for n := r.IntN(3); n > 0; n-- {
				rule.RemotePrefixes = append(rule.RemotePrefixes, netip.MustParsePrefix(pool[r.IntN(len(pool))]))
			}
		}
		return rule
	}
	addrs := []string{"10.1.2.3", "10.1.2.4", "10.1.3.1", "10.2.0.1", "192.168.5.5", "172.16.100.19", "8.8.8.8",
		"2001:db8:1::1", "2001:db8:2::1", "fe80::1", "2002::1"}
	for trial := 0; trial < 300; trial++ {
		var rules []state.Rule
		for n := 1 + r.IntN(12); n > 0; n-- {
			rules = append(rules, randRule())
		}
		g := &state.SecurityGroup{ID: "sg", Rules: rules}
		cp, err := compilePolicy([]*state.SecurityGroup{g})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 200; i++ {
			a := netip.MustParseAddr(addrs[r.IntN(len(addrs))])
			p := packet{dir: uint8(r.IntN(2)), family: 4, remote: a, proto: []uint8{6, 17, 132, 1, 58, 47, 50}[r.IntN(7)]}
			if a.Is6() {
				p.family = 6
			}
			if state.HasPorts(p.proto) {
				p.l4 = uint16(1 + r.IntN(2400))
			} else if p.proto == 1 || p.proto == 58 {
				p.l4 = uint16(r.IntN(12))<<8 | uint16(r.IntN(3))
			}
			want := slices.ContainsFunc(rules, func(rule state.Rule) bool { return ruleAllows(rule, p) })
			if got := lpmAllows(cp, p); got != want {
				t.Fatalf("trial %d: packet %+v: compiled policy says %v, rules say %v\nrules: %+v", trial, p, got, want, rules)
			}
		}
	}
}

// TestPolicyIDs: the same groups compile to the same policy id; another
// rule set to another one; too many classes is an error for that set only.
func TestPolicyIDs(t *testing.T) {
	web := state.SecurityGroup{ID: "web", Rules: []state.Rule{{Direction: state.Ingress, EtherType: state.IPv4, Protocol: 6, PortMin: 80, PortMax: 80}}}
	ssh := state.SecurityGroup{ID: "ssh", Rules: []state.Rule{{Direction: state.Ingress, EtherType: state.IPv4, Protocol: 6, PortMin: 22, PortMax: 22}}}
	var many []state.Rule
	for i := 0; i < state.MaxPolicyClasses+1; i++ {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0})
		many = append(many, state.Rule{Direction: state.Ingress, EtherType: state.IPv4, Protocol: 6, PortMin: uint16(1000 + i), PortMax: uint16(1000 + i),
			RemotePrefixes: []netip.Prefix{netip.PrefixFrom(a, 24)}})
	}
	huge := state.SecurityGroup{ID: "huge", Rules: many}
	groups := []state.SecurityGroup{web, ssh, huge}
	port := func(gs ...string) localPort { return localPort{LocalPort: state.LocalPort{SecurityGroups: gs}} }
	a, errs := compilePolicies(groups, []localPort{port("web"), port("ssh", "web"), port("web", "ssh"), port("huge")})
	b, _ := compilePolicies(groups, []localPort{port("web", "ssh"), port("web")})
	if a.policyOf(port("web")) != b.policyOf(port("web")) || a.policyOf(port("ssh", "web")) != b.policyOf(port("web", "ssh")) {
		t.Error("the same groups got different policy ids")
	}
	if a.policyOf(port("web")) == a.policyOf(port("web", "ssh")) {
		t.Error("different rule sets share a policy id")
	}
	if errs["huge"] == nil {
		t.Errorf("%d classes compiled without an error", state.MaxPolicyClasses+1)
	}
	if p := a.policies[a.policyOf(port("huge"))]; len(p.remote)+len(p.l4) != 0 {
		t.Error("a policy that cannot be compiled must allow nothing")
	}
}

// A port whose groups cannot be compiled (300 rules with distinct remotes
// and distinct ports: more classes than an sg_mask holds either way) is a
// problem of `vxdp status`, by name, with why and what it passes; a port
// in compilable groups is not.
func TestUncompiledPolicyReported(t *testing.T) {
	groups := []state.SecurityGroup{
		{ID: "big", Rules: distinctRules(300)},
		{ID: "web", Rules: []state.Rule{{Direction: state.Ingress, EtherType: state.IPv4, Protocol: state.ProtoTCP, PortMin: 80, PortMax: 80}}},
	}
	port := func(id string, gs ...string) localPort {
		return localPort{LocalPort: state.LocalPort{ID: id, SecurityGroups: gs}}
	}
	ps, errs := compilePolicies(groups, []localPort{port("vm1", "big"), port("vm2", "web", "big"), port("vm3", "web")})
	if got := ps.uncompiledPorts(errs); got != 2 {
		t.Errorf("uncompiled ports: %d, want 2 (vm1, vm2)", got)
	}
	problems := policyProblems(&Applied{Policies: ps.describe(groups, errs)})
	want := []string{
		"port vm1: security groups big not compiled: ingress IPv4: 300 distinct remote sets and 300 distinct protocol/port sets: at most 256 of either; it passes only always-allowed traffic",
		"port vm2: security groups big, web not compiled: ingress IPv4: 301 distinct remote sets and 301 distinct protocol/port sets: at most 256 of either; it passes only always-allowed traffic",
	}
	if !slices.Equal(problems, want) {
		t.Errorf("status problems:\n%s\nwant:\n%s", strings.Join(problems, "\n"), strings.Join(want, "\n"))
	}
}

// distinctRules are n ingress IPv4 rules, each with a remote and a TCP
// port of its own.
func distinctRules(n int) []state.Rule {
	var rules []state.Rule
	for i := range n {
		rules = append(rules, state.Rule{Direction: state.Ingress, EtherType: state.IPv4, Protocol: state.ProtoTCP,
			PortMin: uint16(1000 + i), PortMax: uint16(1000 + i),
			RemotePrefixes: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 32)}})
	}
	return rules
}
