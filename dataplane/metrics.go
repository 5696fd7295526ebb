package dataplane

import (
	"slices"
	"sync"
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
	// uncompiled reads Dataplane.uncompiled at scrape time.
	uncompiled prometheus.GaugeFunc
	expired    *prometheus.CounterVec
	evicted    *prometheus.CounterVec
	stats      *statsCollector
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
		uncompiled: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vxdp_sg_uncompiled_ports",
			Help: "Local ports whose security groups the last apply could not compile (vxdp status names them): they pass only always-allowed traffic.",
		}, func() float64 {
			d.mu.Lock()
			defer d.mu.Unlock()
			return float64(d.uncompiled)
		}),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vxdp_ct_expired_total", Help: "Tracked flows removed by the sweeper because they expired.",
		}, []string{"table"}),
		evicted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vxdp_ct_evicted_total", Help: "Tracked flows evicted by the sweeper because their table was over 90 % full (closest to expiring first).",
		}, []string{"table"}),
		stats: &statsCollector{set: d.set, ctEntries: map[string]int{}},
	}
	for _, t := range []string{maps.CTTCP, maps.CTOther} {
		m.expired.WithLabelValues(t)
		m.evicted.WithLabelValues(t)
	}
	// Every object an apply changes, so dashboards show 0, not "no data".
	for _, obj := range reconciledObjects() {
		for _, action := range []string{"add", "update", "remove"} {
			m.ops.WithLabelValues(obj, action)
		}
	}
	cs := []prometheus.Collector{m.applies, m.ops, m.duration, m.pending, m.revision, m.uncompiled, m.expired, m.evicted, m.stats}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// reconciledObjects are the objects applies report changes of: the maps
// filled from the desired state, the programs' attachments and the
// kernel objects.
func reconciledObjects() []string {
	var out []string
	for _, d := range maps.Descs() {
		if d.Provenance {
			out = append(out, "bpf/"+d.Name)
		}
	}
	out = append(out, "bpf/"+xdpKind)
	for _, h := range tcHooks {
		out = append(out, "bpf/"+h.kind)
	}
	return append(out, "kernel/bridge", "kernel/vxlan", "kernel/vlan", "kernel/veth", "kernel/slave", "kernel/fdb", "kernel/neigh")
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

// ObserveSweep records a conntrack sweep.
func (m *Metrics) ObserveSweep(sweeps []CTSweep) {
	m.stats.mu.Lock()
	defer m.stats.mu.Unlock()
	for _, s := range sweeps {
		m.expired.WithLabelValues(s.Table).Add(float64(s.Expired))
		m.evicted.WithLabelValues(s.Table).Add(float64(s.Evicted))
		m.stats.ctEntries[s.Table] = s.Entries
	}
}

var (
	packetsDesc = prometheus.NewDesc("vxdp_packets_total",
		"Packets seen by a vxdp BPF program, by verdict reason (docs/reasons.md).",
		[]string{"program", "reason", "verdict"}, nil)
	bytesDesc = prometheus.NewDesc("vxdp_bytes_total",
		"Bytes seen by a vxdp BPF program, by verdict reason.",
		[]string{"program", "reason", "verdict"}, nil)
	entriesDesc = prometheus.NewDesc("vxdp_map_entries",
		"Entries in a vxdp BPF map (tracked-flow tables: as of the last sweep).", []string{"map"}, nil)
	capacityDesc = prometheus.NewDesc("vxdp_map_capacity",
		"Entries a vxdp BPF map can hold.", []string{"map"}, nil)
	sgDesc = prometheus.NewDesc("vxdp_sg_events_total",
		"Security-group decisions by direction and kind: established, new, related, always, stateless, denied, rechecked, cut, ct_full.",
		[]string{"direction", "event"}, nil)
)

// statsCollector reads the per-CPU counters and map fill at scrape time.
type statsCollector struct {
	set       *maps.Set
	mu        sync.Mutex
	ctEntries map[string]int // from the last sweep: too large to count per scrape
}

// filledMaps are the maps with a fill worth watching (not the arrays).
var filledMaps = []string{maps.Networks, maps.Ports, maps.PortAddrs, maps.DHCP, maps.FDB, maps.VTEPs, maps.ARP, maps.TxPorts,
	maps.PolicyRemote, maps.PolicyL4, maps.CTTCP, maps.CTOther}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- packetsDesc
	ch <- bytesDesc
	ch <- entriesDesc
	ch <- capacityDesc
	ch <- sgDesc
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
	for _, name := range filledMaps {
		m := c.set.Map(name)
		ch <- prometheus.MustNewConstMetric(capacityDesc, prometheus.GaugeValue, float64(m.MaxEntries()), name)
		n := 0
		if slices.Contains([]string{maps.CTTCP, maps.CTOther}, name) {
			c.mu.Lock()
			n = c.ctEntries[name]
			c.mu.Unlock()
		} else {
			t, err := c.set.Read(name, maps.DumpOptions{})
			if err != nil {
				ch <- prometheus.NewInvalidMetric(entriesDesc, err)
				continue
			}
			n = len(t.Rows)
		}
		ch <- prometheus.MustNewConstMetric(entriesDesc, prometheus.GaugeValue, float64(n), name)
	}
	t, err := c.set.Read(maps.SGStats, maps.DumpOptions{})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(sgDesc, err)
		return
	}
	for _, r := range t.Rows {
		ch <- prometheus.MustNewConstMetric(sgDesc, prometheus.CounterValue, float64(r.Values[2].(uint64)), r.Values[0].(string), r.Values[1].(string))
	}
}
