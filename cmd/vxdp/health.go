package main

// The agent's metrics listener: /metrics, /healthz (the process serves)
// and /readyz (it forwards what it was told to), nothing else.

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// attachmentChecker is what /readyz asks the dataplane: nil when every
// program it should run is attached where it should be, otherwise what is
// missing. The dataplane implements it (`vxdp status` reports the same).
type attachmentChecker interface {
	CheckAttached() error
}

// health is what /readyz reports on.
type health struct {
	// applied is set once a desired state was applied without error.
	applied atomic.Bool
	// connected reports the control-plane connection (nil: file mode).
	connected func() bool
	// attached checks the programs (nil: not reported by the dataplane).
	attached attachmentChecker
}

// notReady lists why the agent is not ready (nil when it is).
func (h *health) notReady() []string {
	var why []string
	if h.connected != nil && !h.connected() {
		why = append(why, "not connected to the NATS control plane")
	}
	if !h.applied.Load() {
		why = append(why, "no desired state applied yet")
	}
	if h.attached != nil {
		if err := h.attached.CheckAttached(); err != nil {
			why = append(why, "programs not attached: "+err.Error())
		}
	}
	return why
}

// metricsHandler serves /metrics, /healthz and /readyz; every other path
// is 404.
func metricsHandler(reg *prometheus.Registry, h *health) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if why := h.notReady(); len(why) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready: "+strings.Join(why, "; "))
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// serveMetrics listens on addr at once (a busy port is an error before the
// agent touches the kernel, or the server starts) and serves handler in the
// background until closed; setting names the option that set addr.
func serveMetrics(addr, setting string, handler http.Handler, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener (%s): %w", setting, err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "addr", addr, "err", err)
		}
	}()
	return srv, nil
}

// buildInfoMetric is vxdp_build_info: 1, with the build as labels.
func buildInfoMetric() prometheus.Collector {
	b := currentBuild()
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "vxdp_build_info",
		Help: "Always 1; the labels say which vxdp build runs.",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit, "build_date": b.BuildDate,
			"go_version": b.GoVersion},
	}, func() float64 { return 1 })
}
