package control_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vxdp/vxdp/control"
)

// statusBody is a broker status request writing a status of port.
func statusBody(netID, host, port string) map[string]any {
	return map[string]any{"network": netID, "port": port, "record": map[string]any{
		"schema": 1, "port_id": port, "host": host, "status": "ACTIVE", "binding_generation": 1}}
}

// The broker writes a port status only for a port bound to the asking
// host, builds the stored record itself, and refuses (and counts)
// everything else; it answers only below the asking host's inbox.
func TestBrokerStatusWrites(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	srv, c, n := credServer(t, control.BrokerOptions{Metrics: reg})
	rogue := connectIntruder(t, srv.ClientURL(), "node4")
	other, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	stored := func(key string) []byte {
		e, err := c.KV().Get(ctx, key)
		if err != nil {
			return nil
		}
		return e.Value()
	}
	refused := func(reason string) float64 {
		return counter(t, reg, control.MetricBrokerRefused, map[string]string{"reason": reason})
	}

	t.Run("own port", func(t *testing.T) {
		body := statusBody(n.ID, "node4", seedVM1ID)
		// Padding the request does not pad the record: the broker stores
		// what it validated.
		body["record"].(map[string]any)["padding"] = strings.Repeat("x", 60<<10)
		if a := rogue.ask(t, "status", body); a.Error != "" {
			t.Fatalf("refused: %+v", a)
		}
		v := stored(control.StatusKey(n.ID, "node4", seedVM1ID))
		if len(v) == 0 || len(v) > 300 || strings.Contains(string(v), "padding") {
			t.Fatalf("stored %d bytes: %.200s", len(v), v)
		}
	})
	for _, tc := range []struct {
		name, network, port, reason string
		body                        map[string]any
	}{
		{"a port bound to another host", n.ID, seedVM2ID, control.ReasonNotBound, nil},
		{"a port of another network", other.ID, seedVM1ID, control.ReasonNotBound, nil},
		{"a network that does not exist", "no-such-network", "no-such-port", control.ReasonNotBound, nil},
		{"a record of another host", n.ID, seedVM1ID, control.ReasonInvalid, statusBody(n.ID, "node3", seedVM1ID)},
		{"a record of another port", n.ID, seedVM1ID, control.ReasonInvalid, statusBody(n.ID, "node4", seedVM2ID)},
		{"a status that is not one", n.ID, seedVM1ID, control.ReasonInvalid, map[string]any{"network": n.ID, "port": seedVM1ID,
			"record": map[string]any{"schema": 1, "port_id": seedVM1ID, "host": "node4", "status": "MAYBE"}}},
		{"a key that is not one", "nets.>", "x", control.ReasonInvalid, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := refused(tc.reason)
			body := tc.body
			if body == nil {
				body = statusBody(tc.network, "node4", tc.port)
			} else {
				body["network"], body["port"] = tc.network, tc.port
			}
			refusedWith(t, rogue.ask(t, "status", body), tc.reason)
			if refused(tc.reason) != before+1 {
				t.Errorf("refusal not counted")
			}
			if tc.reason != control.ReasonInvalid && stored(control.StatusKey(tc.network, "node4", tc.port)) != nil {
				t.Errorf("stored anyway")
			}
		})
	}

	t.Run("an operation that does not exist", func(t *testing.T) {
		refusedWith(t, rogue.ask(t, "x1.y2", map[string]any{}), control.ReasonUnknownOp)
		if got := counter(t, reg, control.MetricBrokerRefused, map[string]string{"op": "unknown", "reason": control.ReasonUnknownOp}); got != 1 {
			t.Errorf("counted %v under op=unknown", got)
		}
	})

	t.Run("delete only what it holds", func(t *testing.T) {
		js := adminJS(t, srv)
		last := func() uint64 {
			s, err := js.Stream(ctx, control.StreamName(control.DefaultBucket))
			if err != nil {
				t.Fatal(err)
			}
			return s.CachedInfo().State.LastSeq
		}
		before := last()
		// No delete markers on demand: a key the host does not hold stays untouched.
		for range 5 {
			if a := rogue.ask(t, "status", map[string]any{"network": n.ID, "port": "never-written"}); a.Error != "" {
				t.Fatalf("refused: %+v", a)
			}
		}
		if last() != before {
			t.Errorf("deleting keys that do not exist wrote %d messages", last()-before)
		}
		if a := rogue.ask(t, "status", map[string]any{"network": n.ID, "port": seedVM1ID}); a.Error != "" {
			t.Fatalf("refused: %+v", a)
		}
		if stored(control.StatusKey(n.ID, "node4", seedVM1ID)) != nil {
			t.Error("own status not deleted")
		}
	})

	t.Run("replies only to its own inbox", func(t *testing.T) {
		victim := connectIntruder(t, srv.ClientURL(), "node3")
		sub, err := victim.nc.SubscribeSync(control.InboxPrefix("node3") + ".victim")
		if err != nil {
			t.Fatal(err)
		}
		netKey := control.KeySubject(control.DefaultBucket, control.NetworkKey(n.ID))
		was := string(stored(control.NetworkKey(n.ID)))
		before := refused(control.ReasonReply)
		for _, reply := range []string{control.InboxPrefix("node3") + ".victim", netKey, control.AppliedSubject(control.DefaultBucket, "node3")} {
			raw, _ := json.Marshal(statusBody(n.ID, "node4", seedVM1ID))
			if err := rogue.nc.PublishMsg(&nats.Msg{Subject: control.APISubject(control.DefaultBucket, "node4", "status"), Reply: reply, Data: raw}); err != nil {
				t.Fatal(err)
			}
		}
		if m, err := sub.NextMsg(time.Second); err == nil {
			t.Errorf("node3's inbox got %q", m.Data)
		}
		if got := string(stored(control.NetworkKey(n.ID))); got != was {
			t.Errorf("network record now %s", got)
		}
		if refused(control.ReasonReply) != before+3 {
			t.Errorf("refusals counted %v, want 3", refused(control.ReasonReply)-before)
		}
	})
}

// Per-host limits: status records (keys and bytes) and write rate.
func TestBrokerLimits(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		o      control.BrokerOptions
		reason string
	}{
		{"keys", control.BrokerOptions{MaxStatusKeysPerHost: 2}, control.ReasonKeyLimit},
		{"bytes", control.BrokerOptions{MaxStatusBytesPerHost: 400}, control.ReasonByteLimit},
		{"rate", control.BrokerOptions{WritesPerSecond: 0.01, WriteBurst: 2}, control.ReasonRate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, c, n := credServer(t, tc.o)
			var ports []string
			for i := range 4 {
				p, err := c.CreatePort(ctx, control.PortSpec{Network: n.ID, MAC: mac(fmt.Sprintf("fa:16:3e:00:01:%02x", i)), Host: "node4"})
				if err != nil {
					t.Fatal(err)
				}
				ports = append(ports, p.ID)
			}
			rogue := connectIntruder(t, srv.ClientURL(), "node4")
			written, bytes := 0, 0
			for _, p := range ports {
				a := rogue.ask(t, "status", statusBody(n.ID, "node4", p))
				if a.Error != "" {
					refusedWith(t, a, tc.reason)
					break
				}
				written++
				e, err := c.KV().Get(ctx, control.StatusKey(n.ID, "node4", p))
				if err != nil {
					t.Fatal(err)
				}
				bytes += len(e.Value())
			}
			switch {
			case written == len(ports):
				t.Fatalf("all %d writes accepted", written)
			case tc.reason == control.ReasonKeyLimit && written != 2,
				tc.reason == control.ReasonRate && written != 2,
				tc.reason == control.ReasonByteLimit && (written == 0 || bytes > 400):
				t.Fatalf("%d records (%d bytes) accepted before the refusal", written, bytes)
			}
			// Rewriting a record it holds stays possible within the key limit.
			if tc.reason == control.ReasonKeyLimit {
				if a := rogue.ask(t, "status", statusBody(n.ID, "node4", ports[0])); a.Error != "" {
					t.Fatalf("rewrite refused: %+v", a)
				}
			}
		})
	}
}

// consumerSpec is a broker consumer request of host.
func consumerSpec(host string, filters []string, proofs map[string]string) map[string]any {
	return map[string]any{"filters": filters, "proofs": proofs, "deliver_subject": control.InboxPrefix(host) + ".c" + nats.NewInbox()[len("_INBOX."):]}
}

// The broker makes consumers for an agent only as its follower needs
// them: push to its own inbox, unacknowledged, ephemeral, on filters the
// host is entitled to, a few at a time; and touches no other host's.
func TestBrokerConsumers(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	srv, c, n := credServer(t, control.BrokerOptions{Metrics: reg})
	other, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	sg, err := c.CreateSecurityGroup(ctx, control.SecurityGroupSpec{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	vm3, err := c.CreatePort(ctx, control.PortSpec{Network: other.ID, MAC: mac("fa:16:3e:00:00:03"), Host: "node3", SecurityGroups: []string{sg.ID}})
	if err != nil {
		t.Fatal(err)
	}
	js := adminJS(t, srv)
	info := func(name string) *jetstream.ConsumerInfo {
		t.Helper()
		cons, err := js.PushConsumer(ctx, control.StreamName(control.DefaultBucket), name)
		if err != nil {
			t.Fatalf("consumer %s: %v", name, err)
		}
		return cons.CachedInfo()
	}
	rogue := connectIntruder(t, srv.ClientURL(), "node4")
	base := []string{control.RegistrationsFilter, control.AgentKey("node4"), control.BindingsFilter("node4")}
	// held counts the consumers made for host (the broker's own come and go).
	held := func(host string) int {
		n := 0
		for _, ci := range consumers(t, srv) {
			if ci.Config.Metadata["vxdp_host"] == host {
				n++
			}
		}
		return n
	}

	t.Run("what its follower needs", func(t *testing.T) {
		filters := append(slices.Clone(base), control.NetworkFilter(n.ID))
		spec := consumerSpec("node4", filters, nil) // no proof: the broker finds vm1's binding
		a := rogue.ask(t, "consumer.create", spec)
		if a.Error != "" {
			t.Fatalf("refused: %+v", a)
		}
		var r struct{ Name string }
		_ = json.Unmarshal(a.Result, &r)
		ci := info(r.Name)
		cfg := ci.Config
		var want []string
		for _, f := range filters {
			want = append(want, control.KeySubject(control.DefaultBucket, f))
		}
		if cfg.DeliverSubject != spec["deliver_subject"] || cfg.AckPolicy != jetstream.AckNonePolicy || cfg.Durable != "" ||
			cfg.InactiveThreshold == 0 || !cfg.MemoryStorage || !slices.Equal(cfg.FilterSubjects, want) || cfg.Metadata["vxdp_host"] != "node4" {
			t.Errorf("consumer config %+v", cfg)
		}
	})
	for _, tc := range []struct {
		name    string
		filters []string
		proofs  map[string]string
		deliver string
		reason  string
	}{
		{"everything", []string{">"}, nil, "", control.ReasonFilter},
		{"every key of the bucket", []string{"$KV.vxdp.>"}, nil, "", control.ReasonFilter},
		{"every agent record", []string{control.AgentsFilter}, nil, "", control.ReasonFilter},
		{"the heartbeats", []string{control.HeartbeatsFilter}, nil, "", control.ReasonFilter},
		{"another host's bindings", []string{control.BindingsFilter("node3")}, nil, "", control.ReasonFilter},
		{"every port", []string{control.PortsFilter}, nil, "", control.ReasonFilter},
		{"a network it does not host", []string{control.NetworkFilter(other.ID)}, nil, "", control.ReasonFilter},
		{"... with another host's binding as proof", []string{control.NetworkFilter(other.ID)},
			map[string]string{control.NetworkFilter(other.ID): control.BindingKey("node3", vm3.ID)}, "", control.ReasonFilter},
		{"a security group of no port of its own", []string{control.SecGroupKey(sg.ID)},
			map[string]string{control.SecGroupKey(sg.ID): control.PortKey(other.ID, vm3.ID)}, "", control.ReasonFilter},
		{"the VNI allocations", []string{control.VNIsFilter}, nil, "", control.ReasonFilter},
		{"no filter", nil, nil, "", control.ReasonFilter},
		{"delivered to another agent", base, nil, control.InboxPrefix("node3") + ".x", control.ReasonDeliver},
		{"delivered to the apply reports", base, nil, control.AppliedSubject(control.DefaultBucket, "node3"), control.ReasonDeliver},
		{"delivered to the controller's inbox", base, nil, "_INBOX.x", control.ReasonDeliver},
		{"delivered into the bucket", base, nil, control.KeySubject(control.DefaultBucket, control.NetworkKey(n.ID)), control.ReasonDeliver},
		{"delivered to its whole inbox", base, nil, control.InboxPrefix("node4") + ".>", control.ReasonDeliver},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := consumerSpec("node4", tc.filters, tc.proofs)
			if tc.deliver != "" {
				spec["deliver_subject"] = tc.deliver
			}
			refusedWith(t, rogue.ask(t, "consumer.create", spec), tc.reason)
			for _, ci := range consumers(t, srv) {
				if ci.Config.DeliverSubject == spec["deliver_subject"] {
					t.Errorf("made anyway: %s %+v", ci.Name, ci.Config)
				}
			}
		})
	}

	t.Run("a few at a time", func(t *testing.T) {
		for range 10 {
			if a := rogue.ask(t, "consumer.create", consumerSpec("node4", base, nil)); a.Error != "" {
				t.Fatalf("refused: %+v", a)
			}
		}
		eventually(t, "node4 to hold 4 consumers", func(context.Context) error {
			if n := held("node4"); n != 4 {
				return fmt.Errorf("node4 holds %d consumers", n)
			}
			return nil
		})
	})

	t.Run("not another host's", func(t *testing.T) {
		node3 := startAgentConn(t, connect(t, srv.ClientURL(), as("node3", "node3")), "node3", node3VTEP)
		node3.waitFor(t, "a state", func(d *stateT) bool { return len(d.LocalPorts) == 2 })
		var theirs string
		for _, ci := range consumers(t, srv) {
			if ci.Config.Metadata["vxdp_host"] == "node3" {
				theirs = ci.Name
			}
		}
		if theirs == "" {
			t.Fatal("node3's agent has no consumer")
		}
		refusedWith(t, rogue.ask(t, "consumer.info", map[string]string{"name": theirs}), control.ReasonNotOwner)
		refusedWith(t, rogue.ask(t, "consumer.delete", map[string]string{"name": theirs}), control.ReasonNotOwner)
		info(theirs)
		if got := counter(t, reg, control.MetricBrokerRefused, map[string]string{"op": "consumer.delete", "reason": control.ReasonNotOwner}); got != 1 {
			t.Errorf("refusals counted: %v", got)
		}
	})
}

// A host's VTEP is the registered one: the first agent record registers
// it, and only the controller changes it. A VTEP an agent record claims
// later is ignored by every other agent and shown as a mismatch.
func TestVTEPRegistration(t *testing.T) {
	ctx := context.Background()
	srv, c, _ := credServer(t, control.BrokerOptions{})
	url := srv.ClientURL()
	node3 := startAgentConn(t, connect(t, url, as("node3", "node3")), "node3", node3VTEP)
	node4 := startAgentConn(t, connect(t, url, as("node4", "node4")), "node4", node4VTEP)
	atNode4 := "remote vxlan100_net fa:16:3e:06:42:34 @192.168.248.4 172.16.100.12"
	node3.waitL2(t, "net vxlan100_net vni 100 mtu 1450 flood 192.168.248.4",
		"local vxlan100_net fa:16:3e:cb:98:2c tap9784ef08-97 172.16.100.19", atNode4)
	hosts, err := c.ListHosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 2 || hosts[1].Host != "node4" || hosts[1].Registration == nil || hosts[1].Registration.VTEP != netip.MustParseAddr(node4VTEP) ||
		hosts[1].Registration.RegisteredBy != control.RegisteredByAgent || hosts[1].Mismatch() {
		t.Fatalf("hosts %+v", hosts)
	}

	t.Run("a forged VTEP is not used", func(t *testing.T) {
		node4.stop()
		rogue := connectIntruder(t, url, "node4")
		forged := map[string]any{"schema": 1, "id": control.AgentID("node4"), "host": "node4", "agent_type": control.AgentType,
			"binary": control.AgentBinary, "vtep_ip": "192.168.248.99", "admin_state_up": true}
		a := rogue.ask(t, "register", forged)
		var r struct {
			Registered string `json:"registered_vtep"`
		}
		_ = json.Unmarshal(a.Result, &r)
		if a.Error != "" || r.Registered != node4VTEP {
			t.Fatalf("register: %+v", a)
		}
		agents, err := c.ListAgents(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(agents, func(a control.AgentInfo) bool { return a.Host == "node4" })
		if i < 0 || agents[i].VTEP.String() != "192.168.248.99" || !agents[i].VTEPMismatch() || agents[i].RegisteredVTEP.String() != node4VTEP {
			t.Fatalf("agent list: %+v", agents)
		}
		// A fresh agent of node3 (full load) and the running one agree: vm1 at .4.
		fresh := startAgentConn(t, connect(t, url, as("node3", "node3")), "node3", node3VTEP)
		fresh.waitFor(t, "vm1 remote", func(d *stateT) bool { return len(d.RemotePorts) == 1 })
		for _, ta := range []*testAgent{node3, fresh} {
			if got := l2pop(ta.current()); !strings.Contains(got, atNode4) || strings.Contains(got, "192.168.248.99") {
				t.Errorf("%s uses the forged VTEP:%s", ta.host, describe(ta.current()))
			}
		}
		fresh.stop()
	})

	t.Run("only the controller changes it", func(t *testing.T) {
		if _, err := c.RegisterHost(ctx, "node4", netip.MustParseAddr("192.168.248.44"), false); err == nil || !strings.Contains(err.Error(), "--replace") {
			t.Fatalf("changed without --replace: %v", err)
		}
		if _, err := c.RegisterHost(ctx, "node4", netip.MustParseAddr("192.168.248.44"), true); err != nil {
			t.Fatal(err)
		}
		node3.waitL2(t, "net vxlan100_net vni 100 mtu 1450 flood 192.168.248.44",
			"local vxlan100_net fa:16:3e:cb:98:2c tap9784ef08-97 172.16.100.19",
			"remote vxlan100_net fa:16:3e:06:42:34 @192.168.248.44 172.16.100.12")
		// An agent record with yet another VTEP changes nothing.
		rogue := connectIntruder(t, url, "node4")
		a := rogue.ask(t, "register", map[string]any{"schema": 1, "id": control.AgentID("node4"), "host": "node4", "vtep_ip": "192.168.248.98", "admin_state_up": true})
		if a.Error != "" {
			t.Fatalf("register: %+v", a)
		}
		if rec, err := c.KV().Get(ctx, control.RegistrationKey("node4")); err != nil || !strings.Contains(string(rec.Value()), `"192.168.248.44"`) {
			t.Fatalf("registration now %s (%v)", rec.Value(), err)
		}
	})

	t.Run("controller registration first", func(t *testing.T) {
		if _, err := c.RegisterHost(ctx, "node1", netip.MustParseAddr(node1VTEP), false); err != nil {
			t.Fatal(err)
		}
		// node1's agent is configured with another address: its claim is
		// shown, the registered VTEP used.
		startAgentConn(t, connect(t, url, as("node1", "node1")), "node1", "192.168.248.11")
		node3.waitFor(t, "the DHCP port at the registered VTEP", func(d *stateT) bool {
			return strings.Contains(l2pop(d), "remote vxlan100_net fa:16:3e:6e:c0:44 @192.168.248.1 172.16.100.10")
		})
		hosts, err := c.ListHosts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if hosts[0].Host != "node1" || !hosts[0].Mismatch() || hosts[0].Registration.RegisteredBy != control.RegisteredByController {
			t.Fatalf("hosts %+v", hosts)
		}
	})

	t.Run("not a unicast address", func(t *testing.T) {
		rogue := connectIntruder(t, url, "node1")
		for _, ip := range []string{"127.0.0.1", "169.254.1.1", "224.0.0.1", "255.255.255.255", "0.1.2.3", "240.0.0.1", "0.0.0.0"} {
			if _, err := c.RegisterHost(ctx, "node9", netip.MustParseAddr(ip), false); err == nil {
				t.Errorf("host add with VTEP %s accepted", ip)
			}
			refusedWith(t, rogue.ask(t, "register", map[string]any{"schema": 1, "id": control.AgentID("node1"), "host": "node1", "vtep_ip": ip}), control.ReasonInvalid)
		}
		if _, err := c.KV().Get(ctx, control.RegistrationKey("node9")); err == nil {
			t.Error("node9 registered")
		}
	})
}

// The bucket has limits (docs/control-plane.md): one version per key, a
// size per record and in all, a number of keys and consumers; no roll-ups;
// no consumer outlives its reader by more than five minutes.
func TestBucketLimits(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	js := adminJS(t, srv)
	s, err := js.Stream(ctx, control.StreamName(control.DefaultBucket))
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if cfg.MaxMsgsPerSubject != 1 || cfg.MaxMsgSize != control.DefaultMaxValueSize || cfg.MaxBytes != control.DefaultMaxBytes ||
		cfg.MaxMsgs != control.DefaultMaxKeys || cfg.MaxConsumers != control.DefaultMaxConsumers || cfg.AllowRollup ||
		cfg.Discard != jetstream.DiscardNew || cfg.ConsumerLimits.InactiveThreshold != 5*time.Minute {
		t.Fatalf("stream config %+v", cfg)
	}
	c := newController(t, srv.ClientURL())
	if _, err := c.KV().Put(ctx, "sgs.big", make([]byte, control.DefaultMaxValueSize+1)); err == nil {
		t.Error("a record above the value size limit was stored")
	}
	m := nats.NewMsg(control.KeySubject(control.DefaultBucket, control.HeartbeatKey("node4")))
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupAll)
	if _, err := js.PublishMsg(ctx, m); err == nil {
		t.Error("roll-up accepted")
	}
	cons, err := js.CreateConsumer(ctx, control.StreamName(control.DefaultBucket), jetstream.ConsumerConfig{Durable: "forever"})
	if err != nil {
		t.Fatal(err)
	}
	if it := cons.CachedInfo().Config.InactiveThreshold; it == 0 || it > 5*time.Minute {
		t.Errorf("a durable consumer lives %s without a reader", it)
	}
	// Raising a limit later updates the bucket in place.
	if _, err := control.EnsureBucket(ctx, js, control.BucketOptions{MaxBytes: 8 << 30}); err != nil {
		t.Fatal(err)
	}
	if s, err = js.Stream(ctx, control.StreamName(control.DefaultBucket)); err != nil || s.CachedInfo().Config.MaxBytes != 8<<30 {
		t.Errorf("max bytes not raised: %v", err)
	}
}

// With manual registration no agent record registers a host: its ports are
// unreachable until the controller registers it.
func TestManualRegistration(t *testing.T) {
	ctx := context.Background()
	srv, c, _ := credServer(t, control.BrokerOptions{ManualRegistration: true})
	url := srv.ClientURL()
	node3 := startAgentConn(t, connect(t, url, as("node3", "node3")), "node3", node3VTEP)
	startAgentConn(t, connect(t, url, as("node4", "node4")), "node4", node4VTEP)
	waitStatus(t, c, seedVM1ID, control.StatusActive)
	time.Sleep(300 * time.Millisecond)
	if d := node3.current(); d == nil || len(d.RemotePorts) != 0 {
		t.Fatalf("a port of an unregistered host is distributed:%s", describe(d))
	}
	if hosts, err := c.ListHosts(ctx); err != nil || len(hosts) != 2 || hosts[0].Registration != nil || hosts[1].Registration != nil {
		t.Fatalf("hosts %+v (%v)", hosts, err)
	}
	if _, err := c.RegisterHost(ctx, "node4", netip.MustParseAddr(node4VTEP), false); err != nil {
		t.Fatal(err)
	}
	node3.waitL2(t, "net vxlan100_net vni 100 mtu 1450 flood 192.168.248.4",
		"local vxlan100_net fa:16:3e:cb:98:2c tap9784ef08-97 172.16.100.19",
		"remote vxlan100_net fa:16:3e:06:42:34 @192.168.248.4 172.16.100.12")
}
