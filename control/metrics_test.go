package control_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/control/natsd"
)

// gauge returns the value of an unlabelled gauge (found false if absent).
func gauge(t *testing.T, reg *prometheus.Registry, name string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// series counts the label series of a metric.
func series(t *testing.T, reg *prometheus.Registry, name string) []*dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()
		}
	}
	return nil
}

// seededServer starts a server holding the seed's network and ports.
func seededServer(t *testing.T) (string, *control.Controller) {
	t.Helper()
	url := startServer(t).ClientURL()
	c := newController(t, url)
	seedPorts(t, context.Background(), c)
	return url, c
}

// TestAgentMetrics: every label series exists at 0 from the start, the
// NATS connection is a gauge, the applied revision is exported once (by
// the dataplane, not here), and the followed networks are counted after a
// restart that resumed from its snapshot (delta resync) too.
func TestAgentMetrics(t *testing.T) {
	url, c := seededServer(t)
	dir := t.TempDir()
	node3 := startAgent(t, url, "node3", node3VTEP, func(o *control.AgentOptions) { o.StateDir = dir })

	for name, want := range map[string]int{
		control.MetricRejected:                  41, // 9 kinds × 4 decoding reasons, 2 conflicts, 3 without a kind
		"vxdp_control_port_status_writes_total": 4,
		"vxdp_control_heartbeats_total":         2,
		"vxdp_control_resyncs_total":            2,
	} {
		if got := len(series(t, node3.reg, name)); got != want {
			t.Errorf("%s: %d series, want %d initialised at start", name, got, want)
		}
	}
	if v, ok := gauge(t, node3.reg, control.MetricNATSConnected); !ok || v != 1 {
		t.Errorf("%s = %v (present %v), want 1", control.MetricNATSConnected, v, ok)
	}
	if _, ok := gauge(t, node3.reg, "vxdp_control_applied_revision"); ok {
		t.Error("vxdp_control_applied_revision is exported: the applied revision is the dataplane's vxdp_applied_revision")
	}
	node3.waitFor(t, "its port", func(d *stateT) bool { return len(d.LocalPorts) == 1 })
	if v, _ := gauge(t, node3.reg, "vxdp_control_followed_networks"); v != 1 {
		t.Errorf("followed networks %v, want 1", v)
	}

	applied := waitSnapshot(t, c, node3, dir).Revision
	restarted, _, st := firstState(t, url, "node3", node3VTEP, func(o *control.AgentOptions) { o.StateDir, o.AppliedRevision = dir, applied })
	if st.LastResync != "delta" {
		t.Fatalf("restart resynced %q, want delta (the case that lost the gauge)", st.LastResync)
	}
	if v, _ := gauge(t, restarted.reg, "vxdp_control_followed_networks"); v != 1 {
		t.Errorf("followed networks after a delta restart: %v, want 1", v)
	}

}

// TestNATSConnectedGauge: the gauge follows the agent's connection through
// an outage. (The agent is not run: an agent stopped while NATS is down
// waits for NATS, see follower.stop.)
func TestNATSConnectedGauge(t *testing.T) {
	port, err := natsd.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	srv := startServerAt(t, listen)
	reg := prometheus.NewRegistry()
	nc := connect(t, srv.ClientURL(), func(o *control.ConnectOptions) { o.Retry = true })
	if _, err := control.NewAgent(nc, control.AgentOptions{Host: "node3", VTEP: netip.MustParseAddr(node3VTEP), Metrics: reg, Log: testLog()}); err != nil {
		t.Fatal(err)
	}
	waitGauge(t, reg, control.MetricNATSConnected, 1)
	srv.Shutdown()
	waitGauge(t, reg, control.MetricNATSConnected, 0)
	startServerAt(t, listen)
	waitGauge(t, reg, control.MetricNATSConnected, 1)
}

func waitGauge(t *testing.T, reg *prometheus.Registry, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for v, _ := gauge(t, reg, name); v != want; v, _ = gauge(t, reg, name) {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", name, v, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAgentListAfterRestart: a restarted agent reports the revision its
// dataplane applied at once, not after a report interval (30 s by
// default) with 0 meanwhile.
func TestAgentListAfterRestart(t *testing.T) {
	ctx := context.Background()
	url, c := seededServer(t)
	dir := t.TempDir()
	slow := func(o *control.AgentOptions) { o.StateDir, o.ReportInterval = dir, 30*time.Second }
	first := startAgent(t, url, "node3", node3VTEP, slow)
	first.waitFor(t, "its port", func(d *stateT) bool { return len(d.LocalPorts) == 1 })
	applied := waitSnapshot(t, c, first, dir).Revision

	appliedRevision := func() uint64 {
		agents, err := c.ListAgents(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range agents {
			if a.Host == "node3" {
				return a.AppliedRevision
			}
		}
		return 0
	}
	// While the agent is down, something it follows changes.
	if _, err := c.CreatePort(ctx, control.PortSpec{Network: seedNetID, Name: "vm9", MAC: mac("fa:16:3e:00:00:09"), Host: "node3"}); err != nil {
		t.Fatal(err)
	}
	second := startAgent(t, url, "node3", node3VTEP, slow, func(o *control.AgentOptions) { o.AppliedRevision = applied })
	d := second.waitFor(t, "vm9", func(d *stateT) bool { return len(d.LocalPorts) == 2 })
	deadline := time.Now().Add(5 * time.Second)
	for got := appliedRevision(); got != d.Revision; got = appliedRevision() {
		if got == 0 {
			t.Fatalf("agent list shows applied revision 0 after the restart (applied %d before, %d now)", applied, d.Revision)
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent list shows applied revision %d 5 s after the restart applied %d", got, d.Revision)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
