package state

import (
	"fmt"
	"net/netip"
	"strings"
)

// DefaultLeaseSeconds is Neutron's dhcp_lease_duration.
const DefaultLeaseSeconds = 86400

// InfiniteLease is Subnet.LeaseSeconds for a lease that never expires
// (Neutron's dhcp_lease_duration = -1).
const InfiniteLease = -1

// DefaultDNSDomain is Neutron's dns_domain: the domain DHCP hands out.
const DefaultDNSDomain = "openstacklocal"

// Subnet is an address range of a network (Neutron's subnet) and what DHCP
// at the port tells a VM about it.
type Subnet struct {
	ID   string       `json:"id,omitempty"`
	CIDR netip.Prefix `json:"cidr"`
	// Gateway is the subnet's router; zero: none (no router option).
	Gateway netip.Addr   `json:"gateway_ip,omitzero"`
	DNS     []netip.Addr `json:"dns_nameservers,omitempty"`
	// DHCP (Neutron's enable_dhcp): the port program answers the DHCPv4
	// clients of this subnet's ports itself. Off, DHCP goes out to the
	// network (e.g. to Neutron's DHCP agent) like any broadcast.
	DHCP bool `json:"enable_dhcp,omitempty"`
	// DHCPServer is the address DHCP answers come from (the server
	// identifier): the network's DHCP port when taking over from
	// Neutron, otherwise the gateway.
	DHCPServer netip.Addr `json:"dhcp_server,omitzero"`
	// LeaseSeconds: 0 means DefaultLeaseSeconds, InfiniteLease never expires.
	LeaseSeconds int    `json:"lease_seconds,omitempty"`
	Source       Source `json:"source,omitzero"`
}

// ServerID is the address DHCP answers come from, if the subnet has one.
func (s Subnet) ServerID() (netip.Addr, bool) {
	if s.DHCPServer.IsValid() {
		return s.DHCPServer, true
	}
	return s.Gateway, s.Gateway.IsValid()
}

// Lease is the lease time DHCP hands out, in seconds (0xffffffff: infinite).
func (s Subnet) Lease() uint32 {
	switch s.LeaseSeconds {
	case 0:
		return DefaultLeaseSeconds
	case InfiniteLease:
		return 0xffffffff
	}
	return uint32(s.LeaseSeconds)
}

// Validate checks a subnet on its own and returns every problem.
func (s Subnet) Validate() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !s.CIDR.IsValid() {
		bad("cidr missing or invalid")
		return errs
	}
	if s.CIDR != s.CIDR.Masked() {
		bad("cidr %s has host bits set (%s)", s.CIDR, s.CIDR.Masked())
	}
	inside := func(field string, a netip.Addr) {
		if a.IsValid() && (!s.CIDR.Contains(a) || a == s.CIDR.Masked().Addr()) {
			bad("%s %s is not a host address of %s", field, a, s.CIDR)
		}
	}
	inside("gateway_ip", s.Gateway)
	inside("dhcp_server", s.DHCPServer)
	for _, d := range s.DNS {
		if !d.IsValid() || d.Is4() != s.CIDR.Addr().Is4() {
			bad("dns_nameservers: %s is not an %s address", d, family(s.CIDR.Addr()))
		}
	}
	if s.LeaseSeconds < InfiniteLease || (s.LeaseSeconds > 0 && s.LeaseSeconds < 120) {
		bad("lease_seconds %d: want at least 120, or -1 for infinite (0: %d)", s.LeaseSeconds, DefaultLeaseSeconds)
	}
	if s.DHCP && s.CIDR.Addr().Is4() {
		if _, ok := s.ServerID(); !ok {
			bad("enable_dhcp needs an address to answer from: a gateway_ip or a dhcp_server")
		}
	}
	return errs
}

// SubnetOf returns the subnet of n that holds ip.
func (n Network) SubnetOf(ip netip.Addr) (Subnet, bool) {
	for _, s := range n.Subnets {
		if s.CIDR.Contains(ip) {
			return s, true
		}
	}
	return Subnet{}, false
}

// Domain is the DNS domain DHCP hands out on n.
func (n Network) Domain() string {
	if n.DNSDomain != "" {
		return strings.TrimSuffix(n.DNSDomain, ".")
	}
	return DefaultDNSDomain
}

// HostName is the host name DHCP gives a port: its DNS name, or
// Neutron's "host-<address with dashes>" (as its dnsmasq hosts file does).
func (p LocalPort) HostName(ip netip.Addr) string {
	if p.DNSName != "" {
		return p.DNSName
	}
	return "host-" + strings.NewReplacer(".", "-", ":", "-").Replace(ip.String())
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}
