package control

import "testing"

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		s             string
		host, id, uid bool
	}{
		{"node3", true, true, false},
		{"node3.example.com", true, false, false},
		{"85ae5035-203b-4ef7-b65c-397f80b5a8af", true, true, true},
		{"85AE5035-203B-4EF7-B65C-397F80B5A8AF", true, true, false},
		{"node_3", false, true, false},
		{"-node3", false, true, false},
		{"node3-", false, true, false},
		{"node..3", false, false, false},
		{"", false, false, false},
		{"a.b*c", false, false, false},
		{"85ae5035-203b-4ef7-b65c-397f80b5a8a", true, true, false},
	} {
		if got := ValidHost(tc.s) == nil; got != tc.host {
			t.Errorf("ValidHost(%q) = %v", tc.s, got)
		}
		if got := ValidID(tc.s) == nil; got != tc.id {
			t.Errorf("ValidID(%q) = %v", tc.s, got)
		}
		if got := IsUUID(tc.s); got != tc.uid {
			t.Errorf("IsUUID(%q) = %v", tc.s, got)
		}
	}
	if h := HostFromToken(HostToken("node3.example.com")); h != "node3.example.com" {
		t.Errorf("host token round trip: %q", h)
	}
	for _, key := range []string{NetworkKey("n"), PortKey("n", "p"), StatusKey("n", "h.x", "p"), AgentKey("h"), HeartbeatKey("h"),
		BindingKey("h", "p"), SecGroupKey("s"), VNIKey(7), FloorKey, RegistrationKey("h")} {
		if ParseKey(key).Kind == KindUnknown {
			t.Errorf("ParseKey(%q) unknown", key)
		}
	}
	if k := ParseKey(StatusKey("n", "h.x", "p")); k.Host != "h.x" || k.Port != "p" || k.Network != "n" {
		t.Errorf("status key parsed as %+v", k)
	}
}

// The filters an agent needs a proof for are recognised exactly, and
// nothing wider passes for one.
func TestEntitledFilters(t *testing.T) {
	for _, tc := range []struct {
		f    string
		kind KeyKind
		id   string
	}{
		{NetworkFilter("n1"), KindNetwork, "n1"},
		{SecGroupKey("s1"), KindSecGroup, "s1"},
		{"nets.>", KindUnknown, ""},
		{"nets.*.>", KindUnknown, ""},
		{"nets.a.b.>", KindUnknown, ""},
		{"nets.n1.ports.*", KindUnknown, ""},
		{"sgs.*", KindUnknown, ""},
		{"sgs.>", KindUnknown, ""},
		{AgentsFilter, KindUnknown, ""},
		{">", KindUnknown, ""},
	} {
		kind, id, ok := parseEntitledFilter(tc.f)
		if kind != tc.kind || id != tc.id || ok != (tc.kind != KindUnknown) {
			t.Errorf("parseEntitledFilter(%q) = %v %q %v", tc.f, kind, id, ok)
		}
	}
	for _, tc := range []struct{ subject, host, op string }{
		{APISubject("vxdp", "node3.example.com", "consumer.create"), "node3.example.com", "consumer.create"},
		{"vxdp.vxdp.api.node3", "", ""},
		{"vxdp.other.api.node3.status", "", ""},
	} {
		host, op, _ := parseAPISubject("vxdp", tc.subject)
		if host != tc.host || op != tc.op {
			t.Errorf("parseAPISubject(%q) = %q %q", tc.subject, host, op)
		}
	}
}
