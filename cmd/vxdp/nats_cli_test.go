package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/control/natsd"
	"github.com/vxdp/vxdp/state"
)

// cliServer starts an embedded server with the bucket and points the
// commands at it.
func cliServer(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	srv, err := natsd.Start(ctx, natsd.Options{Listen: "127.0.0.1:0", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := control.EnsureBucket(ctx, js, control.BucketOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VXDP_NATS", srv.ClientURL())
	return srv.ClientURL()
}

// vxdp runs a command line and returns its output.
func vxdp(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &out, &out
	err := app.RunContext(context.Background(), append([]string{"vxdp"}, args...))
	return out.String(), err
}

func mustVxdp(t *testing.T, args ...string) string {
	t.Helper()
	out, err := vxdp(t, args...)
	if err != nil {
		t.Fatalf("vxdp %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// startTestAgent runs an agent whose dataplane installs everything at once.
func startTestAgent(t *testing.T, url, host, vtep string) context.CancelFunc {
	t.Helper()
	nc, err := control.Connect(context.Background(), control.ConnectOptions{URLs: []string{url}, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	a, err := control.NewAgent(nc, control.AgentOptions{Host: host, VTEP: netip.MustParseAddr(vtep), ReportInterval: 100 * time.Millisecond,
		Log: slog.New(slog.DiscardHandler), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	updates := make(chan *state.Desired)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Run(ctx, updates)
	}()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case d := <-updates:
				a.Applied(ctx, d, state.Result{}, nil)
			}
		}
	}()
	stop := func() { cancel(); <-done; nc.Close() }
	t.Cleanup(stop)
	return cancel
}

func TestCLI(t *testing.T) {
	url := cliServer(t)
	const netID = "85ae5035-203b-4ef7-b65c-397f80b5a8af"
	out := mustVxdp(t, "network", "create", "vxlan100_net", "--vni", "100", "--subnet", "172.16.100.0/24", "--id", netID)
	if tableField(out, "vni") != "100" || tableField(out, "network_type") != "vxlan" {
		t.Errorf("network create printed\n%s", out)
	}
	out = mustVxdp(t, "network", "create", "--json", "tenant_net")
	var n control.Network
	if err := json.Unmarshal([]byte(out), &n); err != nil || n.VNI < 1001 || n.VNI > 2000 {
		t.Errorf("allocated network %+v (%v), want a VNI of 1001:2000", n, err)
	}

	// Refused input writes nothing.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"network", "create", "x", "--vni", "100"}, "vni 100 is already used by network " + netID},
		{[]string{"network", "create", "x", "--vni", "abc"}, "--vni"},
		{[]string{"network", "create", "x", "--subnet", "172.16.100.1/24"}, `has host bits set: write 172.16.100.0/24`},
		{[]string{"port", "create", "vm", "--network", "vxlan100_net", "--mac", "fa:16:3e:zz:00:01"}, `invalid MAC "fa:16:3e:zz:00:01"`},
		{[]string{"port", "create", "vm", "--network", "vxlan100_net", "--fixed-ip", "172.16.100.300"}, `--fixed-ip "172.16.100.300": not an IP address`},
		{[]string{"port", "create", "vm", "--network", "vxlan100_net", "--fixed-ip", "10.0.0.1"}, "not in a subnet of network vxlan100_net"},
		{[]string{"port", "create", "vm", "--network", "nowhere"}, `network "nowhere": not found`},
		{[]string{"port", "create", "vm"}, "--network is required"},
		{[]string{"port", "create", "vm", "--network", "vxlan100_net", "--security-group", "web"}, `security group "web" in project admin: not found`},
		{[]string{"port", "create", "vm", "--network", "vxlan100_net", "--allowed-address-pair", "10.0.0.0/33"}, "not an IP/LEN"},
		{[]string{"sg", "rule", "add", "nogroup", "--protocol", "icmp"}, `security group "nogroup": not found`},
		{[]string{"sg", "rule", "add", "x", "--port-range", "a:b"}, "--port-range"},
	} {
		out, err := vxdp(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("vxdp %s: %v\n%s\nwant an error with %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
	}
	if out := mustVxdp(t, "port", "list", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("refused creates left ports:\n%s", out)
	}

	// The project's default group is made on its first use of groups.
	if _, err := vxdp(t, "sg", "create", "default"); err == nil || !strings.Contains(err.Error(), "is the project's default group") {
		t.Errorf("sg create default: %v, want a refusal", err)
	}
	mustVxdp(t, "sg", "create", "web")
	out = mustVxdp(t, "sg", "rule", "add", "default", "--direction", "ingress", "--protocol", "icmp", "--json")
	var rule control.SecurityGroupRule
	if err := json.Unmarshal([]byte(out), &rule); err != nil || rule.Protocol != "icmp" {
		t.Fatalf("rule %s (%v)", out, err)
	}
	mustVxdp(t, "port", "create", "centos7.6-vm2", "--network", "vxlan100_net", "--mac", "fa:16:3e:cb:98:2c",
		"--fixed-ip", "172.16.100.19", "--security-group", "default", "--allowed-address-pair", "172.16.100.200,fa:16:3e:00:00:99",
		"--host", "node3", "--id", "9784ef08-97d1-4a5b-8c6d-7e8f9a0b1c2d")
	mustVxdp(t, "port", "create", "centos7.6-vm1", "--network", "vxlan100_net", "--fixed-ip", "172.16.100.12", "--host", "node4")

	// Agents report ACTIVE; agent list shows them alive.
	startTestAgent(t, url, "node3", "192.168.248.3")
	stop4 := startTestAgent(t, url, "node4", "192.168.248.4")
	deadline := time.Now().Add(10 * time.Second)
	for {
		out = mustVxdp(t, "port", "list", "--network", "vxlan100_net")
		if strings.Count(out, "| ACTIVE |") == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out, "| 9784ef08-97d1-4a5b-8c6d-7e8f9a0b1c2d | centos7.6-vm2 | fa:16:3e:cb:98:2c | ip_address='172.16.100.19' | ACTIVE | node3 | tap9784ef08-97 |") {
		t.Errorf("port list:\n%s", out)
	}
	out = mustVxdp(t, "agent", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 || lines[1] != "| ID                                   | Agent Type         | Host  | Availability Zone | Alive | State | Binary     |" {
		t.Fatalf("agent list:\n%s", out)
	}
	if want := "| " + control.AgentID("node3") + " | Linux bridge agent | node3 | None              | :-)   | UP    | vxdp-agent |"; !strings.Contains(out, want) {
		t.Errorf("agent list:\n%s\nwant the row\n%s", out, want)
	}

	// Hosts registered themselves with their first agent record; only
	// `host add` changes a registration, and agent list shows an agent
	// whose VTEP is not its host's registered one.
	out = mustVxdp(t, "host", "list")
	if !strings.Contains(out, "| node3 | 192.168.248.3 | agent         | 192.168.248.3 | ok    |") {
		t.Errorf("host list:\n%s", out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"host", "add", "node3", "--vtep", "192.168.248.33"}, "registered with VTEP 192.168.248.3 (by agent): already exists; add --replace"},
		{[]string{"host", "add", "node5", "--vtep", "169.254.0.5"}, "want a unicast IPv4 or IPv6 address"},
		{[]string{"host", "add", "node5", "--vtep", "node5"}, `--vtep "node5": not an IPv4 address`},
		{[]string{"host", "add", "node5"}, "--vtep is required"},
		{[]string{"host", "delete", "node5"}, "host node5: not found"},
	} {
		if out, err := vxdp(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("vxdp %s: %v\n%s\nwant an error with %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
	}
	mustVxdp(t, "host", "add", "node4", "--vtep", "192.168.248.44", "--replace")
	mustVxdp(t, "host", "add", "node5", "--vtep", "192.168.248.5")
	out = mustVxdp(t, "host", "list")
	for _, want := range []string{"| node4 | 192.168.248.44 | controller    | 192.168.248.4 | MISMATCH |", "| node5 | 192.168.248.5  | controller    | -             | no agent |"} {
		if !strings.Contains(out, want) {
			t.Errorf("host list:\n%s\nwant the row\n%s", out, want)
		}
	}
	if out = mustVxdp(t, "agent", "list"); !strings.Contains(out, "VTEP mismatch: the agent of node4 reports 192.168.248.4, its host is registered with 192.168.248.44") ||
		strings.Contains(out, "agent of node3") {
		t.Errorf("agent list:\n%s", out)
	}
	mustVxdp(t, "host", "delete", "node5")
	mustVxdp(t, "host", "add", "node4", "--vtep", "192.168.248.4", "--replace")

	// Live migration from the CLI, with the convergence time.
	out = mustVxdp(t, "port", "bind", "centos7.6-vm2", "--host", "node4", "--wait", "10s")
	if !strings.Contains(out, "ACTIVE on node4 after") || !strings.Contains(out, "all 1 agents converged after") {
		t.Errorf("port bind --wait:\n%s", out)
	}
	if _, err := vxdp(t, "port", "bind", "centos7.6-vm2", "--host", "node3", "--revision", "1"); err == nil || !strings.Contains(err.Error(), "changed concurrently") {
		t.Errorf("bind from a stale revision: %v", err)
	}

	// A dead agent shows XXX.
	stop4()
	time.Sleep(300 * time.Millisecond)
	out = mustVxdp(t, "agent", "list", "-o", "json", "--down-time", "250ms")
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if want := r["host"] == "node3"; r["alive"] != want || r["admin_state_up"] != true || r["agent_type"] != "Linux bridge agent" {
			t.Errorf("agent row %v: want alive=%v", r, want)
		}
	}
	if out = mustVxdp(t, "agent", "list", "--down-time", "250ms"); !strings.Contains(out, "| node4 | None              | XXX   | UP    |") {
		t.Errorf("dead agent not shown XXX:\n%s", out)
	}

	mustVxdp(t, "port", "unbind", "centos7.6-vm1")
	if _, err := vxdp(t, "network", "delete", "vxlan100_net"); err == nil || !strings.Contains(err.Error(), "delete them first") {
		t.Errorf("deleting a network with ports: %v", err)
	}
	mustVxdp(t, "port", "delete", "centos7.6-vm1")
	mustVxdp(t, "port", "delete", "9784ef08-97d1-4a5b-8c6d-7e8f9a0b1c2d")
	mustVxdp(t, "sg", "rule", "delete", rule.ID)
	mustVxdp(t, "network", "delete", "vxlan100_net")
	if out := mustVxdp(t, "network", "list"); strings.Contains(out, "vxlan100_net") || !strings.Contains(out, "tenant_net") {
		t.Errorf("network list after delete:\n%s", out)
	}
	if out := mustVxdp(t, "network", "create", "again", "--vni", "100"); !strings.Contains(out, "| 100 ") {
		t.Errorf("vni 100 not released:\n%s", out)
	}
}

func TestServerPermissionsCommand(t *testing.T) {
	dir := t.TempDir()
	f := dir + "/users.json"
	if err := writeFile(f, `{"users":[{"user":"controller","password":"c","role":"controller"},{"user":"node3","password":"n","role":"agent","host":"node3"}]}`); err != nil {
		t.Fatal(err)
	}
	out := mustVxdp(t, "server", "permissions", "--users", f)
	for _, want := range []string{`"vxdp.vxdp.api.node3.>"`, `"_INBOX_node3.>"`, `{ user: "controller"`, `"$KV.vxdp.>"`, "allow_responses: true"} {
		if !strings.Contains(out, want) {
			t.Errorf("permissions lack %s:\n%s", want, out)
		}
	}
	if _, agent, _ := strings.Cut(out, `user: "node3"`); strings.Contains(agent, "$KV.") || strings.Contains(agent, "$JS.API") {
		t.Errorf("an agent may write the bucket or use the JetStream API:\n%s", out)
	}
	if err := writeFile(f, `{"users":[{"user":"x","password":"p","role":"agent","host":"node_3"}]}`); err != nil {
		t.Fatal(err)
	}
	if _, err := vxdp(t, "server", "permissions", "--users", f); err == nil || !strings.Contains(err.Error(), `users[0]: nats user x: invalid host "node_3"`) {
		t.Errorf("bad users file: %v", err)
	}
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

// `vxdp server` serves the bucket until its context ends.
func TestServerCommand(t *testing.T) {
	dir := t.TempDir()
	ready := dir + "/ready.json"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		app := newApp()
		app.Writer, app.ErrWriter = io.Discard, io.Discard
		done <- app.RunContext(ctx, []string{"vxdp", "server", "--listen", "127.0.0.1:0", "--store", dir + "/store", "--ready-file", ready, "--log-level", "error"})
	}()
	var info natsd.ReadyInfo
	deadline := time.Now().Add(10 * time.Second)
	for info.URL == "" && time.Now().Before(deadline) {
		if raw, err := os.ReadFile(ready); err == nil {
			_ = json.Unmarshal(raw, &info)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if info.URL == "" {
		t.Fatal("server never ready")
	}
	t.Setenv("VXDP_NATS", info.URL)
	mustVxdp(t, "network", "create", "n", "--vni", "7")
	// Its broker serves agents: one registers.
	startTestAgent(t, info.URL, "node3", "192.168.248.3")
	for out := ""; !strings.Contains(out, "| node3 | 192.168.248.3 | agent"); out = mustVxdp(t, "host", "list") {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("no agent registered through the server's broker:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop")
	}
	if _, err := os.Stat(ready); !os.IsNotExist(err) {
		t.Errorf("ready file left behind: %v", err)
	}
}

// tableField is the value of field in a Field/Value table.
func tableField(table, field string) string {
	for _, line := range strings.Split(table, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) == 4 && strings.TrimSpace(cells[1]) == field {
			return strings.TrimSpace(cells[2])
		}
	}
	return ""
}
