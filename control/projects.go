package control

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
)

// Projects (Neutron's tenants) own networks, ports, security groups and
// address groups. A record without a project belongs to AdminProject: so
// are the records written before projects existed.
const AdminProject = "admin"

// ProjectOf is the project a record's project field names.
func ProjectOf(p string) string { return cmp.Or(p, AdminProject) }

func validProject(p string) error {
	if p == "" {
		return nil
	}
	if err := ValidID(p); err != nil {
		return fmt.Errorf("project_id: %w", err)
	}
	return nil
}

// DefaultGroupName is the name of each project's default group: a port
// created without groups joins it. It allows everything out and everything
// in from its own members.
const DefaultGroupName = "default"

// DefaultGroupID is the id of the admin project's default group (the one
// group of the same name before projects existed).
const DefaultGroupID = "b5c6f2d0-7d0a-5a8e-9c3e-64656661756c" // UUID-shaped, "default" in its last bytes

// DefaultGroupIDOf is the id of project's default group: fixed, so that a
// port can name it before it exists and two controllers creating it at
// once make one group.
func DefaultGroupIDOf(project string) string {
	if ProjectOf(project) == AdminProject {
		return DefaultGroupID
	}
	return nameUUID("vxdp default security group\x00" + project)
}

// nameUUID is a name-based (version 5-style) UUID of name: every
// controller derives the same one.
func nameUUID(name string) string {
	h := sha256.Sum256([]byte(name))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// defaultEgressRules are the rules of every new group: everything out,
// IPv4 and IPv6 (Neutron's).
func defaultEgressRules() []SGRule {
	return []SGRule{
		{ID: NewUUID(), Direction: "egress", Ethertype: "IPv4"},
		{ID: NewUUID(), Direction: "egress", Ethertype: "IPv6"},
	}
}

// ensureDefaultGroup creates project's default group unless it exists:
// the egress rules of every group, and ingress from its own members.
func (c *Controller) ensureDefaultGroup(ctx context.Context, project string) error {
	project = ProjectOf(project)
	id := DefaultGroupIDOf(project)
	if _, _, err := c.get(ctx, SecGroupKey(id)); !errors.Is(err, ErrNotFound) {
		return err
	}
	rec := &SecurityGroupRecord{ID: id, Name: DefaultGroupName, Description: "Default security group", Project: project, CreatedAt: now(),
		Rules: append(defaultEgressRules(),
			SGRule{ID: NewUUID(), Direction: "ingress", Ethertype: "IPv4", RemoteGroupID: id},
			SGRule{ID: NewUUID(), Direction: "ingress", Ethertype: "IPv6", RemoteGroupID: id})}
	if err := c.checkQuota(ctx, project, usage{groups: 1, rules: len(rec.Rules)}); err != nil {
		return fmt.Errorf("default security group of project %s: %w", project, err)
	}
	rev, err := c.create(ctx, SecGroupKey(id), rec)
	if errors.Is(err, ErrExists) {
		return nil // created meanwhile
	}
	if err == nil {
		c.log.Info("default security group created", "project", project, "id", id, "revision", rev)
	}
	return err
}

// QuotaRecord holds the per-project quotas (key meta.quotas); `vxdp server`
// writes it from its flags, every controller enforces it.
type QuotaRecord struct {
	Schema int `json:"schema"`
	Quotas
}

// Quotas are per-project limits, Neutron's names; a negative one is no limit.
type Quotas struct {
	Networks           int `json:"network"`
	Ports              int `json:"port"`
	SecurityGroups     int `json:"security_group"`
	SecurityGroupRules int `json:"security_group_rule"`
}

// DefaultQuotas are the seed deployment's (Neutron's defaults).
var DefaultQuotas = Quotas{Networks: 200, Ports: 5000, SecurityGroups: 100, SecurityGroupRules: 1000}

// Validate checks the quotas.
func (r *QuotaRecord) Validate() error {
	for name, v := range map[string]int{"network": r.Networks, "port": r.Ports, "security_group": r.SecurityGroups,
		"security_group_rule": r.SecurityGroupRules} {
		if v < -1 {
			return fmt.Errorf("quota %s %d: want -1 (no limit) or more", name, v)
		}
	}
	return nil
}

// ErrQuota is a request refused because it would exceed a project's quota.
var ErrQuota = errors.New("quota exceeded")

// SetQuotas stores the quotas every controller enforces.
func (c *Controller) SetQuotas(ctx context.Context, q Quotas) error {
	rec := &QuotaRecord{Quotas: q}
	if err := rec.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	_, err := c.put(ctx, QuotaKey, rec)
	return err
}

// GetQuotas returns the stored quotas (DefaultQuotas when none are).
func (c *Controller) GetQuotas(ctx context.Context) (Quotas, error) {
	rec, _, err := c.get(ctx, QuotaKey)
	if errors.Is(err, ErrNotFound) {
		return DefaultQuotas, nil
	}
	if err != nil {
		return Quotas{}, err
	}
	return rec.(*QuotaRecord).Quotas, nil
}

// usage counts what a project holds, or what a request adds.
type usage struct{ networks, ports, groups, rules int }

// Usage is what project holds, against its quotas.
func (c *Controller) Usage(ctx context.Context, project string) (Quotas, error) {
	u, err := c.usageOf(ctx, ProjectOf(project), usage{networks: 1, ports: 1, groups: 1})
	return Quotas{Networks: u.networks, Ports: u.ports, SecurityGroups: u.groups, SecurityGroupRules: u.rules}, err
}

// usageOf counts project's records of the kinds add asks about.
func (c *Controller) usageOf(ctx context.Context, project string, add usage) (usage, error) {
	var filters []string
	if add.networks > 0 {
		filters = append(filters, NetworksFilter)
	}
	if add.ports > 0 {
		filters = append(filters, PortsFilter)
	}
	if add.groups > 0 || add.rules > 0 {
		filters = append(filters, SecGroupsFilter)
	}
	recs, err := c.load(ctx, filters...)
	if err != nil {
		return usage{}, err
	}
	var u usage
	for _, r := range recs {
		switch rec := r.Rec.(type) {
		case *NetworkRecord:
			if ProjectOf(rec.Project) == project {
				u.networks++
			}
		case *PortRecord:
			if ProjectOf(rec.Project) == project {
				u.ports++
			}
		case *SecurityGroupRecord:
			if ProjectOf(rec.Project) == project {
				u.groups++
				u.rules += len(rec.Rules)
			}
		}
	}
	return u, nil
}

// checkQuota refuses a request that would take project over a quota. It
// reads before the request writes: concurrent requests of one project may
// together exceed a quota by as many as run at once.
func (c *Controller) checkQuota(ctx context.Context, project string, add usage) error {
	q, err := c.GetQuotas(ctx)
	if err != nil {
		return err
	}
	u, err := c.usageOf(ctx, project, add)
	if err != nil {
		return err
	}
	for _, x := range []struct {
		name, flag   string
		limit, n, by int
	}{
		{"network", "--quota-networks", q.Networks, u.networks, add.networks},
		{"port", "--quota-ports", q.Ports, u.ports, add.ports},
		{"security_group", "--quota-security-groups", q.SecurityGroups, u.groups, add.groups},
		{"security_group_rule", "--quota-security-group-rules", q.SecurityGroupRules, u.rules, add.rules},
	} {
		if x.by > 0 && x.limit >= 0 && x.n+x.by > x.limit {
			return fmt.Errorf("quota %s of project %s is %d, %d in use, %d more asked: delete some, or raise it (vxdp server %s): %w",
				x.name, project, x.limit, x.n, x.by, x.flag, ErrQuota)
		}
	}
	return nil
}
