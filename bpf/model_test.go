package bpf_test

// An independent model of the port, uplink and deliver programs'
// verdicts, written in Go from their specification (docs/reasons.md, the
// order of checks in each program's header comment), over a plain
// description of the topology rather than the BPF maps. The fuzz test
// runs the programs on random and mutated frames and holds them to it.
// Provider networks, the IPv6 underlay, DHCP at the port and security
// groups have their parts in fuzz_provider_test.go, fuzz_underlay6_test.go,
// fuzz_dhcp_test.go and fuzz_sg_test.go.

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
)

// modelPort is a local port as the model knows it.
type modelPort struct {
	vni      uint32
	mac      net.HardwareAddr
	mtu      int
	security bool
	bridged  bool
	disabled bool
	vxmit    bool // in tx_ports (XDP redirect target)
	sg       bool // security groups (PORT_F_SG)
	ipv6     bool // PORT_F_IPV6: router advertisements are let in
}

// modelAllow is one allowed (MAC, source) pair of a port; an invalid
// prefix allows the MAC alone.
type modelAllow struct {
	ifindex uint32
	mac     string
	prefix  netip.Prefix
}

type modelFDB struct {
	local    bool
	provider bool // a remote port of a provider network
	ifindex  uint32
	vtep     netip.Addr
}

// model is the topology of env_test.go, in plain Go.
type model struct {
	localIP     netip.Addr
	vxlanPort   uint16
	forward     bool
	uplink      bool // an uplink ifindex is configured
	transparent map[uint32]bool
	served      map[uint32]bool
	ports       map[uint32]*modelPort
	allow       []modelAllow
	fdb         map[string]modelFDB // vni/mac
	vteps       map[string]bool     // vni/ip
	arp         map[string]net.HardwareAddr
	// onUplink: the test run's ingress (lo) is the tunnel interface.
	onUplink  bool
	underlay6 bool
	localIP6  netip.Addr
	vteps6    map[string]bool     // vni/ip
	provider  map[uint16]uint32   // provider_in on lo: VLAN id -> segment
	nets      map[uint32]modelNet // provider networks
	dhcp      *modelLease         // vmA's DHCP entry
	groups    *modelGroups        // vmA's security groups
}

func fdbKeyOf(vni uint32, mac []byte) string {
	return string(binary.BigEndian.AppendUint32(nil, vni)) + string(mac)
}
func vniAddrOf(vni uint32, a netip.Addr) string {
	return string(binary.BigEndian.AppendUint32(nil, vni)) + a.String()
}

func newModel() *model {
	m := &model{
		localIP: localIP, vxlanPort: vxlanPort, forward: true, uplink: true, onUplink: true,
		transparent: map[uint32]bool{}, served: map[uint32]bool{vniA: true, vniB: true},
		ports: map[uint32]*modelPort{}, fdb: map[string]modelFDB{}, vteps: map[string]bool{}, arp: map[string]net.HardwareAddr{},
		vteps6: map[string]bool{}, provider: map[uint16]uint32{}, nets: map[uint32]modelNet{},
	}
	for _, p := range []vm{vmA, vmB, vmC, vmD} {
		m.ports[p.ifindex] = &modelPort{vni: p.vni, mac: p.mac, mtu: netMTU, security: true, bridged: true, vxmit: p.ifindex != vmD.ifindex}
		m.allowPair(p.ifindex, p.mac, netip.PrefixFrom(p.ip, 32))
		m.fdb[fdbKeyOf(p.vni, p.mac)] = modelFDB{local: true, ifindex: p.ifindex}
	}
	m.allowPair(vmA.ifindex, vmA.mac, netip.PrefixFrom(vmA6, 128))
	m.allowPair(vmA.ifindex, vmA.mac, netip.PrefixFrom(vmALL, 128))
	m.allowPair(vmA.ifindex, vmA.mac, pairCIDR)
	m.allowPair(vmA.ifindex, pairVIPMAC, netip.PrefixFrom(pairVIP, 32))
	for _, r := range []vm{vmR, vmS} {
		m.fdb[fdbKeyOf(r.vni, r.mac)] = modelFDB{vtep: r.vtep}
		m.arp[vniAddrOf(r.vni, r.ip)] = r.mac
		m.vteps[vniAddrOf(r.vni, r.vtep)] = true
	}
	m.fdb[fdbKeyOf(vniA, staleFDBMAC)] = modelFDB{local: true, ifindex: vmC.ifindex}
	return m
}

func (m *model) allowPair(ifindex uint32, mac net.HardwareAddr, p netip.Prefix) {
	m.allow = append(m.allow, modelAllow{ifindex: ifindex, mac: mac.String()}, modelAllow{ifindex: ifindex, mac: mac.String(), prefix: p})
}

// macAllowed: the port may send from mac at all.
func (m *model) macAllowed(ifindex uint32, mac []byte) bool {
	for _, a := range m.allow {
		if a.ifindex == ifindex && a.mac == net.HardwareAddr(mac).String() {
			return true
		}
	}
	return false
}

// addrAllowed: the port may send from (mac, addr).
func (m *model) addrAllowed(ifindex uint32, mac []byte, addr netip.Addr) bool {
	for _, a := range m.allow {
		if a.ifindex == ifindex && a.mac == net.HardwareAddr(mac).String() && a.prefix.IsValid() && a.prefix.Contains(addr) {
			return true
		}
	}
	return false
}

// spoofReason is the drop of a source that is not allowed.
func (m *model) spoofReason(ifindex uint32, mac []byte, addr netip.Addr) string {
	switch {
	case m.addrAllowed(ifindex, mac, addr):
		return ""
	case m.macAllowed(ifindex, mac):
		return "DROP_SPOOF_IP"
	default:
		return "DROP_SPOOF_MAC"
	}
}

func isMulticast(mac []byte) bool { return mac[0]&1 != 0 }

func isLinkLocalGroup(mac []byte) bool {
	return bytes.Equal(mac[:5], []byte{0x01, 0x80, 0xc2, 0, 0}) && mac[5]&0xf0 == 0
}

func isVLAN(ethertype uint16) bool { return ethertype == 0x8100 || ethertype == 0x88a8 }

// l3Of finds the network header behind up to two VLAN tags: ethertype,
// offset, tags, whether all tags have VLAN id 0, and whether it was found.
func l3Of(f []byte) (proto uint16, off, tags int, vidZero, ok bool) {
	proto, off, vidZero = binary.BigEndian.Uint16(f[12:]), 14, true
	for tags < 2 {
		if !isVLAN(proto) {
			return proto, off, tags, vidZero, true
		}
		if len(f) < off+4 {
			return proto, off, tags, vidZero, false
		}
		if binary.BigEndian.Uint16(f[off:])&0x0fff != 0 {
			vidZero = false
		}
		proto = binary.BigEndian.Uint16(f[off+2:])
		off += 4
		tags++
	}
	return proto, off, tags, vidZero, !isVLAN(proto)
}

// ipv6Upper walks IPv6 extension headers as the programs do: returns the
// upper-layer protocol and its offset, 256 for a later fragment, -1 for a
// truncated packet or too many headers.
func ipv6Upper(f []byte, off int) (int, int) {
	if len(f) < off+40 {
		return -1, 0
	}
	next := int(f[off+6])
	at := off + 40
	for i := 0; i < 4; i++ {
		if at > 512 {
			return -1, 0
		}
		if next == 44 {
			if len(f) < at+8 {
				return -1, 0
			}
			if binary.BigEndian.Uint16(f[at+2:])&0xfff8 != 0 {
				return 256, 0
			}
			next = int(f[at])
			at += 8
			continue
		}
		if next != 0 && next != 43 && next != 60 {
			break
		}
		if len(f) < at+2 {
			return -1, 0
		}
		next, at = int(f[at]), at+(int(f[at+1])+1)*8
	}
	if next == 0 || next == 43 || next == 60 || next == 44 || at > 512 {
		return -1, 0
	}
	return next, at
}

// portSecurity is the drop reason of a frame from a secured port, or "".
func (m *model) portSecurity(ifindex uint32, p *modelPort, f []byte, proto uint16, off, tags int, vlanPresent bool) string {
	src := f[6:12]
	if tags > 0 || vlanPresent {
		if !m.transparent[p.vni] {
			return "DROP_VLAN"
		}
	}
	switch proto {
	case 0x0800:
		if len(f) < off+20 || f[off]>>4 != 4 || f[off]&0xf < 5 {
			return "DROP_MALFORMED"
		}
		ihl := int(f[off]&0xf) * 4
		udp := -1
		if f[off+9] == 17 && binary.BigEndian.Uint16(f[off+6:])&0x1fff == 0 {
			udp = off + ihl
			if len(f) < udp+8 {
				return "DROP_MALFORMED"
			}
			if binary.BigEndian.Uint16(f[udp:]) == 67 && binary.BigEndian.Uint16(f[udp+2:]) == 68 {
				return "DROP_DHCP_SERVER"
			}
		}
		saddr := netip.AddrFrom4([4]byte(f[off+12 : off+16]))
		if saddr.IsUnspecified() {
			if udp >= 0 && binary.BigEndian.Uint16(f[udp:]) == 68 && binary.BigEndian.Uint16(f[udp+2:]) == 67 {
				if m.macAllowed(ifindex, src) {
					return ""
				}
				return "DROP_SPOOF_MAC"
			}
			return "DROP_SPOOF_IP"
		}
		return m.spoofReason(ifindex, src, saddr)
	case 0x86dd:
		if len(f) < off+40 || f[off]>>4 != 6 {
			return "DROP_MALFORMED"
		}
		next, l4 := ipv6Upper(f, off)
		if next < 0 {
			return "DROP_MALFORMED"
		}
		icmpType := -1
		switch next {
		case 58:
			if len(f) < l4+8 {
				return "DROP_MALFORMED"
			}
			icmpType = int(f[l4])
			if icmpType == 134 {
				return "DROP_ROUTER_ADVERT"
			}
		case 17:
			if len(f) < l4+8 {
				return "DROP_MALFORMED"
			}
			if binary.BigEndian.Uint16(f[l4:]) == 547 && binary.BigEndian.Uint16(f[l4+2:]) == 546 {
				return "DROP_DHCP_SERVER"
			}
		}
		saddr := netip.AddrFrom16([16]byte(f[off+8 : off+24]))
		if saddr.IsUnspecified() {
			if icmpType != 135 && icmpType != 131 && icmpType != 143 {
				return "DROP_SPOOF_IP"
			}
			if !m.macAllowed(ifindex, src) {
				return "DROP_SPOOF_MAC"
			}
		} else if r := m.spoofReason(ifindex, src, saddr); r != "" {
			return r
		}
		if icmpType == 136 {
			if len(f) < l4+24 {
				return "DROP_MALFORMED"
			}
			if !m.addrAllowed(ifindex, src, netip.AddrFrom16([16]byte(f[l4+8:l4+24]))) {
				return "DROP_SPOOF_ND"
			}
		}
		return ""
	case 0x0806:
		if len(f) < off+28 || binary.BigEndian.Uint16(f[off:]) != 1 || binary.BigEndian.Uint16(f[off+2:]) != 0x0800 ||
			f[off+4] != 6 || f[off+5] != 4 {
			return "DROP_MALFORMED"
		}
		if !m.macAllowed(ifindex, src) {
			return "DROP_SPOOF_MAC"
		}
		if !bytes.Equal(f[off+8:off+14], src) {
			return "DROP_SPOOF_ARP"
		}
		spa := netip.AddrFrom4([4]byte(f[off+14 : off+18]))
		if spa.IsUnspecified() || m.addrAllowed(ifindex, src, spa) {
			return ""
		}
		return "DROP_SPOOF_ARP"
	default:
		if m.macAllowed(ifindex, src) {
			return ""
		}
		return "DROP_SPOOF_MAC"
	}
}

// portOutcome is the model's verdict on a frame a VM sends: the reason;
// alt, a reason it accepts instead when it cannot know (a tracked flow
// that may have expired); flow, what the security groups' state learns
// from the program's answer.
type portOutcome struct {
	reason string
	alt    string
	flow   *flowUpdate
}

// portVerdict is what the port program must do with frame f sent by the
// VM on ifindex (skb->protocol is the Ethernet type, no offloaded tag, no
// GSO).
func (m *model) portVerdict(ifindex uint32, f []byte) portOutcome {
	p := m.ports[ifindex]
	out := m.portDecide(ifindex, p, f)
	unbridged := func(r string) string {
		if p != nil && !p.bridged && strings.HasPrefix(r, "PASS_") {
			return "DROP_NOT_BRIDGED"
		}
		return r
	}
	out.reason, out.alt = unbridged(out.reason), unbridged(out.alt)
	return out
}

func (m *model) portDecide(ifindex uint32, p *modelPort, f []byte) portOutcome {
	if p == nil {
		return portOutcome{reason: "DROP_PORT_UNKNOWN"}
	}
	if p.disabled {
		return portOutcome{reason: "DROP_PORT_DISABLED"}
	}
	if isLinkLocalGroup(f[0:6]) {
		return portOutcome{reason: "DROP_LINK_LOCAL_DST"}
	}
	proto, off, tags, _, parsed := l3Of(f)
	if p.security {
		if !parsed {
			if tags == 2 {
				return portOutcome{reason: "DROP_VLAN"}
			}
			return portOutcome{reason: "DROP_MALFORMED"}
		}
		if r := m.portSecurity(ifindex, p, f, proto, off, tags, false); r != "" {
			return portOutcome{reason: r}
		}
	}
	if tags == 0 && proto == 0x0800 && isDHCPClient(f) {
		if r := m.dhcpVerdict(ifindex, f); r != "" {
			return portOutcome{reason: r}
		}
	}
	var out portOutcome
	if p.sg && (proto == 0x0800 || proto == 0x86dd) {
		d := m.sgCheck(ifindex, p, f, off, proto, sgEgress)
		if d.reason != "" {
			return portOutcome{reason: d.reason}
		}
		out.alt, out.flow = d.alt, d.flow
	}
	out.reason = m.portForward(ifindex, p, f, tags)
	return out
}

// portForward is where a frame that passed the port's checks goes.
func (m *model) portForward(ifindex uint32, p *modelPort, f []byte, tags int) string {
	if tags > 0 {
		return "PASS_VLAN"
	}
	if !m.forward {
		return "PASS_KERNEL_FORWARDING"
	}
	dst := f[0:6]
	if isMulticast(dst) {
		ethertype := binary.BigEndian.Uint16(f[12:])
		if ethertype == 0x0806 && len(f) >= 14+28 && binary.BigEndian.Uint16(f[14:]) == 1 && binary.BigEndian.Uint16(f[16:]) == 0x0800 &&
			f[18] == 6 && f[19] == 4 && binary.BigEndian.Uint16(f[20:]) == 1 && !bytes.Equal(f[28:32], f[38:42]) {
			if _, ok := m.arp[vniAddrOf(p.vni, netip.AddrFrom4([4]byte(f[38:42])))]; ok {
				return "TX_ARP_REPLY"
			}
		}
		return "PASS_BUM"
	}
	e, ok := m.fdb[fdbKeyOf(p.vni, dst)]
	if !ok {
		return "PASS_FDB_MISS"
	}
	if e.local {
		if e.ifindex == ifindex {
			return "PASS_HAIRPIN"
		}
		t := m.ports[e.ifindex]
		if t == nil || t.vni != p.vni || t.disabled {
			return "DROP_VNI_MISMATCH"
		}
		return "REDIRECT_LOCAL"
	}
	if e.provider {
		if len(f) > p.mtu+14 {
			return "PASS_TOO_BIG"
		}
		if n, ok := m.nets[p.vni]; !ok || n.phys == 0 {
			return "PASS_FDB_MISS"
		}
		return "REDIRECT_PROVIDER"
	}
	if m.underlay6 {
		if !m.served[p.vni] {
			return "PASS_FDB_MISS"
		}
		return "REDIRECT_REMOTE_KERNEL"
	}
	if !e.vtep.IsValid() {
		return "PASS_FDB_MISS"
	}
	ethertype := binary.BigEndian.Uint16(f[12:])
	if ethertype != 0x0800 && ethertype != 0x86dd {
		return "PASS_NOT_IP"
	}
	if len(f) > p.mtu+14 {
		return "PASS_TOO_BIG"
	}
	if !m.uplink {
		return "PASS_ENCAP_FAILED"
	}
	return "REDIRECT_REMOTE"
}

// uplinkVerdict is what the uplink program must do with frame f from the
// wire (arriving on lo): reason, the target tap of a redirect and the
// frame it delivers, the outer source and VNI of VXLAN it accepted or the
// provider segment a frame entered; alt and flow as in portOutcome.
type uplinkOutcome struct {
	reason string
	target uint32
	inner  []byte
	vtep   netip.Addr
	vni    uint32
	seg    uint32 // REDIRECT_FROM_PROVIDER: the segment the frame entered
	alt    string
	flow   *flowUpdate
}

func (m *model) uplinkVerdict(f []byte) uplinkOutcome {
	proto, off, tags, vidZero, parsed := l3Of(f)
	if out, ok := m.fromProvider(f, proto, tags); ok {
		return out
	}
	if !parsed || !vidZero {
		return uplinkOutcome{reason: "PASS_VLAN_TAGGED"}
	}
	if m.underlay6 {
		if proto != 0x86dd {
			return uplinkOutcome{reason: "PASS_NOT_IPV4"}
		}
		return m.uplink6(f, off)
	}
	if proto != 0x0800 {
		return uplinkOutcome{reason: "PASS_NOT_IPV4"}
	}
	if len(f) < off+20 || f[off]>>4 != 4 || f[off]&0xf < 5 {
		return uplinkOutcome{reason: "PASS_MALFORMED"}
	}
	ip := f[off:]
	ihl := int(ip[0]&0xf) * 4
	if ip[9] != 17 {
		return uplinkOutcome{reason: "PASS_NOT_UDP"}
	}
	frag := binary.BigEndian.Uint16(ip[6:])
	if frag&0x1fff != 0 {
		return uplinkOutcome{reason: "PASS_FRAGMENT"}
	}
	if len(ip) < ihl+8 {
		return uplinkOutcome{reason: "PASS_MALFORMED"}
	}
	udp := ip[ihl:]
	if binary.BigEndian.Uint16(udp[2:]) != m.vxlanPort {
		return uplinkOutcome{reason: "PASS_NOT_VXLAN"}
	}
	if !m.onUplink {
		return uplinkOutcome{reason: "DROP_NOT_UPLINK"}
	}
	if ihl != 20 {
		return uplinkOutcome{reason: "PASS_IP_OPTIONS"}
	}
	if inetSum(ip[:20]) != 0xffff {
		return uplinkOutcome{reason: "PASS_MALFORMED"}
	}
	fragment := frag&0x3fff != 0 // MF or an offset (the offset was handled)
	ipLen := int(binary.BigEndian.Uint16(ip[2:]))
	if len(udp) < 8+8+14 || off+ipLen != len(f) || (!fragment && int(binary.BigEndian.Uint16(udp[4:])) != ipLen-ihl) {
		return uplinkOutcome{reason: "DROP_VXLAN_TRUNCATED"}
	}
	out := m.acceptVXLAN(udp[8:16], netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20])), m.localIP, m.vteps)
	if out.reason != "" {
		return out
	}
	if fragment {
		out.reason = "PASS_FRAGMENT"
		return out
	}
	if m.isLocalPort(out.vni, udp[16+6:16+12]) {
		out.reason = "DROP_INNER_SRC_LOCAL"
		return out
	}
	if binary.BigEndian.Uint16(udp[6:]) != 0 {
		out.reason = "PASS_UDP_CSUM"
		return out
	}
	return m.decapsulated(out, f, off+ihl+16)
}

// acceptVXLAN is what the uplink program checks of a VXLAN header vx
// from src to dst: the flags, the source a VTEP registered for the VNI
// (in vteps), the destination local. The reason is "" when the frame
// goes on.
func (m *model) acceptVXLAN(vx []byte, src, dst, local netip.Addr, vteps map[string]bool) uplinkOutcome {
	if binary.BigEndian.Uint32(vx) != 0x08000000 || vx[7] != 0 {
		return uplinkOutcome{reason: "DROP_VXLAN_FLAGS"}
	}
	vni := binary.BigEndian.Uint32(vx[4:]) >> 8
	if !vteps[vniAddrOf(vni, src)] {
		if !m.served[vni] {
			return uplinkOutcome{reason: "PASS_VNI_UNKNOWN"}
		}
		return uplinkOutcome{reason: "DROP_VTEP_UNKNOWN"}
	}
	out := uplinkOutcome{vtep: src, vni: vni}
	if dst != local {
		out.reason = "DROP_NOT_LOCAL"
	}
	return out
}

// decapsulated: the checks of an accepted VXLAN frame whose inner
// Ethernet header is at innerOff, from the forwarding switch on.
func (m *model) decapsulated(out uplinkOutcome, f []byte, innerOff int) uplinkOutcome {
	inner := f[innerOff:]
	if !m.forward {
		out.reason = "PASS_KERNEL_FORWARDING"
		return out
	}
	if isMulticast(inner[0:6]) {
		out.reason = "PASS_INNER_BUM"
		return out
	}
	l := m.toLocalPort(out.vni, f, inner[0:6], binary.BigEndian.Uint16(inner[12:]), innerOff+14, "PASS_INNER_FDB_MISS")
	out.reason, out.alt, out.flow = l.reason, l.alt, l.flow
	if l.reason == "" {
		out.reason, out.target, out.inner = "REDIRECT_LOCAL", l.target, inner
	}
	return out
}

// localOutcome is to_local_port's answer: "" (redirected to target) or
// the reason it is not.
type localOutcome struct {
	reason string
	target uint32
	alt    string
	flow   *flowUpdate
}

// toLocalPort is what the uplink program checks of any frame of segment
// seg for a local port (decapsulated or from a provider network): the
// FDB, the target's segment, TCP left to GRO, its security groups, the
// devmap. proto and l3off describe the frame's network header.
func (m *model) toLocalPort(seg uint32, f, dst []byte, proto uint16, l3off int, miss string) localOutcome {
	e, ok := m.fdb[fdbKeyOf(seg, dst)]
	if !ok || !e.local {
		return localOutcome{reason: miss}
	}
	t := m.ports[e.ifindex]
	if t == nil || t.vni != seg || t.disabled {
		return localOutcome{reason: "DROP_VNI_MISMATCH"}
	}
	if l3IsTCP(f, proto, l3off) {
		return localOutcome{reason: "PASS_TCP_GRO"}
	}
	var out localOutcome
	if t.sg {
		if isVLAN(proto) {
			return localOutcome{reason: "PASS_INNER_TAGGED"}
		}
		if proto == 0x0800 || proto == 0x86dd {
			d := m.sgCheck(e.ifindex, t, f, l3off, proto, sgIngress)
			if d.reason != "" {
				return localOutcome{reason: d.reason}
			}
			out.alt, out.flow = d.alt, d.flow
		}
	}
	if !t.vxmit {
		out.reason = "PASS_NO_TXPORT"
		return out
	}
	out.target = e.ifindex
	return out
}

// l3IsTCP: TCP over IPv4 or IPv6 without extension headers, what GRO merges.
func l3IsTCP(f []byte, proto uint16, l3off int) bool {
	switch proto {
	case 0x0800:
		return len(f) >= l3off+20 && f[l3off+9] == 6
	case 0x86dd:
		return len(f) >= l3off+40 && f[l3off+6] == 6
	}
	return false
}

// inetSum is the ones' complement sum of b (0xffff for an intact header).
func inetSum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
