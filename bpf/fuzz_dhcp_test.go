package bpf_test

// DHCP at the port in the fuzz test: the model of vxdp_dhcp (only the
// port's own MAC, as Ethernet source and client hardware address, is
// answered; answers go back to the port), and client messages to mutate.

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/vxdp/vxdp/frames"
)

// modelLease is a port's DHCP entry as the model knows it.
type modelLease struct {
	ifindex uint32
	chaddr  net.HardwareAddr
	server  netip.Addr
	yiaddr  netip.Addr
}

// withDHCPModel is withDHCP in the model.
func withDHCPModel(t *testing.T, w *world, m *model) {
	withDHCP(t, w)
	m.dhcp = &modelLease{ifindex: vmA.ifindex, chaddr: vmA.mac, server: dhcpServer, yiaddr: vmA.ip}
}

const bootpOff = 14 + 20 + 8

// isDHCPClient: the port program hands the untagged IPv4 frame f to its
// DHCP server (UDP 68 -> 67, not a later fragment).
func isDHCPClient(f []byte) bool {
	if len(f) < 34 || f[23] != 17 || binary.BigEndian.Uint16(f[20:])&0x1fff != 0 {
		return false
	}
	u := 14 + int(f[14]&0xf)*4
	return len(f) >= u+8 && binary.BigEndian.Uint16(f[u:]) == 68 && binary.BigEndian.Uint16(f[u+2:]) == 67
}

// dhcpOptions reads options 53, 50 and 54 of the BOOTP message in f up to
// end; ok is false when one runs past end, has a wrong length, END is
// missing or there are more than 96 (pads count).
type dhcpRequest struct {
	typ                   byte
	requested, server     netip.Addr
	hasRequested, hasSrvr bool
}

func dhcpOptions(f []byte, end int) (dhcpRequest, bool) {
	var r dhcpRequest
	off := bootpOff + 240
	for range 96 {
		if off >= end {
			return r, false
		}
		code := f[off]
		if code == 255 {
			return r, true
		}
		if code == 0 {
			off++
			continue
		}
		if off+2 > end || off+2+int(f[off+1]) > end {
			return r, false
		}
		n, v := int(f[off+1]), f[off+2:]
		switch code {
		case 53:
			if n != 1 {
				return r, false
			}
			r.typ = v[0]
		case 50:
			if n != 4 {
				return r, false
			}
			r.requested, r.hasRequested = netip.AddrFrom4([4]byte(v[:4])), true
		case 54:
			if n != 4 {
				return r, false
			}
			r.server, r.hasSrvr = netip.AddrFrom4([4]byte(v[:4])), true
		}
		off += 2 + n
	}
	return r, false
}

// dhcpVerdict is vxdp_dhcp's reason for a DHCP client frame from ifindex,
// or "" when it is not vxdp's to answer and goes on as any frame.
func (m *model) dhcpVerdict(ifindex uint32, f []byte) string {
	l := m.dhcp
	if l == nil || l.ifindex != ifindex {
		return ""
	}
	if dst := netip.AddrFrom4([4]byte(f[30:34])); dst != broadcast4 && dst != l.server {
		return ""
	}
	if f[14]&0xf != 5 || binary.BigEndian.Uint16(f[20:])&0x3fff != 0 {
		return "DROP_DHCP_MALFORMED"
	}
	totLen, udpLen := int(binary.BigEndian.Uint16(f[16:])), int(binary.BigEndian.Uint16(f[38:]))
	if len(f) < bootpOff+240 || totLen+14 > len(f) || udpLen != totLen-20 || udpLen < 8+240 {
		return "DROP_DHCP_MALFORMED"
	}
	b := f[bootpOff:]
	if b[0] != 1 || b[1] != 1 || b[2] != 6 || binary.BigEndian.Uint32(b[236:]) != 0x63825363 {
		return "DROP_DHCP_MALFORMED"
	}
	if !bytes.Equal(b[28:34], l.chaddr) || !bytes.Equal(f[6:12], b[28:34]) {
		return "DROP_DHCP_UNKNOWN_CLIENT"
	}
	if binary.BigEndian.Uint32(b[24:]) != 0 {
		return "DROP_DHCP_IGNORED"
	}
	r, ok := dhcpOptions(f, 14+totLen)
	if !ok || r.typ == 0 {
		return "DROP_DHCP_MALFORMED"
	}
	if r.hasSrvr && r.server != l.server {
		return ""
	}
	ack := func(a netip.Addr) string {
		if a == l.yiaddr {
			return "TX_DHCP_REPLY"
		}
		return "TX_DHCP_NAK"
	}
	ciaddr := netip.AddrFrom4([4]byte(b[12:16]))
	switch r.typ {
	case 1, 8: // DISCOVER, INFORM
		return "TX_DHCP_REPLY"
	case 3: // REQUEST
		switch {
		case r.hasSrvr && !r.hasRequested:
			return "TX_DHCP_NAK"
		case r.hasRequested:
			return ack(r.requested)
		case !ciaddr.IsUnspecified():
			return ack(ciaddr)
		}
		return "DROP_DHCP_MALFORMED"
	case 4:
		return "DROP_DHCP_DECLINE"
	}
	return "DROP_DHCP_IGNORED"
}

// checkDHCPAnswer: an answer goes to the port's own MAC (or broadcast, on
// its own tap), names the port's MAC as client and offers nothing but the
// port's address.
func checkDHCPAnswer(out []byte, l *modelLease) string {
	if len(out) < bootpOff+240 {
		return "answer too short"
	}
	b := out[bootpOff:]
	switch {
	case !bytes.Equal(out[0:6], l.chaddr) && !bytes.Equal(out[0:6], frames.Broadcast):
		return "answer to " + net.HardwareAddr(out[0:6]).String()
	case !bytes.Equal(out[6:12], dhcpTapMAC):
		return "answer from " + net.HardwareAddr(out[6:12]).String()
	case !bytes.Equal(b[28:34], l.chaddr):
		return "answer for client " + net.HardwareAddr(b[28:34]).String()
	case binary.BigEndian.Uint32(b[16:]) != 0 && netip.AddrFrom4([4]byte(b[16:20])) != l.yiaddr:
		return "answer offers " + netip.AddrFrom4([4]byte(b[16:20])).String()
	case binary.BigEndian.Uint16(out[34:]) != 67 || binary.BigEndian.Uint16(out[36:]) != 68:
		return "answer not 67 -> 68"
	}
	return ""
}

// dhcpFrame is a DHCP client message from src: any type, the port's or
// another client hardware address, options naming this or another
// server, broadcast or unicast to either server.
func (g *frameGen) dhcpFrame(src net.HardwareAddr) []byte {
	var opts []layers.DHCPOption
	if g.chance(0.4) {
		opts = append(opts, opt(layers.DHCPOptServerID, ip4(g.addr4(dhcpServer, dhcpServer, dhcpOther))...))
	}
	if g.chance(0.5) {
		opts = append(opts, opt(layers.DHCPOptRequestIP, ip4(g.addr4(vmA.ip, vmA.ip, unknownIP))...))
	}
	typ := []layers.DHCPMsgType{1, 1, 3, 3, 3, 8, 4, 7, 2, 0}[g.pick(10)]
	msg := frames.DHCPMessage(typ, g.mac(vmA.mac, vmA.mac, vmA.mac, pairVIPMAC, strayMAC), uint32(g.r.Uint32()), opts...)
	if g.chance(0.3) {
		msg.ClientIP = g.addr4(vmA.ip, unknownIP).AsSlice()
	}
	if g.chance(0.05) {
		msg.RelayAgentIP = dhcpOther.AsSlice()
	}
	if g.chance(0.3) {
		msg.Flags = 0x8000
	}
	f := frames.DHCPClient(src, g.addr4(unspecified, unspecified, vmA.ip), g.addr4(broadcast4, broadcast4, dhcpServer, dhcpOther), msg)
	if g.chance(0.2) {
		// Unicast to a port's MAC: answered here or, for another
		// server, switched like any frame.
		copy(f[0:6], g.mac(vmB.mac, vmR.mac, vmC.mac))
	}
	return f
}
