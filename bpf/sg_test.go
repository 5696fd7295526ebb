package bpf_test

// Security groups in the programs: stateful and stateless groups,
// egress in the port program, ingress in the deliver program (every skb
// path into a VM) and the uplink program (its XDP redirects), policy
// changes cutting and reviving tracked flows.

import (
	"net/netip"
	"testing"

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
	update(t, w, maps.Ports, vmA.ifindex, func(p *maps.PortInfo) {
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
}

func runSteps(t *testing.T, w *world, steps []step) {
	t.Helper()
	for _, s := range steps {
		if s.before != nil {
			s.before(t, w)
		}
		verdict, _ := w.run(t, w.progs[s.prog], s.prog, s.in, nil, s.reason)
		if verdict != s.verdict {
			t.Errorf("%s: verdict %d, want %d (%s)", s.name, verdict, s.verdict, s.reason)
		}
	}
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
