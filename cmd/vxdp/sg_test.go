package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vxdp/vxdp/control"
)

// jsonOf runs a command with -o json and decodes its output.
func jsonOf(t *testing.T, args ...string) any {
	t.Helper()
	out := mustVxdp(t, append(args, "-o", "json")...)
	var doc any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("vxdp %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
	return doc
}

// absent is what expect wants at a path that must not exist (past the
// end of a list).
type absent struct{}

// expect checks values at paths of doc (see lookup).
func expect(t *testing.T, what string, doc any, want map[string]any) {
	t.Helper()
	for path, w := range want {
		got, ok := lookup(doc, path)
		if _, none := w.(absent); none && ok || !none && (!ok || got != w) {
			t.Errorf("%s: %s = %#v (found %v), want %#v", what, path, got, ok, w)
		}
	}
}

// The security group commands in the openstack client's words: projects,
// the rule flags (ICMP type 0, --ingress/--egress, address groups), port
// set/unset, and refusals that write nothing.
func TestSecurityGroupCommands(t *testing.T) {
	cliServer(t)
	mustVxdp(t, "network", "create", "net", "--vni", "100", "--subnet", "172.16.100.0/24")
	vm := jsonOf(t, "port", "create", "vm", "--network", "net", "--fixed-ip", "172.16.100.5")
	expect(t, "port without groups", vm, map[string]any{"security_groups.0": control.DefaultGroupID, "project_id": "admin"})

	web := jsonOf(t, "sg", "create", "web", "--stateless")
	expect(t, "sg create --stateless", web, map[string]any{"stateful": false, "rules.0.direction": "egress", "rules.1.ethertype": "IPv6", "project_id": "admin"})
	expect(t, "sg create --project demo", jsonOf(t, "sg", "create", "web", "--project", "demo"), map[string]any{"project_id": "demo", "stateful": true})
	webID, _ := lookup(web, "id")

	echo := jsonOf(t, "sg", "rule", "add", "web", "--project", "admin", "--egress", "--protocol", "icmp", "--icmp-type", "0")
	expect(t, "echo reply rule", echo, map[string]any{"direction": "egress", "protocol": "icmp", "port_range_min": float64(0),
		"port_range_max": nil, "security_group_id": webID})
	id := strings.TrimSpace(mustVxdp(t, "sg", "rule", "add", "web", "--project", "admin", "--ingress", "--protocol", "tcp", "--dst-port", "22:23", "-c", "id", "-o", "value"))
	if !control.IsUUID(id) {
		t.Errorf("sg rule add -c id -o value printed %q, want the rule's id", id)
	}
	expect(t, "sg rule list", jsonOf(t, "sg", "rule", "list", webID.(string)), map[string]any{"3.id": id, "3.port_range_min": float64(22), "3.port_range_max": float64(23)})
	expect(t, "address group", jsonOf(t, "address-group", "create", "admins", "--address", "192.0.2.0/24", "--address", "198.51.100.1"),
		map[string]any{"addresses.0": "192.0.2.0/24", "addresses.1": "198.51.100.1/32"})
	mustVxdp(t, "address-group", "set", "admins", "--address", "203.0.113.0/24")
	expect(t, "address-group unset", jsonOf(t, "address-group", "unset", "admins", "--address", "192.0.2.0/24"),
		map[string]any{"addresses.0": "198.51.100.1/32", "addresses.1": "203.0.113.0/24", "addresses.2": absent{}})
	expect(t, "rule with an address group", jsonOf(t, "sg", "rule", "add", webID.(string), "--protocol", "udp", "--remote-address-group", "admins"),
		map[string]any{"direction": "ingress", "remote_address_group_id": lookupString(t, "address-group", "show", "admins")})

	expect(t, "port set", jsonOf(t, "port", "set", "vm", "--no-security-group", "--security-group", webID.(string),
		"--allowed-address", "ip-address=10.0.0.0/24,mac-address=fa:16:3e:00:00:aa"), map[string]any{
		"security_groups.0": webID, "security_groups.1": absent{}, "allowed_address_pairs.0.ip_address": "10.0.0.0/24",
		"allowed_address_pairs.0.mac_address": "fa:16:3e:00:00:aa"})
	expect(t, "port unset", jsonOf(t, "port", "unset", "vm", "--allowed-address", "ip-address=10.0.0.0/24"),
		map[string]any{"allowed_address_pairs.0": absent{}, "security_groups.0": webID})

	// Host bits are masked with a notice on stderr, as Neutron does.
	out := mustVxdp(t, "sg", "rule", "add", webID.(string), "--remote-ip", "10.0.0.1/8", "-c", "remote_ip_prefix", "-o", "value")
	if want := "note: --remote-ip 10.0.0.1/8 has host bits set; the rule is for 10.0.0.0/8 (as Neutron normalizes it)\n10.0.0.0/8\n"; out != want {
		t.Errorf("sg rule add --remote-ip 10.0.0.1/8 printed %q, want %q", out, want)
	}

	before := mustVxdp(t, "sg", "list", "-o", "json") + mustVxdp(t, "port", "list", "-o", "json") + mustVxdp(t, "address-group", "list", "-o", "json")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"sg", "show", "web"}, `security group name "web" is used in projects admin, demo: give --project or the id`},
		{[]string{"sg", "create", "web"}, `security group "web" of project admin`},
		{[]string{"sg", "create", "x", "--stateful", "--stateless"}, "give one"},
		{[]string{"sg", "rule", "add", webID.(string), "--ingress", "--egress"}, "disagree"},
		{[]string{"sg", "rule", "add", webID.(string), "--egress", "--direction", "ingress"}, "disagree"},
		{[]string{"sg", "rule", "add", webID.(string), "--protocol", "icmp", "--icmp-code", "1"}, "--icmp-code 1 without --icmp-type"},
		{[]string{"sg", "rule", "add", webID.(string), "--protocol", "tcp", "--icmp-type", "8"}, "are for --protocol icmp"},
		{[]string{"sg", "rule", "add", webID.(string), "--protocol", "icmp", "--icmp-type", "8", "--port-range", "8"}, "give one"},
		{[]string{"sg", "rule", "add", webID.(string), "--protocol", "icmp", "--icmp-type", "256"}, "icmp type 256 (port_range_min): want 0-255"},
		{[]string{"sg", "rule", "add", webID.(string), "--ethertype", "IPv4", "--remote-ip", "2001:db8::/32"}, "is not an IPv4 prefix"},
		{[]string{"sg", "rule", "add", webID.(string), "--remote-group", "nope"}, `security group "nope" in project admin: not found`},
		{[]string{"port", "set", "vm", "--enable-port-security", "--disable-port-security"}, "give one"},
		{[]string{"port", "set", "vm", "--disable-port-security"}, "port security cannot be off while the port has security groups"},
		{[]string{"port", "set", "vm", "--allowed-address", "ip-address=10.0.0.1/8"}, "has host bits set"},
		{[]string{"port", "unset", "vm"}, "nothing to unset"},
		{[]string{"port", "unset", "vm", "--security-group", control.DefaultGroupID}, "is not in security group default"},
		{[]string{"address-group", "create", "bad", "--address", "10.0.0.1/8"}, "has host bits set: write 10.0.0.0/8"},
		{[]string{"address-group", "unset", "admins", "--address", "192.0.2.0/24"}, "has no address 192.0.2.0/24"},
		{[]string{"address-group", "delete", "admins"}, "delete that rule first"},
		{[]string{"sg", "delete", webID.(string)}, "is used by port"},
	} {
		if out, err := vxdp(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("vxdp %s: %v\n%s\nwant an error with %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
	}
	after := mustVxdp(t, "sg", "list", "-o", "json") + mustVxdp(t, "port", "list", "-o", "json") + mustVxdp(t, "address-group", "list", "-o", "json")
	if after != before {
		t.Error("refused commands changed groups, ports or address groups")
	}
	if doc := jsonOf(t, "sg", "list", "--project", "demo"); len(doc.([]any)) != 2 {
		t.Errorf("sg list --project demo: %v, want demo's default and web", doc)
	}
}

// lookupString is the id of a record a show command prints.
func lookupString(t *testing.T, args ...string) string {
	t.Helper()
	id, _ := lookup(jsonOf(t, args...), "id")
	s, _ := id.(string)
	return s
}
