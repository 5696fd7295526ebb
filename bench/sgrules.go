package bench

import (
	"fmt"
	"math/rand/v2"
	"net/netip"

	"github.com/vxdp/vxdp/state"
)

// Security groups of a given size for the benchmarks: what a tenant's
// group of n rules looks like, none of which matches the benchmark's
// traffic but one.

// remotePool is how many distinct remote prefixes the filler rules use:
// real groups repeat their remotes (offices, peers, monitoring), and the
// compiled policy holds at most 256 classes of distinct remotes.
const remotePool = 200

// fillerPorts are the services filler rules open: single ports and
// ranges, none holding a port the benchmark uses (9, 5201, ephemeral).
var fillerPorts = [][2]uint16{
	{22, 22}, {25, 25}, {53, 53}, {80, 80}, {123, 123}, {161, 162}, {389, 389}, {443, 443}, {636, 636},
	{1194, 1194}, {1433, 1433}, {2049, 2049}, {2379, 2380}, {3000, 3000}, {3306, 3306}, {3389, 3389},
	{4369, 4369}, {5432, 5432}, {5601, 5601}, {5672, 5672}, {6379, 6379}, {6443, 6443}, {8000, 8099},
	{8080, 8080}, {8443, 8443}, {9000, 9100}, {9200, 9300}, {10250, 10259}, {11211, 11211}, {15672, 15672},
	{27017, 27019}, {30000, 30999},
}

// fillerRemote is the i-th prefix of the pool: 10.0.0.0/8 down to /32,
// documentation and CGNAT space; never the lab's 172.16.100.0/24.
func fillerRemote(i int) netip.Prefix {
	bases := []netip.Addr{netip.MustParseAddr("10.0.0.0"), netip.MustParseAddr("198.51.100.0"),
		netip.MustParseAddr("203.0.113.0"), netip.MustParseAddr("100.64.0.0")}
	lens := []int{8, 12, 16, 20, 22, 24, 26, 28, 30, 32}
	b := bases[i%len(bases)].As4()
	b[1] += byte(i * 7)
	b[2] += byte(i * 13)
	b[3] += byte(i * 29)
	return netip.PrefixFrom(netip.AddrFrom4(b), lens[(i/len(bases))%len(lens)]).Masked()
}

// PeersGroupID is the remote group filler rules name: other tenants'
// machines, its members in 10.200.0.0/16.
const PeersGroupID = "5c1b2d0e-7a3f-4e21-9b84-peers0000001"

func peerMembers() []netip.Prefix {
	var out []netip.Prefix
	for i := range 16 {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200, byte(i), 10}), 32))
	}
	return out
}

// SGGroup is a security group of n rules in direction dir plus the two
// egress rules every new group gets: n-1 filler rules (TCP, UDP and ICMP
// to the ports above, each with a remote prefix from the pool, a remote
// group every tenth, "any" every fiftieth) and, last, the rule that
// allows the benchmark's traffic: any protocol with remote allow. Last
// is the worst place for an ordered list (iptables walks every rule for
// a new flow) and no better or worse for vxdp's compiled policy.
func SGGroup(id string, n int, dir state.Direction, allow netip.Prefix) state.SecurityGroup {
	g := state.SecurityGroup{ID: id, Name: fmt.Sprintf("bench-%d", n)}
	if dir == state.Ingress {
		g.Rules = append(g.Rules,
			state.Rule{ID: "egress-v4", Direction: state.Egress, EtherType: state.IPv4},
			state.Rule{ID: "egress-v6", Direction: state.Egress, EtherType: state.IPv6})
	}
	rng := rand.New(rand.NewPCG(uint64(n), 0x76786470))
	seen := map[string]bool{}
	for i := 0; len(g.Rules) < n-1+2*boolInt(dir == state.Ingress); i++ {
		r := state.Rule{ID: fmt.Sprintf("r%d", i), Direction: dir, EtherType: state.IPv4}
		switch k := rng.IntN(10); {
		case k < 6:
			r.Protocol = state.ProtoTCP
		case k < 9:
			r.Protocol = state.ProtoUDP
		default:
			r.Protocol = state.ProtoICMP
			t := uint8([]int{0, 3, 8, 11}[rng.IntN(4)])
			r.ICMPType = &t
		}
		if state.HasPorts(r.Protocol) {
			p := fillerPorts[rng.IntN(len(fillerPorts))]
			r.PortMin, r.PortMax = p[0], p[1]
		}
		switch {
		case i%50 == 49:
			// any remote
		case i%10 == 9:
			r.RemoteGroup, r.RemotePrefixes = PeersGroupID, peerMembers()
		default:
			r.RemotePrefixes = []netip.Prefix{fillerRemote(rng.IntN(remotePool))}
		}
		key := fmt.Sprint(r.Protocol, r.PortMin, r.PortMax, r.ICMPType != nil && *r.ICMPType > 0, r.RemoteGroup, r.RemotePrefixes)
		if r.ICMPType != nil {
			key += fmt.Sprint(*r.ICMPType)
		}
		if seen[key] {
			continue // Neutron refuses a duplicate rule
		}
		seen[key] = true
		g.Rules = append(g.Rules, r)
	}
	g.Rules = append(g.Rules, state.Rule{ID: "allow-bench", Direction: dir, EtherType: state.IPv4, RemotePrefixes: []netip.Prefix{allow}})
	return g
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
