package test

import (
	"encoding/json"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/vxdp/vxdp/lab"
)

// TestDumpOutput: `vxdp dump` names devices only inside the agent's network
// namespace (outside, an ifindex is another device: it says so instead of
// printing a wrong name), and its JSON is typed.
func TestDumpOutput(t *testing.T) {
	l := newLab(t, lab.Config{})
	dump := func(args ...string) (string, string) {
		t.Helper()
		cmd := exec.Command(l.Binary, append([]string{"dump", "--instance", l.Instance("node3"), "--bpffs", l.BPFFS,
			"--state-dir", l.StateDir("node3")}, args...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("vxdp dump %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
		}
		return string(out), stderr.String()
	}
	tap := lab.VM2.Tap()

	out, stderr := dump("fdb", "--netns", l.NS("node3"))
	if !strings.Contains(out, "("+tap+")") || stderr != "" {
		t.Errorf("dump in the agent's namespace should name %s:\n%s%s", tap, out, stderr)
	}
	out, stderr = dump("fdb")
	if !strings.Contains(stderr, "device names not shown") || regexp.MustCompile(`tap \d+\(`).MatchString(out) {
		t.Errorf("dump outside the agent's namespace printed names (or no warning):\n%s%s", out, stderr)
	}

	out, _ = dump("fdb", "ports", "-o", "json", "--netns", l.NS("node3"))
	var doc map[string][]map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("dump -o json: %v\n%s", err, out)
	}
	if len(doc["fdb"]) == 0 || len(doc["ports"]) != 1 {
		t.Fatalf("dump -o json: %d fdb entries, %d ports:\n%s", len(doc["fdb"]), len(doc["ports"]), out)
	}
	for _, e := range doc["fdb"] {
		if e["vni"] != float64(100) {
			t.Errorf("fdb entry vni %#v, want the number 100", e["vni"])
		}
	}
	p := doc["ports"][0]
	dev, _ := p["tap"].(map[string]any)
	if _, isNum := dev["ifindex"].(float64); !isNum || p["port_security"] != true || p["mtu"] != float64(lab.NetworkMTU) {
		t.Errorf("ports entry %v: want tap {ifindex: number}, port_security true, mtu %d", p, lab.NetworkMTU)
	}
}
