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
		ArgsUsage: "[MAP...]",
		Description: fmt.Sprintf(`Prints the pinned maps of an agent instance (all of them when no MAP is named)
as tables, or as JSON/YAML (-o json: one list of entries per map, numbers as
numbers, ifindexes as numbers) or values. Maps: %v.
Each entry shows the source it was installed from (state file or KV key@revision)
when the agent's applied.json is readable.`, maps.Names()),
		Flags: append([]cli.Flag{
			agentConfigFlag, instanceFlag, bpffsFlag, stateDirFlag, netnsFlag,
		}, outputFlags(nil)...),
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
			defer set.Close()
			opts := maps.DumpOptions{IfName: ifName}
			if why := otherNamespace(set); why != "" {
				// Names looked up here would be other devices' (tap 4(eth0)).
				opts.IfName = nil
				fmt.Fprintf(c.App.ErrWriter, "vxdp: device names not shown: %s; run dump with --netns of the agent\n", why)
			}
			if a, err := dataplane.ReadApplied(loc.stateDir); err == nil {
				opts.Source = func(m, key string) string { return a.Provenance["bpf/"+m+"/"+key] }
			}
			if p.format == formatTable && len(p.columns) == 0 {
				return set.Dump(c.App.Writer, names, opts)
			}
			if p.format != formatTable {
				opts.IfName = nil // typed output carries ifindexes, not display names
			}
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
