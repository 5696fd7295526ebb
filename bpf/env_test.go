package bpf_test

// Test environment shared by the BPF_PROG_TEST_RUN tests: a private network
// namespace, a freshly loaded pair of programs over fresh maps seeded with a
// small topology, a runner and the per-reason counter check.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vxdp/vxdp/bpf"
	"github.com/vxdp/vxdp/frames"
	"github.com/vxdp/vxdp/maps"
)

// Verdicts, from linux/pkt_cls.h and linux/bpf.h.
const (
	tcOK       = 0
	tcShot     = 2
	tcRedirect = 7

	xdpDrop     = 1
	xdpPass     = 2
	xdpRedirect = 4
)

// Program names as maps.ReadStats reports them.
const (
	progPort    = "port"
	progUplink  = "uplink"
	progVXLAN   = "vxlan"
	progBridge  = "bridge"
	progDeliver = "deliver"
	progSegment = "segment"
)

// The topology every test starts from, on the seed's private addresses.
const (
	vxlanPort  = 8472
	srcPortMin = 32768 // the kernel's default ip_local_port_range
	srcPortMax = 60999
	outerTTL   = 64
	netMTU     = 1450
	seedIPID   = 0x1234 // ip_id of every CPU before a run

	vniA     = 100 // the tenant network under test
	vniB     = 200 // another tenant
	vniOther = 300 // not served here

	uplinkIfindex = 1 // lo, the ingress of an XDP test run: VXLAN comes in on the uplink only
	loIfindex     = 1 // the skb device of a TC test run, and the tx_ports target
)

var (
	localIP   = netip.MustParseAddr("192.168.248.1")
	vtepA     = netip.MustParseAddr("192.168.248.2") // registered for vniA
	vtepB     = netip.MustParseAddr("192.168.248.3") // registered for vniB only
	vtepStray = netip.MustParseAddr("192.168.248.9") // registered for nothing
	uplinkMAC = mac("02:00:c0:a8:f8:01")
	strayMAC  = mac("02:00:00:00:66:66") // belongs to no port
)

// vm is a tenant port: local (a tap ifindex) or remote (behind a VTEP).
type vm struct {
	ifindex uint32 // 0 for a remote VM
	vtep    netip.Addr
	vni     uint32
	mac     net.HardwareAddr
	ip      netip.Addr
}

var (
	// vmA is the port under test: a TC test run's skb device is lo.
	vmA = vm{ifindex: loIfindex, vni: vniA, mac: mac("fa:16:3e:00:00:0a"), ip: addr("172.16.100.10")}
	vmB = vm{ifindex: 3, vni: vniA, mac: mac("fa:16:3e:00:00:0b"), ip: addr("172.16.100.11")}
	// vmC is on another tenant network, with an overlapping address.
	vmC = vm{ifindex: 4, vni: vniB, mac: mac("fa:16:3e:00:00:0c"), ip: addr("172.16.100.11")}
	// vmD is a local port not yet in the tx_ports devmap.
	vmD = vm{ifindex: 5, vni: vniA, mac: mac("fa:16:3e:00:00:0d"), ip: addr("172.16.100.13")}
	// vmR is a remote port of vniA behind vtepA; vmS one of vniB behind vtepB.
	vmR = vm{vtep: vtepA, vni: vniA, mac: mac("fa:16:3e:00:01:0a"), ip: addr("172.16.100.20")}
	vmS = vm{vtep: vtepB, vni: vniB, mac: mac("fa:16:3e:00:01:0b"), ip: addr("172.16.100.30")}

	// Allowed address pairs of vmA: a CIDR with its own MAC, and one
	// address with another MAC (a VRRP-style virtual IP).
	pairCIDR    = netip.MustParsePrefix("172.16.100.128/28")
	pairVIP     = addr("172.16.100.50")
	pairVIPMAC  = mac("fa:16:3e:00:00:99")
	unknownIP   = addr("172.16.100.99") // nobody's
	staleFDBMAC = mac("fa:16:3e:00:00:ee")

	// IPv6 of vmA: a global fixed IP, and its EUI-64 link-local address.
	vmA6     = addr("2001:db8:100::a")
	vmALL    = addr("fe80::f816:3eff:fe00:a")
	vmB6     = addr("2001:db8:100::b")
	unknown6 = addr("2001:db8:100::99")
)

func mac(s string) net.HardwareAddr { return frames.MAC(s) }

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func mac6(m net.HardwareAddr) [6]byte { return [6]byte(m) }

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: BPF_PROG_TEST_RUN and network namespaces need root (CI runs as root)")
	}
}

// newNetns creates a network namespace with lo up. Closing the last handle
// deletes it (nothing is bind-mounted), which t.Cleanup does.
func newNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatalf("get netns: %v", err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		ns.Close()
		// The thread is in the wrong namespace: let it die with the goroutine.
		runtime.LockOSThread()
		t.Fatalf("back to the original netns: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	h := netlinkAt(t, ns)
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("lo up: %v", err)
	}
	return ns
}

// inNetns runs the rest of a root-only test in a fresh network namespace.
func inNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	requireRoot(t)
	ns := newNetns(t)
	enterNetns(t, ns)
	return ns
}

// netlinkAt returns a netlink handle working in ns, closed at cleanup.
func netlinkAt(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

// enterNetns moves the calling goroutine's thread into ns until t ends.
// Each (sub)test runs on its own goroutine, so each must enter.
func enterNetns(t *testing.T, ns netns.NsHandle) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get netns: %v", err)
	}
	if err := netns.Set(ns); err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("enter test netns: %v", err)
	}
	t.Cleanup(func() {
		defer orig.Close()
		if err := netns.Set(orig); err != nil {
			// Keep the thread locked: it exits with the goroutine instead
			// of running other code in the test namespace.
			t.Errorf("leave test netns: %v", err)
			return
		}
		runtime.UnlockOSThread()
	})
}

// world is one fresh instance of the data plane: maps and every program.
type world struct {
	set   *maps.Set
	progs map[string]*ebpf.Program // by program name
}

// newWorld loads the programs over fresh maps seeded with the topology
// above, sized as the agent sizes them (sizes, if given, override). It
// must run inside the test netns: tx_ports resolves ifindexes.
func newWorld(t testing.TB, sizes ...maps.Sizes) *world {
	t.Helper()
	set, err := maps.Create(sizes...)
	if err != nil {
		t.Fatalf("create maps: %v", err)
	}
	t.Cleanup(set.Close)
	var (
		port    bpf.PortPrograms
		uplink  bpf.UplinkPrograms
		vxlan   bpf.VxlanPrograms
		bridge  bpf.BridgePrograms
		deliver bpf.DeliverPrograms
		segment bpf.SegmentPrograms
	)
	for _, l := range []struct {
		name string
		load func() (*ebpf.CollectionSpec, error)
		obj  interface{ Close() error }
	}{
		{progPort, bpf.LoadPort, &port},
		{progUplink, bpf.LoadUplink, &uplink},
		{progVXLAN, bpf.LoadVxlan, &vxlan},
		{progBridge, bpf.LoadBridge, &bridge},
		{progDeliver, bpf.LoadDeliver, &deliver},
		{progSegment, bpf.LoadSegment, &segment},
	} {
		spec, err := l.load()
		if err == nil {
			err = spec.LoadAndAssign(l.obj, set.LoadOptions(spec))
		}
		if err != nil {
			t.Fatalf("load %s program: %s", l.name, verifierLog(err))
		}
		t.Cleanup(func() { l.obj.Close() })
	}
	w := &world{set: set, progs: map[string]*ebpf.Program{
		progPort: port.VxdpPort, progUplink: uplink.VxdpUplink, progVXLAN: vxlan.VxdpVxlan, progBridge: bridge.VxdpBridge,
		progDeliver: deliver.VxdpDeliver, progSegment: segment.VxdpSegment,
	}}
	w.seed(t)
	return w
}

func verifierLog(err error) string {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Sprintf("%v\n%+v", err, ve)
	}
	return err.Error()
}

func (w *world) seed(t testing.TB) {
	t.Helper()
	w.put(t, maps.Config, uint32(0), maps.ConfigValue{
		LocalIp:       maps.BE32(localIP),
		UplinkIfindex: uplinkIfindex,
		VxlanPort:     maps.BE16(vxlanPort),
		SrcPortMin:    srcPortMin,
		SrcPortMax:    srcPortMax,
		Ttl:           outerTTL,
		UplinkMac:     mac6(uplinkMAC),
		Flags:         maps.ConfigForward,
	})
	w.seedIPID(t, seedIPID)
	for _, vni := range []uint32{vniA, vniB} {
		w.put(t, maps.Networks, vni, maps.NetInfo{DevIfindex: 10 + vni, Mtu: netMTU})
	}
	allow := func(ifindex uint32, m net.HardwareAddr, p netip.Prefix) {
		w.put(t, maps.PortAddrs, maps.NewPortMACKey(ifindex, mac6(m)), maps.PortAddrValue{Kind: maps.AddrMACOnly})
		w.put(t, maps.PortAddrs, maps.NewPortAddrKey(ifindex, mac6(m), p), maps.PortAddrValue{Kind: maps.AddrAllowed})
	}
	for _, p := range []vm{vmA, vmB, vmC, vmD} {
		w.put(t, maps.Ports, p.ifindex, maps.PortInfo{Vni: p.vni, Mtu: netMTU, Flags: maps.PortSecurity | maps.PortBridged,
			Mac: mac6(p.mac), Ip4: maps.BE32(p.ip)})
		allow(p.ifindex, p.mac, netip.PrefixFrom(p.ip, 32))
		w.put(t, maps.FDB, maps.NewFDBKey(p.vni, mac6(p.mac)), maps.FDBEntry{Ifindex: p.ifindex, Kind: maps.FDBLocal})
		if p.ifindex != vmD.ifindex {
			w.put(t, maps.TxPorts, p.ifindex, uint32(loIfindex))
		}
	}
	update(t, w, maps.Ports, vmA.ifindex, func(p *maps.PortInfo) { p.Ip6 = vmA6.As16() })
	allow(vmA.ifindex, vmA.mac, netip.PrefixFrom(vmA6, 128))
	allow(vmA.ifindex, vmA.mac, netip.PrefixFrom(vmALL, 128))
	allow(vmA.ifindex, vmA.mac, pairCIDR)
	allow(vmA.ifindex, pairVIPMAC, netip.PrefixFrom(pairVIP, 32))
	for _, r := range []vm{vmR, vmS} {
		w.put(t, maps.FDB, maps.NewFDBKey(r.vni, mac6(r.mac)), maps.FDBEntry{Vtep: maps.BE32(r.vtep), Kind: maps.FDBRemote})
		w.put(t, maps.ARP, maps.NewVNIAddr(r.vni, r.ip), maps.MACValue{Mac: mac6(r.mac)})
		w.put(t, maps.VTEPs, maps.NewVNIAddr(r.vni, r.vtep), uint32(0))
	}
	// A stale entry: a MAC of vniA pointing at vmC's tap, which is on vniB.
	w.put(t, maps.FDB, maps.NewFDBKey(vniA, mac6(staleFDBMAC)), maps.FDBEntry{Ifindex: vmC.ifindex, Kind: maps.FDBLocal})
}

func (w *world) put(t testing.TB, name string, k, v any) {
	t.Helper()
	if err := w.set.Map(name).Put(k, v); err != nil {
		t.Fatalf("put %s[%+v]: %v", name, k, err)
	}
}

func (w *world) del(t testing.TB, name string, k any) {
	t.Helper()
	if err := w.set.Map(name).Delete(k); err != nil {
		t.Fatalf("delete %s[%+v]: %v", name, k, err)
	}
}

// update reads an entry, lets f change it and writes it back.
func update[V any](t testing.TB, w *world, name string, k any, f func(*V)) {
	t.Helper()
	var v V
	if err := w.set.Map(name).Lookup(k, &v); err != nil {
		t.Fatalf("lookup %s[%+v]: %v", name, k, err)
	}
	f(&v)
	w.put(t, name, k, v)
}

// seedIPID sets the next outer IPv4 ID of every CPU.
func (w *world) seedIPID(t testing.TB, id uint32) {
	t.Helper()
	n, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]uint32, n)
	for i := range ids {
		ids[i] = id
	}
	w.put(t, maps.IPID, uint32(0), ids)
}

// counters returns every non-zero counter, summed over CPUs, by
// "program/reason". It reads every slot of the stats map, not only the
// pairs a program is declared to give, so a count in an undeclared slot
// shows too.
func (w *world) counters(t testing.TB) map[string]maps.StatValue {
	t.Helper()
	out := map[string]maps.StatValue{}
	var perCPU []maps.StatValue
	for _, p := range maps.Progs() {
		for r := range maps.Reason(128) {
			if err := w.set.Map(maps.Stats).Lookup(uint32(p)*128+uint32(r), &perCPU); err != nil {
				t.Fatal(err)
			}
			var sum maps.StatValue
			for _, v := range perCPU {
				sum.Packets += v.Packets
				sum.Bytes += v.Bytes
			}
			if sum.Packets > 0 {
				out[maps.ProgName(p)+"/"+maps.ReasonName(r)] = sum
			}
		}
	}
	return out
}

// run executes prog once on in (with an optional test-run context) and
// checks that exactly one counter, prog/reason, moved: by one packet of
// len(in) bytes. It returns the verdict and the output frame.
func (w *world) run(t *testing.T, prog *ebpf.Program, progName string, in []byte, ctx *skbContext, reason string) (uint32, []byte) {
	t.Helper()
	before := w.counters(t)
	opts := &ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+1024)} // room for a DHCP answer
	if ctx != nil {
		opts.Context = ctx
	}
	verdict, err := prog.Run(opts)
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	after := w.counters(t)
	key := progName + "/" + reason
	want := before[key]
	want.Packets++
	want.Bytes += uint64(len(in))
	if after[key] != want {
		t.Errorf("counter %s = %+v, want %+v", key, after[key], want)
	}
	if !slices.ContainsFunc(maps.ProgReasons(progByName(progName)), func(r maps.Reason) bool { return maps.ReasonName(r) == reason }) {
		t.Errorf("%s counted %s, which reasons.h does not list for it", progName, reason)
	}
	for k, v := range after {
		if k != key && v != before[k] {
			t.Errorf("counter %s changed: %+v -> %+v", k, before[k], v)
		}
	}
	return verdict, opts.DataOut
}

// testCase is one frame through one program.
type testCase struct {
	name  string
	setup func(*testing.T, *world) // changes to the seeded maps
	in    []byte
	ctx   *skbContext // test-run context of a TC case, if any
	// Expected verdict, and the one reason counter that moves.
	verdict uint32
	reason  string
	// want is the expected output frame; nil means unchanged. wantFrom
	// derives it from the output instead, for a field that is checked
	// against a range rather than fixed (the outer UDP source port).
	want     []byte
	wantFrom func(t *testing.T, out []byte) []byte
}

// runCases runs each case in a fresh world inside one test netns.
func runCases(t *testing.T, progName string, cases []testCase) {
	requireRoot(t)
	ns := newNetns(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			enterNetns(t, ns)
			w := newWorld(t)
			if c.setup != nil {
				c.setup(t, w)
			}
			c.check(t, w, progName)
		})
	}
}

// check runs the case in w and compares verdict, output and counters.
func (c testCase) check(t *testing.T, w *world, progName string) []byte {
	t.Helper()
	verdict, out := w.run(t, w.progs[progName], progName, c.in, c.ctx, c.reason)
	if verdict != c.verdict {
		t.Errorf("verdict %d, want %d", verdict, c.verdict)
	}
	want := c.want
	switch {
	case c.wantFrom != nil:
		want = c.wantFrom(t, out)
	case want == nil:
		want = c.in
	}
	if d := frames.Diff(out, want); d != "" {
		t.Error(d)
	}
	return out
}

func progByName(name string) maps.Prog {
	for _, p := range maps.Progs() {
		if maps.ProgName(p) == name {
			return p
		}
	}
	panic("no program " + name)
}

// skbContext mirrors struct __sk_buff (linux/bpf.h). BPF_PROG_TEST_RUN
// takes only a few fields from it (ifindex, cb, mark, priority, tstamp,
// wire_len, gso_segs, gso_size, hwtstamp) and wants the rest zero.
type skbContext struct {
	_        [10]uint32 // len .. ingress_ifindex
	Ifindex  uint32
	_        [27]uint32 // tc_index .. flow_keys
	Tstamp   uint64
	WireLen  uint32
	GSOSegs  uint32
	_        uint64 // sk
	GSOSize  uint32
	_        uint32 // tstamp_type, padding
	Hwtstamp uint64
}
