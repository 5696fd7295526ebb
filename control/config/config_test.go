package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// seedLinuxbridge is the seed's /etc/neutron/plugins/ml2/linuxbridge_agent.ini
// on node3 (testdata/linuxbridge_agent.ini; cmd/vxdp's tests use it too).
var seedLinuxbridge = func() string {
	raw, err := os.ReadFile("testdata/linuxbridge_agent.ini")
	if err != nil {
		panic(err)
	}
	return string(raw)
}()

func noHost() (string, error) { return "node3", nil }

func TestSeedLinuxbridgeINI(t *testing.T) {
	c, err := parse(Defaults(), []file{{"linuxbridge_agent.ini", []byte(seedLinuxbridge)}}, noHost)
	if err != nil {
		t.Fatal(err)
	}
	if c.LocalIP != netip.MustParseAddr("192.168.248.3") || !c.L2Population || !c.EnableSecurityGroup || c.VXLANPort != 8472 {
		t.Errorf("config %+v", c)
	}
	if c.PhysicalInterfaceMappings["default"] != "eth1" || c.Host != "node3" {
		t.Errorf("mappings %v host %q", c.PhysicalInterfaceMappings, c.Host)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "linuxbridge_agent.ini:6: [securitygroup] firewall_driver") {
		t.Errorf("warnings %q, want the ignored firewall_driver on line 6", c.Warnings)
	}
	o := c.AgentOptions()
	if o.Host != "node3" || o.VTEP != c.LocalIP {
		t.Errorf("agent options %+v", o)
	}
}

// The walkthrough's outage: "[DEFAULT" without "]" on line 1.
func TestSeedDefaultTypo(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "linuxbridge_agent.ini")
	if err := os.WriteFile(path, []byte(strings.Replace(seedLinuxbridge, "[DEFAULT]", "[DEFAULT", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	want := path + `:1: invalid section header "[DEFAULT": must end with "]" — write "[DEFAULT]"`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

func TestConfigErrors(t *testing.T) {
	const name = "vxdp-agent.ini"
	for _, tc := range []struct {
		name, text string
		want       []string // one line per error, in file order
	}{
		{"misspelt option", "[vxlan]\nlocal_iip = 192.168.248.3\n",
			[]string{`vxdp-agent.ini:2: unknown option "local_iip" in [vxlan] — did you mean "local_ip"?`}},
		{"misspelt section", "[DEFAULT]\nhost = node3\n[vxaln]\nlocal_ip = 192.168.248.3\n",
			[]string{`vxdp-agent.ini:3: unknown section [vxaln] — did you mean [vxlan]?`}},
		{"missing local_ip", "[DEFAULT]\nhost = node3\n",
			[]string{`vxdp-agent.ini: [vxlan] local_ip is not set — add "local_ip = <this host's VTEP address>" under [vxlan], e.g. local_ip = 192.168.248.3`}},
		{"bad ip", "[vxlan]\nlocal_ip = 192.168.248.300\n",
			[]string{`vxdp-agent.ini:2: local_ip "192.168.248.300" is not a unicast IPv4 or IPv6 address — write this host's VTEP address, e.g. local_ip = 192.168.248.3`}},
		{"link-local ip", "[vxlan]\nlocal_ip = 169.254.0.3\n",
			[]string{`vxdp-agent.ini:2: local_ip "169.254.0.3" is not a unicast IPv4 or IPv6 address — write this host's VTEP address, e.g. local_ip = 192.168.248.3`}},
		{"missing equals", "[vxlan]\nlocal_ip 192.168.248.3\n",
			[]string{`vxdp-agent.ini:2: "local_ip 192.168.248.3" is not an option: missing "=" — write "local_ip = 192.168.248.3"`}},
		{"option before any section", "local_ip = 192.168.248.3\n[vxlan]\nlocal_ip = 192.168.248.3\n",
			[]string{`vxdp-agent.ini:1: option "local_ip" comes before any section — put a section header such as [DEFAULT] above it`}},
		{"bad boolean", "[vxlan]\nlocal_ip = 192.168.248.3\nl2_population = ture\n",
			[]string{`vxdp-agent.ini:3: "ture" is not a boolean — write true or false`}},
		{"l2pop off", "[vxlan]\nlocal_ip = 192.168.248.3\nl2_population = false\n",
			[]string{`vxdp-agent.ini:3: l2_population = false: vxdp always distributes FDB and ARP entries from the server (l2population) and never floods to learn — write l2_population = true`}},
		{"bad mapping", "[linux_bridge]\nphysical_interface_mappings = default-eth1\n[vxlan]\nlocal_ip = 192.168.248.3\n",
			[]string{`vxdp-agent.ini:2: physical_interface_mappings entry "default-eth1" is not <physical_network>:<interface> — write e.g. physical_interface_mappings = default:eth1`}},
		{"bad port", "[vxlan]\nlocal_ip = 192.168.248.3\nudp_dstport = 70000\n",
			[]string{`vxdp-agent.ini:3: udp_dstport "70000" is not a UDP port — write udp_dstport = 8472 (Linux's default) or 4789 (IANA)`}},
		{"unknown nats option", "[vxlan]\nlocal_ip = 192.168.248.3\n[nats]\nurl = nats://x:4222\n",
			[]string{`vxdp-agent.ini:4: unknown option "url" in [nats] — valid options: bucket, creds_file, nkey_seed_file, password, servers, tls_ca_file, tls_cert_file, tls_key_file, user`}},
		{"nats url without scheme", "[vxlan]\nlocal_ip = 192.168.248.3\n[nats]\nservers = 10.30.1.208:4222\n",
			[]string{`vxdp-agent.ini:4: server "10.30.1.208:4222" has no scheme — write nats://10.30.1.208:4222 (or tls://10.30.1.208:4222)`}},
		{"user without password", "[vxlan]\nlocal_ip = 192.168.248.3\n[nats]\nuser = node3\n",
			[]string{`vxdp-agent.ini:4: [nats] user and password go together — set both user and password, or neither`}},
		{"bad host", "[DEFAULT]\nhost = node_3\n[vxlan]\nlocal_ip = 192.168.248.3\n",
			[]string{`vxdp-agent.ini:2: invalid host "node_3": want an RFC 1123 host name (letters, digits, '-', '.'), e.g. node3 — write the host name Nova binds ports to, e.g. host = node3`}},
		{"two errors", "[DEFAULT\n[vxlan]\nlocal_ip = 1.2.3\n",
			[]string{`vxdp-agent.ini:1: invalid section header "[DEFAULT": must end with "]" — write "[DEFAULT]"`,
				`vxdp-agent.ini:3: local_ip "1.2.3" is not a unicast IPv4 or IPv6 address — write this host's VTEP address, e.g. local_ip = 192.168.248.3`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(Defaults(), []file{{name, []byte(tc.text)}}, noHost)
			if err == nil {
				t.Fatal("accepted")
			}
			if got, want := err.Error(), strings.Join(tc.want, "\n"); got != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// vxdp's own file and a Neutron file together; the later file wins.
func TestLayeredFiles(t *testing.T) {
	own := `[DEFAULT]
host = node4
state_path = /var/lib/vxdp
[agent]
report_interval = 10
availability_zone = nova
[nats]
servers = nats://10.30.1.208:4222, nats://10.30.1.203:4222
user = node4
password = secret
[dataplane]
xdp_mode = native
`
	c, err := parse(Defaults(), []file{{"vxdp-agent.ini", []byte(own)}, {"linuxbridge_agent.ini", []byte(strings.Replace(seedLinuxbridge, ".3", ".4", 1))}}, noHost)
	if err != nil {
		t.Fatal(err)
	}
	if c.Host != "node4" || c.LocalIP.String() != "192.168.248.4" || c.ReportInterval != 10*time.Second || c.Dataplane.XDPMode != "native" {
		t.Errorf("config %+v", c)
	}
	co := c.ConnectOptions()
	if len(co.URLs) != 2 || co.User != "node4" || co.InboxPrefix != "_INBOX_node4" {
		t.Errorf("connect options %+v", co)
	}
}
