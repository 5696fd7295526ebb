package dataplane

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/vxdp/vxdp/state"
)

// neutronNetwork builds vxlan100_net the way Neutron's linuxbridge agent
// does (`ip link add vxlan-100 type vxlan id 100 dev eth2 srcport 0 0
// dstport 8472 local 192.168.248.3 [ttl T] [proxy]`, learning and UDP
// checksums left at the kernel's defaults, then `brctl addbr`, `addif`,
// the tap on the bridge), with vxlan changed by mod. It returns the vxlan
// device's ifindex.
func (h *hostEnv) neutronNetwork(tap netlink.Link, mod func(*netlink.Vxlan)) int {
	h.t.Helper()
	eth2, err := h.nl.LinkByName("eth2")
	if err != nil {
		h.t.Fatal(err)
	}
	brAttrs := netlink.NewLinkAttrs()
	brAttrs.Name = "brq85ae5035-20"
	if err := h.nl.LinkAdd(&netlink.Bridge{LinkAttrs: brAttrs}); err != nil {
		h.t.Fatal(err)
	}
	vxAttrs := netlink.NewLinkAttrs()
	vxAttrs.Name = "vxlan-100"
	vxAttrs.MTU = 1450
	vx := &netlink.Vxlan{LinkAttrs: vxAttrs, VxlanId: 100, VtepDevIndex: eth2.Attrs().Index,
		SrcAddr: net.ParseIP("192.168.248.3"), Port: 8472, Learning: true, UDPCSum: true}
	if mod != nil {
		mod(vx)
	}
	if err := h.nl.LinkAdd(vx); err != nil {
		h.t.Fatalf("add Neutron's vxlan-100: %v", err)
	}
	br, _ := h.nl.LinkByName("brq85ae5035-20")
	for _, name := range []string{"vxlan-100", tap.Attrs().Name} {
		l, err := h.nl.LinkByName(name)
		if err != nil {
			h.t.Fatal(err)
		}
		if err := h.nl.LinkSetMaster(l, br); err != nil {
			h.t.Fatal(err)
		}
		h.nl.LinkSetUp(l)
	}
	h.nl.LinkSetUp(br)
	l, _ := h.nl.LinkByName("vxlan-100")
	return l.Attrs().Index
}

func (h *hostEnv) vxlan(name string) *netlink.Vxlan {
	h.t.Helper()
	l, err := h.nl.LinkByName(name)
	if err != nil {
		h.t.Fatalf("%s: %v", name, err)
	}
	return l.(*netlink.Vxlan)
}

// TestTakeoverFromNeutron: the devices Neutron's agent built are adopted
// (the vxlan device changed in place where vxdp needs it, e.g. learning
// off, and kept as it is otherwise) instead of recreated, so forwarding
// never stops; one that cannot carry the network is recreated. Cleanup
// hands adopted devices back as they were found and deletes only what
// vxdp created.
func TestTakeoverFromNeutron(t *testing.T) {
	for _, tc := range []struct {
		name     string
		neutron  func(*netlink.Vxlan)
		opts     func(*Options)
		recreate bool
		check    func(t *testing.T, vx *netlink.Vxlan)
	}{
		{name: "neutron defaults (learning, udpcsum)", check: func(t *testing.T, vx *netlink.Vxlan) {
			if vx.Learning || !vx.UDPCSum {
				t.Errorf("learning %v udpcsum %v, want learning off (changed in place) and udpcsum kept", vx.Learning, vx.UDPCSum)
			}
		}},
		{name: "arp_responder (proxy)", neutron: func(vx *netlink.Vxlan) { vx.Proxy = true }, check: func(t *testing.T, vx *netlink.Vxlan) {
			if !vx.Proxy {
				t.Error("proxy cleared: the kernel cannot change it in place, so the device was recreated")
			}
		}},
		{name: "ttl and ageing", neutron: func(vx *netlink.Vxlan) { vx.TTL, vx.Age = 32, 100 }, opts: func(o *Options) { o.TTL = 64 },
			check: func(t *testing.T, vx *netlink.Vxlan) {
				if vx.TTL != 64 || vx.Age != vxlanAgeing {
					t.Errorf("ttl %d ageing %d, want 64 and %d (changed in place)", vx.TTL, vx.Age, vxlanAgeing)
				}
			}},
		{name: "source port range, tos", neutron: func(vx *netlink.Vxlan) { vx.PortLow, vx.PortHigh, vx.TOS = 32768, 61000, 1 }},
		{name: "IANA port", neutron: func(vx *netlink.Vxlan) { vx.Port = 4789 }, recreate: true},
		{name: "other local address", neutron: func(vx *netlink.Vxlan) { vx.SrcAddr = net.ParseIP("192.168.248.33") }, recreate: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t)
			tap := h.veth(state.TapName("31c64a21-7601-4c3e-9f1a-000000000002"), "vm2-eth0")
			index := h.neutronNetwork(tap, tc.neutron)
			neutron := h.vxlan("vxlan-100")
			d := h.open(tc.opts)
			t.Cleanup(func() { Cleanup(h.opts) })
			res := h.apply(d, seedNode3())
			vx := h.vxlan("vxlan-100")
			if recreated := vx.Index != index; recreated != tc.recreate {
				t.Fatalf("vxlan-100 recreated: %v, want %v (ops %v)", recreated, tc.recreate, res.Ops)
			}
			if !tc.recreate {
				if got := opsOf(res, "kernel/vxlan"); !slices.Contains(got, "adopt vxlan-100") {
					t.Errorf("kernel/vxlan ops %v, want vxlan-100 adopted", got)
				}
				if !strings.HasPrefix(vx.Alias, h.opts.Owner()+" adopted") {
					t.Errorf("alias %q: not marked as adopted", vx.Alias)
				}
			}
			if tc.check != nil {
				tc.check(t, vx)
			}
			if vx.Learning {
				t.Error("learning on: a frame from any VXLAN source would teach the kernel FDB")
			}
			if got := h.kernelFDB("vxlan-100"); len(got) != 4 {
				t.Errorf("kernel fdb %v, want the 4 seed entries", got)
			}
			d.Close()

			// A restarted agent finds the device adopted and changes nothing.
			d = h.open(tc.opts)
			if res := h.apply(d, seedNode3()); len(res.Ops) != 0 {
				t.Errorf("apply after restart changed %v", res.Ops)
			}
			d.Close()

			if err := Cleanup(h.opts); err != nil {
				t.Fatal(err)
			}
			br, err := h.nl.LinkByName("brq85ae5035-20")
			if err != nil || br.Attrs().Alias != "" {
				t.Fatalf("Neutron's bridge after cleanup: %v (alias %q), want it handed back", err, br.Attrs().Alias)
			}
			l, err := h.nl.LinkByName("vxlan-100")
			if tc.recreate {
				if err == nil {
					t.Errorf("the vxlan-100 vxdp made is left after cleanup")
				}
				return
			}
			if err != nil {
				t.Fatalf("Neutron's vxlan-100 deleted by cleanup: %v", err)
			}
			back := l.(*netlink.Vxlan)
			if back.Alias != neutron.Alias || back.Learning != neutron.Learning || back.TTL != neutron.TTL ||
				back.Age != neutron.Age || back.Proxy != neutron.Proxy || back.UDPCSum != neutron.UDPCSum ||
				back.MasterIndex != br.Attrs().Index {
				t.Errorf("vxlan-100 handed back as %+v, want it as Neutron built it: %+v", back, neutron)
			}
			if got := h.kernelFDB("vxlan-100"); len(got) != 4 {
				t.Errorf("kernel fdb after cleanup %v, want the 4 seed entries kept for the kernel path", got)
			}
			for _, dev := range []string{"vxlan-100", "brq85ae5035-20", tap.Attrs().Name, "eth2"} {
				if got := h.attachments(dev); len(got) != 0 {
					t.Errorf("programs left on %s after cleanup: %v", dev, got)
				}
			}
		})
	}
}

// attachments lists the BPF programs attached to dev: XDP, TCX (either
// direction) and vxdp's clsact filters.
func (h *hostEnv) attachments(dev string) []string {
	h.t.Helper()
	l, err := h.nl.LinkByName(dev)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		out = append(out, fmt.Sprintf("xdp id %d", x.ProgId))
	}
	for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		res, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: at})
		if err != nil {
			continue // no TCX here
		}
		for _, p := range res.Programs {
			out = append(out, fmt.Sprintf("%s id %d", at, p.ID))
		}
	}
	fs, _ := (&attacher{nl: h.nl}).clsactFilters(l.Attrs().Index, "vxdp_")
	for _, f := range fs {
		out = append(out, "clsact "+f.Name)
	}
	return out
}

// TestAdoptionRecord: what an adopted device's alias records reads back
// the same, and an alias is only ours when it is this instance's.
func TestAdoptionRecord(t *testing.T) {
	on, ttl, ageing := true, 32, 100
	for _, a := range []adoption{
		{},
		{learning: &on},
		{learning: &on, ttl: &ttl, ageing: &ageing, alias: "uplink to rack 7"},
		{alias: "vxdp:other adopted learning=off"},
	} {
		alias := a.record("vxdp:node3")
		got, ok := parseAdoption(alias, "vxdp:node3")
		if !ok || !equalPtr(got.learning, a.learning) || !equalPtr(got.ttl, a.ttl) || !equalPtr(got.ageing, a.ageing) || got.alias != a.alias {
			t.Errorf("%q read back as %+v (%v), want %+v", alias, got, ok, a)
		}
		if _, ok := parseAdoption(alias, "vxdp:node"); ok {
			t.Errorf("%q is taken for instance node's", alias)
		}
	}
	for _, alias := range []string{"", "vxdp:node3", "vxdp:node3 adoptedx", "neutron"} {
		if _, ok := parseAdoption(alias, "vxdp:node3"); ok {
			t.Errorf("alias %q taken for an adoption", alias)
		}
	}
}

func equalPtr[T comparable](a, b *T) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}
