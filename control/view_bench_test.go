package control

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/vxdp/vxdp/state"
)

// benchFixture is a view of one network with a port bound here and n
// ACTIVE remote ports on 1000 registered hosts, filled the way an agent
// fills it (every record decoded and folded in), with its first state
// built and tracked.
func benchFixture(b *testing.B, n int) *viewFixture {
	f := newFixture(b)
	netID := fixtureID("n", 0)
	f.v.followNetwork(netID)
	f.put(NetworkKey(netID), fixtureNet(0))
	for h := range 1000 {
		host := fmt.Sprintf("r%04d", h)
		f.put(RegistrationKey(host), &RegistrationRecord{Schema: SchemaVersion, Host: host,
			VTEP: netip.AddrFrom4([4]byte{10, 1, byte(h >> 8), byte(h)}), RegisteredBy: RegisteredByController})
	}
	own := fixturePort(0, 0, fixtureHost, 1)
	f.put(PortKey(netID, own.ID), own)
	for i := 1; i <= n; i++ {
		f.putRemote(netID, i)
	}
	f.start()
	return f
}

// putRemote folds remote port i of netID and its ACTIVE status.
func (f *viewFixture) putRemote(netID string, i int) *PortRecord {
	host := fmt.Sprintf("r%04d", i%1000)
	p := &PortRecord{Schema: SchemaVersion, ID: fmt.Sprintf("%08x-0000-4000-8000-00000000beef", i), NetworkID: netID,
		MAC:      state.MAC{2, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)},
		FixedIPs: []netip.Addr{netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)})}, PortSecurity: true,
		Host: host, Generation: 1}
	f.put(PortKey(netID, p.ID), p)
	f.put(StatusKey(netID, host, p.ID), fixtureStatus(p, host, StatusActive, 1))
	return p
}

// BenchmarkPortEvent is the agent's control-plane cost of one remote port
// coming up (its record and ACTIVE status decoded and folded into the
// view, the delta flushed) and going again (its deletion), in a network
// of 1k and 100k ports: it must not grow with the network.
func BenchmarkPortEvent(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("ports=%d", n), func(b *testing.B) {
			f := benchFixture(b, n)
			netID := fixtureID("n", 0)
			i := n + 1
			for b.Loop() {
				p := f.putRemote(netID, i)
				f.v.flush()
				if d := f.v.inc.take(0, f.rev); len(d.RemotePorts.Put) != 1 {
					b.Fatalf("port up: %+v", d.RemotePorts)
				}
				f.del(PortKey(netID, p.ID))
				f.del(StatusKey(netID, p.Host, p.ID))
				f.v.flush()
				if d := f.v.inc.take(0, f.rev); len(d.RemotePorts.Remove) != 1 {
					b.Fatalf("port down: %+v", d.RemotePorts)
				}
				i++
			}
		})
	}
}

// BenchmarkBuild is the cost of building the host's state whole from a
// populated view (the first state after a resync, and the periodic
// safety net), of validating it, and of working out what to follow.
func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		f := benchFixture(b, n)
		b.Run(fmt.Sprintf("build/ports=%d", n), func(b *testing.B) {
			for b.Loop() {
				if d := f.v.build().desired; len(d.RemotePorts) != n {
					b.Fatalf("%d remote ports, want %d", len(d.RemotePorts), n)
				}
			}
		})
		d := f.v.build().desired
		b.Run(fmt.Sprintf("validate/ports=%d", n), func(b *testing.B) {
			for b.Loop() {
				if err := d.Validate(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("wanted/ports=%d", n), func(b *testing.B) {
			for b.Loop() {
				f.v.wanted()
			}
		})
	}
}

// BenchmarkSnapshot is the cost of encoding a populated view into a
// snapshot, and of reading one back into a view (a restart), at 100k
// ports; it reports the snapshot's size.
func BenchmarkSnapshot(b *testing.B) {
	f := benchFixture(b, 100000)
	h := snapshotHeader{Host: fixtureHost, Bucket: "vxdp", Watermark: f.rev, DesiredRevision: f.rev}
	var raw []byte
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			var err error
			if raw, err = encodeSnapshot(f.v, h); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(raw))/1e6, "MB")
	})
	dir := b.TempDir()
	if err := writeSnapshot(dir, raw); err != nil {
		b.Fatal(err)
	}
	b.Run("read", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := readSnapshot(dir, fixtureHost, fixtureVTEP); err != nil {
				b.Fatal(err)
			}
		}
	})
}
