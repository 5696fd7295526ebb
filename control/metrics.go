package control

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// agentMetrics are the agent's Prometheus metrics.
type agentMetrics struct {
	rejected     *prometheus.CounterVec
	fetched      prometheus.Counter
	resyncs      *prometheus.CounterVec
	sent         prometheus.Counter
	watermark    prometheus.Gauge
	applied      prometheus.Gauge
	applyErrors  prometheus.Counter
	statusWrites *prometheus.CounterVec
	heartbeats   *prometheus.CounterVec
	networks     prometheus.Gauge
	records      prometheus.Gauge
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

func newAgentMetrics(reg prometheus.Registerer) (*agentMetrics, error) {
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
		applied: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vxdp_control_applied_revision",
			Help: "KV revision of the desired state the dataplane applied last.",
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
	}
	err := register(reg, "agent", m.rejected, m.fetched, m.resyncs, m.sent, m.watermark, m.applied,
		m.applyErrors, m.statusWrites, m.heartbeats, m.networks, m.records)
	return m, err
}
