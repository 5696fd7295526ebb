package bench

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/vxdp/vxdp/state"
)

// ControlPlaneOptions size the control-plane benchmark.
type ControlPlaneOptions struct {
	// Binary is the vxdp executable: the server, the agents and the
	// listeners run as its processes (required).
	Binary string
	// Agents is the number of real agent processes in the fan-out
	// (default 50).
	Agents int
	// FanOut are the numbers of receivers of each event: the agents plus
	// bare listeners (default 1000, 10000).
	FanOut []int
	// Modes are the listeners' ways of receiving (default ListenConsumer,
	// ListenRePublish).
	Modes []string
	// Events per fan-out measurement (default 20).
	Events int
	// ResyncPorts are the network sizes of the resync, memory and
	// per-event CPU figures (default 1000, 10000, 100000).
	ResyncPorts []int
	// ResyncEvents are the port events timed at each size (default 50).
	ResyncEvents int
	// DeltaChanges made while the agent is down before its restart
	// (default 100 ports, i.e. 200 records with their statuses).
	DeltaChanges int
	// ListenersPerProcess (default 2500).
	ListenersPerProcess int
	// Progress shows the steps (nil: nothing); Commit of the binary, for
	// the report.
	Progress *Progress
	Commit   string
	// Log (default: discarded).
	Log *slog.Logger
}

// Latency is a distribution of delays, in milliseconds.
type Latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

func latencyOf(ms []float64) Latency {
	return Latency{N: len(ms), P50: cpPercentile(ms, 50), P99: cpPercentile(ms, 99), Max: cpPercentile(ms, 100)}
}

// FanOutFigure is one event delivered to Receivers at once: Agents real
// agents and the rest bare listeners (the transport floor, measured with
// the same events).
type FanOutFigure struct {
	Receivers int    `json:"receivers"`
	Agents    int    `json:"agents"`
	Listeners int    `json:"listeners"`
	Mode      string `json:"listener_mode"`
	Events    int    `json:"events"`
	// Agent is from the write of the event until an agent applied it;
	// Floor until a bare listener received it.
	Agent Latency `json:"agent"`
	Floor Latency `json:"floor"`
	// AgentOverFloorP99Ms is Agent.P99 - Floor.P99.
	AgentOverFloorP99Ms float64 `json:"agent_over_floor_p99_ms"`
	// Missed deliveries to listeners (not received within 30s).
	Missed int `json:"missed"`
	// CPU: the agents' per agent and event, the server's (vxdp server:
	// NATS and the broker) and the listeners' per delivered event.
	AgentCPUPerEventMs       float64 `json:"agent_cpu_per_event_ms"`
	ServerCPUPerDeliveryUs   float64 `json:"server_cpu_per_delivery_us"`
	ListenerCPUPerDeliveryUs float64 `json:"listener_cpu_per_delivery_us"`
	// MachineBusy is the share of the machine's CPUs busy during the
	// events; Load1 the load average after them.
	MachineBusy float64 `json:"machine_busy"`
	Load1       float64 `json:"load1"`
	// Peak resident sets (VmHWM).
	AgentPeakRSSMiB  float64 `json:"agent_peak_rss_mib"`
	ServerPeakRSSMiB float64 `json:"server_peak_rss_mib"`
	// SetupSeconds to start the listeners, and their retried set-ups.
	SetupSeconds float64 `json:"setup_s"`
	SetupRetries int     `json:"setup_retries"`
}

// ResyncFigure is one agent hosting a network with Ports remote ports.
type ResyncFigure struct {
	Ports int `json:"ports"`
	// Full resync: from the agent's start to its first complete state
	// applied (inside the process; WallMs from the process's exec), the
	// records it read, its CPU, and the floor: a bare consumer reading
	// the same records without decoding them.
	FullMs      float64 `json:"full_ms"`
	FullWallMs  float64 `json:"full_wall_ms"`
	FullRecords uint64  `json:"full_records"`
	FullCPUMs   float64 `json:"full_cpu_ms"`
	FloorFullMs float64 `json:"floor_full_ms"`
	// Port events at this size: latency, the floor of a bare consumer,
	// and the agent's CPU per event.
	Event              Latency `json:"event"`
	FloorEvent         Latency `json:"floor_event"`
	AgentCPUPerEventMs float64 `json:"agent_cpu_per_event_ms"`
	// PeakRSSMiB is the agent process's VmHWM, RSSMiB its VmRSS at the end.
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	RSSMiB     float64 `json:"rss_mib"`
	// Restart after DeltaChanges ports were added while it was down.
	DeltaChanges int     `json:"delta_changes"`
	DeltaMs      float64 `json:"delta_ms"`
	DeltaWallMs  float64 `json:"delta_wall_ms"`
	DeltaRecords uint64  `json:"delta_records"`
	DeltaMode    string  `json:"delta_mode"`
	SnapshotMB   float64 `json:"snapshot_mb"`
	Load1        float64 `json:"load1"`
}

// ControlPlaneReport is the result of RunControlPlane.
type ControlPlaneReport struct {
	Machine   Machine        `json:"machine"`
	CPUs      int            `json:"cpus"`
	GoVersion string         `json:"go_version"`
	FanOut    []FanOutFigure `json:"fan_out"`
	Resync    []ResyncFigure `json:"resync"`
}

func (o *ControlPlaneOptions) defaults() {
	if o.Agents == 0 {
		o.Agents = 50
	}
	if o.FanOut == nil {
		o.FanOut = []int{1000, 10000}
	}
	if o.Modes == nil {
		o.Modes = []string{ListenConsumer, ListenRePublish}
	}
	if o.Events == 0 {
		o.Events = 20
	}
	if o.ResyncPorts == nil {
		o.ResyncPorts = []int{1000, 10000, 100000}
	}
	if o.ResyncEvents == 0 {
		o.ResyncEvents = 50
	}
	if o.DeltaChanges == 0 {
		o.DeltaChanges = 100
	}
	if o.ListenersPerProcess == 0 {
		o.ListenersPerProcess = 2500
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// RunControlPlane measures the NATS control plane with every part in its
// own process: `vxdp server`, real agents (`vxdp bench agent`: the agent's
// control plane and run loop in front of a dataplane that counts), bare
// listeners (`vxdp bench listen`) and this process writing records as the
// controller. It reports, next to the transport floor measured in the same
// run, how fast a port event reaches every receiver and what it costs the
// server and the agents (CPU from /proc), and an agent's full and restart
// resync, peak memory and CPU per port event as its network grows.
func RunControlPlane(ctx context.Context, o ControlPlaneOptions) (*ControlPlaneReport, error) {
	o.defaults()
	if o.Binary == "" {
		return nil, errors.New("control-plane benchmark: the vxdp binary is required")
	}
	r := &ControlPlaneReport{Machine: machineInfo(o.Commit), CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	pr := o.Progress
	pr.Start(len(o.FanOut)*(1+len(o.Modes)) + 5*len(o.ResyncPorts))
	defer pr.Done()
	for _, n := range o.FanOut {
		figs, err := cpFanOut(ctx, o, n, pr)
		r.FanOut = append(r.FanOut, figs...)
		if err != nil {
			return r, fmt.Errorf("fan-out to %d: %w", n, err)
		}
	}
	for _, p := range o.ResyncPorts {
		fig, err := cpResync(ctx, o, p, pr)
		if err != nil {
			return r, fmt.Errorf("resync at %d ports: %w", p, err)
		}
		r.Resync = append(r.Resync, fig)
	}
	return r, nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func cpVTEP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

func cpMAC(kind byte, i int) state.MAC {
	return state.MAC{0xfa, 0x16, kind, byte(i >> 16), byte(i >> 8), byte(i)}
}

// cpPercentile is the p-th percentile (nearest rank) of v.
func cpPercentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// cpUUID is a UUID derived from i: random-looking, like real port ids.
func cpUUID(i int) string {
	h := sha1.Sum([]byte(strconv.Itoa(i)))
	s := hex.EncodeToString(h[:16])
	return s[0:8] + "-" + s[8:12] + "-4" + s[13:16] + "-8" + s[17:20] + "-" + s[20:32]
}
