package dataplane

import (
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf/link"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/maps"
	"github.com/vxdp/vxdp/state"
)

// TestStatus: on a host as applied, status finds every program attached
// and no drift; an FDB entry deleted from the kernel and another from the
// BPF map, an address slipped into port security's allow list and a
// detached program are each reported by name, and readiness
// (CheckAttached) names the program too.
func TestStatus(t *testing.T) {
	h := newHost(t)
	d, tap, _ := h.seeded(nil)
	defer d.Close()
	tapName := tap.Attrs().Name

	st, err := ReadStatus(h.opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Problems) != 0 || len(st.Drift) != 0 {
		t.Fatalf("status of a host as applied: problems %q, drift %v", st.Problems, st.Drift)
	}
	if st.AppliedRevision != 7 || st.Dataplane != "bpf" {
		t.Errorf("applied revision %d dataplane %q, want 7 and bpf", st.AppliedRevision, st.Dataplane)
	}
	var got []string
	for _, p := range st.Programs {
		if !p.Expected || p.ProgID == 0 || !strings.HasPrefix(p.ProgName, "vxdp_") {
			t.Errorf("program %+v: want expected, with a vxdp program id", p)
		}
		got = append(got, p.Program+" "+p.Hook+" "+p.Device+" "+p.Mode+" "+filepath.Base(p.Pin))
	}
	tcx := ModeTCX
	if !kernelAtLeast(6, 6) {
		tcx = ModeClsact
	}
	want := []string{
		"uplink xdp eth2 native xdp_eth2",
		"bridge tc ingress brq85ae5035-20 " + tcx + " bridge_brq85ae5035-20",
		"vxlan tc ingress vxlan-100 " + tcx + " vxlan_vxlan-100",
		"port tc ingress " + tapName + " " + tcx + " tc_" + tapName,
		"deliver tc egress " + tapName + " " + tcx + " deliver_" + tapName,
	}
	if !slices.Equal(got, want) {
		t.Errorf("programs:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	fill := map[string]MapFill{}
	for _, m := range st.Maps {
		fill[m.Name] = m
	}
	if f := fill[maps.FDB]; f.Entries != 3 || f.Capacity == 0 || f.Type != "hash" {
		t.Errorf("fdb fill %+v, want 3 entries of a hash", f)
	}
	if f := fill[maps.Stats]; f.Entries != -1 || f.Percent() != -1 {
		t.Errorf("stats fill %+v: an array has no fill", f)
	}

	// Drift: vm1's kernel FDB entry and the DHCP port's BPF entry removed,
	// an allowed address added behind the agent's back.
	vx, _ := h.nl.LinkByName("vxlan-100")
	if err := h.nl.NeighDel(&netlink.Neigh{LinkIndex: vx.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
		HardwareAddr: net.HardwareAddr(vm1MAC[:]), IP: net.IP(vtep4.AsSlice())}); err != nil {
		t.Fatal(err)
	}
	if err := d.Maps().Map(maps.FDB).Delete(maps.NewFDBKey(100, dhcpMAC)); err != nil {
		t.Fatal(err)
	}
	spoof := maps.NewPortAddrKey(uint32(tap.Attrs().Index), vm2MAC, netip.MustParsePrefix("172.16.100.99/32"))
	if err := d.Maps().Map(maps.PortAddrs).Put(spoof, maps.PortAddrValue{Kind: maps.AddrAllowed}); err != nil {
		t.Fatal(err)
	}
	// The deliver program detached from its link, which stays pinned.
	l, err := link.LoadPinnedLink(filepath.Join(h.opts.linkDir(), "deliver_"+tapName), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Detach(); err != nil {
		t.Fatal(err)
	}
	l.Close()

	st, err = ReadStatus(h.opts)
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, dr := range st.Drift {
		got = append(got, dr.String())
	}
	want = []string{
		"port_addrs " + maps.PortAddrKeyString(spoof) + " in bpf port_addrs: want nothing, have present",
		"fdb fa:16:3e:06:42:34 (VNI 100) in kernel fdb vxlan-100: want dst 192.168.248.4, have nothing",
		"fdb fa:16:3e:6e:c0:44 (VNI 100) in bpf fdb: want dst 192.168.248.1, have nothing",
	}
	if !slices.Equal(got, want) {
		t.Errorf("drift:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	wantProblem := "deliver program on " + tapName + " (tc egress): detached"
	if !slices.Contains(st.Problems, wantProblem) || len(st.Problems) != 2 {
		t.Errorf("problems %q, want %q and the drift", st.Problems, wantProblem)
	}
	if err := d.CheckAttached(); err == nil || err.Error() != wantProblem {
		t.Errorf("CheckAttached: %v, want %q", err, wantProblem)
	}

	// The next apply repairs all of it.
	h.apply(d, seedNode3())
	if st, err := ReadStatus(h.opts); err != nil || len(st.Problems) != 0 {
		t.Errorf("after the next apply: problems %q (%v), want none", st.Problems, err)
	}
	if err := d.CheckAttached(); err != nil {
		t.Errorf("CheckAttached after the next apply: %v", err)
	}
}

// TestStatusKernelDataplane: with --dataplane=kernel no XDP program is
// expected, and a missing clsact filter is found as well as a TCX link.
func TestStatusKernelDataplane(t *testing.T) {
	h := newHost(t)
	d, tap, _ := h.seeded(func(o *Options) { o.Kernel, o.TCMode = true, ModeClsact })
	defer d.Close()
	st, err := ReadStatus(h.opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Problems) != 0 || st.Dataplane != "kernel" {
		t.Fatalf("problems %q dataplane %q", st.Problems, st.Dataplane)
	}
	for _, p := range st.Programs {
		if p.Program == "uplink" || p.Mode != ModeClsact || p.Pin != "" {
			t.Errorf("program %+v, want clsact filters only, no uplink program", p)
		}
	}
	fs, _ := d.att.clsactFilters(tap.Attrs().Index, portHook.filter)
	if len(fs) != 1 {
		t.Fatalf("port filters on the tap: %d", len(fs))
	}
	if err := h.nl.FilterDel(fs[0]); err != nil {
		t.Fatal(err)
	}
	st, err = ReadStatus(h.opts)
	if err != nil {
		t.Fatal(err)
	}
	want := "port program on " + tap.Attrs().Name + " (tc ingress): missing"
	if !slices.Equal(st.Problems, []string{want}) {
		t.Errorf("problems %q, want %q", st.Problems, want)
	}
}

// TestStatusUncompiledGroups: a port whose groups cannot be compiled
// (300 rules, each with its own remote and port) is a problem of `vxdp
// status` naming the port, and counted in vxdp_sg_uncompiled_ports; the
// next apply with a compilable group clears both.
func TestStatusUncompiledGroups(t *testing.T) {
	h := newHost(t)
	d, _, _ := h.seeded(func(o *Options) { o.SecurityGroups = true })
	defer d.Close()
	reg := prometheus.NewRegistry()
	if _, err := NewMetrics(reg, d); err != nil {
		t.Fatal(err)
	}
	uncompiled := func() float64 {
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() == "vxdp_sg_uncompiled_ports" {
				return f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no vxdp_sg_uncompiled_ports")
		return 0
	}
	want := seedNode3()
	want.SecurityGroups = []state.SecurityGroup{{ID: "big", Rules: distinctRules(300)}}
	want.LocalPorts[0].SecurityGroups = []string{"big"}
	h.apply(d, want)
	st, err := ReadStatus(h.opts)
	if err != nil {
		t.Fatal(err)
	}
	problem := "port " + want.LocalPorts[0].ID + ": security groups big not compiled: ingress IPv4: 300 distinct remote sets and " +
		"300 distinct protocol/port sets: at most 256 of either; it passes only always-allowed traffic"
	if !slices.Equal(st.Problems, []string{problem}) {
		t.Errorf("problems %q, want %q", st.Problems, problem)
	}
	if n := uncompiled(); n != 1 {
		t.Errorf("vxdp_sg_uncompiled_ports = %v, want 1", n)
	}

	want.SecurityGroups[0].Rules = distinctRules(state.MaxPolicyClasses)
	h.apply(d, want)
	if st, err := ReadStatus(h.opts); err != nil || len(st.Problems) != 0 {
		t.Errorf("with %d rules: problems %q (%v), want none", state.MaxPolicyClasses, st.Problems, err)
	}
	if n := uncompiled(); n != 0 {
		t.Errorf("vxdp_sg_uncompiled_ports = %v after a compilable apply, want 0", n)
	}
}
