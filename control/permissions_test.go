package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/control/natsd"
	"github.com/vxdp/vxdp/state"
)

// credServer runs a server with a controller user and agent users for
// node1, node3 and node4 (password = user name + "-secret"), brokers
// configured by bo, and the seed network; it returns the controller.
func credServer(t *testing.T, bo control.BrokerOptions) (*natsd.Server, *control.Controller, control.Network) {
	t.Helper()
	users := []natsd.User{{Name: "controller", Password: "controller-secret", Role: natsd.RoleController}}
	for _, h := range []string{"node1", "node3", "node4"} {
		users = append(users, natsd.User{Name: h, Password: h + "-secret", Role: natsd.RoleAgent, Host: h})
	}
	srv := startServerWith(t, natsd.Options{Users: users, Broker: bo})
	c, err := control.NewController(context.Background(), connect(t, srv.ClientURL(), as("controller", "")), control.ControllerOptions{Log: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	n, _ := seedPorts(t, context.Background(), c)
	return srv, c, n
}

// as authenticates as user (the agent of host, when host is set).
func as(user, host string) func(*control.ConnectOptions) {
	return func(o *control.ConnectOptions) {
		o.User, o.Password = user, user+"-secret"
		if host != "" {
			o.InboxPrefix = control.InboxPrefix(host)
		}
	}
}

// intruder is a connection with one host's agent credential, used as an
// attacker would: raw publishes, subscriptions and broker requests.
type intruder struct {
	nc         *nats.Conn
	host       string
	violations chan error
}

func connectIntruder(t *testing.T, url, host string) *intruder {
	t.Helper()
	in := &intruder{host: host, violations: make(chan error, 64)}
	in.nc = connect(t, url, as(host, host), func(o *control.ConnectOptions) {
		o.OnError = func(err error) { in.violations <- err }
	})
	return in
}

// denied fails unless the server reports a permissions violation naming
// subject within 5 s.
func (in *intruder) denied(t *testing.T, subject string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case err := <-in.violations:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), subject) {
				return
			}
		case <-deadline:
			t.Fatalf("no permissions violation for %s", subject)
		}
	}
}

// answer is a broker reply.
type answer struct {
	Error  string          `json:"error"`
	Reason string          `json:"reason"`
	Result json.RawMessage `json:"result"`
}

// ask sends a broker request as the intruder's host and waits for the reply.
func (in *intruder) ask(t *testing.T, op string, body any) answer {
	t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	reply := control.InboxPrefix(in.host) + "." + nats.NewInbox()[len("_INBOX."):]
	sub, err := in.nc.SubscribeSync(reply)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := in.nc.PublishMsg(&nats.Msg{Subject: control.APISubject(control.DefaultBucket, in.host, op), Reply: reply, Data: raw}); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("broker %s: no reply: %v", op, err)
	}
	var a answer
	if err := json.Unmarshal(m.Data, &a); err != nil {
		t.Fatalf("broker %s: reply %q: %v", op, m.Data, err)
	}
	return a
}

// refusedWith fails unless a was refused for reason.
func refusedWith(t *testing.T, a answer, reason string) {
	t.Helper()
	if a.Reason != reason || a.Error == "" {
		t.Fatalf("got %+v, want a refusal (%s)", a, reason)
	}
}

// counter reads a counter of reg by its label values.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				if label(m, k) != v {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// An agent credential works for its agent, and writes nothing itself: no
// key of the bucket (not even its own: the broker writes those), no
// JetStream API request (a consumer delivering elsewhere, a durable, a
// direct get whose reply the server would store under any key), no
// subscription outside its own inbox.
func TestPerHostPermissions(t *testing.T) {
	ctx := context.Background()
	srv, c, n := credServer(t, control.BrokerOptions{})
	url := srv.ClientURL()
	sg, err := c.CreateSecurityGroup(ctx, control.SecurityGroupSpec{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}

	// The agents work with exactly their permissions.
	node3 := startAgentConn(t, connect(t, url, as("node3", "node3")), "node3", node3VTEP)
	startAgentConn(t, connect(t, url, as("node4", "node4")), "node4", node4VTEP)
	node3.waitFor(t, "vm2 local and vm1 remote", func(d *stateT) bool { return len(d.LocalPorts) == 1 && len(d.RemotePorts) == 1 })
	waitStatus(t, c, seedVM2ID, control.StatusActive)
	waitStatus(t, c, seedVM1ID, control.StatusActive)

	rogue := connectIntruder(t, url, "node4")
	val := func(key string) string {
		e, err := c.KV().Get(ctx, key)
		if err != nil {
			return "<none>"
		}
		return string(e.Value())
	}
	stream := control.StreamName(control.DefaultBucket)
	pushToNode3 := []byte(`{"stream_name":"KV_vxdp","config":{"deliver_subject":"_INBOX_node3.steal","ack_policy":"none","filter_subject":"$KV.vxdp.>"}}`)
	for _, tc := range []struct {
		name, subject, reply string
		data                 []byte
	}{
		{"own heartbeat", control.KeySubject(control.DefaultBucket, control.HeartbeatKey("node4")), "", []byte(`{"schema":1,"host":"node4"}`)},
		{"own agent record", control.KeySubject(control.DefaultBucket, control.AgentKey("node4")), "", []byte(`{"schema":1,"host":"node4","vtep_ip":"192.168.248.99"}`)},
		{"own registration", control.KeySubject(control.DefaultBucket, control.RegistrationKey("node4")), "", []byte(`{"schema":1,"host":"node4","vtep_ip":"192.168.248.99","registered_by":"controller"}`)},
		{"own port status", control.KeySubject(control.DefaultBucket, control.StatusKey(n.ID, "node4", seedVM1ID)), "", []byte(`{"schema":1}`)},
		{"status of a network that does not exist", control.KeySubject(control.DefaultBucket, control.StatusKey("nonet", "node4", "p")), "", make([]byte, 60<<10)},
		{"another host's port status", control.KeySubject(control.DefaultBucket, control.StatusKey(n.ID, "node3", seedVM2ID)), "", []byte(`{"schema":1}`)},
		{"another host's agent record", control.KeySubject(control.DefaultBucket, control.AgentKey("node3")), "", []byte(`{"schema":1}`)},
		{"a port record (steal vm2)", control.KeySubject(control.DefaultBucket, control.PortKey(n.ID, seedVM2ID)), "", []byte(`{"schema":1}`)},
		{"a network record", control.KeySubject(control.DefaultBucket, control.NetworkKey(n.ID)), "", []byte(`{"schema":1}`)},
		{"a security group", control.KeySubject(control.DefaultBucket, control.SecGroupKey(sg.ID)), "", []byte(`{"schema":1}`)},
		{"a binding", control.KeySubject(control.DefaultBucket, control.BindingKey("node4", seedVM2ID)), "", []byte(`{"schema":1}`)},
		{"a vni", control.KeySubject(control.DefaultBucket, control.VNIKey(7)), "", []byte(`{"schema":1}`)},
		{"push consumer to another agent's inbox", "$JS.API.CONSUMER.CREATE." + stream + ".steal", "", pushToNode3},
		{"push consumer to the apply reports", "$JS.API.CONSUMER.CREATE." + stream + ".forge", "",
			[]byte(`{"stream_name":"KV_vxdp","config":{"deliver_subject":"vxdp.vxdp.applied.node3","ack_policy":"none"}}`)},
		{"durable consumer", "$JS.API.CONSUMER.DURABLE.CREATE." + stream + ".hog", "", []byte(`{"stream_name":"KV_vxdp","config":{"durable_name":"hog","ack_policy":"explicit"}}`)},
		// The server sends the response to the reply subject unchecked: the
		// stream would store node4's agent record as the network record.
		{"direct get answered into a key", "$JS.API.DIRECT.GET." + stream + "." + control.KeySubject(control.DefaultBucket, control.AgentKey("node4")),
			control.KeySubject(control.DefaultBucket, control.NetworkKey(n.ID)), nil},
		{"message get", "$JS.API.STREAM.MSG.GET." + stream, control.KeySubject(control.DefaultBucket, control.NetworkKey(n.ID)), []byte(`{"seq":1}`)},
		{"stream info", "$JS.API.STREAM.INFO." + stream, control.KeySubject(control.DefaultBucket, control.NetworkKey(n.ID)), nil},
		{"stream delete", "$JS.API.STREAM.DELETE." + stream, "", nil},
		{"pull from a consumer", "$JS.API.CONSUMER.MSG.NEXT." + stream + ".any", control.KeySubject(control.DefaultBucket, control.NetworkKey(n.ID)), []byte(`{"batch":1}`)},
		{"another host's broker subjects", control.APISubject(control.DefaultBucket, "node3", "status"), control.InboxPrefix("node4") + ".x", []byte(`{}`)},
		{"another host's apply reports", control.AppliedSubject(control.DefaultBucket, "node3"), "", []byte(`{"host":"node3","revision":99999}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := val(control.NetworkKey(n.ID))
			key := strings.TrimPrefix(tc.subject, control.KeyPrefix(control.DefaultBucket))
			was := val(key)
			if err := rogue.nc.PublishMsg(&nats.Msg{Subject: tc.subject, Reply: tc.reply, Data: tc.data}); err != nil {
				t.Fatal(err)
			}
			rogue.denied(t, tc.subject)
			if val(control.NetworkKey(n.ID)) != before || key != tc.subject && val(key) != was {
				t.Fatal("the bucket changed")
			}
		})
	}
	for _, subject := range []string{control.InboxPrefix("node3") + ".>", control.AppliedWildcard(control.DefaultBucket), control.KeyPrefix(control.DefaultBucket) + ">", "_INBOX.>"} {
		t.Run("subscribe "+subject, func(t *testing.T) {
			if _, err := rogue.nc.SubscribeSync(subject); err != nil {
				t.Fatal(err)
			}
			rogue.denied(t, subject)
		})
	}
	t.Run("no durable, nothing delivered outside its host's inbox", func(t *testing.T) {
		for _, ci := range consumers(t, srv) {
			host := ci.Config.Metadata["vxdp_host"]
			if ci.Config.Durable != "" || host != "" && !strings.HasPrefix(ci.Config.DeliverSubject, control.InboxPrefix(host)+".") {
				t.Errorf("consumer %s: %+v", ci.Name, ci.Config)
			}
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		_, err := control.Connect(ctx, control.ConnectOptions{URLs: []string{url}, User: "node4", Password: "guess", Log: testLog(), Timeout: time.Second})
		if err == nil {
			t.Fatal("connected with a wrong password")
		}
	})

	if p, _ := c.GetPort(ctx, seedVM2ID); p.Status != control.StatusActive || p.Host != "node3" {
		t.Errorf("vm2 is %s on %s after the rogue writes", p.Status, p.Host)
	}
	node3.waitL2(t,
		"net vxlan100_net vni 100 mtu 1450 flood 192.168.248.4",
		"local vxlan100_net fa:16:3e:cb:98:2c tap9784ef08-97 172.16.100.19",
		"remote vxlan100_net fa:16:3e:06:42:34 @192.168.248.4 172.16.100.12",
	)
}

// consumers lists the consumers of the bucket's stream.
func consumers(t *testing.T, srv *natsd.Server) []*jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := adminJS(t, srv).Stream(ctx, control.StreamName(control.DefaultBucket))
	if err != nil {
		t.Fatal(err)
	}
	l := s.ListConsumers(ctx)
	var out []*jetstream.ConsumerInfo
	for ci := range l.Info() {
		out = append(out, ci)
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// adminJS is JetStream on the server's own privileged connection.
func adminJS(t *testing.T, srv *natsd.Server) jetstream.JetStream {
	t.Helper()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// An agent with its credential loads a network of thousands of ports: its
// consumer's flow control (the server pauses every megabyte or so until
// the agent answers) works within its permissions.
func TestAgentCredentialFullLoad(t *testing.T) {
	const ports = 6000
	ctx := context.Background()
	srv, c, n := credServer(t, control.BrokerOptions{})
	if _, err := c.RegisterHost(ctx, "r1", netip.MustParseAddr("192.168.249.1"), false); err != nil {
		t.Fatal(err)
	}
	js := adminJS(t, srv)
	for i := range ports {
		id := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		port := &control.PortRecord{Schema: control.SchemaVersion, ID: id, NetworkID: n.ID, Name: strings.Repeat("p", 200),
			MAC: state.MAC{0xfa, 0x16, 0x3e, 1, byte(i >> 8), byte(i)}, PortSecurity: true, Host: "r1", Generation: 1}
		st := &control.StatusRecord{Schema: control.SchemaVersion, PortID: id, Host: "r1", Status: control.StatusActive, Generation: 1}
		for key, rec := range map[string]any{control.PortKey(n.ID, id): port, control.StatusKey(n.ID, "r1", id): st} {
			raw, _ := json.Marshal(rec)
			if _, err := js.PublishAsync(control.KeySubject(control.DefaultBucket, key), raw); err != nil {
				t.Fatal(err)
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("bulk write did not complete")
	}
	node3 := startAgentConn(t, connect(t, srv.ClientURL(), as("node3", "node3")), "node3", node3VTEP)
	node3.waitWithin(t, 60*time.Second, "every remote port", func(d *stateT) bool { return len(d.RemotePorts) == ports })
}

// An apply report counts only for the host whose subject it came on.
func TestApplyReportHost(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv.ClientURL())
	w, err := control.WatchApplies(nc, "")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for host, report := range map[string]string{"node3": `{"host":"node4","revision":5}`, "node4": `{"host":"node4","revision":3}`} {
		if err := nc.Publish(control.AppliedSubject(control.DefaultBucket, host), []byte(report)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := w.WaitApplied(ctx, map[string]uint64{"node4": 3}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if at, err := w.WaitApplied(ctx, map[string]uint64{"node4": 5}); err == nil {
		t.Errorf("a report on node3's subject counted for node4: %v", at)
	}
}
