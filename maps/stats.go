package maps

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/vxdp/vxdp/bpf"
)

// enumNames reads the names of a C enum from the BTF of the embedded
// object, so reason and program names have one source: bpf/include/vxdp.h.
func enumNames(name string) (map[uint64]string, error) {
	spec, err := bpf.LoadPort()
	if err != nil {
		return nil, err
	}
	var e *btf.Enum
	if err := spec.Types.TypeByName(name, &e); err != nil {
		return nil, fmt.Errorf("enum %s in BTF: %w", name, err)
	}
	out := map[uint64]string{}
	for _, v := range e.Values {
		out[v.Value] = v.Name
	}
	return out, nil
}

var reasonNames = sync.OnceValues(func() (map[uint64]string, error) { return enumNames("vxdp_reason") })

// ReasonName returns the C name of a reason code, e.g. "REDIRECT_REMOTE".
func ReasonName(r Reason) string {
	names, err := reasonNames()
	if n, ok := names[uint64(r)]; ok && err == nil {
		return n
	}
	return fmt.Sprintf("REASON_%d", r)
}

// ProgName names a program for dumps and metric labels.
func ProgName(p Prog) string {
	switch p {
	case ProgPort:
		return "port"
	case ProgUplink:
		return "uplink"
	}
	return fmt.Sprintf("prog%d", p)
}

// Verdict is the action class of a reason: pass, drop, redirect or tx.
func Verdict(r Reason) string {
	v, _, _ := strings.Cut(ReasonName(r), "_")
	return strings.ToLower(v)
}

// Counter is one (program, reason) counter summed over all CPUs.
type Counter struct {
	Prog    string `json:"program"`
	Reason  string `json:"reason"`
	Verdict string `json:"verdict"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Reasons returns every defined reason code.
func Reasons() []Reason {
	var out []Reason
	for r := Reason(1); r < bpf.PortVxdpReasonREASON_MAX; r++ {
		out = append(out, r)
	}
	return out
}

// ReadStats sums the per-CPU stats map. With all it returns every
// (program, reason) pair, otherwise only non-zero ones.
func ReadStats(m *ebpf.Map, all bool) ([]Counter, error) {
	var out []Counter
	for p := 0; p < numProgs; p++ {
		for _, r := range Reasons() {
			var perCPU []StatValue
			idx := uint32(p*reasonSlots + int(r))
			if err := m.Lookup(idx, &perCPU); err != nil {
				return nil, fmt.Errorf("read stats[%d]: %w", idx, err)
			}
			c := Counter{Prog: ProgName(Prog(p)), Reason: ReasonName(r), Verdict: Verdict(r)}
			for _, v := range perCPU {
				c.Packets += v.Packets
				c.Bytes += v.Bytes
			}
			if all || c.Packets > 0 {
				out = append(out, c)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Prog < out[j].Prog })
	return out, nil
}

// Packets returns the packet count of (prog, reason) in counters.
func Packets(counters []Counter, prog, reason string) uint64 {
	for _, c := range counters {
		if c.Prog == prog && c.Reason == reason {
			return c.Packets
		}
	}
	return 0
}
