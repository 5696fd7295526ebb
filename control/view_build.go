package control

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/vxdp/vxdp/state"
)

// buildResult is a Desired with the conflicts found while building it.
type buildResult struct {
	desired   *state.Desired
	conflicts []*RecordError
}

// build makes the desired state of the view's host from scratch (l2pop
// semantics), independently of what the view tracks incrementally — the
// state a delta-following dataplane must hold, and the periodic safety
// net:
//   - Networks: the followed networks with at least one port bound here,
//     their VTEPs being the other hosts with an ACTIVE port on them;
//   - LocalPorts: the ports bound here (tap "tap"+id[:11]);
//   - RemotePorts: the ACTIVE ports of those networks bound elsewhere, at
//     their host's registered VTEP (never the VTEP an agent record claims);
//     on a provider network (VLAN, flat) without VTEP, reached on the
//     physical network.
//
// Records that clash with an older one (a second network with the same
// segment, a second port with the same MAC on a network, a tap name used
// twice) are left out and reported; the older record wins.
func (v *view) build() buildResult {
	// The MAC of each network's local and ACTIVE remote ports: the oldest
	// record (revision, then id) keeps it.
	winners := map[*netView]map[state.MAC]pid{}
	winner := func(nv *netView, mac state.MAC) pid {
		w, ok := winners[nv]
		if !ok {
			w = make(map[state.MAC]pid, len(nv.ports))
			for id, e := range nv.ports {
				if !v.participates(e) {
					continue
				}
				if cur, taken := w[e.mac]; !taken || v.older(nv, id, cur) < 0 {
					w[e.mac] = id
				}
			}
			winners[nv] = w
		}
		return w[mac]
	}
	lp := v.computeLocal(winner)
	res := buildResult{desired: &state.Desired{LocalPorts: lp.locals, SecurityGroups: lp.groups}, conflicts: lp.conflicts}
	d := res.desired
	var kept []*netView
	for id := range lp.kept {
		kept = append(kept, v.nets[id])
	}
	slices.SortFunc(kept, func(a, b *netView) int { return v.ids.compare(a.id, b.id) })
	for _, nv := range kept {
		netID := v.ids.name(nv.id)
		vteps := map[vtepID]map[hostID]int{}
		prefix := PortKey(netID, "")
		// One array for the addresses of the ports with one IPv4 address.
		arena := make([]netip.Addr, 0, len(nv.ports))
		d.RemotePorts = slices.Grow(d.RemotePorts, len(nv.ports))
		for id, e := range nv.ports {
			if e.host == 0 || e.host == v.self || !e.active() {
				continue
			}
			if win := winner(nv, e.mac); win != id {
				res.conflicts = append(res.conflicts, &RecordError{Key: PortKey(netID, v.ids.name(id)), Reason: RejectConflict,
					Err: fmt.Errorf("mac %s is already used by port %s on network %s", e.mac, v.ids.name(win), netID)})
				continue
			}
			vtep, ok := v.remoteVTEP(nv, e.host)
			if !ok {
				continue
			}
			var ips []netip.Addr
			if e.flags&flagIP4 != 0 {
				arena = append(arena, netip.AddrFrom4(e.ip4))
				ips = arena[len(arena)-1 : len(arena) : len(arena)]
			} else {
				ips = e.ips()
			}
			d.RemotePorts = append(d.RemotePorts, v.remotePortIPs(prefix, netID, id, e, vtep, ips))
			if vtep == 0 {
				continue
			}
			if vteps[vtep] == nil {
				vteps[vtep] = map[hostID]int{}
			}
			vteps[vtep][e.host]++
		}
		d.Networks = append(d.Networks, v.networkWith(nv, vteps))
	}
	return res
}
