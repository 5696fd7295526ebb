package control

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Address groups: named lists of prefixes, the remote of rules with
// remote_address_group_id (Neutron's address groups).

// AddressGroupSpec asks for an address group.
type AddressGroupSpec struct {
	Name        string
	Description string
	Project     string // "": AdminProject
	Addresses   []netip.Prefix
	ID          string // optional UUID
}

// AddressGroup is an address group record with its revision.
type AddressGroup struct {
	AddressGroupRecord
	Revision uint64 `json:"revision"`
}

// CreateAddressGroup creates an address group; names are unique per project.
func (c *Controller) CreateAddressGroup(ctx context.Context, spec AddressGroupSpec) (AddressGroup, error) {
	project := ProjectOf(spec.Project)
	rec := &AddressGroupRecord{ID: spec.ID, Name: spec.Name, Description: spec.Description, Project: project,
		Addresses: normalPrefixes(spec.Addresses), CreatedAt: now()}
	if rec.ID == "" {
		rec.ID = NewUUID()
	} else if !IsUUID(rec.ID) {
		return AddressGroup{}, invalidf("address group id %q is not a UUID", rec.ID)
	}
	if err := rec.Validate(); err != nil {
		return AddressGroup{}, fmt.Errorf("%w: address group %q: %w", ErrInvalid, spec.Name, err)
	}
	if ag, err := c.FindAddressGroup(ctx, project, spec.Name); err == nil {
		return AddressGroup{}, fmt.Errorf("address group %q of project %s (%s): %w", spec.Name, project, ag.ID, ErrExists)
	}
	rev, err := c.create(ctx, AddressGroupKey(rec.ID), rec)
	if err != nil {
		return AddressGroup{}, err
	}
	c.log.Info("address group created", "id", rec.ID, "name", rec.Name, "project", project, "revision", rev)
	return AddressGroup{AddressGroupRecord: *rec, Revision: rev}, nil
}

// normalPrefixes sorts and deduplicates prefixes (never nil: JSON []).
func normalPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := slices.Clone(ps)
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return append([]netip.Prefix{}, slices.Compact(out)...)
}

// addressGroups reads address group records.
var addressGroups = namedKind[AddressGroup]{what: "address group", key: AddressGroupKey, filter: AddressGroupsFilter,
	wrap:  func(rec any, rev uint64) AddressGroup { return AddressGroup{*rec.(*AddressGroupRecord), rev} },
	names: func(g AddressGroup) (string, string, string) { return g.Name, g.Project, g.ID }}

// ListAddressGroups returns every address group, by project and name.
func (c *Controller) ListAddressGroups(ctx context.Context) ([]AddressGroup, error) {
	return addressGroups.list(ctx, c)
}

// GetAddressGroup finds an address group by id, or by a name unique among
// all projects.
func (c *Controller) GetAddressGroup(ctx context.Context, ref string) (AddressGroup, error) {
	return addressGroups.find(ctx, c, "", ref)
}

// FindAddressGroup finds an address group by id, or by name in project
// ("": a name unique among all projects).
func (c *Controller) FindAddressGroup(ctx context.Context, project, ref string) (AddressGroup, error) {
	return addressGroups.find(ctx, c, project, ref)
}

// AddressGroupUpdate changes an address group: Clear empties it first,
// then Add are added and Remove removed; Name and Description replace
// theirs when not "".
type AddressGroupUpdate struct {
	Name, Description string
	Clear             bool
	Add, Remove       []netip.Prefix
}

// UpdateAddressGroup changes the address group ref names (compare-and-set,
// retried when it changed meanwhile). Every rule naming it follows: the
// agents re-resolve it, and flows it no longer allows are cut.
func (c *Controller) UpdateAddressGroup(ctx context.Context, ref string, u AddressGroupUpdate) (AddressGroup, error) {
	for attempt := 0; attempt < 5; attempt++ {
		ag, err := c.GetAddressGroup(ctx, ref)
		if err != nil {
			return AddressGroup{}, err
		}
		rec := ag.AddressGroupRecord
		if u.Name != "" && u.Name != rec.Name {
			if other, err := c.FindAddressGroup(ctx, rec.Project, u.Name); err == nil {
				return AddressGroup{}, fmt.Errorf("address group %q of project %s (%s): %w", u.Name, ProjectOf(rec.Project), other.ID, ErrExists)
			}
			rec.Name = u.Name
		}
		if u.Description != "" {
			rec.Description = u.Description
		}
		addrs := slices.Clone(rec.Addresses)
		if u.Clear {
			addrs = nil
		}
		for _, p := range u.Remove {
			i := slices.Index(addrs, p)
			if i < 0 {
				return AddressGroup{}, fmt.Errorf("address group %s has no address %s: %w", rec.Name, p, ErrNotFound)
			}
			addrs = slices.Delete(addrs, i, i+1)
		}
		rec.Addresses = normalPrefixes(append(addrs, u.Add...))
		if err := rec.Validate(); err != nil {
			return AddressGroup{}, fmt.Errorf("%w: address group %q: %w", ErrInvalid, rec.Name, err)
		}
		rev, err := c.update(ctx, AddressGroupKey(rec.ID), &rec, ag.Revision)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return AddressGroup{}, err
		}
		c.log.Info("address group changed", "id", rec.ID, "addresses", len(rec.Addresses), "revision", rev)
		return AddressGroup{AddressGroupRecord: rec, Revision: rev}, nil
	}
	return AddressGroup{}, fmt.Errorf("change address group %s: %w", ref, ErrConflict)
}

// DeleteAddressGroup deletes an address group no rule names.
func (c *Controller) DeleteAddressGroup(ctx context.Context, ref string) error {
	ag, err := c.GetAddressGroup(ctx, ref)
	if err != nil {
		return err
	}
	groups, err := c.ListSecurityGroups(ctx)
	if err != nil {
		return err
	}
	for _, g := range groups {
		for _, r := range g.Rules {
			if r.RemoteAddressGroupID == ag.ID {
				return fmt.Errorf("address group %s is the remote of rule %s of security group %s; delete that rule first: %w", ag.Name, r.ID, g.Name, ErrInUse)
			}
		}
	}
	return c.del(ctx, AddressGroupKey(ag.ID), ag.Revision)
}
