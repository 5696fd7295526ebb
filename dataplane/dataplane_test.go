package dataplane

import (
	"context"
	"errors"
	"fmt"
	stdmaps "maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"testing"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/maps"
	"github.com/vxdp/vxdp/state"
)

// hostEnv is a throwaway host: its own network namespace holding an uplink
// with the VTEP address, and its own bpffs, all removed by t.Cleanup. The
// test goroutine stays locked to a thread inside the namespace.
type hostEnv struct {
	t    *testing.T
	nl   *netlink.Handle
	opts Options
}

func newHost(t *testing.T) *hostEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("dataplane tests need root (network namespaces, BPF)")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.New() // also switches this thread into it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		netns.Set(orig)
		ns.Close()
		orig.Close()
		runtime.UnlockOSThread()
	})
	nl, err := netlink.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nl.Close)
	h := &hostEnv{t: t, nl: nl}
	h.veth("eth2", "peer-eth2")
	eth2, _ := nl.LinkByName("eth2")
	addr, _ := netlink.ParseAddr("192.168.248.3/24")
	if err := nl.AddrAdd(eth2, addr); err != nil {
		t.Fatal(err)
	}
	lo, _ := nl.LinkByName("lo")
	nl.LinkSetUp(lo)

	bpffs := t.TempDir()
	if err := unix.Mount("bpf", bpffs, "bpf", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(bpffs, unix.MNT_DETACH) })
	h.opts = Options{Instance: "test", BPFFS: bpffs, StateDir: t.TempDir(), LocalIP: netip.MustParseAddr("192.168.248.3"),
		VXLANPort: 8472, XDPMode: ModeAuto, TCMode: ModeAuto}
	return h
}

// veth creates an up veth pair in the host namespace.
func (h *hostEnv) veth(name, peer string) netlink.Link {
	h.t.Helper()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	if err := h.nl.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: peer}); err != nil {
		h.t.Fatalf("add veth %s: %v", name, err)
	}
	for _, n := range []string{name, peer} {
		l, err := h.nl.LinkByName(n)
		if err != nil {
			h.t.Fatal(err)
		}
		h.nl.LinkSetUp(l)
	}
	l, _ := h.nl.LinkByName(name)
	return l
}

func (h *hostEnv) open(mod func(*Options)) *Dataplane {
	h.t.Helper()
	o := h.opts
	if mod != nil {
		mod(&o)
	}
	d, err := Open(o)
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

// seeded gives the host vm2's tap, opens the dataplane (options changed
// by mod), applies node3's seed state and removes everything when t ends.
func (h *hostEnv) seeded(mod func(*Options)) (*Dataplane, netlink.Link, state.Result) {
	h.t.Helper()
	tap := h.veth(state.TapName("31c64a21-7601-4c3e-9f1a-000000000002"), "vm2-eth0")
	d := h.open(mod)
	h.t.Cleanup(func() { Cleanup(h.opts) })
	return d, tap, h.apply(d, seedNode3())
}

func (h *hostEnv) apply(d *Dataplane, want *state.Desired) state.Result {
	h.t.Helper()
	res, err := d.Apply(context.Background(), want)
	if err != nil {
		h.t.Fatalf("apply: %v", err)
	}
	return res
}

const netID = "85ae5035-203b-4ef7-b65c-397f80b5a8af"

var (
	vm2MAC  = mustMAC("fa:16:3e:cb:98:2c")
	vm1MAC  = mustMAC("fa:16:3e:06:42:34")
	dhcpMAC = mustMAC("fa:16:3e:6e:c0:44")
	vtep1   = netip.MustParseAddr("192.168.248.1")
	vtep4   = netip.MustParseAddr("192.168.248.4")
)

func mustMAC(s string) state.MAC {
	m, err := state.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// seedNode3 is node3's l2pop view of the seed: vm2 local, vm1 behind .4,
// the DHCP port behind .1.
func seedNode3() *state.Desired {
	return &state.Desired{
		Revision: 7,
		Networks: []state.Network{{ID: netID, Name: "vxlan100_net", VNI: 100,
			VTEPs: []state.VTEP{{IP: vtep1}, {IP: vtep4}}}},
		LocalPorts: []state.LocalPort{{ID: "31c64a21-7601-4c3e-9f1a-000000000002", NetworkID: netID, MAC: vm2MAC,
			IPs: []netip.Addr{netip.MustParseAddr("172.16.100.19")}}},
		RemotePorts: []state.RemotePort{
			{ID: "vm1", NetworkID: netID, MAC: vm1MAC, IPs: []netip.Addr{netip.MustParseAddr("172.16.100.12")}, VTEP: vtep4,
				Source: state.Source{Key: "ports/vm1", Revision: 5}},
			{ID: "dhcp", NetworkID: netID, MAC: dhcpMAC, IPs: []netip.Addr{netip.MustParseAddr("172.16.100.10")}, VTEP: vtep1},
		},
	}
}

// kernelFDB lists the `self` entries of a vxlan device like
// `bridge fdb show dev vxlan-100 | grep self`.
func (h *hostEnv) kernelFDB(dev string) []string {
	h.t.Helper()
	l, err := h.nl.LinkByName(dev)
	if err != nil {
		h.t.Fatal(err)
	}
	ns, err := h.nl.NeighList(l.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, n := range ns {
		if n.Flags&netlink.NTF_SELF != 0 && n.IP != nil {
			out = append(out, n.HardwareAddr.String()+" dst "+n.IP.String())
		}
	}
	sort.Strings(out)
	return out
}

func opsOf(res state.Result, object string) []string {
	var out []string
	for _, op := range res.Ops {
		if op.Object == object {
			out = append(out, op.Action+" "+op.Key)
		}
	}
	sort.Strings(out)
	return out
}

func TestApplySeedNode(t *testing.T) {
	h := newHost(t)
	d, tap, res := h.seeded(nil)
	defer d.Close()
	if len(res.Pending) != 0 {
		t.Fatalf("pending %v, want none", res.Pending)
	}

	// Kernel objects with Neutron's names and the seed's parameters.
	br, err := h.nl.LinkByName("brq85ae5035-20")
	if err != nil {
		t.Fatalf("bridge: %v", err)
	}
	l, err := h.nl.LinkByName("vxlan-100")
	if err != nil {
		t.Fatalf("vxlan: %v", err)
	}
	vx := l.(*netlink.Vxlan)
	if vx.VxlanId != 100 || vx.Port != 8472 || vx.Learning || vx.Proxy || vx.UDPCSum || vx.MTU != 1450 ||
		!vx.SrcAddr.Equal(net.ParseIP("192.168.248.3")) || vx.MasterIndex != br.Attrs().Index {
		t.Errorf("vxlan-100 = %+v, want id 100 dstport 8472 nolearning noproxy noudpcsum mtu 1450 local .3 on the bridge", vx)
	}
	tap, _ = h.nl.LinkByName(tap.Attrs().Name)
	if tap.Attrs().MasterIndex != br.Attrs().Index || tap.Attrs().MTU != 1450 {
		t.Errorf("tap master %d mtu %d, want bridge %d mtu 1450", tap.Attrs().MasterIndex, tap.Attrs().MTU, br.Attrs().Index)
	}
	wantFDB := []string{
		"00:00:00:00:00:00 dst 192.168.248.1", "00:00:00:00:00:00 dst 192.168.248.4",
		"fa:16:3e:06:42:34 dst 192.168.248.4", "fa:16:3e:6e:c0:44 dst 192.168.248.1",
	}
	if got := h.kernelFDB("vxlan-100"); !slices.Equal(got, wantFDB) {
		t.Errorf("kernel fdb:\n got %v\nwant %v", got, wantFDB)
	}
	neigh, _ := h.nl.NeighList(vx.Index, unix.AF_INET)
	if len(neigh) != 2 {
		t.Errorf("proxy neighbours %v, want vm1 and dhcp", neigh)
	}

	// BPF maps: the same l2pop view plus the local port.
	fdb, err := maps.Entries[maps.FDBKey, maps.FDBEntry](d.Maps().Map(maps.FDB))
	if err != nil {
		t.Fatal(err)
	}
	wantBPF := map[maps.FDBKey]maps.FDBEntry{
		maps.NewFDBKey(100, vm2MAC):  {Kind: maps.FDBLocal, Ifindex: uint32(tap.Attrs().Index)},
		maps.NewFDBKey(100, vm1MAC):  {Kind: maps.FDBRemote, Vtep: maps.BE32(vtep4)},
		maps.NewFDBKey(100, dhcpMAC): {Kind: maps.FDBRemote, Vtep: maps.BE32(vtep1)},
	}
	if len(fdb) != len(wantBPF) {
		t.Errorf("bpf fdb has %d entries, want %d: %v", len(fdb), len(wantBPF), fdb)
	}
	for k, v := range wantBPF {
		if fdb[k] != v {
			t.Errorf("bpf fdb %s = %+v, want %+v", maps.FDBKeyString(k), fdb[k], v)
		}
	}
	for _, k := range []maps.VNIAddr{maps.NewVNIAddr(100, vtep1), maps.NewVNIAddr(100, vtep4)} {
		var v uint32
		if err := d.Maps().Map(maps.VTEPs).Lookup(k, &v); err != nil {
			t.Errorf("vtep %s not registered: %v", maps.VNIAddrKeyString(k), err)
		}
	}
	var pi maps.PortInfo
	if err := d.Maps().Map(maps.Ports).Lookup(uint32(tap.Attrs().Index), &pi); err != nil || pi.Vni != 100 ||
		pi.Mtu != 1450 || pi.Flags != maps.PortSecurity|maps.PortBridged || state.MAC(pi.Mac) != vm2MAC ||
		maps.AddrBE32(pi.Ip4) != netip.MustParseAddr("172.16.100.19") {
		t.Errorf("port entry %+v (%v), want vni 100 mtu 1450 security on, bridged, ip4 .19", pi, err)
	}
	// Port security: vm2's MAC, with its fixed IP and its EUI-64 link-local address.
	idx := uint32(tap.Attrs().Index)
	wantAddrs := map[maps.PortAddrKey]maps.PortAddrValue{
		maps.NewPortMACKey(idx, vm2MAC):                                                          {Kind: maps.AddrMACOnly},
		maps.NewPortAddrKey(idx, vm2MAC, netip.MustParsePrefix("172.16.100.19/32")):              {Kind: maps.AddrAllowed},
		maps.NewPortAddrKey(idx, vm2MAC, netip.MustParsePrefix("fe80::f816:3eff:fecb:982c/128")): {Kind: maps.AddrAllowed},
	}
	addrs, err := maps.Entries[maps.PortAddrKey, maps.PortAddrValue](d.Maps().Map(maps.PortAddrs))
	if err != nil || !stdmaps.Equal(addrs, wantAddrs) {
		t.Errorf("port_addrs %v (%v), want %v", addrs, err, wantAddrs)
	}

	// Nothing of the tenant network reaches the host: IPv6 off on its
	// devices, the bridge program on the bridge, the vxlan program (and
	// the tunnel metadata it needs) on the vxlan device.
	for _, dev := range []string{"brq85ae5035-20", "vxlan-100"} {
		if v, _ := os.ReadFile("/proc/sys/net/ipv6/conf/" + dev + "/disable_ipv6"); string(v) != "1\n" {
			t.Errorf("IPv6 on %s: disable_ipv6 = %q, want 1", dev, v)
		}
	}
	assertPinnedLink(t, filepath.Join(h.opts.linkDir(), "bridge_brq85ae5035-20"), br.Attrs().Index)
	assertPinnedLink(t, filepath.Join(h.opts.linkDir(), "vxlan_vxlan-100"), vx.Attrs().Index)
	if !h.hasTunnelRule() {
		t.Error("no tun_id rule: the kernel would not give the vxlan program tunnel metadata")
	}
	if d.AppliedRevision() != 7 {
		t.Errorf("applied revision %d, want 7", d.AppliedRevision())
	}
	a, err := ReadApplied(h.opts.StateDir)
	if err != nil || a.Provenance["bpf/fdb/100/fa:16:3e:06:42:34"] != "ports/vm1@5" {
		t.Errorf("provenance of vm1's fdb entry = %q (%v), want ports/vm1@5", a.Provenance["bpf/fdb/100/fa:16:3e:06:42:34"], err)
	}

	// Programs attached through pinned links.
	assertPinnedLink(t, filepath.Join(h.opts.linkDir(), "tc_"+tap.Attrs().Name), tap.Attrs().Index)
	eth2, _ := h.nl.LinkByName("eth2")
	assertPinnedLink(t, filepath.Join(h.opts.linkDir(), "xdp_eth2"), eth2.Attrs().Index)

	// Idempotent: nothing changes the second time.
	if res := h.apply(d, seedNode3()); len(res.Ops) != 0 {
		t.Errorf("second apply changed %v", res.Ops)
	}
}

func assertPinnedLink(t *testing.T, path string, ifindex int) {
	t.Helper()
	l, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		t.Errorf("pinned link %s: %v", path, err)
		return
	}
	defer l.Close()
	got, err := linkTarget(l)
	if err != nil {
		t.Fatal(err)
	}
	if got != ifindex {
		t.Errorf("link %s attached to ifindex %d, want %d", path, got, ifindex)
	}
}

func TestApplyChanges(t *testing.T) {
	h := newHost(t)
	d, _, _ := h.seeded(nil)
	defer d.Close()

	// vm1 migrates from .4 to .1: replaced in place in both FDBs.
	moved := seedNode3()
	moved.RemotePorts[0].VTEP = vtep1
	res := h.apply(d, moved)
	if got, want := opsOf(res, "kernel/fdb"), []string{"update fa:16:3e:06:42:34 dst 192.168.248.1"}; !slices.Equal(got, want) {
		t.Errorf("kernel fdb ops %v, want %v", got, want)
	}
	if got, want := opsOf(res, "bpf/fdb"), []string{"update 100/fa:16:3e:06:42:34"}; !slices.Equal(got, want) {
		t.Errorf("bpf fdb ops %v, want %v", got, want)
	}
	if got := h.kernelFDB("vxlan-100"); slices.Contains(got, "fa:16:3e:06:42:34 dst 192.168.248.4") {
		t.Errorf("vm1 still points at its old VTEP: %v", got)
	}

	// A second local port whose tap does not exist yet is pending, and
	// installed once the tap appears.
	withNew := seedNode3()
	newPort := state.LocalPort{ID: "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee", NetworkID: netID, MAC: mustMAC("fa:16:3e:00:00:01")}
	withNew.LocalPorts = append(withNew.LocalPorts, newPort)
	if res := h.apply(d, withNew); !slices.Equal(res.Pending, []string{newPort.ID}) {
		t.Errorf("pending %v, want %s", res.Pending, newPort.ID)
	}
	h.veth(newPort.TapName(), "new-eth0")
	res = h.apply(d, withNew)
	if len(res.Pending) != 0 || !slices.Contains(opsOf(res, "bpf/tc"), "add "+newPort.TapName()) {
		t.Errorf("after the tap appeared: pending %v, tc ops %v", res.Pending, opsOf(res, "bpf/tc"))
	}

	// Ports removed: their entries go, their tap leaves the bridge (it
	// would be bridged without port security) and its program stays,
	// dropping everything (see TestUnboundTapIsDisabled).
	res = h.apply(d, seedNode3())
	if slices.Contains(opsOf(res, "bpf/tc"), "remove "+newPort.TapName()) ||
		!slices.Contains(opsOf(res, "bpf/fdb"), "remove 100/fa:16:3e:00:00:01") {
		t.Errorf("removing a port: ops %v", res.Ops)
	}
	if l, _ := h.nl.LinkByName(newPort.TapName()); l == nil || l.Attrs().MasterIndex != 0 {
		t.Errorf("the removed port's tap is still on a bridge")
	}

	// The network's VNI changes: the bridge carries the new vxlan device
	// only, never both. An MTU the underlay cannot carry is clamped.
	renumbered := seedNode3()
	renumbered.Networks[0].VNI = 200
	renumbered.Networks[0].MTU = 9000
	h.apply(d, renumbered)
	br, _ := h.nl.LinkByName("brq85ae5035-20")
	links, _ := h.nl.LinkList()
	var onBridge []string
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index && l.Type() == "vxlan" {
			onBridge = append(onBridge, l.Attrs().Name)
		}
	}
	if !slices.Equal(onBridge, []string{"vxlan-200"}) {
		t.Errorf("vxlan devices on the bridge after the VNI change: %v, want [vxlan-200]", onBridge)
	}
	if l, err := h.nl.LinkByName("vxlan-200"); err != nil || l.Attrs().MTU != 1450 {
		t.Errorf("vxlan-200 with network MTU 9000 on a 1500 underlay: %v, want MTU 1450", err)
	}

	// The network goes: bridge, vxlan device and every map entry with it,
	// but for the taps that still exist, now disabled.
	res = h.apply(d, &state.Desired{})
	for _, name := range []string{"brq85ae5035-20", "vxlan-100"} {
		if _, err := h.nl.LinkByName(name); err == nil {
			t.Errorf("%s still exists after its network was removed", name)
		}
	}
	for _, m := range []string{maps.FDB, maps.Networks, maps.VTEPs, maps.ARP, maps.TxPorts, maps.PortAddrs} {
		tbl, err := d.Maps().Read(m, maps.DumpOptions{})
		if err != nil || len(tbl.Rows) != 0 {
			t.Errorf("map %s not empty after the network was removed: %v %v", m, tbl.Rows, err)
		}
	}
	ports, err := maps.Entries[uint32, maps.PortInfo](d.Maps().Map(maps.Ports))
	if err != nil || len(ports) != 2 {
		t.Errorf("ports after the network was removed: %v (%v), want the two taps, disabled", ports, err)
	}
	for idx, p := range ports {
		if p.Flags != maps.PortDisabled {
			t.Errorf("ports[%d] = %+v, want disabled", idx, p)
		}
	}
}

func TestInvalidStateChangesNothing(t *testing.T) {
	h := newHost(t)
	d := h.open(nil)
	defer Cleanup(h.opts)
	defer d.Close()
	bad := seedNode3()
	bad.RemotePorts[0].NetworkID = "no-such-network"
	if _, err := d.Apply(context.Background(), bad); err == nil {
		t.Fatal("apply of an invalid state succeeded")
	}
	if _, err := h.nl.LinkByName("brq85ae5035-20"); err == nil {
		t.Error("invalid state created a bridge")
	}
}

func TestRestartAdoptsWithoutChanges(t *testing.T) {
	h := newHost(t)
	d, _, _ := h.seeded(nil)
	d.Close()

	d = h.open(nil)
	defer d.Close()
	if d.AppliedRevision() != 7 {
		t.Errorf("restarted agent sees revision %d, want 7", d.AppliedRevision())
	}
	if res := h.apply(d, seedNode3()); len(res.Ops) != 0 {
		t.Errorf("apply after restart changed %v, want nothing", res.Ops)
	}
}

func TestCleanupRemovesEverything(t *testing.T) {
	for _, mode := range []string{ModeTCX, ModeClsact} {
		t.Run(mode, func(t *testing.T) {
			if mode == ModeTCX && !kernelAtLeast(6, 6) {
				t.Skip("TCX needs Linux 6.6 or later (the agent falls back to clsact, tested below)")
			}
			h := newHost(t)
			d, tap, _ := h.seeded(func(o *Options) { o.TCMode = mode })
			if mode == ModeClsact {
				for dev, n := range map[string]int{tap.Attrs().Name: 2, "vxlan-100": 1, "brq85ae5035-20": 1} {
					l, _ := h.nl.LinkByName(dev)
					if fs, _ := d.att.clsactFilters(l.Attrs().Index, "vxdp_"); len(fs) != n {
						t.Fatalf("clsact filters on %s: %d, want %d", dev, len(fs), n)
					}
				}
			}
			d.Close()
			if err := Cleanup(h.opts); err != nil {
				t.Fatal(err)
			}
			links, _ := h.nl.LinkList()
			for _, l := range links {
				if l.Attrs().Alias != "" || l.Type() == "bridge" || l.Type() == "vxlan" {
					t.Errorf("left behind: %s (%s)", l.Attrs().Name, l.Type())
				}
				if l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached {
					t.Errorf("xdp still attached to %s", l.Attrs().Name)
				}
			}
			d2 := &attacher{nl: h.nl}
			if fs, _ := d2.clsactFilters(tap.Attrs().Index, "vxdp_"); len(fs) != 0 {
				t.Errorf("clsact filter left on the tap")
			}
			if h.hasTunnelRule() {
				t.Error("tun_id rule left behind")
			}
			if _, err := os.Stat(h.opts.PinDir()); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("pin dir left behind: %v", err)
			}
			if _, err := os.Stat(h.opts.StateDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("state dir left behind: %v", err)
			}
		})
	}
}

// The kernel dataplane forwards with the bridge and vxlan device only,
// but keeps filtering: a node switched to it stays isolated.
func TestKernelModeKeepsFiltering(t *testing.T) {
	h := newHost(t)
	d, tap, _ := h.seeded(nil)
	d.Close()

	d = h.open(func(o *Options) { o.Kernel = true })
	defer d.Close()
	res := h.apply(d, seedNode3())
	if got := opsOf(res, "bpf/xdp"); !slices.Equal(got, []string{"remove eth2"}) {
		t.Errorf("xdp ops %v, want the uplink program removed", got)
	}
	eth2, _ := h.nl.LinkByName("eth2")
	if x := eth2.Attrs().Xdp; x != nil && x.Attached {
		t.Errorf("XDP still attached to the uplink on the kernel dataplane")
	}
	var cfg maps.ConfigValue
	if err := d.Maps().Map(maps.Config).Lookup(uint32(0), &cfg); err != nil || cfg.Flags&maps.ConfigForward != 0 {
		t.Errorf("config %+v (%v): forwarding still on", cfg, err)
	}
	assertPinnedLink(t, filepath.Join(h.opts.linkDir(), "tc_"+tap.Attrs().Name), tap.Attrs().Index)
	vx, _ := h.nl.LinkByName("vxlan-100")
	assertPinnedLink(t, filepath.Join(h.opts.linkDir(), "vxlan_vxlan-100"), vx.Attrs().Index)
	if got := h.kernelFDB("vxlan-100"); len(got) != 4 {
		t.Errorf("kernel fdb %v, want the 4 seed entries", got)
	}
	if res := h.apply(d, seedNode3()); len(res.Ops) != 0 {
		t.Errorf("second apply changed %v", res.Ops)
	}
}

// A tap whose port is unbound leaves the bridge but keeps its program,
// which then drops everything (its frames would reach the host's stack
// otherwise); once the tap goes, so do its entry and pin.
func TestUnboundTapIsDisabled(t *testing.T) {
	h := newHost(t)
	d, tap, _ := h.seeded(nil)
	defer d.Close()
	unbound := seedNode3()
	unbound.LocalPorts = nil
	h.apply(d, unbound)

	tap, _ = h.nl.LinkByName(tap.Attrs().Name)
	if tap.Attrs().MasterIndex != 0 {
		t.Errorf("unbound tap still on a bridge (master %d)", tap.Attrs().MasterIndex)
	}
	idx := uint32(tap.Attrs().Index)
	var pi maps.PortInfo
	if err := d.Maps().Map(maps.Ports).Lookup(idx, &pi); err != nil || pi.Flags != maps.PortDisabled {
		t.Errorf("port entry of the unbound tap %+v (%v), want only the disabled flag", pi, err)
	}
	assertPinnedLink(t, filepath.Join(h.opts.linkDir(), "tc_"+tap.Attrs().Name), tap.Attrs().Index)
	var e maps.FDBEntry
	if err := d.Maps().Map(maps.FDB).Lookup(maps.NewFDBKey(100, vm2MAC), &e); err == nil {
		t.Errorf("unbound port still in the fdb: %+v", e)
	}
	if res := h.apply(d, unbound); len(res.Ops) != 0 {
		t.Errorf("second apply changed %v", res.Ops)
	}

	// Bound again: a normal port.
	h.apply(d, seedNode3())
	if err := d.Maps().Map(maps.Ports).Lookup(idx, &pi); err != nil || pi.Flags != maps.PortSecurity|maps.PortBridged {
		t.Errorf("re-bound port entry %+v (%v), want security on and bridged", pi, err)
	}

	// Unbound, then the VM (and its tap) goes away.
	h.apply(d, unbound)
	if err := h.nl.LinkDel(tap); err != nil {
		t.Fatal(err)
	}
	res := h.apply(d, unbound)
	if got := opsOf(res, "bpf/ports"); !slices.Equal(got, []string{"remove " + maps.U32KeyString(idx)}) {
		t.Errorf("ports ops %v, want the disabled entry removed", got)
	}
	if _, err := os.Stat(filepath.Join(h.opts.linkDir(), "tc_"+tap.Attrs().Name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin of the deleted tap left: %v", err)
	}
}

// hasTunnelRule reports whether the host has vxdp's tun_id rule.
func (h *hostEnv) hasTunnelRule() bool {
	rules, err := h.nl.RuleList(unix.AF_INET)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, r := range rules {
		if r.Priority == tunnelRulePriority && r.Protocol == rtprotVXDP {
			return true
		}
	}
	return false
}

// kernelAtLeast reports whether the running kernel is major.minor or later.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var ma, mi int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}
