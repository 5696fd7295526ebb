package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/lab"
	"github.com/vxdp/vxdp/maps"
)

// PathOptions size the end-to-end comparison.
type PathOptions struct {
	Binary    string        // the vxdp executable the lab's agents run
	BPFFS     string        // default /sys/fs/bpf
	TCPBytes  int64         // per TCP transfer (default 256 MiB)
	Runs      int           // TCP transfers per dataplane; the median counts (default 3)
	UDPPeriod time.Duration // small-packet flood length (default 2s)
	Pings     int           // RTT samples (default 200)
	Log       io.Writer
}

// PathFigures are one dataplane's results for vm2 -> vm1 across the
// overlay of the seed lab (node3 -> node4).
type PathFigures struct {
	Dataplane  string        `json:"dataplane"`
	TCPGbps    float64       `json:"tcp_gbps"`
	UDPPPS     float64       `json:"udp_64b_pps"`
	RTTMedian  time.Duration `json:"rtt_median_ns"`
	BPFPackets uint64        `json:"bpf_redirected_packets"` // proof of which path carried it
}

// PathReport compares the BPF fast path with the kernel path (Linux bridge
// and vxlan device, what Neutron's linuxbridge agent runs) in one run.
type PathReport struct {
	Kernel    string      `json:"kernel"`
	CPUs      int         `json:"cpus"`
	BPF       PathFigures `json:"bpf"`
	KernelRef PathFigures `json:"kernel_path"`
}

// RunPath builds the seed lab twice in network namespaces, once with the
// BPF dataplane on every node and once with the kernel dataplane, and
// measures TCP throughput, small-packet rate and latency vm2 -> vm1 in
// each. Needs root.
func RunPath(ctx context.Context, o PathOptions) (PathReport, error) {
	if o.TCPBytes <= 0 {
		o.TCPBytes = 256 << 20
	}
	if o.Runs <= 0 {
		o.Runs = 3
	}
	if o.UDPPeriod <= 0 {
		o.UDPPeriod = 2 * time.Second
	}
	if o.Pings <= 0 {
		o.Pings = 200
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	r := PathReport{Kernel: kernelRelease(), CPUs: runtime.NumCPU()}
	var err error
	if r.BPF, err = measurePath(ctx, o, lab.DataplaneBPF); err != nil {
		return r, err
	}
	if r.KernelRef, err = measurePath(ctx, o, lab.DataplaneKernel); err != nil {
		return r, err
	}
	return r, nil
}

func measurePath(ctx context.Context, o PathOptions, dataplane string) (f PathFigures, err error) {
	f.Dataplane = dataplane
	dir, err := os.MkdirTemp("", "vxdp-bench-path-")
	if err != nil {
		return f, err
	}
	defer os.RemoveAll(dir)
	cfg := lab.Config{
		Prefix: fmt.Sprintf("vxb%d-", os.Getpid()), Dir: filepath.Join(dir, "lab"), Binary: o.Binary, BPFFS: o.BPFFS,
		Dataplane: map[string]string{"node1": dataplane, "node3": dataplane, "node4": dataplane},
	}
	l, err := lab.Up(ctx, cfg, o.Log)
	if err != nil {
		return f, fmt.Errorf("lab with the %s dataplane: %w", dataplane, err)
	}
	defer func() {
		if cerr := l.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	src, dst := l.PortNS(lab.VM2), l.PortNS(lab.VM1)
	before := redirected(l)

	ping, err := lab.Ping(src, lab.VM1.IP, o.Pings, time.Millisecond, time.Second)
	if err != nil || ping.Received == 0 {
		return f, fmt.Errorf("ping vm2 -> vm1 over %s: %d/%d replies: %v", dataplane, ping.Received, ping.Sent, err)
	}
	f.RTTMedian = median(ping.RTTs)

	// Correctness of TCP over both paths is the end-to-end tests' job
	// (payload hashed there); here the sender and sink stay out of the way.
	var gbps []float64
	for i := 0; i < o.Runs; i++ {
		g, err := tcpThroughput(src, dst, lab.VM1.IP, o.TCPBytes)
		if err != nil {
			return f, fmt.Errorf("tcp vm2 -> vm1 over %s: %w", dataplane, err)
		}
		gbps = append(gbps, g)
	}
	f.TCPGbps = median(gbps)

	if f.UDPPPS, err = udpFlood(src, dst, lab.VM1.IP, o.UDPPeriod); err != nil {
		return f, fmt.Errorf("udp flood over %s: %w", dataplane, err)
	}
	f.BPFPackets = redirected(l) - before
	fmt.Fprintf(o.Log, "%s: tcp %.2f Gbit/s, udp %.0f pps, rtt %v, bpf-redirected %d\n",
		dataplane, f.TCPGbps, f.UDPPPS, f.RTTMedian, f.BPFPackets)
	return f, nil
}

// redirected sums the packets node3 and node4 forwarded in BPF (encap,
// decap, local); zero on the kernel path.
func redirected(l *lab.Lab) uint64 {
	var n uint64
	for _, node := range []string{"node3", "node4"} {
		set, err := maps.OpenPinned(l.PinDir(node) + "/maps")
		if err != nil {
			continue
		}
		cs, err := maps.ReadStats(set.Map(maps.Stats), false)
		set.Close()
		if err != nil {
			continue
		}
		for _, c := range cs {
			if c.Verdict == "redirect" {
				n += c.Packets
			}
		}
	}
	return n
}

// tcpThroughput sends size bytes over one TCP connection from namespace
// src to a sink in dst and returns the rate in Gbit/s, timed at the sink.
func tcpThroughput(src, dst string, dstIP netip.Addr, size int64) (float64, error) {
	var ln net.Listener
	if err := lab.Do(dst, func() (err error) {
		ln, err = net.Listen("tcp4", net.JoinHostPort(dstIP.String(), "0"))
		return err
	}); err != nil {
		return 0, err
	}
	defer ln.Close()
	type result struct {
		n   int64
		d   time.Duration
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		start := time.Now()
		n, err := io.Copy(io.Discard, c)
		done <- result{n, time.Since(start), err}
	}()
	var conn net.Conn
	if err := lab.Do(src, func() (err error) {
		conn, err = net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second)
		return err
	}); err != nil {
		return 0, err
	}
	buf := make([]byte, 256<<10)
	for sent := int64(0); sent < size; sent += int64(len(buf)) {
		if _, err := conn.Write(buf); err != nil {
			conn.Close()
			return 0, err
		}
	}
	conn.Close()
	r := <-done
	if r.err != nil {
		return 0, r.err
	}
	if r.n < size {
		return 0, fmt.Errorf("sink got %d of %d bytes", r.n, size)
	}
	return float64(r.n) * 8 / r.d.Seconds() / 1e9, nil
}

// udpFlood sends 64-byte datagrams from namespace src to dstIP for period
// as fast as one sender can, and returns the rate received in dst.
func udpFlood(src, dst string, dstIP netip.Addr, period time.Duration) (float64, error) {
	var rx *net.UDPConn
	if err := lab.Do(dst, func() (err error) {
		rx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: dstIP.AsSlice()})
		return err
	}); err != nil {
		return 0, err
	}
	defer rx.Close()
	_ = rx.SetReadBuffer(8 << 20)
	var tx *net.UDPConn
	if err := lab.Do(src, func() (err error) {
		tx, err = net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
		return err
	}); err != nil {
		return 0, err
	}
	defer tx.Close()

	var received atomic.Int64
	var counting atomic.Bool
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, err := rx.Read(buf); err != nil {
				return
			}
			if counting.Load() {
				received.Add(1)
			}
		}
	}()
	payload := make([]byte, 64)
	warm := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(warm) {
		_, _ = tx.Write(payload)
	}
	counting.Store(true)
	start := time.Now()
	end := start.Add(period)
	for time.Now().Before(end) {
		if _, err := tx.Write(payload); err != nil && !isNoBufs(err) {
			return 0, err
		}
	}
	time.Sleep(100 * time.Millisecond) // let the last ones land
	counting.Store(false)
	return float64(received.Load()) / period.Seconds(), nil
}

func isNoBufs(err error) bool {
	var errno unix.Errno
	return errors.As(err, &errno) && (errno == unix.ENOBUFS || errno == unix.ECONNREFUSED)
}

func median[T int64 | float64 | time.Duration](v []T) T {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// WriteTable prints the comparison with BPF/kernel ratios.
func (r PathReport) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "vm2 -> vm1 across the seed lab's overlay (node3 -> node4), kernel %s, %d CPUs\n", r.Kernel, r.CPUs)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "METRIC\tBPF\tKERNEL PATH\tBPF/KERNEL")
	fmt.Fprintf(tw, "TCP throughput (Gbit/s)\t%.2f\t%.2f\t%.2f\n", r.BPF.TCPGbps, r.KernelRef.TCPGbps, r.BPF.TCPGbps/r.KernelRef.TCPGbps)
	fmt.Fprintf(tw, "UDP 64-byte rate (pkt/s)\t%.0f\t%.0f\t%.2f\n", r.BPF.UDPPPS, r.KernelRef.UDPPPS, r.BPF.UDPPPS/r.KernelRef.UDPPPS)
	fmt.Fprintf(tw, "ICMP RTT median\t%v\t%v\t%.2f\n", r.BPF.RTTMedian, r.KernelRef.RTTMedian,
		float64(r.BPF.RTTMedian)/float64(r.KernelRef.RTTMedian))
	fmt.Fprintf(tw, "packets redirected in BPF\t%d\t%d\t-\n", r.BPF.BPFPackets, r.KernelRef.BPFPackets)
	return tw.Flush()
}
