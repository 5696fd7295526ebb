package main

// `vxdp fdb show`: the BPF forwarding database in `bridge fdb show`'s
// lines, so the two diff line by line (docs/operations.md).

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
	"github.com/vishvananda/netlink"

	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/maps"
	"github.com/vxdp/vxdp/state"
)

func fdbCommand() *cli.Command {
	return &cli.Command{
		Name:  "fdb",
		Usage: "the BPF forwarding database of an agent instance",
		Subcommands: []*cli.Command{{
			Name:  "show",
			Usage: "print the BPF FDB in `bridge fdb show`'s line format",
			Description: `Prints what the BPF programs forward by, one entry a line as "bridge fdb show"
prints the kernel's: the l2population entries of each vxlan-<VNI> device
("00:00:00:00:00:00 dev vxlan-100 dst 192.168.248.1 self permanent" for each
VTEP of the flood list, "MAC dev vxlan-100 dst VTEP self permanent" for each
remote port) and each local port ("MAC dev TAP master BRIDGE", as the bridge
learns it). With --dev only that device's entries, without "dev DEV", as
"bridge fdb show dev DEV" prints them. The BPF and the kernel l2pop entries
of a device diff line by line (docs/operations.md):

  diff <(bridge fdb show dev vxlan-100 | grep ' self ' | sort) <(vxdp fdb show --dev vxlan-100)

Device names are those of the agent's network namespace: run it there (--netns).
-o json|yaml prints the entries as objects, with the VNI and the KV key@revision
each was installed from.`,
			Flags: slices.Concat([]cli.Flag{
				&cli.StringFlag{Name: "dev", Usage: "only the entries of `DEV` (a vxlan-<VNI> device or a tap)"},
			}, agentFlags(), outputFlags(fdbEntryView)),
			Action: runFDBShow,
		}},
	}
}

// fdbEntry is one BPF FDB entry as `bridge fdb show` would print it.
type fdbEntry struct {
	MAC    state.MAC
	Dev    string
	Dst    netip.Addr // remote VTEP; invalid for a local port
	Master string     // a local port's bridge
	VNI    uint32
	Source string
}

func (e fdbEntry) remote() bool { return e.Dst.IsValid() }

// line is the entry in `bridge fdb show`'s format, without "dev DEV"
// when listing one device.
func (e fdbEntry) line(withDev bool) string {
	s := e.MAC.String()
	if withDev {
		s += " dev " + e.Dev
	}
	if e.remote() {
		return s + " dst " + e.Dst.String() + " self permanent"
	}
	if e.Master != "" {
		s += " master " + e.Master
	}
	return s
}

// fdbEntryView is `vxdp fdb show -o json` (docs/cli.md): `bridge -j fdb
// show`'s keys, plus the VNI and the source.
var fdbEntryView = view[fdbEntry]{
	kind: "fdb entry",
	columns: []column[fdbEntry]{
		{key: "mac", header: "MAC", value: func(e fdbEntry) any { return e.MAC.String() }},
		{key: "ifname", header: "Dev", value: func(e fdbEntry) any { return e.Dev }},
		{key: "dst", header: "Dst", value: func(e fdbEntry) any {
			if !e.remote() {
				return nil
			}
			return e.Dst.String()
		}},
		{key: "master", header: "Master", value: func(e fdbEntry) any { return stringOrNil(e.Master) }},
		{key: "flags", header: "Flags", value: func(e fdbEntry) any {
			if e.remote() {
				return []string{"self"}
			}
			return []string{}
		}},
		{key: "state", header: "State", value: func(e fdbEntry) any {
			if e.remote() {
				return "permanent"
			}
			return nil
		}},
		{key: "vni", header: "VNI", value: func(e fdbEntry) any { return e.VNI }},
		{key: "source", header: "Source", value: func(e fdbEntry) any { return stringOrNil(e.Source) }},
	},
}

func runFDBShow(c *cli.Context) error {
	if _, err := positional(c); err != nil {
		return err
	}
	p, loc, err := inspectAgent(c)
	if err != nil {
		return err
	}
	dev := c.String("dev")
	if dev != "" {
		if _, err := net.InterfaceByName(dev); err != nil {
			return fmt.Errorf("--dev: cannot find device %q here (is it in the agent's network namespace? --netns)", dev)
		}
	}
	set, err := loc.openMaps()
	if err != nil {
		return err
	}
	defer set.Close()
	if why := otherNamespace(set); why != "" {
		return fmt.Errorf("device names would be wrong: %s; run fdb show with --netns of the agent", why)
	}
	source := func(string, string) string { return "" }
	if a, err := dataplane.ReadApplied(loc.stateDir); err == nil {
		source = func(m, key string) string { return a.Provenance["bpf/"+m+"/"+key] }
	}
	all, err := readFDB(set, source)
	if err != nil {
		return err
	}
	entries := slices.DeleteFunc(all, func(e fdbEntry) bool { return dev != "" && e.Dev != dev })
	if p.format != formatTable || len(p.columns) > 0 {
		return printRecords(p, fdbEntryView, entries)
	}
	for _, e := range entries {
		if _, err := fmt.Fprintln(p.w, e.line(dev == "")); err != nil {
			return err
		}
	}
	return nil
}

// readFDB reads the BPF FDB: the flood list (vteps) and the remote ports
// of each network on its vxlan device, the local ports on their taps,
// sorted as `sort` sorts the lines of one device.
func readFDB(set *maps.Set, source func(mapName, key string) string) ([]fdbEntry, error) {
	nets, err := maps.Entries[uint32, maps.NetInfo](set.Map(maps.Networks))
	if err != nil {
		return nil, fmt.Errorf("read networks: %w", err)
	}
	vxlanDev := func(vni uint32) string {
		if n, ok := nets[vni]; ok {
			if name := ifName(n.DevIfindex); name != "" {
				return name
			}
		}
		return state.VXLANName(vni)
	}
	var out []fdbEntry
	vteps, err := maps.Entries[maps.VNIAddr, uint32](set.Map(maps.VTEPs))
	if err != nil {
		return nil, fmt.Errorf("read vteps: %w", err)
	}
	for k := range vteps {
		out = append(out, fdbEntry{Dev: vxlanDev(k.Vni), Dst: maps.AddrBE32(k.Addr), VNI: k.Vni,
			Source: source(maps.VTEPs, maps.VNIAddrKeyString(k))})
	}
	vteps6, err := maps.Entries[maps.VNIAddr6, uint32](set.Map(maps.VTEPs6))
	if err != nil {
		return nil, fmt.Errorf("read vteps6: %w", err)
	}
	for k := range vteps6 {
		out = append(out, fdbEntry{Dev: vxlanDev(k.Vni), Dst: netip.AddrFrom16(k.Addr), VNI: k.Vni,
			Source: source(maps.VTEPs6, maps.VNIAddr6KeyString(k))})
	}
	fdb, err := maps.Entries[maps.FDBKey, maps.FDBEntry](set.Map(maps.FDB))
	if err != nil {
		return nil, fmt.Errorf("read fdb: %w", err)
	}
	for k, v := range fdb {
		e := fdbEntry{MAC: state.MAC(k.Mac), VNI: k.Vni, Source: source(maps.FDB, maps.FDBKeyString(k))}
		if v.Kind == maps.FDBLocal {
			e.Dev = cmp.Or(ifName(v.Ifindex), fmt.Sprintf("ifindex%d", v.Ifindex))
			if l, err := netlink.LinkByIndex(int(v.Ifindex)); err == nil && l.Attrs().MasterIndex != 0 {
				e.Master = ifName(uint32(l.Attrs().MasterIndex))
			}
		} else if v.Kind == maps.FDBRemote {
			e.Dev, e.Dst = vxlanDev(k.Vni), maps.FDBVTEP(v)
		} else {
			continue // provider networks: no VTEP, no kernel FDB entry
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b fdbEntry) int {
		return cmp.Or(strings.Compare(a.Dev, b.Dev), strings.Compare(a.line(false), b.line(false)))
	})
	return out, nil
}
