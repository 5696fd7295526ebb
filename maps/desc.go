package maps

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/cilium/ebpf"

	"github.com/vxdp/vxdp/state"
)

// Map names, as in bpf/include/maps.h; also their pin file names.
const (
	Config       = "config"
	Meta         = "meta"
	Stats        = "stats"
	IPID         = "ip_id"
	Ports        = "ports"
	Networks     = "networks"
	FDB          = "fdb"
	VTEPs        = "vteps"
	ARP          = "arp"
	PortAddrs    = "port_addrs"
	TxPorts      = "tx_ports"
	PolicyRemote = "policy_remote"
	PolicyL4     = "policy_l4"
	CTTCP        = "ct_tcp"
	CTOther      = "ct_other"
	SGStats      = "sg_stats"
	Events       = "events"
	MonScratch   = "mon_scratch"
	DHCP         = "dhcp"
	VTEPs6       = "vteps6"
	VTEPNextHop  = "vtep_nexthop"
	ProviderIn   = "provider_in"
	SegmentDevs  = "segment_devs"
	DHCPWork     = "dhcp_work"
)

// Desc describes one map to the Go side: the one place the loader (which
// maps exist, in which order), the dump (columns, how an entry prints),
// the reconciler (the canonical key provenance is recorded under) and the
// metrics (entries, capacity) learn about it.
type Desc struct {
	Name    string
	Purpose string
	// Provenance: entries come from the desired state, so each traces
	// back to a KV key (or the state file); otherwise the agent or the
	// programs write them.
	Provenance bool
	Columns    []string
	// rows reads the map and renders every entry.
	rows func(m *ebpf.Map, dev DevName) ([]Row, error)
}

// Row is one map entry: its canonical key (the one provenance is recorded
// under) and its values, typed (numbers stay numbers in JSON).
type Row struct {
	Key    string
	Values []any
}

// DevName resolves an ifindex to a device name ("" when unknown).
type DevName func(ifindex uint32) string

// Dev is a device in a dump: its ifindex and, where resolvable, its name.
type Dev struct {
	Ifindex uint32 `json:"ifindex"`
	Name    string `json:"name,omitempty"`
}

func (d Dev) String() string {
	if d.Name == "" {
		return strconv.FormatUint(uint64(d.Ifindex), 10)
	}
	return fmt.Sprintf("%d(%s)", d.Ifindex, d.Name)
}

func dev(n DevName, ifindex uint32) Dev {
	d := Dev{Ifindex: ifindex}
	if n != nil {
		d.Name = n(ifindex)
	}
	return d
}

// OnOff prints a flag as "on"/"off" and is a boolean in JSON.
type OnOff bool

func (b OnOff) String() string {
	if b {
		return "on"
	}
	return "off"
}

func (b OnOff) MarshalJSON() ([]byte, error) { return json.Marshal(bool(b)) }

// keyed is a map whose entries are read whole (hash, LPM, devmap).
type keyed[K comparable, V any] struct {
	Key func(K) string // canonical key
	Row func(K, V, DevName) []any
}

func (k keyed[K, V]) rows(m *ebpf.Map, n DevName) ([]Row, error) {
	entries, err := Entries[K, V](m)
	if err != nil {
		return nil, err
	}
	out := make([]Row, 0, len(entries))
	for key, v := range entries {
		out = append(out, Row{Key: k.Key(key), Values: k.Row(key, v, n)})
	}
	return out, nil
}

// single is a one-entry array map.
func single[V any](row func(V, DevName) []any) func(*ebpf.Map, DevName) ([]Row, error) {
	return func(m *ebpf.Map, n DevName) ([]Row, error) {
		var v V
		if err := m.Lookup(uint32(0), &v); err != nil {
			return nil, err
		}
		return []Row{{Key: "0", Values: row(v, n)}}, nil
	}
}

// Canonical keys: how an entry is named in dumps and provenance records.

// FDBKeyString is the canonical key of an fdb entry.
func FDBKeyString(k FDBKey) string { return fmt.Sprintf("%d/%s", k.Vni, state.MAC(k.Mac)) }

// VNIAddrKeyString is the canonical key of a vteps or arp entry.
func VNIAddrKeyString(k VNIAddr) string { return fmt.Sprintf("%d/%s", k.Vni, AddrBE32(k.Addr)) }

// PortAddrKeyString is the canonical key of a port_addrs entry:
// ifindex/MAC for a MAC-only entry, ifindex/MAC/prefix otherwise.
func PortAddrKeyString(k PortAddrKey) string {
	if p, ok := portAddrPrefix(k); ok {
		return fmt.Sprintf("%d/%s/%s", k.Ifindex, state.MAC(k.Mac), p)
	}
	return fmt.Sprintf("%d/%s", k.Ifindex, state.MAC(k.Mac))
}

// U32KeyString is the canonical key of a map keyed by a number.
func U32KeyString(k uint32) string { return strconv.FormatUint(uint64(k), 10) }

func addrOr(a netip.Addr, ok bool) any {
	if !ok || !a.IsValid() {
		return "-"
	}
	return a.String()
}

// Descs lists every map, in dump order.
func Descs() []Desc {
	return []Desc{
		{Name: Config, Purpose: "agent-wide settings",
			Columns: []string{"local_ip", "uplink", "vxlan_port", "src_ports", "ttl", "uplink_mac", "forwarding"},
			rows: single(func(c ConfigValue, n DevName) []any {
				return []any{AddrBE32(c.LocalIp).String(), dev(n, c.UplinkIfindex), BE16(c.VxlanPort),
					fmt.Sprintf("%d-%d", c.SrcPortMin, c.SrcPortMax), c.Ttl, state.MAC(c.UplinkMac).String(),
					OnOff(c.Flags&ConfigForward != 0)}
			})},
		{Name: Meta, Purpose: "the revision the agent last applied, and the maps' layout",
			Columns: []string{"revision", "applied_at", "layout"},
			rows: single(func(m MetaValue, _ DevName) []any {
				at := "-"
				if m.AppliedAtNs != 0 {
					at = time.Unix(0, int64(m.AppliedAtNs)).UTC().Format(time.RFC3339)
				}
				return []any{m.Revision, at, m.Layout}
			})},
		{Name: Networks, Purpose: "networks served here, by segment (VNI, or provider segment)", Provenance: true,
			Columns: []string{"segment", "type", "dev", "physical_dev", "vlan", "mtu", "vlan_transparent"},
			rows: keyed[uint32, NetInfo]{Key: U32KeyString, Row: func(k uint32, v NetInfo, n DevName) []any {
				var phys any = "-"
				vlan := "-"
				if v.Kind != NetVXLAN {
					phys = dev(n, v.PhysIfindex)
				}
				if v.Kind == NetVLAN {
					vlan = strconv.Itoa(int(v.Vlan))
				}
				return []any{SegmentString(k), NetKindName(v.Kind), dev(n, v.DevIfindex), phys, vlan, v.Mtu, OnOff(v.Flags&NetVLANTransp != 0)}
			}}.rows},
		{Name: Ports, Purpose: "local ports by tap", Provenance: true,
			Columns: []string{"tap", "vni", "mac", "mtu", "port_security", "bridged", "disabled", "ip4", "ip6"},
			rows: keyed[uint32, PortInfo]{Key: U32KeyString, Row: func(k uint32, v PortInfo, n DevName) []any {
				return []any{dev(n, k), v.Vni, state.MAC(v.Mac).String(), v.Mtu, OnOff(v.Flags&PortSecurity != 0),
					OnOff(v.Flags&PortBridged != 0), OnOff(v.Flags&PortDisabled != 0),
					addrOr(AddrBE32(v.Ip4), v.Ip4 != 0), addrOr(netip.AddrFrom16(v.Ip6), v.Ip6 != [16]byte{})}
			}}.rows},
		{Name: PortAddrs, Purpose: "port security: allowed (source MAC, source address) pairs", Provenance: true,
			Columns: []string{"tap", "mac", "prefix"},
			rows: keyed[PortAddrKey, PortAddrValue]{Key: PortAddrKeyString, Row: func(k PortAddrKey, _ PortAddrValue, n DevName) []any {
				p, ok := portAddrPrefix(k)
				prefix := "(any frame)"
				if ok {
					prefix = p.String()
				}
				return []any{dev(n, k.Ifindex), state.MAC(k.Mac).String(), prefix}
			}}.rows},
		{Name: FDB, Purpose: "where a (VNI, MAC) lives: a local tap or a remote VTEP", Provenance: true,
			Columns: []string{"vni", "mac", "kind", "tap", "vtep"},
			rows: keyed[FDBKey, FDBEntry]{Key: FDBKeyString, Row: func(k FDBKey, v FDBEntry, n DevName) []any {
				if v.Kind == FDBLocal {
					return []any{k.Vni, state.MAC(k.Mac).String(), "local", dev(n, v.Ifindex), "-"}
				}
				if v.Kind == FDBProvider {
					return []any{SegmentString(k.Vni), state.MAC(k.Mac).String(), "provider", "-", "-"}
				}
				return []any{k.Vni, state.MAC(k.Mac).String(), "remote", "-", FDBVTEP(v).String()}
			}}.rows},
		{Name: VTEPs, Purpose: "VTEPs registered per VNI: the only accepted VXLAN sources", Provenance: true,
			Columns: []string{"vni", "vtep"},
			rows: keyed[VNIAddr, uint32]{Key: VNIAddrKeyString, Row: func(k VNIAddr, _ uint32, _ DevName) []any {
				return []any{k.Vni, AddrBE32(k.Addr).String()}
			}}.rows},
		{Name: ARP, Purpose: "proxy ARP: remote ports' IPv4 addresses", Provenance: true,
			Columns: []string{"vni", "ip", "mac"},
			rows: keyed[VNIAddr, MACValue]{Key: VNIAddrKeyString, Row: func(k VNIAddr, v MACValue, _ DevName) []any {
				return []any{k.Vni, AddrBE32(k.Addr).String(), state.MAC(v.Mac).String()}
			}}.rows},
		{Name: TxPorts, Purpose: "XDP redirect targets (local taps)", Provenance: true,
			Columns: []string{"tap", "target"},
			rows: keyed[uint32, uint32]{Key: U32KeyString, Row: func(k, v uint32, n DevName) []any {
				return []any{dev(n, k), dev(n, v)}
			}}.rows},
		{Name: PolicyRemote, Purpose: "security groups: rule classes by remote prefix",
			Columns: []string{"policy", "direction", "prefix", "classes"},
			rows: keyed[PolicyRemoteKey, SGMask]{Key: PolicyRemoteKeyString, Row: func(k PolicyRemoteKey, v SGMask, _ DevName) []any {
				return []any{k.Policy, DirName(k.Dir), policyPrefix(k), MaskString(v)}
			}}.rows},
		{Name: PolicyL4, Purpose: "security groups: rule classes by protocol and port",
			Columns: []string{"policy", "direction", "family", "match", "classes"},
			rows: keyed[PolicyL4Key, SGMask]{Key: PolicyL4KeyString, Row: func(k PolicyL4Key, v SGMask, _ DevName) []any {
				return []any{k.Policy, DirName(k.Dir), fmt.Sprintf("IPv%d", k.Family), L4Match(k), MaskString(v)}
			}}.rows},
		{Name: CTTCP, Purpose: "tracked TCP flows", Columns: ctColumns, rows: ctRows},
		{Name: CTOther, Purpose: "tracked UDP, ICMP and other flows", Columns: ctColumns, rows: ctRows},
		{Name: SGStats, Purpose: "security-group events per direction",
			Columns: []string{"direction", "event", "count"},
			rows: func(m *ebpf.Map, _ DevName) ([]Row, error) {
				var out []Row
				var perCPU []uint64
				for dir := uint8(0); dir < 2; dir++ {
					for ev := 0; ev < SGEventMax; ev++ {
						if err := m.Lookup(uint32(int(dir)*SGEventMax+ev), &perCPU); err != nil {
							return nil, err
						}
						var n uint64
						for _, v := range perCPU {
							n += v
						}
						name := SGEventName(ev)
						out = append(out, Row{Key: DirName(dir) + "/" + name, Values: []any{DirName(dir), name, n}})
					}
				}
				return out, nil
			}},
		{Name: VTEPs6, Purpose: "VTEPs registered per VNI over an IPv6 underlay", Provenance: true,
			Columns: []string{"vni", "vtep"},
			rows: keyed[VNIAddr6, uint32]{Key: VNIAddr6KeyString, Row: func(k VNIAddr6, _ uint32, _ DevName) []any {
				return []any{k.Vni, netip.AddrFrom16(k.Addr).String()}
			}}.rows},
		{Name: VTEPNextHop, Purpose: "each VTEP's next hop on the uplink (the kernel's neighbour), written by encapsulation", Provenance: true,
			Columns: []string{"vtep", "next_hop_mac"},
			rows: keyed[uint32, MACValue]{Key: U32KeyString, Row: func(k uint32, v MACValue, _ DevName) []any {
				return []any{AddrBE32(k).String(), state.MAC(v.Mac).String()}
			}}.rows},
		{Name: ProviderIn, Purpose: "provider networks by how they arrive: (physical interface, VLAN id; 0 flat)", Provenance: true,
			Columns: []string{"dev", "vlan", "segment"},
			rows: keyed[ProviderKey, uint32]{Key: ProviderKeyString, Row: func(k ProviderKey, v uint32, n DevName) []any {
				return []any{dev(n, k.Ifindex), k.Vlan, SegmentString(v)}
			}}.rows},
		{Name: SegmentDevs, Purpose: "provider segment devices (VLAN devices, flat interfaces) and their segment", Provenance: true,
			Columns: []string{"dev", "segment"},
			rows: keyed[uint32, uint32]{Key: U32KeyString, Row: func(k, v uint32, n DevName) []any {
				return []any{dev(n, k), SegmentString(v)}
			}}.rows},
		{Name: DHCP, Purpose: "DHCP at the port: the answer each port's DHCP client gets", Provenance: true,
			Columns: []string{"tap", "mac", "ip", "server", "lease", "host_name"},
			rows: keyed[uint32, DHCPLease]{Key: U32KeyString, Row: func(k uint32, v DHCPLease, n DevName) []any {
				opts := DHCPOptions(v)
				lease := "infinite"
				if l := opts[optLease]; len(l) == 4 && binary.BigEndian.Uint32(l) != 0xffffffff {
					lease = (time.Duration(binary.BigEndian.Uint32(l)) * time.Second).String()
				}
				prefix := AddrBE32(v.Yiaddr).String()
				if m := opts[optSubnetMask]; len(m) == 4 {
					bits, _ := net.IPMask(m).Size()
					prefix = netip.PrefixFrom(AddrBE32(v.Yiaddr), bits).String()
				}
				return []any{dev(n, k), state.MAC(v.Reply[bootpChaddr : bootpChaddr+6]).String(), prefix,
					AddrBE32(v.Server).String(), lease, string(opts[optHostName])}
			}}.rows},
		{Name: DHCPWork, Purpose: "the DHCP request being answered, per CPU", rows: noRows},
		{Name: Events, Purpose: "decisions for vxdp monitor (a ring buffer: read it with vxdp monitor)", rows: noRows},
		{Name: MonScratch, Purpose: "the frame on entry, per CPU, while a monitored program decides", rows: noRows},
		{Name: Stats, Purpose: "packets and bytes per (program, reason)",
			Columns: []string{"program", "reason", "verdict", "packets", "bytes"},
			rows: func(m *ebpf.Map, _ DevName) ([]Row, error) {
				cs, err := ReadStats(m, false)
				if err != nil {
					return nil, err
				}
				out := make([]Row, 0, len(cs))
				for _, c := range cs {
					out = append(out, Row{Key: c.Prog + "/" + c.Reason, Values: []any{c.Prog, c.Reason, c.Verdict, c.Packets, c.Bytes}})
				}
				return out, nil
			}},
		{Name: IPID, Purpose: "outer IPv4 ID counter per CPU",
			Columns: []string{"cpu", "next_id"},
			rows: func(m *ebpf.Map, _ DevName) ([]Row, error) {
				var ids []uint32
				if err := m.Lookup(uint32(0), &ids); err != nil {
					return nil, err
				}
				out := make([]Row, 0, len(ids))
				for cpu, id := range ids {
					out = append(out, Row{Key: strconv.Itoa(cpu), Values: []any{cpu, uint16(id)}})
				}
				return out, nil
			}},
	}
}

// noRows is the dump of a map that is not read as a table.
func noRows(*ebpf.Map, DevName) ([]Row, error) { return nil, nil }

// Lookup returns the descriptor of the named map.
func Lookup(name string) (Desc, bool) {
	for _, d := range Descs() {
		if d.Name == name {
			return d, true
		}
	}
	return Desc{}, false
}

// Names returns every map name, in dump order.
func Names() []string {
	var out []string
	for _, d := range Descs() {
		out = append(out, d.Name)
	}
	return out
}
