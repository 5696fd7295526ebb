package control_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/control/natsd"
)

// With per-host users, an agent writes only its own heartbeat, agent
// record and port statuses; the controller alone writes networks, ports
// and security groups; a rogue agent's writes elsewhere are denied.
func TestPerHostPermissions(t *testing.T) {
	ctx := context.Background()
	users := []natsd.User{
		{Name: "controller", Password: "ctl-secret", Role: natsd.RoleController},
		{Name: "node3", Password: "n3-secret", Role: natsd.RoleAgent, Host: "node3"},
		{Name: "node4", Password: "n4-secret", Role: natsd.RoleAgent, Host: "node4"},
	}
	srv := startServer(t, users...)
	url := srv.ClientURL()
	as := func(user, pass, host string) func(*control.ConnectOptions) {
		return func(o *control.ConnectOptions) {
			o.User, o.Password = user, pass
			if host != "" {
				o.InboxPrefix = control.InboxPrefix(host)
			}
		}
	}
	c, err := control.NewController(ctx, connect(t, url, as("controller", "ctl-secret", "")), control.ControllerOptions{Log: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	n, _ := seedPorts(t, ctx, c)
	sg, err := c.CreateSecurityGroup(ctx, control.SecurityGroupSpec{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}

	// node3's agent works with exactly its permissions.
	node3 := startAgentConn(t, connect(t, url, as("node3", "n3-secret", "node3")), "node3", node3VTEP)
	node3.waitFor(t, "vm2 local", func(d *stateT) bool { return len(d.LocalPorts) == 1 })
	waitStatus(t, c, seedVM2ID, control.StatusActive)

	// node4 turns rogue.
	violations := make(chan error, 16)
	rogue := connect(t, url, as("node4", "n4-secret", "node4"), func(o *control.ConnectOptions) {
		o.OnError = func(err error) { violations <- err }
	})
	js, err := jetstream.New(rogue)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, control.DefaultBucket)
	if err != nil {
		t.Fatalf("agent cannot open the bucket: %v", err)
	}
	val := func(key string) string {
		e, err := c.KV().Get(ctx, key)
		if err != nil {
			return "<none>"
		}
		return string(e.Value())
	}
	status := func(host, port string) []byte {
		return []byte(`{"schema":1,"port_id":"` + port + `","host":"` + host + `","status":"ACTIVE","binding_generation":1}`)
	}
	for _, tc := range []struct {
		name, key string
		value     []byte
		allowed   bool
	}{
		{"own heartbeat", control.HeartbeatKey("node4"), []byte(`{"schema":1,"host":"node4","time":"2025-01-01T00:00:00Z"}`), true},
		{"own agent record", control.AgentKey("node4"), []byte(`{"schema":1,"host":"node4","vtep_ip":"192.168.248.4","admin_state_up":true}`), true},
		{"own port status", control.StatusKey(n.ID, "node4", seedVM1ID), status("node4", seedVM1ID), true},
		// Allowed (its own key) but meaningless: vm2 is bound to node3.
		{"claim another host's port", control.StatusKey(n.ID, "node4", seedVM2ID), status("node4", seedVM2ID), true},
		{"another host's port status", control.StatusKey(n.ID, "node3", seedVM2ID), []byte(`{"schema":1,"port_id":"` + seedVM2ID + `","host":"node3","status":"DOWN","binding_generation":1}`), false},
		{"another host's heartbeat", control.HeartbeatKey("node3"), []byte(`{"schema":1,"host":"node3"}`), false},
		{"another host's agent record", control.AgentKey("node3"), []byte(`{"schema":1,"host":"node3","vtep_ip":"192.168.248.4"}`), false},
		{"a port record (steal vm2)", control.PortKey(n.ID, seedVM2ID), []byte(`{"schema":1}`), false},
		{"a network record", control.NetworkKey(n.ID), []byte(`{"schema":1}`), false},
		{"a security group", control.SecGroupKey(sg.ID), []byte(`{"schema":1}`), false},
		{"a binding", control.BindingKey("node4", seedVM2ID), []byte(`{"schema":1}`), false},
		{"a vni", control.VNIKey(7), []byte(`{"schema":1}`), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if tc.allowed {
				if _, err := kv.Put(wctx, tc.key, tc.value); err != nil {
					t.Fatalf("write denied: %v", err)
				}
				return
			}
			done := make(chan error, 1)
			go func() { _, err := kv.Put(wctx, tc.key, tc.value); done <- err }()
			select {
			case err := <-done:
				t.Fatalf("write not refused by the server: %v", err)
			case err := <-violations:
				if !errors.Is(err, nats.ErrPermissionViolation) || !contains(err.Error(), control.KeySubject(control.DefaultBucket, tc.key)) {
					t.Fatalf("unexpected error %v", err)
				}
			}
			cancel()
			<-done
			if val(tc.key) == string(tc.value) {
				t.Fatalf("the rogue value was stored")
			}
		})
	}

	t.Run("roll-up of the whole bucket", func(t *testing.T) {
		// Allowed subject, but a "Nats-Rollup: all" header would purge every
		// key; the bucket refuses roll-ups.
		m := nats.NewMsg(control.KeySubject(control.DefaultBucket, control.HeartbeatKey("node4")))
		m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupAll)
		m.Data = []byte(`{"schema":1,"host":"node4"}`)
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := js.PublishMsg(wctx, m); err == nil {
			t.Fatal("roll-up accepted")
		}
		if _, err := c.GetNetwork(ctx, n.ID); err != nil {
			t.Fatalf("network gone after the roll-up attempt: %v", err)
		}
	})

	t.Run("stream admin", func(t *testing.T) {
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- js.DeleteStream(wctx, control.StreamName(control.DefaultBucket)) }()
		select {
		case err := <-violations:
			if !errors.Is(err, nats.ErrPermissionViolation) {
				t.Fatalf("unexpected error %v", err)
			}
		case err := <-done:
			t.Fatalf("stream delete not refused by the server: %v", err)
		}
		cancel()
		<-done
		if _, err := c.GetNetwork(ctx, n.ID); err != nil {
			t.Fatalf("bucket damaged: %v", err)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		_, err := control.Connect(ctx, control.ConnectOptions{URLs: []string{url}, User: "node4", Password: "guess", Log: testLog(), Timeout: time.Second})
		if err == nil {
			t.Fatal("connected with a wrong password")
		}
	})

	// The stolen status did not move vm2's status on node3.
	if p, _ := c.GetPort(ctx, seedVM2ID); p.Status != control.StatusActive || p.Host != "node3" {
		t.Errorf("vm2 is %s on %s after the rogue writes", p.Status, p.Host)
	}
}
