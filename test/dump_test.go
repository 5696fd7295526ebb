package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

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

	dumpConntrack(t, l, dump)
	dumpPolicy(t, l, dump)
}

// dumpConntrack: a TCP connection vm2 opens to vm1:22 (the default group
// lets it out, and in from a member) is a row of vm2's tracked flows on
// node3, established while it is open and closed once both ends closed.
func dumpConntrack(t *testing.T, l *lab.Lab, dump func(...string) (string, string)) {
	t.Helper()
	var ln net.Listener
	if err := lab.Do(l.PortNS(lab.VM1), func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(lab.VM1.IP, 22).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	var client net.Conn
	if err := lab.Do(l.PortNS(lab.VM2), func() (err error) {
		client, err = net.DialTimeout("tcp4", netip.AddrPortFrom(lab.VM1.IP, 22).String(), 10*time.Second)
		return err
	}); err != nil {
		t.Fatalf("vm2 to vm1:22: %v", err)
	}
	defer client.Close()
	server, ok := <-accepted
	if !ok {
		t.Fatal("vm1 accepted no connection")
	}
	defer server.Close()
	// Data both ways: every packet of the handshake has gone by.
	for _, c := range [][2]net.Conn{{client, server}, {server, client}} {
		buf := make([]byte, 5)
		_, err := c[0].Write([]byte("hello"))
		if err == nil {
			_ = c[1].SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = io.ReadFull(c[1], buf)
		}
		if err != nil {
			t.Fatalf("data over vm2's connection to vm1:22: %v", err)
		}
	}

	local, remote := client.LocalAddr().String(), netip.AddrPortFrom(lab.VM1.IP, 22).String()
	flow := func() map[string]any {
		t.Helper()
		out, _ := dump("ct", "-o", "json", "--netns", l.NS("node3"))
		var doc map[string][]map[string]any
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("dump ct -o json: %v\n%s", err, out)
		}
		for _, e := range doc["ct_tcp"] {
			if e["local"] == local && e["remote"] == remote {
				return e
			}
		}
		t.Fatalf("dump ct: no flow %s -> %s:\n%s", local, remote, out)
		return nil
	}
	e := flow()
	if e["proto"] != float64(6) || e["opener"] != "egress" || e["state"] != "open" || e["conn_state"] != "established" {
		t.Errorf("vm2's open connection: %v; want proto 6, opener egress, state open, conn_state established", e)
	}
	// Just used: idle for a second or so, hours to live.
	if idle, left := e["idle_s"].(float64), e["expires_in_s"].(float64); idle < 0 || idle > 5 || left < 21600-6 {
		t.Errorf("vm2's open connection: idle %v s, expires in %v s; want about 0 and 21600", idle, left)
	}

	client.Close()
	server.Close()
	deadline := time.Now().Add(5 * time.Second)
	for e = flow(); e["conn_state"] != "closed" && time.Now().Before(deadline); e = flow() {
		time.Sleep(100 * time.Millisecond)
	}
	if e["conn_state"] != "closed" || e["expires_in_s"].(float64) > 10 {
		t.Errorf("vm2's closed connection: %v; want conn_state closed, expiring within 10 s", e)
	}
}

// dumpPolicy: `dump policy TAP` lists the rules behind vm2's policy, the
// lab's default group.
func dumpPolicy(t *testing.T, l *lab.Lab, dump func(...string) (string, string)) {
	t.Helper()
	out, stderr := dump("policy", lab.VM2.Tap(), "-o", "json", "--netns", l.NS("node3"))
	if !strings.Contains(stderr, "security groups enforced") {
		t.Errorf("dump policy: no enforced policy in the header:\n%s", stderr)
	}
	var doc map[string][]map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("dump policy -o json: %v\n%s", err, out)
	}
	rules := map[string]map[string]any{}
	for _, r := range doc["policy"] {
		rules[fmt.Sprint(r["rule"])] = r
	}
	if len(rules) != 4 {
		t.Errorf("dump policy: %d rules, want the default group's 4:\n%s", len(rules), out)
	}
	r := rules["ingress-default-v4"]
	if r["group"] != lab.DefaultGroupID || r["direction"] != "ingress" || r["ethertype"] != "IPv4" ||
		!strings.Contains(fmt.Sprint(r["remote"]), lab.VM1.IP.String()) {
		t.Errorf("dump policy: rule ingress-default-v4 %v; want group %s, ingress, IPv4, remote holding vm1's %s", r, lab.DefaultGroupID, lab.VM1.IP)
	}
}
