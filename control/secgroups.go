package control

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// SecurityGroupSpec asks for a security group.
type SecurityGroupSpec struct {
	Name        string
	Description string
	ID          string // optional UUID
	// Project owns the group ("": AdminProject).
	Project string
	// Stateless makes a group whose rules must allow replies too.
	Stateless bool
}

// SecurityGroup is a security group record with its revision.
type SecurityGroup struct {
	SecurityGroupRecord
	Revision uint64 `json:"revision"`
}

// SecurityGroupRule is a rule with the group it belongs to.
type SecurityGroupRule struct {
	SGRule
	SecurityGroupID string `json:"security_group_id"`
	Project         string `json:"project_id"`
}

// CreateSecurityGroup creates a security group with Neutron's rules of a
// new group: everything out, IPv4 and IPv6. Names are unique per project,
// so that they can be used as references; "default" is the project's
// default group, made on the project's first use of groups (as this).
func (c *Controller) CreateSecurityGroup(ctx context.Context, spec SecurityGroupSpec) (SecurityGroup, error) {
	project := ProjectOf(spec.Project)
	rec := &SecurityGroupRecord{ID: spec.ID, Name: spec.Name, Description: spec.Description, Project: project,
		Stateless: spec.Stateless, Rules: defaultEgressRules(), CreatedAt: now()}
	if rec.ID == "" {
		rec.ID = NewUUID()
	} else if !IsUUID(rec.ID) {
		return SecurityGroup{}, invalidf("security group id %q is not a UUID", rec.ID)
	}
	if err := rec.Validate(); err != nil {
		return SecurityGroup{}, fmt.Errorf("%w: security group %q: %w", ErrInvalid, spec.Name, err)
	}
	if spec.Name == DefaultGroupName {
		return SecurityGroup{}, fmt.Errorf("security group name %q is the project's default group, made when the project first uses groups; choose another name: %w",
			spec.Name, ErrExists)
	}
	if err := c.ensureDefaultGroup(ctx, project); err != nil {
		return SecurityGroup{}, err
	}
	if sg, err := c.FindSecurityGroup(ctx, project, spec.Name); err == nil {
		return SecurityGroup{}, fmt.Errorf("security group %q of project %s (%s): %w", spec.Name, project, sg.ID, ErrExists)
	}
	if err := c.checkQuota(ctx, project, usage{groups: 1, rules: len(rec.Rules)}); err != nil {
		return SecurityGroup{}, err
	}
	rev, err := c.create(ctx, SecGroupKey(rec.ID), rec)
	if err != nil {
		return SecurityGroup{}, err
	}
	c.log.Info("security group created", "id", rec.ID, "name", rec.Name, "project", project, "revision", rev)
	return SecurityGroup{SecurityGroupRecord: *rec, Revision: rev}, nil
}

// securityGroups reads security group records.
var securityGroups = namedKind[SecurityGroup]{what: "security group", key: SecGroupKey, filter: SecGroupsFilter,
	wrap:  func(rec any, rev uint64) SecurityGroup { return SecurityGroup{*rec.(*SecurityGroupRecord), rev} },
	names: func(g SecurityGroup) (string, string, string) { return g.Name, g.Project, g.ID }}

// ListSecurityGroups returns every security group, by project and name.
func (c *Controller) ListSecurityGroups(ctx context.Context) ([]SecurityGroup, error) {
	return securityGroups.list(ctx, c)
}

// GetSecurityGroup finds a security group by id, or by a name unique
// among all projects.
func (c *Controller) GetSecurityGroup(ctx context.Context, ref string) (SecurityGroup, error) {
	return securityGroups.find(ctx, c, "", ref)
}

// FindSecurityGroup finds a security group by id, or by name in project
// ("": a name unique among all projects).
func (c *Controller) FindSecurityGroup(ctx context.Context, project, ref string) (SecurityGroup, error) {
	return securityGroups.find(ctx, c, project, ref)
}

// AddSecurityGroupRule adds a rule (its ID is generated) to the group sgRef
// names (its remote group and address group by id, or by name in the
// group's project), with a compare-and-set on the group, retrying when
// another rule was added meanwhile. A remote_ip_prefix with host bits set
// is stored masked, as Neutron does (10.0.0.1/8 is 10.0.0.0/8). A rule
// allowing the same as an existing one is refused, as in Neutron; so are
// a remote group or address group of another project, a rule over the
// project's quota, and a rule that would leave some port's groups too
// many classes to compile (checkRuleFits). Nothing is written when the
// rule is refused.
func (c *Controller) AddSecurityGroupRule(ctx context.Context, sgRef string, rule SGRule) (SecurityGroupRule, error) {
	rule.ID = NewUUID()
	if rule.Ethertype == "" {
		rule.Ethertype = "IPv4"
		if rule.RemoteIPPrefix.IsValid() && rule.RemoteIPPrefix.Addr().Is6() {
			rule.Ethertype = "IPv6"
		}
	}
	if rule.RemoteIPPrefix.IsValid() {
		rule.RemoteIPPrefix = rule.RemoteIPPrefix.Masked()
	}
	rule.Protocol = strings.ToLower(rule.Protocol)
	if rule.Protocol == "any" {
		rule.Protocol = ""
	}
	for attempt := 0; attempt < 5; attempt++ {
		sg, err := c.GetSecurityGroup(ctx, sgRef)
		if err != nil {
			return SecurityGroupRule{}, err
		}
		project := ProjectOf(sg.Project)
		if attempt == 0 {
			if rule, err = c.resolveRemotes(ctx, project, rule); err != nil {
				return SecurityGroupRule{}, err
			}
			if err := rule.Validate(); err != nil {
				return SecurityGroupRule{}, fmt.Errorf("%w: rule: %w", ErrInvalid, err)
			}
			if err := c.checkQuota(ctx, project, usage{rules: 1}); err != nil {
				return SecurityGroupRule{}, err
			}
		}
		for _, r := range sg.Rules {
			if sameRule(r, rule) {
				return SecurityGroupRule{}, fmt.Errorf("security group %s already has rule %s allowing the same: %w", sg.Name, r.ID, ErrExists)
			}
		}
		rec := sg.SecurityGroupRecord
		rec.Rules = append(slices.Clone(rec.Rules), rule)
		if err := c.checkRuleFits(ctx, &rec, rule); err != nil {
			return SecurityGroupRule{}, fmt.Errorf("rule refused: %w", err)
		}
		rev, err := c.update(ctx, SecGroupKey(sg.ID), &rec, sg.Revision)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return SecurityGroupRule{}, err
		}
		c.log.Info("security group rule added", "group", sg.ID, "rule", rule.ID, "revision", rev)
		return SecurityGroupRule{SGRule: rule, SecurityGroupID: sg.ID, Project: project}, nil
	}
	return SecurityGroupRule{}, fmt.Errorf("add rule to %s: %w", sgRef, ErrConflict)
}

// resolveRemotes replaces the rule's remote group and address group
// references by ids, refusing those that do not exist in project.
func (c *Controller) resolveRemotes(ctx context.Context, project string, rule SGRule) (SGRule, error) {
	if rule.RemoteGroupID != "" {
		rg, err := c.FindSecurityGroup(ctx, project, rule.RemoteGroupID)
		if err != nil {
			return rule, fmt.Errorf("remote_group_id: %w", err)
		}
		if ProjectOf(rg.Project) != project {
			return rule, invalidf("remote_group_id: group %s belongs to project %s, the rule to %s; name a group of %s", rg.ID, ProjectOf(rg.Project), project, project)
		}
		rule.RemoteGroupID = rg.ID
	}
	if rule.RemoteAddressGroupID != "" {
		ag, err := c.FindAddressGroup(ctx, project, rule.RemoteAddressGroupID)
		if err != nil {
			return rule, fmt.Errorf("remote_address_group_id: %w", err)
		}
		if ProjectOf(ag.Project) != project {
			return rule, invalidf("remote_address_group_id: address group %s belongs to project %s, the rule to %s", ag.ID, ProjectOf(ag.Project), project)
		}
		rule.RemoteAddressGroupID = ag.ID
	}
	return rule, nil
}

// ListSecurityGroupRules returns the rules of the group sgRef names (in
// project when not ""), or of every group when sgRef is "" (of project's
// groups when project is not "").
func (c *Controller) ListSecurityGroupRules(ctx context.Context, project, sgRef string) ([]SecurityGroupRule, error) {
	var groups []SecurityGroup
	if sgRef != "" {
		sg, err := c.FindSecurityGroup(ctx, project, sgRef)
		if err != nil {
			return nil, err
		}
		groups = []SecurityGroup{sg}
	} else {
		all, err := c.ListSecurityGroups(ctx)
		if err != nil {
			return nil, err
		}
		for _, g := range all {
			if project == "" || ProjectOf(g.Project) == ProjectOf(project) {
				groups = append(groups, g)
			}
		}
	}
	out := []SecurityGroupRule{}
	for _, g := range groups {
		out = append(out, g.GroupRules()...)
	}
	return out, nil
}

// GroupRules are the group's rules with the group they belong to.
func (g SecurityGroup) GroupRules() []SecurityGroupRule {
	out := make([]SecurityGroupRule, len(g.Rules))
	for i, r := range g.Rules {
		out[i] = SecurityGroupRule{SGRule: r, SecurityGroupID: g.ID, Project: ProjectOf(g.Project)}
	}
	return out
}

// DeleteSecurityGroupRule deletes a rule by id, whatever its group.
func (c *Controller) DeleteSecurityGroupRule(ctx context.Context, ruleID string) error {
	for attempt := 0; attempt < 5; attempt++ {
		err := c.deleteRuleOnce(ctx, ruleID)
		if !errors.Is(err, ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("delete rule %s: %w", ruleID, ErrConflict)
}

func (c *Controller) deleteRuleOnce(ctx context.Context, ruleID string) error {
	all, err := c.ListSecurityGroups(ctx)
	if err != nil {
		return err
	}
	for _, sg := range all {
		i := slices.IndexFunc(sg.Rules, func(r SGRule) bool { return r.ID == ruleID })
		if i < 0 {
			continue
		}
		rec := sg.SecurityGroupRecord
		rec.Rules = slices.Delete(slices.Clone(rec.Rules), i, i+1)
		rev, err := c.update(ctx, SecGroupKey(sg.ID), &rec, sg.Revision)
		if err == nil {
			c.log.Info("security group rule deleted", "group", sg.ID, "rule", ruleID, "revision", rev)
		}
		return err
	}
	return fmt.Errorf("security group rule %q: %w", ruleID, ErrNotFound)
}

// DeleteSecurityGroup deletes a group no port or rule refers to.
func (c *Controller) DeleteSecurityGroup(ctx context.Context, ref string) error {
	sg, err := c.GetSecurityGroup(ctx, ref)
	if err != nil {
		return err
	}
	ports, err := c.load(ctx, PortsFilter)
	if err != nil {
		return err
	}
	for _, r := range ports {
		if slices.Contains(r.Rec.(*PortRecord).SecurityGroups, sg.ID) {
			return fmt.Errorf("security group %s is used by port %s; take it off (vxdp port unset --security-group): %w", sg.Name, r.Parsed.Port, ErrInUse)
		}
	}
	all, err := c.ListSecurityGroups(ctx)
	if err != nil {
		return err
	}
	for _, other := range all {
		for _, r := range other.Rules {
			if r.RemoteGroupID == sg.ID && other.ID != sg.ID {
				return fmt.Errorf("security group %s is the remote group of rule %s of %s; delete that rule first: %w", sg.Name, r.ID, other.Name, ErrInUse)
			}
		}
	}
	if err := c.del(ctx, SecGroupKey(sg.ID), sg.Revision); err != nil {
		return err
	}
	// Members of a group without ports are leftovers of a crash.
	c.dropGroupMembers(ctx, sg.ID)
	return nil
}

// portGroups resolves the security group references of port (a name for
// errors) of project to ids, refusing groups of other projects, a mix of
// stateful and stateless groups, and groups whose rules together the
// dataplane could not compile for the port (policyOverflow).
func (c *Controller) portGroups(ctx context.Context, project, port string, refs []string) ([]string, error) {
	var ids []string
	var stateful, stateless []string
	var groups []*SecurityGroupRecord
	for _, ref := range refs {
		sg, err := c.FindSecurityGroup(ctx, project, ref)
		if err != nil {
			return nil, err
		}
		if ProjectOf(sg.Project) != ProjectOf(project) {
			return nil, invalidf("security group %s belongs to project %s, the port to %s: give a group of %s",
				sg.Name, ProjectOf(sg.Project), ProjectOf(project), ProjectOf(project))
		}
		if slices.Contains(ids, sg.ID) {
			continue
		}
		ids = append(ids, sg.ID)
		groups = append(groups, &sg.SecurityGroupRecord)
		if sg.Stateless {
			stateless = append(stateless, sg.Name)
		} else {
			stateful = append(stateful, sg.Name)
		}
	}
	if len(stateful) > 0 && len(stateless) > 0 {
		return nil, invalidf("security groups: %s stateful and %s stateless: one port cannot mix them; give groups of one kind",
			strings.Join(stateful, ", "), strings.Join(stateless, ", "))
	}
	if err := policyOverflow(groups); err != nil {
		return nil, invalidf("port %s in security groups %s would pass only always-allowed traffic: %v", port, groupNames(groups), err)
	}
	return ids, nil
}
