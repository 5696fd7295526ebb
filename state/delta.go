package state

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Update is what a producer hands the run loop: a complete state, or a
// delta to the previous update's state. Exactly one is set.
type Update struct {
	Full  *Desired
	Delta *Delta
}

// Revision is the revision of the state after the update.
func (u Update) Revision() uint64 {
	if u.Full != nil {
		return u.Full.Revision
	}
	if u.Delta != nil {
		return u.Delta.Revision
	}
	return 0
}

// Delta is a change of one host's desired state: per kind of entry, the
// entries removed (their old value) and put (their new value). A changed
// entry is in both: removed with its old value, put with its new one.
// Applied to the state of revision From (removals first), it makes the
// state of Revision. Entries are identified as EntryKey says.
type Delta struct {
	From     uint64 `json:"from"`
	Revision uint64 `json:"revision"`

	Networks       Changes[Network]       `json:"networks,omitzero"`
	LocalPorts     Changes[LocalPort]     `json:"local_ports,omitzero"`
	RemotePorts    Changes[RemotePort]    `json:"remote_ports,omitzero"`
	SecurityGroups Changes[SecurityGroup] `json:"security_groups,omitzero"`
}

// Changes are the entries of one kind a delta removes and puts.
type Changes[T any] struct {
	Remove []T `json:"remove,omitempty"`
	Put    []T `json:"put,omitempty"`
}

// Empty reports whether the changes change nothing.
func (c Changes[T]) Empty() bool { return len(c.Remove) == 0 && len(c.Put) == 0 }

// Empty reports whether the delta changes nothing but the revision.
func (d *Delta) Empty() bool {
	return d.Networks.Empty() && d.LocalPorts.Empty() && d.RemotePorts.Empty() && d.SecurityGroups.Empty()
}

// Size is the number of entries the delta removes or puts.
func (d *Delta) Size() int {
	return len(d.Networks.Remove) + len(d.Networks.Put) + len(d.LocalPorts.Remove) + len(d.LocalPorts.Put) +
		len(d.RemotePorts.Remove) + len(d.RemotePorts.Put) + len(d.SecurityGroups.Remove) + len(d.SecurityGroups.Put)
}

// Identities of entries. A valid Desired has no two entries of a kind with
// one key: networks and security groups by id, local ports by id (or tap
// name), remote ports by network and MAC (a MAC is unique in a network).

// NetworkKey identifies a network.
func NetworkKey(n Network) string { return n.ID }

// LocalPortKey identifies a local port.
func LocalPortKey(p LocalPort) string {
	if p.ID != "" {
		return p.ID
	}
	return p.TapName()
}

// RemoteKey identifies a remote port: its network and MAC.
type RemoteKey struct {
	Network string
	MAC     MAC
}

// RemotePortKey identifies a remote port.
func RemotePortKey(p RemotePort) RemoteKey { return RemoteKey{p.NetworkID, p.MAC} }

// SecurityGroupKey identifies a security group.
func SecurityGroupKey(g SecurityGroup) string { return g.ID }

// Sort puts d's entries in the order producers build them: networks and
// groups by id, ports by network then id (remote ports without an id by
// MAC). Two states with the same entries are equal once sorted.
func (d *Desired) Sort() {
	slices.SortFunc(d.Networks, func(a, b Network) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(d.LocalPorts, func(a, b LocalPort) int {
		return cmp.Or(strings.Compare(a.NetworkID, b.NetworkID), strings.Compare(LocalPortKey(a), LocalPortKey(b)))
	})
	slices.SortFunc(d.RemotePorts, func(a, b RemotePort) int {
		return cmp.Or(strings.Compare(a.NetworkID, b.NetworkID), strings.Compare(a.ID, b.ID), slices.Compare(a.MAC[:], b.MAC[:]))
	})
	slices.SortFunc(d.SecurityGroups, func(a, b SecurityGroup) int { return strings.Compare(a.ID, b.ID) })
}

// Then is the update that has the effect of u followed by next: next if
// it is complete, u's state changed by next's delta, or both deltas as
// one (for a consumer that was busy while both came).
func (u Update) Then(next Update) Update {
	switch {
	case next.Full != nil || (u.Full == nil && u.Delta == nil):
		return next
	case next.Delta == nil:
		return u
	case u.Full != nil:
		var t Tracker
		t.Apply(u)
		t.Apply(next)
		return Update{Full: t.Desired()}
	}
	return Update{Delta: u.Delta.Merge(next.Delta)}
}

// Merge is the delta that has the effect of d followed by next.
func (d *Delta) Merge(next *Delta) *Delta {
	return &Delta{From: d.From, Revision: next.Revision,
		Networks:       mergeChanges(d.Networks, next.Networks, NetworkKey),
		LocalPorts:     mergeChanges(d.LocalPorts, next.LocalPorts, LocalPortKey),
		RemotePorts:    mergeChanges(d.RemotePorts, next.RemotePorts, RemotePortKey),
		SecurityGroups: mergeChanges(d.SecurityGroups, next.SecurityGroups, SecurityGroupKey),
	}
}

func mergeChanges[K comparable, T any](a, b Changes[T], key func(T) K) Changes[T] {
	if b.Empty() {
		return a
	}
	type change struct{ old, new *T }
	m := map[K]*change{}
	var order []K
	at := func(k K) *change {
		c, ok := m[k]
		if !ok {
			c = &change{}
			m[k] = c
			order = append(order, k)
		}
		return c
	}
	for _, v := range a.Remove {
		at(key(v)).old = &v
	}
	for _, v := range a.Put {
		at(key(v)).new = &v
	}
	for _, v := range b.Remove {
		c := at(key(v))
		if c.new == nil && c.old == nil {
			c.old = &v // removed what was there before a
		}
		c.new = nil
	}
	for _, v := range b.Put {
		at(key(v)).new = &v
	}
	var out Changes[T]
	for _, k := range order {
		out.Record(m[k].old, m[k].new)
	}
	return out
}

// Record adds to c that an entry went from old to new (nil: absent);
// nothing if it is as it was.
func (c *Changes[T]) Record(old, new *T) {
	if old != nil && new != nil && reflect.DeepEqual(*old, *new) {
		return
	}
	if old != nil {
		c.Remove = append(c.Remove, *old)
	}
	if new != nil {
		c.Put = append(c.Put, *new)
	}
}

// Difference describes how two states differ in their entries (order
// aside), "" when they are the same; revisions are not compared.
func Difference(a, b *Desired) string {
	var out []string
	diffEntries(&out, "network", a.Networks, b.Networks, NetworkKey)
	diffEntries(&out, "local port", a.LocalPorts, b.LocalPorts, LocalPortKey)
	diffEntries(&out, "remote port", a.RemotePorts, b.RemotePorts, func(p RemotePort) string {
		return p.NetworkID + "/" + p.MAC.String()
	})
	diffEntries(&out, "security group", a.SecurityGroups, b.SecurityGroups, SecurityGroupKey)
	if len(out) > 8 {
		out = append(out[:8], fmt.Sprintf("and %d more", len(out)-8))
	}
	return strings.Join(out, "; ")
}

func diffEntries[T any](out *[]string, kind string, a, b []T, key func(T) string) {
	ma := make(map[string]T, len(a))
	for _, v := range a {
		ma[key(v)] = v
	}
	for _, v := range b {
		k := key(v)
		w, ok := ma[k]
		switch {
		case !ok:
			*out = append(*out, fmt.Sprintf("%s %s only in the second", kind, k))
		case !reflect.DeepEqual(w, v):
			*out = append(*out, fmt.Sprintf("%s %s differs: %+v / %+v", kind, k, w, v))
		}
		delete(ma, k)
	}
	for k := range ma {
		*out = append(*out, fmt.Sprintf("%s %s only in the first", kind, k))
	}
}
