package test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vxdp/vxdp/lab"
)

// pendingMetrics are metrics the dashboard and the alert rules use that the
// agent does not export yet, with who will. Once one is exported the check
// fails until it is taken off this list, so the check becomes strict.
var pendingMetrics = map[string]string{}

// exprMetrics returns every vxdp metric named in the expressions of the
// Grafana dashboard and of the alert rules, with where it is used.
func exprMetrics(t *testing.T) map[string][]string {
	t.Helper()
	var exprs []struct{ where, expr string }
	raw, err := os.ReadFile("../deploy/grafana/vxdp.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("deploy/grafana/vxdp.json: %v", err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, struct{ where, expr string }{"panel " + p.Title, tg.Expr})
		}
	}
	raw, err = os.ReadFile("../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("deploy/prometheus/alerts.yml: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, struct{ where, expr string }{"alert " + r.Alert, r.Expr})
		}
	}
	out := map[string][]string{}
	name := regexp.MustCompile(`\bvxdp_[a-z0-9_]+\b`)
	for _, e := range exprs {
		for _, m := range name.FindAllString(e.expr, -1) {
			if !slices.Contains(out[m], e.where) {
				out[m] = append(out[m], e.where)
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("only %d metrics found in the dashboard and alerts: %v", len(out), out)
	}
	return out
}

// TestAgentMonitoring starts the lab's agents with their metrics listener,
// scrapes node3's and checks that every metric the dashboard and the
// alert rules use exists (pendingMetrics aside), and that /healthz and
// /readyz answer and other paths do not.
func TestAgentMonitoring(t *testing.T) {
	l := newLab(t, lab.Config{Control: lab.ControlNATS, AgentArgs: []string{"--metrics-addr", "127.0.0.1:9641"}})
	ns := l.NS("node3")
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(_ context.Context, network, addr string) (c net.Conn, err error) {
			err = lab.Do(ns, func() (err error) { c, err = net.DialTimeout(network, addr, 5*time.Second); return err })
			return c, err
		}}}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := client.Get("http://127.0.0.1:9641" + path)
		if err != nil {
			t.Fatalf("GET %s in %s: %v", path, ns, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/healthz"); code != 200 {
		t.Errorf("/healthz: %d %s", code, body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for code, body := get("/readyz"); code != 200; code, body = get("/readyz") {
		if time.Now().After(deadline) {
			t.Fatalf("/readyz of an agent that applied its state: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, path := range []string{"/", "/metricz", "/metrics/x"} {
		if code, _ := get(path); code != 404 {
			t.Errorf("GET %s: %d, want 404", path, code)
		}
	}

	code, body := get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	exported := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			exported[f[2]] = true
		}
	}
	for name, uses := range exprMetrics(t) {
		t.Run(name, func(t *testing.T) {
			base := name
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(name, suffix); ok && exported[b] {
					base = b
				}
			}
			who, pending := pendingMetrics[name]
			switch {
			case pending && exported[base]:
				t.Errorf("%s is exported now: take it off pendingMetrics so that its absence fails", name)
			case pending:
				t.Logf("%s (used by %s) is not exported yet; provided by %s", name, strings.Join(uses, ", "), who)
			case !exported[base]:
				t.Errorf("%s, used by %s, is not exported by the agent", name, strings.Join(uses, ", "))
			}
		})
	}
}
