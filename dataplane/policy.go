package dataplane

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/vxdp/vxdp/maps"
	"github.com/vxdp/vxdp/state"
)

// A policy is a distinct set of security groups compiled for the BPF
// lookups: per direction and family, rules become classes; the
// policy_remote LPM gives the classes whose remote prefixes hold an
// address, the policy_l4 LPM the classes allowing a protocol and port; a
// packet passes when the two share a class. Two lookups, however many
// rules. Policies are named by a hash of their content, so the same groups
// compile to the same entries across restarts, and a changed policy is a
// new one: written in full before any port switches to it.

// An sg_mask holds state.MaxPolicyClasses bits, the limit the controller
// checks too: the build fails when the two disagree.
var (
	_ [len(maps.SGMask{}.W)*64 - state.MaxPolicyClasses]struct{}
	_ [state.MaxPolicyClasses - len(maps.SGMask{}.W)*64]struct{}
)

// compiledPolicy is one policy's entries, keyed with policy id 0 until
// the id is known.
type compiledPolicy struct {
	stateless bool
	remote    map[maps.PolicyRemoteKey]maps.SGMask
	l4        map[maps.PolicyL4Key]maps.SGMask
	classes   []policyClass // for `vxdp dump policy`
}

// policyClass is a set of remote prefixes and a set of protocol/port
// matches: any of the first with any of the second is allowed.
type policyClass struct {
	dir     uint8
	family  uint8
	remotes []netip.Prefix
	l4      []l4Match
	rules   []string // "group/rule" ids behind it
}

// l4Match is a prefix of the (protocol, port) space of policy_l4 keys.
type l4Match struct {
	bits  int // 48: any protocol, 56: any port of proto, 64+n: port prefix
	proto uint8
	port  uint16
}

func (m l4Match) String() string {
	return fmt.Sprintf("%d/%d/%d", m.bits, m.proto, m.port)
}

// ruleL4 turns a rule's protocol and ports (or ICMP type/code) into l4
// prefixes.
func ruleL4(r state.Rule) []l4Match {
	switch {
	case r.Protocol == 0:
		return []l4Match{{bits: 48}}
	case state.IsICMP(r.Protocol, r.EtherType) && r.ICMPType != nil:
		m := l4Match{bits: 72, proto: r.Protocol, port: uint16(*r.ICMPType) << 8}
		if r.ICMPCode != nil {
			m.bits, m.port = 80, m.port|uint16(*r.ICMPCode)
		}
		return []l4Match{m}
	case state.HasPorts(r.Protocol) && r.PortMin != 0:
		var out []l4Match
		for _, p := range rangePrefixes(r.PortMin, r.PortMax) {
			out = append(out, l4Match{bits: 64 + p.bits, proto: r.Protocol, port: p.start})
		}
		return out
	default:
		return []l4Match{{bits: 56, proto: r.Protocol}}
	}
}

// portPrefix is an aligned block of ports: start with bits fixed.
type portPrefix struct {
	start uint16
	bits  int
}

// rangePrefixes splits lo..hi into the fewest aligned blocks.
func rangePrefixes(lo, hi uint16) []portPrefix {
	var out []portPrefix
	for cur := uint32(lo); cur <= uint32(hi); {
		k := 0 // the block is 2^k ports
		for k < 16 && cur%(1<<(k+1)) == 0 && cur+1<<(k+1)-1 <= uint32(hi) {
			k++
		}
		out = append(out, portPrefix{start: uint16(cur), bits: 16 - k})
		cur += 1 << k
	}
	return out
}

// ruleRemotes is the rule's remote prefixes (nil: matches nothing).
func ruleRemotes(r state.Rule) []netip.Prefix {
	if r.AnyRemote() {
		if r.EtherType == state.IPv4 {
			return []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
		}
		return []netip.Prefix{netip.MustParsePrefix("::/0")}
	}
	out := make([]netip.Prefix, 0, len(r.RemotePrefixes))
	for _, p := range r.RemotePrefixes {
		out = append(out, p.Masked())
	}
	return out
}

// compilePolicy compiles the union of groups' rules.
func compilePolicy(groups []*state.SecurityGroup) (*compiledPolicy, error) {
	cp := &compiledPolicy{remote: map[maps.PolicyRemoteKey]maps.SGMask{}, l4: map[maps.PolicyL4Key]maps.SGMask{}}
	type sel struct {
		dir    uint8
		family uint8
	}
	rulesOf := map[sel][]state.Rule{}
	names := map[sel][]string{}
	for i, g := range groups {
		if i > 0 && g.Stateless != groups[0].Stateless {
			return nil, fmt.Errorf("groups %s and %s mix stateful and stateless", groups[0].ID, g.ID)
		}
		cp.stateless = g.Stateless
		for _, r := range g.Rules {
			s := sel{dir: maps.SGIngress, family: 4}
			if r.Direction == state.Egress {
				s.dir = maps.SGEgress
			}
			if r.EtherType == state.IPv6 {
				s.family = 6
			}
			rulesOf[s] = append(rulesOf[s], r)
			names[s] = append(names[s], g.ID+"/"+r.ID)
		}
	}
	sels := make([]sel, 0, len(rulesOf))
	for s := range rulesOf {
		sels = append(sels, s)
	}
	sort.Slice(sels, func(i, j int) bool {
		return sels[i].dir < sels[j].dir || (sels[i].dir == sels[j].dir && sels[i].family < sels[j].family)
	})
	for _, s := range sels {
		classes, err := classify(rulesOf[s], names[s])
		if err != nil {
			return nil, fmt.Errorf("%s IPv%d: %w", maps.DirName(s.dir), s.family, err)
		}
		remote := map[netip.Prefix]maps.SGMask{}
		l4 := map[l4Match]maps.SGMask{}
		for c, cl := range classes {
			cl.dir, cl.family = s.dir, s.family
			cp.classes = append(cp.classes, cl)
			for _, p := range cl.remotes {
				remote[p] = withBit(remote[p], c)
			}
			for _, m := range cl.l4 {
				l4[m] = withBit(l4[m], c)
			}
		}
		for p, m := range closeRemotes(remote) {
			k := maps.PolicyRemoteKey{Prefixlen: 64 + uint32(p.Bits()), Dir: s.dir, Family: s.family}
			copy(k.Addr[:], p.Addr().AsSlice())
			cp.remote[k] = m
		}
		for lm, m := range closeL4(l4) {
			k := maps.PolicyL4Key{Prefixlen: uint32(lm.bits), Dir: s.dir, Family: s.family, Proto: lm.proto, Port: maps.BE16(lm.port)}
			cp.l4[k] = m
		}
	}
	return cp, nil
}

// classify groups rules into classes: by their remote prefixes, or by
// their protocol/port matches, whichever gives fewer (a class holds the
// union of the other dimension). Rules that match nothing are left out.
func classify(rules []state.Rule, names []string) ([]policyClass, error) {
	key := func(ps []netip.Prefix) string {
		s := make([]string, len(ps))
		for i, p := range ps {
			s[i] = p.String()
		}
		slices.Sort(s)
		return strings.Join(slices.Compact(s), ",")
	}
	l4key := func(ms []l4Match) string {
		s := make([]string, len(ms))
		for i, m := range ms {
			s[i] = m.String()
		}
		slices.Sort(s)
		return strings.Join(s, ",")
	}
	byRemote, byL4 := map[string]*policyClass{}, map[string]*policyClass{}
	var orderR, orderL []string
	for i, r := range rules {
		remotes, l4 := ruleRemotes(r), ruleL4(r)
		if len(remotes) == 0 {
			continue
		}
		kr, kl := key(remotes), l4key(l4)
		if byRemote[kr] == nil {
			byRemote[kr] = &policyClass{remotes: remotes}
			orderR = append(orderR, kr)
		}
		byRemote[kr].l4 = append(byRemote[kr].l4, l4...)
		byRemote[kr].rules = append(byRemote[kr].rules, names[i])
		if byL4[kl] == nil {
			byL4[kl] = &policyClass{l4: l4}
			orderL = append(orderL, kl)
		}
		byL4[kl].remotes = append(byL4[kl].remotes, remotes...)
		byL4[kl].rules = append(byL4[kl].rules, names[i])
	}
	classes, order := byRemote, orderR
	if len(orderL) < len(orderR) {
		classes, order = byL4, orderL
	}
	if len(order) > state.MaxPolicyClasses {
		return nil, fmt.Errorf("%d distinct remote sets and %d distinct protocol/port sets: at most %d of either", len(orderR), len(orderL), state.MaxPolicyClasses)
	}
	out := make([]policyClass, len(order))
	for i, k := range order {
		out[i] = *classes[k]
	}
	return out, nil
}

func withBit(m maps.SGMask, c int) maps.SGMask {
	m.W[c/64] |= 1 << (c % 64)
	return m
}

func orMask(a, b maps.SGMask) maps.SGMask {
	for i := range a.W {
		a.W[i] |= b.W[i]
	}
	return a
}

// closeRemotes gives each prefix the classes of every prefix containing
// it: an LPM lookup returns the longest match only.
func closeRemotes(in map[netip.Prefix]maps.SGMask) map[netip.Prefix]maps.SGMask {
	lengths := map[int]bool{}
	for p := range in {
		lengths[p.Bits()] = true
	}
	out := make(map[netip.Prefix]maps.SGMask, len(in))
	for p, m := range in {
		for l := range lengths {
			if l < p.Bits() {
				if anc, ok := in[netip.PrefixFrom(p.Addr(), l).Masked()]; ok {
					m = orMask(m, anc)
				}
			}
		}
		out[p] = m
	}
	return out
}

// closeL4 does the same for protocol/port matches: "any protocol" holds
// every match, "any port of p" every match of p, a port block the blocks
// inside it.
func closeL4(in map[l4Match]maps.SGMask) map[l4Match]maps.SGMask {
	out := make(map[l4Match]maps.SGMask, len(in))
	for m, mask := range in {
		for a, amask := range in {
			if a.bits < m.bits && l4Contains(a, m) {
				mask = orMask(mask, amask)
			}
		}
		out[m] = mask
	}
	return out
}

func l4Contains(a, m l4Match) bool {
	switch {
	case a.bits <= 48:
		return true
	case a.proto != m.proto:
		return false
	case a.bits <= 56:
		return true
	}
	shift := 16 - (a.bits - 64)
	return a.port>>shift == m.port>>shift
}

// content is a canonical serialization of the policy, for its id.
func (cp *compiledPolicy) content() []byte {
	var lines []string
	for k, m := range cp.remote {
		lines = append(lines, fmt.Sprintf("r %d %d %d %x %v", k.Prefixlen, k.Dir, k.Family, k.Addr, m.W))
	}
	for k, m := range cp.l4 {
		lines = append(lines, fmt.Sprintf("l %d %d %d %d %d %v", k.Prefixlen, k.Dir, k.Family, k.Proto, k.Port, m.W))
	}
	slices.Sort(lines)
	return []byte(fmt.Sprintf("stateless=%v\n%s", cp.stateless, strings.Join(lines, "\n")))
}

// policySet is every policy the local ports use, with ids.
type policySet struct {
	byGroups map[string]uint32 // sorted group ids -> policy id
	policies map[uint32]*compiledPolicy
	ports    map[string][]string // sorted group ids -> names of the ports in them
}

// compilePolicies compiles the distinct group sets of the secured ports.
// A set that cannot be compiled (a group missing, too many classes)
// gets the empty policy: the port allows nothing but what is always
// allowed, and the error is returned per port.
func compilePolicies(groups []state.SecurityGroup, ports []localPort) (*policySet, map[string]error) {
	byID := map[string]*state.SecurityGroup{}
	for i := range groups {
		byID[groups[i].ID] = &groups[i]
	}
	ps := &policySet{byGroups: map[string]uint32{}, policies: map[uint32]*compiledPolicy{}, ports: map[string][]string{}}
	errs := map[string]error{}
	contents := map[uint32][]byte{}
	var sets []string
	setGroups := map[string][]string{}
	for _, p := range ports {
		ids := slices.Clone(p.SecurityGroups)
		slices.Sort(ids)
		ids = slices.Compact(ids)
		k := strings.Join(ids, ",")
		ps.ports[k] = append(ps.ports[k], portName(p.LocalPort))
		if _, ok := setGroups[k]; !ok {
			sets = append(sets, k)
			setGroups[k] = ids
		}
	}
	slices.Sort(sets)
	for _, k := range sets {
		var gs []*state.SecurityGroup
		var err error
		for _, id := range setGroups[k] {
			g, ok := byID[id]
			if !ok {
				err = fmt.Errorf("security group %s is not in the desired state", id)
				break
			}
			gs = append(gs, g)
		}
		cp := &compiledPolicy{remote: map[maps.PolicyRemoteKey]maps.SGMask{}, l4: map[maps.PolicyL4Key]maps.SGMask{}}
		if err == nil {
			if c, cerr := compilePolicy(gs); cerr != nil {
				err = cerr
			} else {
				cp = c
			}
		}
		body := cp.content()
		if err != nil {
			// Its own id, so that status and dump name its groups and
			// ports, not those of another set that failed.
			errs[k] = err
			body = append(body, "\nuncompiled "+k...)
		}
		h := fnv.New32a()
		h.Write(body)
		id := h.Sum32()
		for id == 0 || (contents[id] != nil && string(contents[id]) != string(body)) {
			id++ // a collision: the next free id
		}
		contents[id] = body
		ps.byGroups[k] = id
		ps.policies[id] = cp
	}
	return ps, errs
}

// describe lists each policy's groups and rules with their sources, for
// applied.json (`vxdp dump policy`).
func (ps *policySet) describe(groups []state.SecurityGroup, errs map[string]error) map[string]AppliedPolicy {
	out := map[string]AppliedPolicy{}
	for set, id := range ps.byGroups {
		ap := AppliedPolicy{Groups: strings.Split(set, ","), Stateless: ps.policies[id].stateless, Rules: []AppliedRule{},
			Ports: slices.Sorted(slices.Values(ps.ports[set]))}
		if set == "" {
			ap.Groups = []string{}
		}
		if err := errs[set]; err != nil {
			ap.Error = err.Error()
		}
		for _, g := range groups {
			if !slices.Contains(ap.Groups, g.ID) {
				continue
			}
			for _, r := range g.Rules {
				ap.Rules = append(ap.Rules, AppliedRule{Group: g.ID, ID: r.ID, Direction: string(r.Direction), EtherType: r.EtherType,
					Match: ruleMatch(r), Remote: ruleRemote(r), Source: g.Source.String()})
			}
		}
		if same, ok := out[fmt.Sprint(id)]; ok { // other groups with the same rules
			ap.Ports = slices.Sorted(slices.Values(append(ap.Ports, same.Ports...)))
		}
		out[fmt.Sprint(id)] = ap
	}
	return out
}

// uncompiledPorts counts the ports whose groups could not be compiled
// (errs from compilePolicies): they pass only what is always allowed.
func (ps *policySet) uncompiledPorts(errs map[string]error) int {
	n := 0
	for set := range errs {
		n += len(ps.ports[set])
	}
	return n
}

// ruleMatch describes what a rule matches besides its remote.
func ruleMatch(r state.Rule) string {
	switch {
	case r.Protocol == 0:
		return "any"
	case r.ICMPType != nil && r.ICMPCode != nil:
		return fmt.Sprintf("proto %d type %d code %d", r.Protocol, *r.ICMPType, *r.ICMPCode)
	case r.ICMPType != nil:
		return fmt.Sprintf("proto %d type %d", r.Protocol, *r.ICMPType)
	case r.PortMin != 0:
		return fmt.Sprintf("proto %d ports %d-%d", r.Protocol, r.PortMin, r.PortMax)
	}
	return fmt.Sprintf("proto %d", r.Protocol)
}

// ruleRemote describes a rule's remote.
func ruleRemote(r state.Rule) string {
	var ps []string
	for _, p := range r.RemotePrefixes {
		ps = append(ps, p.String())
	}
	switch {
	case r.RemoteGroup != "":
		return fmt.Sprintf("group %s (%d addresses) %s", r.RemoteGroup, len(ps), strings.Join(ps, " "))
	case r.RemoteAddressGroup != "":
		return fmt.Sprintf("address group %s %s", r.RemoteAddressGroup, strings.Join(ps, " "))
	case len(ps) == 0:
		return "any"
	}
	return strings.Join(ps, " ")
}

// policyOf returns the policy id of a port's groups.
func (ps *policySet) policyOf(p localPort) uint32 {
	ids := slices.Clone(p.SecurityGroups)
	slices.Sort(ids)
	return ps.byGroups[strings.Join(slices.Compact(ids), ",")]
}

// entries returns every policy's keys with their ids set.
func (ps *policySet) entries() (map[maps.PolicyRemoteKey]maps.SGMask, map[maps.PolicyL4Key]maps.SGMask) {
	remote, l4 := map[maps.PolicyRemoteKey]maps.SGMask{}, map[maps.PolicyL4Key]maps.SGMask{}
	for id, cp := range ps.policies {
		for k, m := range cp.remote {
			k.Policy = id
			remote[k] = m
		}
		for k, m := range cp.l4 {
			k.Policy = id
			l4[k] = m
		}
	}
	return remote, l4
}

// PolicyEntries compiles groups into the policy_remote and policy_l4
// entries of policy id, as the agent installs them: for tests and
// benchmarks that drive the programs without an agent.
func PolicyEntries(id uint32, groups ...state.SecurityGroup) (map[maps.PolicyRemoteKey]maps.SGMask, map[maps.PolicyL4Key]maps.SGMask, error) {
	gs := make([]*state.SecurityGroup, len(groups))
	for i := range groups {
		gs[i] = &groups[i]
	}
	cp, err := compilePolicy(gs)
	if err != nil {
		return nil, nil, err
	}
	ps := &policySet{policies: map[uint32]*compiledPolicy{id: cp}}
	remote, l4 := ps.entries()
	return remote, l4, nil
}
