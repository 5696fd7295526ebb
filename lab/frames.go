package lab

import (
	"bytes"
	"encoding/binary"
	"net/netip"

	"github.com/vxdp/vxdp/state"
)

// UDPFrame builds an Ethernet/IPv4/UDP frame with valid checksums.
func UDPFrame(srcMAC, dstMAC state.MAC, src, dst netip.AddrPort, payload []byte) []byte {
	udpLen := 8 + len(payload)
	f := make([]byte, 14+20+udpLen)
	copy(f[0:6], dstMAC[:])
	copy(f[6:12], srcMAC[:])
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+udpLen))
	binary.BigEndian.PutUint16(ip[4:], 0x1234)
	ip[8] = 64
	ip[9] = 17
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:], inetChecksum(ip, 0))
	udp := f[34:]
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(udpLen))
	copy(udp[8:], payload)
	// Pseudo-header sum, then the UDP header and payload.
	var pseudo uint32
	for i := 0; i < 4; i += 2 {
		pseudo += uint32(binary.BigEndian.Uint16(s4[i:])) + uint32(binary.BigEndian.Uint16(d4[i:]))
	}
	pseudo += 17 + uint32(udpLen)
	cs := inetChecksum(udp, pseudo)
	if cs == 0 {
		cs = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], cs)
	return f
}

// VXLAN prepends a VXLAN header (I flag, vni) to an inner frame: the
// payload of a UDP datagram to port 8472.
func VXLAN(vni uint32, inner []byte) []byte {
	h := make([]byte, 8, 8+len(inner))
	h[0] = 0x08
	binary.BigEndian.PutUint32(h[4:], vni<<8)
	return append(h, inner...)
}

// SrcMAC is the source address of an Ethernet frame.
func (f Frame) SrcMAC() state.MAC {
	var m state.MAC
	if len(f.Data) >= 12 {
		copy(m[:], f.Data[6:12])
	}
	return m
}

// EtherType of the frame (0 if runt).
func (f Frame) EtherType() uint16 {
	if len(f.Data) < 14 {
		return 0
	}
	return binary.BigEndian.Uint16(f.Data[12:])
}

// Contains reports whether marker occurs anywhere in the frame.
func (f Frame) Contains(marker []byte) bool { return bytes.Contains(f.Data, marker) }

// ARPTarget returns the target protocol address of an ARP frame.
func (f Frame) ARPTarget() (netip.Addr, bool) {
	if f.EtherType() != 0x0806 || len(f.Data) < 42 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(f.Data[38:42])), true
}

// ARPRequest builds a broadcast ARP request "who has target, tell sender".
func ARPRequest(senderMAC state.MAC, sender, target netip.Addr) []byte {
	f := make([]byte, 42)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], senderMAC[:])
	binary.BigEndian.PutUint16(f[12:], 0x0806)
	a := f[14:]
	binary.BigEndian.PutUint16(a[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(a[2:], 0x0800) // IPv4
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:], 1) // request
	copy(a[8:14], senderMAC[:])
	s4, t4 := sender.As4(), target.As4()
	copy(a[14:18], s4[:])
	copy(a[24:28], t4[:])
	return f
}

// ARPOp returns the operation of an ARP frame (1 request, 2 reply).
func (f Frame) ARPOp() uint16 {
	if f.EtherType() != 0x0806 || len(f.Data) < 22 {
		return 0
	}
	return binary.BigEndian.Uint16(f.Data[20:])
}

// ARPSender returns the sender protocol address of an ARP frame.
func (f Frame) ARPSender() (netip.Addr, bool) {
	if f.EtherType() != 0x0806 || len(f.Data) < 32 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(f.Data[28:32])), true
}
