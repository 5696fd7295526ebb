package test

import (
	"testing"
	"time"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/lab"
)

// TestSecurityGroupsOnLocalRedirect: two VMs of one network on one node
// talk through the port program's tap-to-tap redirect, which never passes
// through the bridge or the uplink; the target port's ingress rules hold
// there too. vm2 moves to vm1's node (node4); both start in the default
// group (they reach each other, by local redirect); then vm1 is only in
// "web", which allows nothing in: vm2's echoes die at vm1's tap.
func TestSecurityGroupsOnLocalRedirect(t *testing.T) {
	l := natsLab(t, true)
	publishByCLI(t, l, lab.DHCP, lab.VM2, lab.VM1)
	reachable(t, l, lab.VM2, lab.VM1)
	if _, err := l.Migrate(t.Context(), lab.VM2, "node4"); err != nil {
		t.Fatal(err)
	}
	vm2 := lab.VM2
	vm2.Node = "node4"
	reachable(t, l, vm2, lab.VM1)
	before := snapshot(t, l, "node4")
	ping(t, l, vm2, lab.VM1.IP.String(), 3)
	after := snapshot(t, l, "node4")
	if p, _ := grown(before, after, "node4", "port", "REDIRECT_LOCAL"); p < 6 {
		t.Errorf("vm2 <-> vm1 on one node: port REDIRECT_LOCAL grew by %d, want >= 6 (3 echoes, 3 replies) (grown:%s)", p, nonZeroGrowth(before, after, "node4"))
	}

	var web control.SecurityGroup
	cliJSON(t, l, &web, "sg", "create", "web")
	cli(t, l, "port", "set", lab.VM1.ID, "--no-security-group", "--security-group", "web")
	waitEnforced(t, l, "node4", "vm1 in web only", func(rs []dataplane.AppliedRule) bool {
		n := 0
		for _, r := range rs {
			if r.Group == web.ID {
				n++
			}
		}
		return n == 2 // web's two egress rules
	})
	before = snapshot(t, l, "node4")
	res, err := lab.Ping(l.PortNS(vm2), lab.VM1.IP, 5, 50*time.Millisecond, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	after = snapshot(t, l, "node4")
	if res.Received != 0 {
		t.Errorf("vm1 in a group allowing nothing in answered %d of %d echoes from vm2 on its node", res.Received, res.Sent)
	}
	if p, _ := grown(before, after, "node4", "deliver", "DROP_SG_INGRESS"); p < uint64(res.Sent) {
		t.Errorf("deliver DROP_SG_INGRESS grew by %d for %d echoes (grown:%s)", p, res.Sent, nonZeroGrowth(before, after, "node4"))
	}
}
