package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vxdp/vxdp/lab"
	"github.com/vxdp/vxdp/maps"
)

// binaryEnv passes an already built vxdp binary to a re-executed test
// binary (see TestTeardownAfterCrash).
const binaryEnv = "VXDP_E2E_BINARY"

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
	binDir    string
	labSeq    atomic.Int32
)

// e2eRoot holds the directory of every lab these tests make, so a run can
// tear down what a crashed run left behind.
var e2eRoot = filepath.Join(os.TempDir(), "vxdp-e2e")

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		sweepStaleLabs()
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// sweepStaleLabs tears down labs of earlier runs whose test process is gone.
func sweepStaleLabs() {
	ents, _ := os.ReadDir(e2eRoot)
	for _, e := range ents {
		dir := filepath.Join(e2eRoot, e.Name())
		m, err := lab.ReadManifest(dir)
		if err != nil || processAlive(m.Owner) {
			continue
		}
		fmt.Fprintf(os.Stderr, "tearing down lab %s left by test process %d\n", dir, m.Owner)
		if err := lab.Teardown(dir, os.Stderr); err != nil {
			fmt.Fprintf(os.Stderr, "teardown %s: %v\n", dir, err)
		}
	}
}

func processAlive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("end-to-end test needs root: it builds network namespaces and loads BPF (run `sudo go test ./test/`)")
	}
}

// vxdpBinary builds cmd/vxdp once per test run.
func vxdpBinary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv(binaryEnv); b != "" {
		return b
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "vxdp-e2e-bin-")
		if buildErr != nil {
			return
		}
		binary = filepath.Join(binDir, "vxdp")
		start := time.Now()
		out, err := exec.Command("go", "build", "-o", binary, "github.com/vxdp/vxdp/cmd/vxdp").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/vxdp: %v\n%s", err, out)
		}
		fmt.Fprintf(os.Stderr, "built %s in %v\n", binary, time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// labConfig returns cfg with a prefix and directory unique to this run.
func labConfig(t *testing.T, cfg lab.Config) lab.Config {
	t.Helper()
	cfg.Prefix = fmt.Sprintf("vxe%dt%d-", os.Getpid(), labSeq.Add(1))
	cfg.Dir = filepath.Join(e2eRoot, cfg.Prefix[:len(cfg.Prefix)-1])
	cfg.Binary = vxdpBinary(t)
	return cfg
}

// newLab brings a lab up for t and tears it down when t ends, failing t
// if anything is left behind. On failure it logs the agents' logs first.
func newLab(t *testing.T, cfg lab.Config) *lab.Lab {
	t.Helper()
	requireRoot(t)
	if cfg.Prefix == "" {
		cfg = labConfig(t, cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	l, err := lab.Up(ctx, cfg, testWriter{t})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Logf("lab %s up in %v", cfg.Prefix, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range lab.Nodes {
				t.Logf("agent log of %s:\n%s", n, l.LogTail(n, 40))
			}
		}
		if err := l.Close(); err != nil {
			t.Errorf("teardown: %v", err)
		}
		if left := lab.Leftovers(l.Config); len(left) > 0 {
			t.Errorf("teardown left behind: %v", left)
		}
	})
	return l
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-min(len(p), 1)]))
	return len(p), nil
}

// counters is a snapshot of every node's BPF counters ("node" -> counters).
type counters map[string][]maps.Counter

func snapshot(t *testing.T, l *lab.Lab, nodes ...string) counters {
	t.Helper()
	out := counters{}
	for _, n := range nodes {
		cs, err := l.Counters(n)
		if err != nil {
			t.Fatalf("counters of %s: %v", n, err)
		}
		out[n] = cs
	}
	return out
}

// grown returns how many packets and bytes (node, prog, reason) grew by
// between two snapshots; reasons are summed.
func grown(before, after counters, node, prog string, reasons ...string) (packets, bytes uint64) {
	for _, c := range after[node] {
		if c.Prog != prog || !slices.Contains(reasons, c.Reason) {
			continue
		}
		packets += c.Packets
		bytes += c.Bytes
		for _, b := range before[node] {
			if b.Prog == c.Prog && b.Reason == c.Reason {
				packets -= b.Packets
				bytes -= b.Bytes
			}
		}
	}
	return packets, bytes
}

// deliveredByBPF is what node delivered to its taps in BPF between two
// snapshots: decapsulated and redirected by the uplink program, or
// redirected by the vxlan program after the kernel's GRO and decap
// (TCP; a GRO packet carries up to 64 KB, so packets count aggregates).
func deliveredByBPF(before, after counters, node string) (packets, bytes uint64) {
	p1, b1 := grown(before, after, node, "uplink", "REDIRECT_LOCAL")
	p2, b2 := grown(before, after, node, "vxlan", "REDIRECT_LOCAL")
	return p1 + p2, b1 + b2
}

// nonZeroGrowth lists every counter of node that grew, for failure messages.
func nonZeroGrowth(before, after counters, node string) string {
	s := ""
	for _, c := range after[node] {
		p, _ := grown(before, after, node, c.Prog, c.Reason)
		if p > 0 {
			s += fmt.Sprintf(" %s/%s+%d", c.Prog, c.Reason, p)
		}
	}
	return s
}

// ping pings from port from to ip and fails t unless every echo is answered.
func ping(t *testing.T, l *lab.Lab, from lab.Port, to string, count int) {
	t.Helper()
	dst := mustAddr(to)
	res, err := lab.Ping(l.PortNS(from), dst, count, 20*time.Millisecond, 2*time.Second)
	if err != nil {
		t.Fatalf("ping %s -> %s: %v", from.Name, to, err)
	}
	if res.Received != res.Sent {
		t.Fatalf("ping %s -> %s: %d/%d replies", from.Name, to, res.Received, res.Sent)
	}
}

// transfer sends size bytes over TCP from one port to another and fails t
// unless they all arrive intact.
func transfer(t *testing.T, l *lab.Lab, from, to lab.Port, size int64) lab.TransferResult {
	t.Helper()
	res, err := lab.TCP(l.PortNS(from), l.PortNS(to), to.IP, size)
	if err != nil {
		t.Fatalf("tcp %s -> %s: %v", from.Name, to.Name, err)
	}
	if !res.OK() || res.Received != size {
		t.Fatalf("tcp %s -> %s: %v", from.Name, to.Name, res)
	}
	t.Logf("tcp %s -> %s: %v", from.Name, to.Name, res)
	return res
}
