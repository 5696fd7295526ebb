package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/state"
)

// rejected reads vxdp_control_records_rejected_total by "kind/reason".
func rejected(t *testing.T, ta *testAgent) map[string]float64 {
	t.Helper()
	mfs, err := ta.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != control.MetricRejected {
			continue
		}
		for _, m := range mf.GetMetric() {
			if v := m.GetCounter().GetValue(); v > 0 { // every series exists from the start
				out[label(m, "kind")+"/"+label(m, "reason")] = v
			}
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func portJSON(t *testing.T, mutate func(map[string]any)) []byte {
	t.Helper()
	rec := map[string]any{
		"schema": 1, "id": "", "network_id": seedNetID, "mac_address": "fa:16:3e:00:00:aa",
		"fixed_ips": []string{"172.16.100.50"}, "port_security_enabled": true, "binding_host_id": "node3", "binding_generation": 1,
	}
	mutate(rec)
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Records that do not parse, carry an unknown schema or invalid values are
// rejected, counted and not applied; everything else still is.
func TestMalformedRecords(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	url := srv.ClientURL()
	c := newController(t, url)
	seedPorts(t, ctx, c)
	startAgent(t, url, "node4", node4VTEP)
	startAgent(t, url, "node1", node1VTEP)
	node3 := startAgent(t, url, "node3", node3VTEP)
	before := node3.waitFor(t, "seed view", func(d *stateT) bool { return len(d.RemotePorts) == 2 })
	kv := c.KV()
	put := func(key string, val []byte) {
		t.Helper()
		if _, err := kv.Put(ctx, key, val); err != nil {
			t.Fatal(err)
		}
	}
	const (
		idParse    = "aaaaaaaa-0000-4000-8000-000000000001"
		idSchema   = "aaaaaaaa-0000-4000-8000-000000000002"
		idBadMAC   = "aaaaaaaa-0000-4000-8000-000000000003"
		idMismatch = "aaaaaaaa-0000-4000-8000-000000000004"
		idGood     = "aaaaaaaa-0000-4000-8000-000000000005"
		idDupMAC   = "aaaaaaaa-0000-4000-8000-000000000006"
	)
	cases := []struct {
		key, want string
		val       []byte
	}{
		{control.PortKey(seedNetID, idParse), "port/parse", []byte(`{"schema":1,"id":`)},
		{control.PortKey(seedNetID, idSchema), "port/schema", portJSON(t, func(r map[string]any) { r["id"], r["schema"] = idSchema, 2 })},
		{control.PortKey(seedNetID, idBadMAC), "port/invalid", portJSON(t, func(r map[string]any) { r["id"], r["mac_address"] = idBadMAC, "01:00:5e:00:00:01" })},
		{control.PortKey(seedNetID, idMismatch), "port/key_mismatch", portJSON(t, func(r map[string]any) { r["id"] = idGood })},
		// vm2's record overwritten with a bad IP: the last valid one stays.
		{control.PortKey(seedNetID, seedVM2ID), "port/parse", portJSON(t, func(r map[string]any) {
			r["id"], r["mac_address"], r["fixed_ips"] = seedVM2ID, "fa:16:3e:cb:98:2c", []string{"300.1.1.1"}
		})},
		{control.StatusKey(seedNetID, "node4", seedVM1ID), "status/invalid", []byte(`{"schema":1,"port_id":"` + seedVM1ID + `","host":"node4","status":"MAYBE"}`)},
		{control.RegistrationKey("node9"), "registration/invalid", []byte(`{"schema":1,"host":"node9","vtep_ip":"224.0.0.1","registered_by":"controller"}`)},
		{control.NetworkKey(seedNetID), "network/invalid", []byte(`{"schema":1,"id":"` + seedNetID + `","vni":16777216}`)},
		{control.BindingKey("node3", idParse), "binding/parse", []byte(`[]`)},
	}
	for _, tc := range cases {
		put(tc.key, tc.val)
	}
	// A valid port on node3, and one on node4 reusing vm1's MAC (a clash
	// only a writer bypassing the controller can make): the older wins.
	put(control.BindingKey("node3", idGood), []byte(`{"schema":1,"port_id":"`+idGood+`","network_id":"`+seedNetID+`","binding_generation":1}`))
	put(control.PortKey(seedNetID, idGood), portJSON(t, func(r map[string]any) { r["id"] = idGood }))
	put(control.PortKey(seedNetID, idDupMAC), portJSON(t, func(r map[string]any) {
		r["id"], r["mac_address"], r["binding_host_id"], r["fixed_ips"] = idDupMAC, "fa:16:3e:06:42:34", "node4", nil
	}))
	put(control.StatusKey(seedNetID, "node4", idDupMAC), []byte(`{"schema":1,"port_id":"`+idDupMAC+`","host":"node4","status":"ACTIVE","binding_generation":1}`))

	d := node3.waitFor(t, "the valid port applied", func(d *stateT) bool {
		return slices.ContainsFunc(d.LocalPorts, func(p state.LocalPort) bool { return p.ID == idGood })
	})
	want := map[string]float64{}
	for _, tc := range cases {
		want[tc.want]++
	}
	want["port/conflict"] = 1
	deadline := time.Now().Add(5 * time.Second)
	var got map[string]float64
	for {
		got = rejected(t, node3)
		if fmt.Sprint(got) == fmt.Sprint(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rejections counted %v, want %v", got, want)
	}
	// Nothing invalid reached the state; the last valid vm2 and network stay.
	for _, p := range d.LocalPorts {
		if p.ID == seedVM2ID && !slices.Equal(p.IPs, before.LocalPorts[0].IPs) {
			t.Errorf("vm2 took the rejected update: %v", p.IPs)
		}
	}
	if d.Networks[0].VNI != 100 {
		t.Errorf("network took the rejected update: vni %d", d.Networks[0].VNI)
	}
	for _, p := range d.RemotePorts {
		if p.ID == idDupMAC {
			t.Errorf("the clashing port was distributed")
		}
	}
	if err := d.Validate(); err != nil {
		t.Errorf("agent sent an invalid state: %v", err)
	}
}

// Concurrent creates never share a VNI, whether allocated or chosen.
func TestConcurrentVNIAllocation(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	url := srv.ClientURL()
	const workers = 24
	ctrls := make([]*control.Controller, workers)
	for i := range ctrls {
		c, err := control.NewController(ctx, connect(t, url), control.ControllerOptions{VNIRanges: []control.VNIRange{{1001, 1016}}, Log: testLog()})
		if err != nil {
			t.Fatal(err)
		}
		ctrls[i] = c
	}
	type result struct {
		n   control.Network
		err error
	}
	run := func(spec func(i int) control.NetworkSpec) []result {
		out := make([]result, workers)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				out[i].n, out[i].err = ctrls[i].CreateNetwork(ctx, spec(i))
			}()
		}
		close(start)
		wg.Wait()
		return out
	}

	allocated := run(func(i int) control.NetworkSpec { return control.NetworkSpec{Name: fmt.Sprintf("n%d", i)} })
	seen := map[uint32]bool{}
	ok := 0
	for _, r := range allocated {
		switch {
		case r.err == nil:
			ok++
			if seen[r.n.VNI] || r.n.VNI < 1001 || r.n.VNI > 1016 {
				t.Errorf("vni %d allocated twice or outside 1001:1016", r.n.VNI)
			}
			seen[r.n.VNI] = true
		case !errors.Is(r.err, control.ErrExhausted):
			t.Errorf("allocation: %v", r.err)
		}
	}
	if ok != 16 {
		t.Errorf("%d networks allocated, want the 16 VNIs of the range", ok)
	}

	chosen := run(func(i int) control.NetworkSpec {
		return control.NetworkSpec{Name: fmt.Sprintf("admin%d", i), VNI: 5000}
	})
	ok = 0
	for _, r := range chosen {
		if r.err == nil {
			ok++
		} else if !errors.Is(r.err, control.ErrExists) {
			t.Errorf("chosen vni: %v", r.err)
		}
	}
	if ok != 1 {
		t.Errorf("%d networks got vni 5000, want exactly 1", ok)
	}
	nets, err := ctrls[0].ListNetworks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nets) != 17 {
		t.Errorf("%d networks stored, want 17 (no half-created ones)", len(nets))
	}
}

// Bad requests are refused with a clear message and write nothing.
func TestControllerValidation(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	c := newController(t, srv.ClientURL())
	n, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: "net", VNI: 100, Subnets: []netip.Prefix{netip.MustParsePrefix("172.16.100.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	sg, err := c.CreateSecurityGroup(ctx, control.SecurityGroupSpec{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreatePort(ctx, control.PortSpec{Network: "net", MAC: mac("fa:16:3e:00:00:01"), FixedIPs: addrs("172.16.100.5")}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		do   func() error
		want error
		msg  string
	}{
		{"vni out of range", func() error {
			_, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: "x", VNI: 1 << 24})
			return err
		}, control.ErrInvalid, "vni 16777216 out of range"},
		{"vni taken", func() error { _, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: "x", VNI: 100}); return err }, control.ErrExists, "vni 100 is already used by network " + n.ID},
		{"subnet with host bits", func() error {
			_, err := c.CreateNetwork(ctx, control.NetworkSpec{Name: "x", Subnets: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24")}})
			return err
		}, control.ErrInvalid, "not a network address"},
		{"unknown network", func() error { _, err := c.CreatePort(ctx, control.PortSpec{Network: "nope"}); return err }, control.ErrNotFound, `network "nope"`},
		{"multicast mac", func() error {
			_, err := c.CreatePort(ctx, control.PortSpec{Network: "net", MAC: mac("01:00:5e:00:00:01")})
			return err
		}, control.ErrInvalid, "not a unicast address"},
		{"duplicate mac", func() error {
			_, err := c.CreatePort(ctx, control.PortSpec{Network: "net", MAC: mac("fa:16:3e:00:00:01")})
			return err
		}, control.ErrExists, "mac fa:16:3e:00:00:01 is already used"},
		{"ip outside subnets", func() error {
			_, err := c.CreatePort(ctx, control.PortSpec{Network: "net", FixedIPs: addrs("10.1.1.1")})
			return err
		}, control.ErrInvalid, "not in a subnet"},
		{"duplicate ip", func() error {
			_, err := c.CreatePort(ctx, control.PortSpec{Network: "net", FixedIPs: addrs("172.16.100.5")})
			return err
		}, control.ErrExists, "fixed ip 172.16.100.5 is already used"},
		{"unknown security group", func() error {
			_, err := c.CreatePort(ctx, control.PortSpec{Network: "net", SecurityGroups: []string{"nope"}})
			return err
		}, control.ErrNotFound, `security group "nope"`},
		{"no port security with a group", func() error {
			_, err := c.CreatePort(ctx, control.PortSpec{Network: "net", NoPortSecurity: true, SecurityGroups: []string{sg.ID}})
			return err
		}, control.ErrInvalid, "port security is disabled"},
		{"bad host", func() error {
			_, err := c.CreatePort(ctx, control.PortSpec{Network: "net", Host: "node_3"})
			return err
		}, control.ErrInvalid, "invalid host"},
		{"bad rule", func() error {
			_, err := c.AddSecurityGroupRule(ctx, "web", control.SGRule{Direction: "inbound", Protocol: "tcp", PortRangeMin: control.IntPtr(22), PortRangeMax: control.IntPtr(22)})
			return err
		}, control.ErrInvalid, `direction "inbound"`},
		{"rule prefix of the other family", func() error {
			_, err := c.AddSecurityGroupRule(ctx, "web", control.SGRule{Direction: "ingress", Ethertype: "IPv4", RemoteIPPrefix: netip.MustParsePrefix("2001:db8::/32")})
			return err
		}, control.ErrInvalid, "is not an IPv4 prefix"},
		{"network in use", func() error { return c.DeleteNetwork(ctx, "net") }, control.ErrInUse, "delete them first"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if !errors.Is(err, tc.want) || !contains(fmt.Sprint(err), tc.msg) {
				t.Errorf("got %v, want %v with %q", err, tc.want, tc.msg)
			}
		})
	}
	// "network in use" marks and unmarks; nothing else wrote anything.
	ports, err := c.ListPorts(ctx, control.PortFilter{})
	if err != nil {
		t.Fatal(err)
	}
	nets, _ := c.ListNetworks(ctx)
	if len(ports) != 1 || len(nets) != 1 || nets[0].Deleting {
		t.Errorf("after refused requests: %d ports, %d networks (%+v)", len(ports), len(nets), nets)
	}
	keys, err := c.KV().ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for k := range keys.Keys() {
		all = append(all, k)
	}
	// net, vni, sg, port, mac, ip, the default group (made with the
	// project's first group) and the port's member record in it: the
	// refused requests left no reservation.
	if len(all) != 8 || !slices.Contains(all, control.SecGroupKey(control.DefaultGroupID)) {
		t.Errorf("keys after refused requests: %v", all)
	}
}
