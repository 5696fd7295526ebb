package control

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/vxdp/vxdp/state"
)

// Ports: create, read, bind, unbind, delete, list.

// PortSpec asks for a port.
type PortSpec struct {
	// Network id or name.
	Network string
	Name    string
	// MAC; zero generates fa:16:3e:xx:xx:xx.
	MAC      state.MAC
	FixedIPs []netip.Addr
	// NoPortSecurity turns port security off (Neutron's default is on).
	NoPortSecurity      bool
	AllowedAddressPairs []state.AddressPair
	// SecurityGroups by id or name (in Project); none joins the project's
	// default group.
	SecurityGroups []string
	// Project owns the port ("": AdminProject).
	Project string
	// Host binds the port at once ("" leaves it unbound).
	Host        string
	DeviceOwner string
	// DNSName is the host name DHCP gives the VM (Neutron's --dns-name).
	DNSName string
	// ID to use instead of a random UUID (must be a UUID).
	ID string
}

// Port is a port record with its revision and its status (ACTIVE when the
// agent of its bound host reports its tap is up, DOWN otherwise).
type Port struct {
	PortRecord
	Revision uint64 `json:"revision"`
	Status   string `json:"status"`
}

// CreatePort validates spec and creates the port. Its MAC and fixed IPs
// are reserved per network with create-only writes first, so they are
// unique even under concurrent creates; anything that fails undoes what
// was written.
func (c *Controller) CreatePort(ctx context.Context, spec PortSpec) (Port, error) {
	n, err := c.GetNetwork(ctx, spec.Network)
	if err != nil {
		return Port{}, err
	}
	if n.Deleting {
		return Port{}, fmt.Errorf("network %s is being deleted: %w", n.ID, ErrConflict)
	}
	rec := &PortRecord{
		ID: spec.ID, NetworkID: n.ID, Name: spec.Name, MAC: spec.MAC, FixedIPs: spec.FixedIPs,
		PortSecurity: !spec.NoPortSecurity, AllowedAddressPairs: spec.AllowedAddressPairs,
		DeviceOwner: spec.DeviceOwner, DNSName: spec.DNSName, Host: spec.Host, Project: ProjectOf(spec.Project), CreatedAt: now(),
	}
	rec.UpdatedAt = rec.CreatedAt
	if rec.ID == "" {
		rec.ID = NewUUID()
	} else if !IsUUID(rec.ID) {
		return Port{}, invalidf("port id %q is not a UUID", rec.ID)
	}
	generated := rec.MAC.IsZero()
	if generated {
		rec.MAC = NewMAC()
	}
	if spec.Host != "" {
		rec.Generation = 1
	}
	seen := map[netip.Addr]bool{}
	for _, ip := range rec.FixedIPs {
		if seen[ip] {
			return Port{}, invalidf("fixed ip %s given twice", ip)
		}
		seen[ip] = true
		if err := n.checkFixedIP(ip); err != nil {
			return Port{}, err
		}
	}
	// Neutron: a port without groups joins its project's default group,
	// created on first use.
	refs := spec.SecurityGroups
	if len(refs) == 0 && rec.PortSecurity {
		refs = []string{DefaultGroupIDOf(rec.Project)}
	}
	if !rec.PortSecurity && len(refs) > 0 {
		return Port{}, invalidf("port %q: port security is disabled but security groups are given: drop them, or keep port security on", spec.Name)
	}
	if err := rec.Validate(); err != nil {
		return Port{}, fmt.Errorf("%w: port %q: %w", ErrInvalid, spec.Name, err)
	}
	if err := c.checkQuota(ctx, rec.Project, usage{ports: 1}); err != nil {
		return Port{}, err
	}
	if len(spec.SecurityGroups) == 0 && rec.PortSecurity {
		if err := c.ensureDefaultGroup(ctx, rec.Project); err != nil {
			return Port{}, err
		}
	}
	if rec.SecurityGroups, err = c.portGroups(ctx, rec.Project, portLabel(rec.Name, rec.ID), refs); err != nil {
		return Port{}, err
	}
	if err := rec.Validate(); err != nil {
		return Port{}, fmt.Errorf("%w: port %q: %w", ErrInvalid, spec.Name, err)
	}

	var undo []func()
	rollback := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	// MAC reservation; a generated MAC that collides is drawn again.
	for attempt := 0; ; attempt++ {
		rev, err := c.create(ctx, MACResvKey(n.ID, rec.MAC), &ReservationRecord{PortID: rec.ID})
		if err == nil {
			key := MACResvKey(n.ID, rec.MAC)
			undo = append(undo, func() { _ = c.del(context.WithoutCancel(ctx), key, rev) })
			break
		}
		if errors.Is(err, ErrExists) && generated && attempt < 8 {
			rec.MAC = NewMAC()
			continue
		}
		if errors.Is(err, ErrExists) {
			return Port{}, fmt.Errorf("mac %s is already used on network %s: %w", rec.MAC, n.Name, ErrExists)
		}
		return Port{}, err
	}
	for _, ip := range rec.FixedIPs {
		key := IPResvKey(n.ID, ip)
		rev, err := c.create(ctx, key, &ReservationRecord{PortID: rec.ID})
		if err != nil {
			rollback()
			if errors.Is(err, ErrExists) {
				return Port{}, fmt.Errorf("fixed ip %s is already used on network %s: %w", ip, n.Name, ErrExists)
			}
			return Port{}, err
		}
		undo = append(undo, func() { _ = c.del(context.WithoutCancel(ctx), key, rev) })
	}
	if rec.Host != "" {
		key := BindingKey(rec.Host, rec.ID)
		rev, err := c.put(ctx, key, &BindingRecord{PortID: rec.ID, NetworkID: n.ID, Generation: rec.Generation})
		if err != nil {
			rollback()
			return Port{}, err
		}
		undo = append(undo, func() { _ = c.del(context.WithoutCancel(ctx), key, rev) })
	}
	unmember, err := c.writeMembers(ctx, nil, rec)
	if err != nil {
		rollback()
		return Port{}, err
	}
	undo = append(undo, unmember)
	rev, err := c.create(ctx, PortKey(n.ID, rec.ID), rec)
	if err != nil {
		rollback()
		return Port{}, fmt.Errorf("create port %q: %w", spec.Name, err)
	}
	undo = append(undo, func() { _ = c.del(context.WithoutCancel(ctx), PortKey(n.ID, rec.ID), rev) })
	// A network or subnet delete that started before the port existed
	// marks it first; seeing the mark (or it gone) means back out.
	again, err := c.GetNetwork(ctx, n.ID)
	if err != nil || again.Deleting {
		rollback()
		return Port{}, fmt.Errorf("network %s was deleted while the port was created: %w", n.ID, ErrConflict)
	}
	for _, ip := range rec.FixedIPs {
		if err := again.checkFixedIP(ip); err != nil {
			rollback()
			return Port{}, fmt.Errorf("the subnets of network %s changed while the port was created: %w", n.ID, err)
		}
	}
	c.log.Info("port created", "id", rec.ID, "network", n.ID, "mac", rec.MAC, "host", rec.Host, "revision", rev)
	return Port{PortRecord: *rec, Revision: rev, Status: StatusDown}, nil
}

// GetPort finds a port by id or by (unique) name, with its status.
func (c *Controller) GetPort(ctx context.Context, ref string) (Port, error) {
	if ref == "" {
		return Port{}, invalidf("empty port reference")
	}
	var recs []loadedRecord
	var err error
	if ValidID(ref) == nil {
		recs, err = c.load(ctx, PortByIDFilter(ref))
		if err != nil {
			return Port{}, err
		}
	}
	if len(recs) == 0 {
		all, err := c.load(ctx, PortsFilter)
		if err != nil {
			return Port{}, err
		}
		for _, r := range all {
			if r.Rec.(*PortRecord).Name == ref {
				recs = append(recs, r)
			}
		}
	}
	switch len(recs) {
	case 0:
		return Port{}, fmt.Errorf("port %q: %w", ref, ErrNotFound)
	case 1:
	default:
		return Port{}, invalidf("port reference %q is ambiguous (%d ports); use the id", ref, len(recs))
	}
	p := Port{PortRecord: *recs[0].Rec.(*PortRecord), Revision: recs[0].Rev, Status: StatusDown}
	if p.Host != "" {
		if st, _, err := c.get(ctx, StatusKey(p.NetworkID, p.Host, p.ID)); err == nil {
			p.Status = effectiveStatus(&p.PortRecord, st.(*StatusRecord))
		}
	}
	return p, nil
}

// effectiveStatus is ACTIVE only when the bound host's agent reports the
// port ACTIVE for the current binding generation.
func effectiveStatus(p *PortRecord, st *StatusRecord) string {
	if st != nil && p.Host != "" && st.Host == p.Host && st.Generation == p.Generation && st.Status == StatusActive {
		return StatusActive
	}
	return StatusDown
}

// BindPort binds a port to host ("" unbinds) with a compare-and-set on the
// port record's revision: expectRevision != 0 must be the current one (a
// stale caller gets ErrConflict), 0 means "the revision just read". Of two
// concurrent binds from the same revision exactly one succeeds. This is the
// live-migration flip: every agent moves the port's MAC to the new VTEP
// once the new host reports it ACTIVE.
func (c *Controller) BindPort(ctx context.Context, ref, host string, expectRevision uint64) (Port, error) {
	if host != "" {
		if err := ValidHost(host); err != nil {
			return Port{}, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	p, err := c.GetPort(ctx, ref)
	if err != nil {
		return Port{}, err
	}
	if expectRevision != 0 && p.Revision != expectRevision {
		return Port{}, fmt.Errorf("port %s is at revision %d, not %d: %w", p.ID, p.Revision, expectRevision, ErrConflict)
	}
	if p.Host == host {
		return p, nil
	}
	old := p.PortRecord
	rec := p.PortRecord
	rec.Host = host
	rec.Generation = old.Generation + 1
	rec.UpdatedAt = now()
	var bindRev uint64
	if host != "" {
		// The index entry goes first: a port bound to a host always has
		// one, so that host's agent always follows the port's network.
		bindRev, err = c.put(ctx, BindingKey(host, rec.ID), &BindingRecord{PortID: rec.ID, NetworkID: rec.NetworkID, Generation: rec.Generation})
		if err != nil {
			return Port{}, err
		}
	}
	rev, err := c.update(ctx, PortKey(rec.NetworkID, rec.ID), &rec, p.Revision)
	if err != nil {
		if host != "" {
			// Remove our index entry unless the winner bound it here too;
			// a later put (new revision) makes the delete a no-op.
			if cur, gerr := c.GetPort(ctx, rec.ID); gerr == nil && cur.Host != host {
				_ = c.del(ctx, BindingKey(host, rec.ID), bindRev)
			}
		}
		return Port{}, fmt.Errorf("bind port %s to %q: %w", rec.ID, host, err)
	}
	if old.Host != "" {
		c.dropBinding(ctx, old.Host, rec.ID, old.Generation)
	}
	c.log.Info("port bound", "id", rec.ID, "from", old.Host, "to", host, "generation", rec.Generation, "revision", rev)
	return Port{PortRecord: rec, Revision: rev, Status: StatusDown}, nil
}

// dropBinding deletes host's index entry of a port if it is not newer than
// generation (a concurrent re-bind to host writes a newer one, which stays).
func (c *Controller) dropBinding(ctx context.Context, host, portID string, generation uint64) {
	rec, rev, err := c.get(ctx, BindingKey(host, portID))
	if err != nil {
		return
	}
	if rec.(*BindingRecord).Generation <= generation {
		if err := c.del(ctx, BindingKey(host, portID), rev); err != nil {
			c.log.Debug("binding index entry kept", "host", host, "port", portID, "err", err)
		}
	}
}

// UnbindPort removes a port's binding (compare-and-set like BindPort).
func (c *Controller) UnbindPort(ctx context.Context, ref string, expectRevision uint64) (Port, error) {
	return c.BindPort(ctx, ref, "", expectRevision)
}

// DeletePort deletes a port (conditional on expectRevision when not 0) and
// then its binding, reservations and statuses.
func (c *Controller) DeletePort(ctx context.Context, ref string, expectRevision uint64) error {
	p, err := c.GetPort(ctx, ref)
	if err != nil {
		return err
	}
	if expectRevision != 0 && p.Revision != expectRevision {
		return fmt.Errorf("port %s is at revision %d, not %d: %w", p.ID, p.Revision, expectRevision, ErrConflict)
	}
	if err := c.del(ctx, PortKey(p.NetworkID, p.ID), p.Revision); err != nil {
		return fmt.Errorf("delete port %s: %w", p.ID, err)
	}
	if p.Host != "" {
		c.dropBinding(ctx, p.Host, p.ID, p.Generation)
	}
	c.dropReservation(ctx, MACResvKey(p.NetworkID, p.MAC), p.ID)
	for _, ip := range p.FixedIPs {
		c.dropReservation(ctx, IPResvKey(p.NetworkID, ip), p.ID)
	}
	if sts, err := c.reader.loadLatest(ctx, []string{StatusesOfPortFilter(p.NetworkID, p.ID)}, nil); err == nil {
		for _, e := range sts {
			if !e.Deleted {
				_ = c.del(ctx, e.Key, e.Rev)
			}
		}
	}
	c.dropMembers(ctx, &p.PortRecord, nil)
	c.log.Info("port deleted", "id", p.ID, "network", p.NetworkID)
	return nil
}

func (c *Controller) dropReservation(ctx context.Context, key, portID string) {
	rec, rev, err := c.get(ctx, key)
	if err == nil && rec.(*ReservationRecord).PortID == portID {
		_ = c.del(ctx, key, rev)
	}
}

// PortFilter narrows ListPorts.
type PortFilter struct {
	Network string // id or name
	Host    string
}

// ListPorts returns ports with their status, by network then id.
func (c *Controller) ListPorts(ctx context.Context, f PortFilter) ([]Port, error) {
	portFilter, statusFilter := PortsFilter, StatusesFilter
	if f.Network != "" {
		n, err := c.GetNetwork(ctx, f.Network)
		if err != nil {
			return nil, err
		}
		portFilter, statusFilter = PortsOfNetworkFilter(n.ID), "nets."+n.ID+".status.*.*"
	}
	recs, err := c.load(ctx, portFilter, statusFilter)
	if err != nil {
		return nil, err
	}
	status := map[string]*StatusRecord{}
	var out []Port
	for _, r := range recs {
		switch rec := r.Rec.(type) {
		case *StatusRecord:
			status[rec.PortID+"@"+rec.Host] = rec
		case *PortRecord:
			if f.Host == "" || rec.Host == f.Host {
				out = append(out, Port{PortRecord: *rec, Revision: r.Rev})
			}
		}
	}
	for i := range out {
		out[i].Status = effectiveStatus(&out[i].PortRecord, status[out[i].ID+"@"+out[i].Host])
	}
	slices.SortFunc(out, func(a, b Port) int {
		if x := strings.Compare(a.NetworkID, b.NetworkID); x != 0 {
			return x
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}
