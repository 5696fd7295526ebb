package control

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/vxdp/vxdp/state"
)

// netView is what an agent knows of one network it follows: the network
// record and every port, one small entry per port.
type netView struct {
	id    pid
	net   *rev[NetworkRecord]
	ports map[pid]portEntry
	// others are statuses written by another host than the port's bound
	// one (from before a move, or ahead of the port record).
	others map[statusRef]portStatus
	// own are this host's statuses, by port (wherever they are kept).
	own map[pid]portStatus
	// byHost are the ports by bound host.
	byHost map[hostID][]pid
	// withStatus counts the ports whose bound host wrote a status.
	withStatus int
	// byMAC is, per MAC, the port that takes part with it: of the local
	// ports and the ACTIVE remote ports, the oldest; contested lists all
	// of them where there are several (conflicts).
	byMAC     map[state.MAC]pid
	contested map[state.MAC][]pid

	// What the host's state holds of the network (incremental).
	kept  bool                      // in the state: it has a local port
	vteps map[vtepID]map[hostID]int // VTEPs of the remote ports in the state, by host
}

type statusRef struct {
	port pid
	host hostID
}

// portStatus is a status record, compact.
type portStatus struct {
	rev, gen uint64
	state    uint8
}

const (
	statusNone uint8 = iota
	statusActive
	statusDown
)

func statusCode(s string) uint8 {
	if s == StatusActive {
		return statusActive
	}
	return statusDown
}

func (s portStatus) String() string {
	if s.state == statusActive {
		return StatusActive
	}
	return StatusDown
}

// portEntry is one port: what its record says that the host's state
// needs, the status its bound host wrote, and whether the state holds it.
type portEntry struct {
	rev, gen uint64
	st       portStatus // written by the bound host
	more     *portMore  // nil for a remote port with one IPv4 address or none
	host     hostID
	emVTEP   vtepID  // the VTEP the state holds it at (flagEmitted; 0: none, provider network)
	ip4      [4]byte // its IP when it has exactly one, IPv4 (flagIP4)
	mac      state.MAC
	flags    uint8
}

const (
	flagIP4     = 1 << iota // ip4 is its only fixed IP
	flagEmitted             // the state holds it as a remote port
)

// portMore is the rest of a port that needs it: a local port's whole
// record; a remote port's addresses when they are not one IPv4 address.
// (Remote-group members come from member records, not from ports.)
type portMore struct {
	rec *PortRecord // a port bound to this host
	ips []netip.Addr
}

func newNetView(id pid) *netView {
	return &netView{id: id, ports: map[pid]portEntry{}, others: map[statusRef]portStatus{}, own: map[pid]portStatus{},
		byHost: map[hostID][]pid{}, byMAC: map[state.MAC]pid{}, contested: map[state.MAC][]pid{},
		vteps: map[vtepID]map[hostID]int{}}
}

// active reports whether the port's bound host said it is ACTIVE, for its
// current binding.
func (e portEntry) active() bool {
	return e.host != 0 && e.st.state == statusActive && e.st.gen == e.gen
}

func (e portEntry) emitted() bool { return e.flags&flagEmitted != 0 }

// ips are the port's fixed IPs.
func (e portEntry) ips() []netip.Addr {
	switch {
	case e.flags&flagIP4 != 0:
		return []netip.Addr{netip.AddrFrom4(e.ip4)}
	case e.more != nil && e.more.rec != nil:
		return e.more.rec.FixedIPs
	case e.more != nil:
		return e.more.ips
	}
	return nil
}

// entryOf makes the entry of a port record: a port bound to self keeps
// its record, a remote one what the state needs of it.
func (v *view) entryOf(r uint64, rec *PortRecord) portEntry {
	e := portEntry{rev: r, gen: rec.Generation, host: v.hosts.of(rec.Host), mac: rec.MAC}
	if e.host == v.self {
		e.more = &portMore{rec: rec}
		return e
	}
	if len(rec.FixedIPs) == 1 && rec.FixedIPs[0].Is4() {
		e.flags |= flagIP4
		e.ip4 = rec.FixedIPs[0].As4()
	}
	if e.flags&flagIP4 == 0 && len(rec.FixedIPs) > 0 {
		e.more = &portMore{ips: rec.FixedIPs}
	}
	return e
}

// participates reports whether the port takes part in its network's MACs:
// bound here, or ACTIVE elsewhere.
func (v *view) participates(e portEntry) bool {
	return e.host == v.self || e.active()
}

// status is the status host wrote of port (the zero status if none).
func (nv *netView) status(port pid, h hostID) portStatus {
	if e, ok := nv.ports[port]; ok && e.host == h && h != 0 {
		return e.st
	}
	return nv.others[statusRef{port, h}]
}

// statuses counts the statuses held.
func (nv *netView) statuses() int { return nv.withStatus + len(nv.others) }

// contributes reports whether host h's VTEP is in the state's VTEPs of nv.
func (nv *netView) contributes(h hostID) bool {
	for _, hosts := range nv.vteps {
		if hosts[h] > 0 {
			return true
		}
	}
	return false
}

// putPort stores a port record.
func (v *view) putPort(nv *netView, r uint64, rec *PortRecord) {
	id := v.ids.of(rec.ID)
	old, had := nv.ports[id]
	e := v.entryOf(r, rec)
	if had {
		v.unemit(nv, id, old)
		v.unindex(nv, id, old)
		if old.host == e.host {
			e.st = old.st
		} else if old.st.rev != 0 {
			nv.others[statusRef{id, old.host}] = old.st
		}
	}
	if !had || old.host != e.host {
		if st, ok := nv.others[statusRef{id, e.host}]; ok && e.host != 0 {
			e.st = st
			delete(nv.others, statusRef{id, e.host})
		}
	}
	v.index(nv, id, e)
	v.inc.portDirty(nv, id)
	if had && old.host == v.self || e.host == v.self {
		v.inc.localChanged()
	}
}

// dropPort forgets a port record (its statuses stay until deleted).
func (v *view) dropPort(nv *netView, id pid) {
	old, had := nv.ports[id]
	if !had {
		return
	}
	v.unemit(nv, id, old)
	v.unindex(nv, id, old)
	delete(nv.ports, id)
	if old.st.rev != 0 {
		nv.others[statusRef{id, old.host}] = old.st
	}
	if old.host == v.self {
		v.inc.localChanged()
	}
}

// putStatus stores (st.rev != 0) or forgets a status of port by host h.
func (v *view) putStatus(nv *netView, port pid, h hostID, st portStatus) {
	if h == v.self {
		if st.rev != 0 {
			nv.own[port] = st
		} else {
			delete(nv.own, port)
		}
	}
	e, ok := nv.ports[port]
	if !ok || e.host != h {
		if st.rev != 0 {
			nv.others[statusRef{port, h}] = st
		} else {
			delete(nv.others, statusRef{port, h})
		}
		return
	}
	if (e.st.rev != 0) != (st.rev != 0) {
		nv.withStatus += cmp.Compare(st.rev, e.st.rev)
	}
	was := v.participates(e)
	activeBefore := e.active()
	e.st = st
	nv.ports[port] = e
	if e.active() == activeBefore {
		return
	}
	// Only its part in the network's MACs changes (host and binding stay).
	switch is := v.participates(e); {
	case was && !is:
		v.macLeave(nv, port, e.mac)
	case !was && is:
		v.macJoin(nv, port, e)
	}
	v.inc.portDirty(nv, port)
}

// index files entry e of port id (stored in nv.ports) by host and MAC.
func (v *view) index(nv *netView, id pid, e portEntry) {
	nv.ports[id] = e
	if e.st.rev != 0 {
		nv.withStatus++
	}
	if e.host == v.self {
		v.local[id] = nv.id
	}
	if e.host != 0 {
		nv.byHost[e.host] = append(nv.byHost[e.host], id)
	}
	if v.participates(e) {
		v.macJoin(nv, id, e)
	}
}

// unindex removes entry e of port id from the indexes.
func (v *view) unindex(nv *netView, id pid, e portEntry) {
	if e.st.rev != 0 {
		nv.withStatus--
	}
	if e.host == v.self && v.local[id] == nv.id {
		delete(v.local, id)
	}
	if e.host != 0 {
		ids := slices.DeleteFunc(nv.byHost[e.host], func(p pid) bool { return p == id })
		if len(ids) == 0 {
			delete(nv.byHost, e.host)
		} else {
			nv.byHost[e.host] = ids
		}
	}
	if v.participates(e) {
		v.macLeave(nv, id, e.mac)
	}
}

// older orders the ports taking part with one MAC: the older record
// (revision, then id) keeps it.
func (v *view) older(nv *netView, a, b pid) int {
	ea, eb := nv.ports[a], nv.ports[b]
	return cmp.Or(cmp.Compare(ea.rev, eb.rev), v.ids.compare(a, b))
}

func (v *view) macJoin(nv *netView, id pid, e portEntry) {
	prev, taken := nv.byMAC[e.mac]
	if !taken {
		nv.byMAC[e.mac] = id
		return
	}
	all := nv.contested[e.mac]
	if all == nil {
		all = []pid{prev}
	}
	all = append(all, id)
	nv.contested[e.mac] = all
	v.macWinner(nv, e.mac, prev, all)
}

func (v *view) macLeave(nv *netView, id pid, mac state.MAC) {
	prev := nv.byMAC[mac]
	all, contested := nv.contested[mac]
	if !contested {
		if prev == id {
			delete(nv.byMAC, mac)
		}
		return
	}
	all = slices.DeleteFunc(all, func(p pid) bool { return p == id })
	if len(all) == 1 {
		delete(nv.contested, mac)
	} else {
		nv.contested[mac] = all
	}
	v.macWinner(nv, mac, prev, all)
}

// macWinner gives the MAC to the oldest of its participants all (prev had
// it); the ports whose part changes are re-evaluated, and the local part
// when a local port takes part.
func (v *view) macWinner(nv *netView, mac state.MAC, prev pid, all []pid) {
	best := all[0]
	for _, p := range all[1:] {
		if v.older(nv, p, best) < 0 {
			best = p
		}
	}
	nv.byMAC[mac] = best
	if best != prev {
		v.inc.portDirty(nv, prev)
		v.inc.portDirty(nv, best)
	}
	for _, p := range all {
		if nv.ports[p].host == v.self {
			v.inc.localChanged()
		}
	}
}
