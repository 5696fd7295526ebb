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

// enumValues reads a C enum from the BTF of the embedded object, so reason
// and program names have one source: bpf/include/reasons.h.
func enumValues(name string) ([]btf.EnumValue, error) {
	spec, err := bpf.LoadPort()
	if err != nil {
		return nil, err
	}
	var e *btf.Enum
	if err := spec.Types.TypeByName(name, &e); err != nil {
		return nil, fmt.Errorf("enum %s in BTF: %w", name, err)
	}
	return e.Values, nil
}

// reasonTable is what BTF says of every reason: its name and the programs
// that can give it.
type reasonTable struct {
	names map[Reason]string
	progs map[Reason]uint64
}

var reasons = sync.OnceValues(func() (reasonTable, error) {
	t := reasonTable{names: map[Reason]string{}, progs: map[Reason]uint64{}}
	vals, err := enumValues("vxdp_reason")
	if err != nil {
		return t, err
	}
	masks, err := enumValues("vxdp_reason_progs")
	if err != nil {
		return t, err
	}
	byName := map[string]Reason{}
	for _, v := range vals {
		t.names[Reason(v.Value)] = v.Name
		byName[v.Name] = Reason(v.Value)
	}
	for _, m := range masks {
		if r, ok := byName[strings.TrimPrefix(m.Name, "RP_")]; ok {
			t.progs[r] = m.Value
		}
	}
	return t, nil
})

// ReasonName returns the C name of a reason code, e.g. "REDIRECT_REMOTE".
func ReasonName(r Reason) string {
	t, err := reasons()
	if n, ok := t.names[r]; ok && err == nil {
		return n
	}
	return fmt.Sprintf("REASON_%d", r)
}

// progNames name the programs for dumps and metric labels, by enum vxdp_prog.
var progNames = [...]string{ProgPort: "port", ProgUplink: "uplink", ProgVXLAN: "vxlan", ProgBridge: "bridge", ProgDeliver: "deliver", ProgSegment: "segment"}

// ProgName names a program for dumps and metric labels.
func ProgName(p Prog) string {
	if int(p) < len(progNames) {
		return progNames[p]
	}
	return fmt.Sprintf("prog%d", p)
}

// Progs returns every program that counts.
func Progs() []Prog {
	out := make([]Prog, numProgs)
	for i := range out {
		out[i] = Prog(i)
	}
	return out
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

// ProgReasons returns the reasons program p can give: the (program,
// reason) pairs that can occur.
func ProgReasons(p Prog) []Reason {
	t, err := reasons()
	if err != nil {
		return Reasons()
	}
	var out []Reason
	for _, r := range Reasons() {
		if t.progs[r]&(1<<p) != 0 {
			out = append(out, r)
		}
	}
	return out
}

// ReadStats sums the per-CPU stats map. With all it returns every
// (program, reason) pair that can occur, otherwise only non-zero ones.
func ReadStats(m *ebpf.Map, all bool) ([]Counter, error) {
	var out []Counter
	var perCPU []StatValue
	for _, p := range Progs() {
		for _, r := range ProgReasons(p) {
			idx := uint32(int(p)*reasonSlots + int(r))
			if err := m.Lookup(idx, &perCPU); err != nil {
				return nil, fmt.Errorf("read stats[%d]: %w", idx, err)
			}
			c := Counter{Prog: ProgName(p), Reason: ReasonName(r), Verdict: Verdict(r)}
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
