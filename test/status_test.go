package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vxdp/vxdp/lab"
	"github.com/vxdp/vxdp/maps"
	"github.com/vxdp/vxdp/state"
)

// agentCmd runs `vxdp ARGS... ` against node's agent (its namespace,
// instance, bpffs, state dir) and returns stdout, stderr and whether it
// exited 0.
func agentCmd(t *testing.T, l *lab.Lab, node string, args ...string) (string, string, bool) {
	t.Helper()
	args = append(args, "--netns", l.NS(node), "--instance", l.Instance(node), "--bpffs", l.BPFFS, "--state-dir", l.StateDir(node))
	cmd := exec.Command(l.Binary, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if _, exited := err.(*exec.ExitError); err != nil && !exited {
		t.Fatalf("vxdp %s: %v", strings.Join(args, " "), err)
	}
	return string(out), stderr.String(), err == nil
}

// kernelSelfFDB is `bridge fdb show dev DEV | grep ' self ' | sort` in ns.
func kernelSelfFDB(t *testing.T, ns, dev string) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "bridge", "fdb", "show", "dev", dev).Output()
	if err != nil {
		t.Fatalf("bridge fdb show dev %s in %s: %v", dev, ns, err)
	}
	var self []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(line, " self ") {
			self = append(self, line)
		}
	}
	slices.Sort(self)
	return self
}

// TestStatusAndFDBShow: on the lab's node3, `vxdp fdb show --dev
// vxlan-100` prints exactly the l2pop lines of `bridge fdb show dev
// vxlan-100`; `vxdp status` finds everything attached and no drift (JSON
// typed), then finds an FDB entry deleted from the kernel, another deleted
// from the BPF map and a program detached, names each and exits 1; the
// agent's /readyz names the program too.
func TestStatusAndFDBShow(t *testing.T) {
	requireBinary(t, "bridge")
	// A long resync, so the agent does not repair the damage before
	// status looks.
	l := newLab(t, lab.Config{AgentArgs: []string{"--metrics-addr", "127.0.0.1:9641", "--resync", "10m"}})
	ns := l.NS("node3")

	out, stderr, ok := agentCmd(t, l, "node3", "fdb", "show", "--dev", "vxlan-100")
	if !ok {
		t.Fatalf("fdb show: %s", stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if kernel := kernelSelfFDB(t, ns, "vxlan-100"); !slices.Equal(lines, kernel) || len(lines) != 4 {
		t.Errorf("vxdp fdb show --dev vxlan-100:\n  %s\nbridge fdb show dev vxlan-100 (self):\n  %s",
			strings.Join(lines, "\n  "), strings.Join(kernel, "\n  "))
	}
	out, _, _ = agentCmd(t, l, "node3", "fdb", "show")
	if want := "fa:16:3e:cb:98:2c dev " + lab.VM2.Tap() + " master " + state.BridgeName(lab.Net100ID); !strings.Contains(out, want+"\n") {
		t.Errorf("fdb show lacks vm2's local entry %q:\n%s", want, out)
	}
	out, _, _ = agentCmd(t, l, "node3", "fdb", "show", "-o", "json")
	var entries []map[string]any
	if err := json.Unmarshal([]byte(out), &entries); err != nil || len(entries) != 5 {
		t.Fatalf("fdb show -o json: %v, %d entries\n%s", err, len(entries), out)
	}
	for _, e := range entries {
		if e["vni"] != float64(100) {
			t.Errorf("fdb entry %v: vni is not the number 100", e)
		}
	}

	status := func() (map[string]any, string, bool) {
		t.Helper()
		out, stderr, ok := agentCmd(t, l, "node3", "status", "--metrics-addr", "127.0.0.1:9641", "--wait", "5s", "-o", "json")
		var doc map[string]any
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("status -o json: %v\n%s%s", err, out, stderr)
		}
		return doc, stderr, ok
	}
	doc, stderr, ok := status()
	if !ok || doc["ok"] != true {
		t.Fatalf("status of a healthy node: exit ok %v\n%v\n%s", ok, doc, stderr)
	}
	if rev, isNum := doc["applied_revision"].(float64); !isNum || rev < 1 || doc["agent_ready"] != true || doc["control_plane"] != "file" {
		t.Errorf("status: applied_revision %#v, agent_ready %#v, control_plane %#v: want a number, true, file",
			doc["applied_revision"], doc["agent_ready"], doc["control_plane"])
	}
	progs, _ := doc["programs"].([]any)
	if len(progs) != 5 {
		t.Errorf("status lists %d programs, want 5 (uplink, bridge, vxlan, port and deliver of vm2's tap)", len(progs))
	}
	for _, p := range progs {
		p := p.(map[string]any)
		if _, isNum := p["prog_id"].(float64); !isNum || p["state"] != "attached" || p["mode"] == nil {
			t.Errorf("program %v: want a numeric prog_id, attached, with a mode", p)
		}
	}
	for _, m := range doc["maps"].([]any) {
		m := m.(map[string]any)
		if _, isNum := m["capacity"].(float64); !isNum {
			t.Errorf("map %v: capacity is not a number", m)
		}
		if m["map"] == maps.FDB && m["entries"] != float64(3) {
			t.Errorf("fdb map entries %#v, want 3", m["entries"])
		}
	}

	// Damage: vm1's kernel FDB entry, the DHCP port's BPF entry, the
	// program that delivers to vm2 (its link pin removed, which detaches it).
	if out, err := exec.Command("ip", "netns", "exec", ns, "bridge", "fdb", "del", lab.VM1.MAC.String(), "dev", "vxlan-100",
		"dst", lab.NodeIP("node4").String(), "self").CombinedOutput(); err != nil {
		t.Fatalf("bridge fdb del: %v %s", err, out)
	}
	set, err := l.Maps("node3")
	if err != nil {
		t.Fatal(err)
	}
	dhcp := l.Ports()[slices.IndexFunc(l.Ports(), func(p lab.Port) bool { return p.Node == "node1" })]
	if err := set.Map(maps.FDB).Delete(maps.NewFDBKey(100, dhcp.MAC)); err != nil {
		t.Fatal(err)
	}
	set.Close()
	if err := os.Remove(filepath.Join(l.PinDir("node3"), "links", "deliver_"+lab.VM2.Tap())); err != nil {
		t.Fatal(err)
	}

	doc, stderr, ok = status()
	wantProblem := "deliver program on " + lab.VM2.Tap() + " (tc egress): missing"
	if ok || doc["ok"] != false || !strings.Contains(stderr, wantProblem) {
		t.Errorf("status after the damage: exit ok %v, ok %v, stderr %q: want exit 1 naming %q", ok, doc["ok"], stderr, wantProblem)
	}
	var drift []string
	for _, d := range doc["drift"].([]any) {
		d := d.(map[string]any)
		drift = append(drift, strings.Join([]string{d["entry"].(string), d["key"].(string), d["place"].(string)}, " "))
		if d["vni"] != float64(100) || d["have"] != nil {
			t.Errorf("drift %v: want vni the number 100, have null (missing)", d)
		}
	}
	wantDrift := []string{
		"fdb " + lab.VM1.MAC.String() + " kernel fdb vxlan-100",
		"fdb " + dhcp.MAC.String() + " bpf fdb",
	}
	if !slices.Equal(drift, wantDrift) {
		t.Errorf("drift %v, want %v", drift, wantDrift)
	}
	if r, _ := doc["not_ready"].(string); !strings.Contains(r, wantProblem) {
		t.Errorf("the agent's /readyz: %q, want it to name %q", r, wantProblem)
	}

	// The table names it too.
	out, _, _ = agentCmd(t, l, "node3", "status")
	for _, want := range []string{"Problems:", wantProblem, "(missing)", "kernel fdb vxlan-100"} {
		if !strings.Contains(out, want) {
			t.Errorf("status table lacks %q:\n%s", want, out)
		}
	}
}

// requireBinary skips t when a tool `make deps` installs is missing.
func requireBinary(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed (make deps installs it)", name)
	}
}
