package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/lab"
)

// TestNATSProviderNetworks: the seed's provider networks told with the
// controller commands against the lab's NATS control plane. A VLAN outside
// network_vlan_ranges and a flat network on a physical network not in
// flat_networks are refused with the fix and write nothing; vlan99 and the
// flat network carry traffic across nodes over the BPF path with the tag
// on the wire, never meeting vxlan100_net whose addresses the flat network
// reuses; a real DHCP client on vlan99 gets what the subnet and port say,
// answered at its port; with --no-dhcp its DHCP goes to the physical
// network's own server instead.
func TestNATSProviderNetworks(t *testing.T) {
	l := newLab(t, lab.Config{Control: lab.ControlNATS, Provider: true, NoPublish: true})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"network", "create", "--provider-network-type", "vlan", "--provider-physical-network", "default", "--provider-segment", "4001", "vlan4001"},
			"vlan 4001 of physical network default is outside network_vlan_ranges default:1:4000: pick a --provider-segment in 1-4000"},
		{[]string{"network", "create", "--provider-network-type", "flat", "--provider-physical-network", "default", "flat"},
			`physical network "default" is not in flat_networks external`},
		{[]string{"network", "create", "--provider-network-type", "vlan", "--provider-physical-network", "physnet2", "--provider-segment", "99", "x"},
			`physical network "physnet2" is not in network_vlan_ranges default:1:4000`},
	} {
		if out, err := cliErr(l, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("vxdp %s: %v\n%s\nwant a refusal with %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
	}
	var nets []control.Network
	cliJSON(t, l, &nets, "network", "list")
	if len(nets) != 0 {
		t.Errorf("refused requests wrote networks: %+v", nets)
	}

	publishByCLI(t, l, lab.VM2, lab.VM1)
	cli(t, l, "network", "create", "--provider-network-type", "vlan", "--provider-physical-network", lab.PhysDefault, "--provider-segment", "99",
		"--id", lab.NetVLAN99ID, "--dns-domain", "lab.example", lab.NetVLAN99Name)
	cli(t, l, "subnet", "create", "--network", lab.NetVLAN99Name, "--subnet-range", "172.16.99.0/24", "--gateway", lab.PhysHostVLANIP.String(),
		"--dns-nameserver", "192.0.2.53", "--lease", "1200", "vlan99-v4")
	cli(t, l, "network", "create", "--provider-network-type", "flat", "--provider-physical-network", lab.PhysExternal,
		"--id", lab.NetExternalID, lab.NetExternalName)
	cli(t, l, "subnet", "create", "--network", lab.NetExternalName, "--subnet-range", "172.16.100.0/24", "--gateway", lab.PhysHostFlatIP.String())
	for _, p := range []lab.Port{lab.VM5, lab.VM6, lab.VM7, lab.VM8} {
		cli(t, l, "port", "create", "--network", p.NetworkID, "--id", p.ID, "--mac", p.MAC.String(), "--fixed-ip", p.IP.String(),
			"--host", p.Node, "--dns-name", p.Name, p.Name)
	}
	waitActive(t, l, 6)
	reachable(t, l, lab.VM5, lab.VM6)
	reachable(t, l, lab.VM7, lab.VM8)

	// VLAN 99 across nodes over the BPF path, tagged on the wire.
	vlan99AcrossNodes(t, l, true)
	// The flat network, and a host of the physical networks that is no port.
	ping(t, l, lab.VM7, lab.VM8.IP.String(), 3)
	ping(t, l, lab.VM6, lab.PhysHostVLANIP.String(), 3)
	ping(t, l, lab.VM8, lab.PhysHostFlatIP.String(), 3)
	// The same addresses on VNI 100 and the flat network never meet.
	seen := watch(t, l, []lab.Port{lab.VM1, lab.VM8}, func() {
		ping(t, l, lab.VM2, lab.VM1.IP.String(), 3)
		ping(t, l, lab.VM7, lab.VM8.IP.String(), 3)
	})
	for _, c := range []struct{ in, never lab.Port }{{lab.VM1, lab.VM7}, {lab.VM8, lab.VM2}} {
		for _, f := range seen[c.in.Name] {
			if bytes.Contains(f.Data, c.never.MAC[:]) {
				t.Errorf("%s saw a frame of %s (another network with the same addresses)", c.in.Name, c.never.Name)
				break
			}
		}
	}

	// DHCP at the port, from the subnet and port made above.
	before := snapshot(t, l, "node3")
	if out, err := l.RunDHCPClient(t.Context(), lab.VM5); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if p, _ := grown(before, snapshot(t, l, "node3"), "node3", "port", "TX_DHCP_REPLY"); p < 2 {
		t.Errorf("node3 answered %d DHCP messages, want an OFFER and an ACK", p)
	}
	checkLease(t, l, lab.VM5, map[string]string{"ip": lab.VM5.IP.String(), "subnet": "255.255.255.0", "router": lab.PhysHostVLANIP.String(),
		"dns": "192.0.2.53", "mtu": "1500", "hostname": "vm5", "domain": "lab.example", "serverid": lab.PhysHostVLANIP.String(), "lease": "1200"})

	// --no-dhcp: vm5's DHCP crosses VLAN 99 to the physical network's server.
	rev, err := strconv.ParseUint(strings.TrimSpace(cli(t, l, "subnet", "set", "vlan99-v4", "--no-dhcp", "-c", "revision", "-o", "value")), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	waitApplied(t, l, "node3", rev)
	startDHCPServer(t, l, l.NS(lab.PhysHost), lab.ProviderDev+".99", lab.VM5, lab.PhysHostVLANIP, 600)
	before = snapshot(t, l, "node3")
	if out, err := l.RunDHCPClient(t.Context(), lab.VM5); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	after := snapshot(t, l, "node3")
	if p, _ := grown(before, after, "node3", "port", "TX_DHCP_REPLY", "TX_DHCP_NAK"); p != 0 {
		t.Errorf("node3 answered %d DHCP messages itself; the subnet has --no-dhcp", p)
	}
	if p, _ := grown(before, after, "node3", "port", "PASS_BUM"); p == 0 {
		t.Errorf("vm5's DHCP did not go to the network (grown:%s)", nonZeroGrowth(before, after, "node3"))
	}
	checkLease(t, l, lab.VM5, map[string]string{"serverid": lab.PhysHostVLANIP.String(), "lease": "600"})
}

// checkLease checks what p's DHCP client last got.
func checkLease(t *testing.T, l *lab.Lab, p lab.Port, want map[string]string) {
	t.Helper()
	lease, err := l.Lease(p)
	if err != nil {
		t.Fatal(err)
	}
	for k, w := range want {
		if lease[k] != w {
			t.Errorf("%s's lease: %s = %q, want %q", p.Name, k, lease[k], w)
		}
	}
}

// waitApplied waits until node's agent applied KV revision rev or later.
func waitApplied(t *testing.T, l *lab.Lab, node string, rev uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s to apply revision %d", node, rev), func() bool {
		a, err := l.ReadApplied(node)
		return err == nil && a.Revision >= rev
	})
}

// TestLabUpDefault: `vxdp lab up` as `make lab` runs it — NATS control,
// provider networks, every VM leasing its address by DHCP at its port —
// comes up, says so, and works; `lab down` removes it all.
func TestLabUpDefault(t *testing.T) {
	requireRoot(t)
	cfg := labConfig(t, lab.Config{})
	t.Cleanup(func() {
		if err := lab.Teardown(cfg.Dir, testWriter{t}); err != nil {
			t.Errorf("teardown: %v", err)
		}
		if left := lab.Leftovers(cfg); len(left) > 0 {
			t.Errorf("lab down left behind: %v", left)
		}
	})
	out, err := exec.Command(cfg.Binary, "lab", "up", "--prefix", cfg.Prefix, "--dir", cfg.Dir).CombinedOutput()
	if err != nil {
		t.Fatalf("vxdp lab up: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{"smoke: vm2 -> vm1 (172.16.100.12): 3/3 replies",
		"vxlan100_net  vxlan  VNI 100", "vlan99        vlan   VLAN 99 of default", "external      flat   external",
		"vm5 got 172.16.99.117 by DHCP at its port", "vm8 got 172.16.100.12 by DHCP at its port"} {
		if !strings.Contains(text, want) {
			t.Errorf("vxdp lab up printed no %q:\n%s", want, text)
		}
	}
	if n := strings.Count(text, "(DHCP)"); n != 6 {
		t.Errorf("lab up lists %d VMs with a leased address, want 6:\n%s", n, text)
	}
	l, err := lab.Attach(cfg.Dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l.Control != lab.ControlNATS || !l.Provider || !l.DHCP {
		t.Errorf("lab up made %+v, want NATS control, provider networks and DHCP", l.Config)
	}
	ping(t, l, lab.VM5, lab.VM6.IP.String(), 3)
	ping(t, l, lab.VM7, lab.VM8.IP.String(), 3)
	var subnets []control.Subnet
	cliJSON(t, l, &subnets, "subnet", "list")
	if len(subnets) != 3 {
		t.Errorf("the controller lists %d subnets, want vxlan100_net's, vlan99's and external's: %+v", len(subnets), subnets)
	}
	raw, err := exec.Command(cfg.Binary, "lab", "status", "--dir", cfg.Dir, "-o", "json").Output()
	var st struct {
		Networks []struct {
			Name string `json:"name"`
		} `json:"networks"`
	}
	if err != nil || json.Unmarshal(raw, &st) != nil || len(st.Networks) != 3 {
		t.Errorf("lab status -o json: %v\n%s", err, raw)
	}
	out, err = exec.Command(cfg.Binary, "lab", "down", "--dir", cfg.Dir).CombinedOutput()
	if err != nil {
		t.Errorf("vxdp lab down: %v\n%s", err, out)
	}
	if _, err := os.Stat(cfg.Dir); err == nil {
		t.Errorf("lab down left its directory %s", cfg.Dir)
	}
}
