package state

import (
	"strings"
	"testing"
)

const seedNode3 = `{
  "networks": [{"id": "85ae5035-203b-4ef7-b65c-397f80b5a8af", "vni": 100, "vteps": [{"ip": "192.168.248.1"}]}],
  "local_ports": [{"id": "31c64a21-7658-4d2b-8f0e-3a9c1b2d4e5f", "network_id": "85ae5035-203b-4ef7-b65c-397f80b5a8af",
                   "mac": "fa:16:3e:cb:98:2c", "ips": ["172.16.100.19"]}],
  "remote_ports": [{"network_id": "85ae5035-203b-4ef7-b65c-397f80b5a8af", "mac": "fa:16:3e:06:42:34",
                    "ips": ["172.16.100.12"], "vtep": "192.168.248.4"}]
}`

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		wantErr string // "" = valid
	}{
		{"seed", seedNode3, ""},
		{"syntax error names the line", strings.Replace(seedNode3, `"vni": 100,`, `"vni": 100`, 1), "line 2:"},
		{"bad MAC names the line", strings.Replace(seedNode3, "fa:16:3e:cb:98:2c", "fa:16:3e:cb:98", 1), "line 4: invalid MAC"},
		{"unknown field", strings.Replace(seedNode3, `"vni"`, `"vnid"`, 1), `unknown field "vnid"`},
		{"VNI out of range", strings.Replace(seedNode3, `"vni": 100`, `"vni": 16777216`, 1), "vni 16777216 out of range"},
		{"unknown network", strings.Replace(seedNode3, `"network_id": "85ae5035-203b-4ef7-b65c-397f80b5a8af", "mac": "fa:16:3e:06`,
			`"network_id": "nope", "mac": "fa:16:3e:06`, 1), `unknown network "nope"`},
		{"multicast MAC", strings.Replace(seedNode3, "fa:16:3e:06:42:34", "01:00:5e:00:00:01", 1), "not a unicast address"},
		{"multicast VTEP", strings.Replace(seedNode3, `"vtep": "192.168.248.4"`, `"vtep": "ff02::4"`, 1), "not a unicast address"},
		{"bridge name collision", strings.Replace(strings.Replace(seedNode3, `"vteps"`, `"vteps": []}, {"id": "85ae5035-203b-0000", "vni": 200, "x"`, 1), `"x": [{"ip"`, `"vteps": [{"ip"`, 1),
			"bridge brq85ae5035-20 would also carry"},
		{"pair rebinding a fixed IP", strings.Replace(seedNode3, `"ips": ["172.16.100.19"]`,
			`"ips": ["172.16.100.19"], "allowed_address_pairs": [{"ip_address": "172.16.100.19/32", "mac_address": "fa:16:3e:00:00:99"}]`, 1),
			"already allowed from fa:16:3e:cb:98:2c"},
		{"duplicate MAC in a network", strings.Replace(seedNode3, "fa:16:3e:06:42:34", "fa:16:3e:cb:98:2c", 1), "already used"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Parse([]byte(tt.doc))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Parse: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Parse error %v, want one containing %q", err, tt.wantErr)
			case tt.wantErr == "" && d.LocalPorts[0].TapName() != "tap31c64a21-76":
				t.Errorf("tap name %q, want Neutron's tap31c64a21-76", d.LocalPorts[0].TapName())
			}
		})
	}
}

func TestFloodListIncludesRemotePortVTEPs(t *testing.T) {
	d, err := Parse([]byte(seedNode3))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range d.FloodList("85ae5035-203b-4ef7-b65c-397f80b5a8af") {
		got = append(got, v.IP.String())
	}
	if strings.Join(got, ",") != "192.168.248.1,192.168.248.4" {
		t.Errorf("flood list %v, want the listed VTEP then the remote port's", got)
	}
}

func TestNames(t *testing.T) {
	if got := BridgeName("85ae5035-203b-4ef7-b65c-397f80b5a8af"); got != "brq85ae5035-20" {
		t.Errorf("bridge %q", got)
	}
	if got := VXLANName(100); got != "vxlan-100" {
		t.Errorf("vxlan %q", got)
	}
}
