package test

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vxdp/vxdp/lab"
)

// TestGuest boots vm1 as a real qemu guest (virtio-net on a tap named
// like Nova's, in node4) and checks what a VM on a hypervisor gets: ping
// through the BPF path both ways, and TCP into the guest delivered as the
// aggregates the kernel's GRO builds (more than one wire frame per packet
// into the tap), not one MTU frame per packet. The guest's image comes
// from Debian packages (cached under /var/cache/vxdp/guest), so the first
// run downloads a kernel package. Throughput against the kernel path is
// `make test-vm`'s (bench path --guest), not this test's.
func TestGuest(t *testing.T) {
	requireRoot(t)
	l := newLab(t, lab.Config{Guest: "vm1"})
	guest := lab.VM1

	before := snapshot(t, l, "node4")
	ping(t, l, lab.VM2, guest.IP.String(), 5)
	after := snapshot(t, l, "node4")
	if p, _ := deliveredByBPF(before, after, "node4"); p < 5 {
		t.Errorf("node4 delivered %d packets to the guest in BPF, want ≥ 5 (grown:%s)", p, nonZeroGrowth(before, after, "node4"))
	}
	if p, _ := grown(before, after, "node4", "port", "REDIRECT_REMOTE"); p < 5 {
		t.Errorf("node4's port program encapsulated %d of the guest's replies, want ≥ 5 (grown:%s)", p, nonZeroGrowth(before, after, "node4"))
	}

	// TCP vm2 -> guest: the guest's iperf3 server receives; node4 hands
	// the guest GRO aggregates (the vxlan program's redirects).
	before = snapshot(t, l, "node4")
	sent := iperf(t, l.PortNS(lab.VM2), guest.IP.String(), false)
	after = snapshot(t, l, "node4")
	p, b := grown(before, after, "node4", "vxlan", "REDIRECT_LOCAL")
	if p == 0 {
		t.Fatalf("node4's vxlan program redirected nothing to the guest: TCP did not take the GRO path (grown:%s)", nonZeroGrowth(before, after, "node4"))
	}
	perPacket := b / p
	t.Logf("vm2 -> guest: %d bytes by iperf3; %d packets, %d bytes into the tap (%d B per packet)", sent, p, b, perPacket)
	if perPacket < 3*lab.NetworkMTU {
		t.Errorf("the guest got %d B per packet; GRO aggregates carry several MTU frames (want ≥ %d)", perPacket, 3*lab.NetworkMTU)
	}

	// TCP guest -> vm2 (iperf3 -R): qemu's GSO frames through the port program.
	before = snapshot(t, l, "node4")
	iperf(t, l.PortNS(lab.VM2), guest.IP.String(), true)
	after = snapshot(t, l, "node4")
	if p, _ := grown(before, after, "node4", "port", "REDIRECT_REMOTE", "REDIRECT_REMOTE_GSO"); p == 0 {
		t.Errorf("node4's port program encapsulated none of the guest's TCP (grown:%s)", nonZeroGrowth(before, after, "node4"))
	}
}

// iperf runs a 2-second iperf3 client in ns against server (reverse: the
// server sends) and returns the bytes the receiving side got. The guest's
// iperf3 server takes one test at a time and, emulated on a loaded
// machine, may still be closing the previous one: a refused or reset
// start is tried again, up to three times.
func iperf(t *testing.T, ns, server string, reverse bool) int64 {
	t.Helper()
	args := []string{"netns", "exec", ns, "iperf3", "-c", server, "-t", "2", "-J", "--connect-timeout", "5000"}
	if reverse {
		args = append(args, "-R")
	}
	var res struct {
		End struct {
			SumReceived struct {
				Bytes int64 `json:"bytes"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		out, err := exec.CommandContext(ctx, "ip", args...).Output()
		cancel()
		res.Error = ""
		if jerr := json.Unmarshal(out, &res); jerr != nil && err == nil {
			err = jerr
		}
		retry := strings.Contains(res.Error, "reset") || strings.Contains(res.Error, "refused") || strings.Contains(res.Error, "busy")
		if (err != nil || res.Error != "") && retry && attempt < 3 {
			t.Logf("iperf3 %v: %s; again", args, res.Error)
			time.Sleep(time.Second)
			continue
		}
		if err != nil || res.Error != "" {
			t.Fatalf("iperf3 %v: %v %s\n%s", args, err, res.Error, out)
		}
		break
	}
	if res.End.SumReceived.Bytes == 0 {
		t.Fatalf("iperf3 %v: nothing received", args)
	}
	return res.End.SumReceived.Bytes
}
