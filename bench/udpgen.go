package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/lab"
)

// The 64-byte UDP load: a generator that saturates the path from the
// sending VM's NIC, and a receiver that counts what reached the VM.

// smallFrameLen is a 64-byte Ethernet frame without its FCS: Ethernet,
// IPv4 and UDP headers and 18 bytes of payload.
const smallFrameLen = 60

// udpSinkPort is where the small UDP frames go in the receiving VM.
const udpSinkPort = 9

// xdpMD is struct xdp_md, the context BPF_PROG_RUN takes for XDP.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// generatorBatch is the frames per BPF_PROG_RUN call: a call returns to
// check for the stop within a few milliseconds at any rate.
const generatorBatch = 1 << 14

// udpGenerator transmits one frame over and over out of a VM's NIC: an
// XDP program returning XDP_TX run by BPF_PROG_RUN with
// BPF_F_TEST_XDP_LIVE_FRAMES against the NIC, so the kernel sends each
// run's frame as if the VM had (through its veth to the host side, in
// batches of 64). One CPU makes frames far faster than the path carries
// them: what arrives is the path's rate.
type udpGenerator struct {
	prog *ebpf.Program
	stop atomic.Bool
	sent atomic.Uint64
	done chan error
}

// startUDPGenerator starts sending frame from dev in namespace ns.
func startUDPGenerator(ns, dev string, frame []byte) (*udpGenerator, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "vxdp_gen", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 3 /* XDP_TX */), asm.Return()},
	})
	if err != nil {
		return nil, fmt.Errorf("load generator program: %w", err)
	}
	g := &udpGenerator{prog: prog, done: make(chan error, 1)}
	ready := make(chan error, 1)
	go func() {
		err := lab.Do(ns, func() error {
			ifi, err := net.InterfaceByName(dev)
			if err != nil {
				ready <- err
				return nil
			}
			ready <- nil
			opts := &ebpf.RunOptions{Data: frame, Repeat: generatorBatch, Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES,
				Context: xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(ifi.Index)}}
			for !g.stop.Load() {
				if _, err := prog.Run(opts); err != nil {
					return fmt.Errorf("generator on %s: %w", dev, err)
				}
				g.sent.Add(generatorBatch)
			}
			return nil
		})
		g.done <- err
	}()
	if err := <-ready; err != nil {
		prog.Close()
		return nil, fmt.Errorf("generator on %s in %s: %w", dev, ns, err)
	}
	return g, nil
}

// Stop ends the generator; it returns the frames it sent.
func (g *udpGenerator) Stop() (uint64, error) {
	g.stop.Store(true)
	err := <-g.done
	g.prog.Close()
	return g.sent.Load(), err
}

// udpSink is a socket on the receiving VM's UDP port that nobody reads:
// every datagram that reaches it is counted by the VM's kernel, queued
// (InDatagrams) or, the small buffer full, dropped at the socket
// (RcvbufErrors). Both mean the path delivered it.
type udpSink struct {
	ns string
	fd int
}

func openUDPSink(ns string, ip netip.Addr) (*udpSink, error) {
	s := &udpSink{ns: ns, fd: -1}
	err := lab.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		s.fd = fd
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
		return unix.Bind(fd, &unix.SockaddrInet4{Port: udpSinkPort, Addr: ip.As4()})
	})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("udp sink in %s: %w", ns, err)
	}
	return s, nil
}

func (s *udpSink) Close() {
	if s.fd >= 0 {
		unix.Close(s.fd)
		s.fd = -1
	}
}

// Delivered is the datagrams the VM's UDP layer has received so far.
func (s *udpSink) Delivered() (uint64, error) {
	var n uint64
	err := lab.Do(s.ns, func() error {
		// thread-self: /proc/self/net is the namespace of the process's
		// main thread, not of this one.
		raw, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		c, err := snmpCounters(raw, "Udp:")
		if err != nil {
			return err
		}
		n = c["InDatagrams"] + c["RcvbufErrors"]
		return nil
	})
	return n, err
}

// snmpCounters parses one protocol's header and value lines of
// /proc/net/snmp.
func snmpCounters(raw []byte, proto string) (map[string]uint64, error) {
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, proto) {
			continue
		}
		f := strings.Fields(line)[1:]
		if names == nil {
			names = f
			continue
		}
		out := map[string]uint64{}
		for i, v := range f {
			if i < len(names) {
				out[names[i]], _ = strconv.ParseUint(v, 10, 64)
			}
		}
		return out, nil
	}
	return nil, errors.New("snmp: no " + proto + " counters")
}
