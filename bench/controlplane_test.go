package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// A small run: every figure is measured and plausible, the full resync
// reads every record and the delta resync only the changes.
func TestRunControlPlane(t *testing.T) {
	const ports, changes = 2000, 10
	r, err := RunControlPlane(context.Background(), ControlPlaneOptions{Agents: []int{4}, Events: 3, ResyncPorts: []int{ports}, DeltaChanges: changes})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Convergence) != 2 {
		t.Fatalf("convergence figures %+v", r.Convergence)
	}
	for _, f := range r.Convergence {
		if f.P50Ms <= 0 || f.P99Ms < f.P50Ms || f.LastMaxMs < f.LastP50Ms || f.Events != 3 {
			t.Errorf("convergence %+v", f)
		}
	}
	f := r.Resync[0]
	// Full: every port and its status, plus the agent records.
	if f.FullRecords < 2*ports || f.FullMs <= 0 || f.HeapMB <= 0 || f.SnapshotMB <= 0 {
		t.Errorf("full resync %+v", f)
	}
	// Delta: the new ports and statuses, and the agent record of the host
	// they are bound to; nothing else.
	if f.DeltaRecords != 2*changes+1 || f.DeltaMs <= 0 {
		t.Errorf("delta resync read %d records, want %d: %+v", f.DeltaRecords, 2*changes+1, f)
	}
	var b strings.Builder
	if err := r.WriteTable(&b); err != nil || !strings.Contains(b.String(), "migration") {
		t.Errorf("table (%v):\n%s", err, b.String())
	}
}

// BenchmarkControlPlane reports the figures of RunControlPlane (each
// sub-benchmark runs once; the setup dominates b.N).
func BenchmarkControlPlane(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("convergence/agents=%d", n), func(b *testing.B) {
			figs, err := cpConvergence(ctx, n, 20, cpQuiet())
			if err != nil {
				b.Fatal(err)
			}
			for _, f := range figs {
				b.ReportMetric(f.P50Ms, f.Kind+"-p50-ms")
				b.ReportMetric(f.P99Ms, f.Kind+"-p99-ms")
				b.ReportMetric(f.LastMaxMs, f.Kind+"-last-max-ms")
			}
		})
	}
	for _, p := range []int{10000, 100000} {
		b.Run(fmt.Sprintf("resync/ports=%d", p), func(b *testing.B) {
			f, err := cpResync(ctx, p, 100, cpQuiet())
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(f.FullMs, "full-ms")
			b.ReportMetric(float64(f.FullRecords), "full-records")
			b.ReportMetric(f.DeltaMs, "delta-ms")
			b.ReportMetric(float64(f.DeltaRecords), "delta-records")
			b.ReportMetric(f.HeapMB, "heap-MB")
			b.ReportMetric(f.SnapshotMB, "snapshot-MB")
		})
	}
}
