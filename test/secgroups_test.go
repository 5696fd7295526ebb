package test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/vxdp/vxdp/lab"
	"github.com/vxdp/vxdp/state"
)

const webGroupID = "7a1c3e55-0b2d-4f6e-8a9c-1d2e3f4a5b6c"

// webGroup allows everything out, TCP 22 in, and UDP 5000 in from vm2.
func webGroup() state.SecurityGroup {
	return state.SecurityGroup{ID: webGroupID, Name: "web", Rules: []state.Rule{
		{ID: "out4", Direction: state.Egress, EtherType: state.IPv4},
		{ID: "out6", Direction: state.Egress, EtherType: state.IPv6},
		{ID: "ssh", Direction: state.Ingress, EtherType: state.IPv4, Protocol: state.ProtoTCP, PortMin: 22, PortMax: 22},
		{ID: "udp5000", Direction: state.Ingress, EtherType: state.IPv4, Protocol: state.ProtoUDP, PortMin: 5000, PortMax: 5000,
			RemotePrefixes: []netip.Prefix{netip.PrefixFrom(lab.VM2.IP, 32)}},
	}}
}

// TestSecurityGroupPaths: vm1's ingress rules hold on every path into it:
// UDP decapsulated and redirected in XDP, TCP aggregated by the kernel's
// GRO and redirected by the vxlan program, broadcasts the kernel bridge
// floods, and on a node whose forwarding is the kernel's.
func TestSecurityGroupPaths(t *testing.T) {
	for _, dp := range []string{lab.DataplaneBPF, lab.DataplaneKernel} {
		t.Run("node4 "+dp, func(t *testing.T) {
			l := newLab(t, lab.Config{Dataplane: map[string]string{"node4": dp},
				PortGroups: map[string][]state.SecurityGroup{"vm1": {webGroup()}}})
			src, dst := l.PortNS(lab.VM2), l.PortNS(lab.VM1)

			// TCP 22 is allowed, 23 is not (the connect times out).
			before := snapshot(t, l, "node4")
			tr, err := lab.StartTCP(src, dst, lab.VM1.IP, 1<<20, lab.TCPOptions{Port: 22, Timeout: 10 * time.Second})
			if err != nil {
				t.Fatalf("tcp to 22: %v", err)
			}
			if res, err := tr.Wait(t.Context()); err != nil || !res.OK() {
				t.Fatalf("tcp to 22: %v %v", res, err)
			}
			if _, err := lab.StartTCP(src, dst, lab.VM1.IP, 1<<10, lab.TCPOptions{Port: 23, Timeout: 2 * time.Second}); err == nil {
				t.Error("a TCP connection to vm1:23 was established; no rule allows it")
			}
			after := snapshot(t, l, "node4")
			if p, _ := grown(before, after, "node4", "deliver", "DROP_SG_INGRESS"); p == 0 {
				t.Errorf("node4's deliver program dropped nothing (grown:%s)", nonZeroGrowth(before, after, "node4"))
			}

			// UDP: 5000 from vm2 passes, 5001 does not; and a broadcast to
			// 5001 through the kernel bridge does not either.
			marker := func(s string) []byte { return []byte(fmt.Sprintf("%s-%s-%d", dp, s, time.Now().UnixNano())) }
			ok, denied, bcast := marker("udp5000"), marker("udp5001"), marker("bcast5001")
			seen := watch(t, l, []lab.Port{lab.VM1}, func() {
				for _, s := range []struct {
					to  string
					p   uint16
					msg []byte
				}{{"172.16.100.12", 5000, ok}, {"172.16.100.12", 5001, denied}, {"172.16.100.255", 5001, bcast}} {
					if err := lab.SendUDP(src, netip.AddrPortFrom(netip.MustParseAddr(s.to), s.p), s.msg); err != nil {
						t.Fatal(err)
					}
				}
			})
			count := func(m []byte) int {
				n := 0
				for _, f := range seen["vm1"] {
					if !f.Outgoing && f.Contains(m) {
						n++
					}
				}
				return n
			}
			if count(ok) != 1 || count(denied) != 0 || count(bcast) != 0 {
				t.Errorf("vm1 received udp 5000 %d times (want 1), udp 5001 %d (want 0), broadcast 5001 %d (want 0)",
					count(ok), count(denied), count(bcast))
			}
		})
	}
}
