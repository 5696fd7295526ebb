package test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/lab"
	"github.com/vxdp/vxdp/state"
)

// Security groups through the controller commands, against the lab's
// NATS control plane: what an operator types changes what the VMs can
// reach, on the running agents.

// cliErr runs a controller command like cli, returning its output and
// error instead of failing t.
func cliErr(l *lab.Lab, args ...string) (string, error) {
	args = append(args, "--netns", l.NS(lab.ControllerNode), "--nats", lab.NATSURL())
	cmd := exec.Command(l.Binary, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// cliJSON runs a controller command with -o json and decodes its output.
func cliJSON(t *testing.T, l *lab.Lab, v any, args ...string) {
	t.Helper()
	out := cli(t, l, append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("vxdp %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// publishByCLI creates the ports' networks and the ports, bound to their
// nodes, with the controller commands, and waits until their agents
// report them ACTIVE.
func publishByCLI(t *testing.T, l *lab.Lab, ports ...lab.Port) {
	t.Helper()
	names := map[string]string{lab.Net100ID: lab.Net100Name, lab.Net200ID: lab.Net200Name}
	made := map[string]bool{}
	for _, p := range ports {
		if !made[p.NetworkID] {
			made[p.NetworkID] = true
			cli(t, l, "network", "create", "--vni", fmt.Sprint(p.VNI), "--id", p.NetworkID, "--subnet", "172.16.100.0/24", names[p.NetworkID])
		}
		cli(t, l, "port", "create", "--network", p.NetworkID, "--id", p.ID, "--mac", p.MAC.String(), "--fixed-ip", p.IP.String(),
			"--host", p.Node, p.Name)
	}
	waitActive(t, l, len(ports))
}

// waitActive waits until the controller lists n ports, every one ACTIVE.
func waitActive(t *testing.T, l *lab.Lab, n int) {
	t.Helper()
	waitFor(t, "every port ACTIVE", func() bool {
		var list []control.Port
		if err := json.Unmarshal([]byte(cli(t, l, "port", "list", "-o", "json")), &list); err != nil || len(list) != n {
			return false
		}
		for _, p := range list {
			if p.Status != control.StatusActive {
				return false
			}
		}
		return true
	})
}

// reachable waits until from's echoes to to are answered (the remote
// agents applied the ports).
func reachable(t *testing.T, l *lab.Lab, from, to lab.Port) {
	t.Helper()
	waitFor(t, from.Name+" to reach "+to.Name, func() bool {
		r, err := lab.Ping(l.PortNS(from), to.IP, 1, 0, 200*time.Millisecond)
		return err == nil && r.Received == 1
	})
}

// enforced are the rules node's dataplane enforces, from its last apply.
func enforced(t *testing.T, l *lab.Lab, node string) []dataplane.AppliedRule {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(l.StateDir(node), "applied.json"))
	if err != nil {
		return nil
	}
	var a dataplane.Applied
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil
	}
	var out []dataplane.AppliedRule
	for _, p := range a.Policies {
		out = append(out, p.Rules...)
	}
	return out
}

// waitEnforced waits until node's dataplane enforces rules satisfying cond.
func waitEnforced(t *testing.T, l *lab.Lab, node, what string, cond func([]dataplane.AppliedRule) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond(enforced(t, l, node)) {
		if time.Now().After(deadline) {
			t.Fatalf("%s does not enforce %s; it enforces %+v", node, what, enforced(t, l, node))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ruleRemote is the remote node enforces for rule id ("" when it has not
// the rule).
func ruleRemote(rules []dataplane.AppliedRule, id string) string {
	for _, r := range rules {
		if r.ID == id {
			return r.Remote
		}
	}
	return ""
}

// sgDrops counts node4's security-group drops of traffic into its VMs.
func sgDrops(before, after counters) uint64 {
	var n uint64
	for _, prog := range []string{"uplink", "deliver"} {
		p, _ := grown(before, after, "node4", prog, "DROP_SG_INGRESS", "DROP_SG_FLOW_CUT")
		n += p
	}
	return n
}

// pingDropped checks that from cannot ping to, and that node4's security
// groups dropped the echoes.
func pingDropped(t *testing.T, l *lab.Lab, from, to lab.Port) {
	t.Helper()
	before := snapshot(t, l, "node4")
	res, err := lab.Ping(l.PortNS(from), to.IP, 3, 50*time.Millisecond, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, l, "node4")
	if res.Received != 0 {
		t.Errorf("%s pings %s: %d/%d replies, want none", from.Name, to.Name, res.Received, res.Sent)
	}
	if d := sgDrops(before, after); d < uint64(res.Sent) {
		t.Errorf("node4 dropped %d packets for its security groups, want the %d echoes (grown:%s)", d, res.Sent, nonZeroGrowth(before, after, "node4"))
	}
}

// cutWithin checks that change stops a running ping from from to to within
// a second, and that node4 dropped what followed.
func cutWithin(t *testing.T, l *lab.Lab, from, to lab.Port, change func()) {
	t.Helper()
	type result struct {
		res lab.PingResult
		err error
	}
	done := make(chan result, 1)
	before := snapshot(t, l, "node4")
	go func() {
		r, err := lab.Ping(l.PortNS(from), to.IP, 60, 20*time.Millisecond, 100*time.Millisecond)
		done <- result{r, err}
	}()
	time.Sleep(500 * time.Millisecond)
	change()
	changed := time.Now()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	var early, late int
	for _, at := range r.res.Answered {
		switch {
		case at.Before(changed):
			early++
		case at.After(changed.Add(time.Second)):
			late++
		}
	}
	if early == 0 || late > 0 {
		t.Errorf("running ping %s -> %s: %d echoes answered before the change, %d sent more than 1 s after it still answered (%d/%d)",
			from.Name, to.Name, early, late, r.res.Received, r.res.Sent)
	}
	if d := sgDrops(before, snapshot(t, l, "node4")); d == 0 {
		t.Error("node4 dropped nothing for its security groups after the change")
	}
}

// TestNATSSecurityGroupStory is the seed's story told with the CLI: vm1
// moves to a group with only the default egress rules, vm2's ping fails;
// the seed's ICMP rule makes it pass without restarting anything (replies
// passing as established); deleting the rule stops a running ping. Then
// quotas and bad input are refused and write nothing.
func TestNATSSecurityGroupStory(t *testing.T) {
	l := natsLab(t, true)
	publishByCLI(t, l, lab.DHCP, lab.VM2, lab.VM1)
	// Two ports of the admin project's default group reach each other:
	// its ingress rule names the group itself.
	reachable(t, l, lab.VM2, lab.VM1)
	ping(t, l, lab.VM2, lab.VM1.IP.String(), 5)

	var web control.SecurityGroup
	cliJSON(t, l, &web, "sg", "create", "web")
	var vm1 control.Port
	cliJSON(t, l, &vm1, "port", "set", lab.VM1.ID, "--no-security-group", "--security-group", "web")
	if len(vm1.SecurityGroups) != 1 || vm1.SecurityGroups[0] != web.ID {
		t.Fatalf("vm1's groups after port set: %v, want [%s]", vm1.SecurityGroups, web.ID)
	}
	onlyWeb := func(n int) func([]dataplane.AppliedRule) bool {
		return func(rs []dataplane.AppliedRule) bool {
			for _, r := range rs {
				if r.Group != web.ID {
					return false
				}
			}
			return len(rs) == n
		}
	}
	waitEnforced(t, l, "node4", "web's two egress rules only", onlyWeb(2))
	pingDropped(t, l, lab.VM2, lab.VM1)

	var rule control.SecurityGroupRule
	cliJSON(t, l, &rule, "sg", "rule", "add", "web", "--ingress", "--protocol", "icmp")
	if !control.IsUUID(rule.ID) || rule.SecurityGroupID != web.ID || rule.Direction != "ingress" || rule.Protocol != "icmp" {
		t.Fatalf("sg rule add printed %+v", rule)
	}
	waitEnforced(t, l, "node4", "the icmp rule", onlyWeb(3))
	// vm1 is no member of vm2's default group: the replies pass into vm2
	// as a tracked flow only.
	ping(t, l, lab.VM2, lab.VM1.IP.String(), 10)
	cutWithin(t, l, lab.VM2, lab.VM1, func() { cli(t, l, "sg", "rule", "delete", rule.ID) })
	pingDropped(t, l, lab.VM2, lab.VM1)

	t.Run("quotas and bad input write nothing", func(t *testing.T) {
		// The admin project holds default (4 rules) and web (2 rules).
		cli(t, l, "server", "bucket", "--replicas", "1", "--quota-security-groups", "3", "--quota-security-group-rules", "8")
		cli(t, l, "sg", "create", "extra")
		groups, port := cli(t, l, "sg", "list", "-o", "json"), cli(t, l, "port", "show", lab.VM1.ID, "-o", "json")
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"sg", "create", "more"}, "quota security_group of project admin is 3, 3 in use"},
			{[]string{"sg", "rule", "add", "web", "--protocol", "tcp"}, "quota security_group_rule of project admin is 8, 8 in use"},
			{[]string{"sg", "rule", "add", "web", "--protocol", "tcp", "--port-range", "30:20"}, "port range 30:20: want 1 <= min <= max <= 65535"},
			{[]string{"sg", "rule", "add", "web", "--protocol", "tcpp"}, `protocol "tcpp": want a name`},
			{[]string{"sg", "rule", "add", "web", "--ethertype", "IPv4", "--remote-ip", "2001:db8::/32"}, "is not an IPv4 prefix"},
			{[]string{"sg", "rule", "add", "web", "--remote-ip", "10.0.0.0/8", "--remote-group", "web"}, "give at most one"},
			{[]string{"sg", "rule", "add", "web", "--remote-group", "nope"}, `security group "nope" in project admin: not found`},
			{[]string{"sg", "rule", "add", "web", "--protocol", "icmp", "--icmp-code", "3"}, "--icmp-code 3 without --icmp-type"},
			{[]string{"sg", "rule", "add", "web", "--protocol", "udp", "--icmp-type", "8"}, "--icmp-type/--icmp-code are for --protocol icmp"},
			{[]string{"sg", "rule", "add", "web", "--ingress", "--egress"}, "disagree"},
			{[]string{"port", "set", lab.VM1.ID, "--security-group", "nope"}, `security group "nope" in project admin: not found`},
			{[]string{"port", "set", lab.VM1.ID, "--disable-port-security"}, "port security cannot be off while the port has security groups"},
			{[]string{"port", "set", lab.VM1.ID, "--security-group", "extra", "--allowed-address", "ip-address=10.0.0.1/8"}, "has host bits set"},
			{[]string{"address-group", "create", "bad", "--address", "10.0.0.1/8"}, "has host bits set: write 10.0.0.0/8"},
		} {
			if out, err := cliErr(l, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("vxdp %s: %v\n%s\nwant an error with %q", strings.Join(tc.args, " "), err, out, tc.want)
			}
		}
		if cli(t, l, "sg", "list", "-o", "json") != groups || cli(t, l, "port", "show", lab.VM1.ID, "-o", "json") != port {
			t.Error("refused requests changed the groups or vm1's port")
		}
		if out := cli(t, l, "address-group", "list", "-o", "json"); strings.TrimSpace(out) != "[]" {
			t.Errorf("refused address group written: %s", out)
		}
	})
}

// TestNATSRemoteGroups: a rule naming a remote group admits its members'
// addresses and nothing else; a member leaving cuts its flow; a member on
// a network the host does not carry counts too (vm3, on vxlan200_net of
// node3 only, has vm2's address 172.16.100.19).
func TestNATSRemoteGroups(t *testing.T) {
	l := newLab(t, lab.Config{Control: lab.ControlNATS, NoPublish: true, SecondNetwork: true})
	publishByCLI(t, l, lab.DHCP, lab.VM2, lab.VM1, lab.VM3)
	reachable(t, l, lab.VM2, lab.VM1)
	reachable(t, l, lab.DHCP, lab.VM1)
	var members, web control.SecurityGroup
	cliJSON(t, l, &members, "sg", "create", "members")
	cliJSON(t, l, &web, "sg", "create", "web")
	var rule control.SecurityGroupRule
	cliJSON(t, l, &rule, "sg", "rule", "add", "web", "--ingress", "--protocol", "icmp", "--remote-group", "members")
	cli(t, l, "port", "set", lab.VM1.ID, "--no-security-group", "--security-group", "web")
	remote := func(addrs ...string) {
		t.Helper()
		want := fmt.Sprintf("group %s (%d addresses) %s", members.ID, len(addrs), strings.Join(addrs, " "))
		waitEnforced(t, l, "node4", want, func(rs []dataplane.AppliedRule) bool { return ruleRemote(rs, rule.ID) == want })
	}
	remote()
	pingDropped(t, l, lab.VM2, lab.VM1)

	// vm2 joins: it passes, the DHCP port (no member) does not.
	cli(t, l, "port", "set", lab.VM2.ID, "--security-group", "members")
	remote("172.16.100.19/32")
	ping(t, l, lab.VM2, lab.VM1.IP.String(), 5)
	pingDropped(t, l, lab.DHCP, lab.VM1)

	// vm2 leaves while it pings: its flow is cut.
	cutWithin(t, l, lab.VM2, lab.VM1, func() { cli(t, l, "port", "unset", lab.VM2.ID, "--security-group", "members") })
	remote()

	// vm3 joins: its address counts on node4, which does not carry its
	// network; vm2 sends from that address.
	cli(t, l, "port", "set", lab.VM3.ID, "--security-group", "members")
	remote("172.16.100.19/32")
	if linkExists(l, "node4", state.VXLANName(200)) {
		t.Fatal("node4 carries vxlan200_net: the test needs it not to")
	}
	ping(t, l, lab.VM2, lab.VM1.IP.String(), 5)
	pingDropped(t, l, lab.DHCP, lab.VM1)
	cli(t, l, "port", "unset", lab.VM3.ID, "--security-group", "members")
	remote()
	pingDropped(t, l, lab.VM2, lab.VM1)

	// An address group as remote: the DHCP port's address admitted.
	var ag control.AddressGroup
	cliJSON(t, l, &ag, "address-group", "create", "dhcp-servers", "--address", lab.DHCP.IP.String())
	var fromAG control.SecurityGroupRule
	cliJSON(t, l, &fromAG, "sg", "rule", "add", "web", "--ingress", "--protocol", "icmp", "--remote-address-group", "dhcp-servers")
	waitEnforced(t, l, "node4", "the address group", func(rs []dataplane.AppliedRule) bool {
		return ruleRemote(rs, fromAG.ID) == fmt.Sprintf("address group %s %s", ag.ID, netip.PrefixFrom(lab.DHCP.IP, 32))
	})
	ping(t, l, lab.DHCP, lab.VM1.IP.String(), 5)
	cutWithin(t, l, lab.DHCP, lab.VM1, func() { cli(t, l, "address-group", "unset", "dhcp-servers", "--address", lab.DHCP.IP.String()) })
}
