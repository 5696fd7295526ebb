package control

import (
	"crypto/sha1"
	"fmt"
	"net/netip"
	"testing"

	"github.com/vxdp/vxdp/state"
)

// benchView is a view of one network with n ACTIVE ports on 1000 hosts.
func benchView(n int) *view {
	v := newView("h0")
	v.followNetwork("net")
	v.nets["net"].net = &rev[NetworkRecord]{Rev: 1, Rec: &NetworkRecord{ID: "net", VNI: 5, MTU: 1450}}
	for i := 0; i < n; i++ {
		host := fmt.Sprintf("h%d", i%1000)
		h := sha1.Sum([]byte{byte(i >> 16), byte(i >> 8), byte(i)})
		id := fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
		v.nets["net"].ports[id] = rev[PortRecord]{Rev: uint64(i + 2), Key: PortKey("net", id), Rec: &PortRecord{ID: id, NetworkID: "net", MAC: state.MAC{2, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}, FixedIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})}, Host: host, Generation: 1}}
		v.nets["net"].status[statusID{id, host}] = rev[StatusRecord]{Rev: uint64(i + 2), Rec: &StatusRecord{PortID: id, Host: host, Status: StatusActive, Generation: 1}}
		v.agents[host] = rev[AgentRecord]{Rev: 1, Rec: &AgentRecord{Host: host, VTEP: netip.AddrFrom4([4]byte{192, 168, byte(i % 1000 >> 8), byte(i%1000 + 1)})}}
	}
	return v
}

// BenchmarkBuild is the cost of building a host's state from its view
// (the agent does it after every batch of relevant changes).
func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		v := benchView(n)
		b.Run(fmt.Sprintf("build/%d", n), func(b *testing.B) {
			for b.Loop() {
				v.build(netip.MustParseAddr("192.168.255.255"))
			}
		})
		d := v.build(netip.MustParseAddr("192.168.255.255")).desired
		b.Run(fmt.Sprintf("validate/%d", n), func(b *testing.B) {
			for b.Loop() {
				_ = d.Validate()
			}
		})
		b.Run(fmt.Sprintf("wanted/%d", n), func(b *testing.B) {
			for b.Loop() {
				v.wanted()
			}
		})
	}
}
