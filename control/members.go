package control

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Members of security groups: the controller keeps one record per (group,
// port) holding the port's addresses (MemberRecord), written with every
// change of a port's groups or addresses. A port's records for the groups
// it joins are written before the port record and those of groups it
// leaves deleted after it, so that a member is never missing from a group
// it is in; a crash in between leaves an extra record, which SyncMembers
// (run by `vxdp server` at start and periodically) removes.

// membersOf returns the member records port p (nil: none) stands for, by
// group id.
func membersOf(p *PortRecord) map[string]*MemberRecord {
	out := map[string]*MemberRecord{}
	if p == nil || !p.PortSecurity {
		return out
	}
	addrs := memberAddresses(p)
	for _, g := range p.SecurityGroups {
		out[g] = &MemberRecord{GroupID: g, PortID: p.ID, Addresses: addrs}
	}
	return out
}

// writeMembers writes the member records of port now that change from
// before (nil: a new port), and returns what undoes them. It deletes
// nothing: see dropMembers.
func (c *Controller) writeMembers(ctx context.Context, before, now *PortRecord) (func(), error) {
	old, want := membersOf(before), membersOf(now)
	var undo []func()
	rollback := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	for _, g := range slices.Sorted(maps.Keys(want)) {
		m := want[g]
		prev, had := old[g]
		if had && slices.Equal(prev.Addresses, m.Addresses) {
			continue
		}
		key := MemberKey(g, now.ID)
		if _, err := c.put(ctx, key, m); err != nil {
			rollback()
			return nil, fmt.Errorf("member %s of group %s: %w", now.ID, g, err)
		}
		bg := context.WithoutCancel(ctx)
		if had {
			undo = append(undo, func() { _, _ = c.put(bg, key, prev) })
		} else {
			undo = append(undo, func() { _ = c.del(bg, key, 0) })
		}
	}
	return rollback, nil
}

// dropMembers deletes the member records of port before for the groups it
// is no longer in (now nil: deleted). Failures are logged: SyncMembers
// removes what is left.
func (c *Controller) dropMembers(ctx context.Context, before, now *PortRecord) {
	want := membersOf(now)
	for g := range membersOf(before) {
		if _, keep := want[g]; keep {
			continue
		}
		if err := c.del(ctx, MemberKey(g, before.ID), 0); err != nil {
			c.log.Warn("member record left behind (vxdp server removes it)", "group", g, "port", before.ID, "err", err)
		}
	}
}

// dropGroupMembers deletes every member record of group sg.
func (c *Controller) dropGroupMembers(ctx context.Context, sg string) {
	left, err := c.reader.loadLatest(ctx, []string{MembersFilter(sg)}, nil)
	if err != nil {
		return
	}
	for _, e := range left {
		if !e.Deleted {
			_ = c.del(ctx, e.Key, e.Rev)
		}
	}
}

// MemberSync is what SyncMembers changed.
type MemberSync struct {
	Written, Deleted int
}

// DefaultMemberSyncGrace spares member records written this recently: they
// may belong to a port change in flight (members are written before the
// port record, which the sync may have read before the change).
const DefaultMemberSyncGrace = time.Minute

// SyncMembers makes the member records match the port records: it writes
// missing or stale ones and deletes those of no port (a crashed
// controller's leftovers, or a bucket from before member records existed).
// Records written in the last minute and records changed meanwhile are
// left for the next run.
func (c *Controller) SyncMembers(ctx context.Context) (MemberSync, error) {
	var res MemberSync
	have, err := c.reader.loadLatest(ctx, []string{AllMembersFilter}, nil)
	if err != nil {
		return res, err
	}
	recs, err := c.load(ctx, PortsFilter)
	if err != nil {
		return res, err
	}
	want := map[string]*MemberRecord{}
	for _, r := range recs {
		for g, m := range membersOf(r.Rec.(*PortRecord)) {
			want[MemberKey(g, m.PortID)] = m
		}
	}
	var errs []error
	seen := map[string]bool{}
	for _, e := range have {
		if e.Deleted {
			continue
		}
		seen[e.Key] = true
		if time.Since(e.Created) < c.memberGrace {
			continue
		}
		m, ok := want[e.Key]
		var err error
		switch {
		case !ok:
			if err = c.del(ctx, e.Key, e.Rev); err == nil {
				res.Deleted++
			}
		case !sameMember(e, m):
			if _, err = c.update(ctx, e.Key, m, e.Rev); err == nil {
				res.Written++
			}
		}
		if err != nil && !errors.Is(err, ErrConflict) {
			errs = append(errs, err)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(want)) {
		if seen[key] {
			continue
		}
		k := ParseKey(key)
		if _, err := c.GetPort(ctx, k.Port); err != nil {
			continue // deleted meanwhile
		}
		if _, err := c.create(ctx, key, want[key]); err != nil {
			if !errors.Is(err, ErrExists) {
				errs = append(errs, err)
			}
			continue
		}
		res.Written++
	}
	if res.Written+res.Deleted > 0 {
		c.log.Info("security group members synchronised", "written", res.Written, "deleted", res.Deleted)
	}
	return res, errors.Join(errs...)
}

// sameMember reports whether the stored entry e holds m's addresses.
func sameMember(e kvEntry, m *MemberRecord) bool {
	_, cur, err := DecodeRecord(e.Key, e.Value)
	return err == nil && slices.Equal(cur.(*MemberRecord).Addresses, m.Addresses)
}
