package bpf_test

// Security groups in the programs: stateful and stateless groups,
// egress in the port program, ingress in the deliver program (every skb
// path into a VM) and the uplink program (its XDP redirects), policy
// changes cutting and reviving tracked flows.

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/frames"
	"github.com/vxdp/vxdp/maps"
	"github.com/vxdp/vxdp/state"
)

const policyA = 7 // vmA's policy id in these tests

var (
	remote  = addr("10.9.9.9") // somewhere beyond vmR
	remote6 = addr("2001:db8:9::9")
)

func u8p(v uint8) *uint8 { return &v }

// egressAll is Neutron's default: everything out, both families.
var egressAll = []state.Rule{
	{Direction: state.Egress, EtherType: state.IPv4},
	{Direction: state.Egress, EtherType: state.IPv6},
}

// withGroups gives vmA security groups with rules (a new policy and
// generation each call, as the agent does when they change).
func withGroups(t testing.TB, w *world, stateless bool, rules ...state.Rule) {
	t.Helper()
	groupsOn(t, w, vmA.ifindex, stateless, rules...)
}

// groupsOn gives the port of ifindex security groups with rules, as
// withGroups does vmA (the policy maps hold only this port's policy).
func groupsOn(t testing.TB, w *world, ifindex uint32, stateless bool, rules ...state.Rule) {
	t.Helper()
	remoteE, l4E, err := dataplane.PolicyEntries(policyA, state.SecurityGroup{ID: "sg", Stateless: stateless, Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{maps.PolicyRemote, maps.PolicyL4} {
		clearMap(t, w, name)
	}
	for k, v := range remoteE {
		w.put(t, maps.PolicyRemote, k, v)
	}
	for k, v := range l4E {
		w.put(t, maps.PolicyL4, k, v)
	}
	update(t, w, maps.Ports, ifindex, func(p *maps.PortInfo) {
		p.Flags |= maps.PortSG
		p.Flags &^= maps.PortStateless
		if stateless {
			p.Flags |= maps.PortStateless
		}
		p.Policy = policyA
		p.Generation++
	})
}

func clearMap(t testing.TB, w *world, name string) {
	t.Helper()
	m := w.set.Map(name)
	var keys []any
	switch name {
	case maps.PolicyRemote:
		e, _ := maps.Entries[maps.PolicyRemoteKey, maps.SGMask](m)
		for k := range e {
			keys = append(keys, k)
		}
	case maps.PolicyL4:
		e, _ := maps.Entries[maps.PolicyL4Key, maps.SGMask](m)
		for k := range e {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		w.del(t, name, k)
	}
}

// step is one frame through one program in a sequence that shares state.
type step struct {
	name    string
	prog    string
	in      []byte
	verdict uint32
	reason  string
	before  func(*testing.T, *world) // e.g. a rule change
	// events, when not nil, are the security-group events that move, by
	// one each ("ingress/related"); no other does.
	events []string
}

func runSteps(t *testing.T, w *world, steps []step) {
	t.Helper()
	for _, s := range steps {
		if s.before != nil {
			s.before(t, w)
		}
		before := sgEvents(t, w)
		verdict, _ := w.run(t, w.progs[s.prog], s.prog, s.in, nil, s.reason)
		if verdict != s.verdict {
			t.Errorf("%s: verdict %d, want %d (%s)", s.name, verdict, s.verdict, s.reason)
		}
		if s.events == nil {
			continue
		}
		after := sgEvents(t, w)
		for ev, n := range after {
			want := before[ev]
			if slices.Contains(s.events, ev) {
				want++
			}
			if n != want {
				t.Errorf("%s: security-group event %s %d -> %d, want %d", s.name, ev, before[ev], n, want)
			}
		}
	}
}

// sgEvents reads the security-group events by "direction/event", as
// `vxdp dump sg_stats` shows them.
func sgEvents(t testing.TB, w *world) map[string]uint64 {
	t.Helper()
	tab, err := w.set.Read(maps.SGStats, maps.DumpOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, r := range tab.Rows {
		out[r.Key] = r.Values[2].(uint64)
	}
	return out
}

// Frames between vmA and a remote host (behind vmR's MAC, so egress is
// encapsulated): out is from vmA, in is to vmA.
func tcpOut(dport uint16, flags int) []byte {
	return frames.Segment(vmA.mac, vmR.mac, vmA.ip, remote, 40000, dport, flags, 10)
}
func tcpIn(sport uint16, dport uint16, flags int) []byte {
	return frames.Segment(vmR.mac, vmA.mac, remote, vmA.ip, sport, dport, flags, 10)
}

func TestSecurityGroupsStateful(t *testing.T) {
	inNetns(t)
	icmpIn := state.Rule{Direction: state.Ingress, EtherType: state.IPv4, Protocol: 1}
	ssh := state.Rule{Direction: state.Ingress, EtherType: state.IPv4, Protocol: 6, PortMin: 22, PortMax: 22}
	other := state.Rule{Direction: state.Ingress, EtherType: state.IPv4, Protocol: 17, PortMin: 5000, PortMax: 5100}

	t.Run("the seed's story: ping needs an ingress ICMP rule, replies pass as established", func(t *testing.T) {
		w := newWorld(t)
		withGroups(t, w, false, egressAll...)
		ping := frames.Echo(vmR.mac, vmA.mac, remote, vmA.ip, 7, false)
		pong := frames.Echo(vmA.mac, vmR.mac, vmA.ip, remote, 7, true)
		runSteps(t, w, []step{
			{name: "echo in, no rule", prog: progDeliver, in: ping, verdict: tcShot, reason: "DROP_SG_INGRESS"},
			{name: "echo in, rule added", prog: progDeliver, in: ping, verdict: tcOK, reason: "PASS_SG_ALLOWED",
				before: func(t *testing.T, w *world) { withGroups(t, w, false, append(egressAll, icmpIn)...) }},
			{name: "reply out", prog: progPort, in: pong, verdict: tcRedirect, reason: "REDIRECT_REMOTE"},
			{name: "echo in again", prog: progDeliver, in: ping, verdict: tcOK, reason: "PASS_SG_ALLOWED"},
			{name: "rule deleted: the running ping stops", prog: progDeliver, in: ping, verdict: tcShot, reason: "DROP_SG_FLOW_CUT",
				before: func(t *testing.T, w *world) { withGroups(t, w, false, egressAll...) }},
		})
	})

	t.Run("TCP: a rule for 22 admits 22, not 21 or 23; replies flow; cut and revived with the rule", func(t *testing.T) {
		w := newWorld(t)
		withGroups(t, w, false, append(egressAll, ssh, other)...)
		runSteps(t, w, []step{
			{name: "SYN to 21", prog: progDeliver, in: tcpIn(50000, 21, frames.SYN), verdict: tcShot, reason: "DROP_SG_INGRESS"},
			{name: "SYN to 23", prog: progDeliver, in: tcpIn(50000, 23, frames.SYN), verdict: tcShot, reason: "DROP_SG_INGRESS"},
			{name: "SYN to 22", prog: progDeliver, in: tcpIn(50000, 22, frames.SYN), verdict: tcOK, reason: "PASS_SG_ALLOWED"},
			{name: "SYN-ACK out", prog: progPort, in: frames.Segment(vmA.mac, vmR.mac, vmA.ip, remote, 22, 50000, frames.SYN|frames.ACK, 0),
				verdict: tcRedirect, reason: "REDIRECT_REMOTE"},
			{name: "data in", prog: progDeliver, in: tcpIn(50000, 22, frames.ACK|frames.PSH), verdict: tcOK, reason: "PASS_SG_ALLOWED"},
			{name: "an unrelated rule changes: the flow goes on", prog: progDeliver, in: tcpIn(50000, 22, frames.ACK), verdict: tcOK, reason: "PASS_SG_ALLOWED",
				before: func(t *testing.T, w *world) { withGroups(t, w, false, append(egressAll, ssh)...) }},
			{name: "its rule goes: cut in", prog: progDeliver, in: tcpIn(50000, 22, frames.ACK), verdict: tcShot, reason: "DROP_SG_FLOW_CUT",
				before: func(t *testing.T, w *world) { withGroups(t, w, false, egressAll...) }},
			{name: "and out, although egress allows everything", prog: progPort,
				in:      frames.Segment(vmA.mac, vmR.mac, vmA.ip, remote, 22, 50000, frames.ACK, 10),
				verdict: tcShot, reason: "DROP_SG_FLOW_CUT"},
			{name: "the rule is back: revived", prog: progDeliver, in: tcpIn(50000, 22, frames.ACK), verdict: tcOK, reason: "PASS_SG_ALLOWED",
				before: func(t *testing.T, w *world) { withGroups(t, w, false, append(egressAll, ssh)...) }},
			{name: "SYN-ACK without SYN, no rule", prog: progDeliver, in: tcpIn(443, 41000, frames.SYN|frames.ACK), verdict: tcShot, reason: "DROP_SG_INGRESS"},
			{name: "mid-stream pickup by a rule", prog: progDeliver, in: tcpIn(50001, 22, frames.ACK), verdict: tcOK, reason: "PASS_SG_ALLOWED"},
		})
	})

	t.Run("egress rules, and replies to allowed egress", func(t *testing.T) {
		w := newWorld(t)
		web := state.Rule{Direction: state.Egress, EtherType: state.IPv4, Protocol: 6, PortMin: 80, PortMax: 80}
		withGroups(t, w, false, web)
		runSteps(t, w, []step{
			{name: "SYN out to 443", prog: progPort, in: tcpOut(443, frames.SYN), verdict: tcShot, reason: "DROP_SG_EGRESS"},
			{name: "SYN out to 80", prog: progPort, in: tcpOut(80, frames.SYN), verdict: tcRedirect, reason: "REDIRECT_REMOTE"},
			{name: "SYN-ACK back", prog: progDeliver, in: tcpIn(80, 40000, frames.SYN|frames.ACK), verdict: tcOK, reason: "PASS_SG_ALLOWED"},
			{name: "IPv6 out: no rule", prog: progPort, in: frames.Segment(vmA.mac, vmR.mac, vmA6, remote6, 40000, 80, frames.SYN, 0),
				verdict: tcShot, reason: "DROP_SG_EGRESS"},
		})
	})

	t.Run("related ICMP errors pass, forged ones do not", func(t *testing.T) {
		w := newWorld(t)
		withGroups(t, w, false, egressAll...)
		query := frames.UDP4(vmA.mac, vmR.mac, vmA.ip, remote, 5353, 53)
		forged := frames.UDP4(vmA.mac, vmR.mac, vmA.ip, remote, 5354, 53)
		router := addr("10.9.0.1")
		runSteps(t, w, []step{
			{name: "query out", prog: progPort, in: query, verdict: tcRedirect, reason: "REDIRECT_REMOTE"},
			{name: "port unreachable about it", prog: progDeliver, in: frames.Unreachable(vmR.mac, vmA.mac, router, vmA.ip, query),
				verdict: tcOK, reason: "PASS_SG_ALLOWED"},
			{name: "an error about a flow that never was", prog: progDeliver, in: frames.Unreachable(vmR.mac, vmA.mac, router, vmA.ip, forged),
				verdict: tcShot, reason: "DROP_SG_INGRESS"},
		})
	})

	t.Run("always allowed in and out, whatever the rules", func(t *testing.T) {
		w := newWorld(t)
		withGroups(t, w, false) // no rule at all
		update(t, w, maps.Ports, vmA.ifindex, func(p *maps.PortInfo) { p.Flags |= maps.PortIPv6 })
		runSteps(t, w, []step{
			{name: "DHCP discover out", prog: progPort, in: frames.DHCPDiscover(vmA.mac), verdict: tcOK, reason: "PASS_BUM"},
			{name: "DHCP offer in", prog: progDeliver, in: frames.UDP4(vmR.mac, vmA.mac, addr("172.16.100.1"), vmA.ip, 67, 68), verdict: tcOK, reason: "PASS_SG_ALLOWED"},
			{name: "DHCPv6 solicit out", prog: progPort, in: frames.UDP6(vmA.mac, frames.MAC("33:33:00:01:00:02"), vmALL, addr("ff02::1:2"), 546, 547),
				verdict: tcOK, reason: "PASS_BUM"},
			{name: "neighbour advertisement in", prog: progDeliver, in: frames.NeighborAdvert(vmR.mac, addr("fe80::1"), addr("fe80::1")), verdict: tcOK, reason: "PASS_SG_ALLOWED"},
			{name: "router advertisement in, to a port with IPv6", prog: progDeliver, in: frames.RouterAdvert(vmR.mac, addr("fe80::1")), verdict: tcOK, reason: "PASS_SG_ALLOWED"},
			{name: "ARP in", prog: progDeliver, in: frames.ARPRequest(vmR.mac, vmR.ip, vmA.ip).Bytes(), verdict: tcOK, reason: "PASS_NON_IP"},
			{name: "TCP in", prog: progDeliver, in: tcpIn(1, 22, frames.SYN), verdict: tcShot, reason: "DROP_SG_INGRESS"},
			{name: "TCP out", prog: progPort, in: tcpOut(80, frames.SYN), verdict: tcShot, reason: "DROP_SG_EGRESS"},
			{name: "router advertisement in, to a port without IPv6", prog: progDeliver, in: frames.RouterAdvert(vmR.mac, addr("fe80::1")),
				verdict: tcShot, reason: "DROP_SG_INGRESS",
				before: setPort(vmA.ifindex, func(p *maps.PortInfo) { p.Flags &^= maps.PortIPv6 })},
		})
	})

	t.Run("stateless groups track nothing: replies need their own rule", func(t *testing.T) {
		w := newWorld(t)
		withGroups(t, w, true, append(egressAll, ssh)...)
		runSteps(t, w, []step{
			{name: "SYN out to 80", prog: progPort, in: tcpOut(80, frames.SYN), verdict: tcRedirect, reason: "REDIRECT_REMOTE"},
			{name: "its SYN-ACK", prog: progDeliver, in: tcpIn(80, 40000, frames.SYN|frames.ACK), verdict: tcShot, reason: "DROP_SG_INGRESS"},
			{name: "SYN to 22", prog: progDeliver, in: tcpIn(50000, 22, frames.SYN), verdict: tcOK, reason: "PASS_SG_ALLOWED"},
		})
		if n := ctEntries(t, w); n != 0 {
			t.Errorf("a stateless group left %d tracked flows", n)
		}
	})

	t.Run("two VMs on one host never share state", func(t *testing.T) {
		w := newWorld(t)
		withGroups(t, w, false, egressAll...)
		runSteps(t, w, []step{{name: "vmA's flow out", prog: progPort, in: tcpOut(80, frames.SYN), verdict: tcRedirect, reason: "REDIRECT_REMOTE"}})
		// The same tuple on vmB's tap (its own policy: no rule) is new.
		update(t, w, maps.Ports, vmB.ifindex, func(p *maps.PortInfo) { p.Flags |= maps.PortSG; p.Policy = 99; p.Generation = 1 })
		var e maps.CTEntry
		k := maps.CTKey{Ifindex: vmB.ifindex, Proto: 6, Family: 4, LocalPort: maps.BE16(40000), RemotePort: maps.BE16(80)}
		copy(k.Local[:], vmA.ip.AsSlice())
		copy(k.Remote[:], remote.AsSlice())
		if err := w.set.Map(maps.CTTCP).Lookup(k, &e); err == nil {
			t.Errorf("vmA's flow is tracked for vmB: %+v", e)
		}
		k.Ifindex = vmA.ifindex
		if err := w.set.Map(maps.CTTCP).Lookup(k, &e); err != nil || e.Opener != maps.SGEgress || e.Generation == 0 {
			t.Errorf("vmA's flow not tracked as opened out: %+v %v", e, err)
		}
	})
}

// TestSecurityGroupsOnXDPRedirect: a frame the uplink program would
// decapsulate and redirect to a port is held to that port's ingress rules.
func TestSecurityGroupsOnXDPRedirect(t *testing.T) {
	inNetns(t)
	w := newWorld(t)
	withGroups(t, w, false, egressAll...)
	toA := func(inner []byte) []byte { return vxlanTo(vmR, inner, nil) }
	udpIn := frames.UDP4(vmR.mac, vmA.mac, vmR.ip, vmA.ip, 5353, 53)
	runSteps(t, w, []step{
		{name: "UDP in, no rule", prog: progUplink, in: toA(udpIn), verdict: xdpDrop, reason: "DROP_SG_INGRESS"},
		{name: "UDP in, with a rule", prog: progUplink, in: toA(udpIn), verdict: xdpRedirect, reason: "REDIRECT_LOCAL",
			before: func(t *testing.T, w *world) {
				withGroups(t, w, false, append(egressAll, state.Rule{Direction: state.Ingress, EtherType: state.IPv4, Protocol: 17,
					RemotePrefixes: []netip.Prefix{netip.PrefixFrom(vmR.ip, 32)}})...)
			}},
		{name: "from another address", prog: progUplink, in: toA(frames.UDP4(vmS.mac, vmA.mac, vmS.ip, vmA.ip, 5353, 53)),
			verdict: xdpDrop, reason: "DROP_SG_INGRESS"},
		{name: "ARP passes", prog: progUplink, in: toA(frames.ARPReply(vmR.mac, vmR.ip, vmA.mac, vmA.ip).Bytes()), verdict: xdpRedirect, reason: "REDIRECT_LOCAL"},
	})
}

func ctEntries(t testing.TB, w *world) int {
	t.Helper()
	n := 0
	for _, name := range []string{maps.CTTCP, maps.CTOther} {
		e, err := maps.Entries[maps.CTKey, maps.CTEntry](w.set.Map(name))
		if err != nil {
			t.Fatal(err)
		}
		n += len(e)
	}
	return n
}

// More frames between vmA and the remote host (behind vmR's MAC).
func tcpOutFrom(sport, dport uint16, flags int) []byte {
	return frames.Segment(vmA.mac, vmR.mac, vmA.ip, remote, sport, dport, flags, 10)
}
func udpFromRemote(sport, dport uint16) []byte {
	return frames.UDP4(vmR.mac, vmA.mac, remote, vmA.ip, sport, dport)
}
func udpToRemote(sport, dport uint16) []byte {
	return frames.UDP4(vmA.mac, vmR.mac, vmA.ip, remote, sport, dport)
}

var (
	router4 = addr("10.9.0.1")      // a router between vmA and the remote host
	router6 = addr("2001:db8:9::1") // the same, for IPv6
)

// fragNeeded is a router's ICMP "fragmentation needed" to vmA quoting the
// IPv4 packet of frame quoted (a PMTU error).
func fragNeeded(quoted []byte) []byte {
	return frames.Edited(frames.Unreachable(vmR.mac, vmA.mac, router4, vmA.ip, quoted), frames.Put8(frames.EthLen+20+1, 4))
}

// icmp6Error is a router's ICMPv6 error of type typ (1-4) to vmA quoting
// the IPv6 packet of frame quoted.
func icmp6Error(typ uint8, quoted []byte) []byte {
	body := make([]byte, 4, 4+len(quoted)) // unused, a packet too big's MTU or a parameter problem's pointer
	if typ == 2 {
		binary.BigEndian.PutUint32(body, 1280)
	}
	return frames.ICMPv6(vmR.mac, vmA.mac, router6, vmA6, typ, 0, append(body, quoted[frames.EthLen:]...))
}

// TestSecurityGroupsRelatedICMP: an ICMP error about a tracked flow is
// let in as the flow is, also after a policy change the flow survives
// (a PMTU error must reach the VM before the flow's next packet does);
// one about a flow that never was, or was cut, is left to the rules.
func TestSecurityGroupsRelatedICMP(t *testing.T) {
	inNetns(t)

	t.Run("ICMPv6 errors (types 1-4) about a tracked flow pass, forged ones do not", func(t *testing.T) {
		w := newWorld(t)
		withGroups(t, w, false, egressAll...)
		query := frames.UDP6(vmA.mac, vmR.mac, vmA6, remote6, 5353, 53)
		forged := frames.UDP6(vmA.mac, vmR.mac, vmA6, remote6, 5354, 53)
		steps := []step{{name: "query out", prog: progPort, in: query, verdict: tcRedirect, reason: "REDIRECT_REMOTE", events: []string{"egress/new"}}}
		for typ := uint8(1); typ <= 4; typ++ {
			steps = append(steps,
				step{name: fmt.Sprintf("type %d about it", typ), prog: progDeliver, in: icmp6Error(typ, query),
					verdict: tcOK, reason: "PASS_SG_ALLOWED", events: []string{"ingress/related"}},
				step{name: fmt.Sprintf("type %d about a flow that never was", typ), prog: progDeliver, in: icmp6Error(typ, forged),
					verdict: tcShot, reason: "DROP_SG_INGRESS", events: []string{"ingress/denied"}})
		}
		runSteps(t, w, steps)
	})

	for _, c := range []struct {
		name        string
		etherType   string
		peer, other netip.Addr
		query       []byte
		pmtu        func(quoted []byte) []byte
	}{
		{name: "IPv4 fragmentation needed", etherType: state.IPv4, peer: remote, other: addr("10.9.9.10"),
			query: udpToRemote(5353, 53), pmtu: fragNeeded},
		{name: "IPv6 packet too big", etherType: state.IPv6, peer: remote6, other: addr("2001:db8:9::10"),
			query: frames.UDP6(vmA.mac, vmR.mac, vmA6, remote6, 5353, 53), pmtu: func(q []byte) []byte { return icmp6Error(2, q) }},
	} {
		t.Run(c.name+" after a remote group's members change", func(t *testing.T) {
			w := newWorld(t)
			// vmA may send UDP to the members of group "peers".
			peers := func(members ...netip.Addr) func(*testing.T, *world) {
				return func(t *testing.T, w *world) {
					r := state.Rule{Direction: state.Egress, EtherType: c.etherType, Protocol: state.ProtoUDP, RemoteGroup: "peers"}
					for _, m := range members {
						r.RemotePrefixes = append(r.RemotePrefixes, netip.PrefixFrom(m, m.BitLen()))
					}
					withGroups(t, w, false, r)
				}
			}
			peers(c.peer)(t, w)
			runSteps(t, w, []step{
				{name: "query out", prog: progPort, in: c.query, verdict: tcRedirect, reason: "REDIRECT_REMOTE", events: []string{"egress/new"}},
				{name: "another member joins: the error about the flow is re-checked and passes", before: peers(c.peer, c.other),
					prog: progDeliver, in: c.pmtu(c.query), verdict: tcOK, reason: "PASS_SG_ALLOWED", events: []string{"ingress/rechecked", "ingress/related"}},
				{name: "another error: related", prog: progDeliver, in: c.pmtu(c.query), verdict: tcOK, reason: "PASS_SG_ALLOWED",
					events: []string{"ingress/related"}},
				{name: "the peer leaves: the flow is cut, its error left to the rules", before: peers(c.other),
					prog: progDeliver, in: c.pmtu(c.query), verdict: tcShot, reason: "DROP_SG_INGRESS", events: []string{"ingress/cut", "ingress/denied"}},
				{name: "the flow is cut out too", prog: progPort, in: c.query, verdict: tcShot, reason: "DROP_SG_FLOW_CUT", events: []string{}},
				{name: "the peer is back: its error revives the flow", before: peers(c.peer),
					prog: progDeliver, in: c.pmtu(c.query), verdict: tcOK, reason: "PASS_SG_ALLOWED", events: []string{"ingress/rechecked", "ingress/related"}},
				{name: "and the flow goes on", prog: progPort, in: c.query, verdict: tcRedirect, reason: "REDIRECT_REMOTE", events: []string{"egress/established"}},
			})
		})
	}
}

// TestSecurityGroupsICMPOtherThanEcho: ICMP messages other than echo open
// no flow: one a rule allows lets no other type in or out after it (they
// carry no identifier: a flow would be every such message between the
// two addresses).
func TestSecurityGroupsICMPOtherThanEcho(t *testing.T) {
	inNetns(t)
	w := newWorld(t)
	unreachable := uint8(3)
	withGroups(t, w, false, egressAll[0],
		state.Rule{Direction: state.Ingress, EtherType: state.IPv4, Protocol: state.ProtoICMP, ICMPType: &unreachable})
	redirect := func(f []byte) []byte { return frames.Edited(f, frames.Put8(frames.EthLen+20, 5)) } // type 5
	in := frames.Unreachable(vmR.mac, vmA.mac, router4, vmA.ip, udpToRemote(1, 2))                  // about no flow of vmA's
	out := frames.Unreachable(vmA.mac, vmR.mac, vmA.ip, router4, udpFromRemote(3, 4))               // the same
	runSteps(t, w, []step{
		{name: "unreachable in: its rule", prog: progDeliver, in: in, verdict: tcOK, reason: "PASS_SG_ALLOWED", events: []string{"ingress/stateless"}},
		{name: "a redirect in after it: no rule", prog: progDeliver, in: redirect(in), verdict: tcShot, reason: "DROP_SG_INGRESS",
			events: []string{"ingress/denied"}},
		{name: "unreachable out: egress allows all", prog: progPort, in: out, verdict: tcRedirect, reason: "REDIRECT_REMOTE",
			events: []string{"egress/stateless"}},
		{name: "a redirect in after that: no rule", prog: progDeliver, in: redirect(frames.Unreachable(vmR.mac, vmA.mac, router4, vmA.ip, udpToRemote(5, 6))),
			verdict: tcShot, reason: "DROP_SG_INGRESS", events: []string{"ingress/denied"}},
	})
	if n := ctEntries(t, w); n != 0 {
		t.Errorf("ICMP other than echo left %d tracked flows", n)
	}
}

// TestSecurityGroupsCutAndRevive: UDP and ICMP flows, like TCP ones, stop
// both ways when the rule that let them in goes and go on when it is back.
func TestSecurityGroupsCutAndRevive(t *testing.T) {
	inNetns(t)
	for _, c := range []struct {
		name    string
		rule    state.Rule
		in, out []byte
	}{
		{name: "UDP", rule: state.Rule{Direction: state.Ingress, EtherType: state.IPv4, Protocol: state.ProtoUDP, PortMin: 5000, PortMax: 5100},
			in: udpFromRemote(40000, 5000), out: udpToRemote(5000, 40000)},
		{name: "ICMP echo", rule: state.Rule{Direction: state.Ingress, EtherType: state.IPv4, Protocol: state.ProtoICMP},
			in: frames.Echo(vmR.mac, vmA.mac, remote, vmA.ip, 7, false), out: frames.Echo(vmA.mac, vmR.mac, vmA.ip, remote, 7, true)},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			withGroups(t, w, false, append(egressAll, c.rule)...)
			without := func(t *testing.T, w *world) { withGroups(t, w, false, egressAll...) }
			with := func(t *testing.T, w *world) { withGroups(t, w, false, append(egressAll, c.rule)...) }
			runSteps(t, w, []step{
				{name: "in, by the rule", prog: progDeliver, in: c.in, verdict: tcOK, reason: "PASS_SG_ALLOWED", events: []string{"ingress/new"}},
				{name: "the answer out", prog: progPort, in: c.out, verdict: tcRedirect, reason: "REDIRECT_REMOTE", events: []string{"egress/established"}},
				{name: "the rule goes: cut in", before: without, prog: progDeliver, in: c.in, verdict: tcShot, reason: "DROP_SG_FLOW_CUT",
					events: []string{"ingress/cut"}},
				{name: "and out, although egress allows everything", prog: progPort, in: c.out, verdict: tcShot, reason: "DROP_SG_FLOW_CUT",
					events: []string{}},
				{name: "the rule is back: revived", before: with, prog: progDeliver, in: c.in, verdict: tcOK, reason: "PASS_SG_ALLOWED",
					events: []string{"ingress/rechecked", "ingress/established"}},
				{name: "the answer out again", prog: progPort, in: c.out, verdict: tcRedirect, reason: "REDIRECT_REMOTE", events: []string{"egress/established"}},
			})
		})
	}
}

// TestSecurityGroupsPortRangeEdges: a range rule admits its first and
// last port, not the ports either side (the range is several prefixes in
// the policy_l4 trie).
func TestSecurityGroupsPortRangeEdges(t *testing.T) {
	inNetns(t)
	w := newWorld(t)
	rangeRule := func(proto uint8) state.Rule {
		return state.Rule{Direction: state.Ingress, EtherType: state.IPv4, Protocol: proto, PortMin: 5000, PortMax: 5100}
	}
	withGroups(t, w, false, rangeRule(state.ProtoTCP), rangeRule(state.ProtoUDP))
	var steps []step
	for _, p := range []struct {
		name  string
		frame func(dport uint16) []byte
	}{
		{"TCP", func(dport uint16) []byte { return tcpIn(50000, dport, frames.SYN) }},
		{"UDP", func(dport uint16) []byte { return udpFromRemote(50000, dport) }},
	} {
		for _, c := range []struct {
			port uint16
			pass bool
		}{{4999, false}, {5000, true}, {5100, true}, {5101, false}} {
			s := step{name: fmt.Sprintf("%s to %d", p.name, c.port), prog: progDeliver, in: p.frame(c.port),
				verdict: tcShot, reason: "DROP_SG_INGRESS", events: []string{"ingress/denied"}}
			if c.pass {
				s.verdict, s.reason, s.events = tcOK, "PASS_SG_ALLOWED", []string{"ingress/new"}
			}
			steps = append(steps, s)
		}
	}
	runSteps(t, w, steps)
}

// TestSecurityGroupsMidStreamPickup: a SYN-ACK without a SYN before it (a
// flow older than the agent, say) is picked up when a rule allows it, and
// its answers pass as established; without a rule it drops.
func TestSecurityGroupsMidStreamPickup(t *testing.T) {
	inNetns(t)
	w := newWorld(t)
	// No egress rule: an answer out passes only as a tracked flow's.
	withGroups(t, w, false, state.Rule{Direction: state.Ingress, EtherType: state.IPv4, Protocol: state.ProtoTCP, PortMin: 41000, PortMax: 41000})
	runSteps(t, w, []step{
		{name: "SYN-ACK in, a rule allows it", prog: progDeliver, in: tcpIn(443, 41000, frames.SYN|frames.ACK), verdict: tcOK, reason: "PASS_SG_ALLOWED",
			events: []string{"ingress/new"}},
		{name: "the ACK out: established", prog: progPort, in: tcpOutFrom(41000, 443, frames.ACK), verdict: tcRedirect, reason: "REDIRECT_REMOTE",
			events: []string{"egress/established"}},
		{name: "SYN-ACK in, no rule", prog: progDeliver, in: tcpIn(443, 41001, frames.SYN|frames.ACK), verdict: tcShot, reason: "DROP_SG_INGRESS",
			events: []string{"ingress/denied"}},
		{name: "its ACK out: not tracked, no rule", prog: progPort, in: tcpOutFrom(41001, 443, frames.ACK), verdict: tcShot, reason: "DROP_SG_EGRESS",
			events: []string{"egress/denied"}},
	})
}

// TestSecurityGroupsConntrackFull: with the tracked-flow table full, a
// packet a rule allows still passes (untracked, counted ct_full), and the
// flows already tracked go on; only the untracked flow's answer, which no
// rule allows, drops.
func TestSecurityGroupsConntrackFull(t *testing.T) {
	inNetns(t)
	w := newWorld(t, maps.Sizes{maps.CTTCP: 2})
	withGroups(t, w, false, state.Rule{Direction: state.Ingress, EtherType: state.IPv4, Protocol: state.ProtoTCP, PortMin: 22, PortMax: 22})
	synAck := func(dport uint16) []byte { return tcpOutFrom(22, dport, frames.SYN|frames.ACK) }
	runSteps(t, w, []step{
		{name: "first SYN", prog: progDeliver, in: tcpIn(50000, 22, frames.SYN), verdict: tcOK, reason: "PASS_SG_ALLOWED", events: []string{"ingress/new"}},
		{name: "second SYN: the table is full", prog: progDeliver, in: tcpIn(50001, 22, frames.SYN), verdict: tcOK, reason: "PASS_SG_ALLOWED",
			events: []string{"ingress/new"}},
		{name: "third SYN: allowed, not tracked", prog: progDeliver, in: tcpIn(50002, 22, frames.SYN), verdict: tcOK, reason: "PASS_SG_ALLOWED",
			events: []string{"ingress/ct_full"}},
		{name: "first SYN-ACK", prog: progPort, in: synAck(50000), verdict: tcRedirect, reason: "REDIRECT_REMOTE", events: []string{"egress/established"}},
		{name: "second SYN-ACK", prog: progPort, in: synAck(50001), verdict: tcRedirect, reason: "REDIRECT_REMOTE", events: []string{"egress/established"}},
		{name: "first flow's data", prog: progDeliver, in: tcpIn(50000, 22, frames.ACK|frames.PSH), verdict: tcOK, reason: "PASS_SG_ALLOWED",
			events: []string{"ingress/established"}},
		{name: "the untracked flow's SYN-ACK: no egress rule", prog: progPort, in: synAck(50002), verdict: tcShot, reason: "DROP_SG_EGRESS",
			events: []string{"egress/denied"}},
	})
	if n := ctEntries(t, w); n != 2 {
		t.Errorf("%d tracked flows in a table of 2", n)
	}
}

// TestConntrackDump: `vxdp dump ct` rows of flows the programs track:
// the TCP state their packets showed, and how long each is idle (a flow's
// deadline is its last packet's time plus the timeout of its state).
func TestConntrackDump(t *testing.T) {
	inNetns(t)
	w := newWorld(t)
	withGroups(t, w, false, append(egressAll,
		state.Rule{Direction: state.Ingress, EtherType: state.IPv4, Protocol: state.ProtoTCP, PortMin: 22, PortMax: 22},
		state.Rule{Direction: state.Ingress, EtherType: state.IPv4, Protocol: state.ProtoUDP, PortMin: 5000, PortMax: 5000})...)
	flow := func(proto uint8, local, remotePort uint16) string {
		return fmt.Sprintf("%d/%d/%s/%s", vmA.ifindex, proto, netip.AddrPortFrom(vmA.ip, local), netip.AddrPortFrom(remote, remotePort))
	}
	in, out := func(s, d uint16, f int) []byte { return tcpIn(s, d, f) }, func(s, d uint16, f int) []byte { return tcpOutFrom(s, d, f) }
	for _, c := range []struct {
		name    string
		prog    string
		in      []byte
		reason  string
		flow    string
		conn    string
		timeout time.Duration
	}{
		{"SYN in", progDeliver, in(50000, 22, frames.SYN), "PASS_SG_ALLOWED", flow(6, 22, 50000), "syn_sent", time.Minute},
		{"SYN-ACK out", progPort, out(22, 50000, frames.SYN|frames.ACK), "REDIRECT_REMOTE", flow(6, 22, 50000), "established", 6 * time.Hour},
		{"FIN from the VM", progPort, out(22, 50000, frames.FIN|frames.ACK), "REDIRECT_REMOTE", flow(6, 22, 50000), "fin_wait", 6 * time.Hour},
		{"FIN to the VM", progDeliver, in(50000, 22, frames.FIN|frames.ACK), "PASS_SG_ALLOWED", flow(6, 22, 50000), "closed", 10 * time.Second},
		{"another SYN in", progDeliver, in(50001, 22, frames.SYN), "PASS_SG_ALLOWED", flow(6, 22, 50001), "syn_sent", time.Minute},
		{"its SYN-ACK", progPort, out(22, 50001, frames.SYN|frames.ACK), "REDIRECT_REMOTE", flow(6, 22, 50001), "established", 6 * time.Hour},
		{"FIN to the VM", progDeliver, in(50001, 22, frames.FIN|frames.ACK), "PASS_SG_ALLOWED", flow(6, 22, 50001), "close_wait", 6 * time.Hour},
		{"RST from the VM", progPort, out(22, 50001, frames.RST), "REDIRECT_REMOTE", flow(6, 22, 50001), "reset", 10 * time.Second},
		{"UDP in", progDeliver, udpFromRemote(40000, 5000), "PASS_SG_ALLOWED", flow(17, 5000, 40000), "unreplied", 30 * time.Second},
		{"UDP answer", progPort, udpToRemote(5000, 40000), "REDIRECT_REMOTE", flow(17, 5000, 40000), "replied", 2 * time.Minute},
	} {
		w.run(t, w.progs[c.prog], c.prog, c.in, nil, c.reason)
		row := ctRow(t, w, c.flow)
		if row["conn_state"] != c.conn || row["state"] != "open" || row["opener"] != "ingress" {
			t.Errorf("%s: flow %s is %v/%v opened %v, want open/%s opened ingress", c.name, c.flow, row["state"], row["conn_state"], row["opener"], c.conn)
		}
		// The packet just went: idle for no whole second, the deadline
		// its state's timeout away (less the second it may have aged).
		left, idle := row["expires_in_s"].(int64), row["idle_s"].(int64)
		if want := int64(c.timeout / time.Second); idle != 0 || left < want-1 || left > want {
			t.Errorf("%s: flow %s expires in %d s, idle %d s; want %d s and 0", c.name, c.flow, left, idle, want)
		}
	}
}

// ctRow is the `dump ct` row of a flow (CTKeyString), by column.
func ctRow(t *testing.T, w *world, key string) map[string]any {
	t.Helper()
	for _, name := range []string{maps.CTTCP, maps.CTOther} {
		tab, err := w.set.Read(name, maps.DumpOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range tab.Rows {
			if r.Key != key {
				continue
			}
			row := map[string]any{}
			for i, c := range tab.Columns {
				row[c] = r.Values[i]
			}
			return row
		}
	}
	t.Fatalf("no tracked flow %s", key)
	return nil
}
