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

	"github.com/gopacket/gopacket/layers"

	"github.com/vxdp/vxdp/frames"
	"github.com/vxdp/vxdp/lab"
	"github.com/vxdp/vxdp/state"
)

// startMonitor runs `vxdp monitor` on node with args until it printed n
// events (or 10 s passed) and returns its output.
func startMonitor(t *testing.T, l *lab.Lab, node string, n int, args ...string) func() []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	all := append([]string{"monitor", "--netns", l.NS(node), "--instance", l.Instance(node), "--state-dir", l.StateDir(node),
		"--count", fmt.Sprint(n)}, args...)
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
	Segment                                 *string
	VNI                                     *uint32
	VLANIn                                  *uint16 `json:"vlan_in"`
	VLANOut                                 *uint16 `json:"vlan_out"`
	OuterSrc                                string  `json:"outer_src"`
	OuterDst                                string  `json:"outer_dst"`
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

// TestMonitor: `vxdp monitor` shows a drop provoked by a rogue VTEP, on
// the XDP path and on the kernel's (--host by address: the rogue is
// named), and one by a spoofed MAC, with program, reason, device, VNI and
// frame; a provider network's frames by physical network and VLAN, the
// tag the port program pushes included in the capture; with --trace,
// --host by name and -w it writes a pcapng that tshark decodes, VNI
// included.
func TestMonitor(t *testing.T) {
	l := newLab(t, lab.Config{Rogue: true, Provider: true, Control: lab.ControlNATS})
	node4 := lab.NodeIP("node4").String()

	// A rogue VTEP's VXLAN to node4: the uplink drops it; with IP options
	// it passes the uplink, the kernel decapsulates it and the vxlan
	// program drops it, naming the rogue from the tunnel metadata.
	wait := startMonitor(t, l, "node4", 2, "--reason", "DROP_VTEP_UNKNOWN", "--host", lab.RogueIP.String(), "-o", "json")
	inner := frames.UDP4(vmMAC(lab.VM2), vmMAC(lab.VM1), lab.VM2.IP, lab.VM1.IP, 40000, 9)
	if err := lab.SendUDP(l.NS("rogue"), netip.AddrPortFrom(lab.NodeIP("node4"), lab.VXLANPort), lab.VXLAN(100, inner)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // in this order
	withOptions := frames.FromVTEP(frames.MAC("02:00:c0:a8:f8:09"), linkMAC(t, l.NS("node4"), lab.VTEPDev), lab.RogueIP, lab.NodeIP("node4"), 100, inner)
	withOptions.IP.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
	sendFrame(t, l.NS("rogue"), lab.VTEPDev, withOptions.Bytes())
	evs := parseEvents(t, wait())
	innerText := fmt.Sprintf("%s > %s %s > %s udp 40000 > 9", lab.VM2.MAC, lab.VM1.MAC, lab.VM2.IP, lab.VM1.IP)
	for i, want := range []struct{ program, device string }{{"uplink", lab.VTEPDev}, {"vxlan", state.VXLANName(100)}} {
		if len(evs) != 2 {
			t.Fatalf("monitor of a rogue VTEP: %d events, want 2: %+v", len(evs), evs)
		}
		e := evs[i]
		if e.Program != want.program || e.Reason != "DROP_VTEP_UNKNOWN" || e.Verdict != "drop" || e.Device != want.device ||
			e.VNI == nil || *e.VNI != 100 || e.Segment == nil || *e.Segment != "100" ||
			e.OuterSrc != lab.RogueIP.String() || e.OuterDst != node4 || !strings.HasSuffix(e.Frame, innerText) {
			t.Errorf("monitor of a rogue VTEP, %s program: %+v\nwant %s on %s, vni 100, outer %s > %s, frame ...%s",
				want.program, e, want.program, want.device, lab.RogueIP, node4, innerText)
		}
	}

	// A monitor outlives an apply: node4's agent restarts and applies
	// while it listens, and the next drop is still reported.
	wait = startMonitor(t, l, "node4", 1, "--reason", "DROP_VTEP_UNKNOWN", "-o", "json")
	if err := l.StopAgent("node4"); err != nil {
		t.Fatal(err)
	}
	if err := l.StartAgent("node4"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	if err := l.WaitNodeApplied(ctx, "node4"); err != nil {
		t.Fatal(err)
	}
	if err := lab.SendUDP(l.NS("rogue"), netip.AddrPortFrom(lab.NodeIP("node4"), lab.VXLANPort), lab.VXLAN(100, inner)); err != nil {
		t.Fatal(err)
	}
	if evs := parseEvents(t, wait()); len(evs) != 1 || evs[0].OuterSrc != lab.RogueIP.String() {
		t.Errorf("monitor across an agent restart: %+v, want the rogue's drop", evs)
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

	// tshark is needed from here on.
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Fatal("tshark is missing: make test installs it (scripts/deps.sh)")
	}
	tshark := func(pcap string, args ...string) string {
		t.Helper()
		out, err := exec.Command("tshark", append([]string{"-r", pcap}, args...)...).Output()
		if err != nil {
			t.Fatalf("tshark: %v\n%s", err, out)
		}
		return string(out)
	}

	// vm5 pings vm6 on VLAN 99 of "default": the port program tags the
	// frame and sends it out of eth1; the event names the segment as the
	// operator does (--vni takes that form too), the capture shows the tag.
	pcap := filepath.Join(t.TempDir(), "vlan.pcapng")
	wait = startMonitor(t, l, "node3", 1, "--trace", "--vni", "default/99", "--port", lab.VM5.Tap(), "--reason", "REDIRECT_PROVIDER",
		"-o", "json", "-w", pcap)
	ping(t, l, lab.VM5, lab.VM6.IP.String(), 2)
	evs = parseEvents(t, wait())
	if len(evs) != 1 || evs[0].Program != "port" || evs[0].Segment == nil || *evs[0].Segment != "default/99" || evs[0].VNI != nil ||
		evs[0].VLANIn != nil || evs[0].VLANOut == nil || *evs[0].VLANOut != 99 || evs[0].OuterSrc != "" {
		t.Errorf("monitor of vm5's ping on VLAN 99: %+v\nwant the port program on segment default/99, no VNI, tagged 99 on the way out", evs)
	}
	if out := tshark(pcap, "-T", "fields", "-e", "vlan.id", "-e", "frame.comment"); !strings.Contains(out, "99\tvxdp port REDIRECT_PROVIDER on "+lab.VM5.Tap()) ||
		!strings.Contains(out, "vlan default/99 tag none>99: as sent") || !strings.Contains(out, "\tvxdp port REDIRECT_PROVIDER on "+lab.VM5.Tap()+" (") {
		t.Errorf("tshark on the capture of vm5's ping: want the frame as received untagged and as sent in VLAN 99, got:\n%s", out)
	}

	// A trace of a ping vm2 -> vm1 on node4 from node3 (--host by name, as
	// the control plane registers it) into a pcapng, read back by tshark.
	pcap = filepath.Join(t.TempDir(), "trace.pcapng")
	wait = startMonitor(t, l, "node4", 4, "--trace", "--reason", "REDIRECT", "--host", "node3", "-o", "json", "-w", pcap)
	ping(t, l, lab.VM2, lab.VM1.IP.String(), 2)
	node3 := lab.NodeIP("node3").String()
	for _, e := range parseEvents(t, wait()) {
		if e.OuterSrc != node3 && e.OuterDst != node3 || e.VNI == nil || *e.VNI != 100 {
			t.Errorf("monitor --host node3: %+v, want only frames of VNI 100 from or to %s", e, node3)
		}
	}
	// 8472 is the Linux port; Wireshark knows VXLAN by 4789.
	out := tshark(pcap, "-d", "udp.port==8472,vxlan", "-Y", "vxlan", "-T", "fields", "-e", "vxlan.vni", "-e", "frame.comment")
	if !strings.Contains(out, "100\t") || !strings.Contains(out, "vxdp uplink REDIRECT_LOCAL") || !strings.Contains(out, "outer "+node3+" > "+node4) {
		t.Errorf("tshark on the monitor's pcapng: want VNI 100 frames with the decision as comment, got:\n%s", out)
	}
	os.Remove(pcap)
}
