package control

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/vxdp/vxdp/state"
)

// SecurityGroupRecord is a security group with its rules (key sgs.<id>).
type SecurityGroupRecord struct {
	Schema      int    `json:"schema"`
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Project owns the group ("": AdminProject). Names are unique per project.
	Project string `json:"project_id,omitempty"`
	// Stateless is Neutron's stateful=false: nothing is tracked, replies
	// need rules of their own.
	Stateless bool      `json:"stateless,omitempty"`
	Rules     []SGRule  `json:"rules,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// SecurityGroupSchema is the version of a group record that a reader of
// SchemaVersion 1 would take as allowing more than it does: a stateless
// group (tracked as stateful), a rule naming an address group (read as
// "any remote") or ICMP type 0 (read as "any type"). Such readers refuse the
// record instead, and take the group off their ports: they fail closed.
const SecurityGroupSchema = 2

// schemaNeeded is the oldest schema that reads r right.
func (r *SecurityGroupRecord) schemaNeeded() int {
	if r.Stateless {
		return SecurityGroupSchema
	}
	for _, rule := range r.Rules {
		if rule.RemoteAddressGroupID != "" || rule.PortRangeMin != nil && *rule.PortRangeMin == 0 {
			return SecurityGroupSchema
		}
	}
	return SchemaVersion
}

// SGRule is one security group rule, with Neutron's fields.
type SGRule struct {
	ID        string `json:"id"`
	Direction string `json:"direction"` // ingress | egress
	Ethertype string `json:"ethertype"` // IPv4 | IPv6
	// Protocol is "" (any), a name (tcp, udp, icmp, ...; see
	// ProtocolNumber) or an IP protocol number 0-255.
	Protocol string `json:"protocol,omitempty"`
	// PortRangeMin..PortRangeMax are the destination ports of TCP, UDP,
	// SCTP, DCCP and UDP-Lite; for ICMP the type (min) and code (max).
	// nil is "none": ICMP type 0 (echo reply) is a pointer to 0.
	PortRangeMin         *int         `json:"port_range_min,omitempty"`
	PortRangeMax         *int         `json:"port_range_max,omitempty"`
	RemoteIPPrefix       netip.Prefix `json:"remote_ip_prefix,omitzero"`
	RemoteGroupID        string       `json:"remote_group_id,omitempty"`
	RemoteAddressGroupID string       `json:"remote_address_group_id,omitempty"`
}

// IntPtr returns a pointer to n (for port ranges and ICMP types).
func IntPtr(n int) *int { return &n }

// MemberRecord is one port's addresses as a member of a security group
// (key members.<sg>.<port>): its fixed IPs and allowed-address-pair
// prefixes. Rules naming the group as remote group match these; the
// controller writes one per group of every port with port security on.
type MemberRecord struct {
	Schema    int            `json:"schema"`
	GroupID   string         `json:"security_group_id"`
	PortID    string         `json:"port_id"`
	Addresses []netip.Prefix `json:"addresses"`
}

// AddressGroupRecord is a named list of prefixes (key addrgroups.<id>),
// the remote of rules with remote_address_group_id.
type AddressGroupRecord struct {
	Schema      int            `json:"schema"`
	ID          string         `json:"id"`
	Name        string         `json:"name"`
	Description string         `json:"description,omitempty"`
	Project     string         `json:"project_id,omitempty"`
	Addresses   []netip.Prefix `json:"addresses"`
	CreatedAt   time.Time      `json:"created_at,omitzero"`
}

// maxAddresses bounds the prefixes of an address group or a member record
// (each becomes entries of every policy that uses it).
const maxAddresses = 4096

// ipProtocols are the protocol names Neutron accepts, with their numbers.
var ipProtocols = map[string]uint8{
	"ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "icmp": 1, "icmpv6": 58, "igmp": 2, "ipip": 4,
	"ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58, "ipv6-nonxt": 59, "ipv6-opts": 60, "ipv6-route": 43,
	"ospf": 89, "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6, "udp": 17, "udplite": 136, "vrrp": 112,
}

// ProtocolNumber resolves a rule's protocol for its ethertype: "", "any"
// and "0" are 0 (any protocol); ICMP under IPv6 is ICMPv6 (58), as Neutron
// reads it. IPv6-only protocols under IPv4 are refused.
func ProtocolNumber(proto, ethertype string) (uint8, error) {
	p := strings.ToLower(proto)
	n, known := ipProtocols[p]
	switch {
	case p == "" || p == "any":
		return 0, nil
	case known:
	default:
		v, err := strconv.ParseUint(p, 10, 8)
		if err != nil {
			return 0, fmt.Errorf("protocol %q: want a name (tcp, udp, icmp, icmpv6, sctp, dccp, udplite, gre, esp, ...), a number 0-255 or any", proto)
		}
		n = uint8(v)
	}
	if n == state.ProtoICMP && ethertype == state.IPv6 {
		n = state.ProtoICMPv6
	}
	if ethertype == state.IPv4 && (n == state.ProtoICMPv6 || strings.HasPrefix(p, "ipv6-")) {
		return 0, fmt.Errorf("protocol %q is IPv6 only: use ethertype IPv6 (or protocol icmp for IPv4)", proto)
	}
	return n, nil
}

// validNamed checks the id, name and project of a named record.
func validNamed(id, name, project string) []error {
	var errs []error
	if err := ValidID(id); err != nil {
		errs = append(errs, err)
	}
	if name == "" || len(name) > 255 {
		errs = append(errs, errors.New("name must be 1-255 characters"))
	}
	if err := validProject(project); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// Validate checks a security group and its rules.
func (r *SecurityGroupRecord) Validate() error {
	errs := validNamed(r.ID, r.Name, r.Project)
	ids := map[string]bool{}
	for i, rule := range r.Rules {
		if err := rule.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("rules[%d] (%s): %w", i, rule.ID, err))
		}
		if ids[rule.ID] {
			errs = append(errs, fmt.Errorf("rules[%d]: duplicate rule id %s", i, rule.ID))
		}
		ids[rule.ID] = true
	}
	return errors.Join(errs...)
}

// Validate checks one security group rule the way Neutron does; each
// error names the field and what would be right.
func (r SGRule) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := ValidID(r.ID); err != nil {
		errs = append(errs, err)
	}
	if r.Direction != string(state.Ingress) && r.Direction != string(state.Egress) {
		bad("direction %q: want ingress (to the VM) or egress (from the VM)", r.Direction)
	}
	if r.Ethertype != state.IPv4 && r.Ethertype != state.IPv6 {
		bad("ethertype %q: want IPv4 or IPv6", r.Ethertype)
	}
	proto, err := ProtocolNumber(r.Protocol, r.Ethertype)
	if err != nil {
		errs = append(errs, err)
	} else if err := r.validateRange(proto); err != nil {
		errs = append(errs, err)
	}
	remotes := 0
	if r.RemoteIPPrefix.IsValid() {
		remotes++
		// Host bits are not refused: as in Neutron, the prefix stands for
		// its network (AddSecurityGroupRule stores it masked).
		if r.RemoteIPPrefix.Addr().Is4() != (r.Ethertype == state.IPv4) {
			bad("remote_ip_prefix %s is not an %s prefix: give an %s prefix or ethertype %s", r.RemoteIPPrefix, r.Ethertype, r.Ethertype,
				map[bool]string{true: state.IPv4, false: state.IPv6}[r.RemoteIPPrefix.Addr().Is4()])
		}
	}
	for field, id := range map[string]string{"remote_group_id": r.RemoteGroupID, "remote_address_group_id": r.RemoteAddressGroupID} {
		if id == "" {
			continue
		}
		remotes++
		if err := ValidID(id); err != nil {
			bad("%s: %v", field, err)
		}
	}
	if remotes > 1 {
		bad("remote_ip_prefix, remote_group_id and remote_address_group_id: give at most one")
	}
	return errors.Join(errs...)
}

// validateRange checks the port range (or ICMP type and code) of a rule
// of protocol number proto.
func (r SGRule) validateRange(proto uint8) error {
	lo, hi := r.PortRangeMin, r.PortRangeMax
	switch {
	case lo == nil && hi == nil:
		return nil
	case state.HasPorts(proto):
		if lo == nil || hi == nil {
			return fmt.Errorf("port range: give both port_range_min and port_range_max (the same for one port)")
		}
		if *lo < 1 || *hi > 65535 || *lo > *hi {
			return fmt.Errorf("port range %d:%d: want 1 <= min <= max <= 65535", *lo, *hi)
		}
	case proto == state.ProtoICMP || proto == state.ProtoICMPv6:
		if lo == nil {
			return fmt.Errorf("icmp code %d (port_range_max) without a type (port_range_min): give the type too", *hi)
		}
		if *lo < 0 || *lo > 255 {
			return fmt.Errorf("icmp type %d (port_range_min): want 0-255", *lo)
		}
		if hi != nil && (*hi < 0 || *hi > 255) {
			return fmt.Errorf("icmp code %d (port_range_max): want 0-255", *hi)
		}
	case proto == 0:
		return fmt.Errorf("a port range needs a protocol: tcp, udp, sctp, dccp or udplite (icmp for type and code)")
	default:
		return fmt.Errorf("protocol %s has no ports: port ranges are for tcp, udp, sctp, dccp and udplite, type and code for icmp", r.Protocol)
	}
	return nil
}

// sameRule reports whether two rules allow the same (ids aside), as
// Neutron's duplicate check: "tcp" and "6" are one protocol.
func sameRule(a, b SGRule) bool {
	pa, erra := ProtocolNumber(a.Protocol, a.Ethertype)
	pb, errb := ProtocolNumber(b.Protocol, b.Ethertype)
	eq := func(x, y *int) bool { return x == nil && y == nil || x != nil && y != nil && *x == *y }
	return erra == nil && errb == nil && pa == pb && a.Direction == b.Direction && a.Ethertype == b.Ethertype &&
		eq(a.PortRangeMin, b.PortRangeMin) && eq(a.PortRangeMax, b.PortRangeMax) && a.RemoteIPPrefix.Masked() == b.RemoteIPPrefix.Masked() &&
		a.RemoteGroupID == b.RemoteGroupID && a.RemoteAddressGroupID == b.RemoteAddressGroupID
}

// Validate checks a member record.
func (r *MemberRecord) Validate() error {
	var errs []error
	for _, id := range []string{r.GroupID, r.PortID} {
		if err := ValidID(id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(append(errs, validPrefixes("addresses", r.Addresses))...)
}

// Validate checks an address group.
func (r *AddressGroupRecord) Validate() error {
	return errors.Join(append(validNamed(r.ID, r.Name, r.Project), validPrefixes("addresses", r.Addresses))...)
}

// validPrefixes checks a list of at most maxAddresses network prefixes.
func validPrefixes(field string, ps []netip.Prefix) error {
	if len(ps) > maxAddresses {
		return fmt.Errorf("%s: %d prefixes, at most %d", field, len(ps), maxAddresses)
	}
	for _, p := range ps {
		if !p.IsValid() || p.Masked() != p {
			return fmt.Errorf("%s: %s is not a prefix in CIDR form; write %s", field, p, p.Masked())
		}
	}
	return nil
}

// memberAddresses are the addresses a port stands for as a group member:
// its fixed IPs and allowed-address-pair prefixes.
func memberAddresses(p *PortRecord) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(p.FixedIPs)+len(p.AllowedAddressPairs))
	for _, ip := range p.FixedIPs {
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	for _, ap := range p.AllowedAddressPairs {
		out = append(out, ap.IP.Masked())
	}
	return out
}
