package main

// SIGHUP: the agent re-reads its configuration, applies what can change
// while it runs and says what needs a restart.

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// restartSettings are the settings a running agent cannot take over: the
// dataplane, the control-plane connection and the agent's identity are
// set up once. Each renders a setting for comparison.
var restartSettings = []struct {
	name  string
	value func(s *agentSettings) string
}{
	{"[DEFAULT] host", func(s *agentSettings) string { return s.cfg.Host }},
	{"[DEFAULT] state_path", func(s *agentSettings) string { return s.dp.StateDir }},
	{"[vxlan] local_ip", func(s *agentSettings) string { return s.cfg.LocalIP.String() }},
	{"[vxlan] udp_dstport", func(s *agentSettings) string { return fmt.Sprint(s.cfg.VXLANPort) }},
	{"[vxlan] ttl", func(s *agentSettings) string { return fmt.Sprint(s.cfg.TTL) }},
	{"[vxlan] arp_responder", func(s *agentSettings) string { return fmt.Sprint(s.cfg.Dataplane.ARPResponder) }},
	{"[dataplane] enable_bpf", func(s *agentSettings) string { return fmt.Sprint(s.cfg.Dataplane.EnableBPF) }},
	{"[dataplane] xdp_mode", func(s *agentSettings) string { return s.cfg.Dataplane.XDPMode }},
	{"[dataplane] tc_mode", func(s *agentSettings) string { return s.cfg.Dataplane.TCMode }},
	{"[dataplane] bpffs", func(s *agentSettings) string { return s.cfg.Dataplane.BPFFS }},
	{"[agent] metrics_listen", func(s *agentSettings) string { return s.metrics }},
	{"[agent] report_interval", func(s *agentSettings) string { return s.cfg.ReportInterval.String() }},
	{"[agent] availability_zone", func(s *agentSettings) string { return s.cfg.AvailabilityZone }},
	{"[nats] servers", func(s *agentSettings) string { return strings.Join(s.nats.URLs, ",") }},
	{"[nats] bucket", func(s *agentSettings) string { return s.cfg.NATS.Bucket }},
	{"[nats] credentials", func(s *agentSettings) string {
		n := s.nats
		return strings.Join([]string{n.User, n.Password, n.NKeySeedFile, n.CredsFile, n.TLSCA, n.TLSCert, n.TLSKey}, "\x00")
	}},
	{"[securitygroup] enable_security_group", func(s *agentSettings) string { return fmt.Sprint(s.cfg.EnableSecurityGroup) }},
	{"[linux_bridge] physical_interface_mappings", func(s *agentSettings) string { return fmt.Sprint(s.cfg.PhysicalInterfaceMappings) }},
}

// logLevel is the level the settings ask for: --log-level when given,
// else debug when [DEFAULT] debug is true, else the flag's default.
func logLevel(c *cli.Context, s *agentSettings) (slog.Level, error) {
	var l slog.Level
	if s.cfg.Debug && !c.IsSet("log-level") {
		return slog.LevelDebug, nil
	}
	if err := l.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return l, fmt.Errorf("--log-level %q: use debug, info, warn or error", c.String("log-level"))
	}
	return l, nil
}

// reloadSettings re-reads the configuration (SIGHUP). A configuration with
// errors changes nothing: they are logged and cur stays. Otherwise the log
// level changes at once, and every other setting that differs is logged
// as waiting for a restart. It returns the settings now in force.
func reloadSettings(c *cli.Context, cur *agentSettings, level *slog.LevelVar, log *slog.Logger) *agentSettings {
	next, err := agentSettingsFrom(c, log)
	if err != nil {
		log.Error("reload: configuration refused, nothing changed", "err", err)
		return cur
	}
	l, err := logLevel(c, next)
	if err != nil {
		log.Error("reload: configuration refused, nothing changed", "err", err)
		return cur
	}
	if l != level.Level() {
		log.Info("reload: log level changed", "from", level.Level(), "to", l)
		level.Set(l)
	}
	var pending []string
	for _, rs := range restartSettings {
		if rs.value(cur) != rs.value(next) {
			pending = append(pending, rs.name)
		}
	}
	if len(pending) == 0 {
		log.Info("reload: configuration re-read", "files", c.StringSlice("config"))
		return next
	}
	slices.Sort(pending)
	log.Warn("reload: these settings changed and take effect only when the agent restarts (systemctl restart vxdp-agent); the agent keeps running with the old values",
		"settings", strings.Join(pending, ", "))
	return cur // what runs; the next reload reports the difference again
}
