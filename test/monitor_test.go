package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxdp/vxdp/frames"
	"github.com/vxdp/vxdp/lab"
)

// startMonitor runs `vxdp monitor` on node with args until it printed n
// events (or 10 s passed) and returns its output.
func startMonitor(t *testing.T, l *lab.Lab, node string, n int, args ...string) func() []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	all := append([]string{"monitor", "--netns", l.NS(node), "--instance", l.Instance(node), "--count", fmt.Sprint(n)}, args...)
	cmd := exec.CommandContext(ctx, vxdpBinary(t), all...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // emission on before the traffic
	return func() []byte {
		defer cancel()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("vxdp %s: %v\n%s", strings.Join(all, " "), err, errb.String())
		}
		return out.Bytes()
	}
}

type monEvent struct {
	Program, Reason, Verdict, Device, Frame string
	VNI                                     uint32
	Length                                  uint32
}

func parseEvents(t *testing.T, out []byte) []monEvent {
	t.Helper()
	var evs []monEvent
	for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		var e monEvent
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("monitor line %q: %v", line, err)
		}
		evs = append(evs, e)
	}
	return evs
}

// TestMonitor: `vxdp monitor` shows a drop provoked by a rogue VTEP and
// one by a spoofed MAC with program, reason, device, VNI and frame; with
// --trace and -w it writes a pcapng that tshark decodes, VNI included.
func TestMonitor(t *testing.T) {
	l := newLab(t, lab.Config{Rogue: true})

	// A rogue VTEP's VXLAN to node4.
	wait := startMonitor(t, l, "node4", 1, "--reason", "DROP_VTEP_UNKNOWN", "--json")
	inner := frames.UDP4(vmMAC(lab.VM2), vmMAC(lab.VM1), lab.VM2.IP, lab.VM1.IP, 40000, 9)
	if err := lab.SendUDP(l.NS("rogue"), netip.AddrPortFrom(lab.NodeIP("node4"), lab.VXLANPort), lab.VXLAN(100, inner)); err != nil {
		t.Fatal(err)
	}
	evs := parseEvents(t, wait())
	want := monEvent{Program: "uplink", Reason: "DROP_VTEP_UNKNOWN", Verdict: "drop", Device: lab.VTEPDev, VNI: 100,
		Frame: fmt.Sprintf("vxlan 100: %s > %s %s > %s udp 40000 > 9", lab.VM2.MAC, lab.VM1.MAC, lab.VM2.IP, lab.VM1.IP)}
	if len(evs) != 1 || evs[0].Program != want.Program || evs[0].Reason != want.Reason || evs[0].Verdict != want.Verdict ||
		evs[0].Device != want.Device || evs[0].VNI != want.VNI || !strings.HasSuffix(evs[0].Frame, want.Frame) {
		t.Errorf("monitor of a rogue VTEP: %+v, want %+v", evs, want)
	}

	// vm2 sends from a MAC that is not its own: the text line.
	wait = startMonitor(t, l, "node3", 1, "--reason", "DROP_SPOOF_MAC")
	stray := frames.MAC("02:00:00:00:66:66")
	sendFrame(t, l.PortNS(lab.VM2), lab.VMDev, frames.UDP4(stray, vmMAC(lab.VM1), lab.VM2.IP, lab.VM1.IP, 5000, 9))
	line := strings.Fields(string(wait()))
	wantLine := []string{"port", "DROP_SPOOF_MAC", lab.VM2.Tap(), "vni", "100", "len", "74", stray.String(), ">", lab.VM1.MAC.String(),
		lab.VM2.IP.String(), ">", lab.VM1.IP.String(), "udp", "5000", ">", "9"}
	if len(line) < 2 || strings.Join(line[1:], " ") != strings.Join(wantLine, " ") {
		t.Errorf("monitor of a spoofed MAC:\n got %q\nwant <time> %q", line, wantLine)
	}

	// A trace of a ping vm2 -> vm1 into a pcapng, read back by tshark.
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Fatal("tshark is missing: make test installs it (scripts/deps.sh)")
	}
	pcap := filepath.Join(t.TempDir(), "trace.pcapng")
	wait = startMonitor(t, l, "node4", 4, "--trace", "--reason", "REDIRECT", "-w", pcap)
	ping(t, l, lab.VM2, lab.VM1.IP.String(), 2)
	wait()
	// 8472 is the Linux port; Wireshark knows VXLAN by 4789.
	out, err := exec.Command("tshark", "-r", pcap, "-d", "udp.port==8472,vxlan", "-Y", "vxlan",
		"-T", "fields", "-e", "vxlan.vni", "-e", "frame.comment").Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "100\t") || !strings.Contains(string(out), "vxdp uplink REDIRECT_LOCAL") {
		t.Errorf("tshark on the monitor's pcapng: want VNI 100 frames with the decision as comment, got:\n%s", out)
	}
	os.Remove(pcap)
}
