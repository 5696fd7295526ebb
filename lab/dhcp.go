package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vxdp/vxdp/state"
)

// The lab's subnets, as the seed's: vxlan100_net's 172.16.100.0/24 with
// the DHCP port as server identifier (vxdp answers in its name; nothing
// runs in qdhcp-<network>), and the same range on vxlan200_net.
var (
	labSubnet  = netip.MustParsePrefix("172.16.100.0/24")
	labGateway = netip.MustParseAddr("172.16.100.1")
	labDNS     = netip.MustParseAddr("172.16.100.10")
)

// subnet is the subnet of a lab network.
func (c Config) subnet(id string) state.Subnet {
	return state.Subnet{ID: id + "-v4", CIDR: labSubnet, Gateway: labGateway, DNS: []netip.Addr{labDNS},
		DHCP: !c.NoDHCPAtPort, DHCPServer: DHCP.IP}
}

// dhcpClientScript is udhcpc's hook: busybox calls it with the lease in
// its environment; it applies it to the VM's NIC the way a distribution's
// script does (address, MTU, default route), and nothing outside the VM's
// namespace (no resolv.conf).
const dhcpClientScript = `#!/bin/sh
case "$1" in
deconfig)
	ip -4 addr flush dev "$interface"
	;;
bound|renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/$subnet" dev "$interface"
	[ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
	[ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
	env | grep -E '^(ip|subnet|router|dns|domain|hostname|mtu|lease|serverid)=' > "$VXDP_LEASE_FILE"
	;;
esac
exit 0
`

// Leased reports whether port p gets its address from DHCP (Config.DHCP:
// every VM; the DHCP port keeps its static address).
func (c Config) Leased(p Port) bool { return c.DHCP && p.ID != DHCP.ID }

// leaseAll runs the DHCP client of every VM that gets its address from
// DHCP, once the agents have applied their state; the VMs lease at once,
// as VMs booting together would.
func (l *Lab) leaseAll(ctx context.Context) error {
	var leased []Port
	for _, p := range l.Ports() {
		if _, guest := l.GuestPort(); l.Leased(p) && !(guest && p.Name == l.Guest) {
			leased = append(leased, p)
		}
	}
	errs := make([]error, len(leased))
	var wg sync.WaitGroup
	for i, p := range leased {
		wg.Go(func() { _, errs[i] = l.RunDHCPClient(ctx, p) })
	}
	wg.Wait()
	for i, p := range leased {
		if errs[i] == nil {
			fmt.Fprintf(l.log, "%s got %s by DHCP at its port\n", p.Name, p.IP)
		}
	}
	return errors.Join(errs...)
}

// LeaseFile is where a VM's DHCP client wrote its last lease.
func (c Config) LeaseFile(p Port) string { return filepath.Join(c.Dir, "dhcp-"+p.Name+".lease") }

// RunDHCPClient runs a real DHCP client (busybox udhcpc) in p's namespace
// until it holds a lease, as a VM booting would, and checks it got the
// port's address. It returns the client's output.
func (l *Lab) RunDHCPClient(ctx context.Context, p Port) (string, error) {
	if err := InstallPackages(map[string]string{"busybox": "busybox"}, l.log, "dhcp client"); err != nil {
		return "", err
	}
	// Written aside and renamed: clients running at once never run a
	// half-written script.
	script := filepath.Join(l.Dir, "udhcpc.script")
	tmp := script + "." + p.Name + ".tmp"
	l.recordPaths(script, tmp, l.LeaseFile(p))
	if err := l.writeManifest(); err != nil {
		return "", err
	}
	err := os.WriteFile(tmp, []byte(dhcpClientScript), 0o755)
	if err == nil {
		err = os.Rename(tmp, script)
	}
	if err != nil {
		return "", fmt.Errorf("dhcp client script: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.PortNS(p), "busybox", "udhcpc",
		"-i", VMDev, "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", script, "-x", "hostname:"+p.Name)
	cmd.Env = append(os.Environ(), "VXDP_LEASE_FILE="+l.LeaseFile(p))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("udhcpc in %s: %w\n%s", p.Name, err, out)
	}
	var got []netip.Prefix
	err = Do(l.PortNS(p), func() error {
		link, err := netlink.LinkByName(VMDev)
		if err != nil {
			return err
		}
		addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
		for _, a := range addrs {
			ip, _ := netip.AddrFromSlice(a.IP.To4())
			bits, _ := a.Mask.Size()
			got = append(got, netip.PrefixFrom(ip, bits))
		}
		return err
	})
	if err != nil {
		return string(out), err
	}
	want := netip.PrefixFrom(p.IP, labSubnet.Bits())
	if len(got) != 1 || got[0] != want {
		return string(out), fmt.Errorf("%s has %v after DHCP, want %s", p.Name, got, want)
	}
	return string(out), nil
}

// Lease reads what p's DHCP client last applied (option name -> value).
func (l *Lab) Lease(p Port) (map[string]string, error) {
	b, err := os.ReadFile(l.LeaseFile(p))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			out[k] = v
		}
	}
	return out, nil
}
