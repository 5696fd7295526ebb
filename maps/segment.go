package maps

import (
	"fmt"
	"strconv"
)

// Segment is the key networks, ports and FDB entries carry in the maps:
// the VNI of a VXLAN network, or SegProvider | physical network index<<12
// | VLAN id of a provider network (flat: VLAN id 0).
type Segment = uint32

// ProviderSegment is the segment of a provider network: the index of its
// physical network among the agent's mappings (0-4095) and its VLAN id
// (0 for flat).
func ProviderSegment(physIndex int, vlan uint16) (Segment, error) {
	if physIndex < 0 || physIndex > 0xfff || vlan > 0xfff {
		return 0, fmt.Errorf("provider segment: physical network %d, VLAN %d out of range", physIndex, vlan)
	}
	return SegProvider | uint32(physIndex)<<12 | uint32(vlan), nil
}

// SegmentString prints a segment: the VNI, or "p<physical network index>/<VLAN id>".
func SegmentString(s Segment) string {
	if s&SegProvider == 0 {
		return strconv.FormatUint(uint64(s), 10)
	}
	return fmt.Sprintf("p%d/%d", s>>12&0xfff, s&0xfff)
}

// NetKindName names a network kind.
func NetKindName(k uint8) string {
	switch k {
	case NetVXLAN:
		return "vxlan"
	case NetVLAN:
		return "vlan"
	case NetFlat:
		return "flat"
	}
	return strconv.Itoa(int(k))
}

// ProviderKeyString is the canonical key of a provider_in entry.
func ProviderKeyString(k ProviderKey) string { return fmt.Sprintf("%d/%d", k.Ifindex, k.Vlan) }

// NewProviderKey is the provider_in key of (interface, VLAN id).
func NewProviderKey(ifindex int, vlan uint16) ProviderKey {
	return ProviderKey{Ifindex: uint32(ifindex), Vlan: vlan}
}
