package dataplane

import (
	"fmt"
	"net/netip"
	"os"
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

func u32Key(k uint32) string { return strconv.FormatUint(uint64(k), 10) }

// bpfWant is the content every map should have.
type bpfWant struct {
	config    map[uint32]maps.ConfigValue
	networks  map[uint32]maps.NetInfo
	vteps     map[maps.VNIAddr]uint32
	ports     map[uint32]maps.PortInfo
	portAddrs map[maps.PortAddrKey]maps.MACValue
	txPorts   map[uint32]uint32
	arp       map[maps.VNIAddr]maps.MACValue
	fdb       map[maps.FDBKey]maps.FDBEntry
}

func (d *Dataplane) buildBPF(want *state.Desired, nets map[string]*kernelNet, present []localPort, rec *recorder) (*bpfWant, error) {
	cfg, err := d.configValue()
	if err != nil {
		return nil, err
	}
	w := &bpfWant{
		config:    map[uint32]maps.ConfigValue{0: cfg},
		networks:  map[uint32]maps.NetInfo{},
		vteps:     map[maps.VNIAddr]uint32{},
		ports:     map[uint32]maps.PortInfo{},
		portAddrs: map[maps.PortAddrKey]maps.MACValue{},
		txPorts:   map[uint32]uint32{},
		arp:       map[maps.VNIAddr]maps.MACValue{},
		fdb:       map[maps.FDBKey]maps.FDBEntry{},
	}
	vniOf := map[string]uint32{}
	for _, n := range want.Networks {
		kn := nets[n.ID]
		vniOf[n.ID] = n.VNI
		w.networks[n.VNI] = maps.NetInfo{VxlanIfindex: uint32(kn.vxlan.Attrs().Index), Mtu: uint16(kn.mtu)}
		rec.source("bpf/networks", u32Key(n.VNI), n.Source)
		for _, v := range want.FloodList(n.ID) {
			k := maps.NewVNIAddr(n.VNI, v.IP)
			w.vteps[k] = 0
			rec.source("bpf/vteps", maps.VNIAddrKeyString(k), v.Source)
		}
	}
	for _, p := range present {
		idx := uint32(p.ifindex())
		info := maps.PortInfo{Vni: p.net.vni, Mtu: uint16(p.net.mtu), Mac: p.MAC}
		if p.SecurityEnabled() {
			info.Flags |= maps.PortSecurity
			for _, ip := range p.IPs {
				if ip.Is4() {
					k := maps.NewPortAddrKey(idx, netip.PrefixFrom(ip, 32))
					w.portAddrs[k] = maps.MACValue{Mac: p.MAC}
					rec.source("bpf/port_addrs", maps.PortAddrKeyString(k), p.Source)
				}
			}
			for _, ap := range p.AllowedAddressPairs {
				if !ap.IP.Addr().Is4() {
					continue
				}
				mac := ap.MAC
				if mac.IsZero() {
					mac = p.MAC
				}
				k := maps.NewPortAddrKey(idx, ap.IP)
				w.portAddrs[k] = maps.MACValue{Mac: mac}
				rec.source("bpf/port_addrs", maps.PortAddrKeyString(k), p.Source)
			}
		}
		w.ports[idx] = info
		w.txPorts[idx] = idx
		fk := maps.NewFDBKey(p.net.vni, p.MAC)
		w.fdb[fk] = maps.FDBEntry{Kind: maps.FDBLocal, Ifindex: idx}
		rec.source("bpf/ports", u32Key(idx), p.Source)
		rec.source("bpf/tx_ports", u32Key(idx), p.Source)
		rec.source("bpf/fdb", maps.FDBKeyString(fk), p.Source)
	}
	for _, p := range want.RemotePorts {
		vni := vniOf[p.NetworkID]
		fk := maps.NewFDBKey(vni, p.MAC)
		if _, local := w.fdb[fk]; local {
			continue // a port migrating here: the local entry wins
		}
		w.fdb[fk] = maps.FDBEntry{Kind: maps.FDBRemote, Vtep: maps.BE32(p.VTEP)}
		rec.source("bpf/fdb", maps.FDBKeyString(fk), p.Source)
		for _, ip := range p.IPs {
			if ip.Is4() {
				k := maps.NewVNIAddr(vni, ip)
				w.arp[k] = maps.MACValue{Mac: p.MAC}
				rec.source("bpf/arp", maps.VNIAddrKeyString(k), p.Source)
			}
		}
	}
	return w, nil
}

// syncBPF brings the maps and attachments to the desired state. Entries are
// added in dependency order (what an entry points at first), programs are
// attached once their maps are filled, and removals run in reverse.
func (d *Dataplane) syncBPF(want *state.Desired, nets map[string]*kernelNet, present []localPort, rec *recorder) error {
	w, err := d.buildBPF(want, nets, present, rec)
	if err != nil {
		return err
	}
	var steps []mapStep
	for _, s := range []func() (mapStep, error){
		func() (mapStep, error) { return plan(d.set, maps.Config, w.config, u32Key) },
		func() (mapStep, error) { return plan(d.set, maps.Networks, w.networks, u32Key) },
		func() (mapStep, error) { return plan(d.set, maps.VTEPs, w.vteps, maps.VNIAddrKeyString) },
		func() (mapStep, error) { return plan(d.set, maps.Ports, w.ports, u32Key) },
		func() (mapStep, error) { return plan(d.set, maps.PortAddrs, w.portAddrs, maps.PortAddrKeyString) },
		func() (mapStep, error) { return plan(d.set, maps.TxPorts, w.txPorts, u32Key) },
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

	uplink := d.kernel.uplink.Attrs()
	if added, err := d.att.attachUplink(uplink.Name, uplink.Index); err != nil {
		return err
	} else if added {
		rec.op("bpf/xdp", "add", uplink.Name)
	}
	installed := map[string]int{}
	for _, p := range present {
		tap := p.TapName()
		added, err := d.att.attachPort(tap, p.ifindex())
		if err != nil {
			return fmt.Errorf("port %s: %w", p.ID, err)
		}
		if added {
			rec.op("bpf/tc", "add", tap)
		}
		installed[tap] = p.ifindex()
	}
	pinned, err := d.att.pinnedPorts()
	if err != nil {
		return err
	}
	for _, tap := range pinned {
		if _, ok := installed[tap]; ok {
			continue
		}
		if err := d.att.detach("tc", tap); err != nil {
			return err
		}
		rec.op("bpf/tc", "remove", tap)
	}

	for i := len(steps) - 1; i >= 0; i-- {
		if err := steps[i].delete(); err != nil {
			return err
		}
		steps[i].record(rec)
	}
	return nil
}

// configValue is the agent-wide config entry, with the kernel's own defaults
// for the outer TTL and UDP source port range (what the vxlan device uses).
func (d *Dataplane) configValue() (maps.ConfigValue, error) {
	up := d.kernel.uplink.Attrs()
	c := maps.ConfigValue{
		LocalIp:       maps.BE32(d.opts.LocalIP),
		UplinkIfindex: uint32(up.Index),
		VxlanPort:     maps.BE16(d.opts.VXLANPort),
		Ttl:           64,
		SrcPortMin:    32768,
		SrcPortMax:    60999,
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
