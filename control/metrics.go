package control

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// agentMetrics are the agent's Prometheus metrics. Every series a label
// combination can take exists from the start (at 0), so dashboards and
// rate() see "nothing happened" rather than "no data". The revision the
// dataplane applied is the dataplane's metric (vxdp_applied_revision).
type agentMetrics struct {
	rejected     *prometheus.CounterVec
	fetched      prometheus.Counter
	resyncs      *prometheus.CounterVec
	sent         prometheus.Counter
	watermark    prometheus.Gauge
	applyErrors  prometheus.Counter
	statusWrites *prometheus.CounterVec
	heartbeats   *prometheus.CounterVec
	networks     prometheus.Gauge
	records      prometheus.Gauge
	drift        prometheus.Counter
}

// MetricRejected is the name of the counter of rejected records.
const MetricRejected = "vxdp_control_records_rejected_total"

// brokerMetrics are the broker's Prometheus metrics.
type brokerMetrics struct {
	requests *prometheus.CounterVec
	refused  *prometheus.CounterVec
}

// MetricBrokerRefused is the name of the counter of refused agent requests.
const MetricBrokerRefused = "vxdp_broker_refused_total"

func newBrokerMetrics(reg prometheus.Registerer) (*brokerMetrics, error) {
	m := &brokerMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vxdp_broker_requests_total",
			Help: "Agent requests the broker answered, by operation and result (ok, refused, error).",
		}, []string{"op", "result"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricBrokerRefused,
			Help: "Agent requests the broker refused, by operation and reason (docs/control-plane.md).",
		}, []string{"op", "reason"}),
	}
	return m, register(reg, "broker", m.requests, m.refused)
}

// register registers collectors on reg (a private registry when nil).
func register(reg prometheus.Registerer, who string, cs ...prometheus.Collector) error {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return fmt.Errorf("register metrics: %w (one %s per registry)", err, who)
			}
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}

// MetricNATSConnected is the gauge of the agent's NATS connection.
const MetricNATSConnected = "vxdp_control_nats_connected"

// rejectSeries are the (kind, reason) pairs an agent can count: every
// decoding failure of the kinds it follows, conflicts found while building
// (networks: VNI; ports: MAC, IP, tap), and what has no kind.
func rejectSeries() [][2]string {
	var out [][2]string
	for _, k := range []KeyKind{KindNetwork, KindPort, KindStatus, KindAgent, KindBinding, KindSecGroup, KindRegistration, KindMember, KindAddressGroup} {
		for _, r := range []RejectReason{RejectParse, RejectSchema, RejectInvalid, RejectKey} {
			out = append(out, [2]string{k.String(), string(r)})
		}
	}
	for _, k := range []KeyKind{KindNetwork, KindPort} {
		out = append(out, [2]string{k.String(), string(RejectConflict)})
	}
	for _, r := range []RejectReason{RejectParse, RejectUnknown, RejectBadState} {
		out = append(out, [2]string{KindUnknown.String(), string(r)})
	}
	return out
}

func newAgentMetrics(reg prometheus.Registerer, nc *nats.Conn) (*agentMetrics, error) {
	m := &agentMetrics{
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRejected,
			Help: "KV records refused by the agent (not applied), by record kind and reason.",
		}, []string{"kind", "reason"}),
		fetched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vxdp_control_records_fetched_total",
			Help: "KV messages received by the agent (full loads and change replay).",
		}),
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vxdp_control_resyncs_total",
			Help: "Synchronisations with the bucket at start or after losing it: full (load everything) or delta (replay changes after the snapshot).",
		}, []string{"mode"}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vxdp_control_desired_sent_total",
			Help: "Desired states handed to the dataplane.",
		}),
		watermark: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vxdp_control_revision",
			Help: "KV revision up to which the agent has seen every change it follows.",
		}),
		applyErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vxdp_control_apply_errors_total",
			Help: "Applies the dataplane reported as failed.",
		}),
		statusWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vxdp_control_port_status_writes_total",
			Help: "Port status records written by the agent, by status and result.",
		}, []string{"status", "result"}),
		heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vxdp_control_heartbeats_total",
			Help: "Heartbeats written, by result.",
		}, []string{"result"}),
		networks: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vxdp_control_followed_networks",
			Help: "Networks the agent follows (it has a port bound on them).",
		}),
		records: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vxdp_control_view_records",
			Help: "Records in the agent's view of the bucket.",
		}),
		drift: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vxdp_control_incremental_drift_total",
			Help: "Times the state the agent kept up to date change by change differed from the state built whole (a bug; the whole state was sent).",
		}),
	}
	for _, kr := range rejectSeries() {
		m.rejected.WithLabelValues(kr[0], kr[1])
	}
	for _, mode := range []string{"full", "delta"} {
		m.resyncs.WithLabelValues(mode)
	}
	for _, result := range []string{"ok", "error"} {
		m.heartbeats.WithLabelValues(result)
		for _, st := range []string{StatusActive, StatusDown} {
			m.statusWrites.WithLabelValues(st, result)
		}
	}
	connected := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: MetricNATSConnected,
		Help: "1 while the agent's connection to the NATS control plane is up, 0 while it reconnects.",
	}, func() float64 {
		if nc != nil && nc.IsConnected() {
			return 1
		}
		return 0
	})
	err := register(reg, "agent", m.rejected, m.fetched, m.resyncs, m.sent, m.watermark,
		m.applyErrors, m.statusWrites, m.heartbeats, m.networks, m.records, m.drift, connected)
	return m, err
}
