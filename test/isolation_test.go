package test

// Tenant isolation against a hostile VM and a hostile underlay host, on
// hypervisors with a distribution's defaults (IPv6 on, rp_filter as set):
// the findings of the security review, with the review's own frames, and
// the rest of each class.

import (
	bin "encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"

	"github.com/vxdp/vxdp/frames"
	"github.com/vxdp/vxdp/lab"
	"github.com/vxdp/vxdp/state"
)

// The review's frames (Ethernet first). Their inner frame is a 15-byte
// Ethernet header + "X" from fa:16:3e:00:77:77, ethertype 0x88b5.
const (
	// vm2 -> 255.255.255.255:8472 from 0.0.0.0: VXLAN of VNI 200 for vm3.
	reviewCrossTenant = "fffffffffffffa163ecb982c0800450000330000000040117abb00000000ffffffff9c402118001f0000080000000000c800fa163e5a217cfa163e00777788b558"
	// 192.168.248.9 -> 192.168.248.255:8472: VXLAN of VNI 100 for vm2.
	reviewSubnetBroadcast = "ffffffffffff0200c0a8f8090800450000330000000040110860c0a8f809c0a8f8ff9c402118001f00000800000000006400fa163ecb982cfa163e00777788b558"
	// 192.168.248.9 -> 192.168.248.3 (node3) in a VLAN 0 tag; the
	// destination MAC (node3's eth2) is filled in by the test.
	reviewVLAN0 = "f62c7aadee170200c0a8f80981000000080045000033000000004011095cc0a8f809c0a8f8039c402118001f00000800000000006400fa163ecb982cfa163e00777788b558"
	// vm2: ARP in two VLAN 0 tags claiming 172.16.100.10 (the DHCP port).
	reviewTaggedARP = "fffffffffffffa163ecb982c810000008100000008060001080006040001fa163ecb982cac10640a000000000000ac10640c"
)

var (
	injectedSrc  = frames.MAC("fa:16:3e:00:77:77")
	injectedType = uint16(0x88b5)
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// injected counts the frames a capture saw that carry the review's inner
// frame (or marker), not sent by the captured host itself.
func injected(fs []lab.Frame, marker []byte) int {
	n := 0
	for _, f := range fs {
		if f.Outgoing {
			continue
		}
		if (f.SrcMAC() == state.MAC(injectedSrc) && f.EtherType() == injectedType) || (marker != nil && f.Contains(marker)) {
			n++
		}
	}
	return n
}

// watch captures on the NICs of the given VMs while send runs, and
// returns what each saw.
func watch(t *testing.T, l *lab.Lab, vms []lab.Port, send func()) map[string][]lab.Frame {
	t.Helper()
	caps := map[string]*lab.Capture{}
	for _, p := range vms {
		c, err := lab.StartCapture(l.PortNS(p), lab.VMDev)
		if err != nil {
			t.Fatal(err)
		}
		caps[p.Name] = c
	}
	send()
	time.Sleep(300 * time.Millisecond)
	out := map[string][]lab.Frame{}
	for name, c := range caps {
		fs, err := c.Stop()
		if err != nil {
			t.Fatal(err)
		}
		out[name] = fs
	}
	return out
}

func sendFrame(t *testing.T, ns, dev string, frame []byte) {
	t.Helper()
	if err := lab.SendFrame(ns, dev, frame); err != nil {
		t.Fatalf("send from %s/%s: %v", ns, dev, err)
	}
}

// setRPFilter sets reverse path filtering on every interface of the nodes.
func setRPFilter(t *testing.T, l *lab.Lab, mode int) {
	t.Helper()
	for _, n := range lab.Nodes {
		if err := lab.Do(l.NS(n), func() error { return lab.HostDefaults(mode) }); err != nil {
			t.Fatal(err)
		}
	}
}

// TestVMCannotReachHost: nothing a VM sends reaches the hypervisor's own
// stack, so the hypervisor's VXLAN socket, routing and addresses are out
// of a tenant's reach, whatever the frame's addresses and rp_filter.
func TestVMCannotReachHost(t *testing.T) {
	l := newLab(t, lab.Config{SecondNetwork: true})
	victims := []lab.Port{lab.VM3, lab.VM4}
	for _, dev := range []string{state.BridgeName(lab.Net100ID), state.VXLANName(100)} {
		var v []byte
		err := lab.Do(l.NS("node3"), func() (err error) {
			v, err = os.ReadFile("/proc/sys/net/ipv6/conf/" + dev + "/disable_ipv6")
			return err
		})
		if err != nil || strings.TrimSpace(string(v)) != "1" {
			t.Errorf("node3 %s: disable_ipv6 = %q (%v), want 1", dev, v, err)
		}
	}

	for _, rp := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("rp_filter=%d", rp), func(t *testing.T) {
			setRPFilter(t, l, rp)

			// The review's frame: VXLAN for VNI 200 from 0.0.0.0.
			before := snapshot(t, l, "node3")
			seen := watch(t, l, victims, func() { sendFrame(t, l.PortNS(lab.VM2), lab.VMDev, mustHex(reviewCrossTenant)) })
			after := snapshot(t, l, "node3")
			for name, fs := range seen {
				if n := injected(fs, nil); n > 0 {
					t.Errorf("%s (VNI 200) received %d frames vm2 (VNI 100) injected through the host's VXLAN socket", name, n)
				}
			}
			if p, _ := grown(before, after, "node3", "port", "DROP_SPOOF_IP"); p != 1 {
				t.Errorf("node3 port program: DROP_SPOOF_IP grew by %d, want 1 (grown:%s)", p, nonZeroGrowth(before, after, "node3"))
			}

			// The same from vm2's own address, which port security lets
			// through, with a broadcast inner frame: the bridge must not
			// hand it to the host.
			marker := []byte(fmt.Sprintf("cross-tenant-%d-%d", rp, time.Now().UnixNano()))
			inner := frames.Build(frames.Ether(injectedSrc, frames.Broadcast, layers.EthernetType(injectedType)), gopacket.Payload(marker))
			own := frames.FromVTEP(vmMAC(lab.VM2), frames.Broadcast, lab.VM2.IP, netip.MustParseAddr("255.255.255.255"), 200, inner)
			before = snapshot(t, l, "node3")
			seen = watch(t, l, victims, func() { sendFrame(t, l.PortNS(lab.VM2), lab.VMDev, own.Bytes()) })
			after = snapshot(t, l, "node3")
			for name, fs := range seen {
				if n := injected(fs, marker); n > 0 {
					t.Errorf("%s (VNI 200) received %d frames vm2 sent to the host's VXLAN socket from its own address", name, n)
				}
			}
			if p, _ := grown(before, after, "node3", "bridge", "DROP_TO_HOST"); p < 1 {
				t.Errorf("node3 bridge program did not drop the broadcast on its way to the host (grown:%s)", nonZeroGrowth(before, after, "node3"))
			}
		})
	}

	// A router advertisement with a prefix and a default route: the host
	// gets neither (host defaults: IPv6 on).
	before := snapshot(t, l, "node3")
	sendFrame(t, l.PortNS(lab.VM2), lab.VMDev, routerAdvert(vmMAC(lab.VM2)))
	time.Sleep(500 * time.Millisecond)
	after := snapshot(t, l, "node3")
	if p, _ := grown(before, after, "node3", "port", "DROP_ROUTER_ADVERT"); p != 1 {
		t.Errorf("node3 port program: DROP_ROUTER_ADVERT grew by %d, want 1 (grown:%s)", p, nonZeroGrowth(before, after, "node3"))
	}
	if r := ipv6Configured(t, l, "node3"); r != "" {
		t.Errorf("node3 configured IPv6 from a VM's router advertisement: %s", r)
	}

	// UDP to the host's management address: to a link-local group MAC
	// (a bridge hands those to the tap's own stack) and to the bridge's
	// MAC (a bridge delivers it to itself).
	conn := listenUDP(t, l.NS("node3"), netip.AddrPortFrom(lab.MgmtIP("node3"), 5555))
	brMAC := linkMAC(t, l.NS("node3"), state.BridgeName(lab.Net100ID))
	for _, dst := range []net.HardwareAddr{frames.LLDP, brMAC} {
		sendFrame(t, l.PortNS(lab.VM2), lab.VMDev, frames.UDP4(vmMAC(lab.VM2), dst, lab.VM2.IP, lab.MgmtIP("node3"), 4000, 5555))
	}
	conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, from, err := conn.ReadFrom(make([]byte, 100)); err == nil {
		t.Errorf("node3's UDP socket on its management address received %d bytes from %v, sent by a VM", n, from)
	}
	final := snapshot(t, l, "node3")
	if p, _ := grown(after, final, "node3", "port", "DROP_LINK_LOCAL_DST"); p != 1 {
		t.Errorf("node3 port program: DROP_LINK_LOCAL_DST grew by %d, want 1 (grown:%s)", p, nonZeroGrowth(after, final, "node3"))
	}
	if p, _ := grown(after, final, "node3", "bridge", "DROP_TO_HOST"); p < 1 {
		t.Errorf("node3 bridge program: DROP_TO_HOST grew by %d, want >= 1 (grown:%s)", p, nonZeroGrowth(after, final, "node3"))
	}
}

// TestTaggedSpoofIsDropped: the review's ARP in two VLAN 0 tags, claiming
// the DHCP port's address, never reaches vm1 (whose ARP entry for the
// DHCP port stays right).
func TestTaggedSpoofIsDropped(t *testing.T) {
	l := newLab(t, lab.Config{})
	ping(t, l, lab.VM1, lab.DHCP.IP.String(), 2)
	before := snapshot(t, l, "node3")
	seen := watch(t, l, []lab.Port{lab.VM1}, func() {
		sendFrame(t, l.PortNS(lab.VM2), lab.VMDev, mustHex(reviewTaggedARP))
	})
	after := snapshot(t, l, "node3")
	for _, f := range seen["vm1"] {
		if !f.Outgoing && f.SrcMAC() == lab.VM2.MAC && f.EtherType() != uint16(layers.EthernetTypeIPv4) {
			t.Errorf("vm1 received vm2's tagged ARP: % x", f.Data)
		}
	}
	if p, _ := grown(before, after, "node3", "port", "DROP_VLAN"); p != 1 {
		t.Errorf("node3 port program: DROP_VLAN grew by %d, want 1 (grown:%s)", p, nonZeroGrowth(before, after, "node3"))
	}
	neigh, err := lab.Neighbours(l.PortNS(lab.VM1), lab.VMDev)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range neigh {
		if n.IP == lab.DHCP.IP && n.MAC != lab.DHCP.MAC.String() {
			t.Errorf("vm1's ARP entry for the DHCP port %s now points at %s", n.IP, n.MAC)
		}
	}
}

// TestUnderlayCannotInject: VXLAN from an underlay host that is no VTEP of
// the network is decapsulated by nobody, whatever local address it is sent
// to and however it is wrapped; a registered VTEP cannot poison the FDB
// with a local port's MAC or slip in a corrupt datagram.
func TestUnderlayCannotInject(t *testing.T) {
	l := newLab(t, lab.Config{Rogue: true})
	vm2 := []lab.Port{lab.VM2}
	eth2 := linkMAC(t, l.NS("node3"), lab.VTEPDev)
	marked := func(src, dst netip.Addr, dstMAC net.HardwareAddr, tags ...uint16) ([]byte, []byte) {
		m := []byte(fmt.Sprintf("underlay-%s-%v-%d", dst, tags, time.Now().UnixNano()))
		inner := frames.Build(frames.Ether(injectedSrc, vmMAC(lab.VM2), layers.EthernetType(injectedType)), gopacket.Payload(m))
		f := frames.FromVTEP(frames.MAC("02:00:c0:a8:f8:09"), dstMAC, src, dst, 100, inner).Bytes()
		if len(tags) > 0 {
			f = frames.Tagged(f, tags...)
		}
		return f, m
	}
	vlan0 := mustHex(reviewVLAN0)
	copy(vlan0[:6], eth2)

	for _, rp := range []int{0, 1, 2} {
		setRPFilter(t, l, rp)
		for _, c := range []struct {
			name      string
			ns, dev   string
			frame     []byte
			marker    []byte
			prog, why string // the counter that must grow on node3
		}{
			{name: "review frame to the subnet broadcast", ns: "rogue", dev: lab.VTEPDev, frame: mustHex(reviewSubnetBroadcast),
				prog: "uplink", why: "DROP_VTEP_UNKNOWN"},
			{name: "review frame in a VLAN 0 tag", ns: "rogue", dev: lab.VTEPDev, frame: vlan0, prog: "uplink", why: "DROP_VTEP_UNKNOWN"},
		} {
			t.Run(fmt.Sprintf("rp_filter=%d/%s", rp, c.name), func(t *testing.T) {
				underlayCase(t, l, vm2, c.ns, c.dev, c.frame, c.marker, c.prog, c.why)
			})
		}
		for _, c := range []struct {
			name      string
			dev       string
			dst       netip.Addr
			dstMAC    net.HardwareAddr
			tags      []uint16
			prog, why string
		}{
			{"to 255.255.255.255", lab.VTEPDev, netip.MustParseAddr("255.255.255.255"), frames.Broadcast, nil, "uplink", "DROP_VTEP_UNKNOWN"},
			{"in two VLAN 0 tags (802.1ad)", lab.VTEPDev, lab.NodeIP("node3"), eth2, []uint16{0, 0}, "uplink", "DROP_VTEP_UNKNOWN"},
			// More tags than the XDP program looks through (unless the
			// underlay offloads the outer one): whichever program sees it
			// first drops it.
			{"in three VLAN 0 tags", lab.VTEPDev, lab.NodeIP("node3"), eth2, []uint16{0, 0, 0}, "", "DROP_VTEP_UNKNOWN"},
			// Past the XDP program: the kernel gets it on the management
			// interface and decapsulates; the vxlan program drops it.
			{"to the management address", lab.MgmtDev, lab.MgmtIP("node3"), linkMAC(t, l.NS("node3"), lab.MgmtDev), nil, "vxlan", "DROP_VTEP_UNKNOWN"},
		} {
			t.Run(fmt.Sprintf("rp_filter=%d/%s", rp, c.name), func(t *testing.T) {
				src := lab.RogueIP
				if c.dev == lab.MgmtDev {
					src = lab.RogueMgmtIP
				}
				f, m := marked(src, c.dst, c.dstMAC, c.tags...)
				underlayCase(t, l, vm2, "rogue", c.dev, f, m, c.prog, c.why)
			})
		}
	}

	// From a registered VTEP (node4): an inner source MAC of a local port
	// would move vm2's bridge FDB entry to vxlan-100.
	ping(t, l, lab.VM2, lab.VM1.IP.String(), 2) // vm2's MAC learnt on its tap
	node4eth2 := linkMAC(t, l.NS("node4"), lab.VTEPDev)
	poison := frames.Build(frames.Ether(vmMAC(lab.VM2), frames.Broadcast, layers.EthernetTypeARP), gopacket.Payload(make([]byte, 28)))
	// Plain, BPF drops it; with IP options the kernel decapsulates it and
	// the vxlan program drops it.
	for _, options := range []bool{false, true} {
		p := frames.FromVTEP(node4eth2, eth2, lab.NodeIP("node4"), lab.NodeIP("node3"), 100, poison)
		if options {
			p.IP.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
		}
		prog := map[bool]string{false: "uplink", true: "vxlan"}[options]
		before := snapshot(t, l, "node3")
		sendFrame(t, l.NS("node4"), lab.VTEPDev, p.Bytes())
		time.Sleep(200 * time.Millisecond)
		after := snapshot(t, l, "node3")
		if n, _ := grown(before, after, "node3", prog, "DROP_INNER_SRC_LOCAL"); n != 1 {
			t.Errorf("IP options %v: node3 %s program DROP_INNER_SRC_LOCAL grew by %d, want 1 (grown:%s)", options, prog, n, nonZeroGrowth(before, after, "node3"))
		}
	}
	// From a registered VTEP, an inner frame to a link-local group
	// address, which the bridge would hand to vxlan-100's own stack (with
	// IP options, so the kernel decapsulates it and the vxlan program
	// judges it).
	linkLocal := frames.Build(frames.Ether(injectedSrc, frames.LLDP, layers.EthernetTypeIPv4), gopacket.Payload(make([]byte, 28)))
	p := frames.FromVTEP(node4eth2, eth2, lab.NodeIP("node4"), lab.NodeIP("node3"), 100, linkLocal)
	p.IP.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
	before := snapshot(t, l, "node3")
	sendFrame(t, l.NS("node4"), lab.VTEPDev, p.Bytes())
	time.Sleep(200 * time.Millisecond)
	after := snapshot(t, l, "node3")
	if n, _ := grown(before, after, "node3", "vxlan", "DROP_LINK_LOCAL_DST"); n != 1 {
		t.Errorf("inner frame to %s: node3 vxlan program DROP_LINK_LOCAL_DST grew by %d, want 1 (grown:%s)", frames.LLDP, n, nonZeroGrowth(before, after, "node3"))
	}

	fdb, err := lab.KernelFDB(l.NS("node3"), state.VXLANName(100))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range fdb {
		if e.MAC == lab.VM2.MAC.String() && e.Master {
			t.Errorf("vm2's MAC moved to vxlan-100 in node3's bridge FDB: %v", e)
		}
	}

	// A registered VTEP's datagram with a wrong UDP checksum: the kernel
	// drops it, and BPF does not decapsulate it either.
	f, m := marked(lab.NodeIP("node4"), lab.NodeIP("node3"), eth2)
	f = frames.Edited(f, frames.Put16(frames.OffUDP+6, 0xbad0))
	copy(f[6:12], node4eth2)
	seen := watch(t, l, vm2, func() { sendFrame(t, l.NS("node4"), lab.VTEPDev, f) })
	if n := injected(seen["vm2"], m); n > 0 {
		t.Errorf("vm2 received %d frames with a wrong outer UDP checksum", n)
	}
}

// underlayCase sends frame from ns/dev and checks that vm2 never sees it
// and that node3's prog (either of uplink and vxlan if "") counted it
// under why.
func underlayCase(t *testing.T, l *lab.Lab, vm2 []lab.Port, ns, dev string, frame, marker []byte, prog, why string) {
	t.Helper()
	before := snapshot(t, l, "node3")
	seen := watch(t, l, vm2, func() { sendFrame(t, l.NS(ns), dev, frame) })
	after := snapshot(t, l, "node3")
	if n := injected(seen["vm2"], marker); n > 0 {
		t.Errorf("vm2 received %d frames injected from the underlay", n)
	}
	var p uint64
	for _, pr := range []string{"uplink", "vxlan"} {
		if prog == "" || prog == pr {
			n, _ := grown(before, after, "node3", pr, why)
			p += n
		}
	}
	if p != 1 {
		t.Errorf("node3 %s program: %s grew by %d, want 1 (grown:%s)", prog, why, p, nonZeroGrowth(before, after, "node3"))
	}
}

func vmMAC(p lab.Port) net.HardwareAddr { return net.HardwareAddr(p.MAC[:]) }

// routerAdvert is an RA announcing 2001:db8:77::/64 for SLAAC and itself
// as default router for 30 minutes.
func routerAdvert(src net.HardwareAddr) []byte {
	opt := make([]byte, 30)
	opt[0] = 64   // prefix length
	opt[1] = 0xc0 // on-link, autonomous
	bin.BigEndian.PutUint32(opt[2:], 86400)
	bin.BigEndian.PutUint32(opt[6:], 14400)
	copy(opt[14:], netip.MustParseAddr("2001:db8:77::").AsSlice())
	lla := netip.AddrFrom16([16]byte{0xfe, 0x80, 8: src[0] ^ 2, src[1], src[2], 0xff, 0xfe, src[3], src[4], src[5]})
	ip := frames.IPv6(lla, netip.MustParseAddr("ff02::1"), layers.IPProtocolICMPv6)
	ip.HopLimit = 255
	return frames.Build(frames.Ether(src, frames.AllNodesMAC, layers.EthernetTypeIPv6), ip,
		&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeRouterAdvertisement, 0)},
		&layers.ICMPv6RouterAdvertisement{HopLimit: 64, RouterLifetime: 1800,
			Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptPrefixInfo, Data: opt}}})
}

// ipv6Configured describes any IPv6 default route or global address node
// has ("" when none).
func ipv6Configured(t *testing.T, l *lab.Lab, node string) string {
	t.Helper()
	var found []string
	err := lab.Do(l.NS(node), func() error {
		routes, err := netlink.RouteList(nil, netlink.FAMILY_V6)
		if err != nil {
			return err
		}
		for _, r := range routes {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() {
				found = append(found, fmt.Sprintf("default route via %v dev %d", r.Gw, r.LinkIndex))
			}
		}
		addrs, err := netlink.AddrList(nil, netlink.FAMILY_V6)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if a.IP.IsGlobalUnicast() {
				found = append(found, "address "+a.IPNet.String())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(found, ", ")
}

func linkMAC(t *testing.T, ns, dev string) net.HardwareAddr {
	t.Helper()
	l, err := lab.LinkInfo(ns, dev)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().HardwareAddr
}

// listenUDP opens a UDP socket in namespace ns, closed when t ends.
func listenUDP(t *testing.T, ns string, at netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := lab.Do(ns, func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(at))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
