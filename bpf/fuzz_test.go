package bpf_test

// The fuzz test: random and mutated frames through the port and uplink
// programs, each verdict held to the model (model_test.go), and the
// isolation invariants checked on every frame whatever the model says.
//
// `make test` runs VXDP_FUZZ_FRAMES (default 20,000) frames per program;
// `make fuzz` runs 1,000,000. VXDP_FUZZ_SEED replays a run.

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vxdp/vxdp/frames"
	"github.com/vxdp/vxdp/maps"
)

func envInt(name string, def int64) int64 {
	if v, err := strconv.ParseInt(os.Getenv(name), 10, 64); err == nil {
		return v
	}
	return def
}

// scenario is a variation of the topology: the same change made to the
// BPF maps and to the model.
type scenario struct {
	name  string
	apply func(testing.TB, *world, *model)
}

var scenarios = []scenario{
	{"seed", func(testing.TB, *world, *model) {}},
	{"vmA without port security", func(t testing.TB, w *world, m *model) {
		update(t, w, maps.Ports, vmA.ifindex, func(p *maps.PortInfo) { p.Flags &^= maps.PortSecurity })
		m.ports[vmA.ifindex].security = false
	}},
	{"vniA VLAN-transparent", func(t testing.TB, w *world, m *model) {
		update(t, w, maps.Networks, uint32(vniA), func(n *maps.NetInfo) { n.Flags |= maps.NetVLANTransp })
		m.transparent[vniA] = true
	}},
	{"kernel forwarding", func(t testing.TB, w *world, m *model) {
		update(t, w, maps.Config, uint32(0), func(c *maps.ConfigValue) { c.Flags &^= maps.ConfigForward })
		m.forward = false
	}},
	{"vmA not yet bridged", func(t testing.TB, w *world, m *model) {
		update(t, w, maps.Ports, vmA.ifindex, func(p *maps.PortInfo) { p.Flags &^= maps.PortBridged })
		m.ports[vmA.ifindex].bridged = false
	}},
	{"vmB disabled", func(t testing.TB, w *world, m *model) {
		update(t, w, maps.Ports, vmB.ifindex, func(p *maps.PortInfo) { p.Flags = maps.PortDisabled })
		m.ports[vmB.ifindex].disabled = true
	}},
}

// fuzzStats is what a run saw, for the log.
type fuzzStats struct {
	frames, refused int
	reasons         map[string]int
}

func TestFuzzPrograms(t *testing.T) {
	n := int(envInt("VXDP_FUZZ_FRAMES", 20_000))
	seed := uint64(envInt("VXDP_FUZZ_SEED", time.Now().UnixNano()))
	t.Logf("fuzz: %d frames per program, seed %d (VXDP_FUZZ_SEED=%d replays)", n, seed, seed)
	inNetns(t)
	gen := &frameGen{r: rand.New(rand.NewPCG(seed, seed^0x5eed))}
	for _, prog := range []string{progPort, progUplink} {
		t.Run(prog, func(t *testing.T) {
			st := fuzzStats{reasons: map[string]int{}}
			start := time.Now()
			per := (n + len(scenarios) - 1) / len(scenarios)
			for _, sc := range scenarios {
				w, m := newWorld(t), newModel()
				sc.apply(t, w, m)
				f := &fuzzer{t: t, w: w, m: m, prog: prog, scenario: sc.name, st: &st}
				for i := 0; i < per && !t.Failed(); i++ {
					if prog == progPort {
						f.port(gen.portFrame())
					} else {
						f.uplink(gen.uplinkFrame())
					}
				}
				f.checkTotal()
			}
			took := time.Since(start)
			t.Logf("%s: %d frames (%d refused by the kernel's test run) in %v, %.0f frames/s; reasons: %v",
				prog, st.frames, st.refused, took.Round(time.Millisecond), float64(st.frames)/took.Seconds(), st.reasons)
		})
	}
}

// fuzzer runs frames through one program of one world.
type fuzzer struct {
	t        *testing.T
	w        *world
	m        *model
	prog     string
	scenario string
	st       *fuzzStats
	ran      uint64 // frames run in this world
}

// slot reads one stats counter (packets), summed over CPUs.
func (f *fuzzer) slot(reason string) uint64 {
	var perCPU []maps.StatValue
	idx := uint32(progByName(f.prog))*128 + uint32(reasonByName(f.t, reason))
	if err := f.w.set.Map(maps.Stats).Lookup(idx, &perCPU); err != nil {
		f.t.Fatal(err)
	}
	var n uint64
	for _, v := range perCPU {
		n += v.Packets
	}
	return n
}

// checkTotal: every frame counted exactly once, nowhere else.
func (f *fuzzer) checkTotal() {
	var total uint64
	for _, v := range f.w.counters(f.t) {
		total += v.Packets
	}
	if total != f.ran {
		f.t.Errorf("%s: %d frames run, %d counted in total", f.scenario, f.ran, total)
	}
}

// run executes the program and checks that the expected counter moved by
// one. It returns false when the kernel refused the input.
func (f *fuzzer) run(in []byte, want string) (uint32, []byte, bool) {
	before := f.slot(want)
	opts := &ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+256)}
	verdict, err := f.w.progs[f.prog].Run(opts)
	if err != nil {
		f.st.refused++
		return 0, nil, false
	}
	f.ran++
	f.st.frames++
	f.st.reasons[want]++
	if after := f.slot(want); after != before+1 {
		f.t.Errorf("%s: counter %s moved by %d, want 1\n%s", f.scenario, want, after-before, frames.Decode(in))
	}
	return verdict, opts.DataOut, true
}

func (f *fuzzer) port(in []byte) {
	want, target := f.m.portVerdict(vmA.ifindex, in)
	verdict, out, ok := f.run(in, want)
	if !ok {
		return
	}
	wantVerdict := map[string]uint32{"PASS": tcOK, "DROP": tcShot, "REDI": tcRedirect, "TX_A": tcRedirect}[want[:4]]
	if verdict != wantVerdict {
		f.t.Errorf("%s: verdict %d, want %d (%s)\n%s", f.scenario, verdict, wantVerdict, want, frames.Decode(in))
	}
	// Invariants, independent of the model's reasons.
	if verdict != tcShot {
		if p := f.m.ports[vmA.ifindex]; p.security {
			proto, off, tags, _, parsed := l3Of(in)
			why := "unparsable"
			if parsed {
				why = f.m.portSecurity(vmA.ifindex, p, in, proto, off, tags, false)
			}
			if why != "" {
				f.t.Errorf("%s: a frame port security refuses (%s) left the port: verdict %d\n%s", f.scenario, why, verdict, frames.Decode(in))
			}
		}
		if verdict == tcOK && !f.m.ports[vmA.ifindex].bridged {
			f.t.Errorf("%s: a frame went to the kernel from an unbridged tap\n%s", f.scenario, frames.Decode(in))
		}
	}
	if want == "REDIRECT_LOCAL" && f.m.ports[target].vni != f.m.ports[vmA.ifindex].vni {
		f.t.Fatalf("model bug: redirect across VNIs")
	}
	if verdict == tcRedirect && want == "REDIRECT_LOCAL" && !bytes.Equal(out[:len(in)], in) {
		f.t.Errorf("%s: a local redirect changed the frame", f.scenario)
	}
}

func (f *fuzzer) uplink(in []byte) {
	want := f.m.uplinkVerdict(in)
	verdict, out, ok := f.run(in, want.reason)
	if !ok {
		return
	}
	wantVerdict := map[string]uint32{"PASS": xdpPass, "DROP": xdpDrop, "REDI": xdpRedirect}[want.reason[:4]]
	if verdict != wantVerdict {
		f.t.Errorf("%s: verdict %d, want %d (%s)\n%s", f.scenario, verdict, wantVerdict, want.reason, frames.Decode(in))
	}
	if verdict == xdpRedirect {
		// Never a decapsulation from an unregistered VTEP, never across VNIs.
		if !f.m.vteps[vniAddrOf(want.vni, want.vtep)] || f.m.ports[want.target].vni != want.vni {
			f.t.Errorf("%s: decapsulated from %s vni %d to port %d\n%s", f.scenario, want.vtep, want.vni, want.target, frames.Decode(in))
		}
		if !bytes.Equal(out[:len(want.inner)], want.inner) {
			f.t.Errorf("%s: decapsulated frame differs from the inner frame\n%s", f.scenario, frames.Diff(out[:len(want.inner)], want.inner))
		}
	}
}

var reasonIDs = map[string]maps.Reason{}

func reasonByName(t testing.TB, name string) maps.Reason {
	if len(reasonIDs) == 0 {
		for _, r := range maps.Reasons() {
			reasonIDs[maps.ReasonName(r)] = r
		}
	}
	r, ok := reasonIDs[name]
	if !ok {
		t.Fatalf("model gave unknown reason %q", name)
	}
	return r
}

// frameGen makes random frames from pools of interesting values: the
// topology's own addresses, spoofed and foreign ones, edge cases of every
// header the programs parse, and random bytes.
type frameGen struct{ r *rand.Rand }

func (g *frameGen) pick(n int) int { return g.r.IntN(n) }

func (g *frameGen) chance(p float64) bool { return g.r.Float64() < p }

func (g *frameGen) mac(pool ...net.HardwareAddr) net.HardwareAddr {
	if g.chance(0.1) {
		m := make(net.HardwareAddr, 6)
		for i := range m {
			m[i] = byte(g.r.Uint32())
		}
		return m
	}
	return pool[g.pick(len(pool))]
}

func (g *frameGen) addr4(pool ...netip.Addr) netip.Addr {
	if g.chance(0.1) {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], g.r.Uint32())
		return netip.AddrFrom4(b)
	}
	return pool[g.pick(len(pool))]
}

func (g *frameGen) port16(pool ...uint16) uint16 {
	if g.chance(0.2) {
		return uint16(g.r.Uint32())
	}
	return pool[g.pick(len(pool))]
}

var (
	srcMACs = []net.HardwareAddr{vmA.mac, vmA.mac, vmA.mac, pairVIPMAC, strayMAC, vmB.mac}
	dstMACs = []net.HardwareAddr{vmB.mac, vmR.mac, vmC.mac, vmD.mac, vmA.mac, staleFDBMAC, strayMAC, frames.Broadcast,
		frames.Multicast, frames.LLDP, frames.AllNodesMAC}
	src4s = []netip.Addr{vmA.ip, vmA.ip, netip.IPv4Unspecified(), pairVIP, addr("172.16.100.140"), unknownIP, vmB.ip}
	dst4s = []netip.Addr{vmB.ip, vmR.ip, vmS.ip, unknownIP, addr("255.255.255.255"), addr("172.16.100.255"), addr("10.30.1.203")}
	src6s = []netip.Addr{vmALL, vmA6, netip.IPv6Unspecified(), unknown6, addr("fe80::f816:3eff:fe00:b")}
	dst6s = []netip.Addr{vmB6, addr("ff02::1"), addr("ff02::2"), addr("fe80::1"), unknown6}
)

// portFrame is a frame as vmA might send it.
func (g *frameGen) portFrame() []byte {
	src, dst := g.mac(srcMACs...), g.mac(dstMACs...)
	var f []byte
	switch g.pick(4) {
	case 0:
		f = g.ipv4(src, dst)
	case 1:
		f = g.ipv6(src, dst)
	case 2:
		f = g.arp(src, dst)
	default:
		f = frames.Build(frames.Ether(src, dst, layers.EthernetType(g.port16(0x88b5, 0x88cc, 0x8100, 0x0800, 0x86dd))), frames.Payload(g.pick(80)))
	}
	return g.mutate(f)
}

func (g *frameGen) ipv4(src, dst net.HardwareAddr) []byte {
	ip := frames.IPv4(g.addr4(src4s...), g.addr4(dst4s...), layers.IPProtocolUDP)
	if g.chance(0.1) {
		ip.Flags = layers.IPv4MoreFragments
	}
	if g.chance(0.05) {
		ip.FragOffset = uint16(g.pick(200))
	}
	var l4 gopacket.SerializableLayer
	switch g.pick(3) {
	case 0:
		l4 = &layers.UDP{SrcPort: layers.UDPPort(g.port16(68, 67, 546, 547, 8472, 5353)), DstPort: layers.UDPPort(g.port16(67, 68, 8472, 53))}
	case 1:
		ip.Protocol = layers.IPProtocolTCP
		l4 = &layers.TCP{SrcPort: layers.TCPPort(g.port16(40000, 67)), DstPort: layers.TCPPort(g.port16(80, 22)), SYN: true}
	default:
		ip.Protocol = layers.IPProtocolICMPv4
		l4 = &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(uint8(g.port16(8, 0, 3)), 0)}
	}
	return frames.Build(frames.Ether(src, dst, layers.EthernetTypeIPv4), ip, l4, frames.Payload(g.pick(64)))
}

func (g *frameGen) ipv6(src, dst net.HardwareAddr) []byte {
	s, d := src6s[g.pick(len(src6s))], dst6s[g.pick(len(dst6s))]
	switch g.pick(4) {
	case 0:
		return frames.UDP6(src, dst, s, d, g.port16(546, 547, 5000), g.port16(546, 547, 5001))
	case 1:
		target := []netip.Addr{vmA6, vmALL, vmB6, unknown6}[g.pick(4)]
		return frames.NeighborAdvert(src, s, target)
	case 2:
		typ := uint8(g.port16(128, 131, 133, 134, 135, 136, 143))
		return frames.ICMPv6(src, dst, s, d, typ, 0, make([]byte, 20))
	default:
		// Extension headers before the upper layer: a hop-by-hop header
		// of random length, then ICMPv6 (maybe an RA) or UDP.
		hbh := make([]byte, 8*(1+g.pick(3)))
		next := []byte{58, 17, 44}[g.pick(3)]
		hbh[0], hbh[1] = next, byte(len(hbh)/8-1)
		ip := frames.IPv6(s, d, 0)
		upper := []byte{134, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}
		if next == 17 {
			upper = []byte{0x02, 0x23, 0x02, 0x22, 0, 16, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}
		}
		if next == 44 {
			upper = []byte{58, 0, byte(g.pick(2)) * 8, 0, 1, 2, 3, 4, 134, 0, 0, 0, 0, 0, 0, 0}
		}
		return frames.Build(frames.Ether(src, dst, layers.EthernetTypeIPv6), ip, gopacket.Payload(append(hbh, upper...)))
	}
}

func (g *frameGen) arp(src, dst net.HardwareAddr) []byte {
	a := frames.ARPRequest(g.mac(srcMACs...), g.addr4(src4s...), g.addr4(vmR.ip, vmS.ip, unknownIP, vmA.ip, vmB.ip))
	a.Eth.SrcMAC = src
	if g.chance(0.3) {
		a.Eth.DstMAC = dst
	}
	if g.chance(0.2) {
		a.Op = layers.ARPReply
	}
	return a.Bytes()
}

// uplinkFrame is a frame on the wire: mostly VXLAN around a frame a VM
// might send, from registered and unregistered VTEPs.
func (g *frameGen) uplinkFrame() []byte {
	if g.chance(0.1) {
		return g.mutate(g.ipv4(g.mac(frames.MAC("02:00:c0:a8:f8:02")), g.mac(uplinkMAC)))
	}
	innerSrc := g.mac(vmR.mac, vmS.mac, vmA.mac, strayMAC)
	innerDst := g.mac(vmB.mac, vmC.mac, vmD.mac, vmR.mac, frames.Broadcast, strayMAC)
	var inner []byte
	switch g.pick(3) {
	case 0:
		inner = frames.UDP4(innerSrc, innerDst, vmR.ip, vmB.ip, 1, 2)
	case 1:
		inner = frames.TCP4(innerSrc, innerDst, vmR.ip, vmB.ip, 40000, g.pick(100))
	default:
		inner = frames.Build(frames.Ether(innerSrc, innerDst, layers.EthernetType(g.port16(0x0806, 0x86dd, 0x88b5))), frames.Payload(g.pick(60)))
	}
	src := g.addr4(vtepA, vtepA, vtepB, vtepStray, localIP)
	dst := g.addr4(localIP, localIP, addr("192.168.248.255"), addr("255.255.255.255"))
	p := frames.FromVTEP(frames.MAC("02:00:c0:a8:f8:02"), uplinkMAC, src, dst, []uint32{vniA, vniB, vniOther}[g.pick(3)], inner)
	if g.chance(0.1) {
		p.IP.Flags = layers.IPv4MoreFragments
	}
	if g.chance(0.05) {
		p.IP.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
	}
	if g.chance(0.1) {
		p.UDPCsum = true
	}
	if g.chance(0.05) {
		p.UDP.DstPort = layers.UDPPort(g.port16(4789, 53))
	}
	if g.chance(0.05) {
		p.VX.GBPExtension = true
	}
	f := p.Bytes()
	switch {
	case g.chance(0.1):
		f = frames.Tagged(f, 0)
	case g.chance(0.05):
		f = frames.Tagged(f, 0, 0)
	case g.chance(0.03):
		f = frames.Tagged(f, uint16(g.pick(4096)))
	}
	return g.mutate(f)
}

// mutate applies a few random edits: byte flips (mostly in the headers),
// truncation, appended bytes, an inserted VLAN tag.
func (g *frameGen) mutate(f []byte) []byte {
	if g.chance(0.5) {
		return f
	}
	f = bytes.Clone(f)
	for k := g.pick(3) + 1; k > 0; k-- {
		switch g.pick(5) {
		case 0, 1:
			i := g.pick(min(len(f), 80))
			f[i] ^= byte(1 << g.pick(8))
		case 2:
			if len(f) > 15 {
				f = f[:14+g.pick(len(f)-14)]
			}
		case 3:
			f = append(f, make([]byte, g.pick(8)+1)...)
		default:
			f = frames.Tagged(f, uint16(g.pick(2)*g.pick(4096)))
		}
	}
	return f
}
