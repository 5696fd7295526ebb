package main

import (
	"strings"
	"testing"
)

// Provider networks, subnets and DNS names in the openstack client's
// words, through the output layer; refusals name the fix and write nothing.
func TestNetworkAndSubnetCommands(t *testing.T) {
	cliServer(t)
	expect(t, "vlan network", jsonOf(t, "network", "create", "--provider-network-type", "vlan", "--provider-physical-network", "default",
		"--provider-segment", "99", "vlan99"), map[string]any{"network_type": "vlan", "physical_network": "default",
		"segmentation_id": float64(99), "vni": nil, "mtu": float64(1500), "subnets.0": absent{}})
	expect(t, "flat network (the issue's short flags)", jsonOf(t, "network", "create", "--type", "flat", "--physical-network", "external",
		"--dns-domain", "example.org", "external"), map[string]any{"network_type": "flat", "physical_network": "external",
		"segmentation_id": nil, "dns_domain": "example.org"})
	expect(t, "vxlan network", jsonOf(t, "network", "create", "--vni", "100", "--subnet", "172.16.100.0/24", "vxlan100_net"),
		map[string]any{"network_type": "vxlan", "physical_network": nil, "segmentation_id": float64(100), "vni": float64(100),
			"mtu": float64(1450), "subnets.0": "172.16.100.0/24", "dns_domain": nil})
	expect(t, "allocated vlan", jsonOf(t, "network", "create", "--type", "vlan", "--physical-network", "default", "vlanx"),
		map[string]any{"network_type": "vlan"})

	sub := jsonOf(t, "subnet", "create", "--network", "vlan99", "--subnet-range", "172.16.99.0/24", "--dns-nameserver", "172.16.99.1",
		"--dns-nameserver", "192.0.2.53", "--lease", "12h", "vlan99-v4")
	expect(t, "subnet create", sub, map[string]any{"name": "vlan99-v4", "network": "vlan99", "cidr": "172.16.99.0/24",
		"gateway_ip": "172.16.99.1", "dns_nameservers.0": "172.16.99.1", "dns_nameservers.1": "192.0.2.53", "enable_dhcp": true,
		"dhcp_server": "172.16.99.1", "lease_seconds": float64(43200), "project_id": "admin"})
	expect(t, "subnet set", jsonOf(t, "subnet", "set", "vlan99-v4", "--no-dhcp", "--no-gateway", "--no-dns-nameservers",
		"--dns-nameserver", "192.0.2.1", "--lease", "infinite"), map[string]any{"enable_dhcp": false, "gateway_ip": nil,
		"dns_nameservers.0": "192.0.2.1", "dns_nameservers.1": absent{}, "lease_seconds": float64(-1), "dhcp_server": nil})
	mustVxdp(t, "subnet", "set", "vlan99-v4", "--dhcp", "--gateway", "172.16.99.254", "--dhcp-server", "172.16.99.2")
	expect(t, "subnet show", jsonOf(t, "subnet", "show", "vlan99-v4"), map[string]any{"enable_dhcp": true, "gateway_ip": "172.16.99.254",
		"dhcp_server": "172.16.99.2"})
	if out := mustVxdp(t, "subnet", "list", "-c", "cidr", "-c", "network", "-o", "value"); !strings.Contains(out, "172.16.99.0/24 vlan99") ||
		!strings.Contains(out, "172.16.100.0/24 vxlan100_net") {
		t.Errorf("subnet list -o value:\n%s", out)
	}
	if out := mustVxdp(t, "network", "list"); !strings.Contains(out, "Physical Network") || !strings.Contains(out, "| vlan ") {
		t.Errorf("network list:\n%s", out)
	}
	expect(t, "port with a DNS name", jsonOf(t, "port", "create", "vm5", "--network", "vlan99", "--fixed-ip", "172.16.99.117",
		"--dns-name", "vm5"), map[string]any{"dns_name": "vm5"})
	expect(t, "port set --dns-name", jsonOf(t, "port", "set", "vm5", "--dns-name", "web1"), map[string]any{"dns_name": "web1"})
	expect(t, "port unset --dns-name", jsonOf(t, "port", "unset", "vm5", "--dns-name"), map[string]any{"dns_name": nil})
	expect(t, "network set", jsonOf(t, "network", "set", "vlan99", "--dns-domain", "lab.example"), map[string]any{"dns_domain": "lab.example"})

	before := mustVxdp(t, "network", "list", "-o", "json") + mustVxdp(t, "subnet", "list", "-o", "json") + mustVxdp(t, "port", "list", "-o", "json")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"network", "create", "--provider-network-type", "vlan", "--provider-physical-network", "default", "--provider-segment", "4001", "x"},
			"vlan 4001 of physical network default is outside network_vlan_ranges default:1:4000: pick a --provider-segment in 1-4000, or widen the range on the server (vxdp server --network-vlan-ranges)"},
		{[]string{"network", "create", "--type", "vlan", "--physical-network", "default", "--segment", "99", "x"}, "vlan 99 of physical network default is already used by network"},
		{[]string{"network", "create", "--type", "flat", "--physical-network", "default", "x"}, `physical network "default" is not in flat_networks external: use one of them, or add it (vxdp server --flat-networks external,default)`},
		{[]string{"network", "create", "--type", "flat", "--physical-network", "external", "x"}, "physical network external already carries a flat network"},
		{[]string{"network", "create", "--provider-segment", "0", "x"}, "--provider-segment 0"},
		{[]string{"subnet", "create", "--network", "vlan99", "--subnet-range", "172.16.99.128/25"}, "overlaps subnet vlan99-v4 (172.16.99.0/24)"},
		{[]string{"subnet", "create", "--network", "vlan99", "--subnet-range", "10.0.0.1/24"}, "--subnet-range \"10.0.0.1/24\" has host bits set: write 10.0.0.0/24"},
		{[]string{"subnet", "create", "--network", "vlan99"}, "--subnet-range is required"},
		{[]string{"subnet", "create", "--network", "vlan99", "--subnet-range", "10.0.0.0/24", "--gateway", "10.0.0.1", "--no-gateway"}, "give one"},
		{[]string{"subnet", "create", "--network", "vlan99", "--subnet-range", "10.0.0.0/24", "--lease", "30s"}, "at least 120 seconds"},
		{[]string{"subnet", "create", "--network", "vlan99", "--subnet-range", "10.0.0.0/24", "--dns-nameserver", "dns.example"}, `--dns-nameserver "dns.example": not an IP address`},
		{[]string{"subnet", "set", "vlan99-v4"}, "nothing to change"},
		{[]string{"subnet", "delete", "vlan99-v4"}, "(vm5 172.16.99.117): delete those ports first"},
		{[]string{"port", "create", "--network", "vlan99", "--fixed-ip", "10.9.9.9"}, "fixed ip 10.9.9.9 is not in a subnet of network vlan99 (172.16.99.0/24)"},
		{[]string{"port", "set", "vm5", "--dns-name", "a.b"}, `dns_name "a.b" is not a host name`},
		{[]string{"network", "set", "vlan99", "--dns-domain", "bad domain"}, `dns domain "bad domain"`},
	} {
		out, err := vxdp(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("vxdp %s: %v\n%s\nwant an error with %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
	}
	// subnet delete marks and unmarks the subnet: compare without revisions.
	after := mustVxdp(t, "network", "list", "-o", "json") + mustVxdp(t, "subnet", "list", "-o", "json") + mustVxdp(t, "port", "list", "-o", "json")
	if dropRevisions(before) != dropRevisions(after) {
		t.Errorf("refused commands changed something:\nbefore %s\nafter %s", before, after)
	}
	mustVxdp(t, "port", "delete", "vm5")
	expect(t, "subnet delete", jsonOf(t, "subnet", "delete", "vlan99-v4"), map[string]any{"kind": "subnet", "name": "vlan99-v4"})
	expect(t, "network without subnets", jsonOf(t, "network", "show", "vlan99"), map[string]any{"subnets.0": absent{}})
}

// dropRevisions removes the "revision" lines of indented JSON.
func dropRevisions(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if !strings.Contains(line, `"revision"`) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
