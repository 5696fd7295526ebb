package main

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

type fakeAttachments struct{ err error }

func (f *fakeAttachments) CheckAttached() error { return f.err }

// TestMetricsListener: /healthz says the process serves, /readyz says
// whether it forwards what it was told (connected, applied, programs
// attached) and why not, /metrics has the metrics, anything else is 404.
func TestMetricsListener(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(buildInfoMetric())
	connected := false
	attach := &fakeAttachments{err: errors.New("tap9784ef08-97: no TC program")}
	h := &health{connected: func() bool { return connected }, attached: attach}
	srv := httptest.NewServer(metricsHandler(reg, h))
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, tc := range []struct {
		path   string
		setup  func()
		status int
		body   []string
	}{
		{"/healthz", nil, 200, []string{"ok"}},
		{"/readyz", nil, 503, []string{"not connected to the NATS control plane", "no desired state applied yet", "programs not attached: tap9784ef08-97: no TC program"}},
		{"/readyz", func() { connected = true; h.applied.Store(true) }, 503, []string{"programs not attached"}},
		{"/readyz", func() { attach.err = nil }, 200, []string{"ready"}},
		{"/readyz", func() { connected = false }, 503, []string{"not connected"}},
		{"/metrics", nil, 200, []string{`vxdp_build_info{build_date=`, `version="` + version + `"`}},
		{"/", nil, 404, nil},
		{"/metrics/", nil, 404, nil},
		{"/healthz/x", nil, 404, nil},
		{"/debug/pprof/", nil, 404, nil},
	} {
		if tc.setup != nil {
			tc.setup()
		}
		status, body := get(tc.path)
		if status != tc.status {
			t.Errorf("GET %s: %d, want %d\n%s", tc.path, status, tc.status, body)
		}
		for _, want := range tc.body {
			if !strings.Contains(body, want) {
				t.Errorf("GET %s: body lacks %q:\n%s", tc.path, want, body)
			}
		}
	}
	// File mode: no connection to report on.
	file := &health{}
	file.applied.Store(true)
	if why := file.notReady(); len(why) != 0 {
		t.Errorf("file-mode agent that applied is not ready: %v", why)
	}
}
