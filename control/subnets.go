package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vxdp/vxdp/state"
)

// Subnets live inside their network's record (NetworkRecord.Subnets), not
// under keys of their own: an agent then gets a network and its subnets at
// one revision (DHCP answers are built from both), reads them exactly when
// it may read the network (no other entitlement for the broker to check),
// and a subnet change is a compare-and-set on the record every port create
// re-reads, which is what keeps a port from being created in a subnet
// being deleted. A network has few subnets; concurrent changes of two of
// them retry.

// MaxSubnets is the most subnets a network may have.
const MaxSubnets = 64

// SubnetRecord is a subnet of a network (Neutron's subnet), with what DHCP
// at the port tells a VM about it.
type SubnetRecord struct {
	ID   string       `json:"id"`
	Name string       `json:"name,omitempty"`
	CIDR netip.Prefix `json:"cidr"`
	// Gateway is the subnet's router (none: no router option).
	Gateway netip.Addr   `json:"gateway_ip,omitzero"`
	DNS     []netip.Addr `json:"dns_nameservers,omitempty"`
	// DHCP (Neutron's enable_dhcp): the port program answers the DHCPv4
	// of the subnet's ports itself; off, DHCP goes to the network.
	DHCP bool `json:"enable_dhcp"`
	// DHCPServer is the address answers come from (none: the gateway).
	DHCPServer netip.Addr `json:"dhcp_server,omitzero"`
	// LeaseSeconds: 0 is state.DefaultLeaseSeconds, -1 infinite.
	LeaseSeconds int `json:"lease_seconds,omitempty"`
	// Deleting is set while `subnet delete` checks that no port has an
	// address in it; a port created meanwhile sees it and backs out.
	Deleting  bool      `json:"deleting,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// state is the subnet as the dataplane takes it.
func (s *SubnetRecord) state(src state.Source) state.Subnet {
	return state.Subnet{ID: s.ID, CIDR: s.CIDR, Gateway: s.Gateway, DNS: s.DNS, DHCP: s.DHCP, DHCPServer: s.DHCPServer,
		LeaseSeconds: s.LeaseSeconds, Source: src}
}

// UnmarshalJSON reads a network record, folding the bare CIDRs of records
// written before subnets had settings ("subnets": ["172.16.100.0/24"])
// into subnets without gateway and DHCP: what they meant, the ranges the
// ports' fixed IPs must be in. A rewrite of the record stores them as
// subnets.
func (r *NetworkRecord) UnmarshalJSON(b []byte) error {
	type plain NetworkRecord // without this method
	v := struct {
		*plain
		Legacy []netip.Prefix `json:"subnets"`
	}{plain: (*plain)(r)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	for _, p := range v.Legacy {
		if !slices.ContainsFunc(r.Subnets, func(s SubnetRecord) bool { return s.CIDR == p }) {
			r.Subnets = append(r.Subnets, SubnetRecord{ID: nameUUID("vxdp subnet\x00" + r.ID + "\x00" + p.String()), CIDR: p})
		}
	}
	return nil
}

// validateSubnets checks the subnets of a network record.
func (r *NetworkRecord) validateSubnets() []error {
	var errs []error
	if len(r.Subnets) > MaxSubnets {
		errs = append(errs, fmt.Errorf("%d subnets: at most %d", len(r.Subnets), MaxSubnets))
	}
	for i := range r.Subnets {
		s := &r.Subnets[i]
		where := fmt.Sprintf("subnet %s (%s)", s.ID, s.CIDR)
		if err := ValidID(s.ID); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
		if len(s.Name) > 255 {
			errs = append(errs, fmt.Errorf("%s: name longer than 255 characters", where))
		}
		for _, err := range s.state(state.Source{}).Validate() {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
		for _, o := range r.Subnets[:i] {
			if o.ID == s.ID {
				errs = append(errs, fmt.Errorf("%s: id used twice", where))
			}
			if s.CIDR.IsValid() && o.CIDR.IsValid() && s.CIDR.Overlaps(o.CIDR) {
				errs = append(errs, fmt.Errorf("%s overlaps subnet %s (%s)", where, o.ID, o.CIDR))
			}
		}
	}
	return errs
}

// CIDRs are the ranges of the network's subnets; never nil.
func (r *NetworkRecord) CIDRs() []netip.Prefix {
	out := make([]netip.Prefix, len(r.Subnets))
	for i, s := range r.Subnets {
		out[i] = s.CIDR
	}
	return out
}

// checkFixedIP refuses a port address outside the network's subnets (any
// address, when the network has none) or in a subnet being deleted.
func (r *NetworkRecord) checkFixedIP(ip netip.Addr) error {
	if len(r.Subnets) == 0 {
		return nil
	}
	for _, s := range r.Subnets {
		if !s.CIDR.Contains(ip) {
			continue
		}
		if s.Deleting {
			return fmt.Errorf("fixed ip %s: subnet %s (%s) is being deleted: %w", ip, s.ID, s.CIDR, ErrConflict)
		}
		return nil
	}
	cidrs := make([]string, len(r.Subnets))
	for i, s := range r.Subnets {
		cidrs[i] = s.CIDR.String()
	}
	return invalidf("fixed ip %s is not in a subnet of network %s (%s)", ip, r.Name, strings.Join(cidrs, ", "))
}

// defaultSubnet is a subnet of p with Neutron's defaults: the first
// address the gateway, DHCP on.
func defaultSubnet(p netip.Prefix) SubnetRecord {
	s := SubnetRecord{ID: NewUUID(), CIDR: p, DHCP: true, CreatedAt: now()}
	s.Gateway = firstHost(p)
	if !s.Gateway.IsValid() && p.Addr().Is4() {
		s.DHCP = false // nothing to answer from
	}
	return s
}

// firstHost is the first host address of p (none in a /31, /32, /127, /128).
func firstHost(p netip.Prefix) netip.Addr {
	if p.Bits() >= p.Addr().BitLen()-1 {
		return netip.Addr{}
	}
	return p.Masked().Addr().Next()
}

// SubnetSpec asks for a subnet (`vxdp subnet create`).
type SubnetSpec struct {
	// Network id or name.
	Network string
	Name    string
	// CIDR is the subnet range (--subnet-range).
	CIDR netip.Prefix
	// Gateway; none given is the first address, unless NoGateway.
	Gateway   netip.Addr
	NoGateway bool
	DNS       []netip.Addr
	// NoDHCP turns DHCP at the port off (Neutron's default is on).
	NoDHCP bool
	// DHCPServer answers DHCP (default: the gateway).
	DHCPServer   netip.Addr
	LeaseSeconds int
	// ID to use instead of a random UUID (must be a UUID).
	ID string
}

// Subnet is a subnet with its network and the network record's revision.
type Subnet struct {
	SubnetRecord
	NetworkID   string `json:"network_id"`
	NetworkName string `json:"network_name,omitempty"`
	Project     string `json:"project_id,omitempty"`
	Revision    uint64 `json:"revision"`
}

func subnetOf(n Network, s SubnetRecord) Subnet {
	return Subnet{SubnetRecord: s, NetworkID: n.ID, NetworkName: n.Name, Project: n.Project, Revision: n.Revision}
}

// checkSubnet refuses a subnet that cannot be, in the flags' words.
func checkSubnet(s *SubnetRecord) error {
	if s.DHCP && s.CIDR.Addr().Is4() && !s.Gateway.IsValid() && !s.DHCPServer.IsValid() {
		return invalidf("subnet %s: DHCP at the port needs an address to answer from: give --gateway or --dhcp-server, or --no-dhcp", s.CIDR)
	}
	var errs []error
	for _, err := range s.state(state.Source{}).Validate() {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: subnet %s: %w", ErrInvalid, s.CIDR, errors.Join(errs...))
	}
	return nil
}

// CreateSubnet adds a subnet to a network by compare-and-set on the
// network record. A refused request writes nothing.
func (c *Controller) CreateSubnet(ctx context.Context, spec SubnetSpec) (Subnet, error) {
	p := spec.CIDR
	if !p.IsValid() {
		return Subnet{}, invalidf("a subnet needs a range: give --subnet-range CIDR, e.g. 172.16.100.0/24")
	}
	if p.Masked() != p {
		return Subnet{}, invalidf("subnet range %s has host bits set: write %s", p, p.Masked())
	}
	if spec.NoGateway && spec.Gateway.IsValid() {
		return Subnet{}, invalidf("--gateway %s and --no-gateway: give one", spec.Gateway)
	}
	s := SubnetRecord{ID: spec.ID, Name: spec.Name, CIDR: p, Gateway: spec.Gateway, DNS: spec.DNS, DHCP: !spec.NoDHCP,
		DHCPServer: spec.DHCPServer, LeaseSeconds: spec.LeaseSeconds, CreatedAt: now()}
	s.UpdatedAt = s.CreatedAt
	if s.ID == "" {
		s.ID = NewUUID()
	} else if !IsUUID(s.ID) {
		return Subnet{}, invalidf("subnet id %q is not a UUID", s.ID)
	}
	if !spec.NoGateway && !s.Gateway.IsValid() {
		s.Gateway = firstHost(p)
	}
	if err := checkSubnet(&s); err != nil {
		return Subnet{}, err
	}
	n, err := c.changeNetwork(ctx, spec.Network, func(rec *NetworkRecord) error {
		for _, o := range rec.Subnets {
			if o.ID == s.ID {
				return fmt.Errorf("subnet %s: %w", s.ID, ErrExists)
			}
			if o.CIDR.Overlaps(p) {
				return invalidf("subnet range %s overlaps subnet %s (%s) of network %s", p, cmpOrID(o.Name, o.ID), o.CIDR, rec.Name)
			}
		}
		if len(rec.Subnets) >= MaxSubnets {
			return invalidf("network %s has %d subnets already, the most a network may have", rec.Name, MaxSubnets)
		}
		rec.Subnets = append(rec.Subnets, s)
		return nil
	})
	if err != nil {
		return Subnet{}, err
	}
	c.log.Info("subnet created", "id", s.ID, "network", n.ID, "cidr", p, "dhcp", s.DHCP, "revision", n.Revision)
	return subnetOf(n, s), nil
}

func cmpOrID(name, id string) string {
	if name != "" {
		return name
	}
	return id
}

// SubnetUpdate changes a subnet (`vxdp subnet set`); nil fields stay.
type SubnetUpdate struct {
	Name *string
	// Gateway: an invalid (zero) address removes it.
	Gateway  *netip.Addr
	ClearDNS bool
	AddDNS   []netip.Addr
	DHCP     *bool
	// DHCPServer: an invalid (zero) address answers from the gateway.
	DHCPServer   *netip.Addr
	LeaseSeconds *int
}

// UpdateSubnet applies u to the subnet ref names (id or unique name), by
// compare-and-set on its network's record (retried on a concurrent
// change). Every agent with a port on the network follows at once.
func (c *Controller) UpdateSubnet(ctx context.Context, ref string, u SubnetUpdate) (Subnet, error) {
	cur, err := c.GetSubnet(ctx, ref)
	if err != nil {
		return Subnet{}, err
	}
	var out SubnetRecord
	n, err := c.changeNetwork(ctx, cur.NetworkID, func(rec *NetworkRecord) error {
		i := slices.IndexFunc(rec.Subnets, func(s SubnetRecord) bool { return s.ID == cur.ID })
		if i < 0 {
			return fmt.Errorf("subnet %s: %w", cur.ID, ErrNotFound)
		}
		s := rec.Subnets[i]
		if u.Name != nil {
			s.Name = *u.Name
		}
		if u.Gateway != nil {
			s.Gateway = *u.Gateway
		}
		if u.ClearDNS {
			s.DNS = nil
		}
		s.DNS = append(slices.Clone(s.DNS), u.AddDNS...)
		if u.DHCP != nil {
			s.DHCP = *u.DHCP
		}
		if u.DHCPServer != nil {
			s.DHCPServer = *u.DHCPServer
		}
		if u.LeaseSeconds != nil {
			s.LeaseSeconds = *u.LeaseSeconds
		}
		s.UpdatedAt = now()
		if err := checkSubnet(&s); err != nil {
			return err
		}
		rec.Subnets[i], out = s, s
		return nil
	})
	if err != nil {
		return Subnet{}, err
	}
	c.log.Info("subnet updated", "id", out.ID, "network", n.ID, "dhcp", out.DHCP, "revision", n.Revision)
	return subnetOf(n, out), nil
}

// ListSubnets returns the subnets of network (id or name; "" every
// network's), by network name, then range.
func (c *Controller) ListSubnets(ctx context.Context, network string) ([]Subnet, error) {
	var nets []Network
	if network != "" {
		n, err := c.GetNetwork(ctx, network)
		if err != nil {
			return nil, err
		}
		nets = []Network{n}
	} else {
		var err error
		if nets, err = c.ListNetworks(ctx); err != nil {
			return nil, err
		}
	}
	out := []Subnet{}
	for _, n := range nets {
		for _, s := range n.Subnets {
			out = append(out, subnetOf(n, s))
		}
	}
	slices.SortStableFunc(out, func(a, b Subnet) int {
		if x := strings.Compare(a.NetworkName, b.NetworkName); x != 0 {
			return x
		}
		return a.CIDR.Addr().Compare(b.CIDR.Addr())
	})
	return out, nil
}

// GetSubnet finds a subnet by id or by (unique) name.
func (c *Controller) GetSubnet(ctx context.Context, ref string) (Subnet, error) {
	if ref == "" {
		return Subnet{}, invalidf("empty subnet reference")
	}
	all, err := c.ListSubnets(ctx, "")
	if err != nil {
		return Subnet{}, err
	}
	var found []Subnet
	for _, s := range all {
		if s.ID == ref {
			return s, nil
		}
		if s.Name == ref {
			found = append(found, s)
		}
	}
	switch len(found) {
	case 0:
		return Subnet{}, fmt.Errorf("subnet %q: %w", ref, ErrNotFound)
	case 1:
		return found[0], nil
	}
	return Subnet{}, invalidf("subnet name %q is ambiguous (%d subnets); use the id", ref, len(found))
}

// DeleteSubnet deletes a subnet no port has an address in. It first marks
// the subnet deleting (compare-and-set), then checks the ports; a port
// create racing with it re-reads the network after writing and backs out.
func (c *Controller) DeleteSubnet(ctx context.Context, ref string) error {
	s, err := c.GetSubnet(ctx, ref)
	if err != nil {
		return err
	}
	mark := func(deleting bool) func(rec *NetworkRecord) error {
		return func(rec *NetworkRecord) error {
			i := slices.IndexFunc(rec.Subnets, func(o SubnetRecord) bool { return o.ID == s.ID })
			if i < 0 {
				return fmt.Errorf("subnet %s: %w", s.ID, ErrNotFound)
			}
			rec.Subnets[i].Deleting = deleting
			return nil
		}
	}
	if _, err := c.changeNetwork(ctx, s.NetworkID, mark(true)); err != nil {
		return fmt.Errorf("delete subnet %s: %w", s.ID, err)
	}
	ports, err := c.load(ctx, PortsOfNetworkFilter(s.NetworkID))
	if err != nil {
		return err
	}
	var users []string
	for _, r := range ports {
		p := r.Rec.(*PortRecord)
		for _, ip := range p.FixedIPs {
			if s.CIDR.Contains(ip) {
				users = append(users, fmt.Sprintf("%s %s", cmpOrID(p.Name, p.ID), ip))
			}
		}
	}
	if len(users) > 0 {
		if _, uerr := c.changeNetwork(ctx, s.NetworkID, mark(false)); uerr != nil {
			c.log.Warn("could not clear the deleting mark", "subnet", s.ID, "err", uerr)
		}
		return fmt.Errorf("subnet %s (%s) has %d port address(es) in it (%s): delete those ports first: %w",
			cmpOrID(s.Name, s.ID), s.CIDR, len(users), strings.Join(users, ", "), ErrInUse)
	}
	n, err := c.changeNetwork(ctx, s.NetworkID, func(rec *NetworkRecord) error {
		rec.Subnets = slices.DeleteFunc(rec.Subnets, func(o SubnetRecord) bool { return o.ID == s.ID })
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete subnet %s: %w", s.ID, err)
	}
	c.log.Info("subnet deleted", "id", s.ID, "network", n.ID, "cidr", s.CIDR, "revision", n.Revision)
	return nil
}

// NetworkUpdate changes a network (`vxdp network set`); nil fields stay.
type NetworkUpdate struct {
	Name      *string
	DNSDomain *string
}

// UpdateNetwork applies u to the network ref names, by compare-and-set
// (retried on a concurrent change).
func (c *Controller) UpdateNetwork(ctx context.Context, ref string, u NetworkUpdate) (Network, error) {
	n, err := c.changeNetwork(ctx, ref, func(rec *NetworkRecord) error {
		if u.Name != nil {
			rec.Name = *u.Name
		}
		if u.DNSDomain != nil {
			if *u.DNSDomain != "" && !state.ValidDNSDomain(*u.DNSDomain) {
				return invalidf("dns domain %q is not a DNS name like example.org", *u.DNSDomain)
			}
			rec.DNSDomain = *u.DNSDomain
		}
		return nil
	})
	if err == nil {
		c.log.Info("network updated", "id", n.ID, "name", n.Name, "dns_domain", n.DNSDomain, "revision", n.Revision)
	}
	return n, err
}

// changeNetwork applies change to a copy of the network ref names and
// writes it by compare-and-set on the revision read, reading again and
// retrying when another write came between. A change that returns an
// error, or leaves an invalid record, writes nothing.
func (c *Controller) changeNetwork(ctx context.Context, ref string, change func(rec *NetworkRecord) error) (Network, error) {
	for attempt := 0; attempt < 8; attempt++ {
		n, err := c.GetNetwork(ctx, ref)
		if err != nil {
			return Network{}, err
		}
		if n.Deleting {
			return Network{}, fmt.Errorf("network %s is being deleted: %w", n.ID, ErrConflict)
		}
		ref = n.ID
		rec := n.NetworkRecord
		rec.Subnets = slices.Clone(rec.Subnets)
		if err := change(&rec); err != nil {
			return Network{}, err
		}
		if err := rec.Validate(); err != nil {
			return Network{}, fmt.Errorf("%w: network %s: %w", ErrInvalid, cmpOrID(n.Name, n.ID), err)
		}
		rev, err := c.update(ctx, NetworkKey(rec.ID), &rec, n.Revision)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return Network{}, err
		}
		return Network{NetworkRecord: rec, Revision: rev}, nil
	}
	return Network{}, fmt.Errorf("network %s changed too often meanwhile: %w", ref, ErrConflict)
}
