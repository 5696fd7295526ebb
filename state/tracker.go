package state

import "slices"

// Tracker keeps the complete state a sequence of updates makes: a full
// update replaces it, a delta changes only its entries (O(size of the
// delta)). With SkipRemote it keeps everything but the remote ports (the
// bulk of a large state: a reconciler that takes deltas does not need
// them) and only counts those.
type Tracker struct {
	SkipRemote bool

	d       Desired
	nets    keyed[string, Network]
	locals  keyed[string, LocalPort]
	remotes keyed[RemoteKey, RemotePort]
	groups  keyed[string, SecurityGroup]
	remoteN int
	valid   bool
}

// Valid reports whether the tracker holds a state (a full update came).
func (t *Tracker) Valid() bool { return t.valid }

// Apply folds an update in. A delta before any full update is ignored
// (reported false): there is nothing to apply it to.
func (t *Tracker) Apply(u Update) bool {
	switch {
	case u.Full != nil:
		t.reset(u.Full)
	case u.Delta != nil && t.valid:
		t.apply(u.Delta)
	default:
		return false
	}
	return true
}

func (t *Tracker) reset(d *Desired) {
	t.d = *d
	t.nets.reset(t.d.Networks, NetworkKey)
	t.locals.reset(t.d.LocalPorts, LocalPortKey)
	t.groups.reset(t.d.SecurityGroups, SecurityGroupKey)
	t.remoteN = len(d.RemotePorts)
	if t.SkipRemote {
		t.d.RemotePorts = nil
		t.remotes = keyed[RemoteKey, RemotePort]{}
	} else {
		t.remotes.reset(t.d.RemotePorts, RemotePortKey)
	}
	t.valid = true
}

func (t *Tracker) apply(d *Delta) {
	t.nets.apply(d.Networks)
	t.locals.apply(d.LocalPorts)
	t.groups.apply(d.SecurityGroups)
	if t.SkipRemote {
		t.remoteN += len(d.RemotePorts.Put) - len(d.RemotePorts.Remove)
	} else {
		t.remotes.apply(d.RemotePorts)
		t.remoteN = len(t.remotes.items)
	}
	t.d.Revision = d.Revision
}

// Desired is the tracked state (without remote ports with SkipRemote).
// It is the tracker's own: valid until the next update, not to be changed.
// Entries are in no particular order (Sort orders them).
func (t *Tracker) Desired() *Desired {
	t.d.Networks, t.d.LocalPorts, t.d.SecurityGroups = t.nets.items, t.locals.items, t.groups.items
	if !t.SkipRemote {
		t.d.RemotePorts = t.remotes.items
	}
	return &t.d
}

// RemoteCount is the number of remote ports of the tracked state.
func (t *Tracker) RemoteCount() int { return t.remoteN }

// Clone copies d deeply enough that changing the copy's slices leaves d
// alone (entries share their inner slices, which nobody changes).
func (d *Desired) Clone() *Desired {
	c := *d
	c.Networks = slices.Clone(d.Networks)
	c.LocalPorts = slices.Clone(d.LocalPorts)
	c.RemotePorts = slices.Clone(d.RemotePorts)
	c.SecurityGroups = slices.Clone(d.SecurityGroups)
	return &c
}

// keyed is a slice of entries with an index by key: O(1) put and remove
// (a removal moves the last entry into the hole).
type keyed[K comparable, T any] struct {
	items []T
	index map[K]int
	key   func(T) K
}

func (k *keyed[K, T]) reset(items []T, key func(T) K) {
	k.items, k.key = items, key
	k.index = make(map[K]int, len(items))
	for i, v := range items {
		k.index[key(v)] = i
	}
}

func (k *keyed[K, T]) apply(c Changes[T]) {
	for _, v := range c.Remove {
		k.remove(k.key(v))
	}
	for _, v := range c.Put {
		k.put(v)
	}
}

func (k *keyed[K, T]) remove(key K) {
	i, ok := k.index[key]
	if !ok {
		return
	}
	last := len(k.items) - 1
	if i != last {
		k.items[i] = k.items[last]
		k.index[k.key(k.items[i])] = i
	}
	var zero T
	k.items[last] = zero
	k.items = k.items[:last]
	delete(k.index, key)
}

func (k *keyed[K, T]) put(v T) {
	key := k.key(v)
	if i, ok := k.index[key]; ok {
		k.items[i] = v
		return
	}
	k.index[key] = len(k.items)
	k.items = append(k.items, v)
}
