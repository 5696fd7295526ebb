package state

import (
	"errors"
	"fmt"
	"net/netip"
)

// MaxVNI is the largest 24-bit VXLAN network identifier.
const MaxVNI = 1<<24 - 1

// Validate checks d for everything the dataplane relies on and returns all
// problems found, each naming the offending entry. A state that fails
// validation must not be applied at all.
func (d *Desired) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	nets := map[string]*Network{}
	vnis := map[uint32]string{}
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
		if n.VNI == 0 || n.VNI > MaxVNI {
			bad("%s: vni %d out of range 1-%d", where, n.VNI, MaxVNI)
		} else if other, dup := vnis[n.VNI]; dup {
			bad("%s: vni %d already used by network %s", where, n.VNI, other)
		} else {
			vnis[n.VNI] = n.ID
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
			if !v.IP.Is4() {
				bad("%s: vtep %q is not an IPv4 address", where, v.IP)
			}
		}
	}

	type macKey struct {
		net string
		mac MAC
	}
	macs := map[macKey]string{}
	taps := map[string]string{}
	ids := map[string]bool{}
	checkPort := func(where, id, netID string, mac MAC, ips []netip.Addr) {
		if id != "" {
			if ids[id] {
				bad("%s: duplicate port id", where)
			}
			ids[id] = true
		}
		if nets[netID] == nil {
			bad("%s: unknown network %q", where, netID)
		}
		if !mac.IsUnicast() {
			bad("%s: mac %s is not a unicast address", where, mac)
		}
		k := macKey{netID, mac}
		if other, dup := macs[k]; dup {
			bad("%s: mac %s already used by %s on the same network", where, mac, other)
		}
		macs[k] = where
		for _, ip := range ips {
			if !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() {
				bad("%s: invalid ip %q", where, ip)
			}
		}
	}
	for i, p := range d.LocalPorts {
		where := fmt.Sprintf("local_ports[%d] (%s)", i, p.ID)
		if p.ID == "" && p.Tap == "" {
			bad("local_ports[%d]: needs an id or a tap name", i)
		}
		checkPort(where, p.ID, p.NetworkID, p.MAC, p.IPs)
		tap := p.TapName()
		if len(tap) > 15 {
			bad("%s: tap name %q longer than 15 characters", where, tap)
		}
		if other, dup := taps[tap]; dup {
			bad("%s: tap %s already used by %s", where, tap, other)
		}
		taps[tap] = where
		for _, err := range ValidateAddressPairs(p.MAC, p.IPs, p.AllowedAddressPairs) {
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
		where := fmt.Sprintf("remote_ports[%d] (%s)", i, p.ID)
		checkPort(where, p.ID, p.NetworkID, p.MAC, p.IPs)
		if !p.VTEP.Is4() {
			bad("%s: vtep %q is not an IPv4 address", where, p.VTEP)
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
		if p.NetworkID == networkID {
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
