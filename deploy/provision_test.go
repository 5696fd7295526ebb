package deploy_test

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/vxdp/vxdp/control/config"
)

// provisionScript is the provisioning of a node, from this package.
const provisionScript = "provision-node.sh"

// nic is an interface of a fake host: its name and MAC.
type nic struct{ name, mac string }

// fakeHost makes root look like a host with these interfaces to the
// provisioning script (root/sys/class/net/<name>/address).
func fakeHost(t *testing.T, root string, nics ...nic) {
	t.Helper()
	for _, n := range nics {
		writeUnder(t, root, filepath.Join("sys/class/net", n.name, "address"), n.mac+"\n")
	}
}

// writeUnder writes content to root/path, making its directories.
func writeUnder(t *testing.T, root, path, content string) {
	t.Helper()
	path = filepath.Join(root, path)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
}

// provision runs the provisioning script with args, writing the
// configuration under root only.
func provision(root string, args ...string) (string, error) {
	cmd := exec.Command("sh", append([]string{provisionScript}, append(args, "--root", root)...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// agentConfig loads the configuration the provisioned agent runs with: the
// files /etc/default/vxdp-agent passes to it, read under root.
func agentConfig(t *testing.T, root string) *config.AgentConfig {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "etc/default/vxdp-agent"))
	if err != nil {
		t.Fatalf("no /etc/default/vxdp-agent: %v", err)
	}
	m := regexp.MustCompile(`(?m)^VXDP_AGENT_ARGS="([^"]*)"$`).FindStringSubmatch(string(raw))
	if m == nil {
		t.Fatalf("/etc/default/vxdp-agent sets no VXDP_AGENT_ARGS:\n%s", raw)
	}
	var files []string
	args := strings.Fields(m[1])
	for i := 0; i < len(args); i++ {
		if args[i] != "--config" || i+1 == len(args) {
			t.Fatalf("VXDP_AGENT_ARGS %q: want only --config FILE arguments", m[1])
		}
		i++
		files = append(files, filepath.Join(root, args[i]))
	}
	cfg, err := config.Load(files...)
	if err != nil {
		t.Fatalf("the agent would not start: %v", err)
	}
	return cfg
}

// snapshot is every file under root with its content.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := os.ReadFile(path)
		files[path] = string(raw)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// The seed's node3 with Vagrant's NIC numbering: the provider NIC is eth2.
var (
	node3NICs = []nic{{"eth0", "52:54:00:12:34:56"}, {"eth2", "52:54:00:30:01:cb"}, {"eth4", "52:54:00:30:03:cb"}}
	node3Args = []string{"--host", "node3", "--mgmt-ip", "10.30.1.203", "--local-ip", "192.168.248.3",
		"--nats", "nats://10.30.1.208:4222", "--mapping", "default:52:54:00:30:01:CB", "--mapping", "external:eth4"}
)

// TestProvisionNodeWritesTheAgentConfig: the configuration written is the
// one the agent reads, with interfaces given by MAC resolved to their
// names; the script replaces its own files and the example make install
// ships, and puts Neutron's linuxbridge_agent.ini, when there is one,
// before its own.
func TestProvisionNodeWritesTheAgentConfig(t *testing.T) {
	example, err := os.ReadFile("vxdp-agent.ini")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		existing map[string]string // files present before, by path under root
		configs  []string          // --config files the agent gets
	}{
		{name: "fresh host", configs: []string{"/etc/vxdp/vxdp-agent.ini"}},
		{name: "after make install", existing: map[string]string{"etc/vxdp/vxdp-agent.ini": string(example)},
			configs: []string{"/etc/vxdp/vxdp-agent.ini"}},
		{name: "a Neutron host", existing: map[string]string{"etc/neutron/plugins/ml2/linuxbridge_agent.ini": "[vxlan]\nlocal_ip = 192.0.2.3\n"},
			configs: []string{"/etc/neutron/plugins/ml2/linuxbridge_agent.ini", "/etc/vxdp/vxdp-agent.ini"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			fakeHost(t, root, node3NICs...)
			for path, content := range tc.existing {
				writeUnder(t, root, path, content)
			}
			// Twice: a second run (vagrant provision) replaces the first's files.
			for range 2 {
				if out, err := provision(root, node3Args...); err != nil {
					t.Fatalf("provision-node.sh: %v\n%s", err, out)
				}
			}
			raw, _ := os.ReadFile(filepath.Join(root, "etc/default/vxdp-agent"))
			if want := `VXDP_AGENT_ARGS="--config ` + strings.Join(tc.configs, " --config ") + `"`; !strings.Contains(string(raw), want) {
				t.Errorf("/etc/default/vxdp-agent:\n%s\nwant %s", raw, want)
			}
			cfg := agentConfig(t, root)
			if cfg.Host != "node3" || cfg.LocalIP.String() != "192.168.248.3" || cfg.MetricsListen != "10.30.1.203:9641" ||
				!slices.Equal(cfg.NATS.Servers, []string{"nats://10.30.1.208:4222"}) || !cfg.EnableSecurityGroup {
				t.Errorf("agent config: host %q, local_ip %s, metrics_listen %q, nats %v, security groups %v; want node3, 192.168.248.3, 10.30.1.203:9641, [nats://10.30.1.208:4222], true",
					cfg.Host, cfg.LocalIP, cfg.MetricsListen, cfg.NATS.Servers, cfg.EnableSecurityGroup)
			}
			if want := map[string]string{"default": "eth2", "external": "eth4"}; !maps.Equal(cfg.PhysicalInterfaceMappings, want) {
				t.Errorf("physical_interface_mappings %v, want %v", cfg.PhysicalInterfaceMappings, want)
			}
			// Nothing else brings the address-less physical interfaces up.
			dropin, _ := os.ReadFile(filepath.Join(root, "etc/systemd/system/vxdp-agent.service.d/physical-interfaces.conf"))
			for _, dev := range []string{"eth2", "eth4"} {
				if !strings.Contains(string(dropin), "\nExecStartPre=-/sbin/ip link set "+dev+" up\n") {
					t.Errorf("the agent's unit does not bring %s up before it starts:\n%s", dev, dropin)
				}
			}
		})
	}
}

// TestProvisionNodeRefuses: bad arguments and a configuration file the
// script did not write get an error naming the problem, and nothing is
// written or changed.
func TestProvisionNodeRefuses(t *testing.T) {
	with := func(replace map[string]string, drop ...string) []string {
		var out []string
		for i := 0; i < len(node3Args); i += 2 {
			flag, v := node3Args[i], node3Args[i+1]
			if slices.Contains(drop, flag) {
				continue
			}
			if r, ok := replace[flag]; ok {
				v = r
			}
			out = append(out, flag, v)
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		args     []string
		existing string // content of /etc/vxdp/vxdp-agent.ini before
		want     string
	}{
		{name: "no VTEP address", args: with(nil, "--local-ip"), want: "--local-ip is required"},
		{name: "bad VTEP address", args: with(map[string]string{"--local-ip": "192.168.248.300"}), want: "--local-ip 192.168.248.300: want an IPv4 address"},
		{name: "bad management address", args: with(map[string]string{"--mgmt-ip": "node3"}), want: "--mgmt-ip node3: want an IPv4 address"},
		{name: "no control plane", args: with(nil, "--nats"), want: "--nats is required"},
		{name: "bad control plane URL", args: with(map[string]string{"--nats": "10.30.1.208:4222"}), want: "--nats 10.30.1.208:4222: want nats://"},
		{name: "bad host name", args: with(map[string]string{"--host": "node 3"}), want: "--host node 3: want a host name"},
		{name: "unknown MAC", args: append(with(nil, "--mapping"), "--mapping", "default:52:54:00:30:01:cc"),
			want: "no interface has MAC 52:54:00:30:01:cc (interfaces: eth0 (52:54:00:12:34:56) eth2 (52:54:00:30:01:cb)"},
		{name: "unknown interface", args: append(with(nil, "--mapping"), "--mapping", "default:eth1"), want: "--mapping default:eth1: no interface eth1"},
		{name: "no interface", args: append(with(nil, "--mapping"), "--mapping", "default"), want: "--mapping default: want PHYSNET:INTERFACE"},
		{name: "mapped twice", args: slices.Concat(node3Args, []string{"--mapping", "default:eth0"}), want: "physical network default is mapped twice"},
		{name: "unknown argument", args: slices.Concat(node3Args, []string{"--vni", "100"}), want: "unknown argument --vni"},
		{name: "someone else's file", args: node3Args, existing: "[vxlan]\nlocal_ip = 192.168.248.33\n",
			want: "/etc/vxdp/vxdp-agent.ini exists and was not written by this script"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			fakeHost(t, root, node3NICs...)
			if tc.existing != "" {
				writeUnder(t, root, "etc/vxdp/vxdp-agent.ini", tc.existing)
			}
			before := snapshot(t, root)
			out, err := provision(root, tc.args...)
			if err == nil {
				t.Fatalf("provision-node.sh %s: no error\n%s", strings.Join(tc.args, " "), out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("error:\n%s\nwant it to say %q", out, tc.want)
			}
			if after := snapshot(t, root); !maps.Equal(before, after) {
				t.Errorf("a refused run changed the files: before %v, after %v", before, after)
			}
		})
	}
}
