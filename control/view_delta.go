package control

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"

	"github.com/vxdp/vxdp/state"
)

// incremental keeps the host's state up to date with the view: every
// change marks what it can affect (ports, networks, the local part), and
// flush re-evaluates only those, recording what the state gains and loses
// since the last state sent. The remote ports, the bulk of a state, are
// evaluated one by one (O(1) per port event); the local part — networks,
// local ports and security groups, small — is recomputed whole when it
// may change, and compared.
//
// While off (loading a view from scratch) nothing is tracked: the first
// state is a full build, from which reset sets what the state holds.
type incremental struct {
	on    bool
	dirty map[*netView]map[pid]struct{} // ports to re-evaluate
	nets  map[pid]bool                  // network entries to rebuild
	local bool                          // the local part to recompute

	// What the state holds besides the remote ports (those are flagged
	// in their entries, flagEmitted).
	outNets   map[string]state.Network
	outLocal  map[string]state.LocalPort
	outGroups map[string]state.SecurityGroup

	acc       accumulator
	conflicts []*RecordError
}

func (inc *incremental) init() {
	inc.dirty = map[*netView]map[pid]struct{}{}
	inc.nets = map[pid]bool{}
	inc.outNets, inc.outLocal, inc.outGroups = map[string]state.Network{}, map[string]state.LocalPort{}, map[string]state.SecurityGroup{}
	inc.acc.init()
}

func (inc *incremental) portDirty(nv *netView, id pid) {
	if !inc.on {
		return
	}
	m := inc.dirty[nv]
	if m == nil {
		m = map[pid]struct{}{}
		inc.dirty[nv] = m
	}
	m[id] = struct{}{}
}

func (inc *incremental) networkChanged(nv *netView) {
	inc.local = true
	inc.nets[nv.id] = true
}

func (inc *incremental) vtepsChanged(nv *netView) { inc.nets[nv.id] = true }

func (inc *incremental) localChanged() { inc.local = true }

// forget drops what is tracked of a network no longer followed.
func (inc *incremental) forget(nv *netView) { delete(inc.dirty, nv) }

// unemit takes entry e of port id out of the state (before it changes).
func (v *view) unemit(nv *netView, id pid, e portEntry) {
	if !e.emitted() {
		return
	}
	if v.inc.on {
		p := v.remotePort(v.ids.name(nv.id), id, e, e.emVTEP)
		v.inc.acc.remotes.remove(state.RemotePortKey(p), p)
	}
	if e.emVTEP != 0 {
		v.vtepRef(nv, e.emVTEP, e.host, -1)
	}
}

// remotePort is the state's entry of remote port id of network netID at
// VTEP vtep (none on a provider network).
func (v *view) remotePort(netID string, id pid, e portEntry, vtep vtepID) state.RemotePort {
	return v.remotePortIPs(PortKey(netID, ""), netID, id, e, vtep, e.ips())
}

// remotePortIPs is remotePort with the port's IPs and the network's
// port-key prefix given. The port's key is made in one piece, its id a
// part of it.
func (v *view) remotePortIPs(prefix, netID string, id pid, e portEntry, vtep vtepID, ips []netip.Addr) state.RemotePort {
	key := v.ids.key(prefix, id)
	return state.RemotePort{ID: key[len(prefix):], NetworkID: netID, MAC: e.mac, IPs: ips, VTEP: v.vtepIDs.addr(vtep),
		Source: v.source(key, e.rev)}
}

// vtepRef counts host's remote ports in the state at vtep.
func (v *view) vtepRef(nv *netView, vtep vtepID, h hostID, delta int) {
	hosts := nv.vteps[vtep]
	if hosts == nil {
		hosts = map[hostID]int{}
		nv.vteps[vtep] = hosts
	}
	n := hosts[h] + delta
	switch {
	case n <= 0:
		delete(hosts, h)
		if len(hosts) == 0 {
			delete(nv.vteps, vtep)
		}
		v.inc.vtepsChanged(nv)
	case n == 1 && delta > 0:
		hosts[h] = n
		v.inc.vtepsChanged(nv)
	default:
		hosts[h] = n
	}
}

// evalPort puts port id into the state or takes it out, as the view says.
func (v *view) evalPort(nv *netView, id pid) {
	e, ok := nv.ports[id]
	if !ok {
		return
	}
	remote := e.host != 0 && e.host != v.self && e.active()
	want := remote && nv.kept && nv.byMAC[e.mac] == id
	var vtep vtepID
	if want {
		vtep, want = v.remoteVTEP(nv, e.host)
	}
	if remote && nv.kept && nv.byMAC[e.mac] != id {
		v.macConflict(nv, id, e)
	}
	if e.emitted() && (!want || vtep != e.emVTEP) {
		v.unemit(nv, id, e)
		e.flags &^= flagEmitted
	}
	if want && !e.emitted() {
		p := v.remotePort(v.ids.name(nv.id), id, e, vtep)
		v.inc.acc.remotes.put(state.RemotePortKey(p), p)
		if vtep != 0 {
			v.vtepRef(nv, vtep, e.host, 1)
		}
		e.flags |= flagEmitted
		e.emVTEP = vtep
	}
	nv.ports[id] = e
}

// remoteVTEP is where a remote port bound to host h is reached: on a
// provider network, the physical network (no VTEP); otherwise the host's
// registered VTEP. A port of an unregistered host (or one registered at
// our VTEP) cannot be reached (ok false); it comes in with the
// registration.
func (v *view) remoteVTEP(nv *netView, h hostID) (vtep vtepID, ok bool) {
	if nv.net != nil && nv.net.Rec.Provider() {
		return 0, true
	}
	reg := v.registrations[h].Rec
	if reg == nil || reg.VTEP == v.ownVTEP {
		return 0, false
	}
	return v.vtepIDs.of(reg.VTEP), true
}

func (v *view) macConflict(nv *netView, id pid, e portEntry) {
	win := nv.byMAC[e.mac]
	netID := v.ids.name(nv.id)
	v.inc.conflicts = append(v.inc.conflicts, &RecordError{Key: PortKey(netID, v.ids.name(id)), Reason: RejectConflict,
		Err: fmt.Errorf("mac %s is already used by port %s on network %s", e.mac, v.ids.name(win), netID)})
}

// flush re-evaluates what changed since the last flush.
func (v *view) flush() {
	inc := &v.inc
	if !inc.on {
		return
	}
	if inc.local {
		inc.local = false
		v.recomputeLocal()
	}
	for nv, ids := range inc.dirty {
		for id := range ids {
			v.evalPort(nv, id)
		}
	}
	clear(inc.dirty)
	for id := range inc.nets {
		nv := v.nets[id]
		name := v.ids.name(id)
		old, had := inc.outNets[name]
		if nv == nil || !nv.kept {
			if had {
				inc.acc.nets.remove(name, old)
				delete(inc.outNets, name)
			}
			continue
		}
		n := v.networkEntry(nv)
		if had {
			inc.acc.nets.remove(name, old)
		}
		inc.acc.nets.put(name, n)
		inc.outNets[name] = n
	}
	clear(inc.nets)
}

// networkEntry is the state's entry of a kept network: its VTEPs are
// those of its remote ports in the state, each from the registration of
// the first of its hosts (by name).
func (v *view) networkEntry(nv *netView) state.Network { return v.networkWith(nv, nv.vteps) }

// networkWith is the state's entry of network nv with the VTEPs of vteps.
func (v *view) networkWith(nv *netView, vteps map[vtepID]map[hostID]int) state.Network {
	id := v.ids.name(nv.id)
	n := networkState(id, *nv.net, v.source(NetworkKey(id), nv.net.Rev))
	n.VTEPs = v.vtepList(vteps)
	return n
}

// vtepList lists VTEPs by address, each from the registration of the
// first of its hosts by name.
func (v *view) vtepList(vteps map[vtepID]map[hostID]int) []state.VTEP {
	out := make([]state.VTEP, 0, len(vteps))
	for ip, hosts := range vteps {
		first := ""
		for h := range hosts {
			if name := v.hosts.name(h); first == "" || name < first {
				first = name
			}
		}
		h, _ := v.hosts.find(first)
		out = append(out, state.VTEP{IP: v.vtepIDs.addr(ip), Source: v.source(RegistrationKey(first), v.registrations[h].Rev)})
	}
	slices.SortFunc(out, func(a, b state.VTEP) int { return a.IP.Compare(b.IP) })
	return out
}

// localState is the part of the state recomputed whole: the networks kept
// (with a local port), the local ports and the security groups.
type localState struct {
	kept      map[pid]bool
	locals    []state.LocalPort
	groups    []state.SecurityGroup
	conflicts []*RecordError
}

// computeLocal computes the local part. A network takes part when it has a
// record and a port bound here; of two with one segment (VNI, VLAN or flat
// physical network) the older record wins. A local port takes part when it holds its MAC on its network
// (winner: of the local and ACTIVE remote ports with a MAC, the oldest)
// and its tap is its own (the first port by network and port id keeps a
// tap).
func (v *view) computeLocal(winner func(nv *netView, mac state.MAC) pid) localState {
	lp := localState{kept: map[pid]bool{}}
	conflict := func(key string, format string, args ...any) {
		lp.conflicts = append(lp.conflicts, &RecordError{Key: key, Reason: RejectConflict, Err: fmt.Errorf(format, args...)})
	}
	byNet := map[pid][]pid{}
	for port, netID := range v.local {
		byNet[netID] = append(byNet[netID], port)
	}
	var cands []*netView
	for id := range byNet {
		if nv := v.nets[id]; nv.net != nil {
			cands = append(cands, nv)
		}
	}
	slices.SortFunc(cands, func(a, b *netView) int { return cmp.Or(cmp.Compare(a.net.Rev, b.net.Rev), v.ids.compare(a.id, b.id)) })
	segments := map[string]string{}
	kept := cands[:0]
	for _, nv := range cands {
		name := v.ids.name(nv.id)
		seg := nv.net.Rec.segment()
		if other, dup := segments[seg]; dup {
			conflict(NetworkKey(name), "%s is already used by network %s", seg, other)
			continue
		}
		segments[seg] = name
		kept = append(kept, nv)
	}
	slices.SortFunc(kept, func(a, b *netView) int { return v.ids.compare(a.id, b.id) })
	taps := map[string]string{}
	for _, nv := range kept {
		netID := v.ids.name(nv.id)
		ports := byNet[nv.id]
		slices.SortFunc(ports, v.ids.compare)
		n := 0
		for _, id := range ports {
			e := nv.ports[id]
			if win := winner(nv, e.mac); win != id {
				conflict(PortKey(netID, v.ids.name(id)), "mac %s is already used by port %s on network %s", e.mac, v.ids.name(win), netID)
				continue
			}
			rec := e.more.rec
			tap := rec.Tap()
			if other, dup := taps[tap]; dup {
				conflict(PortKey(netID, rec.ID), "tap %s is already used by port %s", tap, other)
				continue
			}
			taps[tap] = rec.ID
			ps := rec.PortSecurity
			lp.locals = append(lp.locals, state.LocalPort{
				ID: rec.ID, NetworkID: netID, MAC: rec.MAC, IPs: rec.FixedIPs, Tap: tap,
				PortSecurity: &ps, AllowedAddressPairs: rec.AllowedAddressPairs,
				SecurityGroups: rec.SecurityGroups, DNSName: rec.DNSName, Source: v.source(PortKey(netID, rec.ID), e.rev),
			})
			n++
		}
		if n > 0 {
			lp.kept[nv.id] = true
		}
	}
	var sgConflicts []*RecordError
	lp.groups, sgConflicts = v.securityGroups(lp.locals)
	lp.conflicts = append(lp.conflicts, sgConflicts...)
	return lp
}

// recomputeLocal recomputes the local part and records what changed; the
// remote ports of networks that enter or leave the state are re-evaluated.
func (v *view) recomputeLocal() {
	inc := &v.inc
	lp := v.computeLocal(func(nv *netView, mac state.MAC) pid { return nv.byMAC[mac] })
	inc.conflicts = append(inc.conflicts, lp.conflicts...)
	for id, nv := range v.nets {
		if lp.kept[id] == nv.kept {
			continue
		}
		nv.kept = lp.kept[id]
		inc.nets[id] = true
		for port := range nv.ports {
			inc.portDirty(nv, port)
		}
	}
	locals := make(map[string]state.LocalPort, len(lp.locals))
	for _, p := range lp.locals {
		locals[state.LocalPortKey(p)] = p
	}
	diffInto(&inc.acc.locals, inc.outLocal, locals)
	inc.outLocal = locals
	groups := make(map[string]state.SecurityGroup, len(lp.groups))
	for _, g := range lp.groups {
		groups[g.ID] = g
	}
	diffInto(&inc.acc.groups, inc.outGroups, groups)
	inc.outGroups = groups
}

// diffInto records in c how was became is.
func diffInto[T any](c *changeSet[string, T], was, is map[string]T) {
	for k, old := range was {
		if cur, ok := is[k]; !ok || !reflect.DeepEqual(old, cur) {
			c.remove(k, old)
		}
	}
	for k, cur := range is {
		if old, ok := was[k]; !ok || !reflect.DeepEqual(old, cur) {
			c.put(k, cur)
		}
	}
}

// take returns the changes recorded since the last take.
func (inc *incremental) take(from, revision uint64) *state.Delta {
	d := &state.Delta{From: from, Revision: revision}
	d.Networks = inc.acc.nets.take()
	d.LocalPorts = inc.acc.locals.take()
	d.RemotePorts = inc.acc.remotes.take()
	d.SecurityGroups = inc.acc.groups.take()
	return d
}

// materialize is the state the view holds (incremental): what it sent,
// with every delta since.
func (v *view) materialize() *state.Desired {
	d := &state.Desired{}
	for _, n := range v.inc.outNets {
		d.Networks = append(d.Networks, n)
	}
	d.LocalPorts = slices.Collect(maps.Values(v.inc.outLocal))
	d.SecurityGroups = slices.Collect(maps.Values(v.inc.outGroups))
	for _, nv := range v.nets {
		netID := v.ids.name(nv.id)
		for id, e := range nv.ports {
			if e.emitted() {
				d.RemotePorts = append(d.RemotePorts, v.remotePort(netID, id, e, e.emVTEP))
			}
		}
	}
	d.Sort()
	return d
}

// reset makes what the view holds as sent exactly d (a full state built
// from the view), and starts tracking changes from there.
func (v *view) reset(d *state.Desired) {
	inc := &v.inc
	inc.on = true
	clear(inc.dirty)
	clear(inc.nets)
	inc.local = false
	inc.acc.init()
	inc.conflicts = nil
	kept := map[string]bool{}
	inc.outNets = make(map[string]state.Network, len(d.Networks))
	for _, n := range d.Networks {
		inc.outNets[n.ID] = n
		kept[n.ID] = true
	}
	inc.outLocal = make(map[string]state.LocalPort, len(d.LocalPorts))
	for _, p := range d.LocalPorts {
		inc.outLocal[state.LocalPortKey(p)] = p
	}
	inc.outGroups = make(map[string]state.SecurityGroup, len(d.SecurityGroups))
	for _, g := range d.SecurityGroups {
		inc.outGroups[g.ID] = g
	}
	for _, nv := range v.nets {
		nv.kept = kept[v.ids.name(nv.id)]
		clear(nv.vteps)
		for id, e := range nv.ports {
			if e.emitted() {
				e.flags &^= flagEmitted
				nv.ports[id] = e
			}
		}
	}
	for _, p := range d.RemotePorts {
		nv := v.net(p.NetworkID)
		id, ok := v.ids.find(p.ID)
		if nv == nil || !ok {
			continue
		}
		e := nv.ports[id]
		e.flags |= flagEmitted
		e.emVTEP = v.vtepIDs.of(p.VTEP)
		nv.ports[id] = e
		if e.emVTEP != 0 {
			v.vtepRef(nv, e.emVTEP, e.host, 1)
		}
	}
	clear(inc.nets) // vtepRef marked them: nothing changed
}

// accumulator collects the changes of the state between two updates: per
// entry, its value before the first change and after the last.
type accumulator struct {
	nets    changeSet[string, state.Network]
	locals  changeSet[string, state.LocalPort]
	remotes changeSet[state.RemoteKey, state.RemotePort]
	groups  changeSet[string, state.SecurityGroup]
}

func (a *accumulator) init() {
	a.nets.m, a.locals.m, a.groups.m = map[string]*change[state.Network]{}, map[string]*change[state.LocalPort]{}, map[string]*change[state.SecurityGroup]{}
	a.remotes.m = map[state.RemoteKey]*change[state.RemotePort]{}
}

// empty reports whether no change is recorded.
func (a *accumulator) empty() bool {
	return len(a.nets.m)+len(a.locals.m)+len(a.remotes.m)+len(a.groups.m) == 0
}

type change[T any] struct {
	old, new *T // nil: absent
}

type changeSet[K comparable, T any] struct {
	m map[K]*change[T]
}

func (c *changeSet[K, T]) remove(k K, old T) {
	if ch, ok := c.m[k]; ok {
		ch.new = nil
		return
	}
	c.m[k] = &change[T]{old: &old}
}

func (c *changeSet[K, T]) put(k K, v T) {
	if ch, ok := c.m[k]; ok {
		ch.new = &v
		return
	}
	c.m[k] = &change[T]{new: &v}
}

// take returns the changes, without entries that came back as they were,
// and forgets them.
func (c *changeSet[K, T]) take() state.Changes[T] {
	var out state.Changes[T]
	for _, ch := range c.m {
		out.Record(ch.old, ch.new)
	}
	clear(c.m)
	return out
}
