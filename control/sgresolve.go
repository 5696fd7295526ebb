package control

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/vxdp/vxdp/state"
)

// securityGroups resolves the groups of the local ports for the
// dataplane: each rule's protocol as a number, its ports or ICMP type and
// code, and a remote group as the addresses of its members (their fixed
// IPs and allowed address pairs) among the ports this agent knows. A
// group the agent has no record of (not yet, or deleted) is taken off the
// port: its rules allow nothing.
func (v *view) securityGroups(local []state.LocalPort) []state.SecurityGroup {
	want := map[string]bool{}
	for i, p := range local {
		known := slices.DeleteFunc(slices.Clone(p.SecurityGroups), func(id string) bool { _, ok := v.sgs[id]; return !ok })
		local[i].SecurityGroups = known
		for _, id := range known {
			want[id] = true
		}
	}
	ids := make([]string, 0, len(want))
	for id := range want {
		if _, ok := v.sgs[id]; ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	var members map[string][]netip.Prefix
	if v.namesRemoteGroup(ids) {
		members = v.groupMembers()
	}
	out := make([]state.SecurityGroup, 0, len(ids))
	for _, id := range ids {
		sg := v.sgs[id]
		g := state.SecurityGroup{ID: id, Name: sg.Rec.Name, Source: v.source(SecGroupKey(id), sg.Rev), Rules: []state.Rule{}}
		for _, r := range sg.Rec.Rules {
			g.Rules = append(g.Rules, resolveRule(r, members, g.Source))
		}
		out = append(out, g)
	}
	return out
}

// namesRemoteGroup reports whether a rule of the groups ids names a remote group.
func (v *view) namesRemoteGroup(ids []string) bool {
	for _, id := range ids {
		for _, r := range v.sgs[id].Rec.Rules {
			if r.RemoteGroupID != "" {
				return true
			}
		}
	}
	return false
}

// groupMembers maps a group id to the addresses of its member ports,
// sorted, each once.
func (v *view) groupMembers() map[string][]netip.Prefix {
	out := map[string][]netip.Prefix{}
	for _, nv := range v.nets {
		for _, e := range nv.ports {
			sgs, addrs := e.groups()
			for _, g := range sgs {
				out[g] = append(out[g], addrs...)
			}
		}
	}
	for g, addrs := range out {
		slices.SortFunc(addrs, func(a, b netip.Prefix) int {
			return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
		})
		out[g] = slices.Compact(addrs)
	}
	return out
}

// resolveRule turns a rule record into the dataplane's rule.
func resolveRule(r SGRule, members map[string][]netip.Prefix, src state.Source) state.Rule {
	out := state.Rule{ID: r.ID, Direction: state.Direction(r.Direction), EtherType: r.Ethertype, Source: src}
	switch p := strings.ToLower(r.Protocol); p {
	case "", "any", "0":
	case "tcp":
		out.Protocol = state.ProtoTCP
	case "udp":
		out.Protocol = state.ProtoUDP
	case "sctp":
		out.Protocol = state.ProtoSCTP
	case "icmp", "icmpv6", "ipv6-icmp":
		out.Protocol = state.ProtoICMP
		if r.Ethertype == state.IPv6 {
			out.Protocol = state.ProtoICMPv6
		}
	default:
		n, _ := strconv.Atoi(p)
		out.Protocol = uint8(n)
		if n == state.ProtoICMP && r.Ethertype == state.IPv6 {
			out.Protocol = state.ProtoICMPv6
		}
	}
	switch {
	case state.HasPorts(out.Protocol) && r.PortRangeMin > 0:
		out.PortMin, out.PortMax = uint16(r.PortRangeMin), uint16(r.PortRangeMax)
	case state.IsICMP(out.Protocol, r.Ethertype) && (r.PortRangeMin > 0 || r.PortRangeMax > 0):
		t, c := uint8(r.PortRangeMin), uint8(r.PortRangeMax)
		out.ICMPType, out.ICMPCode = &t, &c
	}
	switch {
	case r.RemoteGroupID != "":
		out.RemoteGroup = r.RemoteGroupID
		for _, p := range members[r.RemoteGroupID] {
			if p.Addr().Is4() == (r.Ethertype == state.IPv4) {
				out.RemotePrefixes = append(out.RemotePrefixes, p)
			}
		}
	case r.RemoteIPPrefix.IsValid():
		out.RemotePrefixes = []netip.Prefix{r.RemoteIPPrefix}
	}
	return out
}
