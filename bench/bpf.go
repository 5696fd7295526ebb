// Package bench measures vxdp against a baseline in the same run: the BPF
// programs' per-packet cost against an empty program of the same hook
// (bench bpf), the lab's paths end to end against the kernel's (bench
// path), the control plane's convergence (bench controlplane).
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/bpf"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/maps"
	"github.com/vxdp/vxdp/state"
)

// Hooks a case runs at.
const (
	HookTC  = "tc"
	HookXDP = "xdp"
)

// BPFFigure is one way of measuring a case, next to the empty program of
// the same hook measured the same way in the same pass: the medians over
// the passes, and the program's min and max.
type BPFFigure struct {
	Runs             int     `json:"runs"`   // program runs per measurement
	Passes           int     `json:"passes"` // measurements
	NsPerPacket      float64 `json:"ns_per_packet"`
	MinNs            float64 `json:"min_ns"`
	MaxNs            float64 `json:"max_ns"`
	EmptyNsPerPacket float64 `json:"empty_ns_per_packet"`
	AboveEmpty       float64 `json:"above_empty_ns"` // median of NsPerPacket - EmptyNsPerPacket
	Ratio            float64 `json:"ratio"`          // NsPerPacket / EmptyNsPerPacket
}

// combine is the figure of several passes.
func combine(passes []BPFFigure) BPFFigure {
	var ns, empty, above []float64
	for _, p := range passes {
		ns, empty, above = append(ns, p.NsPerPacket), append(empty, p.EmptyNsPerPacket), append(above, p.NsPerPacket-p.EmptyNsPerPacket)
	}
	f, e := figureOf(ns), figureOf(empty)
	return BPFFigure{Runs: passes[0].Runs, Passes: len(passes), NsPerPacket: f.Median, MinNs: f.Min, MaxNs: f.Max,
		EmptyNsPerPacket: e.Median, AboveEmpty: figureOf(above).Median, Ratio: f.Median / max(e.Median, 1)}
}

// BPFCase is the measured cost of one path through a program.
type BPFCase struct {
	ID      string `json:"id"`
	Hook    string `json:"hook"`
	Program string `json:"program"`
	Name    string `json:"name"`
	Reason  string `json:"reason"` // the counter every run hit
	// Rules is the security group's size (0: the port has no groups);
	// Flow is "established" (a tracked flow) or "new" (none yet).
	Rules int    `json:"sg_rules,omitempty"`
	Flow  string `json:"flow,omitempty"`
	// Loop runs the program Runs times in one BPF_PROG_TEST_RUN call on
	// the same packet (RunOptions.Repeat), the kernel timing the loop:
	// warm caches, the program's cost plus the loop's few ns. It is nil
	// for a program that rewrites the packet (encap, decap, ARP reply: in
	// a loop every run after the first would see the previous run's
	// output) and for new flows (every run after the first would find
	// the flow tracked).
	Loop *BPFFigure `json:"loop,omitempty"`
	// Single is one call per run, the kernel timing each: every case can
	// be measured so, at the price of a larger fixed cost per run (an skb
	// or xdp_buff set up per call), which the empty program pays too.
	Single BPFFigure `json:"single"`
	// How says how the figures were obtained.
	How string `json:"how"`
}

// BPFReport is the result of RunBPF.
type BPFReport struct {
	Machine Machine   `json:"machine"`
	Repeat  int       `json:"repeat"`
	Cases   []BPFCase `json:"cases"`
	// Passes is the CPU accounting of each pass over every case: what
	// other processes took meanwhile (a noisy pass is flagged).
	Passes      []CPUUse `json:"passes"`
	NoisyPasses int      `json:"noisy_passes"`
	// NotMeasured lists cases BPF_PROG_TEST_RUN cannot run, and why.
	NotMeasured []string `json:"not_measured"`
}

// BPFOptions size RunBPF.
type BPFOptions struct {
	Repeat int // packets per measurement (default DefaultBPFRepeat)
	Passes int // measurements of every case, in turn (default 5)
	// NoiseLimit flags a pass during which other processes and steal took
	// more than this share of the machine (default 0.03).
	NoiseLimit float64
	SGRules    []int // security-group sizes (default 1, 100, 1000, 10000)
	Commit     string
	// Progress shows the cases as they run (nil: nothing).
	Progress *Progress
}

const (
	// DefaultBPFRepeat is a repeat for RunBPF that gives stable figures
	// in a few seconds per case.
	DefaultBPFRepeat = 1_000_000
	// maxSingleRuns caps the single-run figures: each run is a system call.
	maxSingleRuns = 100_000
)

// notMeasured are the cases BPF_PROG_TEST_RUN cannot run.
var notMeasured = []string{
	"port: encap of a GSO frame: a test run can give the skb gso_size but not gso_type, so bpf_skb_adjust_room refuses it " +
		"(bpf/port_test.go checks that); its cost is in bench path's TCP figures",
	"vxlan: redirect of what the kernel decapsulated: it reads the tunnel metadata, which a test run cannot attach",
}

// RunBPF measures the vxdp programs against empty programs of their
// hooks: every case of the port program (local switch with and without
// port security, encapsulation, BUM pass, proxy ARP reply), of the uplink
// program (decapsulation and redirect, TCP passed to GRO, inner BUM,
// non-VXLAN pass) and of the deliver program, and the security-group
// cases (port egress, deliver and uplink ingress; an established and a
// new flow at each size of o.SGRules) next to the same program without
// groups. Loop figures with o.Repeat runs, single-run figures with up to
// 100000. Nothing is attached and no packet leaves: BPF_PROG_TEST_RUN
// only runs the programs, and a redirect verdict is returned, not carried
// out. It needs root (CAP_BPF and CAP_NET_ADMIN).
func RunBPF(ctx context.Context, o BPFOptions) (*BPFReport, error) {
	if o.Repeat == 0 {
		o.Repeat = DefaultBPFRepeat
	}
	if o.SGRules == nil {
		o.SGRules = []int{1, 100, 1000, 10000}
	}
	if o.Passes == 0 {
		o.Passes = 5
	}
	if o.NoiseLimit == 0 {
		o.NoiseLimit = 0.03
	}
	if o.Repeat < 1 || o.Repeat > math.MaxInt32 || o.Passes < 1 {
		return nil, fmt.Errorf("bench bpf: repeat %d, passes %d: want 1 to %d runs, at least 1 pass", o.Repeat, o.Passes, math.MaxInt32)
	}
	for _, n := range o.SGRules {
		if n < 1 || n > 10000 {
			return nil, fmt.Errorf("bench bpf: --sg %d: want 1 to 10000 rules", n)
		}
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("bench bpf: loading and test-running BPF programs needs root")
	}
	lab, err := newBPFLab()
	if err != nil {
		return nil, fmt.Errorf("bench bpf: %w", err)
	}
	defer lab.close()
	rep := &BPFReport{Machine: machineInfo(o.Commit), Repeat: o.Repeat, NotMeasured: notMeasured}
	cases := lab.cases(o.SGRules)
	o.Progress.Start(o.Passes * len(cases))
	defer o.Progress.Done()
	figs := make([]struct{ loop, single []BPFFigure }, len(cases))
	self := os.Getpid()
	for pass := 1; pass <= o.Passes; pass++ {
		if o.Passes > 2 { // not for a quick run: wait for a quiet second
			if err := waitQuiet(ctx, o.NoiseLimit, time.Minute, o.Progress); err != nil {
				return nil, err
			}
		}
		a, err := takeCPU()
		if err != nil {
			return nil, err
		}
		for i, c := range cases {
			o.Progress.Step("pass %d/%d: %s", pass, o.Passes, c.name)
			loop, single, err := lab.run(ctx, c, o.Repeat)
			if err != nil {
				return nil, err
			}
			if loop != nil {
				figs[i].loop = append(figs[i].loop, *loop)
			}
			figs[i].single = append(figs[i].single, single)
		}
		b, err := takeCPU()
		if err != nil {
			return nil, err
		}
		u := cpuBetween(a, b, func(pid int, _ procTimes, _ map[int]procTimes) bool { return pid == self }, o.NoiseLimit)
		if u.Noisy {
			rep.NoisyPasses++
			o.Progress.Logf("noisy: pass %d: other processes and steal took %.1f %% of the machine", pass, 100*u.OtherShare)
		}
		rep.Passes = append(rep.Passes, u)
	}
	for i, c := range cases {
		res := BPFCase{ID: c.id, Hook: c.hook, Program: c.program, Name: c.name, Reason: c.reason, Rules: c.rules, Flow: c.flow,
			Single: combine(figs[i].single), How: c.how(o.Repeat, figs[i].single[0].Runs)}
		if len(figs[i].loop) > 0 {
			loop := combine(figs[i].loop)
			res.Loop = &loop
		}
		rep.Cases = append(rep.Cases, res)
	}
	return rep, nil
}

// run measures one case both ways it can be: in a loop (nil when it
// cannot be) and one call per run.
func (l *bpfLab) run(ctx context.Context, c bpfCase, repeat int) (*BPFFigure, BPFFigure, error) {
	if err := l.prepare(c); err != nil {
		return nil, BPFFigure{}, err
	}
	stop, err := l.listen(c)
	if err != nil {
		return nil, BPFFigure{}, err
	}
	var loop *BPFFigure
	if c.loops() {
		f, err := l.compare(ctx, c, false, repeat)
		if err != nil {
			return nil, BPFFigure{}, errors.Join(err, stop())
		}
		loop = &f
	}
	single, err := l.compare(ctx, c, true, min(repeat, maxSingleRuns))
	return loop, single, errors.Join(err, stop())
}

// loops reports whether a loop of runs measures the case: not when the
// program rewrites the packet, nor for a new flow.
func (c bpfCase) loops() bool { return !c.rewrites && c.flow != "new" }

// how says how the case's figures were obtained.
func (c bpfCase) how(repeat, singleRuns int) string {
	var how []string
	if c.loops() {
		how = append(how, fmt.Sprintf("loop: %d runs in one call", repeat))
	}
	if c.flow == "established" {
		how = append(how, "the first run tracks the flow, the others find it")
	}
	single := fmt.Sprintf("single: %d calls of one run", singleRuns)
	if c.flow == "new" {
		single += ", the flow's conntrack entry deleted between calls (untimed)"
	}
	return strings.Join(append(how, single), "; ")
}

// bpfCase is one path to measure.
type bpfCase struct {
	id            string // benchmark name
	hook, program string
	name          string
	reason        string // counter every run must hit, checked after measuring
	prog          *ebpf.Program
	packet        []byte
	rewrites      bool // the program changes the packet: no loop figure
	insecure      bool // port security off on the sending port
	rules         int  // security group of this size on sgPort
	flow          string
	sgPort        uint32 // the port whose group the case measures
	sgDir         uint8
	sgEvent       maps.SGEvent // what every run must count (rules > 0)
	allow         netip.Addr   // the remote the group's last rule allows
	monitor       bool         // `vxdp monitor` listens (trace: every decision)
	trace         bool
}

// bpfLab is a loaded vxdp over fresh maps holding one network, plus the
// empty programs.
type bpfLab struct {
	maps                  *maps.Set
	port, uplink, deliver *ebpf.Program
	emptyTC, emptyXDP     *ebpf.Program
	closers               []io.Closer
}

// The lab topology, on the seed's private addresses. The port under test
// is ifindex 1: a TC test run's skb device is the namespace's lo.
var (
	labLocalIP  = netip.MustParseAddr("192.168.248.1")
	labVTEP     = netip.MustParseAddr("192.168.248.2")
	labUplink   = net.HardwareAddr{0x02, 0, 0xc0, 0xa8, 0xf8, 0x01}
	labPeerMAC  = net.HardwareAddr{0x02, 0, 0xc0, 0xa8, 0xf8, 0x02}
	labVM       = labPort{ifindex: 1, mac: net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 0x0a}, ip: netip.MustParseAddr("172.16.100.10")}
	labLocalVM  = labPort{ifindex: 3, mac: net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 0x0b}, ip: netip.MustParseAddr("172.16.100.11")}
	labRemoteVM = labPort{mac: net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 1, 0x0a}, ip: netip.MustParseAddr("172.16.100.20")}
)

const (
	labVNI       = 100
	labMTU       = 1450
	labVXLANPort = 8472
	labLo        = 1
	labPolicy    = 1
)

type labPort struct {
	ifindex uint32
	mac     net.HardwareAddr
	ip      netip.Addr
}

func newBPFLab() (*bpfLab, error) {
	l := &bpfLab{}
	ok := false
	defer func() {
		if !ok {
			l.close()
		}
	}()
	set, err := maps.Create()
	if err != nil {
		return nil, err
	}
	l.maps = set
	opts := &ebpf.CollectionOptions{MapReplacements: set.All()}
	var port bpf.PortPrograms
	if err := bpf.LoadPortObjects(&port, opts); err != nil {
		return nil, fmt.Errorf("load port program: %w", err)
	}
	l.closers = append(l.closers, &port)
	var uplink bpf.UplinkPrograms
	if err := bpf.LoadUplinkObjects(&uplink, opts); err != nil {
		return nil, fmt.Errorf("load uplink program: %w", err)
	}
	l.closers = append(l.closers, &uplink)
	var deliver bpf.DeliverPrograms
	if err := bpf.LoadDeliverObjects(&deliver, opts); err != nil {
		return nil, fmt.Errorf("load deliver program: %w", err)
	}
	l.closers = append(l.closers, &deliver)
	l.port, l.uplink, l.deliver = port.VxdpPort, uplink.VxdpUplink, deliver.VxdpDeliver
	if l.emptyTC, err = emptyProgram(ebpf.SchedCLS, 0 /* TC_ACT_OK */); err != nil {
		return nil, err
	}
	if l.emptyXDP, err = emptyProgram(ebpf.XDP, 2 /* XDP_PASS */); err != nil {
		return nil, err
	}
	if err := l.fill(); err != nil {
		return nil, err
	}
	ok = true
	return l, nil
}

// emptyProgram returns verdict and does nothing else.
func emptyProgram(typ ebpf.ProgramType, verdict int32) (*ebpf.Program, error) {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "vxdp_empty",
		Type:         typ,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, verdict), asm.Return()},
	})
	if err != nil {
		return nil, fmt.Errorf("load empty %s program: %w", typ, err)
	}
	return p, nil
}

// fill writes the lab topology: the VM under test with port security on
// (the common case, and the costlier path), a local peer and a remote one.
func (l *bpfLab) fill() error {
	be := func(a netip.Addr) uint32 { return maps.BE32(a) }
	key := func(p labPort) maps.FDBKey { return maps.NewFDBKey(labVNI, [6]byte(p.mac)) }
	puts := []struct {
		m    string
		k, v any
	}{
		{maps.Config, uint32(0), maps.ConfigValue{LocalIp: be(labLocalIP), UplinkIfindex: 1 /* lo, a test run's ingress: VXLAN is taken on the uplink only */, VxlanPort: maps.BE16(labVXLANPort),
			SrcPortMin: 32768, SrcPortMax: 60999, Ttl: 64, UplinkMac: [6]byte(labUplink), Flags: maps.ConfigForward}},
		{maps.Networks, uint32(labVNI), maps.NetInfo{DevIfindex: 10, Mtu: labMTU}},
		{maps.Ports, labVM.ifindex, l.portInfo(labVM)},
		{maps.Ports, labLocalVM.ifindex, l.portInfo(labLocalVM)},
		{maps.PortAddrs, maps.NewPortAddrKey(labVM.ifindex, [6]byte(labVM.mac), netip.PrefixFrom(labVM.ip, 32)), maps.PortAddrValue{Kind: maps.AddrAllowed}},
		{maps.FDB, key(labVM), maps.FDBEntry{Ifindex: labVM.ifindex, Kind: maps.FDBLocal}},
		{maps.FDB, key(labLocalVM), maps.FDBEntry{Ifindex: labLocalVM.ifindex, Kind: maps.FDBLocal}},
		{maps.FDB, key(labRemoteVM), maps.FDBEntry{Vtep: be(labVTEP), Kind: maps.FDBRemote}},
		{maps.VTEPs, maps.NewVNIAddr(labVNI, labVTEP), uint32(0)},
		{maps.ARP, maps.NewVNIAddr(labVNI, labRemoteVM.ip), maps.MACValue{Mac: [6]byte(labRemoteVM.mac)}},
		{maps.TxPorts, labLocalVM.ifindex, uint32(labLo)},
	}
	for _, p := range puts {
		if err := l.maps.Map(p.m).Put(p.k, p.v); err != nil {
			return fmt.Errorf("fill %s: %w", p.m, err)
		}
	}
	return nil
}

func (l *bpfLab) close() {
	for _, p := range []*ebpf.Program{l.emptyTC, l.emptyXDP} {
		if p != nil {
			p.Close()
		}
	}
	for _, c := range l.closers {
		c.Close()
	}
	if l.maps != nil {
		l.maps.Close()
	}
}

func (l *bpfLab) portInfo(p labPort) maps.PortInfo {
	return maps.PortInfo{Vni: labVNI, Mtu: labMTU, Flags: maps.PortSecurity | maps.PortBridged, Mac: [6]byte(p.mac)}
}

// prepare sets the ports as the case needs them: port security, the
// security group (compiled as the agent does) or none, no tracked flow.
func (l *bpfLab) prepare(c bpfCase) error {
	for _, p := range []labPort{labVM, labLocalVM} {
		info := l.portInfo(p)
		if p.ifindex == labVM.ifindex && c.insecure {
			info.Flags = maps.PortBridged
		}
		if c.rules > 0 && p.ifindex == c.sgPort {
			dir := state.Ingress
			if c.sgDir == maps.SGEgress {
				dir = state.Egress
			}
			remote, l4, err := dataplane.PolicyEntries(labPolicy, SGGroup("bench", c.rules, dir, netip.PrefixFrom(c.allow, 32)))
			if err != nil {
				return fmt.Errorf("bench bpf: compile %d rules: %w", c.rules, err)
			}
			if err := replaceAll(l.maps.Map(maps.PolicyRemote), remote); err != nil {
				return err
			}
			if err := replaceAll(l.maps.Map(maps.PolicyL4), l4); err != nil {
				return err
			}
			info.Flags |= maps.PortSG
			info.Policy = labPolicy
			info.Generation = uint32(c.rules)
		}
		if err := l.maps.Map(maps.Ports).Put(p.ifindex, info); err != nil {
			return fmt.Errorf("bench bpf: set port %d: %w", p.ifindex, err)
		}
	}
	return l.clearFlows()
}

// replaceAll makes m hold exactly want.
func replaceAll[K comparable, V any](m *ebpf.Map, want map[K]V) error {
	have, err := maps.Entries[K, V](m)
	if err != nil {
		return err
	}
	for k := range have {
		if err := m.Delete(k); err != nil {
			return err
		}
	}
	for k, v := range want {
		if err := m.Put(k, v); err != nil {
			return err
		}
	}
	return nil
}

// clearFlows deletes every tracked flow.
func (l *bpfLab) clearFlows() error {
	for _, name := range []string{maps.CTTCP, maps.CTOther} {
		if err := replaceAll(l.maps.Map(name), map[maps.CTKey]maps.CTEntry{}); err != nil {
			return fmt.Errorf("bench bpf: clear %s: %w", name, err)
		}
	}
	return nil
}

// forgetFlow returns a function deleting the one flow a run tracked: the
// key is found once (walking a table is slow), then deleted directly.
func (l *bpfLab) forgetFlow() func() error {
	var m *ebpf.Map
	var key maps.CTKey
	return func() error {
		if m == nil {
			for _, name := range []string{maps.CTTCP, maps.CTOther} {
				have, err := maps.Entries[maps.CTKey, maps.CTEntry](l.maps.Map(name))
				if err != nil {
					return err
				}
				for k := range have {
					m, key = l.maps.Map(name), k
				}
			}
			if m == nil {
				return errors.New("bench bpf: the run tracked no flow")
			}
		}
		if err := m.Delete(key); err != nil {
			return fmt.Errorf("bench bpf: the run did not track the flow again: %w", err)
		}
		return nil
	}
}

// compare measures c and the empty program of its hook the same way:
// n runs, one call each (single) or in one call.
func (l *bpfLab) compare(ctx context.Context, c bpfCase, single bool, n int) (BPFFigure, error) {
	empty := l.emptyTC
	if c.hook == HookXDP {
		empty = l.emptyXDP
	}
	base, err := measure(ctx, empty, c.packet, single, n, nil)
	if err != nil {
		return BPFFigure{}, fmt.Errorf("bench bpf: empty %s: %w", c.hook, err)
	}
	if err := l.clearFlows(); err != nil {
		return BPFFigure{}, err
	}
	before, err := l.counts(c)
	if err != nil {
		return BPFFigure{}, err
	}
	var between func() error
	if c.flow == "new" {
		between = l.forgetFlow()
	}
	ns, err := measure(ctx, c.prog, c.packet, single, n, between)
	if err != nil {
		return BPFFigure{}, fmt.Errorf("bench bpf: %s: %w", c.name, err)
	}
	after, err := l.counts(c)
	if err != nil {
		return BPFFigure{}, err
	}
	// At least n: the kernel may repeat a run a signal interrupted. An
	// established flow's first run opens it.
	want := uint64(n)
	if c.flow == "established" {
		want--
	}
	if got := after.reason - before.reason; got < uint64(n) {
		return BPFFigure{}, fmt.Errorf("bench bpf: %s: only %d of %d runs counted %s: the case does not measure that path",
			c.name, got, n, c.reason)
	}
	if got := after.event - before.event; c.rules > 0 && got < want {
		return BPFFigure{}, fmt.Errorf("bench bpf: %s: only %d of %d runs counted security-group event %s",
			c.name, got, want, maps.SGEventName(int(c.sgEvent)))
	}
	return BPFFigure{Runs: n, Passes: 1, NsPerPacket: ns, MinNs: ns, MaxNs: ns, EmptyNsPerPacket: base, AboveEmpty: ns - base,
		Ratio: ns / max(base, 1)}, nil
}

// measure returns the kernel-measured ns per run of prog on packet;
// between runs after every single run, untimed.
func measure(ctx context.Context, prog *ebpf.Program, packet []byte, single bool, n int, between func() error) (float64, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if !single {
		// The kernel times the loop alone (an XDP loop's setup takes
		// milliseconds), in whole ns per run.
		_, d, err := prog.Benchmark(packet, n, nil)
		return float64(d.Nanoseconds()), err
	}
	var total time.Duration
	for i := range n {
		if i%4096 == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		_, d, err := prog.Benchmark(packet, 1, nil)
		if err != nil {
			return 0, err
		}
		total += d
		if between != nil {
			if err := between(); err != nil {
				return 0, err
			}
		}
	}
	return float64(total.Nanoseconds()) / float64(n), nil
}

// caseCounts are the counters a case must move.
type caseCounts struct{ reason, event uint64 }

func (l *bpfLab) counts(c bpfCase) (caseCounts, error) {
	cs, err := maps.ReadStats(l.maps.Map(maps.Stats), false)
	if err != nil {
		return caseCounts{}, err
	}
	out := caseCounts{reason: maps.Packets(cs, c.program, c.reason)}
	if c.rules > 0 {
		var perCPU []uint64
		idx := uint32(int(c.sgDir)*maps.SGEventMax + int(c.sgEvent))
		if err := l.maps.Map(maps.SGStats).Lookup(idx, &perCPU); err != nil {
			return out, fmt.Errorf("read sg_stats: %w", err)
		}
		for _, v := range perCPU {
			out.event += v
		}
	}
	return out, nil
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}
