package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/vxdp/vxdp/control/config"
)

// repoRoot is the repository, from this package's directory.
const repoRoot = "../.."

// installTree runs `make install` into a temporary DESTDIR and returns it.
func installTree(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	dest := t.TempDir()
	out, err := exec.Command("make", "-s", "-C", repoRoot, "install", "DESTDIR="+dest).CombinedOutput()
	if err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	return dest
}

// TestInstalledUnitsVerify: the installed systemd units pass
// `systemd-analyze verify` without a warning, with the binary and the man
// page `make install` put in place (Documentation= names them), and every
// file:// documentation link points at an installed file.
func TestInstalledUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	dest := installTree(t)
	prefix := filepath.Join(dest, "usr/local")
	units := filepath.Join(t.TempDir(), "units")
	if err := os.MkdirAll(units, 0o755); err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, name := range []string{"vxdp-agent.service", "vxdp-server.service"} {
		raw, err := os.ReadFile(filepath.Join(prefix, "lib/systemd/system", name))
		if err != nil {
			t.Fatalf("make install did not install %s: %v", name, err)
		}
		unit := string(raw)
		for _, m := range regexp.MustCompile(`file://(\S+)`).FindAllStringSubmatch(unit, -1) {
			if _, err := os.Stat(filepath.Join(dest, m[1])); err != nil {
				t.Errorf("%s: Documentation=%s is not installed by make install", name, m[0])
			}
		}
		// The installed tree lives under DESTDIR: point the unit at it.
		unit = strings.ReplaceAll(unit, "/usr/local/bin/vxdp", filepath.Join(prefix, "bin/vxdp"))
		f := filepath.Join(units, name)
		if err := os.WriteFile(f, []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	cmd := exec.Command(analyze, append([]string{"verify"}, files...)...)
	cmd.Env = append(os.Environ(), "MANPATH="+filepath.Join(prefix, "share/man"))
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Contains(string(out), ".service") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, f := range []string{"share/bash-completion/completions/vxdp", "share/zsh/site-functions/_vxdp"} {
		if _, err := os.Stat(filepath.Join(prefix, f)); err != nil {
			t.Errorf("make install: %v", err)
		}
	}
	for _, f := range []string{"etc/default/vxdp-agent", "etc/vxdp/vxdp-agent.ini"} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("make install: %v", err)
		}
	}
}

// TestShippedConfigsAgree: the example agent configuration, the agent's
// defaults file, the server unit and the Prometheus configuration describe
// one deployment: Prometheus scrapes where the agent listens, the agent
// reaches the server's port, and the defaults file reads the installed ini.
func TestShippedConfigsAgree(t *testing.T) {
	cfg, err := config.Load(filepath.Join(repoRoot, "deploy/vxdp-agent.ini"))
	if err != nil {
		t.Fatalf("deploy/vxdp-agent.ini: %v", err)
	}
	var prom struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	raw, err := os.ReadFile(filepath.Join(repoRoot, "deploy/prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &prom); err != nil {
		t.Fatalf("deploy/prometheus.yml: %v", err)
	}
	var targets []string
	for _, sc := range prom.ScrapeConfigs {
		if sc.JobName != "vxdp-agent" {
			continue
		}
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	if !slices.Contains(targets, cfg.MetricsListen) {
		t.Errorf("deploy/vxdp-agent.ini listens on %q, deploy/prometheus.yml scrapes %v", cfg.MetricsListen, targets)
	}
	_, metricsPort, _ := net.SplitHostPort(cfg.MetricsListen)
	for _, tg := range targets {
		if _, port, _ := net.SplitHostPort(tg); port != metricsPort {
			t.Errorf("prometheus.yml scrapes %s, agents listen on port %s", tg, metricsPort)
		}
	}
	for _, rf := range prom.RuleFiles {
		if _, err := os.Stat(filepath.Join(repoRoot, "deploy", rf)); err != nil {
			t.Errorf("prometheus.yml rule file: %v", err)
		}
	}
	unit, err := os.ReadFile(filepath.Join(repoRoot, "deploy/systemd/vxdp-server.service"))
	if err != nil {
		t.Fatal(err)
	}
	listen := regexp.MustCompile(`--listen (\S+)`).FindStringSubmatch(string(unit))
	if listen == nil {
		t.Fatal("vxdp-server.service has no --listen")
	}
	_, serverPort, _ := net.SplitHostPort(listen[1])
	for _, u := range cfg.NATS.Servers {
		if !strings.HasSuffix(u, ":"+serverPort) {
			t.Errorf("deploy/vxdp-agent.ini [nats] servers %s, the server unit listens on port %s", u, serverPort)
		}
	}
	defaults, err := os.ReadFile(filepath.Join(repoRoot, "deploy/systemd/vxdp-agent.default"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(defaults), "--config /etc/vxdp/vxdp-agent.ini") {
		t.Errorf("vxdp-agent.default does not read /etc/vxdp/vxdp-agent.ini, where make install puts the ini")
	}
}

// TestAlertRules: the alert rules and the Prometheus configuration pass
// promtool, and each alert fires (and stays quiet) as alerts_test.yml says.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (make test's setup installs Debian's prometheus package for it)")
	}
	dir := filepath.Join(repoRoot, "deploy")
	for _, args := range [][]string{
		{"check", "rules", "prometheus/alerts.yml"},
		{"check", "config", "prometheus.yml"},
		{"test", "rules", "prometheus/alerts_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
