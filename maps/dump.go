package maps

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// DumpOptions control Dump.
type DumpOptions struct {
	JSON bool
	// IfName resolves an ifindex for display; nil prints numbers only.
	IfName DevName
	// Source returns the provenance of an entry (map name and the row's
	// canonical key), or "" when unknown; nil omits the column.
	Source func(mapName, key string) string
}

// Table is one dumped map: column names and rows.
type Table struct {
	Map     string
	Columns []string
	Rows    []Row
}

// Read renders the named map as a table.
func (s *Set) Read(name string, o DumpOptions) (Table, error) {
	d, ok := Lookup(name)
	if !ok {
		return Table{}, fmt.Errorf("unknown map %q (one of %s)", name, strings.Join(Names(), ", "))
	}
	rows, err := d.rows(s.Map(name), o.IfName)
	if err != nil {
		return Table{}, fmt.Errorf("read map %s: %w", name, err)
	}
	t := Table{Map: name, Columns: d.Columns, Rows: rows}
	if name != Stats {
		sort.Slice(t.Rows, func(i, j int) bool { return lessNatural(t.Rows[i].Key, t.Rows[j].Key) })
	}
	if o.Source != nil && d.Provenance {
		t.Columns = append(append([]string(nil), t.Columns...), "source")
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
		mapNames = Names()
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
		out := map[string][]map[string]any{}
		for _, t := range tables {
			rows := []map[string]any{}
			for _, r := range t.Rows {
				obj := map[string]any{}
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
			for i, v := range r.Values {
				if i > 0 {
					fmt.Fprint(tw, "\t")
				}
				fmt.Fprint(tw, v)
			}
			fmt.Fprintln(tw)
		}
	}
	return tw.Flush()
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
