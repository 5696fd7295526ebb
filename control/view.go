package control

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/vxdp/vxdp/state"
)

// rev is a decoded record with the revision that wrote it (and, for
// ports, its key: the Source of every state entry it makes).
type rev[T any] struct {
	Rev uint64
	Rec *T
	Key string
}

// netView is what an agent knows of one network it follows.
type netView struct {
	net    *rev[NetworkRecord]
	ports  map[string]rev[PortRecord]
	status map[statusID]rev[StatusRecord]
	// own are the statuses this host wrote, by port (a subset of status).
	own map[string]rev[StatusRecord]
}

type statusID struct{ port, host string }

func newNetView() *netView {
	return &netView{ports: map[string]rev[PortRecord]{}, status: map[statusID]rev[StatusRecord]{}, own: map[string]rev[StatusRecord]{}}
}

// view is an agent's copy of the part of the bucket it follows: its
// bindings and agent record, every host registration (VTEPs), the networks
// it hosts, the security groups of its ports and the members and address
// groups their rules name as remotes. Records are immutable once stored.
type view struct {
	host          string
	bindings      map[string]rev[BindingRecord]      // by port id
	agents        map[string]rev[AgentRecord]        // by host: its own only
	registrations map[string]rev[RegistrationRecord] // by host
	nets          map[string]*netView                // followed networks, by id
	sgs           map[string]rev[SecurityGroupRecord]
	members       map[string]map[string]rev[MemberRecord] // by group, then port
	addrGroups    map[string]rev[AddressGroupRecord]
	// local indexes the ports bound to this host: port id -> network id.
	local map[string]string
	// seen holds the revision of deletions and rejected updates per key,
	// so that a message delivered twice is applied once. Entries at or
	// below the watermark are pruned: nothing older is delivered again.
	seen map[string]uint64
}

func newView(host string) *view {
	return &view{
		host:          host,
		bindings:      map[string]rev[BindingRecord]{},
		agents:        map[string]rev[AgentRecord]{},
		registrations: map[string]rev[RegistrationRecord]{},
		nets:          map[string]*netView{},
		sgs:           map[string]rev[SecurityGroupRecord]{},
		members:       map[string]map[string]rev[MemberRecord]{},
		addrGroups:    map[string]rev[AddressGroupRecord]{},
		local:         map[string]string{},
		seen:          map[string]uint64{},
	}
}

// follows reports whether key is inside the followed part of the bucket.
func (v *view) follows(k Key) bool {
	switch k.Kind {
	case KindNetwork, KindPort, KindStatus:
		return v.nets[k.Network] != nil
	case KindAgent, KindBinding:
		return k.Host == v.host
	case KindRegistration:
		return true
	case KindSecGroup, KindMember, KindAddressGroup:
		return true
	}
	return false
}

// storedRev is the revision of what the view holds for key (0 if nothing).
func (v *view) storedRev(k Key) uint64 {
	switch k.Kind {
	case KindNetwork:
		if nv := v.nets[k.Network]; nv != nil && nv.net != nil {
			return nv.net.Rev
		}
	case KindPort:
		if nv := v.nets[k.Network]; nv != nil {
			return nv.ports[k.Port].Rev
		}
	case KindStatus:
		if nv := v.nets[k.Network]; nv != nil {
			return nv.status[statusID{k.Port, k.Host}].Rev
		}
	case KindAgent:
		return v.agents[k.Host].Rev
	case KindRegistration:
		return v.registrations[k.Host].Rev
	case KindBinding:
		return v.bindings[k.Port].Rev
	case KindSecGroup:
		return v.sgs[k.SG].Rev
	case KindMember:
		return v.members[k.SG][k.Port].Rev
	case KindAddressGroup:
		return v.addrGroups[k.AG].Rev
	}
	return 0
}

// apply folds one message into the view. It reports whether the change
// can alter the host's Desired (a rewrite of a status with the same
// meaning, a security group's rules, the agent record or another field of
// a registration than its VTEP cannot), and returns the rejection of an invalid record,
// which leaves the last valid version of the key in place.
func (v *view) apply(e kvEntry) (bool, error) {
	k := ParseKey(e.Key)
	if !v.follows(k) {
		return false, nil
	}
	if e.Rev <= max(v.storedRev(k), v.seen[e.Key]) {
		return false, nil
	}
	before := v.meaning(k)
	if e.Deleted {
		v.seen[e.Key] = e.Rev
		v.remove(k)
		return v.meaning(k) != before, nil
	}
	_, rec, err := DecodeRecord(e.Key, e.Value)
	if err != nil {
		v.seen[e.Key] = e.Rev
		return false, err
	}
	delete(v.seen, e.Key)
	v.store(k, e.Rev, rec)
	return v.meaning(k) != before, nil
}

// meaning is what a key contributes to the Desired, for change detection:
// the record itself for networks, bindings, local ports, ACTIVE remote
// ports, security groups, members and address groups (their rules and
// addresses are resolved into the Desired); the effective status for
// statuses; the VTEP for registrations; nothing for the agent record.
func (v *view) meaning(k Key) any {
	switch k.Kind {
	case KindNetwork:
		if nv := v.nets[k.Network]; nv != nil && nv.net != nil {
			return nv.net.Rec
		}
	case KindPort:
		// A port of another host counts only while it is ACTIVE there:
		// creating or binding one changes nothing until its host says so.
		if nv := v.nets[k.Network]; nv != nil {
			if p, ok := nv.ports[k.Port]; ok {
				if p.Rec.Host == v.host {
					return p.Rec
				}
				if st, ok := nv.status[statusID{p.Rec.ID, p.Rec.Host}]; ok && effectiveStatus(p.Rec, st.Rec) == StatusActive {
					return p.Rec
				}
			}
		}
	case KindStatus:
		nv := v.nets[k.Network]
		if nv == nil {
			return nil
		}
		p, ok := nv.ports[k.Port]
		if !ok || p.Rec.Host != k.Host {
			return nil
		}
		st, ok := nv.status[statusID{k.Port, k.Host}]
		if !ok {
			return StatusDown
		}
		return effectiveStatus(p.Rec, st.Rec)
	case KindRegistration:
		if r, ok := v.registrations[k.Host]; ok {
			return r.Rec.VTEP
		}
	case KindBinding:
		if b, ok := v.bindings[k.Port]; ok {
			return b.Rec
		}
	case KindSecGroup:
		if g, ok := v.sgs[k.SG]; ok {
			return g.Rec
		}
	case KindMember:
		if m, ok := v.members[k.SG][k.Port]; ok {
			return m.Rec
		}
	case KindAddressGroup:
		if ag, ok := v.addrGroups[k.AG]; ok {
			return ag.Rec
		}
	}
	return nil
}

func (v *view) store(k Key, r uint64, rec any) {
	switch rec := rec.(type) {
	case *NetworkRecord:
		v.nets[k.Network].net = &rev[NetworkRecord]{Rev: r, Rec: rec}
	case *PortRecord:
		// Share the network id string of the key: 100k ports, one string.
		rec.NetworkID = k.Network
		if r, ok := v.registrations[rec.Host]; ok {
			rec.Host = r.Rec.Host
		}
		v.nets[k.Network].ports[k.Port] = rev[PortRecord]{r, rec, PortKey(k.Network, k.Port)}
		if rec.Host == v.host {
			v.local[k.Port] = k.Network
		} else if v.local[k.Port] == k.Network {
			delete(v.local, k.Port)
		}
	case *StatusRecord:
		nv := v.nets[k.Network]
		nv.status[statusID{k.Port, k.Host}] = rev[StatusRecord]{Rev: r, Rec: rec}
		if k.Host == v.host {
			nv.own[k.Port] = nv.status[statusID{k.Port, k.Host}]
		}
	case *AgentRecord:
		v.agents[k.Host] = rev[AgentRecord]{Rev: r, Rec: rec}
	case *RegistrationRecord:
		v.registrations[k.Host] = rev[RegistrationRecord]{Rev: r, Rec: rec}
	case *BindingRecord:
		v.bindings[k.Port] = rev[BindingRecord]{Rev: r, Rec: rec}
	case *SecurityGroupRecord:
		v.sgs[k.SG] = rev[SecurityGroupRecord]{Rev: r, Rec: rec}
	case *MemberRecord:
		if v.members[k.SG] == nil {
			v.members[k.SG] = map[string]rev[MemberRecord]{}
		}
		v.members[k.SG][k.Port] = rev[MemberRecord]{Rev: r, Rec: rec}
	case *AddressGroupRecord:
		v.addrGroups[k.AG] = rev[AddressGroupRecord]{Rev: r, Rec: rec}
	}
}

func (v *view) remove(k Key) bool {
	switch k.Kind {
	case KindNetwork:
		nv := v.nets[k.Network]
		had := nv.net != nil
		nv.net = nil
		return had
	case KindPort:
		nv := v.nets[k.Network]
		_, had := nv.ports[k.Port]
		delete(nv.ports, k.Port)
		if v.local[k.Port] == k.Network {
			delete(v.local, k.Port)
		}
		return had
	case KindStatus:
		nv := v.nets[k.Network]
		id := statusID{k.Port, k.Host}
		_, had := nv.status[id]
		delete(nv.status, id)
		if k.Host == v.host {
			delete(nv.own, k.Port)
		}
		return had
	case KindAgent:
		_, had := v.agents[k.Host]
		delete(v.agents, k.Host)
		return had
	case KindRegistration:
		_, had := v.registrations[k.Host]
		delete(v.registrations, k.Host)
		return had
	case KindBinding:
		_, had := v.bindings[k.Port]
		delete(v.bindings, k.Port)
		return had
	case KindSecGroup:
		_, had := v.sgs[k.SG]
		delete(v.sgs, k.SG)
		return had
	case KindMember:
		_, had := v.members[k.SG][k.Port]
		delete(v.members[k.SG], k.Port)
		return had
	case KindAddressGroup:
		_, had := v.addrGroups[k.AG]
		delete(v.addrGroups, k.AG)
		return had
	}
	return false
}

// prune forgets duplicate-detection entries at or below the watermark.
func (v *view) prune(watermark uint64) {
	for k, r := range v.seen {
		if r <= watermark {
			delete(v.seen, k)
		}
	}
}

// wanted is the part of the bucket the agent must follow given what it
// knows: the networks its bindings name, and refs: the security groups of
// its local ports (SecGroupKey), the members of the groups their rules
// name as remote group (MembersFilter) and the address groups they name
// (AddressGroupKey), by filter.
type wanted struct {
	nets map[string]bool
	refs map[string]bool
}

func (v *view) wanted() wanted {
	w := wanted{nets: map[string]bool{}, refs: map[string]bool{}}
	for _, b := range v.bindings {
		w.nets[b.Rec.NetworkID] = true
	}
	for portID, netID := range v.local {
		if w.nets[netID] {
			for f := range v.portRefs(v.nets[netID].ports[portID].Rec) {
				w.refs[f] = true
			}
		}
	}
	return w
}

// portRefs are the ref filters a local port needs: its groups, and the
// remote groups' members and address groups of their rules (of the groups
// the view holds).
func (v *view) portRefs(p *PortRecord) map[string]bool {
	out := map[string]bool{}
	for _, sg := range p.SecurityGroups {
		out[SecGroupKey(sg)] = true
		g, ok := v.sgs[sg]
		if !ok {
			continue
		}
		for _, r := range g.Rec.Rules {
			if r.RemoteGroupID != "" {
				out[MembersFilter(r.RemoteGroupID)] = true
			}
			if r.RemoteAddressGroupID != "" {
				out[AddressGroupKey(r.RemoteAddressGroupID)] = true
			}
		}
	}
	return out
}

// followNetwork and dropNetwork change the followed set.
func (v *view) followNetwork(id string) {
	if v.nets[id] == nil {
		v.nets[id] = newNetView()
	}
}

func (v *view) dropNetwork(id string) {
	if nv := v.nets[id]; nv != nil {
		for portID := range nv.ports {
			if v.local[portID] == id {
				delete(v.local, portID)
			}
		}
	}
	delete(v.nets, id)
	prefix := "nets." + id + "."
	for k := range v.seen {
		if strings.HasPrefix(k, prefix) {
			delete(v.seen, k)
		}
	}
}

// dropRef forgets what a ref filter (see wanted) followed.
func (v *view) dropRef(filter string) {
	kind, id, _ := parseEntitledFilter(filter)
	switch kind {
	case KindSecGroup:
		delete(v.sgs, id)
		delete(v.seen, SecGroupKey(id))
	case KindAddressGroup:
		delete(v.addrGroups, id)
		delete(v.seen, AddressGroupKey(id))
	case KindMember:
		delete(v.members, id)
		prefix := "members." + id + "."
		for k := range v.seen {
			if strings.HasPrefix(k, prefix) {
				delete(v.seen, k)
			}
		}
	}
}

// baseFilters are followed by every agent, whatever it hosts.
func baseFilters(host string) []string {
	return []string{RegistrationsFilter, AgentKey(host), BindingsFilter(host)}
}

// filters are the watch filters of the followed part, sorted.
func (v *view) filters(refs map[string]bool) []string {
	out := baseFilters(v.host)
	for id := range v.nets {
		out = append(out, NetworkFilter(id))
	}
	for f := range refs {
		out = append(out, f)
	}
	slices.Sort(out)
	return out
}

// proofs name, for each network and ref filter, the record that entitles
// this host to it (see consumerSpec.Proofs): a binding of a port on the
// network, a local port that needs the ref (in the group, or in a group
// whose rules name the remote group or address group). A filter without
// one is left out; the broker refuses it.
func (v *view) proofs(filters []string) map[string]string {
	need := map[string]bool{}
	for _, f := range filters {
		need[f] = true
	}
	out := map[string]string{}
	for portID, b := range v.bindings {
		if f := NetworkFilter(b.Rec.NetworkID); need[f] {
			out[f] = BindingKey(v.host, portID)
		}
	}
	for portID, netID := range v.local {
		for f := range v.portRefs(v.nets[netID].ports[portID].Rec) {
			if need[f] {
				out[f] = PortKey(netID, portID)
			}
		}
	}
	return out
}

func (v *view) source(key string, r uint64) state.Source { return state.Source{Key: key, Revision: r} }

// buildResult is a Desired with the conflicts found while building it.
type buildResult struct {
	desired   *state.Desired
	conflicts []*RecordError
}

// build makes the desired state of the view's host (l2pop semantics):
//   - Networks: the followed networks with at least one port bound here,
//     their VTEPs being the other hosts with an ACTIVE port on them;
//   - LocalPorts: the ports bound here (tap "tap"+id[:11]);
//   - RemotePorts: the ACTIVE ports of those networks bound elsewhere, at
//     their host's registered VTEP (never the VTEP an agent record claims).
//
// Records that clash with an older one (a second network with the same
// VNI, a second port with the same MAC on a network, a tap name used
// twice) are left out and reported; the older record wins.
func (v *view) build(ownVTEP netip.Addr) buildResult {
	res := buildResult{desired: &state.Desired{}}
	d := res.desired
	conflict := func(key string, format string, args ...any) {
		res.conflicts = append(res.conflicts, &RecordError{Key: key, Reason: RejectConflict, Err: fmt.Errorf(format, args...)})
	}
	type netCand struct {
		id  string
		nv  *netView
		loc []rev[PortRecord]
	}
	byNet := map[string][]rev[PortRecord]{}
	for portID, netID := range v.local {
		byNet[netID] = append(byNet[netID], v.nets[netID].ports[portID])
	}
	var cands []netCand
	for id, loc := range byNet {
		if nv := v.nets[id]; nv.net != nil {
			cands = append(cands, netCand{id, nv, loc})
		}
	}
	byRev := func(a, b netCand) int {
		return cmp.Or(cmp.Compare(a.nv.net.Rev, b.nv.net.Rev), strings.Compare(a.id, b.id))
	}
	slices.SortFunc(cands, byRev)
	segments := map[string]string{}
	taps := map[string]string{}
	kept := cands[:0]
	for _, c := range cands {
		seg := c.nv.net.Rec.segment()
		if other, dup := segments[seg]; dup {
			conflict(NetworkKey(c.id), "%s is already used by network %s", seg, other)
			continue
		}
		segments[seg] = c.id
		kept = append(kept, c)
	}
	slices.SortFunc(kept, func(a, b netCand) int { return strings.Compare(a.id, b.id) })
	older := func(a, b rev[PortRecord]) bool { return a.Rev < b.Rev || a.Rev == b.Rev && a.Rec.ID < b.Rec.ID }
	for _, c := range kept {
		n := c.nv.net
		net := networkState(c.id, *n, v.source(NetworkKey(c.id), n.Rev))
		// Every port of the network that takes part; of two with one MAC
		// the older stays and the newer is a conflict.
		parts := make([]rev[PortRecord], 0, len(c.nv.ports))
		parts = append(parts, c.loc...)
		for _, p := range c.nv.ports {
			if p.Rec.Host == "" || p.Rec.Host == v.host {
				continue
			}
			st, ok := c.nv.status[statusID{p.Rec.ID, p.Rec.Host}]
			if !ok || effectiveStatus(p.Rec, st.Rec) != StatusActive {
				continue
			}
			parts = append(parts, p)
		}
		macs := make(map[state.MAC]int, len(parts))
		dropped := make([]bool, len(parts))
		for i, p := range parts {
			j, dup := macs[p.Rec.MAC]
			if !dup {
				macs[p.Rec.MAC] = i
				continue
			}
			keep, drop := j, i
			if older(p, parts[j]) {
				keep, drop = i, j
				macs[p.Rec.MAC] = i
			}
			dropped[drop] = true
			conflict(PortKey(c.id, parts[drop].Rec.ID), "mac %s is already used by port %s on network %s", p.Rec.MAC, parts[keep].Rec.ID, c.id)
		}
		// Output in id order (deterministic states); sorting the small
		// entries here is cheaper than sorting the state's structs.
		order := make([]int, len(parts))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(a, b int) int { return strings.Compare(parts[a].Rec.ID, parts[b].Rec.ID) })
		var locals []state.LocalPort
		remotes := make([]state.RemotePort, 0, len(parts))
		vteps := map[netip.Addr]state.VTEP{}
		for _, i := range order {
			p := parts[i]
			if dropped[i] {
				continue
			}
			key := p.Key
			if p.Rec.Host == v.host {
				tap := p.Rec.Tap()
				if other, dup := taps[tap]; dup {
					conflict(key, "tap %s is already used by port %s", tap, other)
					continue
				}
				taps[tap] = p.Rec.ID
				ps := p.Rec.PortSecurity
				locals = append(locals, state.LocalPort{
					ID: p.Rec.ID, NetworkID: c.id, MAC: p.Rec.MAC, IPs: p.Rec.FixedIPs, Tap: tap,
					PortSecurity: &ps, AllowedAddressPairs: p.Rec.AllowedAddressPairs,
					SecurityGroups: p.Rec.SecurityGroups, DNSName: p.Rec.DNSName, Source: v.source(key, p.Rev),
				})
				continue
			}
			if net.Provider() { // reached on the physical network: no VTEP
				remotes = append(remotes, state.RemotePort{ID: p.Rec.ID, NetworkID: c.id, MAC: p.Rec.MAC, IPs: p.Rec.FixedIPs,
					Source: v.source(key, p.Rev)})
				continue
			}
			reg, ok := v.registrations[p.Rec.Host]
			if !ok || reg.Rec.VTEP == ownVTEP {
				// Not registered yet (or registered at our VTEP): the
				// port cannot be reached; it comes in with the registration.
				continue
			}
			remotes = append(remotes, state.RemotePort{
				ID: p.Rec.ID, NetworkID: c.id, MAC: p.Rec.MAC, IPs: p.Rec.FixedIPs, VTEP: reg.Rec.VTEP,
				Source: v.source(key, p.Rev),
			})
			if _, ok := vteps[reg.Rec.VTEP]; !ok {
				vteps[reg.Rec.VTEP] = state.VTEP{IP: reg.Rec.VTEP, Source: v.source(RegistrationKey(p.Rec.Host), reg.Rev)}
			}
		}
		if len(locals) == 0 {
			continue
		}
		net.VTEPs = make([]state.VTEP, 0, len(vteps))
		for _, vt := range vteps {
			net.VTEPs = append(net.VTEPs, vt)
		}
		slices.SortFunc(net.VTEPs, func(a, b state.VTEP) int { return a.IP.Compare(b.IP) })
		d.Networks = append(d.Networks, net)
		d.LocalPorts = append(d.LocalPorts, locals...)
		d.RemotePorts = append(d.RemotePorts, remotes...)
	}
	var sgConflicts []*RecordError
	d.SecurityGroups, sgConflicts = v.securityGroups(d.LocalPorts)
	res.conflicts = append(res.conflicts, sgConflicts...)
	return res
}

// snapshotRecord is one record of the view, for the snapshot file.
type snapshotRecord struct {
	Key string
	Rev uint64
	Rec any
}

// records lists everything the view holds (for the snapshot).
func (v *view) records() []snapshotRecord {
	var out []snapshotRecord
	for id, b := range v.bindings {
		out = append(out, snapshotRecord{BindingKey(v.host, id), b.Rev, b.Rec})
	}
	for h, a := range v.agents {
		out = append(out, snapshotRecord{AgentKey(h), a.Rev, a.Rec})
	}
	for h, r := range v.registrations {
		out = append(out, snapshotRecord{RegistrationKey(h), r.Rev, r.Rec})
	}
	for id, sg := range v.sgs {
		out = append(out, snapshotRecord{SecGroupKey(id), sg.Rev, sg.Rec})
	}
	for id, ms := range v.members {
		for port, m := range ms {
			out = append(out, snapshotRecord{MemberKey(id, port), m.Rev, m.Rec})
		}
	}
	for id, ag := range v.addrGroups {
		out = append(out, snapshotRecord{AddressGroupKey(id), ag.Rev, ag.Rec})
	}
	for id, nv := range v.nets {
		if nv.net != nil {
			out = append(out, snapshotRecord{NetworkKey(id), nv.net.Rev, nv.net.Rec})
		}
		for pid, p := range nv.ports {
			out = append(out, snapshotRecord{PortKey(id, pid), p.Rev, p.Rec})
		}
		for sid, s := range nv.status {
			out = append(out, snapshotRecord{StatusKey(id, sid.host, sid.port), s.Rev, s.Rec})
		}
	}
	return out
}

// size counts the records held.
func (v *view) size() int {
	n := len(v.bindings) + len(v.agents) + len(v.registrations) + len(v.sgs) + len(v.addrGroups)
	for _, ms := range v.members {
		n += len(ms)
	}
	for _, nv := range v.nets {
		n += len(nv.ports) + len(nv.status)
		if nv.net != nil {
			n++
		}
	}
	return n
}
