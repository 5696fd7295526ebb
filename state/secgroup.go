package state

import (
	"errors"
	"fmt"
	"net/netip"
)

// SecurityGroup is a group some local port is in, with its rules resolved
// for the dataplane: a remote group or an address group is replaced by
// the addresses it stands for (RemotePrefixes), so the dataplane needs no
// other record. A port with port security on gets the union of the rules
// of its groups (none: only what is always allowed); rules only allow.
type SecurityGroup struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// Stateless is Neutron's stateful=false: nothing is tracked, replies
	// need rules of their own. A port's groups are all stateful or all
	// stateless.
	Stateless bool   `json:"stateless,omitempty"`
	Rules     []Rule `json:"rules"`
	Source    Source `json:"source,omitzero"`
}

// Direction of a rule, seen from the VM.
type Direction string

const (
	Ingress Direction = "ingress" // to the VM; the remote is the source
	Egress  Direction = "egress"  // from the VM; the remote is the destination
)

// EtherTypes of a rule.
const (
	IPv4 = "IPv4"
	IPv6 = "IPv6"
)

// Rule allows traffic of one direction and family.
type Rule struct {
	ID        string    `json:"id,omitempty"`
	Direction Direction `json:"direction"`
	EtherType string    `json:"ethertype"`
	// Protocol is an IP protocol number; 0 is any protocol. ICMP is 1
	// with IPv4 and 58 with IPv6.
	Protocol uint8 `json:"protocol,omitempty"`
	// PortMin..PortMax is the destination port range of TCP, UDP, SCTP,
	// DCCP and UDP-Lite (0, 0: every port).
	PortMin uint16 `json:"port_min,omitempty"`
	PortMax uint16 `json:"port_max,omitempty"`
	// ICMPType and ICMPCode restrict ICMP/ICMPv6 (nil: any; a type
	// without a code: every code of it).
	ICMPType *uint8 `json:"icmp_type,omitempty"`
	ICMPCode *uint8 `json:"icmp_code,omitempty"`
	// Remote is where the other end may be. RemoteGroup or
	// RemoteAddressGroup name what RemotePrefixes were resolved from:
	// then exactly those prefixes (none: the rule matches nothing).
	// Otherwise RemotePrefixes holds at most remote_ip_prefix, and no
	// prefix means any address of the family.
	RemotePrefixes     []netip.Prefix `json:"remote_prefixes,omitempty"`
	RemoteGroup        string         `json:"remote_group,omitempty"`
	RemoteAddressGroup string         `json:"remote_address_group,omitempty"`
	Source             Source         `json:"source,omitzero"`
}

// Protocols with ports.
const (
	ProtoICMP    = 1
	ProtoTCP     = 6
	ProtoUDP     = 17
	ProtoDCCP    = 33
	ProtoICMPv6  = 58
	ProtoSCTP    = 132
	ProtoUDPLite = 136
)

// HasPorts reports whether protocol p has the destination ports rules match.
func HasPorts(p uint8) bool {
	switch p {
	case ProtoTCP, ProtoUDP, ProtoDCCP, ProtoSCTP, ProtoUDPLite:
		return true
	}
	return false
}

// IsICMP reports whether p is the ICMP of the family.
func IsICMP(p uint8, etherType string) bool {
	return (p == ProtoICMP && etherType == IPv4) || (p == ProtoICMPv6 && etherType == IPv6)
}

// AnyRemote reports whether the rule matches every remote address of its family.
func (r Rule) AnyRemote() bool {
	return r.RemoteGroup == "" && r.RemoteAddressGroup == "" && len(r.RemotePrefixes) == 0
}

// Validate checks a rule for what the dataplane relies on.
func (r Rule) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if r.Direction != Ingress && r.Direction != Egress {
		bad("direction %q: want ingress or egress", r.Direction)
	}
	if r.EtherType != IPv4 && r.EtherType != IPv6 {
		bad("ethertype %q: want IPv4 or IPv6", r.EtherType)
	}
	if r.PortMin != 0 || r.PortMax != 0 {
		if !HasPorts(r.Protocol) {
			bad("protocol %d has no ports", r.Protocol)
		} else if r.PortMin == 0 || r.PortMin > r.PortMax {
			bad("port range %d-%d: want 1 <= min <= max", r.PortMin, r.PortMax)
		}
	}
	if (r.ICMPType != nil || r.ICMPCode != nil) && !IsICMP(r.Protocol, r.EtherType) {
		bad("icmp type/code on protocol %d, %s", r.Protocol, r.EtherType)
	}
	if r.ICMPCode != nil && r.ICMPType == nil {
		bad("icmp code without a type")
	}
	if r.RemoteGroup == "" && r.RemoteAddressGroup == "" && len(r.RemotePrefixes) > 1 {
		bad("more than one remote_ip_prefix")
	}
	for _, p := range r.RemotePrefixes {
		if !p.IsValid() || p.Addr().Is4() != (r.EtherType == IPv4) {
			bad("remote prefix %s is not %s", p, r.EtherType)
		}
	}
	return errors.Join(errs...)
}
