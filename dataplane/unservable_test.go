package dataplane

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/vxdp/vxdp/state"
)

// TestUnservableNetworkLeavesTheRest: a VLAN network bound here whose
// physical network has no interface on this host (no mapping, or the
// mapped interface missing) is left out with its ports (pending, so
// reported DOWN) and named in `vxdp status`; every other network is
// applied as usual, including changes made after it appeared.
func TestUnservableNetworkLeavesTheRest(t *testing.T) {
	for _, c := range []struct {
		name     string
		mappings map[string]string
		reason   string
	}{
		{"no mapping", nil, `physical network "default" has no interface on this host: add default:<interface>`},
		{"mapped interface missing", map[string]string{"default": "eth9"}, "interface eth9 of physical network \"default\" does not exist"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHost(t) // in the subtest's goroutine: its thread enters the namespace
			d, _, _ := h.seeded(func(o *Options) { o.PhysicalInterfaceMappings = c.mappings })
			defer d.Close()
			const vlanNet = "5ac5c948-2f00-4d58-9a3a-000000000099"
			h.veth(state.TapName("aaaaaaaa-0000-4000-8000-000000000005"), "vm5-eth0")
			want := seedNode3()
			want.Revision++
			want.Networks = append(want.Networks, state.Network{ID: vlanNet, Name: "vlan99", Type: state.NetworkVLAN, PhysicalNetwork: "default", VLAN: 99})
			want.LocalPorts = append(want.LocalPorts, state.LocalPort{ID: "aaaaaaaa-0000-4000-8000-000000000005", NetworkID: vlanNet,
				MAC: mustMAC("fa:16:3e:00:00:05"), IPs: []netip.Addr{netip.MustParseAddr("172.16.99.117")}})
			// And a change to the VXLAN network in the same state: vm1 moved.
			want.RemotePorts[0].VTEP = vtep1
			res := h.apply(d, want)
			if len(res.Pending) != 1 || !strings.Contains(res.Pending[0], "aaaaaaaa") {
				t.Errorf("pending %q, want vm5's port only", res.Pending)
			}
			if fdb := strings.Join(h.kernelFDB("vxlan-100"), "\n"); !strings.Contains(fdb, "fa:16:3e:06:42:34 dst 192.168.248.1") {
				t.Errorf("vm1's move was not applied with an unservable network beside it:\n%s", fdb)
			}
			st, err := ReadStatus(h.opts)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, p := range st.Problems {
				if strings.HasPrefix(p, "network vlan99") && strings.Contains(p, c.reason) && strings.Contains(p, "its ports stay DOWN") {
					found = true
				}
			}
			if !found {
				t.Errorf("status problems %q do not name vlan99 and why (%s)", st.Problems, c.reason)
			}
			for _, w := range st.Warnings {
				if strings.Contains(w, "aaaaaaaa") {
					t.Errorf("status warns %q: the port's tap exists, its network is what is missing", w)
				}
			}
		})
	}
}
