package control

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// namedKind reads one kind of record that has a name unique per project
// (security groups, address groups).
type namedKind[T any] struct {
	what   string // e.g. "security group"
	key    func(id string) string
	filter string
	wrap   func(rec any, rev uint64) T
	names  func(T) (name, project, id string)
}

// list returns every record of the kind, by project, name and id.
func (k namedKind[T]) list(ctx context.Context, c *Controller) ([]T, error) {
	recs, err := c.load(ctx, k.filter)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(recs))
	for _, r := range recs {
		out = append(out, k.wrap(r.Rec, r.Rev))
	}
	slices.SortFunc(out, func(a, b T) int {
		an, ap, aid := k.names(a)
		bn, bp, bid := k.names(b)
		return cmp.Or(strings.Compare(ProjectOf(ap), ProjectOf(bp)), strings.Compare(an, bn), strings.Compare(aid, bid))
	})
	return out, nil
}

// find returns the record whose id is ref, or the one named ref in project
// ("": in any project, if only one has that name).
func (k namedKind[T]) find(ctx context.Context, c *Controller, project, ref string) (T, error) {
	var zero T
	if ref == "" {
		return zero, invalidf("empty %s reference", k.what)
	}
	if ValidID(ref) == nil {
		rec, rev, err := c.get(ctx, k.key(ref))
		if err == nil {
			return k.wrap(rec, rev), nil
		}
		if !errors.Is(err, ErrNotFound) {
			return zero, err
		}
	}
	all, err := k.list(ctx, c)
	if err != nil {
		return zero, err
	}
	var found []T
	var projects []string
	for _, it := range all {
		name, p, _ := k.names(it)
		if name == ref && (project == "" || ProjectOf(p) == ProjectOf(project)) {
			found = append(found, it)
			projects = append(projects, ProjectOf(p))
		}
	}
	switch len(found) {
	case 0:
		if project != "" {
			return zero, fmt.Errorf("%s %q in project %s: %w", k.what, ref, ProjectOf(project), ErrNotFound)
		}
		return zero, fmt.Errorf("%s %q: %w", k.what, ref, ErrNotFound)
	case 1:
		return found[0], nil
	}
	return zero, invalidf("%s name %q is used in projects %s: give --project or the id", k.what, ref, strings.Join(projects, ", "))
}
