package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestRunPath runs the BPF-vs-kernel comparison briefly and checks that it
// compares what it claims: the BPF run is carried by the programs, the
// kernel run by the kernel alone, and both moved traffic.
func TestRunPath(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds the netns lab")
	}
	bin := filepath.Join(t.TempDir(), "vxdp")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/vxdp").CombinedOutput(); err != nil {
		t.Fatalf("build vxdp: %v\n%s", err, out)
	}
	r, err := RunPath(t.Context(), PathOptions{Binary: bin, TCPBytes: 16 << 20, Runs: 1, UDPPeriod: 200 * time.Millisecond, Pings: 10})
	if err != nil {
		t.Fatal(err)
	}
	if r.BPF.BPFPackets == 0 || r.KernelRef.BPFPackets != 0 {
		t.Errorf("BPF-redirected packets: bpf run %d (want > 0), kernel run %d (want 0)", r.BPF.BPFPackets, r.KernelRef.BPFPackets)
	}
	for _, f := range []PathFigures{r.BPF, r.KernelRef} {
		if f.TCPGbps <= 0 || f.UDPPPS <= 0 || f.RTTMedian <= 0 {
			t.Errorf("%s: empty figures %+v", f.Dataplane, f)
		}
	}
}
