package bench

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vxdp/vxdp/bpf"
	"github.com/vxdp/vxdp/frames"
	"github.com/vxdp/vxdp/maps"
)

// Programs as the counters name them.
const (
	progPort    = "port"
	progUplink  = "uplink"
	progDeliver = "deliver"
)

// cases lists what RunBPF measures, each compared with the empty program
// of its hook; a security-group case per size in sgRules, established
// and new, after the same path without groups.
func (l *bpfLab) cases(sgRules []int) []bpfCase {
	const ack = frames.ACK | frames.PSH
	vm, local, remote := labVM, labLocalVM, labRemoteVM
	vmToLocal := frames.Segment(vm.mac, local.mac, vm.ip, local.ip, 40000, 80, ack, 64)
	vmToLocalSYN := frames.Segment(vm.mac, local.mac, vm.ip, local.ip, 40000, 80, frames.SYN, 0)
	vmToRemote := frames.Segment(vm.mac, remote.mac, vm.ip, remote.ip, 40000, 80, ack, 64)
	broadcast := frames.UDP4(vm.mac, frames.Broadcast, vm.ip, netip.MustParseAddr("172.16.100.255"), 40000, 5000)
	arpRequest := frames.ARPRequest(vm.mac, vm.ip, remote.ip).Bytes()
	fromVTEP := func(inner []byte) []byte {
		return frames.FromVTEP(labPeerMAC, labUplink, labVTEP, labLocalIP, labVNI, inner).Bytes()
	}
	// UDP: inner TCP goes to the kernel's GRO first (PASS_TCP_GRO).
	remoteToLocal := fromVTEP(frames.UDP4(remote.mac, local.mac, remote.ip, local.ip, 40000, 5201))
	remoteTCP := fromVTEP(frames.Segment(remote.mac, local.mac, remote.ip, local.ip, 40000, 80, ack, 64))
	remoteBUM := fromVTEP(frames.UDP4(remote.mac, frames.Broadcast, remote.ip, netip.MustParseAddr("172.16.100.255"), 40000, 5000))
	// Host traffic on the uplink that is UDP but not VXLAN: the longest
	// pass path before the VXLAN header.
	dns := frames.UDP4(labPeerMAC, labUplink, labVTEP, labLocalIP, 53, 41000)
	localToVM := frames.Segment(local.mac, vm.mac, local.ip, vm.ip, 40000, 80, ack, 64)
	localToVMSYN := frames.Segment(local.mac, vm.mac, local.ip, vm.ip, 40000, 80, frames.SYN, 0)

	port := func(id, name, reason string, packet []byte) bpfCase {
		return bpfCase{id: "port/" + id, hook: HookTC, program: progPort, name: "port: " + name, reason: reason, prog: l.port, packet: packet}
	}
	uplink := func(id, name, reason string, packet []byte) bpfCase {
		return bpfCase{id: "uplink/" + id, hook: HookXDP, program: progUplink, name: "uplink: " + name, reason: reason, prog: l.uplink, packet: packet}
	}
	deliver := func(id, name, reason string, packet []byte) bpfCase {
		return bpfCase{id: "deliver/" + id, hook: HookTC, program: progDeliver, name: "deliver: " + name, reason: reason, prog: l.deliver, packet: packet}
	}
	// withSG is c with a group of n rules on port p in dir, for a flow
	// that is established (est) or new.
	withSG := func(c bpfCase, n int, p labPort, dir uint8, allow labPort, est bool, packet []byte) bpfCase {
		c.rules, c.sgPort, c.sgDir, c.allow, c.packet = n, p.ifindex, dir, allow.ip, packet
		c.flow, c.sgEvent = "established", bpf.PortSgEventSG_EV_ESTABLISHED
		if !est {
			c.flow, c.sgEvent = "new", bpf.PortSgEventSG_EV_NEW
		}
		c.id += fmt.Sprintf("-sg%d-%s", n, c.flow)
		c.name += fmt.Sprintf(", SG %d rules, %s flow", n, c.flow)
		return c
	}

	switchLocal := port("local", "local switch", "REDIRECT_LOCAL", vmToLocal)
	// The monitor's cost next to the same path with its flag off.
	out := []bpfCase{switchLocal, monitored(switchLocal, false), monitored(switchLocal, true)}
	for _, n := range sgRules {
		for _, est := range []bool{true, false} {
			pkt := map[bool][]byte{true: vmToLocal, false: vmToLocalSYN}[est]
			out = append(out, withSG(switchLocal, n, vm, maps.SGEgress, local, est, pkt))
		}
	}
	nosec := port("local-nosec", "local switch, no port security", "REDIRECT_LOCAL", vmToLocal)
	nosec.insecure = true
	encap := port("encap", "VXLAN encap", "REDIRECT_REMOTE", vmToRemote)
	encap.rewrites = true
	arp := port("arp", "proxy ARP reply", "TX_ARP_REPLY", arpRequest)
	arp.rewrites = true
	out = append(out, nosec, encap, port("bum", "broadcast to the bridge", "PASS_BUM", broadcast), arp)

	decap := uplink("decap", "decap+redirect (UDP)", "REDIRECT_LOCAL", remoteToLocal)
	decap.rewrites = true
	out = append(out, decap, monitored(decap, true))
	for _, n := range sgRules {
		for _, est := range []bool{true, false} {
			out = append(out, withSG(decap, n, local, maps.SGIngress, remote, est, remoteToLocal))
		}
	}
	out = append(out,
		uplink("tcp-gro", "TCP passed to GRO", "PASS_TCP_GRO", remoteTCP),
		uplink("bum", "inner broadcast passed", "PASS_INNER_BUM", remoteBUM),
		uplink("pass-udp", "UDP not VXLAN passed", "PASS_NOT_VXLAN", dns))

	out = append(out, deliver("nosg", "port without groups", "PASS_NO_SG", localToVM))
	allowed := deliver("sg", "allowed", "PASS_SG_ALLOWED", localToVM)
	for _, n := range sgRules {
		for _, est := range []bool{true, false} {
			pkt := map[bool][]byte{true: localToVM, false: localToVMSYN}[est]
			out = append(out, withSG(allowed, n, vm, maps.SGIngress, local, est, pkt))
		}
	}
	return out
}

// monitored is c while `vxdp monitor` listens: for drops (c drops
// nothing: the cost of keeping the frame on entry) or, with trace, for
// every decision (an event per packet, which a reader drains meanwhile).
// c itself is the monitor's flag off: what every packet pays while
// nobody listens.
func monitored(c bpfCase, trace bool) bpfCase {
	c.monitor, c.trace = true, trace
	if trace {
		c.id += "-monitor-trace"
		c.name += ", vxdp monitor --trace"
	} else {
		c.id += "-monitor"
		c.name += ", vxdp monitor (drops)"
	}
	return c
}

// listen starts a monitor for a case that wants one, as `vxdp monitor`
// does, reading its events until stop, which turns the flag off again and
// fails if a trace saw no event (the case would not measure emission).
func (l *bpfLab) listen(c bpfCase) (stop func() error, err error) {
	if !c.monitor {
		return func() error { return nil }, nil
	}
	mon, err := maps.StartMonitor(l.maps, c.trace)
	if err != nil {
		return nil, fmt.Errorf("bench bpf: %s: %w", c.name, err)
	}
	events := make(chan int)
	go func() {
		n := 0
		for {
			if _, err := mon.Read(); err != nil {
				events <- n
				return
			}
			n++
		}
	}()
	return func() error {
		err := mon.Close()
		if n := <-events; c.trace && n == 0 {
			err = errors.Join(err, fmt.Errorf("bench bpf: %s: the monitor read no event", c.name))
		}
		return err
	}, nil
}
