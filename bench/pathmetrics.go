package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/vxdp/vxdp/lab"
)

// What each path suite measures, and how one run of a metric is taken.

// pathMetric is one kind of measurement.
type pathMetric struct {
	id, label string
	streams   int  // TCP: parallel iperf3 streams
	reverse   bool // TCP: vm1 sends to vm2
	udp       bool // 64-byte frames from the generator
	rr, crr   bool // request/response, on one or a new connection each
}

var (
	metricTCP1    = pathMetric{id: "tcp1", label: "TCP, 1 stream", streams: 1}
	metricTCP4    = pathMetric{id: "tcp4", label: "TCP, 4 streams", streams: 4}
	metricTCP1Rev = pathMetric{id: "tcp1-rev", label: "TCP, 1 stream, vm1 -> vm2", streams: 1, reverse: true}
	metricUDP     = pathMetric{id: "udp64", label: "UDP, 64-byte frames", udp: true}
	metricRR      = pathMetric{id: "rr", label: "TCP request/response", rr: true}
	metricCRR     = pathMetric{id: "crr", label: "TCP connect/request/response/close", crr: true}
)

func suiteMetrics(suite string) []pathMetric {
	switch suite {
	case SuiteGuest:
		return []pathMetric{metricTCP1, metricTCP4, metricTCP1Rev}
	case SuiteSG:
		return []pathMetric{metricUDP, metricTCP1, metricCRR}
	}
	return []pathMetric{metricTCP1, metricTCP4, metricUDP, metricRR}
}

// Fields of a sample, each a row of the report.
const (
	FieldValue = "value" // the metric's rate
	FieldCPU   = "cpu"   // CPU time per unit delivered
	FieldBPP   = "bpp"   // bytes per packet into the receiving VM
	FieldP50   = "p50"   // latency
	FieldP99   = "p99"
)

// Sample is one run of one metric in one mode.
type Sample struct {
	Group  string `json:"group,omitempty"`
	Mode   string `json:"mode"`
	Metric string `json:"metric"`
	Run    int    `json:"run"`
	// Tries is how many times the run was measured: a noisy measurement
	// is taken again, and the quietest counts.
	Tries  int                `json:"tries"`
	Values map[string]float64 `json:"values"`
	CPU    CPUUse             `json:"cpu"`
	// Offered is what the UDP generator sent (frames/s): far above what
	// arrived, it shows the path, not the generator, set the rate.
	Offered     float64 `json:"offered_pps,omitempty"`
	Retransmits int     `json:"tcp_retransmits,omitempty"`
	// Failed counts transactions that failed (crr: refused or reset).
	Failed int `json:"failed_transactions,omitempty"`
	// BPFRedirects is what vxdp's programs forwarded during the run, on
	// the sending and receiving node: the proof of which path carried it.
	BPFRedirects uint64 `json:"bpf_redirects"`
	// Programs is what each of vxdp's programs on the path did (with
	// --bpf-stats, in modes with vxdp's agents).
	Programs []ProgramStat `json:"programs,omitempty"`
	// Latencies are the transactions' times (µs), sorted; kept out of
	// the JSON, which carries the distribution per mode instead.
	Latencies []float64 `json:"-"`
}

// window is the counters at the start of a measurement.
type window struct {
	cpu        cpuSnapshot
	dev        devCounters
	bpf        uint64
	received   uint64
	progs, end progCounters // with --bpf-stats
}

type devCounters struct{ bytes, packets uint64 }

// begin reads what a measurement needs at its start; rx is the VM that
// receives.
func (r *pathRun) begin(s *pathSetup, rx lab.Port) (window, error) {
	var w window
	var err error
	if w.dev, err = hostTX(s.lab, rx); err != nil {
		return w, err
	}
	w.bpf = bpfRedirects(s)
	if r.o.BPFStats && s.lab.Mode == "" {
		if w.progs, err = readProgCounters(s.lab); err != nil {
			return w, err
		}
	}
	w.cpu, err = takeCPU()
	return w, err
}

// end closes the window: the CPU time and BPF redirects of smp, what the
// receiving VM's host device sent it.
func (r *pathRun) end(s *pathSetup, rx lab.Port, w *window, smp *Sample) (devCounters, error) {
	b, err := takeCPU()
	if err != nil {
		return devCounters{}, err
	}
	if w.progs != nil {
		if w.end, err = readProgCounters(s.lab); err != nil {
			return devCounters{}, err
		}
	}
	dev, err := hostTX(s.lab, rx)
	if err != nil {
		return devCounters{}, err
	}
	exclude := map[int]bool{}
	for _, o := range r.setups {
		if o != s {
			for _, pid := range o.lab.PIDs() {
				exclude[pid] = true
			}
		}
	}
	self := os.Getpid()
	smp.CPU = cpuBetween(w.cpu, b, func(pid int, _ procTimes, all map[int]procTimes) bool {
		return !exclude[pid] && descendantOf(pid, self, all)
	}, r.o.NoiseLimit)
	smp.BPFRedirects = bpfRedirects(s) - w.bpf
	if s.def.bpf && smp.BPFRedirects == 0 {
		return dev, fmt.Errorf("%s: no packet was redirected by vxdp's programs: the run did not measure the BPF path", s.mode)
	}
	if !s.def.bpf && smp.BPFRedirects != 0 {
		return dev, fmt.Errorf("%s: vxdp's programs redirected %d packets in a mode without them", s.mode, smp.BPFRedirects)
	}
	return devCounters{bytes: dev.bytes - w.dev.bytes, packets: dev.packets - w.dev.packets}, nil
}

// measure takes one sample of metric m in setup s.
func (r *pathRun) measure(ctx context.Context, s *pathSetup, m pathMetric) (Sample, error) {
	smp := Sample{Mode: s.mode, Metric: m.id, Values: map[string]float64{}}
	switch {
	case m.streams > 0:
		// The iperf3 server takes a moment to finish a test before it
		// accepts the next (seconds, in an emulated guest): retry.
		var err error
		for attempt := 0; attempt < 5; attempt++ {
			if err = r.measureTCP(ctx, s, m, &smp); !errors.Is(err, errIperfBusy) {
				break
			}
			time.Sleep(time.Second)
		}
		return smp, err
	case m.udp:
		return smp, r.measureUDP(s, &smp)
	default:
		// A window in which no transaction completed (new connections
		// stalled on a reused port's TIME_WAIT, on either path) is
		// measured again rather than ending the suite.
		var err error
		for attempt := 0; attempt < 3; attempt++ {
			if err = r.measureRR(s, m, &smp); !errors.Is(err, errNoTransaction) {
				break
			}
			r.o.Progress.Logf("%s: %v: measuring again", m.label, err)
		}
		return smp, err
	}
}

// errNoTransaction is a request/response window in which nothing completed.
var errNoTransaction = errors.New("no transaction completed in the window")

// measureTCP runs iperf3 for Omit + the window (whole seconds); the CPU
// and device counters cover the seconds iperf3 counts.
func (r *pathRun) measureTCP(ctx context.Context, s *pathSetup, m pathMetric, smp *Sample) error {
	secs := max(1, int((r.o.Window+time.Second-1)/time.Second))
	rx := lab.VM1
	if m.reverse {
		rx = lab.VM2
	}
	type result struct {
		res iperfResult
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		res, err := runIperf(ctx, s.vmNS(lab.VM2), lab.VM1.IP, m.streams, r.o.Omit, secs, m.reverse)
		done <- result{res, err}
	}()
	// iperf3 connects within a few ms; its counted seconds start after Omit.
	time.Sleep(time.Until(start.Add(time.Duration(r.o.Omit)*time.Second + 50*time.Millisecond)))
	w, err := r.begin(s, rx)
	if err != nil {
		return err
	}
	time.Sleep(time.Until(start.Add(time.Duration(r.o.Omit+secs)*time.Second - 50*time.Millisecond)))
	dev, err := r.end(s, rx, &w, smp)
	res := <-done
	if res.err != nil {
		return res.err
	}
	if err != nil {
		return err
	}
	if dev.packets == 0 {
		return fmt.Errorf("no packet into %s counted on its host device", rx.Name)
	}
	smp.Values[FieldValue] = res.res.BitsPerSecond / 1e9
	smp.Values[FieldCPU] = smp.CPU.Path / (float64(dev.bytes) / 1e9)
	smp.Values[FieldBPP] = float64(dev.bytes) / float64(dev.packets)
	smp.Retransmits = res.res.Retransmits
	smp.Programs = programStats(w.progs, w.end, float64(dev.packets))
	return nil
}

// measureUDP floods 64-byte frames from vm2's NIC and counts what vm1's
// UDP layer received.
func (r *pathRun) measureUDP(s *pathSetup, smp *Sample) error {
	sink, err := openUDPSink(s.vmNS(lab.VM1), lab.VM1.IP)
	if err != nil {
		return err
	}
	defer sink.Close()
	frame := lab.UDPFrame(lab.VM2.MAC, lab.VM1.MAC, netip.AddrPortFrom(lab.VM2.IP, 40000), netip.AddrPortFrom(lab.VM1.IP, udpSinkPort),
		make([]byte, smallFrameLen-14-20-8))
	gen, err := startUDPGenerator(s.vmNS(lab.VM2), lab.VMDev, frame)
	if err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			gen.Stop()
		}
	}()
	time.Sleep(min(r.o.Window/2, 500*time.Millisecond)) // queues fill, flows are tracked
	w, err := r.begin(s, lab.VM1)
	if err != nil {
		return err
	}
	sentBefore := gen.sent.Load()
	if w.received, err = sink.Delivered(); err != nil {
		return err
	}
	time.Sleep(r.o.Window)
	received, err := sink.Delivered()
	if err != nil {
		return err
	}
	sent := gen.sent.Load() - sentBefore
	if _, err := r.end(s, lab.VM1, &w, smp); err != nil {
		return err
	}
	stopped = true
	if _, err := gen.Stop(); err != nil {
		return err
	}
	n := received - w.received
	if n == 0 {
		return fmt.Errorf("no 64-byte datagram reached vm1 (generator sent %d)", sent)
	}
	smp.Values[FieldValue] = float64(n) / smp.CPU.Seconds / 1e3
	smp.Values[FieldCPU] = smp.CPU.Path / float64(n) * 1e9
	smp.Offered = float64(sent) / smp.CPU.Seconds
	smp.Programs = programStats(w.progs, w.end, float64(n))
	return nil
}

// measureRR runs request/response transactions for the window (after a
// short warm-up that is not counted).
func (r *pathRun) measureRR(s *pathSetup, m pathMetric, smp *Sample) error {
	warm := min(r.o.Window/2, 500*time.Millisecond)
	type result struct {
		txs []transaction
		err error
	}
	done := make(chan result, 1)
	go func() {
		txs, err := runRR(s.vmNS(lab.VM2), s.vmNS(lab.VM1), lab.VM1.IP, m.crr, warm+r.o.Window+100*time.Millisecond)
		done <- result{txs, err}
	}()
	time.Sleep(warm)
	w, err := r.begin(s, lab.VM1)
	if err != nil {
		return err
	}
	time.Sleep(r.o.Window)
	_, err = r.end(s, lab.VM1, &w, smp)
	res := <-done
	if res.err != nil {
		return res.err
	}
	if err != nil {
		return err
	}
	lat, failed := within(res.txs, w.cpu.at, w.cpu.at.Add(time.Duration(smp.CPU.Seconds*float64(time.Second))))
	smp.Failed = failed
	if len(lat) == 0 {
		return errNoTransaction
	}
	slices.Sort(lat)
	smp.Values[FieldValue] = float64(len(lat)) / smp.CPU.Seconds
	smp.Values[FieldCPU] = smp.CPU.Path / float64(len(lat)) * 1e6
	smp.Values[FieldP50] = float64(quantile(lat, 0.50)) / 1e3
	smp.Values[FieldP99] = float64(quantile(lat, 0.99)) / 1e3
	smp.Programs = programStats(w.progs, w.end, float64(len(lat)))
	smp.Latencies = make([]float64, len(lat))
	for i, d := range lat {
		smp.Latencies[i] = float64(d) / 1e3
	}
	return nil
}

// hostTX is what the host side of p's NIC transmitted to it so far.
func hostTX(l *lab.Lab, p lab.Port) (devCounters, error) {
	ns, dev := l.HostDev(p)
	link, err := lab.LinkInfo(ns, dev)
	if err != nil {
		return devCounters{}, err
	}
	st := link.Attrs().Statistics
	if st == nil {
		return devCounters{}, fmt.Errorf("%s in %s: no counters", dev, ns)
	}
	return devCounters{bytes: st.TxBytes, packets: st.TxPackets}, nil
}

// bpfRedirects sums what vxdp's programs redirected on the sending and
// receiving nodes (encap, decap, local); zero without agents.
func bpfRedirects(s *pathSetup) uint64 {
	if s.lab.Mode != "" {
		return 0
	}
	var n uint64
	for _, node := range []string{lab.VM2.Node, lab.VM1.Node} {
		cs, err := s.lab.Counters(node)
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
