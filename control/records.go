package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/vxdp/vxdp/state"
)

// SchemaVersion is the version of every record this code writes and the
// only one it accepts. Additive, optional fields keep the version; anything
// an older reader would misinterpret bumps it, and older agents then reject
// (and count) the new records instead of misapplying them.
const SchemaVersion = 1

// Port status values, as Neutron spells them.
const (
	StatusActive = "ACTIVE"
	StatusDown   = "DOWN"
)

// DefaultMTU is the tenant MTU on a 1500-byte underlay (1500 - 50 bytes of VXLAN).
const DefaultMTU = 1450

// NetworkRecord is a network (key nets.<id>.network): a VXLAN tenant
// network, or a provider network (VLAN, flat) on a physical network, with
// its subnets.
type NetworkRecord struct {
	Schema int    `json:"schema"`
	ID     string `json:"id"`
	Name   string `json:"name,omitempty"`
	// NetworkType is vxlan ("" in records older than provider networks),
	// vlan or flat (Neutron's provider:network_type).
	NetworkType string `json:"network_type,omitempty"`
	// VNI of a VXLAN network.
	VNI uint32 `json:"vni,omitempty"`
	// PhysicalNetwork of a vlan or flat network (provider:physical_network).
	PhysicalNetwork string `json:"physical_network,omitempty"`
	// SegmentationID is the VLAN id of a vlan network (a vxlan network's
	// is its VNI).
	SegmentationID uint16 `json:"segmentation_id,omitempty"`
	MTU            int    `json:"mtu,omitempty"`
	// Subnets of the network: the ranges its ports' fixed IPs are in, and
	// what DHCP at the port tells a VM. Records written before subnets had
	// settings list bare CIDRs under "subnets"; they read as subnets
	// without gateway and DHCP (see UnmarshalJSON).
	Subnets []SubnetRecord `json:"subnet_details,omitempty"`
	// DNSDomain DHCP hands out (Neutron's dns_domain; "": openstacklocal).
	DNSDomain string `json:"dns_domain,omitempty"`
	// Project owns the network ("": AdminProject, as records written
	// before projects existed).
	Project string `json:"project_id,omitempty"`
	// Deleting is set while `network delete` checks that no port is left;
	// a port created meanwhile sees it and backs out.
	Deleting  bool      `json:"deleting,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// PortRecord is a port (key nets.<network>.ports.<id>), written only by the controller.
type PortRecord struct {
	Schema              int                 `json:"schema"`
	ID                  string              `json:"id"`
	NetworkID           string              `json:"network_id"`
	Name                string              `json:"name,omitempty"`
	MAC                 state.MAC           `json:"mac_address"`
	FixedIPs            []netip.Addr        `json:"fixed_ips,omitempty"`
	PortSecurity        bool                `json:"port_security_enabled"`
	AllowedAddressPairs []state.AddressPair `json:"allowed_address_pairs,omitempty"`
	SecurityGroups      []string            `json:"security_groups,omitempty"`
	DeviceOwner         string              `json:"device_owner,omitempty"`
	// DNSName is the host name DHCP gives the VM (Neutron's dns_name).
	DNSName string `json:"dns_name,omitempty"`
	// Project owns the port ("": AdminProject).
	Project string `json:"project_id,omitempty"`
	// Host is the bound host ("" = unbound); changed only by compare-and-set.
	Host string `json:"binding_host_id,omitempty"`
	// Generation counts binding changes. A status record counts only for
	// the generation it names, so a stale ACTIVE from a previous binding
	// can never activate the port after a move.
	Generation uint64    `json:"binding_generation"`
	CreatedAt  time.Time `json:"created_at,omitzero"`
	UpdatedAt  time.Time `json:"updated_at,omitzero"`
}

// Tap is the port's tap device name ("tap" + id[:11], as Neutron).
func (p *PortRecord) Tap() string { return state.TapName(p.ID) }

// StatusRecord is a port's status as seen by the agent of Host
// (key nets.<network>.status.<host>.<port>).
type StatusRecord struct {
	Schema     int       `json:"schema"`
	PortID     string    `json:"port_id"`
	Host       string    `json:"host"`
	Status     string    `json:"status"`
	Generation uint64    `json:"binding_generation"`
	UpdatedAt  time.Time `json:"updated_at,omitzero"`
}

// AgentRecord describes the agent of one host (key hosts.<host>.agent), as
// that agent reports it. Its VTEP is a claim: other hosts use the host's
// registration (RegistrationRecord).
type AgentRecord struct {
	Schema           int            `json:"schema"`
	ID               string         `json:"id"`
	Host             string         `json:"host"`
	AgentType        string         `json:"agent_type"`
	Binary           string         `json:"binary"`
	VTEP             netip.Addr     `json:"vtep_ip"`
	Version          string         `json:"version,omitempty"`
	AvailabilityZone string         `json:"availability_zone,omitempty"`
	AdminStateUp     bool           `json:"admin_state_up"`
	Configurations   map[string]any `json:"configurations,omitempty"`
}

// RegistrationRecord is the VTEP address of a host as the control plane
// knows it (key hosts.<host>.registration): other hosts send that host's
// traffic there and accept VXLAN for its ports from there only. It is
// written by the controller (`vxdp host add`), or, for a host without one,
// created once from the host's first agent record by the broker; either
// way only the controller can change it afterwards.
type RegistrationRecord struct {
	Schema       int        `json:"schema"`
	Host         string     `json:"host"`
	VTEP         netip.Addr `json:"vtep_ip"`
	RegisteredBy string     `json:"registered_by"`
	CreatedAt    time.Time  `json:"created_at,omitzero"`
}

// Who registered a host's VTEP.
const (
	RegisteredByController = "controller" // `vxdp host add`
	RegisteredByAgent      = "agent"      // the first agent record of the host
)

// HeartbeatRecord is the periodic liveness report of an agent
// (key hosts.<host>.heartbeat). Nobody watches it but `agent list`.
type HeartbeatRecord struct {
	Schema    int       `json:"schema"`
	Host      string    `json:"host"`
	AgentID   string    `json:"agent_id"`
	StartedAt time.Time `json:"started_at,omitzero"`
	Time      time.Time `json:"time"`
	// AppliedRevision is the last KV revision the agent's dataplane applied.
	AppliedRevision uint64 `json:"applied_revision,omitempty"`
}

// BindingRecord is the index entry "port is bound to host" (key
// bindings.<host>.<port>): it tells an agent which networks to follow. The
// port record stays the truth; a stale entry only makes an agent follow a
// network it then finds it does not host.
type BindingRecord struct {
	Schema     int    `json:"schema"`
	PortID     string `json:"port_id"`
	NetworkID  string `json:"network_id"`
	Generation uint64 `json:"binding_generation"`
}

// VNIRecord reserves a VNI for a network (key vnis.<vni>).
type VNIRecord struct {
	Schema    int    `json:"schema"`
	VNI       uint32 `json:"vni"`
	NetworkID string `json:"network_id"`
}

// ReservationRecord reserves a MAC or fixed IP on a network for a port.
type ReservationRecord struct {
	Schema int    `json:"schema"`
	PortID string `json:"port_id"`
}

// FloorRecord is the compaction floor (key meta.compacted).
type FloorRecord struct {
	Schema   int       `json:"schema"`
	Revision uint64    `json:"revision"`
	Time     time.Time `json:"time"`
}

// RejectReason classifies why a record was refused.
type RejectReason string

// Reasons a record is rejected (the "reason" label of the metric).
const (
	RejectParse    RejectReason = "parse"           // not JSON of the expected shape
	RejectSchema   RejectReason = "schema"          // unknown schema version
	RejectInvalid  RejectReason = "invalid"         // a field value is wrong
	RejectKey      RejectReason = "key_mismatch"    // record disagrees with its key
	RejectConflict RejectReason = "conflict"        // clashes with an older record (duplicate MAC, VNI, tap)
	RejectUnknown  RejectReason = "unknown_key"     // key outside the layout
	RejectBadState RejectReason = "invalid_desired" // the built state failed validation (a bug)
)

// RecordError is a rejected record.
type RecordError struct {
	Key    string
	Reason RejectReason
	Err    error
}

// Error says which record was refused and why.
func (e *RecordError) Error() string {
	return fmt.Sprintf("record %s rejected (%s): %v", e.Key, e.Reason, e.Err)
}

// Unwrap returns the underlying problem.
func (e *RecordError) Unwrap() error { return e.Err }

// DecodeRecord parses and validates the value of key; the result is a
// pointer to the record type of the key's kind. It refuses malformed JSON,
// schema versions other than SchemaVersion, invalid values and records that
// disagree with their key (a port record under another network's key).
func DecodeRecord(key string, value []byte) (Key, any, error) {
	k := ParseKey(key)
	var rec any
	switch k.Kind {
	case KindNetwork:
		rec = new(NetworkRecord)
	case KindPort:
		rec = new(PortRecord)
	case KindStatus:
		rec = new(StatusRecord)
	case KindAgent:
		rec = new(AgentRecord)
	case KindHeartbeat:
		rec = new(HeartbeatRecord)
	case KindBinding:
		rec = new(BindingRecord)
	case KindSecGroup:
		rec = new(SecurityGroupRecord)
	case KindMember:
		rec = new(MemberRecord)
	case KindAddressGroup:
		rec = new(AddressGroupRecord)
	case KindQuota:
		rec = new(QuotaRecord)
	case KindVNI:
		rec = new(VNIRecord)
	case KindMACResv, KindIPResv:
		rec = new(ReservationRecord)
	case KindFloor:
		rec = new(FloorRecord)
	case KindRegistration:
		rec = new(RegistrationRecord)
	case KindSegment:
		rec = new(SegmentRecord)
	case KindML2:
		rec = new(ML2Record)
	default:
		return k, nil, &RecordError{Key: key, Reason: RejectUnknown, Err: errors.New("key does not match the bucket layout")}
	}
	// One decoding in the common case; the schema is checked after, and a
	// record that does not decode is probed for its schema so that a newer
	// version is reported as such rather than as garbage.
	if err := json.Unmarshal(value, rec); err != nil {
		var probe struct {
			Schema *int `json:"schema"`
		}
		if json.Unmarshal(value, &probe) == nil && (probe.Schema == nil || !acceptsSchema(k.Kind, *probe.Schema)) {
			return k, nil, schemaError(key, probe.Schema)
		}
		return k, nil, &RecordError{Key: key, Reason: RejectParse, Err: err}
	}
	if v := schemaOf(rec); !acceptsSchema(k.Kind, v) {
		return k, nil, schemaError(key, &v)
	}
	if err := validateRecord(k, rec); err != nil {
		var re *RecordError
		if errors.As(err, &re) {
			re.Key = key
			return k, nil, re
		}
		return k, nil, &RecordError{Key: key, Reason: RejectInvalid, Err: err}
	}
	return k, rec, nil
}

func schemaError(key string, v *int) error {
	got := "missing"
	if v != nil && *v != 0 {
		got = fmt.Sprint(*v)
	}
	return &RecordError{Key: key, Reason: RejectSchema, Err: fmt.Errorf("schema version %s, this agent understands %d", got, SchemaVersion)}
}

// versioned is every record type: it has a schema field.
type versioned interface{ schemaField() *int }

func (r *NetworkRecord) schemaField() *int       { return &r.Schema }
func (r *PortRecord) schemaField() *int          { return &r.Schema }
func (r *StatusRecord) schemaField() *int        { return &r.Schema }
func (r *AgentRecord) schemaField() *int         { return &r.Schema }
func (r *HeartbeatRecord) schemaField() *int     { return &r.Schema }
func (r *BindingRecord) schemaField() *int       { return &r.Schema }
func (r *SecurityGroupRecord) schemaField() *int { return &r.Schema }
func (r *MemberRecord) schemaField() *int        { return &r.Schema }
func (r *AddressGroupRecord) schemaField() *int  { return &r.Schema }
func (r *VNIRecord) schemaField() *int           { return &r.Schema }
func (r *ReservationRecord) schemaField() *int   { return &r.Schema }
func (r *FloorRecord) schemaField() *int         { return &r.Schema }
func (r *RegistrationRecord) schemaField() *int  { return &r.Schema }
func (r *QuotaRecord) schemaField() *int         { return &r.Schema }
func (r *SegmentRecord) schemaField() *int       { return &r.Schema }
func (r *ML2Record) schemaField() *int           { return &r.Schema }

// schemaOf is the schema field of a decoded record (0 when absent).
func schemaOf(rec any) int {
	if v, ok := rec.(versioned); ok {
		return *v.schemaField()
	}
	return 0
}

// acceptsSchema reports whether this code reads version v of a record of
// kind k: SchemaVersion, and for security groups and networks also the
// version written when older readers would misread one
// (SecurityGroupSchema, NetworkSchema).
func acceptsSchema(k KeyKind, v int) bool {
	return v == SchemaVersion || k == KindSecGroup && v == SecurityGroupSchema || k == KindNetwork && v == NetworkSchema
}

func keyMismatch(format string, args ...any) error {
	return &RecordError{Reason: RejectKey, Err: fmt.Errorf(format, args...)}
}

func validateRecord(k Key, rec any) error {
	switch r := rec.(type) {
	case *NetworkRecord:
		if r.ID != k.Network {
			return keyMismatch("id %q under the key of network %q", r.ID, k.Network)
		}
		return r.Validate()
	case *PortRecord:
		if r.ID != k.Port || r.NetworkID != k.Network {
			return keyMismatch("port %q of network %q under the key of port %q of network %q", r.ID, r.NetworkID, k.Port, k.Network)
		}
		return r.Validate()
	case *StatusRecord:
		if r.PortID != k.Port || r.Host != k.Host {
			return keyMismatch("status of port %q on %q under the key of port %q on %q", r.PortID, r.Host, k.Port, k.Host)
		}
		if r.Status != StatusActive && r.Status != StatusDown {
			return fmt.Errorf("status %q: want %s or %s", r.Status, StatusActive, StatusDown)
		}
	case *AgentRecord:
		return validHostVTEP("agent", r.Host, r.VTEP, k)
	case *RegistrationRecord:
		if err := validHostVTEP("registration", r.Host, r.VTEP, k); err != nil {
			return err
		}
		if r.RegisteredBy != RegisteredByController && r.RegisteredBy != RegisteredByAgent {
			return fmt.Errorf("registered_by %q: want %s or %s", r.RegisteredBy, RegisteredByController, RegisteredByAgent)
		}
	case *HeartbeatRecord:
		if r.Host != k.Host {
			return keyMismatch("heartbeat of host %q under the key of host %q", r.Host, k.Host)
		}
	case *BindingRecord:
		if r.PortID != k.Port {
			return keyMismatch("binding of port %q under the key of port %q", r.PortID, k.Port)
		}
		if err := ValidID(r.NetworkID); err != nil {
			return fmt.Errorf("network_id: %w", err)
		}
	case *SecurityGroupRecord:
		if r.ID != k.SG {
			return keyMismatch("security group %q under the key of %q", r.ID, k.SG)
		}
		return r.Validate()
	case *MemberRecord:
		if r.GroupID != k.SG || r.PortID != k.Port {
			return keyMismatch("member %q of group %q under the key of member %q of group %q", r.PortID, r.GroupID, k.Port, k.SG)
		}
		return r.Validate()
	case *AddressGroupRecord:
		if r.ID != k.AG {
			return keyMismatch("address group %q under the key of %q", r.ID, k.AG)
		}
		return r.Validate()
	case *QuotaRecord:
		return r.Validate()
	case *VNIRecord:
		if r.VNI != k.VNI {
			return keyMismatch("vni %d under the key of vni %d", r.VNI, k.VNI)
		}
	case *SegmentRecord:
		if r.PhysicalNetwork != k.Physnet || r.SegmentationID != k.VLAN {
			return keyMismatch("segment %s/%d under the key of %s/%d", r.PhysicalNetwork, r.SegmentationID, k.Physnet, k.VLAN)
		}
	case *ML2Record:
		return r.Validate()
	}
	return nil
}

// validHostVTEP checks the host and VTEP of a record of kind what under key k.
func validHostVTEP(what, host string, vtep netip.Addr, k Key) error {
	if host != k.Host {
		return keyMismatch("%s of host %q under the key of host %q", what, host, k.Host)
	}
	if err := ValidHost(host); err != nil {
		return err
	}
	return ValidVTEP(vtep)
}

// ValidVTEP checks that ip can be a host's tunnel endpoint: a unicast IPv4
// or IPv6 address that is not unspecified, loopback, link-local,
// multicast, broadcast or otherwise reserved ("this network" 0/8, class E
// 240/4, IPv4-mapped IPv6).
func ValidVTEP(ip netip.Addr) error {
	bad := !ip.IsValid() || ip.IsUnspecified() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast()
	if ip.Is4() {
		bad = bad || ip.As4()[0] == 0 || ip.As4()[0] >= 240
	} else {
		bad = bad || ip.Is4In6() || ip.Zone() != ""
	}
	if bad {
		return fmt.Errorf("vtep_ip %q: want a unicast IPv4 or IPv6 address (not loopback, link-local, multicast, broadcast or reserved), e.g. 192.168.248.3", ip)
	}
	return nil
}

// ValidateVNI checks a VXLAN network identifier.
func ValidateVNI(vni uint32) error {
	if vni == 0 || vni > state.MaxVNI {
		return fmt.Errorf("vni %d out of range 1-%d", vni, state.MaxVNI)
	}
	return nil
}

// Validate checks a network record's values: everything an agent's
// state needs of it (state.Desired.Validate), so that a record that
// passes never makes a state that fails.
func (r *NetworkRecord) Validate() error {
	var errs []error
	if err := ValidID(r.ID); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, r.validateProvider()...)
	if r.MTU != 0 && (r.MTU < 68 || r.MTU > 65000) {
		errs = append(errs, fmt.Errorf("mtu %d out of range 68-65000", r.MTU))
	}
	if len(r.Name) > 255 {
		errs = append(errs, errors.New("name longer than 255 characters"))
	}
	if err := validProject(r.Project); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, r.validateSubnets()...)
	if r.DNSDomain != "" && !state.ValidDNSDomain(r.DNSDomain) {
		errs = append(errs, fmt.Errorf("dns_domain %q is not a DNS name like example.org", r.DNSDomain))
	}
	return errors.Join(errs...)
}

// Validate checks a port record's values.
func (r *PortRecord) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := ValidID(r.ID); err != nil {
		errs = append(errs, err)
	}
	if err := ValidID(r.NetworkID); err != nil {
		bad("network_id: %v", err)
	}
	if !r.MAC.IsUnicast() {
		bad("mac_address %s is not a unicast address", r.MAC)
	}
	for _, ip := range r.FixedIPs {
		if !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() || ip.IsLoopback() {
			bad("fixed ip %q is not a usable unicast address", ip)
		}
	}
	errs = append(errs, state.ValidateAddressPairs(r.MAC, r.FixedIPs, r.AllowedAddressPairs)...)
	if !r.PortSecurity && (len(r.AllowedAddressPairs) > 0 || len(r.SecurityGroups) > 0) {
		bad("port security is disabled but the port has security groups or allowed address pairs")
	}
	for _, sg := range r.SecurityGroups {
		if err := ValidID(sg); err != nil {
			bad("security group: %v", err)
		}
	}
	if err := validProject(r.Project); err != nil {
		errs = append(errs, err)
	}
	if r.Host != "" {
		if err := ValidHost(r.Host); err != nil {
			bad("binding_host_id: %v", err)
		}
	}
	if tap := r.Tap(); len(tap) > 15 {
		bad("tap name %q longer than 15 characters", tap)
	}
	if r.DNSName != "" && !state.ValidHostName(r.DNSName) {
		bad("dns_name %q is not a host name (letters, digits, inner hyphens; 63 at most)", r.DNSName)
	}
	return errors.Join(errs...)
}

// encodeRecord marshals a record, stamping the schema version.
func encodeRecord(rec any) ([]byte, error) {
	v, ok := rec.(versioned)
	if !ok {
		return nil, fmt.Errorf("encode record: unsupported type %T", rec)
	}
	*v.schemaField() = SchemaVersion
	if r, ok := rec.(interface{ schemaNeeded() int }); ok {
		*v.schemaField() = r.schemaNeeded()
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	return b, nil
}
