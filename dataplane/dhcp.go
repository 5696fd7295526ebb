package dataplane

import (
	"net/netip"

	"github.com/vxdp/vxdp/maps"
	"github.com/vxdp/vxdp/state"
)

// dhcpLease is what the port program answers p's DHCP client: its first
// IPv4 address that lies in a subnet of its network with DHCP on, with
// that subnet's settings. ok is false when DHCP at the port does not serve
// the port (DHCP off, no such address), which leaves its DHCP to the
// network.
func dhcpLease(n state.Network, p localPort) (v maps.DHCPLease, ok bool, err error) {
	for _, ip := range p.IPs {
		if !ip.Is4() {
			continue
		}
		s, found := n.SubnetOf(ip)
		if !found || !s.DHCP {
			continue
		}
		server, _ := s.ServerID() // validated: a DHCP subnet has one
		a := maps.DHCPAnswer{
			ClientMAC: p.MAC[:], ServerMAC: p.tap.Attrs().HardwareAddr,
			Address: netip.PrefixFrom(ip, s.CIDR.Bits()), Server: server, Gateway: s.Gateway, DNS: s.DNS,
			Lease: s.Lease(), HostName: p.HostName(ip), Domain: n.Domain(), MTU: p.net.mtu,
		}
		v, err = maps.NewDHCPLease(a)
		return v, err == nil, err
	}
	return v, false, nil
}
