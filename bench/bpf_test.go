package bench

import (
	"bytes"
	"context"
	"os"
	"testing"
)

func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("skipped: loading and test-running BPF programs needs root (CI runs as root)")
	}
}

// TestRunBPF runs the whole report briefly. compare fails a case whose
// runs do not all count its reason, so this checks that every case
// measures the path it names.
func TestRunBPF(t *testing.T) {
	requireRoot(t)
	rep, err := RunBPF(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Cases {
		figs := []BPFFigure{c.Single}
		if c.Loop != nil {
			figs = append(figs, *c.Loop)
		}
		for _, f := range figs {
			if f.Runs != 1000 || f.NsPerPacket <= 0 || f.EmptyNsPerPacket <= 0 {
				t.Errorf("%s %s: %+v", c.Hook, c.Name, f)
			}
		}
	}
	var out bytes.Buffer
	if err := rep.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
}

func TestRunBPFRejectsRepeat(t *testing.T) {
	if _, err := RunBPF(context.Background(), 0); err == nil {
		t.Error("repeat 0 accepted")
	}
}

// BenchmarkBPF reports each case's kernel-measured time per packet as
// ns/op (single-run figure for programs that rewrite the packet, loop
// figure otherwise) and its ratio to the empty program of the same hook,
// measured the same way in the same run.
func BenchmarkBPF(b *testing.B) {
	requireRoot(b)
	l, err := newBPFLab()
	if err != nil {
		b.Fatal(err)
	}
	defer l.close()
	for _, c := range l.cases() {
		b.Run(c.id, func(b *testing.B) {
			f, err := l.compare(context.Background(), c, c.rewrites, b.N)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(f.NsPerPacket, "ns/op")
			b.ReportMetric(f.EmptyNsPerPacket, "empty-ns/op")
			b.ReportMetric(f.Ratio, "x-empty")
		})
	}
}
