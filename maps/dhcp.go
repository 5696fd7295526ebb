package maps

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
)

// The BOOTREPLY layout the port program relies on (bpf/include/abi.h,
// dhcp.h): option 53 first (its value at DHCPOptMsgType), 54 next, then
// 51, 58 and 59 (DHCPOptLeaseLen bytes at DHCPOptLease, left out of an
// answer to DHCPINFORM), then the rest.
const (
	bootpChaddr     = 28
	bootpMagic      = 236
	dhcpOptions     = 240
	DHCPOptMsgType  = 242
	DHCPOptLease    = 249
	DHCPOptLeaseLen = 18
	dhcpMagic       = 0x63825363
	dhcpOffer       = 2
)

// DHCP option codes vxdp sends.
const (
	optSubnetMask = 1
	optRouter     = 3
	optDNS        = 6
	optHostName   = 12
	optDomain     = 15
	optMTU        = 26
	optBroadcast  = 28
	optLease      = 51
	optMsgType    = 53
	optServerID   = 54
	optT1         = 58
	optT2         = 59
	optEnd        = 255
)

// DHCPAnswer is what DHCP at the port tells one VM.
type DHCPAnswer struct {
	ClientMAC net.HardwareAddr // the port's MAC: the only client answered
	ServerMAC net.HardwareAddr // the answers' Ethernet source (the tap's MAC)
	Address   netip.Prefix     // the port's fixed IPv4 address in its subnet
	Server    netip.Addr       // server identifier and the answers' source
	Gateway   netip.Addr       // zero: no router option
	DNS       []netip.Addr
	Lease     uint32 // seconds; 0xffffffff infinite
	HostName  string
	Domain    string
	MTU       int
}

// NewDHCPLease builds the dhcp map value for a: the DHCPOFFER the port
// program turns into every answer. It fails when the options do not fit
// the fixed reply (a very long domain or many DNS servers).
func NewDHCPLease(a DHCPAnswer) (DHCPLease, error) {
	var v DHCPLease
	if !a.Address.Addr().Is4() || !a.Server.Is4() || len(a.ClientMAC) != 6 || len(a.ServerMAC) != 6 {
		return v, fmt.Errorf("dhcp: address %s, server %s, MACs %s/%s: want IPv4 and Ethernet", a.Address, a.Server, a.ClientMAC, a.ServerMAC)
	}
	v.Yiaddr = BE32(a.Address.Addr())
	v.Server = BE32(a.Server)
	copy(v.ServerMac[:], a.ServerMAC)
	r := v.Reply[:]
	r[0], r[1], r[2] = 2, 1, 6 // BOOTREPLY, Ethernet, 6-byte addresses
	ip := a.Address.Addr().As4()
	copy(r[16:20], ip[:])
	copy(r[bootpChaddr:], a.ClientMAC)
	binary.BigEndian.PutUint32(r[bootpMagic:], dhcpMagic)

	opts := []byte{optMsgType, 1, dhcpOffer}
	addr := func(code byte, as ...netip.Addr) {
		opts = append(opts, code, byte(4*len(as)))
		for _, a := range as {
			b := a.As4()
			opts = append(opts, b[:]...)
		}
	}
	u32 := func(code byte, n uint32) { opts = binary.BigEndian.AppendUint32(append(opts, code, 4), n) }
	str := func(code byte, s string) {
		if s != "" {
			opts = append(append(opts, code, byte(len(s))), s...)
		}
	}
	addr(optServerID, a.Server)
	t1, t2 := a.Lease, a.Lease
	if a.Lease != 0xffffffff {
		t1, t2 = a.Lease/2, uint32(uint64(a.Lease)*7/8) // RFC 2131 4.4.5
	}
	u32(optLease, a.Lease)
	u32(optT1, t1)
	u32(optT2, t2)
	if len(opts) != DHCPOptLease+DHCPOptLeaseLen-dhcpOptions {
		panic("dhcp: option layout") // the program's offsets
	}
	mask := net.CIDRMask(a.Address.Bits(), 32)
	addr(optSubnetMask, netip.AddrFrom4([4]byte(mask)))
	addr(optBroadcast, lastAddr(a.Address.Masked()))
	if a.Gateway.IsValid() {
		addr(optRouter, a.Gateway)
	}
	var dns []netip.Addr
	for _, d := range a.DNS {
		if d.Is4() {
			dns = append(dns, d)
		}
	}
	if len(dns) > 0 {
		addr(optDNS, dns...)
	}
	if len(a.HostName) > 63 || len(a.Domain) > 253 {
		return v, fmt.Errorf("dhcp: host name %q or domain %q too long", a.HostName, a.Domain)
	}
	str(optHostName, a.HostName)
	str(optDomain, a.Domain)
	if a.MTU >= 68 {
		opts = binary.BigEndian.AppendUint16(append(opts, optMTU, 2), uint16(a.MTU))
	}
	opts = append(opts, optEnd)
	if dhcpOptions+len(opts) > len(r) {
		return v, fmt.Errorf("dhcp: %d bytes of options for %s do not fit the %d-byte reply (fewer DNS servers or a shorter domain)",
			len(opts), a.Address.Addr(), len(r)-dhcpOptions)
	}
	copy(r[dhcpOptions:], opts)
	return v, nil
}

// lastAddr is the last address of p (its broadcast address for IPv4).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	n := binary.BigEndian.Uint32(b[:]) | (1<<(32-p.Bits()) - 1)
	binary.BigEndian.PutUint32(b[:], n)
	return netip.AddrFrom4(b)
}

// DHCPOptions returns the options of a lease's reply by code (first of
// each), for dumps and tests.
func DHCPOptions(v DHCPLease) map[byte][]byte {
	out := map[byte][]byte{}
	r := v.Reply[dhcpOptions:]
	for i := 0; i < len(r); {
		code := r[i]
		if code == optEnd {
			break
		}
		if code == 0 {
			i++
			continue
		}
		if i+2 > len(r) || i+2+int(r[i+1]) > len(r) {
			break
		}
		if _, dup := out[code]; !dup {
			out[code] = r[i+2 : i+2+int(r[i+1])]
		}
		i += 2 + int(r[i+1])
	}
	return out
}
