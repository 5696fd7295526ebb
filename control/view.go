package control

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/vxdp/vxdp/state"
)

// rev is a decoded record with the revision that wrote it.
type rev[T any] struct {
	Rev uint64
	Rec *T
}

// view is an agent's copy of the part of the bucket it follows: its
// bindings and agent record, every host registration (VTEPs), the networks
// it hosts, the security groups of its ports and the members and address
// groups their rules name as remotes. Records are immutable once stored. The ports of the networks, the bulk of it, are kept
// compact (netView); the view keeps the host's state up to date with
// every change it folds in and says what changed (incremental).
type view struct {
	host    string
	self    hostID
	ownVTEP netip.Addr
	ids     idTable
	hosts   hostTable
	vtepIDs vtepTable

	bindings      map[string]rev[BindingRecord] // by port id
	agents        map[string]rev[AgentRecord]   // by host: its own only
	registrations map[hostID]rev[RegistrationRecord]
	nets          map[pid]*netView // followed networks
	sgs           map[string]rev[SecurityGroupRecord]
	members       map[string]map[string]rev[MemberRecord] // by group, then port
	addrGroups    map[string]rev[AddressGroupRecord]
	// local indexes the ports bound to this host: port -> network.
	local map[pid]pid
	// seen holds the revision of deletions and rejected updates per key,
	// so that a message delivered twice is applied once. Entries at or
	// below the watermark are pruned: nothing older is delivered again.
	seen map[string]uint64

	inc incremental
}

func newView(host string, ownVTEP netip.Addr) *view {
	v := &view{
		host: host, ownVTEP: ownVTEP,
		bindings:      map[string]rev[BindingRecord]{},
		agents:        map[string]rev[AgentRecord]{},
		registrations: map[hostID]rev[RegistrationRecord]{},
		nets:          map[pid]*netView{},
		sgs:           map[string]rev[SecurityGroupRecord]{},
		members:       map[string]map[string]rev[MemberRecord]{},
		addrGroups:    map[string]rev[AddressGroupRecord]{},
		local:         map[pid]pid{},
		seen:          map[string]uint64{},
	}
	v.self = v.hosts.of(host)
	v.inc.init()
	return v
}

// net is the followed network id, if it is followed.
func (v *view) net(id string) *netView {
	p, ok := v.ids.find(id)
	if !ok {
		return nil
	}
	return v.nets[p]
}

// follows reports whether key is inside the followed part of the bucket.
func (v *view) follows(k Key) bool {
	switch k.Kind {
	case KindNetwork, KindPort, KindStatus:
		return v.net(k.Network) != nil
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
		if nv := v.net(k.Network); nv != nil && nv.net != nil {
			return nv.net.Rev
		}
	case KindPort:
		if nv := v.net(k.Network); nv != nil {
			if id, ok := v.ids.find(k.Port); ok {
				return nv.ports[id].rev
			}
		}
	case KindStatus:
		if nv := v.net(k.Network); nv != nil {
			id, ok1 := v.ids.find(k.Port)
			h, ok2 := v.hosts.find(k.Host)
			if ok1 && ok2 {
				return nv.status(id, h).rev
			}
		}
	case KindAgent:
		return v.agents[k.Host].Rev
	case KindRegistration:
		if h, ok := v.hosts.find(k.Host); ok {
			return v.registrations[h].Rev
		}
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

// apply folds one message into the view and marks what it may change of
// the host's state. It reports whether the message was new to the view,
// and returns the rejection of an invalid record, which leaves the last
// valid version of the key in place.
func (v *view) apply(e kvEntry) (bool, error) {
	k := ParseKey(e.Key)
	if !v.follows(k) {
		return false, nil
	}
	if e.Rev <= max(v.storedRev(k), v.seen[e.Key]) {
		return false, nil
	}
	if e.Deleted {
		v.seen[e.Key] = e.Rev
		v.remove(k)
		return true, nil
	}
	_, rec, err := DecodeRecord(e.Key, e.Value)
	if err != nil {
		v.seen[e.Key] = e.Rev
		return false, err
	}
	delete(v.seen, e.Key)
	v.store(k, e.Rev, rec)
	return true, nil
}

// store keeps a record and marks what it changes.
func (v *view) store(k Key, r uint64, rec any) {
	switch rec := rec.(type) {
	case *NetworkRecord:
		nv := v.net(k.Network)
		old := nv.net
		nv.net = &rev[NetworkRecord]{Rev: r, Rec: rec}
		v.networkChanged(nv, old)
	case *PortRecord:
		v.putPort(v.net(k.Network), r, rec)
	case *StatusRecord:
		v.putStatus(v.net(k.Network), v.ids.of(k.Port), v.hosts.of(k.Host), portStatus{rev: r, gen: rec.Generation, state: statusCode(rec.Status)})
	case *AgentRecord:
		v.agents[k.Host] = rev[AgentRecord]{Rev: r, Rec: rec}
	case *RegistrationRecord:
		h := v.hosts.of(rec.Host)
		old := v.registrations[h]
		v.registrations[h] = rev[RegistrationRecord]{Rev: r, Rec: rec}
		v.registrationChanged(h, old.Rec)
	case *BindingRecord:
		v.bindings[k.Port] = rev[BindingRecord]{Rev: r, Rec: rec}
		v.inc.localChanged()
	case *SecurityGroupRecord:
		v.sgs[k.SG] = rev[SecurityGroupRecord]{Rev: r, Rec: rec}
		v.inc.localChanged()
	case *MemberRecord:
		if v.members[k.SG] == nil {
			v.members[k.SG] = map[string]rev[MemberRecord]{}
		}
		v.members[k.SG][k.Port] = rev[MemberRecord]{Rev: r, Rec: rec}
		v.inc.localChanged()
	case *AddressGroupRecord:
		v.addrGroups[k.AG] = rev[AddressGroupRecord]{Rev: r, Rec: rec}
		v.inc.localChanged()
	}
}

// remove forgets what key held and marks what that changes.
func (v *view) remove(k Key) {
	switch k.Kind {
	case KindNetwork:
		nv := v.net(k.Network)
		old := nv.net
		nv.net = nil
		v.networkChanged(nv, old)
	case KindPort:
		if id, ok := v.ids.find(k.Port); ok {
			v.dropPort(v.net(k.Network), id)
		}
	case KindStatus:
		id, ok1 := v.ids.find(k.Port)
		h, ok2 := v.hosts.find(k.Host)
		if ok1 && ok2 {
			v.putStatus(v.net(k.Network), id, h, portStatus{})
		}
	case KindAgent:
		delete(v.agents, k.Host)
	case KindRegistration:
		if h, ok := v.hosts.find(k.Host); ok {
			old := v.registrations[h]
			delete(v.registrations, h)
			v.registrationChanged(h, old.Rec)
		}
	case KindBinding:
		delete(v.bindings, k.Port)
		v.inc.localChanged()
	case KindSecGroup:
		delete(v.sgs, k.SG)
		v.inc.localChanged()
	case KindMember:
		delete(v.members[k.SG], k.Port)
		if len(v.members[k.SG]) == 0 {
			delete(v.members, k.SG)
		}
		v.inc.localChanged()
	case KindAddressGroup:
		delete(v.addrGroups, k.AG)
		v.inc.localChanged()
	}
}

// networkChanged marks what a network record's change changes: the local
// part, the network's entry, and its remote ports when it becomes or stops
// being a provider network (reached with or without a VTEP).
func (v *view) networkChanged(nv *netView, old *rev[NetworkRecord]) {
	v.inc.networkChanged(nv)
	if old != nil && nv.net != nil && old.Rec.Provider() != nv.net.Rec.Provider() {
		for id := range nv.ports {
			v.inc.portDirty(nv, id)
		}
	}
}

// registrationChanged re-evaluates the ports of host h (their VTEP) and
// the networks it contributes VTEPs to (their sources).
func (v *view) registrationChanged(h hostID, old *RegistrationRecord) {
	cur := v.registrations[h].Rec
	vtepChanged := old == nil || cur == nil || old.VTEP != cur.VTEP
	for _, nv := range v.nets {
		if vtepChanged {
			for _, id := range nv.byHost[h] {
				v.inc.portDirty(nv, id)
			}
		}
		if nv.contributes(h) {
			v.inc.vtepsChanged(nv)
		}
	}
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
		if w.nets[v.ids.name(netID)] {
			for f := range v.portRefs(v.localRecord(netID, portID)) {
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

// localRecord is the record of a port bound to this host.
func (v *view) localRecord(netID, portID pid) *PortRecord {
	return v.nets[netID].ports[portID].more.rec
}

// followNetwork and dropNetwork change the followed set.
func (v *view) followNetwork(id string) {
	p := v.ids.of(id)
	if v.nets[p] == nil {
		v.nets[p] = newNetView(p)
	}
}

func (v *view) dropNetwork(id string) {
	p, ok := v.ids.find(id)
	if !ok || v.nets[p] == nil {
		return
	}
	nv := v.nets[p]
	for portID := range nv.ports {
		v.dropPort(nv, portID)
	}
	nv.net = nil
	v.inc.networkChanged(nv)
	v.inc.forget(nv)
	delete(v.nets, p)
	v.forgetSeen("nets." + id + ".")
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
		v.forgetSeen("members." + id + ".")
	}
	v.inc.localChanged()
}

// forgetSeen drops the duplicate-detection entries of keys under prefix.
func (v *view) forgetSeen(prefix string) {
	for k := range v.seen {
		if strings.HasPrefix(k, prefix) {
			delete(v.seen, k)
		}
	}
}

// networkIDs are the followed networks' ids.
func (v *view) networkIDs() []string {
	out := make([]string, 0, len(v.nets))
	for id := range v.nets {
		out = append(out, v.ids.name(id))
	}
	slices.Sort(out)
	return out
}

// baseFilters are followed by every agent, whatever it hosts.
func baseFilters(host string) []string {
	return []string{RegistrationsFilter, AgentKey(host), BindingsFilter(host)}
}

// filters are the watch filters of the followed part, sorted.
func (v *view) filters(refs map[string]bool) []string {
	out := baseFilters(v.host)
	for _, id := range v.networkIDs() {
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
		for f := range v.portRefs(v.localRecord(netID, portID)) {
			if need[f] {
				out[f] = PortKey(v.ids.name(netID), v.ids.name(portID))
			}
		}
	}
	return out
}

func (v *view) source(key string, r uint64) state.Source { return state.Source{Key: key, Revision: r} }

// size counts the records held.
func (v *view) size() int {
	n := len(v.bindings) + len(v.agents) + len(v.registrations) + len(v.sgs) + len(v.addrGroups)
	for _, ms := range v.members {
		n += len(ms)
	}
	for _, nv := range v.nets {
		n += len(nv.ports) + nv.statuses()
		if nv.net != nil {
			n++
		}
	}
	return n
}
