package main

// The output layer. Every command that prints records goes through
// printList or printOne, so -o table|json|yaml|value and -c COLUMN mean the
// same everywhere, and JSON is typed (numbers, booleans, null) with
// snake_case keys. The shapes are documented in docs/cli.md; a test keeps
// that file and the views below in step.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
)

// Output formats (-o).
const (
	formatTable = "table"
	formatJSON  = "json"
	formatYAML  = "yaml"
	formatValue = "value"
)

var formats = []string{formatTable, formatJSON, formatYAML, formatValue}

// outputFlags are the flags of every command that prints records of v.
// Their values are checked before the command does anything, so a typo in
// -o or -c never follows a change already made (nil v: -c is checked when
// printing, for commands whose columns are known only then).
func outputFlags(v printable) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: formatTable,
			Usage: "output `FORMAT`: table, json, yaml or value (docs/cli.md)",
			Action: func(_ *cli.Context, f string) error {
				if !slices.Contains(formats, f) {
					return fmt.Errorf("-o %q: use one of %s", f, strings.Join(formats, ", "))
				}
				return nil
			}},
		&cli.StringSliceFlag{Name: "column", Aliases: []string{"c"},
			Usage: "print only `COLUMN` (its JSON key or table header; repeatable)",
			Action: func(_ *cli.Context, names []string) error {
				for _, n := range names {
					if v != nil && !v.hasColumn(n) {
						return fmt.Errorf("-c %q: no such column of a %s; columns: %s", n, v.kindName(), strings.Join(v.keys(), ", "))
					}
				}
				return nil
			}},
		&cli.BoolFlag{Name: "json", Hidden: true, Usage: "same as -o json"},
	}
}

// printable is what outputFlags needs of a view.
type printable interface {
	kindName() string
	keys() []string
	hasColumn(name string) bool
}

// column is one field of what a command prints.
type column[T any] struct {
	key    string         // snake_case: the JSON/YAML key, and what -c names
	header string         // the header of a list table
	value  func(T) any    // the typed value for JSON and YAML
	text   func(T) string // table and value text, when it is not the value's own
}

// view is how one kind of record prints.
type view[T any] struct {
	kind    string // what a record is, e.g. "port" (docs/cli.md section)
	columns []column[T]
	// list are the keys a list table shows unless -c says otherwise (nil:
	// all); JSON and YAML always carry every column.
	list []string
}

func (v view[T]) kindName() string { return v.kind }

// hasColumn reports whether -c name selects a column: its key, or its
// header in any case.
func (v view[T]) hasColumn(name string) bool {
	return slices.ContainsFunc(v.columns, func(c column[T]) bool { return c.matches(name) })
}

func (c column[T]) matches(name string) bool {
	return c.key == name || strings.EqualFold(c.header, name)
}

// keys returns the view's column keys, in order.
func (v view[T]) keys() []string {
	out := make([]string, len(v.columns))
	for i, c := range v.columns {
		out[i] = c.key
	}
	return out
}

// object renders item with every column, e.g. to nest it in another record.
func (v view[T]) object(item T) object {
	o := make(object, len(v.columns))
	for i, c := range v.columns {
		o[i] = pair{c.key, c.value(item)}
	}
	return o
}

// objects renders items with every column; never nil, so JSON shows [].
func (v view[T]) objects(items []T) []object {
	out := make([]object, len(items))
	for i, it := range items {
		out[i] = v.object(it)
	}
	return out
}

// object is a record as ordered pairs: JSON and YAML keep the column order.
type object []pair

type pair struct {
	key   string
	value any
}

// MarshalJSON writes the pairs in order.
func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, p := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(p.key)
		v, err := json.Marshal(p.value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.key, err)
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// printer is where and how a command prints.
type printer struct {
	w       io.Writer
	format  string
	columns []string // -c, in the order given
}

// printerOf reads -o, -c and the hidden --json.
func printerOf(c *cli.Context) (printer, error) {
	p := printer{w: c.App.Writer, format: c.String("output"), columns: c.StringSlice("column")}
	if c.Bool("json") {
		p.format = formatJSON
	}
	if !slices.Contains(formats, p.format) {
		return p, fmt.Errorf("-o %q: use one of %s", p.format, strings.Join(formats, ", "))
	}
	return p, nil
}

// rendered are records ready for any format: the chosen columns and each
// record's typed values and texts.
type rendered struct {
	keys, headers []string
	values        [][]any
	texts         [][]string
}

// render picks the columns (-c, else the view's list columns for a list in
// table or value format, else all) and renders items with them.
func render[T any](p printer, v view[T], items []T, list bool) (rendered, error) {
	var cols []column[T]
	switch {
	case len(p.columns) > 0:
		for _, name := range p.columns {
			i := slices.IndexFunc(v.columns, func(c column[T]) bool { return c.matches(name) })
			if i < 0 {
				return rendered{}, fmt.Errorf("-c %q: no such column of a %s; columns: %s", name, v.kind, strings.Join(v.keys(), ", "))
			}
			cols = append(cols, v.columns[i])
		}
	case list && v.list != nil && (p.format == formatTable || p.format == formatValue):
		for _, k := range v.list {
			cols = append(cols, v.columns[slices.IndexFunc(v.columns, func(c column[T]) bool { return c.key == k })])
		}
	default:
		cols = v.columns
	}
	r := rendered{}
	for _, c := range cols {
		r.keys = append(r.keys, c.key)
		r.headers = append(r.headers, c.header)
	}
	for _, it := range items {
		vals, texts := make([]any, len(cols)), make([]string, len(cols))
		for i, c := range cols {
			vals[i] = c.value(it)
			if c.text != nil {
				texts[i] = c.text(it)
			} else {
				texts[i] = cellText(vals[i])
			}
		}
		r.values = append(r.values, vals)
		r.texts = append(r.texts, texts)
	}
	return r, nil
}

// printList prints records: a table with a row each, a JSON/YAML list of
// objects, or one line of values each.
func printList[T any](c *cli.Context, v view[T], items []T) error {
	p, err := printerOf(c)
	if err != nil {
		return err
	}
	return printRecords(p, v, items)
}

// printOne prints one record: a Field/Value table, a JSON/YAML object, or
// one line per value.
func printOne[T any](c *cli.Context, v view[T], item T) error {
	p, err := printerOf(c)
	if err != nil {
		return err
	}
	return printRecord(p, v, item)
}

func printRecords[T any](p printer, v view[T], items []T) error {
	r, err := render(p, v, items, true)
	if err != nil {
		return err
	}
	switch p.format {
	case formatJSON, formatYAML:
		return p.encode(r.objects())
	case formatValue:
		for _, row := range r.texts {
			if _, err := fmt.Fprintln(p.w, strings.Join(valueTexts(row), " ")); err != nil {
				return err
			}
		}
		return nil
	}
	return writeTable(p.w, r.headers, r.texts)
}

func printRecord[T any](p printer, v view[T], item T) error {
	r, err := render(p, v, []T{item}, false)
	if err != nil {
		return err
	}
	switch p.format {
	case formatJSON, formatYAML:
		return p.encode(r.objects()[0])
	case formatValue:
		_, err := fmt.Fprintln(p.w, strings.Join(valueTexts(r.texts[0]), "\n"))
		return err
	}
	rows := make([][]string, len(r.keys))
	for i, k := range r.keys {
		rows[i] = []string{k, r.texts[0][i]}
	}
	return writeTable(p.w, []string{"Field", "Value"}, rows)
}

func (r rendered) objects() []object {
	out := make([]object, len(r.values))
	for i, vals := range r.values {
		o := make(object, len(r.keys))
		for j, k := range r.keys {
			o[j] = pair{k, vals[j]}
		}
		out[i] = o
	}
	return out
}

// encode writes v as indented JSON or as YAML.
func (p printer) encode(v any) error {
	if p.format == formatYAML {
		return writeYAML(p.w, v)
	}
	return printJSON(p.w, v)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeYAML writes v as block YAML with JSON's typing: JSON is YAML, so it
// is parsed back as a YAML tree (keeping key order) and re-encoded with
// the default styles.
func writeYAML(w io.Writer, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("yaml: %w", err)
	}
	var plain func(n *yaml.Node)
	plain = func(n *yaml.Node) {
		n.Style = 0
		for _, c := range n.Content {
			plain(c)
		}
	}
	plain(&doc)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return err
	}
	return enc.Close()
}

// cellText is the table text of a typed value.
func cellText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case time.Time:
		if x.IsZero() {
			return ""
		}
		return x.UTC().Format(time.RFC3339)
	case []string:
		return strings.Join(x, "\n")
	case object:
		parts := make([]string, 0, len(x))
		for _, p := range x {
			if t := cellText(p.value); t != "" {
				parts = append(parts, p.key+"="+t)
			}
		}
		return strings.Join(parts, ",")
	case []object:
		lines := make([]string, len(x))
		for i, o := range x {
			lines[i] = cellText(o)
		}
		return strings.Join(lines, "\n")
	case fmt.Stringer:
		return x.String()
	}
	return fmt.Sprint(v)
}

// valueTexts puts multi-line cells on one line for -o value.
func valueTexts(texts []string) []string {
	out := make([]string, len(texts))
	for i, t := range texts {
		out[i] = strings.ReplaceAll(t, "\n", ",")
	}
	return out
}

// writeTable prints rows the way the openstack client does:
//
//	+------+------+
//	| ID   | Name |
//	+------+------+
//	| ...  | ...  |
//	+------+------+
func writeTable(w io.Writer, header []string, rows [][]string) error {
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = len(h)
	}
	for _, r := range rows {
		for i, cell := range r {
			for _, line := range strings.Split(cell, "\n") {
				widths[i] = max(widths[i], len([]rune(line)))
			}
		}
	}
	var b strings.Builder
	sep := func() {
		b.WriteString("+")
		for _, wd := range widths {
			b.WriteString(strings.Repeat("-", wd+2) + "+")
		}
		b.WriteString("\n")
	}
	row := func(cells []string) {
		lines := 1
		for _, c := range cells {
			lines = max(lines, strings.Count(c, "\n")+1)
		}
		for l := range lines {
			b.WriteString("|")
			for i, c := range cells {
				parts := strings.Split(c, "\n")
				s := ""
				if l < len(parts) {
					s = parts[l]
				}
				b.WriteString(" " + s + strings.Repeat(" ", widths[i]-len([]rune(s))) + " |")
			}
			b.WriteString("\n")
		}
	}
	sep()
	row(header)
	sep()
	for _, r := range rows {
		row(r)
	}
	if len(rows) > 0 {
		sep()
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// deleted is what a delete command reports.
type deleted struct {
	Kind, ID, Name string
}

var deletedView = view[deleted]{
	kind: "deleted",
	columns: []column[deleted]{
		{key: "kind", header: "Kind", value: func(d deleted) any { return d.Kind }},
		{key: "id", header: "ID", value: func(d deleted) any { return d.ID }},
		{key: "name", header: "Name", value: func(d deleted) any { return stringOrNil(d.Name) }},
	},
}

// printDeleted reports a deletion: silently in a table (as the openstack
// client), as a record in the other formats or with -c.
func printDeleted(c *cli.Context, d deleted) error {
	p, err := printerOf(c)
	if err != nil || (p.format == formatTable && len(p.columns) == 0) {
		return err
	}
	return printRecord(p, deletedView, d)
}

// timeOrNil makes an unset time null in JSON.
func timeOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

// stringOrNil makes an unset string null in JSON.
func stringOrNil(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// addrOrNil makes an unset address null in JSON.
func addrOrNil(a netip.Addr) any {
	if !a.IsValid() {
		return nil
	}
	return a.String()
}
