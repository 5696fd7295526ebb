package dataplane

import (
	"errors"
	"net"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/maps"
	"github.com/vxdp/vxdp/state"
)

// usableNeigh are the neighbour states encapsulation may bypass the
// kernel's lookup for: confirmed ones. Once an entry goes stale the
// kernel must see traffic to it to confirm it again (or find the new
// address), so the port program goes back to bpf_redirect_neigh until it
// is reachable again.
const usableNeigh = netlink.NUD_REACHABLE | netlink.NUD_PERMANENT | netlink.NUD_NOARP

// nexthops resolves the underlay next hop of each VTEP (IPv4 underlay):
// the route to it out of the uplink, and the Ethernet address the
// kernel's neighbour table has for that route's gateway or the VTEP
// itself. A VTEP routed elsewhere or without a usable neighbour gets no
// entry: the port program then leaves the lookup to bpf_redirect_neigh,
// which also makes the kernel resolve it, so a later apply finds it.
// It returns the entries, and records the next hops they depend on for
// nexthopUpdate.
func (d *Dataplane) nexthops(vteps map[netip.Addr]state.Source, rec *recorder) map[uint32]maps.MACValue {
	out := map[uint32]maps.MACValue{}
	via := map[netip.Addr]state.MAC{}
	behind := map[netip.Addr][]netip.Addr{}
	defer func() {
		d.mu.Lock()
		d.nexthopVia, d.nexthopVTEPs = via, behind
		d.mu.Unlock()
	}()
	if d.opts.LocalIP.Is6() || len(vteps) == 0 {
		return out
	}
	uplink := d.kernel.uplink.Attrs().Index
	neighs, err := d.nl.NeighList(uplink, unix.AF_INET)
	if err != nil {
		d.log.Warn("read the uplink's neighbours: encapsulation looks next hops up per packet", "err", err)
		return out
	}
	macOf := map[netip.Addr]net.HardwareAddr{}
	for _, n := range neighs {
		ip, ok := netip.AddrFromSlice(n.IP)
		if ok && n.State&usableNeigh != 0 && len(n.HardwareAddr) == 6 {
			macOf[ip.Unmap()] = n.HardwareAddr
		}
	}
	for vtep, src := range vteps {
		nh, dev, ok := routeNextHop(d.nl, vtep)
		if !ok || dev != uplink {
			continue
		}
		behind[nh] = append(behind[nh], vtep)
		mac, ok := macOf[nh]
		if !ok {
			via[nh] = state.MAC{}
			continue
		}
		via[nh] = state.MAC(mac)
		k := maps.BE32(vtep)
		out[k] = maps.MACValue{Mac: [6]byte(mac)}
		rec.source("bpf/vtep_nexthop", maps.U32KeyString(k), src)
	}
	return out
}

// routeNextHop is where the kernel sends a packet to vtep: the route's
// gateway, or vtep itself on a directly connected network, and the device.
func routeNextHop(nl *netlink.Handle, vtep netip.Addr) (nh netip.Addr, dev int, ok bool) {
	routes, err := nl.RouteGet(net.IP(vtep.AsSlice()))
	if err != nil || len(routes) == 0 {
		return netip.Addr{}, 0, false
	}
	nh = vtep
	if gw, ok := netip.AddrFromSlice(routes[0].Gw); ok {
		nh = gw.Unmap()
	}
	return nh, routes[0].LinkIndex, true
}

// nexthopUpdate brings the vtep_nexthop entries of the VTEPs behind a
// changed neighbour up to date at once, without an apply: entries go
// when it is no longer confirmed and come back (or change) when it is.
func (d *Dataplane) nexthopUpdate(u netlink.NeighUpdate) {
	ip, ok := netip.AddrFromSlice(u.IP)
	if !ok || d.kernel == nil || u.LinkIndex != d.kernel.uplink.Attrs().Index {
		return
	}
	nh := ip.Unmap()
	var mac state.MAC
	if u.Type != unix.RTM_DELNEIGH && u.State&usableNeigh != 0 && len(u.HardwareAddr) == 6 {
		mac = state.MAC(u.HardwareAddr)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	have, known := d.nexthopVia[nh]
	if !known || have == mac {
		return
	}
	m := d.set.Map(maps.VTEPNextHop)
	for _, vtep := range d.nexthopVTEPs[nh] {
		k := maps.BE32(vtep)
		var err error
		if mac.IsZero() {
			if err = m.Delete(k); errors.Is(err, ebpf.ErrKeyNotExist) {
				err = nil
			}
		} else {
			err = m.Put(k, maps.MACValue{Mac: mac})
		}
		if err != nil {
			d.log.Warn("update a VTEP's next hop", "vtep", vtep, "next_hop", nh, "err", err)
		}
	}
	d.nexthopVia[nh] = mac
}
