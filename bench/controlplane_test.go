package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildVXDP builds the vxdp binary the benchmark runs as its processes.
func buildVXDP(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "vxdp")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/vxdp/vxdp/cmd/vxdp").CombinedOutput(); err != nil {
		tb.Fatalf("build vxdp: %v\n%s", err, out)
	}
	return bin
}

// A small run: every figure is measured from the processes, every
// receiver gets every event, the full resync reads every record and the
// restart only the changes.
func TestRunControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a server, agents and listeners as processes (~1 min)")
	}
	const ports, changes, agents, receivers = 2000, 10, 3, 8
	r, err := RunControlPlane(context.Background(), ControlPlaneOptions{Binary: buildVXDP(t), Agents: agents,
		FanOut: []int{receivers}, Events: 3, ResyncPorts: []int{ports}, ResyncEvents: 5, DeltaChanges: changes})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.FanOut) != 2 {
		t.Fatalf("fan-out figures %+v, want one per listener mode", r.FanOut)
	}
	for _, f := range r.FanOut {
		if f.Agent.N != agents*3 || f.Floor.N != (receivers-agents)*3 || f.Missed != 0 {
			t.Errorf("%s: %d agent and %d listener deliveries (%d missed), want %d and %d", f.Mode, f.Agent.N, f.Floor.N, f.Missed, agents*3, (receivers-agents)*3)
		}
		if f.Agent.P50 <= 0 || f.Agent.P99 < f.Agent.P50 || f.Floor.P50 <= 0 || f.AgentCPUPerEventMs <= 0 ||
			f.ServerCPUPerDeliveryUs <= 0 || f.AgentPeakRSSMiB <= 0 || f.ServerPeakRSSMiB <= 0 {
			t.Errorf("%s: implausible %+v", f.Mode, f)
		}
	}
	f := r.Resync[0]
	// Full: every port and its status.
	if f.FullRecords < 2*ports || f.FullMs <= 0 || f.FloorFullMs <= 0 || f.PeakRSSMiB <= 0 || f.AgentCPUPerEventMs <= 0 || f.Event.N != 5 {
		t.Errorf("full resync %+v", f)
	}
	// Restart: the new ports and their statuses, nothing else.
	if f.DeltaMode != "delta" || f.DeltaRecords != 2*changes || f.DeltaMs <= 0 || f.SnapshotMB <= 0 {
		t.Errorf("restart read %d records (%s), want %d: %+v", f.DeltaRecords, f.DeltaMode, 2*changes, f)
	}
	var b strings.Builder
	if err := r.WriteTable(&b); err != nil || !strings.Contains(b.String(), "republish") {
		t.Errorf("table (%v):\n%s", err, b.String())
	}
	t.Logf("\n%s", b.String())
}

// BenchmarkControlPlane reports the figures of RunControlPlane at a size
// that fits a test run (vxdp bench controlplane measures the fleet sizes):
// 20 agents and 200 receivers, 10k ports. Each run is one measurement.
func BenchmarkControlPlane(b *testing.B) {
	bin := buildVXDP(b)
	for b.Loop() {
		r, err := RunControlPlane(context.Background(), ControlPlaneOptions{Binary: bin, Agents: 20, FanOut: []int{200},
			ResyncPorts: []int{10000}, Progress: NewProgress(os.Stderr)})
		if err != nil {
			b.Fatal(err)
		}
		for _, f := range r.FanOut {
			b.ReportMetric(f.Agent.P99, f.Mode+"-agent-p99-ms")
			b.ReportMetric(f.Floor.P99, f.Mode+"-floor-p99-ms")
			b.ReportMetric(f.ServerCPUPerDeliveryUs, f.Mode+"-server-us/delivery")
		}
		for _, f := range r.Resync {
			b.ReportMetric(f.FullMs, "full-resync-ms")
			b.ReportMetric(f.DeltaMs, "restart-ms")
			b.ReportMetric(f.AgentCPUPerEventMs, "agent-cpu-ms/event")
			b.ReportMetric(f.PeakRSSMiB, "agent-peak-rss-MiB")
		}
	}
}
