package control

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/vxdp/vxdp/state"
)

// Provider networks (Neutron's provider:network_type vlan or flat) ride a
// physical network instead of VXLAN. Which physical networks and VLANs may
// be used is the server's configuration, as ml2's type drivers have it
// (network_vlan_ranges, flat_networks): `vxdp server` stores it in
// meta.ml2 and every controller checks a request against it before
// writing. A segment (a VLAN of a physical network, or a physical network
// for its flat network) is reserved like a VNI: by a create-only write of
// its own key, so two networks never share one.

// DefaultPhysnetMTU is the MTU of a provider network (Neutron's
// global_physnet_mtu): no encapsulation takes a share of it.
const DefaultPhysnetMTU = 1500

// VLANRange is one entry of network_vlan_ranges: VLANs Min-Max of a
// physical network, or the whole physical network (Min = Max = 0, written
// bare as in Neutron) whose VLANs may be chosen but are never allocated.
type VLANRange struct {
	PhysicalNetwork string
	Min, Max        uint16
}

func (r VLANRange) String() string {
	if r.Min == 0 {
		return r.PhysicalNetwork
	}
	return fmt.Sprintf("%s:%d:%d", r.PhysicalNetwork, r.Min, r.Max)
}

// allows reports whether VLAN vid is in the range.
func (r VLANRange) allows(vid uint16) bool {
	if r.Min == 0 {
		return vid >= 1 && vid <= state.MaxVLAN
	}
	return vid >= r.Min && vid <= r.Max
}

// MarshalText writes Neutron's syntax.
func (r VLANRange) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads Neutron's syntax: PHYSNET or PHYSNET:MIN:MAX.
func (r *VLANRange) UnmarshalText(b []byte) error {
	v, err := parseVLANRange(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

func parseVLANRange(s string) (VLANRange, error) {
	parts := strings.Split(strings.TrimSpace(s), ":")
	r := VLANRange{PhysicalNetwork: strings.TrimSpace(parts[0])}
	if !state.ValidPhysicalNetwork(r.PhysicalNetwork) {
		return r, invalidf("network_vlan_ranges %q: physical network %q: want a name like default (letters, digits, '-')", s, r.PhysicalNetwork)
	}
	switch len(parts) {
	case 1:
		return r, nil
	case 3:
		lo, err1 := strconv.ParseUint(strings.TrimSpace(parts[1]), 10, 16)
		hi, err2 := strconv.ParseUint(strings.TrimSpace(parts[2]), 10, 16)
		if err1 == nil && err2 == nil && lo >= 1 && lo <= hi && hi <= state.MaxVLAN {
			r.Min, r.Max = uint16(lo), uint16(hi)
			return r, nil
		}
	}
	return r, invalidf("network_vlan_ranges %q: want PHYSNET:MIN:MAX with 1 <= MIN <= MAX <= %d (e.g. default:1:4000), or PHYSNET alone", s, state.MaxVLAN)
}

// ML2Config is what `vxdp server` allows provider networks to use, in
// Neutron's ml2 words.
type ML2Config struct {
	// NetworkVLANRanges: the physical networks VLAN networks may use, and
	// their VLANs ([ml2_type_vlan] network_vlan_ranges).
	NetworkVLANRanges []VLANRange `json:"network_vlan_ranges"`
	// FlatNetworks: the physical networks a flat network may use; "*" is
	// any ([ml2_type_flat] flat_networks).
	FlatNetworks []string `json:"flat_networks"`
}

// DefaultML2Config is the seed deployment's: network_vlan_ranges =
// default:1:4000, flat_networks = external.
var DefaultML2Config = ML2Config{
	NetworkVLANRanges: []VLANRange{{PhysicalNetwork: "default", Min: 1, Max: 4000}},
	FlatNetworks:      []string{"external"},
}

// ParseNetworkVLANRanges parses network_vlan_ranges:
// "default:1:4000[,physnet2:100:199][,physnet3]" ("" allows no VLAN network).
func ParseNetworkVLANRanges(s string) ([]VLANRange, error) {
	out := []VLANRange{}
	for part := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		r, err := parseVLANRange(part)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// ParseFlatNetworks parses flat_networks: "external[,physnet2]", "*" for
// any, "" for none.
func ParseFlatNetworks(s string) ([]string, error) {
	out := []string{}
	for part := range strings.SplitSeq(s, ",") {
		name := strings.TrimSpace(part)
		if name == "" {
			continue
		}
		if name != "*" && !state.ValidPhysicalNetwork(name) {
			return nil, invalidf("flat_networks %q: want physical network names like external (letters, digits, '-'), or *", name)
		}
		out = append(out, name)
	}
	return out, nil
}

func (m ML2Config) vlanRangesString() string {
	if len(m.NetworkVLANRanges) == 0 {
		return "(none)"
	}
	parts := make([]string, len(m.NetworkVLANRanges))
	for i, r := range m.NetworkVLANRanges {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

func (m ML2Config) flatString() string {
	if len(m.FlatNetworks) == 0 {
		return "(none)"
	}
	return strings.Join(m.FlatNetworks, ",")
}

// vlanPhysnets are the physical networks of network_vlan_ranges, once each.
func (m ML2Config) vlanPhysnets() []string {
	var out []string
	for _, r := range m.NetworkVLANRanges {
		if !slices.Contains(out, r.PhysicalNetwork) {
			out = append(out, r.PhysicalNetwork)
		}
	}
	return out
}

// ML2Record holds the ML2Config every controller enforces (key meta.ml2).
type ML2Record struct {
	Schema int `json:"schema"`
	ML2Config
}

// Validate checks the options.
func (r *ML2Record) Validate() error {
	for _, v := range r.NetworkVLANRanges {
		if _, err := parseVLANRange(v.String()); err != nil {
			return err
		}
	}
	_, err := ParseFlatNetworks(strings.Join(r.FlatNetworks, ","))
	return err
}

// SetML2Config stores the provider network options every controller enforces.
func (c *Controller) SetML2Config(ctx context.Context, m ML2Config) error {
	rec := &ML2Record{ML2Config: m}
	if err := rec.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	_, err := c.put(ctx, ML2Key, rec)
	return err
}

// GetML2Config returns the stored options (DefaultML2Config when none are).
func (c *Controller) GetML2Config(ctx context.Context) (ML2Config, error) {
	rec, _, err := c.get(ctx, ML2Key)
	if errors.Is(err, ErrNotFound) {
		return DefaultML2Config, nil
	}
	if err != nil {
		return ML2Config{}, err
	}
	return rec.(*ML2Record).ML2Config, nil
}

// SegmentRecord reserves a segment for a network (keys vlans.<physnet>.<vlan>
// and flats.<physnet>).
type SegmentRecord struct {
	Schema          int    `json:"schema"`
	NetworkType     string `json:"network_type"`
	PhysicalNetwork string `json:"physical_network"`
	SegmentationID  uint16 `json:"segmentation_id,omitempty"`
	NetworkID       string `json:"network_id"`
}

// checkProvider refuses a provider network the options do not allow,
// naming the option and the fix. rec's segmentation id 0 of a VLAN
// network asks for one to be allocated.
func checkProvider(m ML2Config, rec *NetworkRecord) error {
	phys, vid := rec.PhysicalNetwork, rec.SegmentationID
	switch rec.Kind() {
	case state.NetworkVXLAN:
		if phys != "" {
			return invalidf("a vxlan network has no physical network: drop --provider-physical-network")
		}
	case state.NetworkVLAN:
		names := strings.Join(m.vlanPhysnets(), ", ")
		if phys == "" {
			return invalidf("a vlan network needs --provider-physical-network, one of: %s (network_vlan_ranges %s)", names, m.vlanRangesString())
		}
		var ranges []VLANRange
		for _, r := range m.NetworkVLANRanges {
			if r.PhysicalNetwork == phys {
				ranges = append(ranges, r)
			}
		}
		if len(ranges) == 0 {
			return invalidf("physical network %q is not in network_vlan_ranges %s: use one of %s, or add it (vxdp server --network-vlan-ranges %s,%s:1:4094)",
				phys, m.vlanRangesString(), names, m.vlanRangesString(), phys)
		}
		if vid == 0 || slices.ContainsFunc(ranges, func(r VLANRange) bool { return r.allows(vid) }) {
			return nil
		}
		if vid > state.MaxVLAN {
			return invalidf("vlan %d: out of range 1-%d", vid, state.MaxVLAN)
		}
		var within []string
		for _, r := range ranges {
			if r.Min != 0 {
				within = append(within, fmt.Sprintf("%d-%d", r.Min, r.Max))
			}
		}
		return invalidf("vlan %d of physical network %s is outside network_vlan_ranges %s: pick a --provider-segment in %s, or widen the range on the server (vxdp server --network-vlan-ranges)",
			vid, phys, m.vlanRangesString(), strings.Join(within, ", "))
	case state.NetworkFlat:
		if vid != 0 {
			return invalidf("a flat network has no segment: drop --provider-segment")
		}
		if phys == "" {
			return invalidf("a flat network needs --provider-physical-network, one of: %s (flat_networks)", m.flatString())
		}
		if !slices.Contains(m.FlatNetworks, "*") && !slices.Contains(m.FlatNetworks, phys) {
			return invalidf("physical network %q is not in flat_networks %s: use one of them, or add it (vxdp server --flat-networks %s)",
				phys, m.flatString(), strings.Join(append(slices.Clone(m.FlatNetworks), phys), ","))
		}
	default:
		return invalidf("network type %q: want vxlan, vlan or flat", rec.NetworkType)
	}
	return nil
}

// segmentKey is the key reserving rec's segment.
func segmentKey(rec *NetworkRecord) string {
	switch rec.Kind() {
	case state.NetworkVLAN:
		return VLANKey(rec.PhysicalNetwork, rec.SegmentationID)
	case state.NetworkFlat:
		return FlatKey(rec.PhysicalNetwork)
	}
	return VNIKey(rec.VNI)
}

// segmentReservation is the record reserving rec's segment.
func segmentReservation(rec *NetworkRecord) any {
	if !rec.Provider() {
		return &VNIRecord{VNI: rec.VNI, NetworkID: rec.ID}
	}
	return &SegmentRecord{NetworkType: rec.Kind(), PhysicalNetwork: rec.PhysicalNetwork, SegmentationID: rec.SegmentationID, NetworkID: rec.ID}
}

// reservedBy is the network a segment reservation names.
func reservedBy(rec any) string {
	switch r := rec.(type) {
	case *VNIRecord:
		return r.NetworkID
	case *SegmentRecord:
		return r.NetworkID
	}
	return ""
}

// reserveSegment reserves rec's segment, allocating a VNI or VLAN when
// rec has none, and returns the revision of the reservation.
func (c *Controller) reserveSegment(ctx context.Context, m ML2Config, rec *NetworkRecord) (uint64, error) {
	switch {
	case rec.Kind() == state.NetworkVXLAN && rec.VNI == 0:
		return c.allocate(ctx, rec, VNIsFilter, c.ranges, fmt.Sprintf("no free VNI in %s", c.rangesString()))
	case rec.Kind() == state.NetworkVLAN && rec.SegmentationID == 0:
		var ranges []VNIRange
		for _, r := range m.NetworkVLANRanges {
			if r.PhysicalNetwork == rec.PhysicalNetwork && r.Min != 0 {
				ranges = append(ranges, VNIRange{uint32(r.Min), uint32(r.Max)})
			}
		}
		if len(ranges) == 0 {
			return 0, invalidf("physical network %s has no VLAN range to allocate from (network_vlan_ranges %s): give --provider-segment", rec.PhysicalNetwork, m.vlanRangesString())
		}
		return c.allocate(ctx, rec, VLANsFilter(rec.PhysicalNetwork), ranges, fmt.Sprintf("no free VLAN of physical network %s in network_vlan_ranges %s", rec.PhysicalNetwork, m.vlanRangesString()))
	}
	rev, err := c.create(ctx, segmentKey(rec), segmentReservation(rec))
	if errors.Is(err, ErrExists) {
		holder := "another network"
		if r, _, gerr := c.get(ctx, segmentKey(rec)); gerr == nil {
			holder = "network " + reservedBy(r)
		}
		switch rec.Kind() {
		case state.NetworkVLAN:
			return 0, fmt.Errorf("vlan %d of physical network %s is already used by %s: pick another --provider-segment: %w", rec.SegmentationID, rec.PhysicalNetwork, holder, ErrExists)
		case state.NetworkFlat:
			return 0, fmt.Errorf("physical network %s already carries a flat network (%s): one flat network per physical network: %w", rec.PhysicalNetwork, holder, ErrExists)
		}
		return 0, fmt.Errorf("vni %d is already used by %s: %w", rec.VNI, holder, ErrExists)
	}
	return rev, err
}

// releaseSegment deletes rec's segment reservation if it is rec's.
func (c *Controller) releaseSegment(ctx context.Context, rec *NetworkRecord) {
	key := segmentKey(rec)
	if r, rev, err := c.get(ctx, key); err == nil && reservedBy(r) == rec.ID {
		if err := c.del(ctx, key, rev); err != nil {
			c.log.Warn("could not release segment", "key", key, "err", err)
		}
	}
}

// Kind is the network's type: vxlan when unset (records older than
// provider networks).
func (r *NetworkRecord) Kind() string { return state.Network{Type: r.NetworkType}.Kind() }

// Provider reports whether r is a provider network (VLAN or flat).
func (r *NetworkRecord) Provider() bool { return r.Kind() != state.NetworkVXLAN }

// segment names what r carries on the wire (its VNI, or its physical
// network and VLAN): two networks of one host must not share it.
func (r *NetworkRecord) segment() string {
	switch r.Kind() {
	case state.NetworkVXLAN:
		return "vni " + strconv.FormatUint(uint64(r.VNI), 10)
	case state.NetworkFlat:
		return "flat physical network " + r.PhysicalNetwork
	}
	return fmt.Sprintf("vlan %d of physical network %s", r.SegmentationID, r.PhysicalNetwork)
}

// NetworkSchema is the version of a provider network's record: a reader
// of version 1 would take it for a VXLAN network without VNI, so it must
// refuse it instead.
const NetworkSchema = 2

// schemaNeeded is the oldest schema that reads r right.
func (r *NetworkRecord) schemaNeeded() int {
	if r.Provider() || r.NetworkType != "" && r.NetworkType != state.NetworkVXLAN {
		return NetworkSchema
	}
	return SchemaVersion
}

// validateProvider checks the type and segment fields of a network record.
func (r *NetworkRecord) validateProvider() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch r.Kind() {
	case state.NetworkVXLAN:
		if err := ValidateVNI(r.VNI); err != nil {
			errs = append(errs, err)
		}
		if r.PhysicalNetwork != "" || r.SegmentationID != 0 {
			bad("a vxlan network has no physical_network or segmentation_id")
		}
	case state.NetworkVLAN, state.NetworkFlat:
		if r.VNI != 0 {
			bad("a %s network has no vni", r.Kind())
		}
		if !state.ValidPhysicalNetwork(r.PhysicalNetwork) {
			bad("physical_network %q: want a name like default (letters, digits, '-')", r.PhysicalNetwork)
		}
		if r.Kind() == state.NetworkVLAN && (r.SegmentationID < 1 || r.SegmentationID > state.MaxVLAN) {
			bad("segmentation_id %d: a VLAN id 1-%d", r.SegmentationID, state.MaxVLAN)
		}
		if r.Kind() == state.NetworkFlat && r.SegmentationID != 0 {
			bad("a flat network has no segmentation_id")
		}
	default:
		bad("network_type %q: want vxlan, vlan or flat", r.NetworkType)
	}
	return errs
}
