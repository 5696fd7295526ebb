package maps

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vxdp/vxdp/state"
)

// DumpOptions control Dump.
type DumpOptions struct {
	JSON bool
	// IfName resolves an ifindex for display; nil prints numbers only.
	IfName func(ifindex uint32) string
	// Source returns the provenance of an entry (map name and the row's
	// canonical key), or "" when unknown; nil omits the column.
	Source func(mapName, key string) string
}

// Table is one dumped map: column names and rows. Key is the canonical key
// of each row, the one provenance is recorded under.
type Table struct {
	Map     string
	Columns []string
	Rows    []Row
}

// Row is one map entry rendered as text.
type Row struct {
	Key    string
	Values []string
}

// KeyString is the canonical key of an entry, as used in dumps and
// provenance records.
func FDBKeyString(k FDBKey) string { return fmt.Sprintf("%d/%s", k.Vni, state.MAC(k.Mac)) }

// VNIAddrKeyString is the canonical key of a vteps or arp entry.
func VNIAddrKeyString(k VNIAddr) string { return fmt.Sprintf("%d/%s", k.Vni, AddrBE32(k.Addr)) }

// PortAddrKeyString is the canonical key of a port_addrs entry.
func PortAddrKeyString(k PortAddrKey) string {
	p := netip.PrefixFrom(AddrBE32(k.Addr), int(k.Prefixlen)-32)
	return fmt.Sprintf("%d/%s", k.Ifindex, p)
}

// Read renders the named map as a table.
func (s *Set) Read(name string, o DumpOptions) (Table, error) {
	ifname := func(i uint32) string {
		if o.IfName != nil {
			if n := o.IfName(i); n != "" {
				return fmt.Sprintf("%d(%s)", i, n)
			}
		}
		return strconv.FormatUint(uint64(i), 10)
	}
	t := Table{Map: name}
	var err error
	switch name {
	case Config:
		t.Columns = []string{"local_ip", "uplink", "vxlan_port", "src_ports", "ttl", "uplink_mac"}
		var c ConfigValue
		if err = s.Map(Config).Lookup(uint32(0), &c); err == nil {
			t.Rows = append(t.Rows, Row{"0", []string{
				AddrBE32(c.LocalIp).String(), ifname(c.UplinkIfindex), strconv.Itoa(int(BE16(c.VxlanPort))),
				fmt.Sprintf("%d-%d", c.SrcPortMin, c.SrcPortMax), strconv.Itoa(int(c.Ttl)), state.MAC(c.UplinkMac).String()}})
		}
	case Meta:
		t.Columns = []string{"revision", "applied_at", "layout"}
		var m MetaValue
		if err = s.Map(Meta).Lookup(uint32(0), &m); err == nil {
			at := "-"
			if m.AppliedAtNs != 0 {
				at = time.Unix(0, int64(m.AppliedAtNs)).UTC().Format(time.RFC3339)
			}
			t.Rows = append(t.Rows, Row{"0", []string{strconv.FormatUint(m.Revision, 10), at, strconv.Itoa(int(m.Layout))}})
		}
	case Networks:
		t.Columns = []string{"vni", "vxlan_dev", "mtu"}
		var m map[uint32]NetInfo
		if m, err = Entries[uint32, NetInfo](s.Map(name)); err == nil {
			for k, v := range m {
				t.Rows = append(t.Rows, Row{strconv.Itoa(int(k)), []string{strconv.Itoa(int(k)), ifname(v.VxlanIfindex), strconv.Itoa(int(v.Mtu))}})
			}
		}
	case Ports:
		t.Columns = []string{"tap", "vni", "mac", "mtu", "port_security"}
		var m map[uint32]PortInfo
		if m, err = Entries[uint32, PortInfo](s.Map(name)); err == nil {
			for k, v := range m {
				t.Rows = append(t.Rows, Row{strconv.Itoa(int(k)), []string{ifname(k), strconv.Itoa(int(v.Vni)), state.MAC(v.Mac).String(),
					strconv.Itoa(int(v.Mtu)), onOff(v.Flags&PortSecurity != 0)}})
			}
		}
	case PortAddrs:
		t.Columns = []string{"tap", "prefix", "mac"}
		var m map[PortAddrKey]MACValue
		if m, err = Entries[PortAddrKey, MACValue](s.Map(name)); err == nil {
			for k, v := range m {
				key := PortAddrKeyString(k)
				_, prefix, _ := strings.Cut(key, "/")
				t.Rows = append(t.Rows, Row{key, []string{ifname(k.Ifindex), prefix, state.MAC(v.Mac).String()}})
			}
		}
	case FDB:
		t.Columns = []string{"vni", "mac", "kind", "target"}
		var m map[FDBKey]FDBEntry
		if m, err = Entries[FDBKey, FDBEntry](s.Map(name)); err == nil {
			for k, v := range m {
				kind, target := "remote", "vtep "+AddrBE32(v.Vtep).String()
				if v.Kind == FDBLocal {
					kind, target = "local", "tap "+ifname(v.Ifindex)
				}
				t.Rows = append(t.Rows, Row{FDBKeyString(k), []string{strconv.Itoa(int(k.Vni)), state.MAC(k.Mac).String(), kind, target}})
			}
		}
	case VTEPs:
		t.Columns = []string{"vni", "vtep"}
		var m map[VNIAddr]uint32
		if m, err = Entries[VNIAddr, uint32](s.Map(name)); err == nil {
			for k := range m {
				t.Rows = append(t.Rows, Row{VNIAddrKeyString(k), []string{strconv.Itoa(int(k.Vni)), AddrBE32(k.Addr).String()}})
			}
		}
	case ARP:
		t.Columns = []string{"vni", "ip", "mac"}
		var m map[VNIAddr]MACValue
		if m, err = Entries[VNIAddr, MACValue](s.Map(name)); err == nil {
			for k, v := range m {
				t.Rows = append(t.Rows, Row{VNIAddrKeyString(k), []string{strconv.Itoa(int(k.Vni)), AddrBE32(k.Addr).String(), state.MAC(v.Mac).String()}})
			}
		}
	case TxPorts:
		t.Columns = []string{"ifindex", "target"}
		var m map[uint32]uint32
		if m, err = Entries[uint32, uint32](s.Map(name)); err == nil {
			for k, v := range m {
				t.Rows = append(t.Rows, Row{strconv.Itoa(int(k)), []string{ifname(k), ifname(v)}})
			}
		}
	case Stats:
		t.Columns = []string{"program", "reason", "packets", "bytes"}
		var cs []Counter
		if cs, err = ReadStats(s.Map(name), false); err == nil {
			for _, c := range cs {
				t.Rows = append(t.Rows, Row{c.Prog + "/" + c.Reason, []string{c.Prog, c.Reason,
					strconv.FormatUint(c.Packets, 10), strconv.FormatUint(c.Bytes, 10)}})
			}
		}
	case IPID:
		t.Columns = []string{"cpu", "next_id"}
		var ids []uint32
		if err = s.Map(name).Lookup(uint32(0), &ids); err == nil {
			for cpu, id := range ids {
				t.Rows = append(t.Rows, Row{strconv.Itoa(cpu), []string{strconv.Itoa(cpu), strconv.Itoa(int(uint16(id)))}})
			}
		}
	default:
		return t, fmt.Errorf("unknown map %q (one of %s)", name, strings.Join(names, ", "))
	}
	if err != nil {
		return t, fmt.Errorf("read map %s: %w", name, err)
	}
	if name != Stats {
		sort.Slice(t.Rows, func(i, j int) bool { return lessNatural(t.Rows[i].Key, t.Rows[j].Key) })
	}
	if o.Source != nil && hasProvenance(name) {
		t.Columns = append(t.Columns, "source")
		for i := range t.Rows {
			src := o.Source(name, t.Rows[i].Key)
			if src == "" {
				src = "-"
			}
			t.Rows[i].Values = append(t.Rows[i].Values, src)
		}
	}
	return t, nil
}

// Dump writes the named maps (all when names is empty) as aligned text
// tables or, with o.JSON, one JSON object per map.
func (s *Set) Dump(w io.Writer, mapNames []string, o DumpOptions) error {
	if len(mapNames) == 0 {
		mapNames = names
	}
	var tables []Table
	for _, n := range mapNames {
		t, err := s.Read(n, o)
		if err != nil {
			return err
		}
		tables = append(tables, t)
	}
	if o.JSON {
		out := map[string][]map[string]string{}
		for _, t := range tables {
			rows := []map[string]string{}
			for _, r := range t.Rows {
				obj := map[string]string{}
				for i, c := range t.Columns {
					obj[c] = r.Values[i]
				}
				rows = append(rows, obj)
			}
			out[t.Map] = rows
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, t := range tables {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		fmt.Fprintf(tw, "# %s (%d entries)\n", t.Map, len(t.Rows))
		fmt.Fprintln(tw, strings.ToUpper(strings.Join(t.Columns, "\t")))
		for _, r := range t.Rows {
			fmt.Fprintln(tw, strings.Join(r.Values, "\t"))
		}
	}
	return tw.Flush()
}

// hasProvenance reports whether entries of a map come from the desired
// state (and so have a source), rather than from the agent or the programs.
func hasProvenance(name string) bool {
	switch name {
	case Config, Meta, Stats, IPID:
		return false
	}
	return true
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// lessNatural orders keys so numeric parts compare as numbers ("9" < "10").
func lessNatural(a, b string) bool {
	as, bs := strings.Split(a, "/"), strings.Split(b, "/")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if as[i] == bs[i] {
			continue
		}
		ai, aerr := strconv.Atoi(as[i])
		bi, berr := strconv.Atoi(bs[i])
		if aerr == nil && berr == nil {
			return ai < bi
		}
		return as[i] < bs[i]
	}
	return len(as) < len(bs)
}
