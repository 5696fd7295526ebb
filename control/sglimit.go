package control

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/vxdp/vxdp/state"
)

// The dataplane compiles a port's rules of one direction and ethertype
// into at most state.MaxPolicyClasses classes: rules sharing a remote, or
// rules sharing a protocol/port match, whichever gives fewer. Past that
// in both, the port's groups cannot be compiled and the port passes only
// what is always allowed. The controller refuses the rule add or group
// change that would get a port there. It tells remotes and matches apart
// by their records (a remote group is one remote, whatever its members);
// the dataplane merges at least as much (two remote groups with the same
// members are one), so what is accepted here always compiles.

// policySel is a direction and ethertype: the rules the dataplane
// classifies together.
type policySel struct{ direction, ethertype string }

// remoteSpec is a rule's remote as the controller tells them apart.
func remoteSpec(r SGRule) string {
	switch {
	case r.RemoteGroupID != "":
		return "group " + r.RemoteGroupID
	case r.RemoteAddressGroupID != "":
		return "address group " + r.RemoteAddressGroupID
	case r.RemoteIPPrefix.IsValid() && r.RemoteIPPrefix.Bits() > 0:
		return r.RemoteIPPrefix.Masked().String()
	}
	return "any" // no remote, or /0
}

// l4Spec is what a rule's protocol and ports (or ICMP type and code)
// match, read as the agent gives rules to the dataplane.
func l4Spec(r SGRule) string {
	proto, _ := ProtocolNumber(r.Protocol, r.Ethertype) // validated with the record
	lo, hi := r.PortRangeMin, r.PortRangeMax
	switch {
	case proto == 0:
		return "any"
	case state.IsICMP(proto, r.Ethertype) && lo != nil && hi != nil:
		return fmt.Sprintf("%d type %d code %d", proto, *lo, *hi)
	case state.IsICMP(proto, r.Ethertype) && lo != nil:
		return fmt.Sprintf("%d type %d", proto, *lo)
	case state.HasPorts(proto) && lo != nil && hi != nil:
		return fmt.Sprintf("%d ports %d-%d", proto, *lo, *hi)
	}
	return strconv.Itoa(int(proto))
}

// policyOverflow reports the first direction and ethertype (of only,
// when given) whose rules in groups have more distinct remotes and more
// distinct protocol/port matches than a port's policy holds, with the
// counts, the limit and the fix; nil when the groups fit.
func policyOverflow(groups []*SecurityGroupRecord, only ...policySel) error {
	remotes, l4 := map[policySel]map[string]bool{}, map[policySel]map[string]bool{}
	var sels []policySel
	for _, g := range groups {
		for _, r := range g.Rules {
			s := policySel{r.Direction, r.Ethertype}
			if len(only) > 0 && !slices.Contains(only, s) {
				continue
			}
			if remotes[s] == nil {
				remotes[s], l4[s] = map[string]bool{}, map[string]bool{}
				sels = append(sels, s)
			}
			remotes[s][remoteSpec(r)] = true
			l4[s][l4Spec(r)] = true
		}
	}
	slices.SortFunc(sels, func(a, b policySel) int { return strings.Compare(a.direction+a.ethertype, b.direction+b.ethertype) })
	for _, s := range sels {
		if nr, nl := len(remotes[s]), len(l4[s]); nr > state.MaxPolicyClasses && nl > state.MaxPolicyClasses {
			return fmt.Errorf("its %s %s rules would have %d distinct remotes and %d distinct protocol/port matches, "+
				"and a port's policy holds at most %d of either (rules sharing a remote, or sharing a protocol and ports, count once): "+
				"give these rules a common remote (a remote group or an address group) or fewer distinct protocols and port ranges",
				s.direction, s.ethertype, nr, nl, state.MaxPolicyClasses)
		}
	}
	return nil
}

// groupNames lists groups by name, for errors.
func groupNames(groups []*SecurityGroupRecord) string {
	names := make([]string, len(groups))
	for i, g := range groups {
		names[i] = g.Name
	}
	return strings.Join(names, ", ")
}

// portLabel names a port in errors: its name and id, or its id.
func portLabel(name, id string) string {
	if name == "" {
		return id
	}
	return name + " (" + id + ")"
}

// checkRuleFits refuses rec, a security group with rule added, when the
// groups of some port in it would no longer compile, or the group alone
// would not (no port could use it). Only the rule's direction and
// ethertype are checked: the others did not change.
func (c *Controller) checkRuleFits(ctx context.Context, rec *SecurityGroupRecord, rule SGRule) error {
	sel := policySel{rule.Direction, rule.Ethertype}
	if err := policyOverflow([]*SecurityGroupRecord{rec}, sel); err != nil {
		return invalidf("security group %s: every port in it would pass only always-allowed traffic: %v", rec.Name, err)
	}
	recs, err := c.load(ctx, SecGroupsFilter)
	if err != nil {
		return err
	}
	byID := map[string]*SecurityGroupRecord{rec.ID: rec}
	project := []*SecurityGroupRecord{rec}
	for _, r := range recs {
		if g := r.Rec.(*SecurityGroupRecord); g.ID != rec.ID {
			byID[g.ID] = g
			if ProjectOf(g.Project) == ProjectOf(rec.Project) {
				project = append(project, g)
			}
		}
	}
	if policyOverflow(project, sel) == nil {
		return nil // a port's groups are of its project: none has more than all of them
	}
	ports, err := c.load(ctx, PortsFilter)
	if err != nil {
		return err
	}
	checked := map[string]bool{}
	for _, r := range ports {
		p := r.Rec.(*PortRecord)
		key := strings.Join(slices.Sorted(slices.Values(p.SecurityGroups)), ",")
		if !slices.Contains(p.SecurityGroups, rec.ID) || checked[key] {
			continue
		}
		checked[key] = true
		var groups []*SecurityGroupRecord
		for _, id := range p.SecurityGroups {
			if g := byID[id]; g != nil {
				groups = append(groups, g)
			}
		}
		if err := policyOverflow(groups, sel); err != nil {
			return invalidf("security group %s: port %s in groups %s would pass only always-allowed traffic: %v",
				rec.Name, portLabel(p.Name, p.ID), groupNames(groups), err)
		}
	}
	return nil
}
