package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/maps"
)

var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// checkKeys fails t for every object key in v that is not snake_case
// (map names of dump and per-host results are data, listed in data).
func checkKeys(t *testing.T, where string, v any, data ...string) {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if !snakeCase.MatchString(k) && !slices.Contains(data, k) {
				t.Errorf("%s: key %q is not snake_case", where, k)
			}
			checkKeys(t, where+"."+k, val, data...)
		}
	case []any:
		for i, e := range x {
			checkKeys(t, fmt.Sprintf("%s[%d]", where, i), e, data...)
		}
	}
}

// TestReadCommandsOutput runs every controller read command in every
// format: JSON parses with numbers as numbers, booleans as booleans and
// snake_case keys; YAML says the same as JSON; -c picks columns by key or
// header; value prints bare values.
func TestReadCommandsOutput(t *testing.T) {
	url := cliServer(t)
	mustVxdp(t, "network", "create", "vxlan100_net", "--vni", "100", "--subnet", "172.16.100.0/24")
	const webID = "7a1c3e55-0b2d-4f6e-8a9c-1d2e3f4a5b6c"
	defaultGroup := control.DefaultGroupID
	mustVxdp(t, "sg", "create", "web", "--id", webID)
	mustVxdp(t, "sg", "rule", "add", "web", "--protocol", "tcp", "--port-range", "22")
	mustVxdp(t, "port", "create", "vm2", "--network", "vxlan100_net", "--mac", "fa:16:3e:cb:98:2c", "--fixed-ip", "172.16.100.19",
		"--security-group", "web", "--allowed-address-pair", "172.16.100.200", "--host", "node3")
	startTestAgent(t, url, "node3", "192.168.248.3")
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(mustVxdp(t, "port", "list"), "ACTIVE"); {
		if time.Now().After(deadline) {
			t.Fatal("port never ACTIVE")
		}
		time.Sleep(20 * time.Millisecond)
	}

	type check struct {
		path string // where in the JSON, e.g. "0.vni"
		want any    // the decoded JSON value
	}
	for _, tc := range []struct {
		args   []string
		checks []check
	}{
		{[]string{"network", "list"}, []check{{"0.vni", float64(100)}, {"0.mtu", float64(1450)}, {"0.subnets.0", "172.16.100.0/24"}}},
		{[]string{"network", "show", "vxlan100_net"}, []check{{"vni", float64(100)}, {"network_type", "vxlan"}}},
		{[]string{"port", "list"}, []check{{"0.port_security_enabled", true}, {"0.binding_host_id", "node3"}, {"0.fixed_ips.0", "172.16.100.19"}}},
		{[]string{"port", "show", "vm2"}, []check{{"allowed_address_pairs.0.ip_address", "172.16.100.200/32"},
			{"allowed_address_pairs.0.mac_address", nil}, {"mac_address", "fa:16:3e:cb:98:2c"}}},
		{[]string{"sg", "list"}, []check{{"0.name", "default"}, {"0.rules.2.remote_group_id", defaultGroup}, {"1.rules.2.port_range_min", float64(22)},
			{"1.rules.2.remote_ip_prefix", nil}, {"1.rules.0.direction", "egress"}, {"1.stateful", true}, {"1.project_id", "admin"}}},
		{[]string{"sg", "show", "web"}, []check{{"rules.2.protocol", "tcp"}, {"rules.2.port_range_max", float64(22)}, {"rules.0.protocol", nil}, {"name", "web"}}},
		{[]string{"sg", "rule", "list", "web"}, []check{{"2.security_group_id", webID}, {"2.port_range_min", float64(22)}}},
		{[]string{"agent", "list"}, []check{{"0.alive", true}, {"0.admin_state_up", true}, {"0.availability_zone", nil}}},
	} {
		name := strings.Join(tc.args, " ")
		out := mustVxdp(t, append(tc.args, "-o", "json")...)
		var doc any
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("%s -o json: %v\n%s", name, err, out)
		}
		checkKeys(t, name, doc)
		for _, ck := range tc.checks {
			if got, ok := lookup(doc, ck.path); !ok || got != ck.want {
				t.Errorf("%s: %s = %#v (found %v), want %#v\n%s", name, ck.path, got, ok, ck.want, out)
			}
		}
		// YAML carries the same document.
		yout := mustVxdp(t, append(tc.args, "-o", "yaml")...)
		var ydoc any
		if err := yaml.Unmarshal([]byte(yout), &ydoc); err != nil {
			t.Fatalf("%s -o yaml: %v\n%s", name, err, yout)
		}
		if a, b := canonical(t, doc), canonical(t, ydoc); a != b {
			t.Errorf("%s: YAML says\n%s\nJSON says\n%s", name, b, a)
		}
	}

	// -c by key or header, in the order given; value prints bare values.
	out := mustVxdp(t, "port", "list", "-c", "name", "-c", "MAC Address", "-c", "status", "-o", "value")
	if got := strings.TrimSpace(out); got != "vm2 fa:16:3e:cb:98:2c ACTIVE" {
		t.Errorf("port list -c name -c 'MAC Address' -c status -o value: %q", out)
	}
	out = mustVxdp(t, "network", "show", "vxlan100_net", "-o", "json", "-c", "vni", "-c", "name")
	if strings.Join(strings.Fields(out), "") != `{"vni":100,"name":"vxlan100_net"}` {
		t.Errorf("network show -c vni -c name -o json: %s", out)
	}
	out = mustVxdp(t, "network", "list", "-c", "ID", "-c", "vni")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 5 || !strings.Contains(lines[1], "| ID ") || !strings.Contains(lines[1], "| VNI |") {
		t.Errorf("network list -c ID -c vni:\n%s", out)
	}
	// Bad output flags are refused before anything is written.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"network", "create", "n2", "--vni", "200", "-o", "xml"}, `-o "xml": use one of table, json, yaml, value`},
		{[]string{"network", "create", "n2", "--vni", "200", "-c", "segmentation"}, `-c "segmentation": no such column of a network; columns: id, name`},
		{[]string{"network", "create", "-o", "xml", "n2", "--vni", "200"}, `-o "xml"`},
	} {
		if _, err := vxdp(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("vxdp %s: %v, want an error with %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
	if out := mustVxdp(t, "network", "list", "-o", "value", "-c", "name"); strings.Contains(out, "n2") {
		t.Errorf("a refused create wrote network n2:\n%s", out)
	}

	// Deletes report what they deleted.
	out = mustVxdp(t, "port", "delete", "vm2", "-o", "json")
	var del map[string]any
	if err := json.Unmarshal([]byte(out), &del); err != nil || del["kind"] != "port" || del["name"] != "vm2" || del["id"] == "" {
		t.Errorf("port delete -o json: %s (%v)", out, err)
	}
	if out := mustVxdp(t, "network", "delete", "vxlan100_net"); out != "" {
		t.Errorf("network delete printed a table: %q", out)
	}
}

// lookup follows a dotted path ("0.rules.1.id") through decoded JSON.
func lookup(doc any, path string) (any, bool) {
	cur := doc
	for _, p := range strings.Split(path, ".") {
		switch x := cur.(type) {
		case map[string]any:
			v, ok := x[p]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			var i int
			if _, err := fmt.Sscan(p, &i); err != nil || i >= len(x) {
				return nil, false
			}
			cur = x[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// canonical is a document as JSON with YAML's integers and JSON's floats
// made the same, and times as text.
func canonical(t *testing.T, v any) string {
	t.Helper()
	var norm func(any) any
	norm = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			out := map[string]any{}
			for k, e := range x {
				out[k] = norm(e)
			}
			return out
		case []any:
			out := make([]any, len(x))
			for i, e := range x {
				out[i] = norm(e)
			}
			return out
		case int:
			return float64(x)
		case uint64:
			return float64(x)
		case fmt.Stringer:
			return x.String()
		}
		return v
	}
	raw, err := json.Marshal(norm(v))
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// TestDumpTyped: dump's JSON has numbers as numbers, on/off as booleans and
// no source as null, and -c keeps the columns a map has.
func TestDumpTyped(t *testing.T) {
	tables := []maps.Table{
		{Map: "fdb", Columns: []string{"vni", "mac", "kind", "tap", "vtep", "source"}, Rows: []maps.Row{
			{Key: "100/fa:16:3e:06:42:34", Values: []any{uint32(100), "fa:16:3e:06:42:34", "remote", "-", "192.168.248.4", "kv nets.x.ports.y@23"}},
			{Key: "100/fa:16:3e:cb:98:2c", Values: []any{uint32(100), "fa:16:3e:cb:98:2c", "local", maps.Dev{Ifindex: 7}, "-", "-"}}}},
		{Map: "ports", Columns: []string{"tap", "vni", "mac", "mtu", "port_security"}, Rows: []maps.Row{
			{Key: "7", Values: []any{maps.Dev{Ifindex: 7}, uint32(100), "fa:16:3e:cb:98:2c", uint16(1450), maps.OnOff(true)}}}},
	}
	var out strings.Builder
	if err := printDump(printer{w: &out, format: formatJSON}, slices.Clone(tables)); err != nil {
		t.Fatal(err)
	}
	var doc map[string][]map[string]any
	if err := json.Unmarshal([]byte(out.String()), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, ck := range []struct {
		got, want any
	}{
		{doc["fdb"][0]["vni"], float64(100)}, {doc["fdb"][1]["source"], nil}, {doc["fdb"][0]["vtep"], "192.168.248.4"},
		{doc["ports"][0]["tap"].(map[string]any)["ifindex"], float64(7)}, {doc["ports"][0]["port_security"], true}, {doc["ports"][0]["mtu"], float64(1450)},
	} {
		if ck.got != ck.want {
			t.Errorf("dump JSON: %#v, want %#v\n%s", ck.got, ck.want, out.String())
		}
	}
	out.Reset()
	if err := printDump(printer{w: &out, format: formatValue, columns: []string{"mac", "vni"}}, slices.Clone(tables)); err != nil {
		t.Fatal(err)
	}
	if want := "fa:16:3e:06:42:34 100\nfa:16:3e:cb:98:2c 100\nfa:16:3e:cb:98:2c 100\n"; out.String() != want {
		t.Errorf("dump -c mac -c vni -o value:\n%s\nwant\n%s", out.String(), want)
	}
	if err := printDump(printer{w: &out, format: formatJSON, columns: []string{"nosuch"}}, slices.Clone(tables)); err == nil {
		t.Error("dump -c nosuch: no error")
	}
}

// TestCLIDocumented: docs/cli.md documents every key of every view, so
// scripts can rely on it, and nothing that is not printed.
func TestCLIDocumented(t *testing.T) {
	raw, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	for kind, keys := range documentedViews() {
		section := docSection(doc, kind)
		if section == "" {
			t.Errorf("docs/cli.md has no section \"### %s\"", kind)
			continue
		}
		var documented []string
		for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9_]+)` \\|").FindAllStringSubmatch(section, -1) {
			documented = append(documented, m[1])
		}
		if !slices.Equal(documented, keys) {
			t.Errorf("docs/cli.md section %q documents keys\n  %v\nthe command prints\n  %v", kind, documented, keys)
		}
	}
}

// docSection is the text of "### kind" up to the next heading.
func docSection(doc, kind string) string {
	_, rest, ok := strings.Cut(doc, "\n### "+kind+"\n")
	if !ok {
		return ""
	}
	if i := strings.Index(rest, "\n#"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// documentedViews are the record kinds docs/cli.md describes, with their keys.
func documentedViews() map[string][]string {
	return map[string][]string{
		networkView.kind: networkView.keys(), portView.kind: portView.keys(), sgView.kind: sgView.keys(),
		ruleView.kind: ruleView.keys(), agentView.kind: agentView.keys(), deletedView.kind: deletedView.keys(),
		migrationView.kind: migrationView.keys(), versionView.kind: versionView.keys(), labView.kind: labView.keys(),
		labNodeView.kind: labNodeView.keys(), statusView.kind: statusView.keys(), programView.kind: programView.keys(),
		mapFillView.kind: mapFillView.keys(), driftView.kind: driftView.keys(), fdbEntryView.kind: fdbEntryView.keys(),
		hostView.kind: hostView.keys(), addressGroupView.kind: addressGroupView.keys(), subnetView.kind: subnetView.keys(),
		"dump ct":             ctColumns(),
		monitorEventView.kind: monitorEventView.keys(),
	}
}

// ctColumns are the columns of `vxdp dump ct` (both tables share them).
func ctColumns() []string {
	d, _ := maps.Lookup(maps.CTTCP)
	return d.Columns
}
