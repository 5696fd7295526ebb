package bench

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/state"
)

// TestSGGroup: a group of n rules has n rules in its direction (plus the
// two default egress rules of an ingress group), no duplicates, only its
// last rule matches the benchmark's traffic, and it compiles the way the
// agent compiles it, up to the largest size the benches use.
func TestSGGroup(t *testing.T) {
	allow := netip.MustParsePrefix("172.16.100.19/32")
	for _, tc := range []struct {
		n   int
		dir state.Direction
	}{{1, state.Ingress}, {100, state.Ingress}, {1000, state.Egress}, {10000, state.Ingress}} {
		t.Run(fmt.Sprintf("%d %s", tc.n, tc.dir), func(t *testing.T) {
			g := SGGroup("g", tc.n, tc.dir, allow)
			var inDir []state.Rule
			for _, r := range g.Rules {
				if r.Direction == tc.dir {
					inDir = append(inDir, r)
				}
			}
			wantOther := map[state.Direction]int{state.Ingress: 2, state.Egress: 0}[tc.dir]
			if len(inDir) != tc.n || len(g.Rules) != tc.n+wantOther {
				t.Fatalf("%d rules, %d in direction %s; want %d and %d", len(g.Rules), len(inDir), tc.dir, tc.n+wantOther, tc.n)
			}
			seen := map[string]bool{}
			for i, r := range inDir {
				key := fmt.Sprint(r.Protocol, r.PortMin, r.PortMax, r.ICMPType, r.RemoteGroup, r.RemotePrefixes)
				if r.ICMPType != nil {
					key += fmt.Sprint(*r.ICMPType)
				}
				if seen[key] {
					t.Errorf("rule %d duplicates another: %+v", i, r)
				}
				seen[key] = true
				matches := r.AnyRemote() && r.Protocol == 0
				for _, p := range r.RemotePrefixes {
					matches = matches || p.Contains(allow.Addr())
				}
				if last := i == len(inDir)-1; matches != last {
					t.Errorf("rule %d (%+v) matches the benchmark's traffic: %v", i, r, matches)
				}
			}
			if _, _, err := dataplane.PolicyEntries(1, g); err != nil {
				t.Errorf("does not compile: %v", err)
			}
		})
	}
}

func TestFigureOf(t *testing.T) {
	for _, tc := range []struct {
		runs        []float64
		med, lo, hi float64
	}{{[]float64{3, 1, 2}, 2, 1, 3}, {[]float64{4, 1, 3, 2}, 2.5, 1, 4}, {[]float64{7}, 7, 7, 7}} {
		f := figureOf(tc.runs)
		if f.Median != tc.med || f.Min != tc.lo || f.Max != tc.hi || len(f.Runs) != len(tc.runs) {
			t.Errorf("%v: %+v, want median %v min %v max %v", tc.runs, f, tc.med, tc.lo, tc.hi)
		}
	}
}

func TestPathOptionsRefuseWhatCannotRun(t *testing.T) {
	for _, o := range []PathOptions{
		{Suite: "speed"},
		{Modes: []string{"ovs"}},
		{Suite: SuiteGuest, Modes: []string{ModeFlat, ModeBPF}},
		{Suite: SuiteSG, Modes: []string{ModePlain}},
		{Suite: SuiteSG, SGRules: []int{0}},
		{Runs: -1},
		{Window: time.Millisecond},
		{Suite: SuiteGuest, Metrics: []string{"udp64"}},
	} {
		if _, err := o.withDefaults(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestSNMPCounters(t *testing.T) {
	raw := []byte("Ip: Forwarding DefaultTTL\nIp: 1 64\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors\nUdp: 120 3 0 5 880\n")
	c, err := snmpCounters(raw, "Udp:")
	if err != nil || c["InDatagrams"] != 120 || c["RcvbufErrors"] != 880 {
		t.Errorf("%v %v", c, err)
	}
	if _, err := snmpCounters(raw, "Tcp:"); err == nil {
		t.Error("missing protocol accepted")
	}
}
