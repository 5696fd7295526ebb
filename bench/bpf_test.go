package bench

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("skipped: loading and test-running BPF programs needs root (CI runs as root)")
	}
}

// TestRunBPF runs the whole report briefly. compare fails a case whose
// runs do not all count its reason (and security-group event), so this
// checks that every case measures the path it names.
func TestRunBPF(t *testing.T) {
	requireRoot(t)
	rep, err := RunBPF(context.Background(), BPFOptions{Repeat: 1000, Passes: 2, SGRules: []int{1, 1000}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Cases {
		figs := []BPFFigure{c.Single}
		if c.Loop != nil {
			figs = append(figs, *c.Loop)
		}
		for _, f := range figs {
			if f.Runs != 1000 || f.Passes != 2 || f.NsPerPacket <= 0 || f.EmptyNsPerPacket <= 0 || f.MinNs > f.NsPerPacket || f.NsPerPacket > f.MaxNs {
				t.Errorf("%s %s: %+v", c.Hook, c.Name, f)
			}
		}
		if c.Flow == "new" && c.Loop != nil {
			t.Errorf("%s: a loop would find the flow tracked after its first run: %+v", c.Name, c)
		}
	}
	var out bytes.Buffer
	if err := rep.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"SG 1000 rules, new flow", "deliver: port without groups", "port: proxy ARP reply", "target ",
		"port: local switch, vxdp monitor --trace", "uplink: decap+redirect (UDP), vxdp monitor --trace"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunBPFRejectsBadSizes(t *testing.T) {
	for _, o := range []BPFOptions{{Repeat: -1}, {Passes: -1}, {SGRules: []int{0}}, {SGRules: []int{10001}}} {
		if _, err := RunBPF(context.Background(), o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// BenchmarkBPF reports each case's kernel-measured time per packet as
// ns/op (single-run figure for programs that rewrite the packet and for
// new flows, loop figure otherwise) and its ratio to the empty program
// of the same hook, measured the same way in the same run.
func BenchmarkBPF(b *testing.B) {
	requireRoot(b)
	l, err := newBPFLab()
	if err != nil {
		b.Fatal(err)
	}
	defer l.close()
	for _, c := range l.cases([]int{1, 1000}) {
		b.Run(c.id, func(b *testing.B) {
			if err := l.prepare(c); err != nil {
				b.Fatal(err)
			}
			f, err := l.compare(context.Background(), c, c.rewrites || c.flow == "new", b.N)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(f.NsPerPacket, "ns/op")
			b.ReportMetric(f.EmptyNsPerPacket, "empty-ns/op")
			b.ReportMetric(f.Ratio, "x-empty")
		})
	}
}
