package control

import (
	"context"
	"errors"
)

// DefaultGroupName is the group a port created without groups joins, as
// Neutron's per-project "default" group: everything out, and in from its
// own members. Its id is fixed, so a port can name it before it exists.
const (
	DefaultGroupName = "default"
	DefaultGroupID   = "b5c6f2d0-7d0a-5a8e-9c3e-64656661756c" // UUID-shaped, "default" in its last bytes
)

// ensureDefaultGroup creates the default security group with Neutron's
// default rules unless it exists.
func (c *Controller) ensureDefaultGroup(ctx context.Context) (SecurityGroup, error) {
	sg, err := c.GetSecurityGroup(ctx, DefaultGroupID)
	if err == nil || !errors.Is(err, ErrNotFound) {
		return sg, err
	}
	sg, err = c.CreateSecurityGroup(ctx, SecurityGroupSpec{ID: DefaultGroupID, Name: DefaultGroupName, Description: "Default security group"})
	if errors.Is(err, ErrExists) {
		return c.GetSecurityGroup(ctx, DefaultGroupID) // created meanwhile
	}
	if err != nil {
		return sg, err
	}
	for _, r := range []SGRule{
		{Direction: "egress", Ethertype: "IPv4"},
		{Direction: "egress", Ethertype: "IPv6"},
		{Direction: "ingress", Ethertype: "IPv4", RemoteGroupID: sg.ID},
		{Direction: "ingress", Ethertype: "IPv6", RemoteGroupID: sg.ID},
	} {
		if _, err := c.AddSecurityGroupRule(ctx, sg.ID, r); err != nil {
			return sg, err
		}
	}
	return c.GetSecurityGroup(ctx, sg.ID)
}
