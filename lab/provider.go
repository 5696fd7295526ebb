package lab

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/vxdp/vxdp/state"
)

// The seed's provider networks (Config.Provider): vlan99 (VLAN 99 on the
// physical network "default", the nodes' eth1, as the seed's
// physical_interface_mappings = default:eth1) and a flat network on
// "external" (the seed's flat_networks), which the lab maps to eth3. The
// flat network reuses vxlan100_net's addresses on purpose: overlapping
// IPs of a VNI and a provider network must never meet.
const (
	NetVLAN99ID     = "5ac5c948-2f31-4c5a-9d7e-3b8a6c1f0e99"
	NetVLAN99Name   = "vlan99"
	NetExternalID   = "e7f2c1a4-6b3d-4e58-9a0f-2d4c8b6e1f30"
	NetExternalName = "external"
	PhysDefault     = "default"
	PhysExternal    = "external"
	// ProviderDev is the nodes' provider NIC (no address), ExternalDev the
	// flat network's.
	ProviderDev = "eth1"
	ExternalDev = "eth3"
	// PhysHost is a machine on the physical networks that is no port: a
	// router of VLAN 99 (eth1.99) and of the flat network (eth3).
	PhysHost = "physhost"
	// Switches joining the nodes' provider NICs, in the underlay namespace.
	providerSwitch = "phys"
	externalSwitch = "ext"
)

var (
	vlan99Subnet   = netip.MustParsePrefix("172.16.99.0/24")
	PhysHostVLANIP = netip.MustParseAddr("172.16.99.1")
	PhysHostFlatIP = netip.MustParseAddr("172.16.100.1")
)

var (
	// VM5 is vm2's NIC on vlan99 in the seed (172.16.99.117), here its own VM on node3.
	VM5 = Port{Name: "vm5", ID: "71a3c9e2-5d48-4b16-a0f7-99e1c2b3d4a5", NetworkID: NetVLAN99ID, Node: "node3",
		MAC: mac("fa:16:3e:f1:99:75"), IP: netip.MustParseAddr("172.16.99.117")}
	// VM6 is on vlan99 on node4.
	VM6 = Port{Name: "vm6", ID: "8b2d4f61-3a7c-4e95-b1d8-6f0a2c4e8b12", NetworkID: NetVLAN99ID, Node: "node4",
		MAC: mac("fa:16:3e:f1:99:12"), IP: netip.MustParseAddr("172.16.99.112")}
	// VM7 (node3) and VM8 (node4) are on the flat network with vm2's and
	// vm1's addresses.
	VM7 = Port{Name: "vm7", ID: "c4e6a8b0-2d1f-4a3c-9e57-b8d0f2a4c6e7", NetworkID: NetExternalID, Node: "node3",
		MAC: mac("fa:16:3e:f1:98:19"), IP: netip.MustParseAddr("172.16.100.19")}
	VM8 = Port{Name: "vm8", ID: "d5f7b9c1-3e2a-4b4d-8f68-c9e1a3b5d7f8", NetworkID: NetExternalID, Node: "node4",
		MAC: mac("fa:16:3e:f1:98:12"), IP: netip.MustParseAddr("172.16.100.12")}
)

// ProviderMappings is the lab agents' physical_interface_mappings.
const ProviderMappings = PhysDefault + ":" + ProviderDev + "," + PhysExternal + ":" + ExternalDev

// providerNetworks are the lab's provider networks.
func (c Config) providerNetworks() []state.Network {
	vlanSubnet := state.Subnet{ID: NetVLAN99ID + "-v4", CIDR: vlan99Subnet, Gateway: PhysHostVLANIP, DHCP: !c.NoDHCPAtPort}
	flatSubnet := c.subnet(NetExternalID)
	flatSubnet.Gateway, flatSubnet.DHCPServer = PhysHostFlatIP, netip.Addr{}
	return []state.Network{
		{ID: NetVLAN99ID, Name: NetVLAN99Name, Type: state.NetworkVLAN, PhysicalNetwork: PhysDefault, VLAN: 99,
			Subnets: []state.Subnet{vlanSubnet}},
		{ID: NetExternalID, Name: NetExternalName, Type: state.NetworkFlat, PhysicalNetwork: PhysExternal,
			Subnets: []state.Subnet{flatSubnet}},
	}
}

// SwitchPort is the physical switch's port to host's provider NIC, in the
// underlay namespace: where the wire of VLAN 99 can be watched.
func SwitchPort(host string) string { return "p-" + host }

// buildProvider makes the physical networks: a switch each in the
// underlay namespace, every node's provider NICs on them (no address),
// and the physical host with VLAN 99 on eth1 and the flat network on eth3.
func buildProvider(c Config) error {
	if err := Do(c.NS("underlay"), func() error {
		for _, name := range []string{providerSwitch, externalSwitch} {
			// A plain bridge: it carries 802.1Q frames as they are, like a
			// switch port in trunk mode.
			br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: UnderlayMTU}}
			if err := netlink.LinkAdd(br); err != nil {
				return fmt.Errorf("add bridge %s: %w", name, err)
			}
			if err := setUp(name); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	for _, host := range append(append([]string{}, Nodes...), PhysHost) {
		for _, l := range []struct{ sw, dev, prefix string }{{providerSwitch, ProviderDev, "p-"}, {externalSwitch, ExternalDev, "x-"}} {
			if err := plug(c, host, l.prefix+host, l.sw, l.dev, netip.Addr{}, true); err != nil {
				return err
			}
		}
	}
	return Do(c.NS(PhysHost), func() error {
		name, err := addVLANDevice(ProviderDev, 99)
		if err != nil {
			return fmt.Errorf("VLAN 99 on the physical host: %w", err)
		}
		for _, a := range []struct {
			dev string
			ip  netip.Prefix
		}{{name, netip.PrefixFrom(PhysHostVLANIP, 24)}, {ExternalDev, netip.PrefixFrom(PhysHostFlatIP, 24)}} {
			if err := addAddr(a.dev, a.ip); err != nil {
				return err
			}
			if err := setUp(a.dev); err != nil {
				return err
			}
		}
		return nil
	})
}
