package main

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/maps"
)

func dumpCommand() *cli.Command {
	return &cli.Command{
		Name:      "dump",
		Usage:     "print the BPF maps of an agent instance, bpftool-style",
		ArgsUsage: "[MAP...] | ct | policy TAP",
		Description: fmt.Sprintf(`Prints the pinned maps of an agent instance (all of them when no MAP is named)
as tables, or as JSON/YAML (-o json: one list of entries per map, numbers as
numbers, ifindexes as numbers) or values. Maps: %v.
Each entry shows the source it was installed from (state file or KV key@revision)
when the agent's applied.json is readable.`, maps.Names()),
		Flags: append(agentFlags(), outputFlags(nil)...),
		Action: func(c *cli.Context) error {
			names, err := positional(c)
			if err != nil {
				return err
			}
			p, loc, err := inspectAgent(c)
			if err != nil {
				return err
			}
			set, err := loc.openMaps()
			if err != nil {
				return err
			}
			state := loc.stateDir
			defer set.Close()
			opts := maps.DumpOptions{IfName: ifName}
			if why := otherNamespace(set); why != "" {
				// Names looked up here would be other devices' (tap 4(eth0)).
				opts.IfName = nil
				fmt.Fprintf(c.App.ErrWriter, "vxdp: device names not shown: %s; run dump with --netns of the agent\n", why)
			}
			if a, err := dataplane.ReadApplied(state); err == nil {
				opts.Source = func(m, key string) string { return a.Provenance["bpf/"+m+"/"+key] }
			}
			if p.format == formatTable && len(p.columns) == 0 && (len(names) == 0 || names[0] != "policy") {
				return set.Dump(c.App.Writer, expandAliases(names), opts)
			}
			if p.format != formatTable {
				opts.IfName = nil // typed output carries ifindexes, not display names
			}
			if len(names) > 0 && names[0] == "policy" {
				return dumpPolicy(c, p, set, state, names[1:])
			}
			names = expandAliases(names)
			if len(names) == 0 {
				names = maps.Names()
			}
			tables := make([]maps.Table, len(names))
			for i, n := range names {
				if tables[i], err = set.Read(n, opts); err != nil {
					return err
				}
			}
			return printDump(p, tables)
		},
	}
}

// expandAliases turns "ct" into both tracked-flow tables.
func expandAliases(names []string) []string {
	var out []string
	for _, n := range names {
		if n == "ct" {
			out = append(out, maps.CTTCP, maps.CTOther)
			continue
		}
		out = append(out, n)
	}
	return out
}

// dumpPolicy prints what a port's security groups allow: its policy,
// generation and every rule behind it, with the record each came from.
func dumpPolicy(c *cli.Context, p printer, set *maps.Set, state string, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("dump policy TAP: name one tap (or port id)")
	}
	name := tapOf(args[0])
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return fmt.Errorf("dump policy: no device %s here (run with --netns of the agent): %w", name, err)
	}
	var port maps.PortInfo
	if err := set.Map(maps.Ports).Lookup(uint32(ifi.Index), &port); err != nil {
		return fmt.Errorf("dump policy: %s is not a port of this agent: %w", name, err)
	}
	a, err := dataplane.ReadApplied(state)
	if err != nil {
		return fmt.Errorf("dump policy: read the agent's applied state: %w", err)
	}
	enforced := port.Flags&maps.PortSG != 0
	pol := a.Policies[fmt.Sprint(port.Policy)]
	fmt.Fprintf(c.App.ErrWriter, "# %s: security groups %s, policy %d, generation %d, stateless %v, groups %v\n",
		name, map[bool]string{true: "enforced", false: "not enforced"}[enforced], port.Policy, port.Generation, pol.Stateless, pol.Groups)
	if pol.Error != "" {
		fmt.Fprintf(c.App.ErrWriter, "# the groups cannot be compiled, the port allows only what is always allowed: %s\n", pol.Error)
	}
	t := maps.Table{Map: "policy", Columns: []string{"direction", "ethertype", "match", "remote", "group", "rule", "source"}}
	if enforced {
		for _, r := range pol.Rules {
			t.Rows = append(t.Rows, maps.Row{Key: r.Group + "/" + r.ID, Values: []any{r.Direction, r.EtherType, r.Match, r.Remote, r.Group, r.ID, r.Source}})
		}
	}
	return printDump(p, []maps.Table{t})
}

// agentFlags find an agent's pinned maps and state: its instance (host),
// bpffs and state dir, from flags or its ini files (see locateAgent).
func agentFlags() []cli.Flag {
	return []cli.Flag{agentConfigFlag, instanceFlag, bpffsFlag, stateDirFlag, netnsFlag}
}

// openAgentMaps opens the pinned maps of the agent the flags name, and
// returns its state directory.
func openAgentMaps(c *cli.Context) (*maps.Set, string, error) {
	loc, err := locateAgent(c)
	if err != nil {
		return nil, "", err
	}
	set, err := loc.openMaps()
	return set, loc.stateDir, err
}

// printDump prints map tables with -c or in a typed format: JSON and YAML
// are one list of entries per map, numbers as numbers, "on"/"off" as
// booleans and "-" (no source) as null.
func printDump(p printer, tables []maps.Table) error {
	if len(p.columns) > 0 {
		known := map[string]bool{}
		for i, t := range tables {
			for _, col := range t.Columns {
				known[col] = true
			}
			tables[i] = selectColumns(t, p.columns)
		}
		for _, col := range p.columns {
			if !known[col] {
				return fmt.Errorf("-c %q: no such column in the maps dumped", col)
			}
		}
	}
	switch p.format {
	case formatJSON, formatYAML:
		out := make(object, len(tables))
		for i, t := range tables {
			rows := make([]object, len(t.Rows))
			for j, r := range t.Rows {
				rows[j] = make(object, len(t.Columns))
				for k, col := range t.Columns {
					rows[j][k] = pair{col, typedCell(r.Values[k])}
				}
			}
			out[i] = pair{t.Map, rows}
		}
		return p.encode(out)
	case formatValue:
		for _, t := range tables {
			for _, r := range t.Rows {
				if _, err := fmt.Fprintln(p.w, joinCells(r.Values, " ")); err != nil {
					return err
				}
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	for i, t := range tables {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		fmt.Fprintf(tw, "# %s (%d entries)\n%s\n", t.Map, len(t.Rows), strings.ToUpper(strings.Join(t.Columns, "\t")))
		for _, r := range t.Rows {
			fmt.Fprintln(tw, joinCells(r.Values, "\t"))
		}
	}
	return tw.Flush()
}

// selectColumns keeps the columns of t named in cols (those it has), in
// the order of cols.
func selectColumns(t maps.Table, cols []string) maps.Table {
	var idx []int
	out := maps.Table{Map: t.Map}
	for _, col := range cols {
		if i := slices.Index(t.Columns, col); i >= 0 {
			idx = append(idx, i)
			out.Columns = append(out.Columns, col)
		}
	}
	for _, r := range t.Rows {
		vals := make([]any, len(idx))
		for j, i := range idx {
			vals[j] = r.Values[i]
		}
		out.Rows = append(out.Rows, maps.Row{Key: r.Key, Values: vals})
	}
	return out
}

// joinCells prints a row's values as text.
func joinCells(vals []any, sep string) string {
	s := make([]string, len(vals))
	for i, v := range vals {
		s[i] = fmt.Sprint(v)
	}
	return strings.Join(s, sep)
}

// typedCell is the JSON value of a dumped cell: maps gives numbers and
// flags their types already; "-" (nothing, e.g. no source) becomes null.
func typedCell(v any) any {
	switch c := v.(type) {
	case string:
		if c == "-" {
			return nil
		}
	case maps.OnOff:
		return bool(c)
	}
	return v
}

// otherNamespace says why the ifindexes in the maps belong to another
// network namespace than this process's: the agent's uplink (the config
// map's ifindex) does not hold its VTEP address (local_ip) here. It is ""
// when they match, or when there is nothing to compare yet.
func otherNamespace(set *maps.Set) string {
	t, err := set.Read(maps.Config, maps.DumpOptions{})
	if err != nil || len(t.Rows) == 0 {
		return ""
	}
	row := map[string]any{}
	for i, col := range t.Columns {
		row[col] = t.Rows[0].Values[i]
	}
	ip, err := netip.ParseAddr(fmt.Sprint(row["local_ip"]))
	dev, ok := row["uplink"].(maps.Dev)
	index := int(dev.Ifindex)
	if err != nil || !ok || index == 0 {
		return ""
	}
	if i, err := net.InterfaceByIndex(index); err == nil {
		if addrs, err := i.Addrs(); err == nil {
			for _, a := range addrs {
				if p, ok := a.(*net.IPNet); ok && p.IP.Equal(ip.AsSlice()) {
					return ""
				}
			}
		}
	}
	return fmt.Sprintf("interface %d here does not hold the agent's local_ip %s", index, ip)
}

func ifName(ifindex uint32) string {
	if i, err := net.InterfaceByIndex(int(ifindex)); err == nil {
		return i.Name
	}
	return ""
}
