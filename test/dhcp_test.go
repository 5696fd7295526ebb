package test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"

	"github.com/vxdp/vxdp/frames"
	"github.com/vxdp/vxdp/lab"
)

// dhcpCookie is the magic cookie every DHCP message carries: a frame
// holding it, encapsulated or not, is DHCP.
var dhcpCookie = []byte{0x63, 0x82, 0x53, 0x63}

// TestDHCPAtPort: the lab's VMs get their addresses from a real DHCP
// client (busybox udhcpc) answered by the port program, with the subnet's
// settings, and the exchange never leaves the hypervisor; malformed DHCP
// is dropped and counted.
func TestDHCPAtPort(t *testing.T) {
	l := newLab(t, lab.Config{Control: lab.ControlFile, DHCP: true})
	// Lab-up leased every VM already: they reach each other on those addresses.
	ping(t, l, lab.VM2, lab.VM1.IP.String(), 3)

	// vm1 again, from scratch, watched on the underlay and at the DHCP port.
	wire, err := lab.StartCapture(l.NS("node4"), lab.VTEPDev)
	if err != nil {
		t.Fatal(err)
	}
	qdhcp, err := lab.StartCapture(l.PortNS(lab.DHCP), lab.VMDev)
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, l, "node4")
	if out, err := l.RunDHCPClient(t.Context(), lab.VM1); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	after := snapshot(t, l, "node4")
	for name, c := range map[string]*lab.Capture{"node4's underlay NIC": wire, "the DHCP port": qdhcp} {
		fs, err := c.Stop()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			if bytes.Contains(f.Data, dhcpCookie) {
				t.Errorf("DHCP left the hypervisor: seen on %s:\n%s", name, frames.Decode(f.Data))
				break
			}
		}
	}
	if p, _ := grown(before, after, "node4", "port", "TX_DHCP_REPLY"); p < 2 {
		t.Errorf("node4 answered %d DHCP messages, want an OFFER and an ACK (grown:%s)", p, nonZeroGrowth(before, after, "node4"))
	}
	lease, err := l.Lease(lab.VM1)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"ip": "172.16.100.12", "subnet": "255.255.255.0", "router": "172.16.100.1",
		"dns": "172.16.100.10", "mtu": fmt.Sprint(lab.NetworkMTU), "hostname": "host-172-16-100-12",
		"domain": "openstacklocal", "serverid": "172.16.100.10", "lease": "86400"} {
		if lease[k] != want {
			t.Errorf("vm1's lease: %s = %q, want %q", k, lease[k], want)
		}
	}
	if mtu := vmMTU(t, l, lab.VM1); mtu != lab.NetworkMTU {
		t.Errorf("vm1's NIC has MTU %d after DHCP, want the network's %d", mtu, lab.NetworkMTU)
	}

	// Malformed: an option running past the message, from vm1's own MAC.
	bad := frames.DHCPClient(lab.VM1.MAC[:], mustAddr("0.0.0.0"), mustAddr("255.255.255.255"),
		frames.DHCPMessage(layers.DHCPMsgTypeDiscover, lab.VM1.MAC[:], 7, layers.NewDHCPOption(layers.DHCPOptHostname, []byte("vm1"))))
	end := bytes.LastIndexByte(bad, 255)
	bad[end-4] = 200 // the host name option's length, far past the end
	before = snapshot(t, l, "node4")
	if err := lab.SendFrame(l.PortNS(lab.VM1), lab.VMDev, bad); err != nil {
		t.Fatal(err)
	}
	waitGrown(t, l, before, "node4", "port", "DROP_DHCP_MALFORMED", 1)
}

// TestDHCPOffLeavesItToTheNetwork: with DHCP at the port off on the
// subnet (Neutron's --no-dhcp as far as vxdp goes), a VM's DHCP crosses
// the kernel path to whatever serves the network — here a DHCP server in
// the DHCP port's namespace, as Neutron's DHCP agent runs dnsmasq there.
func TestDHCPOffLeavesItToTheNetwork(t *testing.T) {
	l := newLab(t, lab.Config{Control: lab.ControlFile, NoDHCPAtPort: true})
	startDHCPServer(t, l, l.PortNS(lab.DHCP), lab.VMDev, lab.VM1, mustAddr("172.16.100.1"), 600)

	before := snapshot(t, l, "node4", "node1")
	if out, err := l.RunDHCPClient(t.Context(), lab.VM1); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	after := snapshot(t, l, "node4", "node1")
	if p, _ := grown(before, after, "node4", "port", "TX_DHCP_REPLY", "TX_DHCP_NAK"); p != 0 {
		t.Errorf("node4 answered %d DHCP messages itself; its subnet has DHCP at the port off", p)
	}
	if p, _ := grown(before, after, "node4", "port", "PASS_BUM"); p == 0 {
		t.Errorf("vm1's DHCP did not go to the network (grown:%s)", nonZeroGrowth(before, after, "node4"))
	}
	lease, err := l.Lease(lab.VM1)
	if err != nil {
		t.Fatal(err)
	}
	if lease["serverid"] != lab.DHCP.IP.String() || lease["lease"] != "600" {
		t.Errorf("vm1's lease came from %q for %s s, want the DHCP port's server (%s, 600 s)", lease["serverid"], lease["lease"], lab.DHCP.IP)
	}
}

// vmMTU is the MTU of a VM's NIC.
func vmMTU(t *testing.T, l *lab.Lab, p lab.Port) int {
	t.Helper()
	mtu := 0
	if err := lab.Do(l.PortNS(p), func() error {
		link, err := netlink.LinkByName(lab.VMDev)
		if err == nil {
			mtu = link.Attrs().MTU
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return mtu
}

// waitGrown waits up to two seconds for (node, prog, reason) to grow by n.
func waitGrown(t *testing.T, l *lab.Lab, before counters, node, prog, reason string, n uint64) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		after := snapshot(t, l, node)
		p, _ := grown(before, after, node, prog, reason)
		if p >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s/%s grew by %d, want %d (grown:%s)", node, prog, reason, p, n, nonZeroGrowth(before, after, node))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startDHCPServer runs busybox udhcpd in namespace ns on dev, as Neutron's
// DHCP agent runs dnsmasq (or a physical network has its own server): it
// leases p its address with router and a lease of lease seconds, until
// the test ends.
func startDHCPServer(t *testing.T, l *lab.Lab, ns, dev string, p lab.Port, router netip.Addr, lease int) {
	t.Helper()
	conf := filepath.Join(l.Dir, "udhcpd-"+p.Name+".conf")
	leases := filepath.Join(l.Dir, "udhcpd-"+p.Name+".leases")
	if err := os.WriteFile(leases, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(conf); os.Remove(leases) })
	pool := netip.PrefixFrom(p.IP, 24).Masked().Addr().As4()
	pool[3] = 200
	start := netip.AddrFrom4(pool)
	pool[3] = 210
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`interface %s
start %s
end %s
lease_file %s
static_lease %s %s
option subnet 255.255.255.0
option router %s
option lease %d
`, dev, start, netip.AddrFrom4(pool), leases, p.MAC, p.IP, router, lease)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	server := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "busybox", "udhcpd", "-f", conf)
	var serverOut bytes.Buffer
	server.Stdout, server.Stderr = &serverOut, &serverOut
	if err := server.Start(); err != nil {
		cancel()
		t.Fatalf("udhcpd: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		server.Wait()
		if t.Failed() {
			t.Logf("udhcpd:\n%s", serverOut.String())
		}
	})
	time.Sleep(300 * time.Millisecond) // udhcpd binds its socket
}
