package dataplane

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/vxdp/vxdp/maps"
	"github.com/vxdp/vxdp/state"
)

// mapStep is one map's part of a BPF sync.
type mapStep interface {
	upsert() error
	delete() error
	record(rec *recorder)
}

type plannedMap[K comparable, V comparable] struct {
	plan *maps.Plan[K, V]
	key  func(K) string
}

func (p plannedMap[K, V]) upsert() error { return p.plan.Upsert() }
func (p plannedMap[K, V]) delete() error { return p.plan.Delete() }

func (p plannedMap[K, V]) record(rec *recorder) {
	obj := "bpf/" + p.plan.Map
	for _, k := range p.plan.Added {
		rec.op(obj, "add", p.key(k))
	}
	for _, k := range p.plan.Updated {
		rec.op(obj, "update", p.key(k))
	}
	for _, k := range p.plan.Removed {
		rec.op(obj, "remove", p.key(k))
	}
	rec.unchanged += p.plan.Unchanged
}

func plan[K comparable, V comparable](set *maps.Set, name string, want map[K]V, key func(K) string) (mapStep, error) {
	p, err := maps.Diff(name, set.Map(name), want)
	if err != nil {
		return nil, err
	}
	return plannedMap[K, V]{plan: p, key: key}, nil
}

// bpfWant is the content every map should have.
type bpfWant struct {
	config    map[uint32]maps.ConfigValue
	networks  map[uint32]maps.NetInfo
	vteps     map[maps.VNIAddr]uint32
	vteps6    map[maps.VNIAddr6]uint32
	ports     map[uint32]maps.PortInfo
	portAddrs map[maps.PortAddrKey]maps.PortAddrValue
	txPorts   map[uint32]uint32
	arp       map[maps.VNIAddr]maps.MACValue
	fdb       map[maps.FDBKey]maps.FDBEntry
	remote    map[maps.PolicyRemoteKey]maps.SGMask
	l4        map[maps.PolicyL4Key]maps.SGMask
	dhcp      map[uint32]maps.DHCPLease
	nexthop   map[uint32]maps.MACValue
	// provider networks
	providerIn  map[maps.ProviderKey]uint32
	segmentDevs map[uint32]uint32
}

// disabledSource is the provenance of a port entry kept for a tap whose
// port is no longer bound here.
var disabledSource = state.Source{Key: "(port no longer bound here: tap disabled)"}

func (d *Dataplane) buildBPF(want *state.Desired, nets map[string]*kernelNet, present []localPort, disabled map[string]int, rec *recorder) (*bpfWant, error) {
	cfg, err := d.configValue()
	if err != nil {
		return nil, err
	}
	w := &bpfWant{
		config:    map[uint32]maps.ConfigValue{0: cfg},
		networks:  map[uint32]maps.NetInfo{},
		vteps:     map[maps.VNIAddr]uint32{},
		vteps6:    map[maps.VNIAddr6]uint32{},
		ports:     map[uint32]maps.PortInfo{},
		portAddrs: map[maps.PortAddrKey]maps.PortAddrValue{},
		txPorts:   map[uint32]uint32{},
		arp:       map[maps.VNIAddr]maps.MACValue{},
		fdb:       map[maps.FDBKey]maps.FDBEntry{},
		dhcp:      map[uint32]maps.DHCPLease{},

		providerIn:  map[maps.ProviderKey]uint32{},
		segmentDevs: map[uint32]uint32{},
	}
	vniOf := map[string]uint32{}
	netOf := map[string]state.Network{}
	provider := map[string]bool{}
	for _, n := range want.Networks {
		netOf[n.ID] = n
		kn := nets[n.ID]
		vniOf[n.ID] = kn.seg
		info := maps.NetInfo{DevIfindex: uint32(kn.dev.Attrs().Index), Mtu: uint16(kn.mtu)}
		if n.VLANTransparent {
			info.Flags |= maps.NetVLANTransp
		}
		key := maps.U32KeyString(kn.seg)
		if n.Provider() {
			provider[n.ID] = true
			providerEntries(kn, &info, w)
			rec.source("bpf/provider_in", maps.ProviderKeyString(maps.NewProviderKey(kn.phys.Attrs().Index, kn.vlan)), n.Source)
			if kn.peer != nil {
				rec.source("bpf/segment_devs", maps.U32KeyString(uint32(kn.peer.Attrs().Index)), n.Source)
			}
		}
		w.networks[kn.seg] = info
		rec.source("bpf/networks", key, n.Source)
		for _, v := range want.FloodList(n.ID) {
			if !d.sameFamily(v.IP, v.Source) {
				continue
			}
			if v.IP.Is4() {
				k := maps.NewVNIAddr(n.VNI, v.IP)
				w.vteps[k] = 0
				rec.source("bpf/vteps", maps.VNIAddrKeyString(k), v.Source)
			} else {
				k := maps.NewVNIAddr6(n.VNI, v.IP)
				w.vteps6[k] = 0
				rec.source("bpf/vteps6", maps.VNIAddr6KeyString(k), v.Source)
			}
		}
	}
	secured := slices.DeleteFunc(slices.Clone(present), func(p localPort) bool { return !d.groupsEnforced(p) })
	policies, perrs := compilePolicies(want.SecurityGroups, secured)
	for set, err := range perrs {
		d.log.Error("security groups cannot be compiled: the ports in them allow only what is always allowed", "groups", set,
			"ports", policies.ports[set], "err", err)
	}
	d.mu.Lock()
	d.uncompiled = policies.uncompiledPorts(perrs)
	d.mu.Unlock()
	w.remote, w.l4 = policies.entries()
	rec.policies = policies.describe(want.SecurityGroups, perrs)
	for _, p := range present {
		idx := uint32(p.ifindex())
		info := maps.PortInfo{Vni: p.net.seg, Mtu: uint16(p.net.mtu), Mac: p.MAC}
		if p.tap.Attrs().MasterIndex == p.net.bridge.Attrs().Index {
			info.Flags |= maps.PortBridged
		}
		if p.SecurityEnabled() {
			info.Flags |= maps.PortSecurity
			d.allowList(w, idx, p, &info, rec)
		}
		if d.groupsEnforced(p) {
			id := policies.policyOf(p)
			info.Flags |= maps.PortSG
			if policies.policies[id].stateless {
				info.Flags |= maps.PortStateless
			}
			if info.Ip6 != [16]byte{} {
				info.Flags |= maps.PortIPv6
			}
			info.Policy = id
			info.Generation = d.generation(idx, info)
			for _, g := range p.SecurityGroups {
				rec.source("bpf/ports/groups", maps.U32KeyString(idx), sourceOfGroup(want, g))
			}
		}
		w.ports[idx] = info
		w.txPorts[idx] = idx
		if d.opts.DHCP {
			if v, ok, err := dhcpLease(netOf[p.NetworkID], p); err != nil {
				d.log.Error("DHCP at the port cannot answer this port: its DHCP goes to the network", "port", portName(p.LocalPort), "err", err)
			} else if ok {
				w.dhcp[idx] = v
				rec.source("bpf/dhcp", maps.U32KeyString(idx), p.Source)
			}
		}
		fk := maps.NewFDBKey(p.net.seg, p.MAC)
		w.fdb[fk] = maps.FDBEntry{Kind: maps.FDBLocal, Ifindex: idx}
		rec.source("bpf/ports", maps.U32KeyString(idx), p.Source)
		rec.source("bpf/tx_ports", maps.U32KeyString(idx), p.Source)
		rec.source("bpf/fdb", maps.FDBKeyString(fk), p.Source)
	}
	for _, idx := range disabled {
		w.ports[uint32(idx)] = maps.PortInfo{Flags: maps.PortDisabled}
		rec.source("bpf/ports", maps.U32KeyString(uint32(idx)), disabledSource)
	}
	for _, p := range want.RemotePorts {
		vni := vniOf[p.NetworkID]
		fk := maps.NewFDBKey(vni, p.MAC)
		if _, local := w.fdb[fk]; local {
			continue // a port migrating here: the local entry wins
		}
		if provider[p.NetworkID] {
			// Out of the network's physical interface; ARP floods there.
			w.fdb[fk] = maps.FDBEntry{Kind: maps.FDBProvider}
			rec.source("bpf/fdb", maps.FDBKeyString(fk), p.Source)
			continue
		}
		if !d.sameFamily(p.VTEP, p.Source) {
			continue
		}
		w.fdb[fk] = maps.NewRemoteFDBEntry(p.VTEP)
		rec.source("bpf/fdb", maps.FDBKeyString(fk), p.Source)
		for _, ip := range p.IPs {
			if ip.Is4() {
				k := maps.NewVNIAddr(vni, ip)
				w.arp[k] = maps.MACValue{Mac: p.MAC}
				rec.source("bpf/arp", maps.VNIAddrKeyString(k), p.Source)
			}
		}
	}
	vteps := map[netip.Addr]state.Source{}
	for _, n := range want.Networks {
		for _, v := range want.FloodList(n.ID) {
			if v.IP.Is4() {
				vteps[v.IP] = v.Source
			}
		}
	}
	w.nexthop = d.nexthops(vteps, rec)
	return w, nil
}

// sameFamily reports whether a VTEP is of the underlay's family: a
// vxlan device talks to one family, so a VTEP of the other (a
// misconfigured host) is left out, and logged.
func (d *Dataplane) sameFamily(vtep netip.Addr, src state.Source) bool {
	if vtep.Is4() == d.opts.LocalIP.Is4() {
		return true
	}
	d.log.Warn("VTEP of the other IP version than local_ip: left out (a fleet's underlay is all IPv4 or all IPv6)",
		"vtep", vtep, "local_ip", d.opts.LocalIP, "source", src)
	return false
}

// allowList writes a secured port's allowed (MAC, source) pairs: its MAC
// with each fixed IP and with the EUI-64 link-local address, every allowed
// address pair, and a MAC-only entry per MAC. The first fixed IP of each
// family also goes into the port entry, for the lookup-free common case.
func (d *Dataplane) allowList(w *bpfWant, idx uint32, p localPort, info *maps.PortInfo, rec *recorder) {
	add := func(k maps.PortAddrKey, kind uint32) {
		w.portAddrs[k] = maps.PortAddrValue{Kind: kind}
		rec.source("bpf/port_addrs", maps.PortAddrKeyString(k), p.Source)
	}
	allowMAC := func(mac state.MAC) {
		if k := maps.NewPortMACKey(idx, mac); w.portAddrs[k].Kind == 0 {
			add(k, maps.AddrMACOnly)
			add(maps.NewPortAddrKey(idx, mac, netip.PrefixFrom(eui64LinkLocal(mac), 128)), maps.AddrAllowed)
		}
	}
	allowMAC(p.MAC)
	for _, ip := range p.IPs {
		add(maps.NewPortAddrKey(idx, p.MAC, netip.PrefixFrom(ip, ip.BitLen())), maps.AddrAllowed)
		switch {
		case ip.Is4() && info.Ip4 == 0:
			info.Ip4 = maps.BE32(ip)
		case ip.Is6() && info.Ip6 == [16]byte{}:
			info.Ip6 = ip.As16()
		}
	}
	for _, ap := range p.AllowedAddressPairs {
		mac := ap.MAC
		if mac.IsZero() {
			mac = p.MAC
		}
		allowMAC(mac)
		add(maps.NewPortAddrKey(idx, mac, ap.IP), maps.AddrAllowed)
	}
}

// groupsEnforced reports whether a port's security groups apply: port
// security on, and security groups on for this agent (Neutron's
// [securitygroup] enable_security_group).
func (d *Dataplane) groupsEnforced(p localPort) bool {
	return d.opts.SecurityGroups && p.SecurityEnabled()
}

// generation is the generation of a port's entry: the installed one's,
// plus one when the port's policy (or statefulness) changes, so its
// tracked flows are checked again against what it allows now.
func (d *Dataplane) generation(idx uint32, want maps.PortInfo) uint32 {
	var cur maps.PortInfo
	if err := d.set.Map(maps.Ports).Lookup(idx, &cur); err != nil {
		return 1
	}
	const sgFlags = maps.PortSG | maps.PortStateless
	if cur.Policy == want.Policy && cur.Flags&sgFlags == want.Flags&sgFlags {
		return cur.Generation
	}
	return cur.Generation + 1
}

// sourceOfGroup is where a security group came from.
func sourceOfGroup(want *state.Desired, id string) state.Source {
	for _, g := range want.SecurityGroups {
		if g.ID == id {
			return g.Source
		}
	}
	return state.Source{Key: "(group " + id + " missing)"}
}

// eui64LinkLocal is the fe80::/64 address SLAAC derives from a MAC
// (RFC 4291 appendix A): what a VM uses before it has any other address.
func eui64LinkLocal(mac state.MAC) netip.Addr {
	var a [16]byte
	a[0], a[1] = 0xfe, 0x80
	a[8], a[9], a[10] = mac[0]^0x02, mac[1], mac[2]
	a[11], a[12] = 0xff, 0xfe
	a[13], a[14], a[15] = mac[3], mac[4], mac[5]
	return netip.AddrFrom16(a)
}

// syncBPF brings the maps and attachments to the desired state. Entries are
// added in dependency order (what an entry points at first), programs are
// attached once their maps are filled, and removals run in reverse.
func (d *Dataplane) syncBPF(want *state.Desired, nets map[string]*kernelNet, present []localPort, rec *recorder) error {
	disabled, err := d.disabledTaps(present)
	if err != nil {
		return err
	}
	w, err := d.buildBPF(want, nets, present, disabled, rec)
	if err != nil {
		return err
	}
	var steps []mapStep
	for _, s := range []func() (mapStep, error){
		func() (mapStep, error) { return plan(d.set, maps.Config, w.config, maps.U32KeyString) },
		func() (mapStep, error) { return plan(d.set, maps.Networks, w.networks, maps.U32KeyString) },
		func() (mapStep, error) {
			return plan(d.set, maps.ProviderIn, w.providerIn, maps.ProviderKeyString)
		},
		func() (mapStep, error) { return plan(d.set, maps.SegmentDevs, w.segmentDevs, maps.U32KeyString) },
		func() (mapStep, error) { return plan(d.set, maps.VTEPs, w.vteps, maps.VNIAddrKeyString) },
		func() (mapStep, error) { return plan(d.set, maps.VTEPs6, w.vteps6, maps.VNIAddr6KeyString) },
		func() (mapStep, error) { return plan(d.set, maps.VTEPNextHop, w.nexthop, maps.U32KeyString) },
		// A port switches policy in one write, once the policy is complete.
		func() (mapStep, error) { return plan(d.set, maps.PolicyRemote, w.remote, maps.PolicyRemoteKeyString) },
		func() (mapStep, error) { return plan(d.set, maps.PolicyL4, w.l4, maps.PolicyL4KeyString) },
		func() (mapStep, error) { return plan(d.set, maps.Ports, w.ports, maps.U32KeyString) },
		func() (mapStep, error) { return plan(d.set, maps.PortAddrs, w.portAddrs, maps.PortAddrKeyString) },
		func() (mapStep, error) { return plan(d.set, maps.TxPorts, w.txPorts, maps.U32KeyString) },
		func() (mapStep, error) { return plan(d.set, maps.DHCP, w.dhcp, maps.U32KeyString) },
		func() (mapStep, error) { return plan(d.set, maps.ARP, w.arp, maps.VNIAddrKeyString) },
		func() (mapStep, error) { return plan(d.set, maps.FDB, w.fdb, maps.FDBKeyString) },
	} {
		step, err := s()
		if err != nil {
			return err
		}
		steps = append(steps, step)
	}
	for _, s := range steps {
		if err := s.upsert(); err != nil {
			return err
		}
	}

	if err := d.attachAll(nets, present, disabled, rec); err != nil {
		return err
	}

	for i := len(steps) - 1; i >= 0; i-- {
		if err := steps[i].delete(); err != nil {
			return err
		}
		steps[i].record(rec)
	}
	return nil
}

// attachAll attaches every program where it belongs and detaches it from
// where it no longer does: the uplink and provider networks' physical
// interfaces (XDP, only when BPF forwards), each network's bridge and
// vxlan or segment device, each present port's tap and each disabled tap
// (whose program now drops everything).
func (d *Dataplane) attachAll(nets map[string]*kernelNet, present []localPort, disabled map[string]int, rec *recorder) error {
	// XDP: the uplink and every provider network's physical interface.
	xdpWant := map[string]int{}
	if !d.opts.Kernel {
		xdpWant[d.kernel.uplink.Attrs().Name] = d.kernel.uplink.Attrs().Index
		for _, n := range nets {
			if n.phys != nil {
				xdpWant[n.phys.Attrs().Name] = n.phys.Attrs().Index
			}
		}
	}
	for dev, idx := range xdpWant {
		if added, err := d.att.attachXDP(dev, idx); err != nil {
			return err
		} else if added {
			rec.op("bpf/xdp", "add", dev)
		}
	}
	xdpPinned, err := d.att.pinned(xdpKind)
	if err != nil {
		return err
	}
	for _, dev := range xdpPinned {
		if _, ok := xdpWant[dev]; ok {
			continue
		}
		if err := d.att.detach(xdpKind, dev); err != nil {
			return err
		}
		rec.op("bpf/xdp", "remove", dev)
	}

	want := map[string]map[string]int{} // hook kind -> device -> ifindex
	for _, h := range tcHooks {
		want[h.kind] = map[string]int{}
	}
	for _, n := range nets {
		want[bridgeHook.kind][n.bridge.Attrs().Name] = n.bridge.Attrs().Index
		if n.vxlan != nil {
			want[vxlanHook.kind][n.vxlan.Attrs().Name] = n.vxlan.Attrs().Index
			continue
		}
		want[segmentHook.kind][n.phys.Attrs().Name] = n.phys.Attrs().Index
		if n.peer != nil {
			want[segmentHook.kind][n.peer.Attrs().Name] = n.peer.Attrs().Index
		}
	}
	for _, p := range present {
		want[portHook.kind][p.TapName()] = p.ifindex()
		want[deliverHook.kind][p.TapName()] = p.ifindex()
	}
	for tap, idx := range disabled {
		want[portHook.kind][tap] = idx
		want[deliverHook.kind][tap] = idx
	}
	for _, h := range tcHooks {
		for dev, idx := range want[h.kind] {
			added, err := d.att.attachTC(h, dev, idx)
			if err != nil {
				return fmt.Errorf("%s program on %s: %w", h.kind, dev, err)
			}
			if added {
				rec.op("bpf/"+h.kind, "add", dev)
			}
		}
		pinned, err := d.att.pinned(h.kind)
		if err != nil {
			return err
		}
		for _, dev := range pinned {
			if _, ok := want[h.kind][dev]; ok {
				continue
			}
			if err := d.att.detach(h.kind, dev); err != nil {
				return err
			}
			rec.op("bpf/"+h.kind, "remove", dev)
		}
	}
	return nil
}

// disabledTaps finds the taps that still carry the port program but whose
// port is no longer a present local port (unbound, deleted, migrated away):
// their program stays, with a port entry that drops everything, until the
// tap itself goes. Without it the VM's frames would reach the hypervisor's
// stack through the tap once it leaves the bridge.
func (d *Dataplane) disabledTaps(present []localPort) (map[string]int, error) {
	taps, err := d.att.pinned(portHook.kind)
	if err != nil {
		return nil, err
	}
	isPresent := map[string]bool{}
	for _, p := range present {
		isPresent[p.TapName()] = true
	}
	out := map[string]int{}
	for _, tap := range taps {
		if isPresent[tap] {
			continue
		}
		target, err := d.att.pinnedTarget(portHook.kind, tap)
		if err != nil {
			return nil, err
		}
		l, err := d.kernel.linkByName(tap)
		if err != nil {
			return nil, err
		}
		if target > 0 && l != nil && l.Attrs().Index == target {
			out[tap] = target
		}
	}
	return out, nil
}

// markBridged sets PORT_F_BRIDGED on ports whose tap is now on its bridge:
// from then on the port program may hand their frames to the kernel.
func (d *Dataplane) markBridged(present []localPort, rec *recorder) error {
	m := d.set.Map(maps.Ports)
	for _, p := range present {
		idx := uint32(p.ifindex())
		var info maps.PortInfo
		if err := m.Lookup(idx, &info); err != nil {
			return fmt.Errorf("port %s: read ports[%d]: %w", p.ID, idx, err)
		}
		if info.Flags&maps.PortBridged != 0 {
			continue
		}
		info.Flags |= maps.PortBridged
		if err := m.Put(idx, info); err != nil {
			return fmt.Errorf("port %s: mark bridged: %w", p.ID, err)
		}
		rec.op("bpf/ports", "update", maps.U32KeyString(idx))
	}
	return nil
}

// configValue is the agent-wide config entry, with the kernel's own defaults
// for the outer TTL and UDP source port range (what the vxlan device uses).
func (d *Dataplane) configValue() (maps.ConfigValue, error) {
	// The uplink as it is now: its MAC may have changed since the start.
	if l, err := d.nl.LinkByIndex(d.kernel.uplink.Attrs().Index); err == nil {
		d.kernel.uplink = l
	}
	up := d.kernel.uplink.Attrs()
	c := maps.ConfigValue{
		UplinkIfindex: uint32(up.Index),
		VxlanPort:     maps.BE16(d.opts.VXLANPort),
		Ttl:           64,
		SrcPortMin:    32768,
		SrcPortMax:    60999,
	}
	if !d.opts.Kernel {
		c.Flags |= maps.ConfigForward
	}
	// A running `vxdp monitor`'s flags are its own: an apply keeps them.
	var cur maps.ConfigValue
	if err := d.set.Map(maps.Config).Lookup(uint32(0), &cur); err == nil {
		c.Flags |= cur.Flags & (maps.MonitorDrops | maps.MonitorTrace)
	}
	if d.opts.LocalIP.Is6() {
		c.LocalIp6 = d.opts.LocalIP.As16()
		c.Flags |= maps.ConfigUnderlayIPv6
	} else {
		c.LocalIp = maps.BE32(d.opts.LocalIP)
	}
	copy(c.UplinkMac[:], up.HardwareAddr)
	if d.opts.TTL > 0 {
		c.Ttl = d.opts.TTL
	} else if raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_default_ttl"); err == nil {
		if ttl, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil && ttl > 0 && ttl < 256 {
			c.Ttl = uint8(ttl)
		}
	}
	if raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var lo, hi int
		if _, err := fmt.Sscan(string(raw), &lo, &hi); err == nil && lo > 0 && hi >= lo && hi < 65536 {
			c.SrcPortMin, c.SrcPortMax = uint16(lo), uint16(hi)
		}
	}
	return c, nil
}
