package bpf_test

// Interoperability with the kernel vxlan device, the other end vxdp must
// speak to (a kernel-only peer, or a node with the BPF path off).

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/frames"
	"github.com/vxdp/vxdp/maps"
)

// kernelVTEP is a Linux VTEP at vtepA, like a node without vxdp: vxlan-100
// (no learning, UDP checksum off) over one end of a veth pair, with a
// static l2pop-style FDB entry sending vmB's MAC to localIP. The other end
// of the veth stands for our uplink.
type kernelVTEP struct {
	veth, peer, vxlan netlink.Link
}

func newKernelVTEP(t *testing.T, h *netlink.Handle) *kernelVTEP {
	t.Helper()
	k := &kernelVTEP{}
	add := func(l netlink.Link) netlink.Link {
		t.Helper()
		if err := h.LinkAdd(l); err != nil {
			t.Fatalf("add link %s: %v", l.Attrs().Name, err)
		}
		t.Cleanup(func() { _ = h.LinkDel(l) })
		got, err := h.LinkByName(l.Attrs().Name)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	k.veth = add(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vtep0"}, PeerName: "uplink0"})
	var err error
	k.peer, err = h.LinkByName("uplink0")
	must("veth peer", err)
	must("vtep address", h.AddrAdd(k.veth, &netlink.Addr{IPNet: &net.IPNet{IP: vtepA.AsSlice(), Mask: net.CIDRMask(24, 32)}}))
	k.vxlan = add(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vxlan-100"}, VxlanId: vniA, Port: vxlanPort,
		SrcAddr: vtepA.AsSlice(), VtepDevIndex: k.veth.Attrs().Index, Learning: false, UDPCSum: false})
	for _, l := range []netlink.Link{k.veth, k.peer, k.vxlan} {
		must("link up", h.LinkSetUp(l))
	}
	must("static FDB entry", h.NeighAppend(&netlink.Neigh{LinkIndex: k.vxlan.Attrs().Index, Family: unix.AF_BRIDGE,
		Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT, HardwareAddr: vmB.mac, IP: localIP.AsSlice()}))
	must("permanent ARP entry", h.NeighAdd(&netlink.Neigh{LinkIndex: k.veth.Attrs().Index, Family: unix.AF_INET,
		State: netlink.NUD_PERMANENT, HardwareAddr: uplinkMAC, IP: localIP.AsSlice()}))
	return k
}

// packetSocket is an AF_PACKET socket bound to link, seeing every protocol.
func packetSocket(t *testing.T, link netlink.Link) int {
	t.Helper()
	all := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, all)
	if err != nil {
		t.Fatalf("packet socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(all), Ifindex: link.Attrs().Index}); err != nil {
		t.Fatalf("bind packet socket to %s: %v", link.Attrs().Name, err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200_000}); err != nil {
		t.Fatal(err)
	}
	return fd
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func send(t *testing.T, fd int, frame []byte) {
	t.Helper()
	if _, err := unix.Write(fd, frame); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// receive returns the first incoming frame on fd that match accepts,
// skipping others (IPv6 autoconfiguration and the like); it fails after 2s.
func receive(t *testing.T, fd int, match func(gopacket.Packet) bool) []byte {
	t.Helper()
	buf := make([]byte, 65536)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if match(gopacket.NewPacket(buf[:n], layers.LayerTypeEthernet, gopacket.Default)) {
			return bytes.Clone(buf[:n])
		}
	}
	t.Fatal("no matching frame within 2s")
	return nil
}

func isVXLAN(p gopacket.Packet) bool {
	udp, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	return ok && udp.DstPort == vxlanPort
}

func fromMAC(m net.HardwareAddr) func(gopacket.Packet) bool {
	return func(p gopacket.Packet) bool {
		eth, ok := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		return ok && bytes.Equal(eth.SrcMAC, m)
	}
}

// TestUplinkDecapsKernelVXLAN feeds what the kernel vxlan device sends to
// the uplink program: it must be redirected as exactly the frame sent.
func TestUplinkDecapsKernelVXLAN(t *testing.T) {
	ns := inNetns(t)
	k := newKernelVTEP(t, netlinkAt(t, ns))
	capture := packetSocket(t, k.peer)
	sent := toB()
	send(t, packetSocket(t, k.vxlan), sent)
	wire := receive(t, capture, isVXLAN)

	w := newWorld(t)
	// netlink cannot create the device with noudpcsum (the kernel then
	// checksums), and the kernel verifies a checksum before decapsulating,
	// so the uplink program leaves such frames to it.
	testCase{in: wire, verdict: xdpPass, reason: "PASS_UDP_CSUM"}.check(t, w, progUplink)
	// As a noudpcsum device (the seed's, and vxdp's) sends it.
	wire = frames.Edited(wire, frames.Put16(frames.OffUDP+6, 0))
	testCase{in: wire, verdict: xdpRedirect, reason: "REDIRECT_LOCAL", want: sent}.check(t, w, progUplink)

	// TCP, the same way, is left to the kernel's GRO.
	send(t, packetSocket(t, k.vxlan), frames.TCP4(vmR.mac, vmB.mac, vmR.ip, vmB.ip, 40000, 64))
	wire = frames.Edited(receive(t, capture, isVXLAN), frames.Put16(frames.OffUDP+6, 0))
	testCase{in: wire, verdict: xdpPass, reason: "PASS_TCP_GRO"}.check(t, w, progUplink)
}

// TestKernelDecapsPortEncap sends the port program's encapsulations to the
// kernel vxlan device, which must deliver exactly the frames the VM sent.
func TestKernelDecapsPortEncap(t *testing.T) {
	ns := inNetns(t)
	k := newKernelVTEP(t, netlinkAt(t, ns))
	capture := packetSocket(t, k.vxlan)
	toKernel := packetSocket(t, k.peer)
	w := newWorld(t)
	for _, sent := range [][]byte{fromA(vmR), frames.UDP6(vmA.mac, vmR.mac, vmALL, addr("fe80::1"), 5000, 5001)} {
		wire := testCase{in: sent, verdict: tcRedirect, reason: "REDIRECT_REMOTE", wantFrom: encapsulatedTo(vmR, seedIPID, sent)}.check(t, w, progPort)
		w.seedIPID(t, seedIPID)
		// What bpf_redirect_neigh does on the way out: the next hop's MAC.
		copy(wire[0:6], k.veth.Attrs().HardwareAddr)
		send(t, toKernel, wire)
		if d := frames.Diff(receive(t, capture, fromMAC(vmA.mac)), sent); d != "" {
			t.Error(d)
		}
	}
}

// TestRoundTrip feeds the port program's encapsulation on one host to the
// uplink program of the host at the VTEP it was sent to.
func TestRoundTrip(t *testing.T) {
	inNetns(t)
	sender, receiver := newWorld(t), newWorld(t)
	// The receiver is vtepA, hosting vmR on tap 6; localIP is its peer.
	update(t, receiver, maps.Config, uint32(0), func(c *maps.ConfigValue) { c.LocalIp = maps.BE32(vtepA) })
	receiver.put(t, maps.VTEPs, maps.NewVNIAddr(vniA, localIP), uint32(0))
	receiver.put(t, maps.Ports, uint32(6), maps.PortInfo{Vni: vniA, Mtu: netMTU, Mac: mac6(vmR.mac), Flags: maps.PortBridged})
	receiver.put(t, maps.FDB, maps.NewFDBKey(vniA, mac6(vmR.mac)), maps.FDBEntry{Ifindex: 6, Kind: maps.FDBLocal})
	receiver.put(t, maps.TxPorts, uint32(6), uint32(loIfindex))
	// vmA is the sender's: behind a VTEP for the receiver.
	receiver.del(t, maps.FDB, maps.NewFDBKey(vniA, mac6(vmA.mac)))

	// UDP: the receiver would leave TCP to the kernel's GRO.
	for _, sent := range [][]byte{
		frames.UDP4(vmA.mac, vmR.mac, vmA.ip, vmR.ip, 1, 2),
		frames.UDP6(vmA.mac, vmR.mac, vmALL, addr("fe80::1"), 5000, 5001),
		frames.Build(frames.Ether(vmA.mac, vmR.mac, layers.EthernetTypeIPv4), frames.IPv4(vmA.ip, vmR.ip, layers.IPProtocolUDP),
			&layers.UDP{SrcPort: 1, DstPort: 2}, frames.Payload(netMTU-28)),
	} {
		wire := testCase{in: sent, verdict: tcRedirect, reason: "REDIRECT_REMOTE", wantFrom: encapsulatedTo(vmR, seedIPID, sent)}.check(t, sender, progPort)
		sender.seedIPID(t, seedIPID)
		testCase{in: wire, verdict: xdpRedirect, reason: "REDIRECT_LOCAL", want: sent}.check(t, receiver, progUplink)
	}
}
