package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/maps"
)

// appliedWithProvider writes an applied.json with a VXLAN network, VLAN
// 99 of "default" and flat "external", and returns its directory.
func appliedWithProvider(t *testing.T) (string, maps.Segment, maps.Segment) {
	t.Helper()
	vlan, _ := maps.ProviderSegment(0, 99)
	flat, _ := maps.ProviderSegment(1, 0)
	a := dataplane.Applied{Networks: []dataplane.AppliedNetwork{
		{ID: "n100", Type: "vxlan", VNI: 100},
		{ID: "n99", Type: "vlan", VNI: vlan, Physical: "eth1", PhysicalNetwork: "default", VLAN: 99},
		{ID: "ext", Type: "flat", VNI: flat, Physical: "eth3", PhysicalNetwork: "external"},
	}}
	dir := t.TempDir()
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "applied.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, vlan, flat
}

// TestMonitorSegments: --vni takes a VNI, a provider network as the
// operator names it (physical network/VLAN, flat: physical network) or
// as the maps print it (pN/VLAN); events name segments the same way.
func TestMonitorSegments(t *testing.T) {
	dir, vlan, flat := appliedWithProvider(t)
	names := readSegmentNames(dir)
	other, _ := maps.ProviderSegment(2, 7)
	for _, tc := range []struct {
		arg  string
		want maps.Segment
	}{{"100", 100}, {"default/99", vlan}, {"external", flat}, {"external/0", flat}, {"p0/99", vlan}, {"p2/7", other}} {
		got, err := names.parse(tc.arg)
		if err != nil || got != tc.want {
			t.Errorf("--vni %s: %d, %v; want %d", tc.arg, got, err, tc.want)
		}
	}
	for _, bad := range []string{"0", "16777216", "default/98", "nosuch", "p0/x", "p4096/1"} {
		if got, err := names.parse(bad); err == nil {
			t.Errorf("--vni %s: %d, want an error", bad, got)
		}
	}
	for seg, want := range map[maps.Segment]string{100: "vni 100", vlan: "vlan default/99", flat: "flat external", other: "vlan p2/7", 0: "vni -"} {
		ev := monitorEvent{Segment: seg, SegmentName: names.name(seg)}
		if got := ev.segmentText(); got != want {
			t.Errorf("segment %d prints %q, want %q", seg, got, want)
		}
	}
	// Without the agent's applied state the maps' form is all there is.
	if got := readSegmentNames(t.TempDir()).name(vlan); got != "p0/99" {
		t.Errorf("segment %d without applied.json prints %q, want p0/99", vlan, got)
	}
}

// writeSnapshot writes an agent's control-plane snapshot holding the
// registrations of hosts (name -> VTEP) and node4's agent record.
func writeSnapshot(t *testing.T, dir string, hosts map[string]string) {
	t.Helper()
	recs := map[string]any{control.AgentKey("node4"): &control.AgentRecord{Schema: control.SchemaVersion, ID: "x", Host: "node4",
		VTEP: netip.MustParseAddr("192.168.248.4")}}
	for h, ip := range hosts {
		recs[control.RegistrationKey(h)] = &control.RegistrationRecord{Schema: control.SchemaVersion, Host: h,
			VTEP: netip.MustParseAddr(ip), RegisteredBy: control.RegisteredByAgent}
	}
	if err := control.WriteRecordsSnapshot(dir, "node4", recs); err != nil {
		t.Fatal(err)
	}
}

// TestMonitorHosts: --host takes a VTEP address or a host name the
// agent's snapshot registers, and selects events whose outer source or
// destination is that VTEP.
func TestMonitorHosts(t *testing.T) {
	dir := t.TempDir()
	if _, err := parseHosts([]string{"node3"}, dir); err == nil || !strings.Contains(err.Error(), "NATS mode") {
		t.Errorf("--host node3 without a snapshot: %v, want an error saying names need NATS mode", err)
	}
	writeSnapshot(t, dir, map[string]string{"node3": "192.168.248.3", "node1": "fd00::1"})
	got, err := parseHosts([]string{"node3", "192.168.248.9", "node1", "node4", "::ffff:10.0.0.1"}, dir)
	want := []netip.Addr{netip.MustParseAddr("192.168.248.3"), netip.MustParseAddr("192.168.248.9"),
		netip.MustParseAddr("fd00::1"), netip.MustParseAddr("192.168.248.4"), netip.MustParseAddr("10.0.0.1")}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("--host node3 192.168.248.9 node1 node4 ::ffff:10.0.0.1: %v, %v; want %v", got, err, want)
	}
	if _, err := parseHosts([]string{"node9"}, dir); err == nil || !strings.Contains(err.Error(), "node3 (192.168.248.3)") {
		t.Errorf("--host node9: %v, want an error listing the known hosts", err)
	}

	f := monitorFilter{hosts: want[:1]}
	var from3, to3, other, none maps.MonEvent
	for _, e := range []struct {
		ev       *maps.MonEvent
		src, dst string
	}{{&from3, "192.168.248.3", "192.168.248.4"}, {&to3, "192.168.248.4", "192.168.248.3"}, {&other, "192.168.248.9", "192.168.248.4"}} {
		e.ev.OuterFamily = 4
		copy(e.ev.OuterSrc[:], netip.MustParseAddr(e.src).AsSlice())
		copy(e.ev.OuterDst[:], netip.MustParseAddr(e.dst).AsSlice())
	}
	for name, tc := range map[string]struct {
		e    maps.MonEvent
		want bool
	}{"from node3": {from3, true}, "to node3": {to3, true}, "from another VTEP": {other, false}, "untunnelled": {none, false}} {
		if got := f.match(tc.e); got != tc.want {
			t.Errorf("--host node3 on a frame %s: match %v, want %v", name, got, tc.want)
		}
	}
}

// TestMonitorEventOutput: the line and the JSON of an event: segment by
// name, the tag pushed, the outer addresses, typed values.
func TestMonitorEventOutput(t *testing.T) {
	vlan, _ := maps.ProviderSegment(0, 99)
	ev := monitorEvent{Time: time.Date(2026, 11, 27, 21, 41, 7, 120931000, time.UTC), Program: "port", Reason: "REDIRECT_TX",
		Verdict: "redirect", Ifindex: 7, Device: "tap71a3c9e2-5d", Segment: vlan, SegmentName: "default/99",
		TagOut: &maps.VLANTag{Proto: 0x8100, TCI: 99}, Length: 98, Frame: "a > b"}
	if got, want := ev.line(), "port    REDIRECT_TX            tap71a3c9e2-5d   vlan default/99 len 98    tag none>99 a > b"; !strings.HasSuffix(got, want) {
		t.Errorf("line:\n got %q\nwant <time> %q", got, want)
	}
	var out bytes.Buffer
	if err := printEvent(printer{w: &out, format: formatJSON}, ev); err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2026-11-27T21:41:07.120931Z","program":"port","reason":"REDIRECT_TX","verdict":"redirect","ifindex":7,` +
		`"device":"tap71a3c9e2-5d","segment":"default/99","vni":null,"vlan_in":null,"vlan_out":99,"outer_src":null,"outer_dst":null,` +
		`"length":98,"frame":"a \u003e b"}` + "\n"
	if out.String() != want {
		t.Errorf("-o json:\n got %s\nwant %s", out.String(), want)
	}
	out.Reset()
	ev.Segment, ev.SegmentName, ev.TagOut = 100, "100", nil
	ev.OuterSrc, ev.OuterDst = netip.MustParseAddr("192.168.248.9"), netip.MustParseAddr("192.168.248.4")
	if err := printEvent(printer{w: &out, format: formatValue, columns: []string{"vni", "outer_src", "reason"}}, ev); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "100 192.168.248.9 REDIRECT_TX\n" {
		t.Errorf("-c vni -c outer_src -c reason -o value: %q", got)
	}
}
