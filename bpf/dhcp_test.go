package bpf_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vxdp/vxdp/frames"
	"github.com/vxdp/vxdp/maps"
)

// vmA's subnet as DHCP at the port serves it.
var (
	dhcpServer  = addr("172.16.100.1")  // the gateway: the server identifier
	dhcpOther   = addr("172.16.100.10") // another server (Neutron's DHCP port)
	dhcpDNS     = []netip.Addr{addr("172.16.100.2"), addr("9.9.9.9")}
	dhcpTapMAC  = mac("fe:16:3e:00:00:0a")
	broadcast4  = addr("255.255.255.255")
	unspecified = netip.IPv4Unspecified()
)

func dhcpAnswer() maps.DHCPAnswer {
	return maps.DHCPAnswer{ClientMAC: vmA.mac, ServerMAC: dhcpTapMAC, Address: netip.PrefixFrom(vmA.ip, 24),
		Server: dhcpServer, Gateway: dhcpServer, DNS: dhcpDNS, Lease: 86400, HostName: "host-172-16-100-10",
		Domain: "openstacklocal", MTU: netMTU}
}

// withDHCP gives vmA a DHCP entry: its subnet has DHCP on.
func withDHCP(t *testing.T, w *world) {
	v, err := maps.NewDHCPLease(dhcpAnswer())
	if err != nil {
		t.Fatal(err)
	}
	w.put(t, maps.DHCP, vmA.ifindex, v)
}

func opt(typ layers.DHCPOpt, data ...byte) layers.DHCPOption { return layers.NewDHCPOption(typ, data) }

func ip4(a netip.Addr) []byte { b := a.As4(); return b[:] }

// dhcpReply is what a DHCP answer must be, by field.
type dhcpReply struct {
	typ       layers.DHCPMsgType
	ethDst    net.HardwareAddr
	ipDst     netip.Addr
	yiaddr    netip.Addr
	ciaddr    netip.Addr
	flags     uint16
	withLease bool // options 51, 58, 59 (absent for INFORM, NAK)
	full      bool // the subnet's options (absent for NAK)
}

// TestDHCPAtPort: the port program answers vmA's DHCP client from the
// dhcp map as RFC 2131 says, on the tap it came from, and never answers
// what it cannot parse.
func TestDHCPAtPort(t *testing.T) {
	const xid = 0x5eed1234
	discover := func(flags uint16, opts ...layers.DHCPOption) []byte {
		m := frames.DHCPMessage(layers.DHCPMsgTypeDiscover, vmA.mac, xid, opts...)
		m.Flags = flags
		return frames.DHCPClient(vmA.mac, unspecified, broadcast4, m)
	}
	request := func(src, dst netip.Addr, ciaddr netip.Addr, opts ...layers.DHCPOption) []byte {
		m := frames.DHCPMessage(layers.DHCPMsgTypeRequest, vmA.mac, xid, opts...)
		if ciaddr.IsValid() {
			m.ClientIP = ciaddr.AsSlice()
		}
		return frames.DHCPClient(vmA.mac, src, dst, m)
	}
	typed := func(typ layers.DHCPMsgType, src, dst netip.Addr, edit func(*layers.DHCPv4), opts ...layers.DHCPOption) []byte {
		m := frames.DHCPMessage(typ, vmA.mac, xid, opts...)
		if edit != nil {
			edit(m)
		}
		return frames.DHCPClient(vmA.mac, src, dst, m)
	}
	serverID := opt(layers.DHCPOptServerID, ip4(dhcpServer)...)
	requested := func(a netip.Addr) layers.DHCPOption { return opt(layers.DHCPOptRequestIP, ip4(a)...) }
	offer := dhcpReply{typ: layers.DHCPMsgTypeOffer, ethDst: vmA.mac, ipDst: vmA.ip, yiaddr: vmA.ip, withLease: true, full: true}
	ack := offer
	ack.typ = layers.DHCPMsgTypeAck
	nak := dhcpReply{typ: layers.DHCPMsgTypeNak, ethDst: frames.Broadcast, ipDst: broadcast4}
	bcastOffer := offer
	bcastOffer.ethDst, bcastOffer.ipDst, bcastOffer.flags = frames.Broadcast, broadcast4, 0x8000
	renewAck := ack
	renewAck.ciaddr = vmA.ip
	informAck := dhcpReply{typ: layers.DHCPMsgTypeAck, ethDst: vmA.mac, ipDst: vmA.ip, ciaddr: vmA.ip, full: true}

	// Raw edits of a valid discover, for what gopacket cannot build.
	valid := discover(0)
	const bootp = frames.EthLen + 20 + 8
	edited := func(edits ...frames.Edit) []byte { return frames.Edited(valid, edits...) }
	optEnd := bytes.IndexByte(valid[bootp+240:], 255) + bootp + 240 // END of the valid discover
	tooManyPads := typed(layers.DHCPMsgTypeDiscover, unspecified, broadcast4, nil, func() []layers.DHCPOption {
		var o []layers.DHCPOption
		for range 100 {
			o = append(o, layers.DHCPOption{Type: layers.DHCPOptPad})
		}
		return o
	}()...)

	cases := []struct {
		name   string
		in     []byte
		noDHCP bool // vmA's subnet has DHCP off
		reason string
		want   *dhcpReply
	}{
		{name: "DISCOVER gets an OFFER of the port's address", in: discover(0), reason: "TX_DHCP_REPLY", want: &offer},
		{name: "DISCOVER with the broadcast bit gets a broadcast OFFER", in: discover(0x8000), reason: "TX_DHCP_REPLY", want: &bcastOffer},
		{name: "REQUEST (selecting) for the offered address gets an ACK", reason: "TX_DHCP_REPLY", want: &ack,
			in: request(unspecified, broadcast4, netip.Addr{}, serverID, requested(vmA.ip))},
		{name: "REQUEST (selecting) for another address gets a NAK", reason: "TX_DHCP_NAK", want: &nak,
			in: request(unspecified, broadcast4, netip.Addr{}, serverID, requested(unknownIP))},
		{name: "REQUEST (init-reboot) for the port's address gets an ACK", reason: "TX_DHCP_REPLY", want: &ack,
			in: request(unspecified, broadcast4, netip.Addr{}, requested(vmA.ip))},
		{name: "REQUEST (init-reboot) for another address gets a NAK", reason: "TX_DHCP_NAK", want: &nak,
			in: request(unspecified, broadcast4, netip.Addr{}, requested(unknownIP))},
		{name: "REQUEST (renewing) unicast to the server gets an ACK to the client", reason: "TX_DHCP_REPLY", want: &renewAck,
			in: request(vmA.ip, dhcpServer, vmA.ip)},
		{name: "INFORM gets an ACK without a lease", reason: "TX_DHCP_REPLY", want: &informAck,
			in: typed(layers.DHCPMsgTypeInform, vmA.ip, broadcast4, func(m *layers.DHCPv4) { m.ClientIP = vmA.ip.AsSlice() })},
		{name: "DECLINE is counted, not answered", reason: "DROP_DHCP_DECLINE",
			in: typed(layers.DHCPMsgTypeDecline, unspecified, broadcast4, nil, serverID, requested(vmA.ip))},
		{name: "RELEASE is not answered", reason: "DROP_DHCP_IGNORED",
			in: typed(layers.DHCPMsgTypeRelease, vmA.ip, dhcpServer, func(m *layers.DHCPv4) { m.ClientIP = vmA.ip.AsSlice() }, serverID)},
		{name: "a client hardware address not the port's gets no answer", reason: "DROP_DHCP_UNKNOWN_CLIENT",
			in: frames.DHCPClient(vmA.mac, unspecified, broadcast4, frames.DHCPMessage(layers.DHCPMsgTypeDiscover, strayMAC, xid))},
		{name: "relayed (giaddr set) is not served", reason: "DROP_DHCP_IGNORED",
			in: typed(layers.DHCPMsgTypeDiscover, unspecified, broadcast4, func(m *layers.DHCPv4) { m.RelayAgentIP = dhcpOther.AsSlice() })},

		// Not vxdp's: goes on like any frame.
		{name: "REQUEST choosing another server goes on to the network", reason: "PASS_BUM",
			in: request(unspecified, broadcast4, netip.Addr{}, opt(layers.DHCPOptServerID, ip4(dhcpOther)...), requested(vmA.ip))},
		{name: "unicast to another server goes on", reason: "PASS_FDB_MISS", in: request(vmA.ip, dhcpOther, vmA.ip)},
		{name: "a port whose subnet has DHCP off: DISCOVER goes to the network", noDHCP: true, reason: "PASS_BUM", in: discover(0)},
		{name: "port security first: DISCOVER from a foreign MAC drops", reason: "DROP_SPOOF_MAC",
			in: frames.DHCPClient(strayMAC, unspecified, broadcast4, frames.DHCPMessage(layers.DHCPMsgTypeDiscover, strayMAC, xid))},

		// Malformed: never answered.
		{name: "no message type (plain BOOTP)", reason: "DROP_DHCP_MALFORMED",
			in: edited(frames.Put8(bootp+240, 0), frames.Put8(bootp+241, 0), frames.Put8(bootp+242, 0))},
		{name: "message type of length 2", reason: "DROP_DHCP_MALFORMED", in: edited(frames.Put8(bootp+241, 2))},
		{name: "an option running past the end", reason: "DROP_DHCP_MALFORMED", in: edited(frames.Put8(optEnd, 12), frames.Truncate(optEnd+1+1))},
		{name: "no END option", reason: "DROP_DHCP_MALFORMED", in: fixLengths(edited(frames.Truncate(optEnd)))},
		{name: "more options than a request has (pads)", reason: "DROP_DHCP_MALFORMED", in: tooManyPads},
		{name: "bad magic cookie", reason: "DROP_DHCP_MALFORMED", in: edited(frames.Put8(bootp+236, 0x64))},
		{name: "a BOOTREPLY from the client", reason: "DROP_DHCP_MALFORMED", in: edited(frames.Put8(bootp, 2))},
		{name: "hardware length 16", reason: "DROP_DHCP_MALFORMED", in: edited(frames.Put8(bootp+2, 16))},
		{name: "UDP length disagrees with IP", reason: "DROP_DHCP_MALFORMED", in: edited(frames.Put16(frames.EthLen+20+4, 300))},
		{name: "truncated BOOTP header", reason: "DROP_DHCP_MALFORMED", in: fixLengths(edited(frames.Truncate(bootp + 200)))},
	}
	requireRoot(t)
	ns := newNetns(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			enterNetns(t, ns)
			w := newWorld(t)
			if !c.noDHCP {
				withDHCP(t, w)
			}
			verdict, out := w.run(t, w.progs[progPort], progPort, c.in, nil, c.reason)
			switch {
			case c.want != nil:
				if verdict != tcRedirect {
					t.Fatalf("verdict %d, want redirect (TX to the tap)", verdict)
				}
				checkDHCPReply(t, out, xid, *c.want)
			case c.reason == "PASS_BUM" || c.reason == "PASS_FDB_MISS":
				if verdict != tcOK || !bytes.Equal(out, c.in) {
					t.Errorf("verdict %d (want pass), frame changed: %v", verdict, !bytes.Equal(out, c.in))
				}
			default:
				if verdict != tcShot {
					t.Errorf("verdict %d, want drop", verdict)
				}
			}
		})
	}
}

// fixLengths makes the IP and UDP lengths (and the IP checksum) agree with
// a truncated frame, so only what the case is about is wrong.
func fixLengths(b []byte) []byte {
	ip := b[frames.EthLen:]
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	binary.BigEndian.PutUint16(ip[24:], uint16(len(ip)-20))
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], ^inetSum(ip[:20]))
	return b
}

// checkDHCPReply decodes an answer and compares it with want field by field.
func checkDHCPReply(t *testing.T, out []byte, xid uint32, want dhcpReply) {
	t.Helper()
	p := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	d, _ := p.Layer(layers.LayerTypeDHCPv4).(*layers.DHCPv4)
	if eth == nil || ip == nil || udp == nil || d == nil {
		t.Fatalf("answer does not decode as Ethernet/IPv4/UDP/DHCP: %v\n%s", p.ErrorLayer(), frames.Decode(out))
	}
	if inetSum(out[frames.EthLen:frames.EthLen+20]) != 0xffff {
		t.Error("IPv4 header checksum is wrong")
	}
	if int(ip.Length) != len(out)-frames.EthLen || int(udp.Length) != len(out)-frames.EthLen-20 {
		t.Errorf("lengths: ip %d udp %d for a %d-byte frame", ip.Length, udp.Length, len(out))
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"eth dst", eth.DstMAC.String(), want.ethDst.String()},
		{"eth src", eth.SrcMAC.String(), dhcpTapMAC.String()},
		{"ip src", ip.SrcIP.String(), dhcpServer.String()},
		{"ip dst", ip.DstIP.String(), want.ipDst.String()},
		{"ports", [2]layers.UDPPort{udp.SrcPort, udp.DstPort}, [2]layers.UDPPort{67, 68}},
		{"op", d.Operation, layers.DHCPOpReply},
		{"xid", d.Xid, xid},
		{"flags", d.Flags, want.flags},
		{"chaddr", d.ClientHWAddr.String(), vmA.mac.String()},
		{"yiaddr", d.YourClientIP.String(), addrOrZero(want.yiaddr)},
		{"ciaddr", d.ClientIP.String(), addrOrZero(want.ciaddr)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	opts := map[layers.DHCPOpt][]byte{}
	for _, o := range d.Options {
		if o.Type != layers.DHCPOptPad {
			opts[o.Type] = o.Data
		}
	}
	wantOpts := map[layers.DHCPOpt][]byte{
		layers.DHCPOptMessageType: {byte(want.typ)},
		layers.DHCPOptServerID:    ip4(dhcpServer),
	}
	if want.withLease {
		wantOpts[layers.DHCPOptLeaseTime] = be32(86400)
		wantOpts[layers.DHCPOptT1] = be32(43200)
		wantOpts[layers.DHCPOptT2] = be32(75600)
	}
	if want.full {
		wantOpts[layers.DHCPOptSubnetMask] = []byte{255, 255, 255, 0}
		wantOpts[layers.DHCPOptBroadcastAddr] = ip4(addr("172.16.100.255"))
		wantOpts[layers.DHCPOptRouter] = ip4(dhcpServer)
		wantOpts[layers.DHCPOptDNS] = append(ip4(dhcpDNS[0]), ip4(dhcpDNS[1])...)
		wantOpts[layers.DHCPOptHostname] = []byte("host-172-16-100-10")
		wantOpts[layers.DHCPOptDomainName] = []byte("openstacklocal")
		wantOpts[layers.DHCPOptInterfaceMTU] = []byte{netMTU >> 8, netMTU & 0xff}
	}
	for k, v := range wantOpts {
		if !bytes.Equal(opts[k], v) {
			t.Errorf("option %v = %v, want %v", k, opts[k], v)
		}
	}
	for k, v := range opts {
		if _, ok := wantOpts[k]; !ok && k != layers.DHCPOptEnd {
			t.Errorf("unexpected option %v = %v", k, v)
		}
	}
}

func addrOrZero(a netip.Addr) string {
	if !a.IsValid() {
		return "0.0.0.0"
	}
	return a.String()
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
