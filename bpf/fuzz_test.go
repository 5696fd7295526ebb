package bpf_test

// The fuzz test: random and mutated frames through the port and uplink
// programs (and, where vmA has security groups, its deliver program), in
// one world per scenario, each verdict and counter held to the model
// (model_test.go), and the isolation invariants checked on every frame
// the program redirects: the target is in the frame's own segment; VXLAN
// is decapsulated only on the tunnel interface from a VTEP registered for
// its VNI; a provider segment is entered only with its VLAN on its
// interface; DHCP answers only the port's own MAC.
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
	"strings"
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
	apply func(*testing.T, *world, *model)
}

var scenarios = []scenario{
	{"seed", func(*testing.T, *world, *model) {}},
	{"vmA without port security", func(t *testing.T, w *world, m *model) {
		update(t, w, maps.Ports, vmA.ifindex, func(p *maps.PortInfo) { p.Flags &^= maps.PortSecurity })
		m.ports[vmA.ifindex].security = false
	}},
	{"vniA VLAN-transparent", func(t *testing.T, w *world, m *model) {
		update(t, w, maps.Networks, uint32(vniA), func(n *maps.NetInfo) { n.Flags |= maps.NetVLANTransp })
		m.transparent[vniA] = true
	}},
	{"kernel forwarding", func(t *testing.T, w *world, m *model) {
		update(t, w, maps.Config, uint32(0), func(c *maps.ConfigValue) { c.Flags &^= maps.ConfigForward })
		m.forward = false
	}},
	{"vmA not yet bridged", func(t *testing.T, w *world, m *model) {
		update(t, w, maps.Ports, vmA.ifindex, func(p *maps.PortInfo) { p.Flags &^= maps.PortBridged })
		m.ports[vmA.ifindex].bridged = false
	}},
	{"vmB disabled", func(t *testing.T, w *world, m *model) {
		update(t, w, maps.Ports, vmB.ifindex, func(p *maps.PortInfo) { p.Flags = maps.PortDisabled })
		m.ports[vmB.ifindex].disabled = true
	}},
	// Provider networks: VLAN 99 and a flat network on lo.
	{"provider networks on the tunnel interface", withProviderModel},
	{"VLAN 99 on a provider interface that is not the tunnel's", func(t *testing.T, w *world, m *model) {
		withProviderModel(t, w, m)
		w.del(t, maps.ProviderIn, maps.NewProviderKey(loIfindex, 0))
		delete(m.provider, 0)
		offUplinkModel(t, w, m)
	}},
	{"flat and VLAN 99 on a provider interface that is not the tunnel's", func(t *testing.T, w *world, m *model) {
		withProviderModel(t, w, m)
		offUplinkModel(t, w, m)
	}},
	{"vmA on VLAN 99", vmAOn(segVLAN)},
	{"vmA on the flat network", vmAOn(segFlat)},
	// VXLAN over IPv6.
	{"IPv6 underlay", withUnderlay6Model},
	{"IPv6 underlay, lo not the tunnel interface", func(t *testing.T, w *world, m *model) {
		withUnderlay6Model(t, w, m)
		offUplinkModel(t, w, m)
	}},
	// DHCP at the port.
	{"DHCP at vmA", withDHCPModel},
	{"DHCP at vmA without port security", func(t *testing.T, w *world, m *model) {
		withDHCPModel(t, w, m)
		update(t, w, maps.Ports, vmA.ifindex, func(p *maps.PortInfo) { p.Flags &^= maps.PortSecurity })
		m.ports[vmA.ifindex].security = false
	}},
	// Security groups on vmA.
	{"vmA groups allowing nothing", withGroupsModel()},
	{"vmA stateful groups", withGroupsModel(flowRules...)},
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
	ns := inNetns(t)
	gen := &frameGen{r: rand.New(rand.NewPCG(seed, seed^0x5eed))}
	progs := []string{progPort, progUplink}
	stats := map[string]*fuzzStats{}
	took := map[string]time.Duration{}
	for _, prog := range progs {
		stats[prog] = &fuzzStats{reasons: map[string]int{}}
	}
	per := (n + len(scenarios) - 1) / len(scenarios)
	// One world per scenario, both programs in it (loading a world costs
	// more than a thousand frames): what the port program's frames leave
	// behind, tracked flows, is the uplink program's to meet.
	for _, sc := range scenarios {
		if !t.Run(sc.name, func(t *testing.T) {
			enterNetns(t, ns)
			w, m := newWorld(t), newModel()
			sc.apply(t, w, m)
			f := &fuzzer{t: t, w: w, m: m, scenario: sc.name, counted: map[string]uint64{}}
			for _, prog := range progs {
				f.prog, f.st = prog, stats[prog]
				start := time.Now()
				for i := 0; i < per && !t.Failed(); i++ {
					f.next(gen)
				}
				took[prog] += time.Since(start)
			}
			f.checkTotal()
		}) {
			break
		}
	}
	for _, prog := range progs {
		st := stats[prog]
		t.Logf("%s: %d frames (%d refused by the kernel's test run) in %v, %.0f frames/s; reasons: %v",
			prog, st.frames, st.refused, took[prog].Round(time.Millisecond), float64(st.frames)/took[prog].Seconds(), st.reasons)
	}
}

// fuzzer runs frames through the programs of one world.
type fuzzer struct {
	t        *testing.T
	prog     string // the program under test; others run beside it
	w        *world
	m        *model
	scenario string
	st       *fuzzStats
	ran      uint64            // frames run in this world
	counted  map[string]uint64 // what the counters should hold, by "program/reason"
}

// next runs one frame through the program under test. Where vmA has security groups, a
// frame of the other direction goes through its other program now and
// then (the deliver program, or the port program beside the uplink), so
// flows are opened in one program and tried in another.
func (f *fuzzer) next(gen *frameGen) {
	switch {
	case f.m.groups != nil && gen.chance(0.4):
		if f.prog == progPort {
			f.deliver(gen.flowFrame(false))
		} else {
			f.port(gen.flowFrame(true))
		}
	case f.prog == progPort:
		f.port(gen.portFrame(f.m))
	default:
		f.uplink(gen.uplinkFrame(f.m))
	}
}

// slot reads one stats counter (packets), summed over CPUs.
func (f *fuzzer) slot(prog, reason string) uint64 {
	var perCPU []maps.StatValue
	idx := uint32(progByName(prog))*128 + uint32(reasonByName(f.t, reason))
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

// run executes prog and checks that the expected counter (or the model's
// alternative, alt, if any) moved by one and the verdict is the counted
// reason's; the model learns what the program did with the frame's flow.
// It returns the verdict, the output frame and the reason counted, with
// ok false when the kernel refused the input.
func (f *fuzzer) run(prog string, in []byte, want, alt string, flow *flowUpdate) (verdict uint32, out []byte, got string, ok bool) {
	verdict, out, got, ok = f.count(prog, in, want, alt)
	if !ok {
		return
	}
	f.m.learn(flow, got != alt)
	if wv := verdictOf(prog, got); verdict != wv {
		f.t.Errorf("%s: %s verdict %d, want %d (%s)\n%s", f.scenario, prog, verdict, wv, got, frames.Decode(in))
	}
	return
}

// count runs prog on in and checks its counters.
func (f *fuzzer) count(prog string, in []byte, want, alt string) (verdict uint32, out []byte, got string, ok bool) {
	before, beforeAlt := f.slot(prog, want), uint64(0)
	if alt != "" {
		beforeAlt = f.slot(prog, alt)
	}
	opts := &ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+1024)} // room for a DHCP answer
	verdict, err := f.w.progs[prog].Run(opts)
	if err != nil {
		f.st.refused++
		return 0, nil, "", false
	}
	f.ran++
	f.st.frames++
	got = want
	moved := f.slot(prog, want) - before
	if alt != "" && moved == 0 {
		got, moved = alt, f.slot(prog, alt)-beforeAlt
	}
	f.counted[prog+"/"+got]++
	if moved != 1 {
		// The reason the program gave instead: the counter that moved
		// beyond what the frames so far account for. The checks that
		// follow hold the program's answer, not the model's, to the
		// invariants.
		moved := f.resync()
		f.t.Errorf("%s: %s counted %v, want %s (or %q)\n%s", f.scenario, prog, moved, want, alt, frames.Decode(in))
		if len(moved) == 1 {
			got, _ = strings.CutPrefix(moved[0], prog+"/")
		}
	}
	if prog != f.prog {
		f.st.reasons[prog+"/"+got]++
	} else {
		f.st.reasons[got]++
	}
	return verdict, opts.DataOut, got, true
}

// resync names the counters beyond what the frames so far account for,
// and takes the counters as they are from now on.
func (f *fuzzer) resync() []string {
	var moved []string
	now := map[string]uint64{}
	for k, v := range f.w.counters(f.t) {
		now[k] = v.Packets
		if v.Packets > f.counted[k] {
			moved = append(moved, k)
		}
	}
	f.counted = now
	return moved
}

// verdictOf is the hook's action for a reason.
func verdictOf(prog, reason string) uint32 {
	if prog == progUplink {
		return map[string]uint32{"PASS": xdpPass, "DROP": xdpDrop, "REDI": xdpRedirect}[reason[:4]]
	}
	return map[string]uint32{"PASS": tcOK, "DROP": tcShot, "REDI": tcRedirect, "TX_A": tcRedirect, "TX_D": tcRedirect}[reason[:4]]
}

func (f *fuzzer) port(in []byte) {
	want := f.m.portVerdict(vmA.ifindex, in)
	verdict, out, got, ok := f.run(progPort, in, want.reason, want.alt, want.flow)
	if !ok {
		return
	}
	// Invariants, independent of the model's reasons.
	p := f.m.ports[vmA.ifindex]
	if verdict != tcShot {
		if p.security {
			proto, off, tags, _, parsed := l3Of(in)
			why := "unparsable"
			if parsed {
				why = f.m.portSecurity(vmA.ifindex, p, in, proto, off, tags, false)
			}
			if why != "" {
				f.t.Errorf("%s: a frame port security refuses (%s) left the port: verdict %d\n%s", f.scenario, why, verdict, frames.Decode(in))
			}
		}
		if verdict == tcOK && !p.bridged {
			f.t.Errorf("%s: a frame went to the kernel from an unbridged tap\n%s", f.scenario, frames.Decode(in))
		}
	}
	if verdict != tcRedirect {
		return
	}
	if strings.HasPrefix(got, "REDIRECT") && f.m.dhcp != nil && binary.BigEndian.Uint16(in[12:]) == 0x0800 && isDHCPClient(in) &&
		f.m.dhcpVerdict(vmA.ifindex, in) != "" {
		f.t.Errorf("%s: a DHCP request the port serves went to %s\n%s", f.scenario, got, frames.Decode(in))
	}
	e := f.m.fdb[fdbKeyOf(p.vni, in[0:6])]
	_, provider := f.m.nets[p.vni]
	switch got {
	case "REDIRECT_LOCAL":
		// To a port of the same segment, the frame unchanged.
		if t := f.m.ports[e.ifindex]; !e.local || t == nil || t.vni != p.vni {
			f.t.Errorf("%s: switched from segment %s to port %d\n%s", f.scenario, maps.SegmentString(p.vni), e.ifindex, frames.Decode(in))
		}
		if !bytes.Equal(out[:len(in)], in) {
			f.t.Errorf("%s: a local redirect changed the frame", f.scenario)
		}
	case "REDIRECT_PROVIDER":
		// Out of the physical interface only for a remote port of the
		// port's own provider network.
		if !provider || !e.provider {
			f.t.Errorf("%s: sent out of a physical interface from segment %s\n%s", f.scenario, maps.SegmentString(p.vni), frames.Decode(in))
		}
	case "REDIRECT_REMOTE", "REDIRECT_REMOTE_KERNEL":
		if provider || e.local || e.provider || !e.vtep.IsValid() {
			f.t.Errorf("%s: tunnelled from segment %s\n%s", f.scenario, maps.SegmentString(p.vni), frames.Decode(in))
		}
	case "TX_DHCP_REPLY", "TX_DHCP_NAK":
		if l := f.m.dhcp; l == nil || len(in) < bootpOff+34 || !bytes.Equal(in[6:12], l.chaddr) || !bytes.Equal(in[bootpOff+28:bootpOff+34], l.chaddr) {
			f.t.Errorf("%s: a DHCP answer to another client\n%s", f.scenario, frames.Decode(in))
		} else if why := checkDHCPAnswer(out, f.m.dhcp); why != "" {
			f.t.Errorf("%s: %s\n%s", f.scenario, why, frames.Decode(out))
		}
	}
}

// deliver runs a frame on its way into vmA through the deliver program.
func (f *fuzzer) deliver(in []byte) {
	want := f.m.deliverVerdict(vmA.ifindex, in)
	f.run(progDeliver, in, want.reason, want.alt, want.flow)
}

func (f *fuzzer) uplink(in []byte) {
	want := f.m.uplinkVerdict(in)
	verdict, out, got, ok := f.run(progUplink, in, want.reason, want.alt, want.flow)
	if !ok {
		return
	}
	if verdict != xdpRedirect {
		return
	}
	if got != want.reason {
		f.t.Errorf("%s: redirected (%s) where the model says %s\n%s", f.scenario, got, want.reason, frames.Decode(in))
		return
	}
	switch got {
	case "REDIRECT_LOCAL":
		// Decapsulated only on the tunnel interface, untagged, from a
		// VTEP registered for the VNI, to this host (over IPv6 with a
		// right checksum), into a port of that VNI.
		registered := f.m.vteps[vniAddrOf(want.vni, want.vtep)] || f.m.vteps6[vniAddrOf(want.vni, want.vtep)]
		if !f.m.onUplink || !registered || !f.m.toThisHost(in) || f.m.ports[want.target].vni != want.vni || want.vni&maps.SegProvider != 0 {
			f.t.Errorf("%s: decapsulated from %s vni %d to port %d\n%s", f.scenario, want.vtep, want.vni, want.target, frames.Decode(in))
		}
	case "REDIRECT_FROM_PROVIDER":
		// Into a provider segment only with its VLAN on its interface,
		// and only into a port of that segment.
		var vid uint16
		if _, _, tags, _, _ := l3Of(in); tags > 0 {
			vid = binary.BigEndian.Uint16(in[14:]) & 0x0fff
		}
		if seg, ok := f.m.provider[vid]; !ok || seg != want.seg || f.m.ports[want.target].vni != seg {
			f.t.Errorf("%s: VLAN %d delivered into segment %s, port %d\n%s", f.scenario, vid, maps.SegmentString(want.seg), want.target, frames.Decode(in))
		}
	default:
		f.t.Errorf("%s: redirected, counted as %s", f.scenario, got)
	}
	if !bytes.Equal(out[:len(want.inner)], want.inner) {
		f.t.Errorf("%s: delivered frame differs from the expected one\n%s", f.scenario, frames.Diff(out[:len(want.inner)], want.inner))
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
		frames.Multicast, frames.LLDP, frames.AllNodesMAC, vmP.mac, vmQ.mac, vmF.mac, vmQF.mac}
	src4s = []netip.Addr{vmA.ip, vmA.ip, netip.IPv4Unspecified(), pairVIP, addr("172.16.100.140"), unknownIP, vmB.ip}
	dst4s = []netip.Addr{vmB.ip, vmR.ip, vmS.ip, unknownIP, addr("255.255.255.255"), addr("172.16.100.255"), addr("10.30.1.203")}
	src6s = []netip.Addr{vmALL, vmA6, netip.IPv6Unspecified(), unknown6, addr("fe80::f816:3eff:fe00:b")}
	dst6s = []netip.Addr{vmB6, addr("ff02::1"), addr("ff02::2"), addr("fe80::1"), unknown6}
)

// portFrame is a frame as vmA might send it in the world of m: more
// often DHCP where vmA has DHCP, more often to remote ports of its
// provider network where it is on one.
func (g *frameGen) portFrame(m *model) []byte {
	src, dst := g.mac(srcMACs...), g.mac(dstMACs...)
	if _, ok := m.nets[m.ports[vmA.ifindex].vni]; ok && g.chance(0.3) {
		dst = g.mac(vmQ.mac, vmQF.mac, vmP.mac, vmF.mac)
	}
	if m.dhcp != nil && g.chance(0.4) {
		return g.mutate(g.dhcpFrame(g.mac(vmA.mac, vmA.mac, vmA.mac, pairVIPMAC)))
	}
	var f []byte
	switch g.pick(5) {
	case 0:
		f = g.ipv4(src, dst)
	case 1:
		f = g.ipv6(src, dst)
	case 2:
		f = g.arp(src, dst)
	case 3:
		if m.groups != nil {
			return g.flowFrame(true)
		}
		f = g.dhcpFrame(src)
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

// uplinkFrame is a frame on the wire in the world of m: mostly VXLAN
// around a frame a VM might send, from registered and unregistered VTEPs;
// frames of the world's provider networks, VXLAN over its IPv6 underlay,
// packets of vmA's flows.
func (g *frameGen) uplinkFrame(m *model) []byte {
	switch {
	case len(m.provider) > 0 && g.chance(0.5):
		return g.providerFrame()
	case m.underlay6 && g.chance(0.7):
		return g.vxlan6Frame()
	case m.groups != nil && g.chance(0.5):
		return g.vxlanFlowFrame() // the inner frame mutated
	}
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

// toThisHost: the VXLAN frame f, untagged or priority-tagged, is
// addressed to local_ip (over IPv6: local_ip6, with a right UDP checksum).
func (m *model) toThisHost(f []byte) bool {
	proto, off, _, vidZero, parsed := l3Of(f)
	switch {
	case !parsed || !vidZero:
		return false
	case m.underlay6:
		return proto == 0x86dd && len(f) >= off+40 && netip.AddrFrom16([16]byte(f[off+24:off+40])) == m.localIP6 && udp6SumOK(f[off:])
	}
	return proto == 0x0800 && len(f) >= off+20 && netip.AddrFrom4([4]byte(f[off+16:off+20])) == m.localIP
}
