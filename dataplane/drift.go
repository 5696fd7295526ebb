package dataplane

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/maps"
	"github.com/vxdp/vxdp/state"
)

// Drift is one entry where a BPF map or the kernel disagrees with the
// desired state the agent last applied (someone deleted or added it, or it
// points elsewhere). The agent repairs drift at its next apply (resync).
type Drift struct {
	Entry string // fdb, flood, arp, port, network, or a map's name
	VNI   uint32 // 0: not per network
	Key   string // MAC, VTEP or IP address, tap, device, or a map's key
	Place string // e.g. "bpf fdb", "kernel fdb vxlan-100", "kernel neigh vxlan-100", "kernel link"
	Want  string // "": it should not be there
	Have  string // "": it is missing
}

func (d Drift) String() string {
	vni := ""
	if d.VNI != 0 {
		vni = fmt.Sprintf(" (VNI %d)", d.VNI)
	}
	return fmt.Sprintf("%s %s%s in %s: want %s, have %s", d.Entry, d.Key, vni, d.Place, cmp.Or(d.Want, "nothing"), cmp.Or(d.Have, "nothing"))
}

// entries are the entries of one place, key -> value as Drift prints it.
type entries map[string]string

// compare appends a Drift for every key where want and have differ.
func compare(out []Drift, entry string, vni uint32, place string, want, have entries) []Drift {
	keys := make([]string, 0, len(want)+len(have))
	for k := range want {
		keys = append(keys, k)
	}
	for k := range have {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if want[k] != have[k] {
			out = append(out, Drift{Entry: entry, VNI: vni, Key: k, Place: place, Want: want[k], Have: have[k]})
		}
	}
	return out
}

// byVNI holds one map's entries per VNI.
type byVNI map[uint32]entries

func (b byVNI) put(vni uint32, key, value string) {
	if b[vni] == nil {
		b[vni] = entries{}
	}
	b[vni][key] = value
}

// bpfL2 is the l2pop content of the maps, per VNI.
type bpfL2 struct {
	fdb, vteps, arp byVNI
	ports           map[uint32]maps.PortInfo // by ifindex
}

const present = "present"

// fdbProvider is how a remote port of a provider network prints: its
// frames leave by the network's physical interface.
const fdbProvider = "physical interface"

func readBPFL2(set *maps.Set, ifname func(int) string) (*bpfL2, error) {
	b := &bpfL2{fdb: byVNI{}, vteps: byVNI{}, arp: byVNI{}}
	fdb, err := maps.Entries[maps.FDBKey, maps.FDBEntry](set.Map(maps.FDB))
	if err != nil {
		return nil, fmt.Errorf("read fdb: %w", err)
	}
	for k, v := range fdb {
		b.fdb.put(k.Vni, state.MAC(k.Mac).String(), fdbTarget(v, ifname))
	}
	vteps, err := maps.Entries[maps.VNIAddr, uint32](set.Map(maps.VTEPs))
	if err != nil {
		return nil, fmt.Errorf("read vteps: %w", err)
	}
	for k := range vteps {
		b.vteps.put(k.Vni, maps.AddrBE32(k.Addr).String(), present)
	}
	vteps6, err := maps.Entries[maps.VNIAddr6, uint32](set.Map(maps.VTEPs6))
	if err != nil {
		return nil, fmt.Errorf("read vteps6: %w", err)
	}
	for k := range vteps6 {
		b.vteps.put(k.Vni, netip.AddrFrom16(k.Addr).String(), present)
	}
	arp, err := maps.Entries[maps.VNIAddr, maps.MACValue](set.Map(maps.ARP))
	if err != nil {
		return nil, fmt.Errorf("read arp: %w", err)
	}
	for k, v := range arp {
		b.arp.put(k.Vni, maps.AddrBE32(k.Addr).String(), "lladdr "+state.MAC(v.Mac).String())
	}
	if b.ports, err = maps.Entries[uint32, maps.PortInfo](set.Map(maps.Ports)); err != nil {
		return nil, fmt.Errorf("read ports: %w", err)
	}
	return b, nil
}

// fdbTarget prints where an fdb entry sends a MAC, as `bridge fdb` would:
// "dst VTEP" or "dev TAP".
func fdbTarget(v maps.FDBEntry, ifname func(int) string) string {
	switch v.Kind {
	case maps.FDBLocal:
		return "dev " + ifname(int(v.Ifindex))
	case maps.FDBProvider:
		return fdbProvider
	}
	return "dst " + maps.FDBVTEP(v).String()
}

func portValue(p maps.PortInfo) string {
	s := fmt.Sprintf("vni %d mac %s", p.Vni, state.MAC(p.Mac))
	if p.Flags&maps.PortDisabled != 0 {
		s += " disabled"
	}
	return s
}

// kernelL2 is what the kernel holds for one network's vxlan device.
type kernelL2 struct {
	flood, fdb, neigh entries
}

func readKernelL2(nlh *netlink.Handle, vx netlink.Link) (*kernelL2, error) {
	k := &kernelL2{flood: entries{}, fdb: entries{}, neigh: entries{}}
	fdb, err := nlh.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("list fdb of %s: %w", vx.Attrs().Name, err)
	}
	dsts := map[string][]string{}
	for _, n := range fdb {
		ip, ok := netip.AddrFromSlice(n.IP)
		if n.Flags&netlink.NTF_SELF == 0 || !ok || len(n.HardwareAddr) != 6 {
			continue
		}
		if mac := state.MAC(n.HardwareAddr); mac.IsZero() {
			k.flood[ip.Unmap().String()] = present
		} else {
			dsts[mac.String()] = append(dsts[mac.String()], "dst "+ip.Unmap().String())
		}
	}
	for mac, d := range dsts {
		slices.Sort(d)
		k.fdb[mac] = strings.Join(d, ", ")
	}
	neigh, err := nlh.NeighList(vx.Attrs().Index, unix.AF_INET)
	if err != nil {
		return nil, fmt.Errorf("list neighbours of %s: %w", vx.Attrs().Name, err)
	}
	for _, n := range neigh {
		ip, ok := netip.AddrFromSlice(n.IP)
		if n.State&netlink.NUD_PERMANENT != 0 && ok && len(n.HardwareAddr) == 6 {
			k.neigh[ip.Unmap().String()] = "lladdr " + state.MAC(n.HardwareAddr).String()
		}
	}
	return k, nil
}

// findDrift compares the maps and the kernel with the applied record.
func findDrift(nlh *netlink.Handle, set *maps.Set, a *Applied) ([]Drift, error) {
	ifname := func(idx int) string {
		if l, err := nlh.LinkByIndex(idx); err == nil {
			return l.Attrs().Name
		}
		return fmt.Sprintf("ifindex %d", idx)
	}
	bpf, err := readBPFL2(set, ifname)
	if err != nil {
		return nil, err
	}
	var out []Drift
	served := map[uint32]bool{}
	for _, n := range a.Networks {
		served[n.VNI] = true
		want := wantL2(n)
		out = compare(out, "fdb", n.VNI, "bpf fdb", want.bpfFDB, bpf.fdb[n.VNI])
		out = compare(out, "flood", n.VNI, "bpf vteps", want.flood, bpf.vteps[n.VNI])
		out = compare(out, "arp", n.VNI, "bpf arp", want.bpfARP, bpf.arp[n.VNI])
		kd, err := kernelDrift(nlh, n, want, bpf.ports)
		if err != nil {
			return nil, err
		}
		out = append(out, kd...)
	}
	// Entries of networks no longer served here.
	for _, m := range []struct {
		entry, place string
		have         byVNI
	}{{"fdb", "bpf fdb", bpf.fdb}, {"flood", "bpf vteps", bpf.vteps}, {"arp", "bpf arp", bpf.arp}} {
		for vni, have := range m.have {
			if !served[vni] {
				out = compare(out, m.entry, vni, m.place, nil, have)
			}
		}
	}
	nd, err := nexthopDrift(nlh, set)
	if err != nil {
		return nil, err
	}
	out = append(out, nd...)
	gd, err := provenanceDrift(set, a.Provenance)
	if err != nil {
		return nil, err
	}
	out = append(out, gd...)
	slices.SortFunc(out, func(x, y Drift) int {
		return cmp.Or(cmp.Compare(x.VNI, y.VNI), cmp.Compare(x.Entry, y.Entry), cmp.Compare(x.Key, y.Key), cmp.Compare(x.Place, y.Place))
	})
	return out, nil
}

// wantedL2 is what the maps and the kernel should hold for one network.
// The maps send a MAC that is both local and remote (a port migrating
// here) to the tap; the kernel keeps the remote entry, as l2pop pushed it.
type wantedL2 struct {
	bpfFDB, bpfARP, kernelFDB, kernelNeigh, flood entries
}

func wantL2(n AppliedNetwork) wantedL2 {
	w := wantedL2{bpfFDB: entries{}, bpfARP: entries{}, kernelFDB: entries{}, kernelNeigh: entries{}, flood: entries{}}
	for _, v := range n.VTEPs {
		w.flood[v.String()] = present
	}
	for _, p := range n.Local {
		w.bpfFDB[p.MAC.String()] = "dev " + p.Tap
	}
	for _, p := range n.Remote {
		if n.provider() {
			// No l2pop on a provider network: only the maps know its ports.
			if _, local := w.bpfFDB[p.MAC.String()]; !local {
				w.bpfFDB[p.MAC.String()] = fdbProvider
			}
			continue
		}
		mac, dst := p.MAC.String(), "dst "+p.VTEP.String()
		w.kernelFDB[mac] = dst
		_, local := w.bpfFDB[mac]
		if !local {
			w.bpfFDB[mac] = dst
		}
		for _, ip := range p.IPs {
			if ip.Is4() {
				w.kernelNeigh[ip.String()] = "lladdr " + mac
				if !local {
					w.bpfARP[ip.String()] = "lladdr " + mac
				}
			}
		}
	}
	return w
}

// kernelDrift compares one network's kernel objects (bridge, vxlan device
// and its FDB and neighbours, taps on the bridge) and its ports' entries
// with what was applied.
func kernelDrift(nlh *netlink.Handle, n AppliedNetwork, want wantedL2, ports map[uint32]maps.PortInfo) ([]Drift, error) {
	var out []Drift
	link := func(name string) netlink.Link {
		l, err := nlh.LinkByName(name)
		if err != nil {
			return nil
		}
		return l
	}
	master := func(l netlink.Link) string {
		if m := l.Attrs().MasterIndex; m != 0 {
			if ml, err := nlh.LinkByIndex(m); err == nil {
				return "master " + ml.Attrs().Name
			}
			return fmt.Sprintf("master ifindex %d", m)
		}
		return "no master"
	}
	onBridge := "master " + n.Bridge
	br, vx := link(n.Bridge), link(n.VXLAN)
	if br == nil {
		out = append(out, Drift{Entry: "network", VNI: n.VNI, Key: n.Bridge, Place: "kernel link", Want: "bridge"})
	}
	if vx == nil {
		return append(out, Drift{Entry: "network", VNI: n.VNI, Key: n.VXLAN, Place: "kernel link", Want: onBridge}), nil
	}
	if have := master(vx); have != onBridge {
		out = append(out, Drift{Entry: "network", VNI: n.VNI, Key: n.VXLAN, Place: "kernel link", Want: onBridge, Have: have})
	}
	if !n.provider() {
		k, err := readKernelL2(nlh, vx)
		if err != nil {
			return nil, err
		}
		out = compare(out, "flood", n.VNI, "kernel fdb "+n.VXLAN, want.flood, k.flood)
		out = compare(out, "fdb", n.VNI, "kernel fdb "+n.VXLAN, want.kernelFDB, k.fdb)
		out = compare(out, "arp", n.VNI, "kernel neigh "+n.VXLAN, want.kernelNeigh, k.neigh)
	}
	for _, p := range n.Local {
		tap := link(p.Tap)
		if tap == nil {
			continue // gone: the agent drops the port at its next apply
		}
		if have := master(tap); have != onBridge {
			out = append(out, Drift{Entry: "port", VNI: n.VNI, Key: p.Tap, Place: "kernel link", Want: onBridge, Have: have})
		}
		wantPort := portValue(maps.PortInfo{Vni: n.VNI, Mac: p.MAC})
		if have, ok := ports[uint32(tap.Attrs().Index)]; ok && portValue(have) != wantPort {
			out = append(out, Drift{Entry: "port", VNI: n.VNI, Key: p.Tap, Place: "bpf ports", Want: wantPort, Have: portValue(have)})
		}
	}
	return out, nil
}

// l2Maps are the maps compared entry by entry, with values, above; the
// other maps with provenance are compared by key with what the apply
// recorded.
var l2Maps = []string{maps.FDB, maps.VTEPs, maps.ARP, maps.VTEPNextHop}

// nestedProvenance are provenance objects below a map's ("bpf/ports/groups"
// records where a port's groups came from), not keys of the map.
var nestedProvenance = []string{"bpf/ports/groups/"}

// provenanceDrift compares the keys of every other map whose entries come
// from the desired state (networks, ports, port security's allowed
// addresses, redirect targets) with those the apply recorded.
func provenanceDrift(set *maps.Set, prov map[string]string) ([]Drift, error) {
	var out []Drift
	for _, desc := range maps.Descs() {
		if !desc.Provenance || slices.Contains(l2Maps, desc.Name) {
			continue
		}
		prefix := "bpf/" + desc.Name + "/"
		want := entries{}
		for k := range prov {
			nested := slices.ContainsFunc(nestedProvenance, func(n string) bool { return strings.HasPrefix(k, n) })
			if key, ok := strings.CutPrefix(k, prefix); ok && !nested {
				want[key] = present
			}
		}
		t, err := set.Read(desc.Name, maps.DumpOptions{})
		if err != nil {
			return nil, err
		}
		have := entries{}
		for _, r := range t.Rows {
			have[r.Key] = present
		}
		out = compare(out, desc.Name, 0, "bpf "+desc.Name, want, have)
	}
	return out, nil
}

// nexthopDrift compares vtep_nexthop with the kernel, not with the last
// apply: the agent follows the neighbour table between applies, dropping
// an entry while its neighbour is unconfirmed and adding it back later.
// What must never be is an entry whose MAC the kernel no longer has for
// that VTEP's next hop: encapsulated frames would go to the wrong machine.
func nexthopDrift(nlh *netlink.Handle, set *maps.Set) ([]Drift, error) {
	var (
		out []Drift
		k   uint32
		v   maps.MACValue
	)
	neighs := map[int]map[netip.Addr]string{}
	it := set.Map(maps.VTEPNextHop).Iterate()
	for it.Next(&k, &v) {
		vtep := maps.AddrBE32(k)
		have := net.HardwareAddr(v.Mac[:]).String()
		d := Drift{Entry: maps.VTEPNextHop, Key: vtep.String(), Place: "bpf vtep_nexthop", Have: have}
		nh, dev, ok := routeNextHop(nlh, vtep)
		if !ok {
			d.Want = "no entry (no route to the VTEP)"
			out = append(out, d)
			continue
		}
		if neighs[dev] == nil {
			neighs[dev] = map[netip.Addr]string{}
			list, err := nlh.NeighList(dev, unix.AF_INET)
			if err != nil {
				return nil, fmt.Errorf("neighbours of ifindex %d: %w", dev, err)
			}
			for _, n := range list {
				ip, ok := netip.AddrFromSlice(n.IP)
				if ok && len(n.HardwareAddr) == 6 && n.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE) == 0 {
					neighs[dev][ip.Unmap()] = n.HardwareAddr.String()
				}
			}
		}
		if want, ok := neighs[dev][nh]; !ok || want != have {
			d.Want = cmp.Or(want, "no entry (the kernel has no neighbour "+nh.String()+")")
			d.Place += " (kernel neighbour " + nh.String() + ")"
			out = append(out, d)
		}
	}
	return out, it.Err()
}
