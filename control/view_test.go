package control

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vxdp/vxdp/state"
)

// viewFixture feeds a view the messages an agent would receive, and keeps
// the state its updates make (a Tracker, as the run loop does).
type viewFixture struct {
	t   testing.TB
	v   *view
	rev uint64
	tr  state.Tracker
}

const fixtureHost = "h0"

var fixtureVTEP = netip.MustParseAddr("10.0.0.1")

func newFixture(t testing.TB) *viewFixture {
	return &viewFixture{t: t, v: newView(fixtureHost, fixtureVTEP)}
}

// put folds a record written at the next revision.
func (f *viewFixture) put(key string, rec any) {
	f.t.Helper()
	raw, err := json.Marshal(rec)
	if err != nil {
		f.t.Fatal(err)
	}
	f.rev++
	if _, err := f.v.apply(kvEntry{Key: key, Rev: f.rev, Value: raw}); err != nil {
		f.t.Fatalf("%s: %v", key, err)
	}
}

// del folds the deletion of key at the next revision.
func (f *viewFixture) del(key string) {
	f.rev++
	_, _ = f.v.apply(kvEntry{Key: key, Rev: f.rev, Deleted: true})
}

// start builds the first state whole and tracks changes from there.
func (f *viewFixture) start() {
	d := f.v.build().desired
	f.v.reset(d)
	f.tr.Apply(state.Update{Full: d})
}

// step flushes the changes as a delta into the tracked state and checks
// it against the state built whole from the view.
func (f *viewFixture) step(what string) {
	f.t.Helper()
	f.v.flush()
	delta := f.v.inc.take(0, f.rev)
	if err := delta.Validate(); err != nil {
		f.t.Fatalf("after %s: invalid delta: %v", what, err)
	}
	f.tr.Apply(state.Update{Delta: delta})
	want := f.v.build().desired
	if diff := state.Difference(f.tr.Desired(), want); diff != "" {
		f.t.Fatalf("after %s: the state kept by deltas differs from the state built whole: %s", what, diff)
	}
	if err := want.Validate(); err != nil {
		f.t.Fatalf("after %s: invalid state: %v", what, err)
	}
	for _, nv := range f.v.nets {
		n := len(nv.others)
		for _, e := range nv.ports {
			if e.st.rev != 0 {
				n++
			}
		}
		if nv.statuses() != n {
			f.t.Fatalf("after %s: %d statuses counted, %d held", what, nv.statuses(), n)
		}
	}
}

func fixtureID(kind string, i int) string {
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", i, kind[0])
}

func fixtureNet(i int) *NetworkRecord {
	return &NetworkRecord{Schema: SchemaVersion, ID: fixtureID("n", i), Name: fmt.Sprintf("net%d", i), VNI: uint32(100 + i), MTU: 1450}
}

// fixtureProviderNet is network i as a provider network: VLAN 100+i, or
// flat, on physical network physnet.
func fixtureProviderNet(i int, flat bool, physnet string) *NetworkRecord {
	n := fixtureNet(i)
	n.Schema, n.VNI, n.PhysicalNetwork, n.NetworkType, n.SegmentationID = NetworkSchema, 0, physnet, state.NetworkVLAN, uint16(100+i)
	if flat {
		n.NetworkType, n.SegmentationID = state.NetworkFlat, 0
	}
	return n
}

// withSubnet gives network record n a subnet with DHCP and a DNS domain.
func withSubnet(n *NetworkRecord, i int) *NetworkRecord {
	n.Subnets = []SubnetRecord{{ID: fixtureID("s", i), CIDR: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 24),
		Gateway: netip.AddrFrom4([4]byte{10, byte(i), 0, 254}), DNS: []netip.Addr{netip.MustParseAddr("9.9.9.9")}, DHCP: true, LeaseSeconds: 600 + i}}
	n.DNSDomain = fmt.Sprintf("d%d.example.org", i)
	return n
}

func fixturePort(net, i int, host string, mac byte, sgs ...string) *PortRecord {
	return &PortRecord{Schema: SchemaVersion, ID: fixtureID("p", i), NetworkID: fixtureID("n", net), MAC: state.MAC{0xfa, 0x16, 0x3e, 0, byte(net), mac},
		FixedIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(net), 0, mac})}, PortSecurity: true, Host: host, Generation: 1,
		SecurityGroups: sgs}
}

func fixtureStatus(p *PortRecord, host, status string, gen uint64) *StatusRecord {
	return &StatusRecord{Schema: SchemaVersion, PortID: p.ID, Host: host, Status: status, Generation: gen}
}

func fixtureRegistration(host string, vtep byte) *RegistrationRecord {
	return &RegistrationRecord{Schema: SchemaVersion, Host: host, VTEP: netip.AddrFrom4([4]byte{10, 0, 0, vtep}), RegisteredBy: RegisteredByController}
}

// fixtureRegistration6 registers host at an IPv6 VTEP (an IPv6 underlay).
func fixtureRegistration6(host string, vtep byte) *RegistrationRecord {
	r := fixtureRegistration(host, vtep)
	r.VTEP = netip.AddrFrom16([16]byte{0xfd, 0, 15: vtep})
	return r
}

// The state kept up to date change by change is the state built whole
// from the same records, after every change of long random sequences:
// ports coming, moving, changing MAC or DNS name and going, statuses of
// current and stale bindings, MACs, VNIs and VLANs in conflict, hosts
// registered (IPv4 or IPv6 VTEPs), moved to another VTEP (or ours) and
// unregistered, networks changed (to and from provider networks, their
// subnets and DNS domain) and dropped, security groups whose remote
// group's members and address groups change.
func TestIncrementalEqualsFull(t *testing.T) {
	hosts := []string{fixtureHost, "h1", "h2", "h3", "h4", ""}
	sg := &SecurityGroupRecord{Schema: SchemaVersion, ID: fixtureID("g", 1), Name: "web", Rules: []SGRule{
		{ID: fixtureID("r", 1), Direction: "ingress", Ethertype: state.IPv4, RemoteGroupID: fixtureID("g", 1)},
		{ID: fixtureID("r", 2), Direction: "ingress", Ethertype: state.IPv4, RemoteAddressGroupID: fixtureID("a", 1)}}}
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			f := newFixture(t)
			for n := range 3 {
				f.v.followNetwork(fixtureID("n", n))
				f.put(NetworkKey(fixtureID("n", n)), fixtureNet(n))
			}
			f.v.followNetwork(fixtureID("n", 3))
			f.put(NetworkKey(fixtureID("n", 3)), withSubnet(fixtureProviderNet(3, false, "physnet1"), 3))
			f.put(SecGroupKey(sg.ID), sg)
			for i, h := range hosts[1:4] {
				f.put(RegistrationKey(h), fixtureRegistration(h, byte(2+i)))
			}
			ports := map[int]*PortRecord{}
			for i := range 12 {
				p := fixturePort(i%4, i, hosts[i%len(hosts)], byte(i%8))
				ports[i] = p
				f.put(PortKey(p.NetworkID, p.ID), p)
				if p.Host != "" {
					f.put(StatusKey(p.NetworkID, p.Host, p.ID), fixtureStatus(p, p.Host, StatusActive, 1))
				}
			}
			f.start()
			f.step("the start")
			for i := range 300 {
				what := f.randomEvent(rng, ports, hosts, sg)
				f.step(fmt.Sprintf("event %d (%s)", i, what))
			}
		})
	}
}

// randomEvent makes one random change and says what it was.
func (f *viewFixture) randomEvent(rng *rand.Rand, ports map[int]*PortRecord, hosts []string, sg *SecurityGroupRecord) string {
	pick := func() (int, *PortRecord) {
		i := rng.IntN(20)
		return i, ports[i]
	}
	switch rng.IntN(13) {
	case 0, 1: // a port is created or rewritten, maybe elsewhere or with another MAC
		i, p := pick()
		np := fixturePort(rng.IntN(4), i, hosts[rng.IntN(len(hosts))], byte(rng.IntN(10)))
		if p != nil {
			np.NetworkID, np.Generation = p.NetworkID, p.Generation
			if np.Host != p.Host {
				np.Generation++
			}
		}
		if rng.IntN(3) == 0 {
			np.SecurityGroups = []string{sg.ID}
			np.AllowedAddressPairs = []state.AddressPair{{IP: netip.MustParsePrefix("192.168.0.0/24")}}
		}
		if rng.IntN(4) == 0 {
			np.FixedIPs = append(np.FixedIPs, netip.MustParseAddr("fd00::1"))
		}
		if rng.IntN(3) == 0 {
			np.DNSName = fmt.Sprint("vm", rng.IntN(5))
		}
		ports[i] = np
		f.put(PortKey(np.NetworkID, np.ID), np)
		return "port " + np.ID + " on " + np.Host
	case 2, 3, 4: // its host says ACTIVE or DOWN, maybe for an old binding
		_, p := pick()
		if p == nil || p.Host == "" {
			return "nothing"
		}
		gen := p.Generation
		if rng.IntN(4) == 0 {
			gen--
		}
		st := []string{StatusActive, StatusDown}[rng.IntN(2)]
		f.put(StatusKey(p.NetworkID, p.Host, p.ID), fixtureStatus(p, p.Host, st, gen))
		return "status " + st
	case 5: // another host's stale status
		_, p := pick()
		if p == nil {
			return "nothing"
		}
		h := hosts[1+rng.IntN(len(hosts)-2)]
		f.put(StatusKey(p.NetworkID, h, p.ID), fixtureStatus(p, h, StatusActive, p.Generation))
		return "stale status of " + h
	case 6: // a port goes
		i, p := pick()
		if p == nil {
			return "nothing"
		}
		delete(ports, i)
		f.del(PortKey(p.NetworkID, p.ID))
		return "port deleted"
	case 7: // a status goes
		_, p := pick()
		if p == nil || p.Host == "" {
			return "nothing"
		}
		f.del(StatusKey(p.NetworkID, p.Host, p.ID))
		return "status deleted"
	case 8: // a host is registered, moves VTEP (maybe to ours), or goes
		h := hosts[1+rng.IntN(len(hosts)-2)]
		if rng.IntN(4) == 0 {
			f.del(RegistrationKey(h))
			return "unregistered " + h
		}
		if rng.IntN(4) == 0 {
			f.put(RegistrationKey(h), fixtureRegistration6(h, byte(1+rng.IntN(5))))
			return "registered " + h + " at an IPv6 VTEP"
		}
		f.put(RegistrationKey(h), fixtureRegistration(h, byte(1+rng.IntN(5))))
		return "registered " + h
	case 9: // a network changes (maybe to another's VNI or VLAN, or its kind) or goes and comes back
		n := rng.IntN(4)
		rec := fixtureNet(n)
		switch rng.IntN(5) {
		case 0:
			rec.VNI = uint32(100 + rng.IntN(3))
		case 1:
			f.del(NetworkKey(rec.ID))
			return "network deleted"
		case 2:
			rec = fixtureProviderNet(n, rng.IntN(3) == 0, []string{"physnet1", "physnet2"}[rng.IntN(2)])
			rec.SegmentationID = min(rec.SegmentationID, uint16(100+rng.IntN(2)))
		}
		if rng.IntN(2) == 0 {
			withSubnet(rec, n)
		}
		rec.MTU = 1400 + rng.IntN(50)
		f.put(NetworkKey(rec.ID), rec)
		return "network " + rec.Kind() + " changed"
	case 10: // the security group changes
		g := *sg
		g.Name = fmt.Sprint("web", rng.IntN(100))
		f.put(SecGroupKey(g.ID), &g)
		return "group changed"
	case 11: // a member of the remote group or the address group changes
		_, p := pick()
		switch {
		case rng.IntN(3) == 0:
			ag := &AddressGroupRecord{Schema: SchemaVersion, ID: fixtureID("a", 1), Name: "ag",
				Addresses: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(rng.IntN(4))}), 32)}}
			f.put(AddressGroupKey(ag.ID), ag)
			return "address group changed"
		case p == nil:
			return "nothing"
		case rng.IntN(3) == 0:
			f.del(MemberKey(sg.ID, p.ID))
			return "member deleted"
		}
		f.put(MemberKey(sg.ID, p.ID), &MemberRecord{Schema: SchemaVersion, GroupID: sg.ID, PortID: p.ID,
			Addresses: []netip.Prefix{netip.PrefixFrom(p.FixedIPs[0], 32)}})
		return "member written"
	default: // a network is no longer followed, and followed again
		id := fixtureID("n", rng.IntN(3))
		f.v.dropNetwork(id)
		f.v.followNetwork(id)
		return "network dropped"
	}
}

// A snapshot restores the same view: the state built from it is the one
// it was taken of; a snapshot that is cut, of another format version or
// of another host is refused.
func TestSnapshotRoundTrip(t *testing.T) {
	f := newFixture(t)
	for n := range 3 {
		f.v.followNetwork(fixtureID("n", n))
	}
	f.put(NetworkKey(fixtureID("n", 0)), fixtureNet(0))
	f.put(NetworkKey(fixtureID("n", 1)), withSubnet(fixtureProviderNet(1, false, "physnet1"), 1))
	f.put(NetworkKey(fixtureID("n", 2)), withSubnet(fixtureNet(2), 2))
	f.put(RegistrationKey("h1"), fixtureRegistration("h1", 2))
	f.put(RegistrationKey("h2"), fixtureRegistration6("h2", 3))
	f.put(BindingKey(fixtureHost, fixtureID("p", 1)), &BindingRecord{Schema: SchemaVersion, PortID: fixtureID("p", 1), NetworkID: fixtureID("n", 1), Generation: 1})
	f.put(BindingKey(fixtureHost, fixtureID("p", 2)), &BindingRecord{Schema: SchemaVersion, PortID: fixtureID("p", 2), NetworkID: fixtureID("n", 2), Generation: 1})
	f.put(SecGroupKey("g"), &SecurityGroupRecord{Schema: SchemaVersion, ID: "g", Name: "g", Rules: []SGRule{
		{ID: fixtureID("r", 1), Direction: "ingress", Ethertype: state.IPv4, RemoteGroupID: "g"},
		{ID: fixtureID("r", 2), Direction: "ingress", Ethertype: state.IPv4, RemoteAddressGroupID: "ag"}}})
	f.put(MemberKey("g", fixtureID("p", 7)), &MemberRecord{Schema: SchemaVersion, GroupID: "g", PortID: fixtureID("p", 7), Addresses: []netip.Prefix{netip.MustParsePrefix("10.1.0.7/32")}})
	f.put(AddressGroupKey("ag"), &AddressGroupRecord{Schema: SchemaVersion, ID: "ag", Name: "ag", Addresses: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	f.put(BindingKey(fixtureHost, fixtureID("p", 0)), &BindingRecord{Schema: SchemaVersion, PortID: fixtureID("p", 0), NetworkID: fixtureID("n", 0), Generation: 1})
	for i := range 50 {
		host := []string{"h1", "h2"}[i%2]
		if i%10 == 0 || i == 1 || i == 2 {
			host = fixtureHost
		}
		p := fixturePort(i%3, i, host, byte(i))
		p.DNSName = fmt.Sprint("vm", i)
		if i%7 == 0 {
			p.FixedIPs = append(p.FixedIPs, netip.MustParseAddr("fd00::7"))
			p.SecurityGroups = []string{"g"}
		}
		f.put(PortKey(p.NetworkID, p.ID), p)
		f.put(StatusKey(p.NetworkID, host, p.ID), fixtureStatus(p, host, StatusActive, 1))
		if i%9 == 0 {
			f.put(StatusKey(p.NetworkID, "h2", p.ID), fixtureStatus(p, "h2", StatusDown, 1))
		}
	}
	want := f.v.build().desired
	if len(want.Networks) != 3 || len(want.SecurityGroups) != 1 || len(want.RemotePorts) < 40 {
		t.Fatalf("fixture: %d networks, %d groups, %d remote ports in the state", len(want.Networks), len(want.SecurityGroups), len(want.RemotePorts))
	}
	raw, err := encodeSnapshot(f.v, snapshotHeader{Host: fixtureHost, Bucket: "vxdp", Watermark: f.rev, DesiredRevision: f.rev})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := writeSnapshot(dir, raw); err != nil {
		t.Fatal(err)
	}
	h, v, err := readSnapshot(dir, fixtureHost, fixtureVTEP)
	if err != nil {
		t.Fatal(err)
	}
	if h.DesiredRevision != f.rev || SnapshotRevision(dir) != f.rev || v.size() != f.v.size() {
		t.Errorf("header %+v, %d records; want revision %d and %d records", h, v.size(), f.rev, f.v.size())
	}
	if diff := state.Difference(v.build().desired, want); diff != "" {
		t.Errorf("state from the snapshot differs: %s", diff)
	}

	bad := map[string][]byte{
		"cut":            raw[:len(raw)-10],
		"a flipped byte": append(append([]byte{}, raw[:len(raw)/2]...), append([]byte{raw[len(raw)/2] ^ 1}, raw[len(raw)/2+1:]...)...),
		"not a snapshot": []byte(`{"schema":2}` + "\n"),
	}
	other, err := encodeSnapshot(f.v, snapshotHeader{Host: fixtureHost})
	if err != nil {
		t.Fatal(err)
	}
	bad["another format version"] = reversion(t, other)
	for name, b := range bad {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, SnapshotFile), b, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, _, err := readSnapshot(dir, fixtureHost, fixtureVTEP); err == nil {
				t.Error("read without an error")
			}
		})
	}
	if err := writeSnapshot(dir, raw); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readSnapshot(dir, "h9", fixtureVTEP); err == nil || !strings.Contains(err.Error(), "host") {
		t.Errorf("snapshot of another host read: %v", err)
	}
}

// reversion rewrites a snapshot's format version (checksum fixed).
func reversion(t *testing.T, raw []byte) []byte {
	t.Helper()
	s := strings.Replace(string(raw[:len(raw)-4]), fmt.Sprintf(`"schema":%d`, snapshotSchema), fmt.Sprintf(`"schema":%d`, snapshotSchema+1), 1)
	w := &snapWriter{b: []byte(s)}
	w.u32(crc32Of(w.b))
	return w.b
}
