package control

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/vxdp/vxdp/state"
)

// securityGroups resolves the groups of the local ports for the
// dataplane: each rule's protocol as a number, its ports or ICMP type and
// code, a remote group as the addresses of its members (their member
// records, whatever network the members are on) and an address group as
// its prefixes. A group the agent has no record of (not yet, or deleted)
// is taken off the port: its rules allow nothing. A port whose groups mix
// stateful and stateless ones (which the controller refuses) gets none,
// and is reported.
func (v *view) securityGroups(local []state.LocalPort) ([]state.SecurityGroup, []*RecordError) {
	var conflicts []*RecordError
	want := map[string]bool{}
	for i, p := range local {
		known := slices.DeleteFunc(slices.Clone(p.SecurityGroups), func(id string) bool { _, ok := v.sgs[id]; return !ok })
		if len(known) > 1 && slices.ContainsFunc(known, func(id string) bool { return v.sgs[id].Rec.Stateless != v.sgs[known[0]].Rec.Stateless }) {
			conflicts = append(conflicts, &RecordError{Key: p.Source.Key, Reason: RejectConflict,
				Err: fmt.Errorf("port %s mixes stateful and stateless security groups: it gets none (only what is always allowed)", p.ID)})
			known = nil
		}
		local[i].SecurityGroups = known
		for _, id := range known {
			want[id] = true
		}
	}
	out := make([]state.SecurityGroup, 0, len(want))
	for _, id := range slices.Sorted(maps.Keys(want)) {
		sg := v.sgs[id]
		g := state.SecurityGroup{ID: id, Name: sg.Rec.Name, Stateless: sg.Rec.Stateless, Source: v.source(SecGroupKey(id), sg.Rev), Rules: []state.Rule{}}
		for _, r := range sg.Rec.Rules {
			g.Rules = append(g.Rules, v.resolveRule(r, g.Source))
		}
		out = append(out, g)
	}
	return out, conflicts
}

// remoteAddresses are the addresses a rule's remote group or address
// group stands for, of the rule's family; ok is false when the rule has
// neither.
func (v *view) remoteAddresses(r SGRule) (addrs []netip.Prefix, ok bool) {
	var all []netip.Prefix
	switch {
	case r.RemoteGroupID != "":
		members := v.members[r.RemoteGroupID]
		for _, port := range slices.Sorted(maps.Keys(members)) {
			all = append(all, members[port].Rec.Addresses...)
		}
	case r.RemoteAddressGroupID != "":
		if ag, ok := v.addrGroups[r.RemoteAddressGroupID]; ok {
			all = ag.Rec.Addresses
		}
	default:
		return nil, false
	}
	seen := map[netip.Prefix]bool{}
	for _, p := range all {
		if p.Addr().Is4() == (r.Ethertype == state.IPv4) && !seen[p] {
			seen[p] = true
			addrs = append(addrs, p)
		}
	}
	return addrs, true
}

// resolveRule turns a rule record into the dataplane's rule.
func (v *view) resolveRule(r SGRule, src state.Source) state.Rule {
	out := state.Rule{ID: r.ID, Direction: state.Direction(r.Direction), EtherType: r.Ethertype, Source: src,
		RemoteGroup: r.RemoteGroupID, RemoteAddressGroup: r.RemoteAddressGroupID}
	out.Protocol, _ = ProtocolNumber(r.Protocol, r.Ethertype) // validated with the record
	switch {
	case state.HasPorts(out.Protocol) && r.PortRangeMin != nil && r.PortRangeMax != nil:
		out.PortMin, out.PortMax = uint16(*r.PortRangeMin), uint16(*r.PortRangeMax)
	case state.IsICMP(out.Protocol, r.Ethertype) && r.PortRangeMin != nil:
		t := uint8(*r.PortRangeMin)
		out.ICMPType = &t
		if r.PortRangeMax != nil {
			c := uint8(*r.PortRangeMax)
			out.ICMPCode = &c
		}
	}
	if addrs, ok := v.remoteAddresses(r); ok {
		out.RemotePrefixes = addrs
	} else if r.RemoteIPPrefix.IsValid() {
		out.RemotePrefixes = []netip.Prefix{r.RemoteIPPrefix}
	}
	return out
}
