package bpf_test

// Provider networks in the fuzz test: the model of from_provider (a frame
// enters a provider segment only with its VLAN on its interface), the
// worlds that put vmA's segment or the uplink's role in question, and
// frames as a physical network's hosts send them.

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/vxdp/vxdp/frames"
	"github.com/vxdp/vxdp/maps"
)

// modelNet is a provider network: on physical interface phys, tagged vlan
// (0: flat).
type modelNet struct {
	phys uint32
	vlan uint16
}

// vmQF is a remote port of the flat network, reached out of lo.
var vmQF = vm{vni: segFlat, mac: mac("fa:16:3e:00:03:0c"), ip: addr("172.16.98.20")}

// withProviderModel is withProvider (and a remote flat port) in the model.
func withProviderModel(t *testing.T, w *world, m *model) {
	withProvider(t, w)
	w.put(t, maps.FDB, maps.NewFDBKey(vmQF.vni, mac6(vmQF.mac)), maps.FDBEntry{Kind: maps.FDBProvider})
	m.nets[segVLAN] = modelNet{phys: loIfindex, vlan: 99}
	m.nets[segFlat] = modelNet{phys: loIfindex}
	m.provider[99], m.provider[0] = segVLAN, segFlat
	for _, p := range []vm{vmP, vmP2, vmF} {
		m.ports[p.ifindex] = &modelPort{vni: p.vni, mac: p.mac, mtu: 1500, security: true, bridged: true, vxmit: true}
		m.allowPair(p.ifindex, p.mac, netip.PrefixFrom(p.ip, 32))
		m.fdb[fdbKeyOf(p.vni, p.mac)] = modelFDB{local: true, ifindex: p.ifindex}
	}
	for _, r := range []vm{vmQ, vmQF} {
		m.fdb[fdbKeyOf(r.vni, r.mac)] = modelFDB{provider: true}
	}
}

// offUplinkModel: lo carries provider networks only; the tunnel
// interface is another.
func offUplinkModel(t *testing.T, w *world, m *model) {
	offUplink(func(*testing.T, *world) {})(t, w)
	m.onUplink = false
}

// vmAOn moves vmA (the test run's tap) onto provider segment seg, with
// its MAC, addresses and allow-list; its old FDB entry in vniA stays, a
// stale entry pointing across segments.
func vmAOn(seg uint32) func(*testing.T, *world, *model) {
	return func(t *testing.T, w *world, m *model) {
		withProviderModel(t, w, m)
		update(t, w, maps.Ports, vmA.ifindex, func(p *maps.PortInfo) { p.Vni, p.Mtu = seg, 1500 })
		w.put(t, maps.FDB, maps.NewFDBKey(seg, mac6(vmA.mac)), maps.FDBEntry{Ifindex: vmA.ifindex, Kind: maps.FDBLocal})
		m.ports[vmA.ifindex].vni, m.ports[vmA.ifindex].mtu = seg, 1500
		m.fdb[fdbKeyOf(seg, vmA.mac)] = modelFDB{local: true, ifindex: vmA.ifindex}
	}
}

func (m *model) isLocalPort(seg uint32, mac []byte) bool {
	e, ok := m.fdb[fdbKeyOf(seg, mac)]
	return ok && e.local
}

// fromProvider is the uplink program's provider path for a frame arriving
// on lo: ok is false when the frame is no provider network's and goes on
// to the VXLAN checks. proto is the ethertype after up to two tags, tags
// how many were skipped.
func (m *model) fromProvider(f []byte, proto uint16, tags int) (uplinkOutcome, bool) {
	var vlan uint16
	l3off := 14
	if tags > 0 {
		vlan, l3off = binary.BigEndian.Uint16(f[14:])&0x0fff, 18
	}
	seg, ok := m.provider[vlan]
	if !ok {
		return uplinkOutcome{}, false
	}
	dst, src := f[0:6], f[6:12]
	// Untagged on a flat network's interface: the network's only when it
	// is for one of its ports (or a broadcast).
	if vlan == 0 && !isMulticast(dst) && !m.isLocalPort(seg, dst) {
		return uplinkOutcome{}, false
	}
	out := uplinkOutcome{seg: seg}
	if n, ok := m.nets[seg]; !ok || n.phys != loIfindex {
		out.reason = "DROP_VNI_MISMATCH"
		return out, true
	}
	switch {
	case m.isLocalPort(seg, src):
		out.reason = "DROP_INNER_SRC_LOCAL"
	case isLinkLocalGroup(dst) && (proto == 0x0800 || proto == 0x86dd || proto == 0x0806):
		out.reason = "DROP_LINK_LOCAL_DST"
	case !m.forward:
		out.reason = "PASS_KERNEL_FORWARDING"
	case isMulticast(dst):
		out.reason = "PASS_PROVIDER_BUM"
	}
	if out.reason != "" {
		return out, true
	}
	inner := binary.BigEndian.Uint16(f[l3off-2:])
	if tags > 0 && isVLAN(inner) {
		out.reason = "PASS_INNER_TAGGED"
		return out, true
	}
	l := m.toLocalPort(seg, f, dst, inner, l3off, "PASS_PROVIDER_FDB_MISS")
	out.reason, out.alt, out.flow = l.reason, l.alt, l.flow
	if l.reason == "" {
		// Delivered untagged: the tag (if any) goes, the rest stays.
		out.reason, out.target = "REDIRECT_FROM_PROVIDER", l.target
		out.inner = append(bytes.Clone(f[:12]), f[l3off-2:]...)
	}
	return out, true
}

// providerFrame is a frame on a provider network's physical interface:
// tagged with VLAN 99, another VLAN or a priority tag, or untagged; from a
// host of the network or a forged local source; to local ports of every
// segment, remote ones, broadcasts and link-local groups; carrying IP,
// ARP, VXLAN (a forged tunnel packet) or something else.
func (g *frameGen) providerFrame() []byte {
	src := g.mac(vmQ.mac, vmQ.mac, physMAC, vmQF.mac, vmP2.mac, vmF.mac, vmB.mac, vmA.mac)
	dst := g.mac(vmP.mac, vmP2.mac, vmF.mac, vmA.mac, vmB.mac, vmC.mac, vmQ.mac, frames.Broadcast, frames.LLDP,
		mac("01:80:c2:00:00:03"), frames.Multicast, uplinkMAC)
	var f []byte
	switch g.pick(5) {
	case 0:
		f = frames.UDP4(src, dst, addr("172.16.99.1"), g.addr4(vmP.ip, vmF.ip, vmA.ip), g.port16(40000, 68), g.port16(5201, 67, vxlanPort))
	case 1:
		f = frames.TCP4(src, dst, addr("172.16.99.1"), vmP.ip, 40000, g.pick(64))
	case 2:
		a := frames.ARPRequest(src, addr("172.16.99.1"), g.addr4(vmP.ip, vmF.ip))
		a.Eth.DstMAC = dst
		f = a.Bytes()
	case 3:
		// VXLAN from a registered VTEP's address, as a forger on the
		// physical network would send it.
		f = frames.FromVTEP(src, dst, g.addr4(vtepA, vtepB), g.addr4(localIP, localIP, addr("192.168.248.255")),
			[]uint32{vniA, vniB}[g.pick(2)], frames.UDP4(vmR.mac, vmB.mac, vmR.ip, vmB.ip, 1, 2)).Bytes()
	default:
		f = frames.Build(frames.Ether(src, dst, layers.EthernetType(g.port16(0x86dd, 0x88cc, 0x88b5))), frames.Payload(g.pick(60)))
	}
	switch g.pick(6) {
	case 0, 1:
	case 2, 3:
		f = frames.Tagged(f, 99)
	case 4:
		f = frames.Tagged(f, uint16(g.port16(0, 98, 100)))
	default:
		f = frames.Tagged(f, 99, uint16(g.port16(0, 5)))
	}
	return g.mutate(f)
}
