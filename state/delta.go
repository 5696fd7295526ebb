package state

import (
	"cmp"
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
