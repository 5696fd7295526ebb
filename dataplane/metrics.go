package dataplane

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vxdp/vxdp/maps"
	"github.com/vxdp/vxdp/state"
)

// Metrics exports the BPF counters and reconcile outcomes to Prometheus.
type Metrics struct {
	applies  *prometheus.CounterVec
	ops      *prometheus.CounterVec
	duration prometheus.Histogram
	pending  prometheus.Gauge
	revision prometheus.Gauge
}

// NewMetrics registers the dataplane's metrics on reg.
func NewMetrics(reg prometheus.Registerer, d *Dataplane) (*Metrics, error) {
	m := &Metrics{
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vxdp_reconcile_total", Help: "Applies of a desired state, by outcome (ok, error).",
		}, []string{"outcome"}),
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vxdp_reconcile_ops_total", Help: "Changes made by applies, by object (e.g. bpf/fdb, kernel/fdb) and action.",
		}, []string{"object", "action"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "vxdp_reconcile_duration_seconds", Help: "Time to apply a desired state.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vxdp_pending_ports", Help: "Local ports whose tap does not exist yet.",
		}),
		revision: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vxdp_applied_revision", Help: "Control-plane revision of the last applied state.",
		}),
	}
	cs := []prometheus.Collector{m.applies, m.ops, m.duration, m.pending, m.revision}
	if d.set != nil {
		cs = append(cs, &statsCollector{set: d.set})
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// ObserveApply records one apply.
func (m *Metrics) ObserveApply(d *state.Desired, res state.Result, err error, took time.Duration) {
	m.duration.Observe(took.Seconds())
	for _, op := range res.Ops {
		m.ops.WithLabelValues(op.Object, op.Action).Inc()
	}
	m.pending.Set(float64(len(res.Pending)))
	if err != nil {
		m.applies.WithLabelValues("error").Inc()
		return
	}
	m.applies.WithLabelValues("ok").Inc()
	m.revision.Set(float64(d.Revision))
}

var (
	packetsDesc = prometheus.NewDesc("vxdp_packets_total",
		"Packets seen by a vxdp BPF program, by verdict reason (docs/reasons.md).",
		[]string{"program", "reason", "verdict"}, nil)
	bytesDesc = prometheus.NewDesc("vxdp_bytes_total",
		"Bytes seen by a vxdp BPF program, by verdict reason.",
		[]string{"program", "reason", "verdict"}, nil)
	entriesDesc = prometheus.NewDesc("vxdp_map_entries",
		"Entries in a vxdp BPF map.", []string{"map"}, nil)
)

// statsCollector reads the per-CPU stats map at scrape time.
type statsCollector struct{ set *maps.Set }

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- packetsDesc
	ch <- bytesDesc
	ch <- entriesDesc
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	counters, err := maps.ReadStats(c.set.Map(maps.Stats), true)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(packetsDesc, err)
		return
	}
	for _, s := range counters {
		ch <- prometheus.MustNewConstMetric(packetsDesc, prometheus.CounterValue, float64(s.Packets), s.Prog, s.Reason, s.Verdict)
		ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.CounterValue, float64(s.Bytes), s.Prog, s.Reason, s.Verdict)
	}
	for _, name := range []string{maps.Networks, maps.Ports, maps.PortAddrs, maps.FDB, maps.VTEPs, maps.ARP, maps.TxPorts} {
		t, err := c.set.Read(name, maps.DumpOptions{})
		if err != nil {
			ch <- prometheus.NewInvalidMetric(entriesDesc, err)
			continue
		}
		ch <- prometheus.MustNewConstMetric(entriesDesc, prometheus.GaugeValue, float64(len(t.Rows)), name)
	}
}
