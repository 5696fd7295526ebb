package state

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// MaxVNI is the largest 24-bit VXLAN network identifier.
const MaxVNI = 1<<24 - 1

// MaxVLAN is the largest usable 802.1Q VLAN id (4095 is reserved).
const MaxVLAN = 4094

// Validate checks d for everything the dataplane relies on and returns all
// problems found, each naming the offending entry. A state that fails
// validation must not be applied at all.
func (d *Desired) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	nets := map[string]*Network{}
	vnis := map[uint32]string{}
	segments := map[string]string{} // physical network/VLAN -> network
	bridges := map[string]string{}
	for i := range d.Networks {
		n := &d.Networks[i]
		where := fmt.Sprintf("networks[%d] (%s)", i, n.ID)
		switch {
		case n.ID == "":
			bad("networks[%d]: id is empty", i)
		case nets[n.ID] != nil:
			bad("%s: duplicate network id", where)
		default:
			nets[n.ID] = n
		}
		switch n.Kind() {
		case NetworkVXLAN:
			if n.VNI == 0 || n.VNI > MaxVNI {
				bad("%s: vni %d out of range 1-%d", where, n.VNI, MaxVNI)
			} else if other, dup := vnis[n.VNI]; dup {
				bad("%s: vni %d already used by network %s", where, n.VNI, other)
			} else {
				vnis[n.VNI] = n.ID
			}
			if n.PhysicalNetwork != "" || n.VLAN != 0 {
				bad("%s: a vxlan network has no physical_network or vlan_id", where)
			}
		case NetworkVLAN, NetworkFlat:
			if n.VNI != 0 || len(n.VTEPs) > 0 {
				bad("%s: a %s network has no vni or vteps", where, n.Kind())
			}
			if !ValidPhysicalNetwork(n.PhysicalNetwork) {
				bad("%s: physical_network %q: want a name like default (letters, digits, '-')", where, n.PhysicalNetwork)
			}
			if n.Kind() == NetworkVLAN && (n.VLAN < 1 || n.VLAN > MaxVLAN) {
				bad("%s: vlan_id %d out of range 1-%d", where, n.VLAN, MaxVLAN)
			}
			if n.Kind() == NetworkFlat && n.VLAN != 0 {
				bad("%s: a flat network has no vlan_id", where)
			}
			seg := fmt.Sprintf("%s/%d", n.PhysicalNetwork, n.VLAN)
			if other, dup := segments[seg]; dup {
				bad("%s: %s network on %s already served by network %s", where, n.Kind(), seg, other)
			}
			segments[seg] = n.ID
		default:
			bad("%s: network_type %q: want vxlan, vlan or flat", where, n.Type)
		}
		// Neutron names bridges after the first 11 characters of the id:
		// two networks sharing them would share a bridge, and its floods.
		if other, dup := bridges[BridgeName(n.ID)]; dup && n.ID != "" && other != n.ID {
			bad("%s: bridge %s would also carry network %s (ids must differ in their first 11 characters)", where, BridgeName(n.ID), other)
		}
		bridges[BridgeName(n.ID)] = n.ID
		if n.MTU != 0 && (n.MTU < 68 || n.MTU > 65000) {
			bad("%s: mtu %d out of range 68-65000", where, n.MTU)
		}
		for _, v := range n.VTEPs {
			if !unicastVTEP(v.IP) {
				bad("%s: vtep %q is not a unicast address", where, v.IP)
			}
		}
		for j, sn := range n.Subnets {
			for _, err := range sn.Validate() {
				bad("%s: subnets[%d] (%s): %v", where, j, sn.CIDR, err)
			}
			for _, other := range n.Subnets[:j] {
				if sn.CIDR.IsValid() && other.CIDR.IsValid() && sn.CIDR.Overlaps(other.CIDR) {
					bad("%s: subnets[%d] (%s) overlaps %s", where, j, sn.CIDR, other.CIDR)
				}
			}
		}
		if n.DNSDomain != "" && !ValidDNSDomain(n.DNSDomain) {
			bad("%s: dns_domain %q is not a DNS name", where, n.DNSDomain)
		}
	}

	type macKey struct {
		net string
		mac MAC
	}
	ports := len(d.LocalPorts) + len(d.RemotePorts)
	macs := make(map[macKey]portRef, ports)
	taps := map[string]portRef{}
	ids := make(map[string]bool, ports)
	checkPort := func(where portRef, id, netID string, mac MAC, ips []netip.Addr) {
		if id != "" {
			if ids[id] {
				bad("%s: duplicate port id", where)
			}
			ids[id] = true
		}
		if nets[netID] == nil {
			bad("%s: unknown network %q", where, netID)
		}
		for _, err := range addressErrors(mac, ips) {
			bad("%s: %v", where, err)
		}
		k := macKey{netID, mac}
		if other, dup := macs[k]; dup {
			bad("%s: mac %s already used by %s on the same network", where, mac, other)
		}
		macs[k] = where
	}
	for i, p := range d.LocalPorts {
		where := portRef{"local_ports", i, p.ID}
		if p.ID == "" && p.Tap == "" {
			bad("local_ports[%d]: needs an id or a tap name", i)
		}
		checkPort(where, p.ID, p.NetworkID, p.MAC, p.IPs)
		tap := p.TapName()
		if other, dup := taps[tap]; dup {
			bad("%s: tap %s already used by %s", where, tap, other)
		}
		taps[tap] = where
		for _, err := range p.ownErrors() {
			bad("%s: %v", where, err)
		}
	}
	groups := map[string]*SecurityGroup{}
	for i := range d.SecurityGroups {
		g := &d.SecurityGroups[i]
		where := fmt.Sprintf("security_groups[%d] (%s)", i, g.ID)
		if g.ID == "" || groups[g.ID] != nil {
			bad("%s: empty or duplicate id", where)
		}
		groups[g.ID] = g
		for j, r := range g.Rules {
			if err := r.Validate(); err != nil {
				bad("%s: rules[%d] (%s): %v", where, j, r.ID, err)
			}
		}
	}
	for i, p := range d.LocalPorts {
		var stateless []bool
		for _, id := range p.SecurityGroups {
			g := groups[id]
			if g == nil {
				bad("local_ports[%d] (%s): security group %q is not in security_groups", i, p.ID, id)
				continue
			}
			stateless = append(stateless, g.Stateless)
		}
		for _, s := range stateless {
			if s != stateless[0] {
				bad("local_ports[%d] (%s): stateful and stateless security groups mixed", i, p.ID)
				break
			}
		}
	}
	for i, p := range d.RemotePorts {
		where := portRef{"remote_ports", i, p.ID}
		checkPort(where, p.ID, p.NetworkID, p.MAC, p.IPs)
		if n := nets[p.NetworkID]; n != nil && n.Provider() {
			if p.VTEP.IsValid() {
				bad("%s: a port of %s network %s has no vtep", where, n.Kind(), n.ID)
			}
		} else if !unicastVTEP(p.VTEP) {
			bad("%s: vtep %q is not a unicast address", where, p.VTEP)
		}
	}
	return errors.Join(errs...)
}

// portRef names a port of a state in an error: its list, index and id
// (formatted only when there is an error: states hold 100k ports).
type portRef struct {
	list string
	i    int
	id   string
}

func (r portRef) String() string { return fmt.Sprintf("%s[%d] (%s)", r.list, r.i, r.id) }

// unicastVTEP reports whether ip can be a VTEP (IPv4 or IPv6 underlay).
func unicastVTEP(ip netip.Addr) bool {
	return ip.IsValid() && !ip.Is4In6() && !ip.IsUnspecified() && !ip.IsMulticast()
}

// addressErrors are the problems of a port's MAC and IPs.
func addressErrors(mac MAC, ips []netip.Addr) []error {
	var errs []error
	if !mac.IsUnicast() {
		errs = append(errs, fmt.Errorf("mac %s is not a unicast address", mac))
	}
	for _, ip := range ips {
		if !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() {
			errs = append(errs, fmt.Errorf("invalid ip %q", ip))
		}
	}
	return errs
}

// ownErrors are the problems of a local port on its own (besides its
// MAC and IPs): its tap name, address pairs and DNS name.
func (p LocalPort) ownErrors() []error {
	var errs []error
	if tap := p.TapName(); len(tap) > 15 {
		errs = append(errs, fmt.Errorf("tap name %q longer than 15 characters", tap))
	}
	errs = append(errs, ValidateAddressPairs(p.MAC, p.IPs, p.AllowedAddressPairs)...)
	if p.DNSName != "" && !ValidHostName(p.DNSName) {
		errs = append(errs, fmt.Errorf("dns_name %q is not a host name (letters, digits, hyphens; 63 at most)", p.DNSName))
	}
	return errs
}

// Validate checks what d puts on its own: every network as Desired.Validate
// does, every port's addresses and local port's names, every rule. What
// depends on the rest of the state (unknown networks, a MAC or tap used
// twice) is the producer's to keep, and checked with every full state.
func (d *Delta) Validate() error {
	var errs []error
	if err := (&Desired{Networks: d.Networks.Put}).Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, p := range d.LocalPorts.Put {
		for _, err := range append(addressErrors(p.MAC, p.IPs), p.ownErrors()...) {
			errs = append(errs, fmt.Errorf("local port %s: %w", p.ID, err))
		}
	}
	for _, p := range d.RemotePorts.Put {
		for _, err := range addressErrors(p.MAC, p.IPs) {
			errs = append(errs, fmt.Errorf("remote port %s: %w", p.ID, err))
		}
		if p.VTEP.IsValid() && !unicastVTEP(p.VTEP) {
			errs = append(errs, fmt.Errorf("remote port %s: vtep %q is not a unicast address", p.ID, p.VTEP))
		}
	}
	for _, g := range d.SecurityGroups.Put {
		for j, r := range g.Rules {
			if err := r.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("security group %s: rules[%d] (%s): %w", g.ID, j, r.ID, err))
			}
		}
	}
	return errors.Join(errs...)
}

// FloodList returns the remote VTEPs of a network: its listed VTEPs plus
// those of its remote ports, deduplicated, in first-seen order.
func (d *Desired) FloodList(networkID string) []VTEP {
	var out []VTEP
	seen := map[netip.Addr]bool{}
	add := func(v VTEP) {
		if !seen[v.IP] {
			seen[v.IP] = true
			out = append(out, v)
		}
	}
	for _, n := range d.Networks {
		if n.ID == networkID {
			for _, v := range n.VTEPs {
				add(v)
			}
		}
	}
	for _, p := range d.RemotePorts {
		if p.NetworkID == networkID && p.VTEP.IsValid() {
			add(VTEP{IP: p.VTEP, Source: p.Source})
		}
	}
	return out
}

// ValidateAddressPairs checks a port's allowed address pairs against its
// MAC and fixed IPs. One MAC per address: a pair may not bind a fixed IP or
// another pair's prefix to a second MAC (the port would lose the first).
func ValidateAddressPairs(mac MAC, ips []netip.Addr, pairs []AddressPair) []error {
	var errs []error
	macOf := map[netip.Prefix]MAC{}
	for _, ip := range ips {
		if ip.IsValid() {
			macOf[netip.PrefixFrom(ip, ip.BitLen())] = mac
		}
	}
	for j, ap := range pairs {
		if !ap.IP.IsValid() {
			errs = append(errs, fmt.Errorf("allowed_address_pairs[%d]: invalid ip_address", j))
			continue
		}
		if !ap.MAC.IsZero() && !ap.MAC.IsUnicast() {
			errs = append(errs, fmt.Errorf("allowed_address_pairs[%d]: mac %s is not unicast", j, ap.MAC))
		}
		pairMAC := ap.MAC
		if pairMAC.IsZero() {
			pairMAC = mac
		}
		if other, dup := macOf[ap.IP.Masked()]; dup && other != pairMAC {
			errs = append(errs, fmt.Errorf("allowed_address_pairs[%d]: %s is already allowed from %s, not also from %s", j, ap.IP, other, pairMAC))
		}
		macOf[ap.IP.Masked()] = pairMAC
	}
	return errs
}

// ValidPhysicalNetwork reports whether s can name a physical network
// (provider:physical_network): letters, digits and inner hyphens, 63 at
// most, as it becomes part of device and pin names.
func ValidPhysicalNetwork(s string) bool { return validDomain(s) && !strings.Contains(s, ".") }

// ValidDNSDomain reports whether s can be a network's dns_domain.
func ValidDNSDomain(s string) bool { return validDomain(s) }

// ValidHostName reports whether s can be a port's dns_name: one DNS label.
func ValidHostName(s string) bool { return validDomain(s) && !strings.Contains(s, ".") }

// validDomain reports whether s is a DNS name of at most 253 characters
// whose labels are letters, digits and inner hyphens (RFC 1123), 63 at most.
func validDomain(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
