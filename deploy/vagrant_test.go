package deploy_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/vxdp/vxdp/control/config"
	"github.com/vxdp/vxdp/lab"
)

// repoRoot holds the Vagrantfile, from this package's directory.
const repoRoot = ".."

var depsOnce sync.Once

// vagrantEnv returns the environment Vagrant runs in for a test, once
// Debian's vagrant and vagrant-libvirt packages are there: make test's
// setup (scripts/deps.sh) installs them, and so does this, as root with
// apt-get, when they are missing. Vagrant's state goes to temporary
// directories (not ~/.vagrant.d, not .vagrant in the tree) and it asks
// nothing of the network.
func vagrantEnv(t *testing.T) []string {
	t.Helper()
	installed := func() bool {
		_, errV := exec.LookPath("vagrant")
		_, errR := exec.LookPath("ruby")
		_, errL := os.Stat("/usr/share/vagrant-plugins/plugins.d/vagrant-libvirt.json")
		return errV == nil && errR == nil && errL == nil
	}
	if !installed() {
		if _, err := exec.LookPath("apt-get"); err != nil || os.Geteuid() != 0 {
			t.Skip("vagrant and vagrant-libvirt are not installed and cannot be (needs root and apt-get): `sudo scripts/deps.sh` installs Debian's packages")
		}
		depsOnce.Do(func() {
			out, err := exec.Command(filepath.Join(repoRoot, "scripts/deps.sh")).CombinedOutput()
			t.Logf("scripts/deps.sh: %v\n%s", err, out)
		})
		if !installed() {
			t.Fatal("scripts/deps.sh did not install vagrant and vagrant-libvirt")
		}
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	return append(os.Environ(),
		"VAGRANT_CWD="+root,
		"VAGRANT_HOME="+filepath.Join(state, "home"),
		"VAGRANT_DOTFILE_PATH="+filepath.Join(state, "dotfile"),
		"VAGRANT_DEFAULT_PROVIDER=libvirt",
		"VAGRANT_CHECKPOINT_DISABLE=1",
		"VAGRANT_BOX_UPDATE_CHECK_DISABLE=1",
		"VAGRANT_NO_COLOR=1",
	)
}

// TestVagrantfileValidates: `vagrant validate` passes on the Vagrantfile,
// its machine settings and the libvirt provider's (VirtualBox is not in
// Debian; its settings are checked by a Vagrant that has it). No box is
// downloaded and no VM started.
func TestVagrantfileValidates(t *testing.T) {
	cmd := exec.Command("vagrant", "validate")
	cmd.Env = vagrantEnv(t)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "validated successfully") {
		t.Fatalf("vagrant validate: %v\n%s", err, out)
	}
}

// vagrantMachine is a machine of the Vagrantfile as Vagrant loads it.
type vagrantMachine struct {
	Name         string
	Autostart    bool
	Hostname     string
	Networks     []map[string]any // private networks, in NIC order
	Provisioners []vagrantProvisioner
}

// vagrantProvisioner is a shell provisioner of a machine.
type vagrantProvisioner struct {
	Name, Inline string
	Args         []string
	Reboot       bool
}

// loadVagrantfile is a Ruby program that loads the Vagrantfile with
// Vagrant's own loader (merging, provider overrides and all) and prints its
// machines as JSON.
const loadVagrantfile = `
require "json"
require "vagrant"
env = Vagrant::Environment.new(cwd: ENV["VAGRANT_CWD"])
machines = env.machine_names.map do |name|
  vm = env.vagrantfile.machine_config(name, :libvirt, env.boxes, nil, false)[:config].vm
  {
    name: name,
    autostart: env.vagrantfile.machine_names_and_options[name].fetch(:autostart, true),
    hostname: vm.hostname,
    networks: vm.networks.select { |type, _| type == :private_network }.map { |_, opts| opts },
    provisioners: vm.provisioners.map { |p| { name: p.name, inline: p.config.inline, args: p.config.args, reboot: p.config.reboot } },
  }
end
puts JSON.generate(machines)
`

func vagrantMachines(t *testing.T) []vagrantMachine {
	t.Helper()
	cmd := exec.Command("ruby", "-e", loadVagrantfile)
	cmd.Env = vagrantEnv(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("loading the Vagrantfile: %v\n%s", err, exitStderr(err))
	}
	var ms []vagrantMachine
	if err := json.Unmarshal(out, &ms); err != nil {
		t.Fatalf("loading the Vagrantfile: %v\n%s", err, out)
	}
	return ms
}

func exitStderr(err error) []byte {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.Stderr
	}
	return nil
}

// seedNIC is the seed's name of a node's index-th network interface: the
// Vagrantfile adds the seed's networks in the order of their NICs.
func seedNIC(index int) string { return "eth" + strconv.Itoa(index) }

// TestVagrantNodesAreTheLab: the machines `vagrant up` builds are the lab's
// nodes (lab.Nodes), each with the lab's addresses on the same NICs of the
// seed (management on eth0, VTEP on eth2, eth1 and eth3 for the physical
// networks without an address), NIC i of every node on one network; and
// the provisioning Vagrant runs on a node gives its agent the lab agent's
// settings: host, VTEP, control plane URL, physical interface mappings,
// and vxdp server on the lab's controller node only.
func TestVagrantNodesAreTheLab(t *testing.T) {
	machines := vagrantMachines(t)
	var names []string
	for _, m := range machines {
		if m.Autostart {
			names = append(names, m.Name)
		}
	}
	if !slices.Equal(names, lab.Nodes) {
		t.Fatalf("vagrant up builds %v, the lab's nodes are %v", names, lab.Nodes)
	}
	metricsPort := func() string {
		cfg, err := config.Load("vxdp-agent.ini")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(cfg.MetricsListen)
		return port
	}()
	wantMappings, msg, _ := config.ParseInterfaceMappings(lab.ProviderMappings)
	if msg != "" {
		t.Fatalf("lab.ProviderMappings: %s", msg)
	}
	wantAddr := map[string]func(string) netip.Addr{lab.MgmtDev: lab.MgmtIP, lab.VTEPDev: lab.NodeIP}
	seedNICs := slices.Sorted(maps.Keys(wantAddr))
	for _, dev := range wantMappings {
		seedNICs = append(seedNICs, dev)
	}
	slices.Sort(seedNICs)
	networkNames := map[int]string{}
	macs := map[string]string{}
	for _, m := range machines {
		if !m.Autostart {
			continue
		}
		node := m.Name
		if m.Hostname != node {
			t.Errorf("%s: host name %q, want %q (agents bind ports by it)", node, m.Hostname, node)
		}
		if len(m.Networks) != len(seedNICs) {
			t.Errorf("%s has %d networks, the lab's nodes have %d NICs: %v", node, len(m.Networks), len(seedNICs), seedNICs)
			continue
		}
		// The host the provisioning sees: the seed's NIC names with the
		// MACs the Vagrantfile gives them.
		root := t.TempDir()
		for i, opts := range m.Networks {
			dev := seedNIC(i)
			if !slices.Contains(seedNICs, dev) {
				t.Errorf("%s: network %d would be the seed's %s, which the lab's nodes lack (%v)", node, i, dev, seedNICs)
			}
			network := fmt.Sprint(opts["virtualbox__intnet"], " ", opts["libvirt__network_name"])
			if prev, ok := networkNames[i]; ok && prev != network {
				t.Errorf("%s: NIC %d is on %s, another node's on %s: they must share a network", node, i, network, prev)
			}
			networkNames[i] = network
			mac := strings.ToLower(fmt.Sprint(opts["mac"]))
			if len(mac) != 12 {
				t.Errorf("%s %s: MAC %q, want 12 hex digits (VirtualBox's form)", node, dev, mac)
				continue
			}
			if other, dup := macs[mac]; dup {
				t.Errorf("%s %s: MAC %s is also %s's", node, dev, mac, other)
			}
			macs[mac] = node + " " + dev
			fakeHost(t, root, nic{dev, colonMAC(mac)})
			ip, _ := opts["ip"].(string)
			if addr, ok := wantAddr[dev]; ok {
				if ip != addr(node).String() {
					t.Errorf("%s %s: address %q, the lab's is %s", node, dev, ip, addr(node))
				}
			} else if ip != "" || opts["auto_config"] != false {
				t.Errorf("%s %s: address %q, auto_config %v; a physical network's NIC has no address (auto_config false)", node, dev, ip, opts["auto_config"])
			}
		}
		checkProvisioning(t, m, root, wantMappings, metricsPort)
	}
	if nets := slices.Compact(slices.Sorted(maps.Values(networkNames))); len(nets) != len(networkNames) {
		t.Errorf("the nodes' NICs are on the networks %v: two NICs of a node share one", networkNames)
	}
}

// checkProvisioning runs the provisioning Vagrant runs on machine m on the
// host root and checks the configuration its agent gets against the lab's.
func checkProvisioning(t *testing.T, m vagrantMachine, root string, wantMappings map[string]string, metricsPort string) {
	t.Helper()
	node := m.Name
	i := slices.IndexFunc(m.Provisioners, func(p vagrantProvisioner) bool {
		return strings.Contains(p.Inline, "deploy/"+provisionScript)
	})
	if i < 0 {
		t.Errorf("%s: no provisioner runs deploy/%s", node, provisionScript)
		return
	}
	if setup := m.Provisioners[0]; i == 0 || !strings.Contains(setup.Inline, "scripts/host-setup.sh") || !setup.Reboot {
		t.Errorf("%s: the first provisioner must run scripts/host-setup.sh and reboot (the kernel), then deploy/%s", node, provisionScript)
	}
	args := m.Provisioners[i].Args
	if controller := slices.Contains(args, "--controller"); controller != (node == lab.ControllerNode) {
		t.Errorf("%s runs vxdp server: %v, want %v (the lab's controller is %s)", node, controller, !controller, lab.ControllerNode)
	}
	if out, err := provision(root, args...); err != nil {
		t.Errorf("%s: provision-node.sh %s: %v\n%s", node, strings.Join(args, " "), err, out)
		return
	}
	cfg := agentConfig(t, root)
	if cfg.Host != node || cfg.LocalIP != lab.NodeIP(node) || !slices.Equal(cfg.NATS.Servers, []string{lab.NATSURL()}) {
		t.Errorf("%s's agent: host %q, local_ip %s, nats %v; the lab's: %s, %s, [%s]",
			node, cfg.Host, cfg.LocalIP, cfg.NATS.Servers, node, lab.NodeIP(node), lab.NATSURL())
	}
	if !maps.Equal(cfg.PhysicalInterfaceMappings, wantMappings) {
		t.Errorf("%s's agent: physical_interface_mappings %v, the lab's %s", node, cfg.PhysicalInterfaceMappings, lab.ProviderMappings)
	}
	if want := net.JoinHostPort(lab.MgmtIP(node).String(), metricsPort); cfg.MetricsListen != want {
		t.Errorf("%s's agent: metrics_listen %q, want %s (the management address, the example ini's port, which deploy/prometheus.yml scrapes)", node, cfg.MetricsListen, want)
	}
}

// colonMAC writes 12 hex digits as a MAC address, 52:54:00:...
func colonMAC(hex string) string {
	var pairs []string
	for i := 0; i+2 <= len(hex); i += 2 {
		pairs = append(pairs, hex[i:i+2])
	}
	return strings.Join(pairs, ":")
}
