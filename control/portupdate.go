package control

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/vxdp/vxdp/state"
)

// PortUpdate changes a port's security and DNS name, as `openstack port set/unset`:
// the Clear* fields empty a list first, Add* then append to it and
// Remove* take items off it.
type PortUpdate struct {
	ClearSecurityGroups  bool
	AddSecurityGroups    []string // by id or name in the port's project
	RemoveSecurityGroups []string
	// PortSecurity turns port security on or off (nil: unchanged). Off
	// needs the port without groups and address pairs, as in Neutron.
	PortSecurity              *bool
	ClearAllowedAddressPairs  bool
	AddAllowedAddressPairs    []state.AddressPair
	RemoveAllowedAddressPairs []state.AddressPair // a pair without MAC removes the pair of that prefix
	// DNSName sets the host name DHCP gives the VM ("" removes it).
	DNSName *string
}

// UpdatePort applies u to the port ref names with a compare-and-set on the
// port record: expectRevision != 0 must be the current revision, 0 retries
// on a concurrent change. The port's member records follow (those of
// groups it joins are written first, those of groups it leaves deleted
// after), so every rule naming its groups as remote group follows too.
// A refused update writes nothing.
func (c *Controller) UpdatePort(ctx context.Context, ref string, u PortUpdate, expectRevision uint64) (Port, error) {
	for attempt := 0; attempt < 5; attempt++ {
		p, err := c.GetPort(ctx, ref)
		if err != nil {
			return Port{}, err
		}
		if expectRevision != 0 && p.Revision != expectRevision {
			return Port{}, fmt.Errorf("port %s is at revision %d, not %d: %w", p.ID, p.Revision, expectRevision, ErrConflict)
		}
		rec, err := c.updatedPort(ctx, p.PortRecord, u)
		if err != nil {
			return Port{}, err
		}
		undo, err := c.writeMembers(ctx, &p.PortRecord, &rec)
		if err != nil {
			return Port{}, err
		}
		rev, err := c.update(ctx, PortKey(rec.NetworkID, rec.ID), &rec, p.Revision)
		if err != nil {
			undo()
			if errors.Is(err, ErrConflict) && expectRevision == 0 {
				continue
			}
			return Port{}, fmt.Errorf("update port %s: %w", p.ID, err)
		}
		c.dropMembers(ctx, &p.PortRecord, &rec)
		c.log.Info("port updated", "id", rec.ID, "security_groups", rec.SecurityGroups, "port_security", rec.PortSecurity,
			"allowed_address_pairs", len(rec.AllowedAddressPairs), "revision", rev)
		return Port{PortRecord: rec, Revision: rev, Status: p.Status}, nil
	}
	return Port{}, fmt.Errorf("update port %s: %w", ref, ErrConflict)
}

// updatedPort is rec with u applied and checked.
func (c *Controller) updatedPort(ctx context.Context, rec PortRecord, u PortUpdate) (PortRecord, error) {
	groups := slices.Clone(rec.SecurityGroups)
	if u.ClearSecurityGroups {
		groups = nil
	}
	added, err := c.portGroups(ctx, rec.Project, portLabel(rec.Name, rec.ID), u.AddSecurityGroups)
	if err != nil {
		return rec, err
	}
	for _, id := range added {
		if !slices.Contains(groups, id) {
			groups = append(groups, id)
		}
	}
	for _, ref := range u.RemoveSecurityGroups {
		sg, err := c.FindSecurityGroup(ctx, rec.Project, ref)
		if err != nil {
			return rec, err
		}
		i := slices.Index(groups, sg.ID)
		if i < 0 {
			return rec, fmt.Errorf("port %s is not in security group %s: %w", rec.ID, sg.Name, ErrNotFound)
		}
		groups = slices.Delete(groups, i, i+1)
	}
	// The whole set must be of one project and kind (stateful or not).
	if rec.SecurityGroups, err = c.portGroups(ctx, rec.Project, portLabel(rec.Name, rec.ID), groups); err != nil {
		return rec, err
	}
	pairs := slices.Clone(rec.AllowedAddressPairs)
	if u.ClearAllowedAddressPairs {
		pairs = nil
	}
	pairs = append(pairs, u.AddAllowedAddressPairs...)
	for _, rm := range u.RemoveAllowedAddressPairs {
		i := slices.IndexFunc(pairs, func(ap state.AddressPair) bool { return ap.IP == rm.IP && (rm.MAC.IsZero() || ap.MAC == rm.MAC) })
		if i < 0 {
			return rec, fmt.Errorf("port %s has no allowed address pair %s: %w", rec.ID, rm.IP, ErrNotFound)
		}
		pairs = slices.Delete(pairs, i, i+1)
	}
	rec.AllowedAddressPairs = pairs
	if u.PortSecurity != nil {
		rec.PortSecurity = *u.PortSecurity
	}
	if u.DNSName != nil {
		rec.DNSName = *u.DNSName
	}
	switch {
	case rec.PortSecurity || len(rec.SecurityGroups)+len(rec.AllowedAddressPairs) == 0:
	case u.PortSecurity == nil:
		return rec, invalidf("port %s has port security off: security groups and allowed address pairs need it on (--enable-port-security)", rec.ID)
	default:
		return rec, invalidf("port %s: port security cannot be off while the port has security groups or allowed address pairs; remove them too (--no-security-group, --no-allowed-address)", rec.ID)
	}
	rec.UpdatedAt = now()
	if err := rec.Validate(); err != nil {
		return rec, fmt.Errorf("%w: port %s: %w", ErrInvalid, rec.ID, err)
	}
	return rec, nil
}
