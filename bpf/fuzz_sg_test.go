package bpf_test

// Security groups in the fuzz test: a model of sg_check over vmA's rules
// and the flows the programs opened, egress in the port program and
// ingress in the deliver and uplink programs, with frames of a few flows
// between vmA and remote hosts so that they meet.
//
// The model cannot see a tracked flow expire (its life depends on the
// kernel's coarse clock), so a flow is certain only for a while after it
// last passed a packet; after that the model accepts the packet passing
// on it or being denied, and learns which from the program's answer. A
// packet that no opened flow and no rule allows must always be denied.

import (
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/vxdp/vxdp/frames"
	"github.com/vxdp/vxdp/state"
)

const (
	sgEgress  = state.Egress
	sgIngress = state.Ingress
	// flowCertain is how long after its last packet a tracked flow is
	// surely alive: the shortest timeout (a closed TCP flow, 10 s) less
	// the refresh slack (1 s) and a margin.
	flowCertain = 8 * time.Second
)

// flowKey is a tracked flow of a port: local is the VM's side.
type flowKey struct {
	ifindex       uint32
	proto, family uint8
	local, remote [16]byte
	lport, rport  uint16
}

// modelGroups are vmA's security groups and the flows opened through them.
type modelGroups struct {
	stateless bool
	rules     []state.Rule
	flows     map[flowKey]time.Time // when each last passed a packet
}

// flowUpdate is what the model learns once the program answered: on a
// pass, the flow the packet opened or refreshed; on the alternative
// (a deny the model could not rule out), the flows that had expired.
type flowUpdate struct {
	open *flowKey
	gone []flowKey
}

// learn applies u after the program passed the packet through its groups
// (passed) or denied it.
func (m *model) learn(u *flowUpdate, passed bool) {
	if u == nil || m.groups == nil {
		return
	}
	if passed {
		if u.open != nil {
			m.groups.flows[*u.open] = time.Now()
		}
		return
	}
	for _, k := range u.gone {
		delete(m.groups.flows, k)
	}
}

// The rules of the stateful scenario: some traffic each way, by
// protocol, port, ICMP type and remote prefix.
var flowRules = []state.Rule{
	{Direction: state.Egress, EtherType: state.IPv4, Protocol: 17},
	{Direction: state.Egress, EtherType: state.IPv4, Protocol: 1, ICMPType: u8p(8)},
	{Direction: state.Egress, EtherType: state.IPv6, Protocol: 6, PortMin: 80, PortMax: 80},
	{Direction: state.Ingress, EtherType: state.IPv4, Protocol: 17, PortMin: 5000, PortMax: 5100},
	{Direction: state.Ingress, EtherType: state.IPv4, Protocol: 6, PortMin: 22, PortMax: 22,
		RemotePrefixes: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}},
	{Direction: state.Ingress, EtherType: state.IPv6, Protocol: 58, ICMPType: u8p(128)},
}

// withGroupsModel gives vmA stateful groups with rules, in the world
// and the model.
func withGroupsModel(rules ...state.Rule) func(*testing.T, *world, *model) {
	return func(t *testing.T, w *world, m *model) {
		withGroups(t, w, false, rules...)
		m.ports[vmA.ifindex].sg = true
		m.groups = &modelGroups{rules: rules, flows: map[flowKey]time.Time{}}
	}
}

func hasPorts(proto uint8) bool {
	return proto == 6 || proto == 17 || proto == 33 || proto == 132 || proto == 136
}

func isICMP(family, proto uint8) bool {
	return (family == 4 && proto == 1) || (family == 6 && proto == 58)
}

// addrOf is the address of family in a 16-byte flow field.
func addrOf(family uint8, b [16]byte) netip.Addr {
	if family == 4 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}

// allows: a rule of the groups allows traffic in dir with this remote
// address, protocol and l4 (destination port, or ICMP type << 8 | code).
func (g *modelGroups) allows(dir state.Direction, family uint8, remote [16]byte, proto uint8, l4 uint16) bool {
	for _, r := range g.rules {
		if r.Direction != dir || (r.EtherType == state.IPv4) != (family == 4) || (r.Protocol != 0 && r.Protocol != proto) {
			continue
		}
		if r.Protocol != 0 && hasPorts(proto) && (r.PortMin != 0 || r.PortMax != 0) && (l4 < r.PortMin || l4 > r.PortMax) {
			continue
		}
		if r.Protocol != 0 && isICMP(family, proto) &&
			((r.ICMPType != nil && uint8(l4>>8) != *r.ICMPType) || (r.ICMPCode != nil && uint8(l4) != *r.ICMPCode)) {
			continue
		}
		if len(r.RemotePrefixes) > 0 && !containsAny(r.RemotePrefixes, addrOf(family, remote)) {
			continue
		}
		return true
	}
	return false
}

func containsAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// sgPacket is a packet as security groups see it (struct sg_pkt).
type sgPacket struct {
	family, proto, tcpFlags uint8
	frag, icmpErr           bool
	sport, dport, l4        uint16
	saddr, daddr            [16]byte
	innerProto              uint8
	innerS, innerD          [16]byte
	innerSport, innerDport  uint16
}

// sgIPHeader is ip_header: protocol, addresses and the transport offset
// of the IP header at off; -1 when truncated, 256 for a later fragment.
func sgIPHeader(f []byte, off int, family uint8) (proto uint8, s, d [16]byte, l4 int) {
	if family == 4 {
		if len(f) < off+20 || f[off]>>4 != 4 || f[off]&0xf < 5 {
			return 0, s, d, -1
		}
		copy(s[:], f[off+12:off+16])
		copy(d[:], f[off+16:off+20])
		if be16(f[off+6:])&0x1fff != 0 {
			return f[off+9], s, d, 256
		}
		return f[off+9], s, d, off + int(f[off]&0xf)*4
	}
	if len(f) < off+40 || f[off]>>4 != 6 {
		return 0, s, d, -1
	}
	copy(s[:], f[off+8:off+24])
	copy(d[:], f[off+24:off+40])
	next, at := ipv6Upper(f, off)
	if next < 0 || next == 256 {
		return 0, s, d, next
	}
	return uint8(next), s, d, at
}

func be16(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }

func icmpIsError(family, typ uint8) bool {
	if family == 4 {
		return typ == 3 || typ == 11 || typ == 12
	}
	return typ >= 1 && typ <= 4
}

func icmpIsEcho(family, typ uint8) bool {
	if family == 4 {
		return typ == 8 || typ == 0
	}
	return typ == 128 || typ == 129
}

// sgParse is sg_parse: ok is false for a packet that cannot be checked.
func sgParse(f []byte, l3off int, family uint8) (p sgPacket, ok bool) {
	p.family = family
	var l4 int
	p.proto, p.saddr, p.daddr, l4 = sgIPHeader(f, l3off, family)
	switch {
	case l4 < 0:
		return p, false
	case l4 == 256:
		p.frag = true
		return p, true
	case hasPorts(p.proto):
		if len(f) < l4+4 {
			return p, false
		}
		p.sport, p.dport = be16(f[l4:]), be16(f[l4+2:])
		p.l4 = p.dport
		if p.proto == 6 {
			if len(f) < l4+14 {
				return p, false
			}
			p.tcpFlags = f[l4+13]
		}
		return p, true
	case !isICMP(family, p.proto):
		return p, true
	}
	if len(f) < l4+8 {
		return p, false
	}
	p.l4 = be16(f[l4:])
	if icmpIsEcho(family, f[l4]) {
		p.sport = be16(f[l4+4:])
		p.dport = p.sport
		return p, true
	}
	if !icmpIsError(family, f[l4]) {
		return p, true
	}
	var in int
	p.innerProto, p.innerS, p.innerD, in = sgIPHeader(f, l4+8, family)
	switch {
	case in < 0 || in == 256:
		return p, true
	case hasPorts(p.innerProto):
		if len(f) < in+4 {
			return p, true
		}
		p.innerSport, p.innerDport = be16(f[in:]), be16(f[in+2:])
	case isICMP(family, p.innerProto):
		if len(f) < in+8 || !icmpIsEcho(family, f[in]) {
			return p, true
		}
		p.innerSport = be16(f[in+4:])
		p.innerDport = p.innerSport
	}
	p.icmpErr = true
	return p, true
}

// sgAlways is what a port lets through whatever its rules.
func sgAlways(p sgPacket, dir state.Direction, port *modelPort) bool {
	if p.frag {
		return false
	}
	if p.proto == 17 {
		s, d := p.sport, p.dport
		if dir == sgEgress {
			return (s == 68 && d == 67) || (s == 546 && d == 547)
		}
		return (s == 67 && d == 68) || (s == 547 && d == 546)
	}
	if p.family != 6 || p.proto != 58 {
		return false
	}
	typ := uint8(p.l4 >> 8)
	if dir == sgEgress {
		return typ != 134
	}
	return typ == 130 || typ == 135 || typ == 136 || (typ == 134 && port.ipv6)
}

func flowKeyOf(ifindex uint32, dir state.Direction, family, proto uint8, s, d [16]byte, sport, dport uint16) flowKey {
	if dir == sgEgress {
		return flowKey{ifindex: ifindex, proto: proto, family: family, local: s, remote: d, lport: sport, rport: dport}
	}
	return flowKey{ifindex: ifindex, proto: proto, family: family, local: d, remote: s, lport: dport, rport: sport}
}

// sgDecision is sg_check's answer: reason "" passes; alt and flow as in
// portOutcome.
type sgDecision struct {
	reason, alt string
	flow        *flowUpdate
}

// sgCheck is sg_check for the packet at l3off of port (ifindex) in dir.
func (m *model) sgCheck(ifindex uint32, port *modelPort, f []byte, l3off int, ethertype uint16, dir state.Direction) sgDecision {
	family := uint8(6)
	if ethertype == 0x0800 {
		family = 4
	}
	p, ok := sgParse(f, l3off, family)
	if !ok {
		return sgDecision{reason: "DROP_MALFORMED"}
	}
	if sgAlways(p, dir, port) {
		return sgDecision{}
	}
	deny, back, remote := "DROP_SG_INGRESS", sgEgress, p.saddr
	if dir == sgEgress {
		deny, back, remote = "DROP_SG_EGRESS", sgIngress, p.daddr
	}
	g := m.groups
	allowed := g.allows(dir, family, remote, p.proto, p.l4)
	if g.stateless || p.frag {
		if !allowed {
			return sgDecision{reason: deny}
		}
		return sgDecision{}
	}
	k := flowKeyOf(ifindex, dir, family, p.proto, p.saddr, p.daddr, p.sport, p.dport)
	if allowed {
		// Established, or (re)opened: either way the flow is open now.
		return sgDecision{flow: &flowUpdate{open: &k}}
	}
	var maybe []flowKey // flows that may have expired
	if seen, ok := g.flows[k]; ok {
		if time.Since(seen) < flowCertain {
			return sgDecision{flow: &flowUpdate{open: &k}}
		}
		maybe = append(maybe, k)
	}
	if p.icmpErr {
		ik := flowKeyOf(ifindex, back, family, p.innerProto, p.innerS, p.innerD, p.innerSport, p.innerDport)
		if seen, ok := g.flows[ik]; ok {
			if time.Since(seen) < flowCertain {
				return sgDecision{} // related; k, if there, may or may not be refreshed
			}
			maybe = append(maybe, ik)
		}
	}
	if len(maybe) == 0 {
		return sgDecision{reason: deny}
	}
	return sgDecision{alt: deny, flow: &flowUpdate{gone: maybe}}
}

// deliverVerdict is what the deliver program (TC egress of a tap: every
// frame on its way into the VM) must do with f for the port on ifindex.
func (m *model) deliverVerdict(ifindex uint32, f []byte) portOutcome {
	p := m.ports[ifindex]
	switch {
	case p == nil:
		return portOutcome{reason: "DROP_PORT_UNKNOWN"}
	case p.disabled:
		return portOutcome{reason: "DROP_PORT_DISABLED"}
	case !p.sg:
		return portOutcome{reason: "PASS_NO_SG"}
	}
	proto, off, _, _, parsed := l3Of(f)
	if !parsed {
		return portOutcome{reason: "DROP_MALFORMED"}
	}
	if proto != 0x0800 && proto != 0x86dd {
		return portOutcome{reason: "PASS_NON_IP"}
	}
	d := m.sgCheck(ifindex, p, f, off, proto, sgIngress)
	if d.reason != "" {
		return portOutcome{reason: d.reason}
	}
	return portOutcome{reason: "PASS_SG_ALLOWED", alt: d.alt, flow: d.flow}
}

// The hosts vmA talks to in flow frames, behind vmR's MAC.
var (
	flowRemotes4 = []netip.Addr{remote, remote, addr("10.8.0.1"), vmR.ip}
	flowRemotes6 = []netip.Addr{remote6, addr("2001:db8:8::1")}
	flowPorts    = []uint16{53, 5000, 5050, 5101, 22, 80, 40000, 40001, 68, 67}
)

// flowFrame is a packet of one of a few flows between vmA and remote
// hosts: out of vmA (egress) or into it, TCP, UDP, ICMP echo, an ICMP
// error about another flow frame, or another protocol; then mutated.
func (g *frameGen) flowFrame(egress bool) []byte {
	v6 := g.chance(0.25)
	local, far := vmA.ip, flowRemotes4[g.pick(len(flowRemotes4))]
	if v6 {
		local, far = vmA6, flowRemotes6[g.pick(len(flowRemotes6))]
	}
	src, dst, srcMAC, dstMAC := local, far, vmA.mac, vmR.mac
	if !egress {
		src, dst, srcMAC, dstMAC = far, local, vmR.mac, vmA.mac
	}
	p1, p2 := flowPorts[g.pick(len(flowPorts))], flowPorts[g.pick(len(flowPorts))]
	var f []byte
	switch g.pick(6) {
	case 0, 1:
		if v6 {
			f = frames.UDP6(srcMAC, dstMAC, src, dst, p1, p2)
		} else {
			f = frames.UDP4(srcMAC, dstMAC, src, dst, p1, p2)
		}
	case 2:
		f = frames.Segment(srcMAC, dstMAC, src, dst, p1, p2, []int{frames.SYN, frames.ACK, frames.SYN | frames.ACK, frames.RST}[g.pick(4)], g.pick(20))
	case 3:
		f = frames.Echo(srcMAC, dstMAC, src, dst, uint16(g.pick(3)), g.chance(0.5))
	case 4:
		if v6 {
			f = frames.ICMPv6(srcMAC, dstMAC, src, dst, uint8(g.port16(1, 129, 135)), 0, make([]byte, 40))
			break
		}
		// An error about a packet going the other way, from the far host
		// or a router on the way.
		quoted := g.flowFrame(!egress)
		if len(quoted) < 14+28 || quoted[12] != 0x08 || quoted[13] != 0x00 {
			quoted = frames.UDP4(dstMAC, srcMAC, dst, src, p2, p1)
		}
		f = frames.Unreachable(srcMAC, dstMAC, g.addr4(src, addr("10.9.0.1")), dst, quoted)
	default:
		proto := []uint8{47, 132}[g.pick(2)]
		if v6 {
			f = frames.Build(frames.Ether(srcMAC, dstMAC, 0x86dd), frames.IPv6(src, dst, layers.IPProtocol(proto)), frames.Payload(8+g.pick(20)))
		} else {
			f = frames.Build(frames.Ether(srcMAC, dstMAC, 0x0800), frames.IPv4(src, dst, layers.IPProtocol(proto)), frames.Payload(8+g.pick(20)))
		}
	}
	return g.mutate(f)
}

// vxlanFlowFrame is an ingress flow frame as vmR's VTEP sends it.
func (g *frameGen) vxlanFlowFrame() []byte {
	inner := g.flowFrame(false)
	if len(inner) < 14 {
		inner = frames.UDP4(vmR.mac, vmA.mac, remote, vmA.ip, 53, 5000)
	}
	return frames.FromVTEP(vtepAMAC, uplinkMAC, vtepA, localIP, vniA, inner).Bytes()
}
