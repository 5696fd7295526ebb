// Package bench measures vxdp against a baseline in the same run: the BPF
// programs' per-packet cost against an empty program of the same hook.
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
	"text/tabwriter"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/bpf"
	"github.com/vxdp/vxdp/maps"
)

// Hooks a case runs at.
const (
	HookTC  = "tc"
	HookXDP = "xdp"
)

// BPFFigure is one way of measuring a case, next to the empty program of
// the same hook measured the same way in the same run.
type BPFFigure struct {
	Runs             int     `json:"runs"`
	NsPerPacket      float64 `json:"ns_per_packet"`
	EmptyNsPerPacket float64 `json:"empty_ns_per_packet"`
	Ratio            float64 `json:"ratio"` // NsPerPacket / EmptyNsPerPacket
}

// BPFCase is the measured cost of one path through a program.
type BPFCase struct {
	Hook   string `json:"hook"`
	Name   string `json:"name"`
	Reason string `json:"reason"` // the counter every run hit
	// Loop runs the program Runs times in one BPF_PROG_TEST_RUN call on
	// the same packet (RunOptions.Repeat), the kernel timing the loop:
	// warm caches, the program's cost plus ~30 ns of test-run loop. It is
	// nil for a program that rewrites the packet (encap, decap): in a loop
	// every run after the first would see the previous run's output.
	Loop *BPFFigure `json:"loop,omitempty"`
	// Single is one call per run, the kernel timing each: every case can
	// be measured so, at the price of a larger fixed cost per run.
	Single BPFFigure `json:"single"`
}

// BPFReport is the result of RunBPF.
type BPFReport struct {
	Kernel string    `json:"kernel"`
	CPUs   int       `json:"cpus"`
	Cases  []BPFCase `json:"cases"`
}

const (
	// DefaultBPFRepeat is a repeat for RunBPF that gives stable figures
	// in a few seconds.
	DefaultBPFRepeat = 1_000_000
	// maxSingleRuns caps the single-run figures: each run is a system call.
	maxSingleRuns = 100_000
)

// RunBPF measures the vxdp programs against empty programs: the port
// program (local redirect with and without port security, remote
// encapsulation) at TC and the uplink program (decapsulation and redirect,
// non-VXLAN pass) at XDP; loop figures with repeat runs, single-run figures
// with up to 100000. Nothing is attached and no packet leaves:
// BPF_PROG_TEST_RUN only runs the programs, and a redirect verdict is
// returned, not carried out. It needs root (CAP_BPF and CAP_NET_ADMIN).
func RunBPF(ctx context.Context, repeat int) (BPFReport, error) {
	if repeat < 1 || repeat > math.MaxInt32 {
		return BPFReport{}, fmt.Errorf("bench bpf: repeat %d: want 1 to %d", repeat, math.MaxInt32)
	}
	if os.Geteuid() != 0 {
		return BPFReport{}, errors.New("bench bpf: loading and test-running BPF programs needs root")
	}
	lab, err := newBPFLab()
	if err != nil {
		return BPFReport{}, fmt.Errorf("bench bpf: %w", err)
	}
	defer lab.close()
	rep := BPFReport{Kernel: kernelRelease(), CPUs: runtime.NumCPU()}
	for _, c := range lab.cases() {
		res := BPFCase{Hook: c.hook, Name: c.name, Reason: c.reason}
		if !c.rewrites {
			f, err := lab.compare(ctx, c, false, repeat)
			if err != nil {
				return rep, err
			}
			res.Loop = &f
		}
		if res.Single, err = lab.compare(ctx, c, true, min(repeat, maxSingleRuns)); err != nil {
			return rep, err
		}
		rep.Cases = append(rep.Cases, res)
	}
	return rep, nil
}

// WriteTable writes the report as an aligned table.
func (r BPFReport) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "BPF per-packet cost by BPF_PROG_TEST_RUN (kernel %s, %d CPUs), against an empty program of the same hook\n", r.Kernel, r.CPUs)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOOK\tCASE\tREASON\tLOOP NS/PKT\tEMPTY\tRATIO\tSINGLE NS/PKT\tEMPTY\tRATIO")
	for _, c := range r.Cases {
		loop := "-\t-\t-"
		if c.Loop != nil {
			loop = c.Loop.columns()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Hook, c.Name, c.Reason, loop, c.Single.columns())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "loop: repeated runs on one packet in one call (- : the program rewrites the packet); single: one call per run")
	return err
}

func (f BPFFigure) columns() string {
	return fmt.Sprintf("%.0f\t%.0f\t%.2f", f.NsPerPacket, f.EmptyNsPerPacket, f.Ratio)
}

// bpfCase is one path to measure.
type bpfCase struct {
	id         string // benchmark name
	hook, name string
	reason     string // counter every run must hit, checked after measuring
	prog       *ebpf.Program
	packet     []byte
	rewrites   bool // the program changes the packet: no loop figure
	insecure   bool // port security off on the sending port
}

// bpfLab is a loaded vxdp over fresh maps holding one network, plus the
// empty programs.
type bpfLab struct {
	maps              *maps.Set
	port, uplink      *ebpf.Program
	emptyTC, emptyXDP *ebpf.Program
	closers           []io.Closer
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
	l.port, l.uplink = port.VxdpPort, uplink.VxdpUplink
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
		{maps.Config, uint32(0), maps.ConfigValue{LocalIp: be(labLocalIP), UplinkIfindex: 2, VxlanPort: maps.BE16(labVXLANPort),
			SrcPortMin: 32768, SrcPortMax: 60999, Ttl: 64, UplinkMac: [6]byte(labUplink), Flags: maps.ConfigForward}},
		{maps.Networks, uint32(labVNI), maps.NetInfo{DevIfindex: 10, Mtu: labMTU}},
		{maps.Ports, labVM.ifindex, l.portInfo(labVM)},
		{maps.Ports, labLocalVM.ifindex, l.portInfo(labLocalVM)},
		{maps.PortAddrs, maps.NewPortAddrKey(labVM.ifindex, [6]byte(labVM.mac), netip.PrefixFrom(labVM.ip, 32)), maps.PortAddrValue{Kind: maps.AddrAllowed}},
		{maps.FDB, key(labVM), maps.FDBEntry{Ifindex: labVM.ifindex, Kind: maps.FDBLocal}},
		{maps.FDB, key(labLocalVM), maps.FDBEntry{Ifindex: labLocalVM.ifindex, Kind: maps.FDBLocal}},
		{maps.FDB, key(labRemoteVM), maps.FDBEntry{Vtep: be(labVTEP), Kind: maps.FDBRemote}},
		{maps.VTEPs, maps.NewVNIAddr(labVNI, labVTEP), uint32(0)},
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

// cases lists what RunBPF measures, each compared with the empty program
// of its hook.
func (l *bpfLab) cases() []bpfCase {
	vmToLocal := tcpFrame(labVM, labLocalVM)
	vmToRemote := tcpFrame(labVM, labRemoteVM)
	// UDP: inner TCP goes to the kernel's GRO first (PASS_TCP_GRO).
	remoteToLocal := vxlanFrame(labVTEP, udpFrame(labRemoteVM, labLocalVM))
	// Host traffic on the uplink that is UDP but not VXLAN: the longest
	// pass path before the VXLAN header.
	dns := frame(&layers.Ethernet{SrcMAC: labPeerMAC, DstMAC: labUplink, EthernetType: layers.EthernetTypeIPv4},
		ipv4(labVTEP, labLocalIP, layers.IPProtocolUDP), &layers.UDP{SrcPort: 53, DstPort: 41000}, gopacket.Payload(make([]byte, 64)))
	return []bpfCase{
		{id: "port/local", hook: HookTC, name: "port: local redirect", reason: "REDIRECT_LOCAL", prog: l.port, packet: vmToLocal},
		{id: "port/local-nosec", hook: HookTC, name: "port: local redirect, no port security", reason: "REDIRECT_LOCAL", prog: l.port, packet: vmToLocal, insecure: true},
		{id: "port/encap", hook: HookTC, name: "port: remote encap", reason: "REDIRECT_REMOTE", prog: l.port, packet: vmToRemote, rewrites: true},
		{id: "uplink/decap", hook: HookXDP, name: "uplink: decap+redirect", reason: "REDIRECT_LOCAL", prog: l.uplink, packet: remoteToLocal, rewrites: true},
		{id: "uplink/pass-udp", hook: HookXDP, name: "uplink: UDP not VXLAN", reason: "PASS_NOT_VXLAN", prog: l.uplink, packet: dns},
	}
}

// compare measures c and the empty program of its hook the same way:
// n runs, one call each (single) or in one call.
func (l *bpfLab) compare(ctx context.Context, c bpfCase, single bool, n int) (BPFFigure, error) {
	if err := l.setSecurity(!c.insecure); err != nil {
		return BPFFigure{}, err
	}
	empty := l.emptyTC
	if c.hook == HookXDP {
		empty = l.emptyXDP
	}
	base, err := measure(ctx, empty, c.packet, single, n)
	if err != nil {
		return BPFFigure{}, fmt.Errorf("bench bpf: empty %s: %w", c.hook, err)
	}
	before, err := l.packets(c)
	if err != nil {
		return BPFFigure{}, err
	}
	ns, err := measure(ctx, c.prog, c.packet, single, n)
	if err != nil {
		return BPFFigure{}, fmt.Errorf("bench bpf: %s: %w", c.name, err)
	}
	after, err := l.packets(c)
	if err != nil {
		return BPFFigure{}, err
	}
	// At least n: the kernel may repeat a run a signal interrupted.
	if after-before < uint64(n) {
		return BPFFigure{}, fmt.Errorf("bench bpf: %s: only %d of %d runs counted %s: the case does not measure that path",
			c.name, after-before, n, c.reason)
	}
	return BPFFigure{Runs: n, NsPerPacket: ns, EmptyNsPerPacket: base, Ratio: ns / max(base, 1)}, nil
}

// measure returns the kernel-measured ns per run of prog on packet.
func measure(ctx context.Context, prog *ebpf.Program, packet []byte, single bool, n int) (float64, error) {
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
	}
	return float64(total.Nanoseconds()) / float64(n), nil
}

// setSecurity turns port security of the sending port on or off.
func (l *bpfLab) setSecurity(on bool) error {
	info := l.portInfo(labVM)
	if !on {
		info.Flags = 0
	}
	if err := l.maps.Map(maps.Ports).Put(labVM.ifindex, info); err != nil {
		return fmt.Errorf("bench bpf: set port security: %w", err)
	}
	return nil
}

func (l *bpfLab) portInfo(p labPort) maps.PortInfo {
	return maps.PortInfo{Vni: labVNI, Mtu: labMTU, Flags: maps.PortSecurity | maps.PortBridged, Mac: [6]byte(p.mac)}
}

// packets is the counter c must hit, summed over CPUs.
func (l *bpfLab) packets(c bpfCase) (uint64, error) {
	cs, err := maps.ReadStats(l.maps.Map(maps.Stats), false)
	if err != nil {
		return 0, err
	}
	prog := maps.ProgName(maps.ProgPort)
	if c.hook == HookXDP {
		prog = maps.ProgName(maps.ProgUplink)
	}
	return maps.Packets(cs, prog, c.reason), nil
}

func tcpFrame(from, to labPort) []byte {
	return frame(&layers.Ethernet{SrcMAC: from.mac, DstMAC: to.mac, EthernetType: layers.EthernetTypeIPv4},
		ipv4(from.ip, to.ip, layers.IPProtocolTCP),
		&layers.TCP{SrcPort: 40000, DstPort: 80, ACK: true, Seq: 1, Ack: 1, Window: 502}, gopacket.Payload(make([]byte, 64)))
}

func udpFrame(from, to labPort) []byte {
	return frame(&layers.Ethernet{SrcMAC: from.mac, DstMAC: to.mac, EthernetType: layers.EthernetTypeIPv4},
		ipv4(from.ip, to.ip, layers.IPProtocolUDP), &layers.UDP{SrcPort: 40000, DstPort: 5201}, gopacket.Payload(make([]byte, 64)))
}

// vxlanFrame is inner as a Linux VTEP at src sends it to the lab: DF
// clear, UDP checksum 0.
func vxlanFrame(src netip.Addr, inner []byte) []byte {
	ip := ipv4(src, labLocalIP, layers.IPProtocolUDP)
	ip.Flags = 0
	b := frame(&layers.Ethernet{SrcMAC: labPeerMAC, DstMAC: labUplink, EthernetType: layers.EthernetTypeIPv4}, ip,
		&layers.UDP{SrcPort: 51234, DstPort: labVXLANPort}, &layers.VXLAN{ValidIDFlag: true, VNI: labVNI}, gopacket.Payload(inner))
	const udpCheck = 14 + 20 + 6
	b[udpCheck], b[udpCheck+1] = 0, 0
	return b
}

func ipv4(src, dst netip.Addr, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
}

// frame serializes with lengths and checksums, as a sender would.
func frame(ls ...gopacket.SerializableLayer) []byte {
	for i := 1; i < len(ls); i++ {
		ip, isIP := ls[i-1].(*layers.IPv4)
		if l4, ok := ls[i].(interface {
			SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
		}); ok && isIP {
			_ = l4.SetNetworkLayerForChecksum(ip)
		}
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		panic(fmt.Sprintf("bench frame: %v", err)) // static layers: a programming error
	}
	return buf.Bytes()
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return strings.TrimRight(string(u.Release[:]), "\x00")
}
