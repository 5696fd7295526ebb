// Package state is the seam between the control plane and the dataplane:
// the desired state of one hypervisor, and the Reconciler that makes the host
// match it. Producers (a state file, the NATS watcher) build a Desired;
// the dataplane applies it. Neither side knows how the other works.
package state

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Desired is everything one host must forward: the networks it serves, its
// local ports, the remote ports of those networks and the VTEPs hosting them.
// It is always complete: applying it removes whatever it does not mention.
type Desired struct {
	Networks    []Network    `json:"networks"`
	LocalPorts  []LocalPort  `json:"local_ports"`
	RemotePorts []RemotePort `json:"remote_ports"`
	// SecurityGroups are the groups of the local ports, resolved.
	SecurityGroups []SecurityGroup `json:"security_groups,omitempty"`
	// Revision identifies the input this state was built from (a KV
	// revision, or 0 for a file); reconcilers record it with what they apply.
	Revision uint64 `json:"revision,omitempty"`
}

// Source says where an entry came from, so every installed object can be
// traced back to the record that caused it.
type Source struct {
	Key      string `json:"key,omitempty"`
	Revision uint64 `json:"revision,omitempty"`
}

func (s Source) String() string {
	if s.Key == "" {
		return "-"
	}
	if s.Revision == 0 {
		return s.Key
	}
	return fmt.Sprintf("%s@%d", s.Key, s.Revision)
}

// Network types (Neutron's provider:network_type).
const (
	NetworkVXLAN = "vxlan"
	NetworkVLAN  = "vlan"
	NetworkFlat  = "flat"
)

// Network is a tenant network served on this host: VXLAN (the default),
// or a provider network (VLAN or flat) on a physical network.
type Network struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// Type is vxlan (also when empty), vlan or flat.
	Type string `json:"network_type,omitempty"`
	// VNI of a VXLAN network.
	VNI uint32 `json:"vni,omitempty"`
	// PhysicalNetwork of a VLAN or flat network (provider:physical_network):
	// the agent maps it to an interface (physical_interface_mappings).
	PhysicalNetwork string `json:"physical_network,omitempty"`
	// VLAN id of a VLAN network (provider:segmentation_id).
	VLAN uint16 `json:"vlan_id,omitempty"`
	// MTU of the tenant network; 0 means the uplink MTU minus the 50 bytes
	// of VXLAN overhead (1450 on a 1500 underlay), as Neutron computes it.
	MTU int `json:"mtu,omitempty"`
	// VTEPs are the other hosts serving this network: the l2pop flood
	// list, and the only sources whose VXLAN of this VNI is accepted.
	// VTEPs of remote ports are added implicitly.
	VTEPs []VTEP `json:"vteps,omitempty"`
	// VLANTransparent lets VMs send VLAN-tagged frames (Neutron's
	// vlan_transparent); otherwise port security drops them.
	VLANTransparent bool `json:"vlan_transparent,omitempty"`
	// Subnets of the network; DHCP at the port serves those with DHCP on.
	Subnets []Subnet `json:"subnets,omitempty"`
	// DNSDomain is the domain DHCP hands out (Neutron's dns_domain);
	// empty means DefaultDNSDomain.
	DNSDomain string `json:"dns_domain,omitempty"`
	Source    Source `json:"source,omitzero"`
}

// Kind is the network's type, vxlan when unset.
func (n Network) Kind() string {
	if n.Type == "" {
		return NetworkVXLAN
	}
	return n.Type
}

// Provider reports whether n is a provider network (VLAN or flat).
func (n Network) Provider() bool { return n.Kind() != NetworkVXLAN }

// VTEP is a remote tunnel endpoint of a network.
type VTEP struct {
	IP     netip.Addr `json:"ip"`
	Source Source     `json:"source,omitzero"`
}

// LocalPort is a port bound to this host, reached through its tap device.
type LocalPort struct {
	ID        string       `json:"id"`
	NetworkID string       `json:"network_id"`
	MAC       MAC          `json:"mac"`
	IPs       []netip.Addr `json:"ips,omitempty"`
	// Tap defaults to "tap" + the first 11 characters of ID (Neutron).
	Tap string `json:"tap,omitempty"`
	// PortSecurity forbids sending from a MAC/IP that is not the port's
	// (fixed IPs and AllowedAddressPairs). Neutron's default is on; a nil
	// value in JSON means on.
	PortSecurity        *bool         `json:"port_security,omitempty"`
	AllowedAddressPairs []AddressPair `json:"allowed_address_pairs,omitempty"`
	// SecurityGroups are the ids of the port's groups (in
	// Desired.SecurityGroups). With port security on, the union of their
	// rules is what the port allows besides what is always allowed: no
	// group, nothing else.
	SecurityGroups []string `json:"security_groups,omitempty"`
	// DNSName is the host name DHCP gives the VM (Neutron's dns_name);
	// empty means "host-<address with dashes>".
	DNSName string `json:"dns_name,omitempty"`
	Source  Source `json:"source,omitzero"`
}

// RemotePort is a port of a served network bound to another host.
type RemotePort struct {
	ID        string       `json:"id,omitempty"`
	NetworkID string       `json:"network_id"`
	MAC       MAC          `json:"mac"`
	IPs       []netip.Addr `json:"ips,omitempty"`
	// VTEP is the VTEP of the port's host (VXLAN networks; none for a
	// provider network, whose frames go out of its physical interface).
	VTEP   netip.Addr `json:"vtep,omitzero"`
	Source Source     `json:"source,omitzero"`
}

// AddressPair lets a port also send as IP (a single address or a CIDR),
// from MAC, or from the port's own MAC when MAC is zero.
type AddressPair struct {
	IP  netip.Prefix `json:"ip_address"`
	MAC MAC          `json:"mac_address,omitzero"`
}

// SecurityEnabled reports whether port security applies (default on).
func (p LocalPort) SecurityEnabled() bool { return p.PortSecurity == nil || *p.PortSecurity }

// TapName is the port's tap device name.
func (p LocalPort) TapName() string {
	if p.Tap != "" {
		return p.Tap
	}
	return TapName(p.ID)
}

// TapName is Neutron's tap device name for a port id.
func TapName(portID string) string { return "tap" + prefix(portID, 11) }

// BridgeName is Neutron's linuxbridge bridge name for a network id.
func BridgeName(networkID string) string { return "brq" + prefix(networkID, 11) }

// VXLANName is Neutron's vxlan device name for a VNI.
func VXLANName(vni uint32) string { return fmt.Sprintf("vxlan-%d", vni) }

func prefix(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// MAC is an Ethernet address that marshals as "fa:16:3e:cb:98:2c".
type MAC [6]byte

// ParseMAC parses a 48-bit Ethernet address.
func ParseMAC(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return MAC{}, fmt.Errorf("invalid MAC %q: want six hex octets like fa:16:3e:cb:98:2c", s)
	}
	return MAC(hw), nil
}

func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

// IsZero reports whether m is 00:00:00:00:00:00.
func (m MAC) IsZero() bool { return m == MAC{} }

// IsUnicast reports whether m can be a port's address.
func (m MAC) IsUnicast() bool { return !m.IsZero() && m[0]&1 == 0 }

func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

func (m *MAC) UnmarshalText(b []byte) error {
	v, err := ParseMAC(strings.TrimSpace(string(b)))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Op is one change a reconciler made.
type Op struct {
	Object string // e.g. "bpf/fdb", "kernel/fdb", "kernel/link"
	Action string // "add", "update" or "remove"
	Key    string
}

// Result summarises an Apply.
type Result struct {
	Ops       []Op
	Unchanged int
	// Pending lists local ports whose tap does not exist yet; they are
	// installed when it appears.
	Pending []string
}

// Reconciler makes the host match a desired state. Apply is idempotent and
// incremental: it changes only what differs from what is installed, so
// applying the same state twice makes no changes the second time.
type Reconciler interface {
	Apply(ctx context.Context, d *Desired) (Result, error)
}

// Producer makes the desired state of one host: a state file, or the NATS
// control plane. Run sends a complete Desired whenever it changes, until ctx
// ends; it must not send a Desired that fails Validate.
type Producer interface {
	Run(ctx context.Context, updates chan<- *Desired) error
}

// Observer is told the outcome of every apply, e.g. to publish port status
// (ports in Result.Pending have no tap yet) or to record the applied revision.
type Observer interface {
	Applied(ctx context.Context, d *Desired, res Result, err error)
}
