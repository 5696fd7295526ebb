package lab

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/state"
)

const (
	underlayBridge = "br0"
	// mgmtBridge joins the nodes' management NICs (eth0 in the seed).
	mgmtBridge = "mgmt"
	// MgmtDev is every node's management NIC.
	MgmtDev = "eth0"
	// VTEPDev is the tunnel NIC of every node, as in the seed (eth2).
	VTEPDev = "eth2"
	// VMDev is the NIC inside every VM/DHCP namespace.
	VMDev = "eth0"
)

// buildTopology makes the links of c in its namespaces (Lab.Build creates
// them). It is not atomic: on error the caller tears down what it made.
func buildTopology(c Config) error {
	// The hypervisors run with a distribution's defaults, so the lab does
	// not hide what a real host would let through (IPv6 on, loose reverse
	// path filtering as systemd sets it).
	for _, n := range Nodes {
		if err := Do(c.NS(n), func() error { return HostDefaults(DefaultRPFilter) }); err != nil {
			return err
		}
	}
	if err := Do(c.NS("underlay"), func() error {
		for _, name := range []string{underlayBridge, mgmtBridge} {
			br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: UnderlayMTU}}
			if err := netlink.LinkAdd(br); err != nil {
				return fmt.Errorf("add bridge %s: %w", name, err)
			}
			if err := setUp(name); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	for _, n := range Nodes {
		if err := plug(c, n, "m-"+n, mgmtBridge, MgmtDev, mgmtIPs[n], false); err != nil {
			return err
		}
	}
	hosts := map[string]netip.Addr{}
	for _, n := range Nodes {
		hosts[n] = nodeIPs[n]
	}
	if c.Rogue {
		hosts["rogue"] = RogueIP
	}
	for name, ip := range hosts {
		if err := addUnderlayHost(c, name, ip); err != nil {
			return err
		}
	}
	if c.IPv6Underlay {
		for _, n := range Nodes {
			if err := Do(c.NS(n), func() error { return addAddr(VTEPDev, netip.PrefixFrom(c.VTEP(n), 64)) }); err != nil {
				return err
			}
		}
	}
	// The rogue host also sits on the management network, to send VXLAN
	// to a node's other address, past the uplink's XDP program.
	if c.Rogue {
		if err := plug(c, "rogue", "m-rogue", mgmtBridge, MgmtDev, RogueMgmtIP, false); err != nil {
			return err
		}
	}
	if c.Provider {
		if err := buildProvider(c); err != nil {
			return err
		}
	}
	for _, p := range c.Ports() {
		if p.Name == c.Guest {
			continue // qemu makes its tap
		}
		if err := addModePort(c, p); err != nil {
			return err
		}
	}
	return nil
}

// RogueMgmtIP is the rogue host's address on the management network.
var RogueMgmtIP = netip.MustParseAddr("10.30.1.9")

// DefaultRPFilter is the reverse path filtering a distribution sets
// (systemd's 50-default.conf: loose).
const DefaultRPFilter = 2

// HostDefaults gives the calling thread's namespace a distribution's
// defaults: IPv6 on and rp_filter at mode (0 off, 1 strict, 2 loose) on
// every interface, present and future.
func HostDefaults(rpFilter int) error {
	for _, k := range []string{"net/ipv6/conf/all/disable_ipv6", "net/ipv6/conf/default/disable_ipv6"} {
		if err := writeSysctl(k, "0"); err != nil {
			return err
		}
	}
	ifaces, err := os.ReadDir("/proc/sys/net/ipv4/conf")
	if err != nil {
		return err
	}
	for _, i := range ifaces {
		if err := writeSysctl("net/ipv4/conf/"+i.Name()+"/rp_filter", strconv.Itoa(rpFilter)); err != nil {
			return err
		}
	}
	return nil
}

// addUnderlayHost plugs host's eth2 into the underlay bridge and gives it ip.
func addUnderlayHost(c Config, host string, ip netip.Addr) error {
	// The bridge side is named after the host; ≤ 15 characters.
	return plug(c, host, host, underlayBridge, VTEPDev, ip, true)
}

// plug connects dev (with ip/24) in host's namespace to bridge in the
// underlay namespace through a veth whose bridge side is named port. A
// wire port resolves checksum offloads like a physical link (prepareWire).
func plug(c Config, host, port, bridge, dev string, ip netip.Addr, wire bool) error {
	hostNS, err := netns.GetFromName(c.NS(host))
	if err != nil {
		return fmt.Errorf("netns %s: %w", c.NS(host), err)
	}
	defer hostNS.Close()
	if err := Do(c.NS("underlay"), func() error {
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: port, MTU: UnderlayMTU},
			PeerName:      dev,
			PeerMTU:       UnderlayMTU,
			PeerNamespace: netlink.NsFd(int(hostNS)),
		}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth %s/%s: %w", port, dev, err)
		}
		l, err := netlink.LinkByName(port)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetMasterByIndex(l, bridgeIndex(bridge)); err != nil {
			return fmt.Errorf("enslave %s to %s: %w", port, bridge, err)
		}
		if wire {
			if err := prepareWire(port); err != nil {
				return err
			}
		}
		return setUp(port)
	}); err != nil {
		return err
	}
	return Do(c.NS(host), func() error {
		if ip.IsValid() {
			if err := addAddr(dev, netip.PrefixFrom(ip, 24)); err != nil {
				return err
			}
		}
		return setUp(dev)
	})
}

func bridgeIndex(name string) int {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return 0
	}
	return l.Attrs().Index
}

// addPort makes the port's namespace NIC and its tap in the node: the tap
// is created and set up; enslaving it is the agent's job.
func addPort(c Config, p Port) error {
	portNS, err := netns.GetFromName(c.PortNS(p))
	if err != nil {
		return fmt.Errorf("netns %s: %w", c.PortNS(p), err)
	}
	defer portNS.Close()
	if err := Do(c.NS(p.Node), func() error {
		veth := &netlink.Veth{
			LinkAttrs:        netlink.LinkAttrs{Name: p.Tap(), MTU: c.portMTU(p), HardwareAddr: hw(p.TapMAC())},
			PeerName:         VMDev,
			PeerMTU:          uint32(c.portMTU(p)),
			PeerHardwareAddr: hw(p.MAC),
			PeerNamespace:    netlink.NsFd(int(portNS)),
		}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add tap %s: %w", p.Tap(), err)
		}
		return setUp(p.Tap())
	}); err != nil {
		return err
	}
	return Do(c.PortNS(p), func() error {
		if !c.Leased(p) {
			if err := addAddr(VMDev, netip.PrefixFrom(p.IP, 24)); err != nil {
				return err
			}
		}
		if c.VIP && p.ID == VM1.ID {
			if err := addAddr(VMDev, netip.PrefixFrom(VIP, 24)); err != nil {
				return err
			}
		}
		// GRO only enables XDP redirects into the NIC once it is up.
		if err := setUp(VMDev); err != nil {
			return err
		}
		return prepareVMNIC(VMDev)
	})
}

func setUp(dev string) error {
	l, err := netlink.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("link %s: %w", dev, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", dev, err)
	}
	return nil
}

func addAddr(dev string, p netip.Prefix) error {
	l, err := netlink.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("link %s: %w", dev, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD // usable at once, as the lab's addresses are unique
	}
	if err := netlink.AddrAdd(l, a); err != nil {
		return fmt.Errorf("add %s to %s: %w", p, dev, err)
	}
	return nil
}

func hw(m state.MAC) net.HardwareAddr { return net.HardwareAddr(m[:]) }

// MovePort moves port p's NIC to node, as a live migration moves a VM: the
// tap on its old node goes away and one with the same name appears on the
// new node; the VM keeps its MAC and IPs. The lab's own records of where
// the port lives are not changed (they describe the lab as built).
func (l *Lab) MovePort(p Port, node string) (Port, error) {
	if err := Do(l.PortNS(p), func() error {
		nic, err := netlink.LinkByName(VMDev)
		if err != nil {
			return err
		}
		return netlink.LinkDel(nic) // takes the tap, its peer, with it
	}); err != nil {
		return p, fmt.Errorf("unplug %s: %w", p.Name, err)
	}
	p.Node = node
	return p, addPort(l.Config, p)
}
