package bpf_test

// An independent model of the port and uplink programs' verdicts, written
// in Go from their specification (docs/reasons.md, the order of checks in
// each program's header comment), over a plain description of the
// topology rather than the BPF maps. The fuzz test runs both programs on
// random and mutated frames and holds them to it.

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
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
}

// modelAllow is one allowed (MAC, source) pair of a port; an invalid
// prefix allows the MAC alone.
type modelAllow struct {
	ifindex uint32
	mac     string
	prefix  netip.Prefix
}

type modelFDB struct {
	local   bool
	ifindex uint32
	vtep    netip.Addr
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
}

func fdbKeyOf(vni uint32, mac []byte) string {
	return string(binary.BigEndian.AppendUint32(nil, vni)) + string(mac)
}
func vniAddrOf(vni uint32, a netip.Addr) string {
	return string(binary.BigEndian.AppendUint32(nil, vni)) + a.String()
}

func newModel() *model {
	m := &model{
		localIP: localIP, vxlanPort: vxlanPort, forward: true, uplink: true,
		transparent: map[uint32]bool{}, served: map[uint32]bool{vniA: true, vniB: true},
		ports: map[uint32]*modelPort{}, fdb: map[string]modelFDB{}, vteps: map[string]bool{}, arp: map[string]net.HardwareAddr{},
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

// portVerdict is what the port program must do with frame f sent by the
// VM on ifindex (skb->protocol is the Ethernet type, no offloaded tag, no
// GSO). Reason and, for REDIRECT_LOCAL, the target tap.
func (m *model) portVerdict(ifindex uint32, f []byte) (reason string, target uint32) {
	p := m.ports[ifindex]
	r, target := m.portDecide(ifindex, p, f)
	if p != nil && !p.bridged && (len(r) > 5 && r[:5] == "PASS_") {
		return "DROP_NOT_BRIDGED", 0
	}
	return r, target
}

func (m *model) portDecide(ifindex uint32, p *modelPort, f []byte) (string, uint32) {
	if p == nil {
		return "DROP_PORT_UNKNOWN", 0
	}
	if p.disabled {
		return "DROP_PORT_DISABLED", 0
	}
	if isLinkLocalGroup(f[0:6]) {
		return "DROP_LINK_LOCAL_DST", 0
	}
	proto, off, tags, _, parsed := l3Of(f)
	if p.security {
		if !parsed {
			if tags == 2 {
				return "DROP_VLAN", 0
			}
			return "DROP_MALFORMED", 0
		}
		if r := m.portSecurity(ifindex, p, f, proto, off, tags, false); r != "" {
			return r, 0
		}
	}
	if tags > 0 {
		return "PASS_VLAN", 0
	}
	if !m.forward {
		return "PASS_KERNEL_FORWARDING", 0
	}
	dst := f[0:6]
	if isMulticast(dst) {
		ethertype := binary.BigEndian.Uint16(f[12:])
		if ethertype == 0x0806 && len(f) >= 14+28 && binary.BigEndian.Uint16(f[14:]) == 1 && binary.BigEndian.Uint16(f[16:]) == 0x0800 &&
			f[18] == 6 && f[19] == 4 && binary.BigEndian.Uint16(f[20:]) == 1 && !bytes.Equal(f[28:32], f[38:42]) {
			if _, ok := m.arp[vniAddrOf(p.vni, netip.AddrFrom4([4]byte(f[38:42])))]; ok {
				return "TX_ARP_REPLY", ifindex
			}
		}
		return "PASS_BUM", 0
	}
	e, ok := m.fdb[fdbKeyOf(p.vni, dst)]
	if !ok {
		return "PASS_FDB_MISS", 0
	}
	if e.local {
		if e.ifindex == ifindex {
			return "PASS_HAIRPIN", 0
		}
		t := m.ports[e.ifindex]
		if t == nil || t.vni != p.vni || t.disabled {
			return "DROP_VNI_MISMATCH", 0
		}
		return "REDIRECT_LOCAL", e.ifindex
	}
	if !e.vtep.IsValid() {
		return "PASS_FDB_MISS", 0
	}
	ethertype := binary.BigEndian.Uint16(f[12:])
	if ethertype != 0x0800 && ethertype != 0x86dd {
		return "PASS_NOT_IP", 0
	}
	if len(f) > p.mtu+14 {
		return "PASS_TOO_BIG", 0
	}
	if !m.uplink {
		return "PASS_ENCAP_FAILED", 0
	}
	return "REDIRECT_REMOTE", 0
}

// uplinkVerdict is what the uplink program must do with frame f from the
// wire: reason, the target tap of a REDIRECT_LOCAL and the frame it
// delivers, and the outer source and VNI of VXLAN it accepted.
type uplinkOutcome struct {
	reason string
	target uint32
	inner  []byte
	vtep   netip.Addr
	vni    uint32
}

func (m *model) uplinkVerdict(f []byte) uplinkOutcome {
	proto, off, _, vidZero, parsed := l3Of(f)
	if !parsed || !vidZero {
		return uplinkOutcome{reason: "PASS_VLAN_TAGGED"}
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
	vx := udp[8:16]
	if binary.BigEndian.Uint32(vx) != 0x08000000 || vx[7] != 0 {
		return uplinkOutcome{reason: "DROP_VXLAN_FLAGS"}
	}
	vni := binary.BigEndian.Uint32(vx[4:]) >> 8
	src := netip.AddrFrom4([4]byte(ip[12:16]))
	if !m.vteps[vniAddrOf(vni, src)] {
		if !m.served[vni] {
			return uplinkOutcome{reason: "PASS_VNI_UNKNOWN"}
		}
		return uplinkOutcome{reason: "DROP_VTEP_UNKNOWN"}
	}
	out := uplinkOutcome{vtep: src, vni: vni}
	if netip.AddrFrom4([4]byte(ip[16:20])) != m.localIP {
		out.reason = "DROP_NOT_LOCAL"
		return out
	}
	if fragment {
		out.reason = "PASS_FRAGMENT"
		return out
	}
	inner := udp[16:]
	if e, ok := m.fdb[fdbKeyOf(vni, inner[6:12])]; ok && e.local {
		out.reason = "DROP_INNER_SRC_LOCAL"
		return out
	}
	if binary.BigEndian.Uint16(udp[6:]) != 0 {
		out.reason = "PASS_UDP_CSUM"
		return out
	}
	if !m.forward {
		out.reason = "PASS_KERNEL_FORWARDING"
		return out
	}
	if isMulticast(inner[0:6]) {
		out.reason = "PASS_INNER_BUM"
		return out
	}
	e, ok := m.fdb[fdbKeyOf(vni, inner[0:6])]
	if !ok || !e.local {
		out.reason = "PASS_INNER_FDB_MISS"
		return out
	}
	t := m.ports[e.ifindex]
	if t == nil || t.vni != vni || t.disabled {
		out.reason = "DROP_VNI_MISMATCH"
		return out
	}
	if innerTCP(inner) {
		out.reason = "PASS_TCP_GRO"
		return out
	}
	if !t.vxmit {
		out.reason = "PASS_NO_TXPORT"
		return out
	}
	out.reason, out.target, out.inner = "REDIRECT_LOCAL", e.ifindex, inner
	return out
}

func innerTCP(inner []byte) bool {
	switch binary.BigEndian.Uint16(inner[12:]) {
	case 0x0800:
		return len(inner) >= 14+20 && inner[14+9] == 6
	case 0x86dd:
		return len(inner) >= 14+40 && inner[14+6] == 6
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
