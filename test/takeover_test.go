package test

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vxdp/vxdp/lab"
	"github.com/vxdp/vxdp/state"
)

// neutronBuild builds node's network the way Neutron's linuxbridge agent
// does with l2population (ensure_vxlan, ensure_bridge, add_tap_interface,
// then the l2pop fdb_add): `ip link add vxlan-100 type vxlan id 100 dev
// eth2 srcport 0 0 dstport 8472 ttl 32 local <VTEP> proxy` (learning and
// UDP checksums left at the kernel's defaults: on), MTU, IPv6 off, the
// bridge with forward delay 0, the vxlan device and the tap on it, `bridge
// fdb append` of each flood entry, `bridge fdb replace` of each remote
// port and `ip neigh replace … nud permanent` of its address.
func neutronBuild(t *testing.T, l *lab.Lab, node string) {
	t.Helper()
	ns := l.NS(node)
	want := l.DesiredState(node)
	n := want.Networks[0]
	br, vx, tap := state.BridgeName(n.ID), state.VXLANName(n.VNI), want.LocalPorts[0].TapName()
	cmds := [][]string{
		{"ip", "link", "add", vx, "type", "vxlan", "id", fmt.Sprint(n.VNI), "dev", "eth2", "srcport", "0", "0",
			"dstport", fmt.Sprint(lab.VXLANPort), "ttl", "32", "local", lab.NodeIP(node).String(), "proxy"},
		{"ip", "link", "set", vx, "mtu", fmt.Sprint(lab.NetworkMTU)},
		{"sysctl", "-qw", "net.ipv6.conf." + vx + ".disable_ipv6=1"},
		{"ip", "link", "set", vx, "up"},
		{"ip", "link", "add", br, "type", "bridge", "forward_delay", "0", "stp_state", "0"},
		{"ip", "link", "set", br, "up"},
		{"ip", "link", "set", vx, "master", br},
		{"ip", "link", "set", tap, "master", br},
	}
	for _, v := range want.FloodList(n.ID) {
		cmds = append(cmds, []string{"bridge", "fdb", "append", "00:00:00:00:00:00", "dev", vx, "dst", v.IP.String()})
	}
	for _, p := range want.RemotePorts {
		cmds = append(cmds, []string{"bridge", "fdb", "replace", p.MAC.String(), "dev", vx, "dst", p.VTEP.String()},
			[]string{"ip", "neigh", "replace", p.IPs[0].String(), "lladdr", p.MAC.String(), "dev", vx, "nud", "permanent"})
	}
	for _, c := range cmds {
		if out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, c...)...).CombinedOutput(); err != nil {
			t.Fatalf("%s in %s: %v %s", strings.Join(c, " "), ns, err, out)
		}
	}
}

// vxlanDetails is `ip -d link show DEV`'s vxlan line and the alias.
func vxlanDetails(t *testing.T, ns, dev string) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-d", "link", "show", dev).Output()
	if err != nil {
		t.Fatalf("ip -d link show %s: %v", dev, err)
	}
	var keep []string
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "vxlan id") || strings.HasPrefix(line, "alias") {
			// Keep the tunnel's settings; the bridge_slave counters and the
			// like vary.
			keep = append(keep, regexp.MustCompile(` addrgenmode.*`).ReplaceAllString(line, ""))
		}
	}
	return strings.Join(keep, "\n")
}

func ifindexOf(t *testing.T, ns, dev string) int {
	t.Helper()
	link, err := lab.LinkInfo(ns, dev)
	if err != nil {
		t.Fatalf("%s in %s: %v", dev, ns, err)
	}
	return link.Attrs().Index
}

// pingDuring pings vm2 -> vm1 every 10 ms while during runs, and fails t
// unless every echo was answered.
func pingDuring(t *testing.T, l *lab.Lab, what string, during func()) {
	t.Helper()
	const count = 700 // about 8 s at one every 10 ms
	done := make(chan lab.PingResult, 1)
	errc := make(chan error, 1)
	go func() {
		res, err := lab.Ping(l.PortNS(lab.VM2), lab.VM1.IP, count, 10*time.Millisecond, time.Second)
		errc <- err
		done <- res
	}()
	time.Sleep(1500 * time.Millisecond)
	during()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	res := <-done
	t.Logf("%s under a 10 ms ping: %d of %d answered", what, res.Received, res.Sent)
	if res.Sent != count || res.Received != res.Sent {
		t.Errorf("%s: %d of %d pings lost", what, res.Sent-res.Received, res.Sent)
	}
}

// TestTakeoverFromNeutronUnderPing: node4, built the way Neutron's linuxbridge
// agent builds it (learning, udpcsum, proxy and ttl 32 on vxlan-100: all
// things vxdp would not choose), is taken over by a vxdp agent while vm2
// pings vm1 every 10 ms: no ping is lost, vxlan-100 is adopted (same
// device, learning turned off in place) and BPF forwards. Then the way
// back, under the ping too: the agent stops, `vxdp agent --cleanup` hands
// the devices back exactly as Neutron built them (vxdp's changes undone,
// FDB kept) and removes its programs, so Neutron's agent, which only
// creates what does not exist, finds its own objects again.
func TestTakeoverFromNeutronUnderPing(t *testing.T) {
	requireBinary(t, "bridge")
	l := newLab(t, lab.Config{})
	const node = "node4"
	ns := l.NS(node)
	cleanup := func() {
		t.Helper()
		cmd := exec.Command(l.Binary, "agent", "--cleanup", "--netns", ns, "--instance", l.Instance(node),
			"--bpffs", l.BPFFS, "--state-dir", l.StateDir(node))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("vxdp agent --cleanup: %v\n%s", err, out)
		}
	}

	// node4 as Neutron's agent left it.
	if err := l.StopAgent(node); err != nil {
		t.Fatal(err)
	}
	cleanup()
	for _, dev := range []string{"vxlan-100", state.BridgeName(lab.Net100ID)} {
		if _, err := lab.LinkInfo(ns, dev); err == nil {
			t.Fatalf("%s survived the cleanup of the lab's own agent", dev)
		}
	}
	neutronBuild(t, l, node)
	neutron := vxlanDetails(t, ns, "vxlan-100")
	index := ifindexOf(t, ns, "vxlan-100")
	ping(t, l, lab.VM2, lab.VM1.IP.String(), 5)
	t.Logf("Neutron's vxlan-100: %s", neutron)

	before := snapshot(t, l, "node3")
	pingDuring(t, l, "takeover", func() {
		if err := l.StartAgent(node); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := l.WaitNodeApplied(ctx, node); err != nil {
			t.Fatal(err)
		}
	})
	if got := ifindexOf(t, ns, "vxlan-100"); got != index {
		t.Errorf("vxlan-100 was recreated (ifindex %d, was %d)", got, index)
	}
	adopted := vxlanDetails(t, ns, "vxlan-100")
	if !strings.Contains(adopted, "alias vxdp:"+l.Instance(node)+" adopted") || !strings.Contains(adopted, "nolearning") || !strings.Contains(adopted, "proxy") || !strings.Contains(adopted, "udpcsum") {
		t.Errorf("vxlan-100 after the takeover:\n%s\nwant it adopted, learning off, proxy and udpcsum kept", adopted)
	}
	after := snapshot(t, l, "node4")
	if p, _ := deliveredByBPF(counters{}, after, "node4"); p == 0 {
		t.Errorf("node4 delivered nothing in BPF after the takeover: %s", nonZeroGrowth(before, after, "node4"))
	}

	// The way back.
	pingDuring(t, l, "cleanup", func() {
		if err := l.StopAgent(node); err != nil {
			t.Fatal(err)
		}
		cleanup()
	})
	if got := vxlanDetails(t, ns, "vxlan-100"); got != neutron {
		t.Errorf("vxlan-100 after the cleanup:\n%s\nwant it as Neutron built it:\n%s", got, neutron)
	}
	if got := ifindexOf(t, ns, "vxlan-100"); got != index {
		t.Errorf("vxlan-100 was recreated by the cleanup")
	}
	if got, want := kernelSelfFDB(t, ns, "vxlan-100"), seedFDB[node]; !slices.Equal(got, want) {
		t.Errorf("fdb of vxlan-100 after the cleanup:\n  %s\nwant the l2pop entries kept:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	for _, dev := range []string{"eth2", "vxlan-100", state.BridgeName(lab.Net100ID), lab.VM1.Tap()} {
		if progs, err := lab.BPFAttachments(ns, dev); err != nil || len(progs) != 0 {
			t.Errorf("programs left on %s after the cleanup: %v %v", dev, progs, err)
		}
	}
	if l.PinsExist(node) {
		t.Errorf("pins of %s left after the cleanup", node)
	}
}
