package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/control/config"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/maps"
	"github.com/vxdp/vxdp/state"
)

// Flags shared by the agent and the commands that inspect what it installed.
var (
	instanceFlag = &cli.StringFlag{
		Name:  "instance",
		Usage: "agent instance `NAME`: pins live in <bpffs>/vxdp/NAME (default: the host name)",
	}
	bpffsFlag = &cli.StringFlag{
		Name:  "bpffs",
		Value: "/sys/fs/bpf",
		Usage: "bpffs mount point (mounted if missing)",
	}
	stateDirFlag = &cli.StringFlag{
		Name:  "state-dir",
		Usage: "directory for applied.json and control-plane snapshots (default /var/lib/vxdp/<instance>)",
	}
)

func instanceName(c *cli.Context) string {
	if n := c.String(instanceFlag.Name); n != "" {
		return n
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "default"
	}
	return h
}

func stateDir(c *cli.Context) string {
	if d := c.String(stateDirFlag.Name); d != "" {
		return d
	}
	return filepath.Join("/var/lib/vxdp", instanceName(c))
}

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "run the per-hypervisor agent: install and reconcile the dataplane",
		Description: `The agent makes this host forward tenant traffic for its desired state, through
BPF programs on the taps and the VTEP interface, while keeping the kernel's brq
bridges, vxlan-<VNI> devices and l2pop FDB/ARP entries correct.

The desired state comes from the NATS control plane (default; --nats, or
[nats] servers in the config) or from a JSON file (--state FILE, re-read on
change). Settings come from --config files — vxdp's own ini and/or
Neutron's linuxbridge_agent.ini, later files overriding earlier ones — and
flags override both. A config error names the file, line and fix, and the
agent exits before touching the kernel; --check-config checks the files
against this host (the interface of local_ip, the files they name) and
changes nothing.

SIGHUP (systemctl reload) re-reads the config files (and the state file),
applies the log level at once, logs every other changed setting as waiting
for a restart, and re-applies the desired state. The metrics listener
serves /metrics, /healthz (the process runs) and /readyz (connected, applied
at least once, programs attached).

Stopping the agent leaves everything installed and forwarding; a restarted
agent adopts what it finds. --cleanup removes it all.`,
		Flags: append([]cli.Flag{
			&cli.StringSliceFlag{Name: "config", Usage: "agent ini `FILE`s (vxdp-agent.ini, Neutron's linuxbridge_agent.ini); repeat or comma-separate"},
			&cli.StringFlag{Name: "state", Usage: "take the desired state from a JSON `FILE` instead of NATS"},
			&cli.StringFlag{Name: "host", Usage: "host `NAME` ports are bound to ([DEFAULT] host; default: the host name)"},
			&cli.StringFlag{Name: "local-ip", Usage: "VTEP `IP` ([vxlan] local_ip); the interface holding it is the uplink"},
			&cli.StringFlag{Name: "physical-interface-mappings", Usage: "`MAPPINGS` of physical networks to interfaces for VLAN and flat networks, e.g. default:eth1 ([linux_bridge] physical_interface_mappings)"},
			&cli.StringFlag{Name: "dataplane", Value: "bpf", Usage: "bpf, or kernel for the kernel objects only ([dataplane] enable_bpf)"},
			&cli.UintFlag{Name: "vxlan-port", Value: 8472, Usage: "VXLAN UDP destination port ([vxlan] udp_dstport)"},
			&cli.BoolFlag{Name: "arp-responder", Usage: "let the kernel vxlan device answer ARP from the l2pop entries too ([vxlan] arp_responder); ARP for unknown addresses is then dropped instead of flooded"},
			&cli.StringFlag{Name: "xdp-mode", Value: dataplane.ModeAuto, Usage: "auto, native or generic ([dataplane] xdp_mode)"},
			&cli.StringFlag{Name: "tc-mode", Value: dataplane.ModeAuto, Usage: "auto, tcx or clsact ([dataplane] tc_mode)"},
			&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus metrics on `ADDR`, e.g. 127.0.0.1:9641 ([agent] metrics_listen)"},
			&cli.DurationFlag{Name: "resync", Value: time.Minute, Usage: "re-apply the desired state this often to repair drift"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
			&cli.BoolFlag{Name: "cleanup", Usage: "remove everything this instance installed and exit"},
			&cli.BoolFlag{Name: "check-config", Usage: "validate the configuration (files, flags, the interface of local_ip, files it names) without touching anything, and exit"},
			instanceFlag, bpffsFlag, stateDirFlag, netnsFlag,
		}, natsFlags()...),
		Action:      runAgent,
		Subcommands: []*cli.Command{agentListCommand()},
	}
}

// agentSettings is everything the agent runs with, resolved from the
// config files and the flags and validated before the kernel is touched.
type agentSettings struct {
	dp        dataplane.Options
	cfg       *config.AgentConfig
	stateFile string // file mode when set, NATS otherwise
	nats      control.ConnectOptions
	metrics   string
}

// agentSettingsFrom reads the config files and flags (flags win) and
// returns every problem at once.
func agentSettingsFrom(c *cli.Context, log *slog.Logger) (*agentSettings, error) {
	var errs []error
	cfg := config.Defaults()
	var flagIP netip.Addr
	if v := c.String("local-ip"); v != "" {
		ip, err := netip.ParseAddr(v)
		if err != nil || control.ValidVTEP(ip) != nil {
			errs = append(errs, fmt.Errorf("--local-ip %q: want a unicast IPv4 or IPv6 address like 192.168.248.3", v))
		}
		flagIP = ip
	}
	if files := c.StringSlice("config"); len(files) > 0 {
		base := config.Defaults()
		base.LocalIP = flagIP
		loaded, err := config.LoadOver(base, files...)
		if err != nil {
			return nil, err // file:line: problem — fix
		}
		cfg = loaded
		for _, w := range cfg.Warnings {
			log.Warn("config", "note", w)
		}
	} else if h, err := os.Hostname(); err == nil && cfg.Host == "" {
		cfg.Host = h
	}

	// Flags override the files.
	if c.IsSet("host") {
		cfg.Host = c.String("host")
	}
	if flagIP.IsValid() {
		cfg.LocalIP = flagIP
	}
	if c.IsSet("vxlan-port") || len(c.StringSlice("config")) == 0 {
		if p := c.Uint("vxlan-port"); p == 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("--vxlan-port %d: use 1-65535 (8472 is the Linux default)", p))
		} else {
			cfg.VXLANPort = uint16(p)
		}
	}
	if c.IsSet("dataplane") || len(c.StringSlice("config")) == 0 {
		switch c.String("dataplane") {
		case "bpf":
			cfg.Dataplane.EnableBPF = true
		case "kernel":
			cfg.Dataplane.EnableBPF = false
		default:
			errs = append(errs, fmt.Errorf("--dataplane %q: use bpf or kernel", c.String("dataplane")))
		}
	}
	for flag, dst := range map[string]*string{"xdp-mode": &cfg.Dataplane.XDPMode, "tc-mode": &cfg.Dataplane.TCMode,
		bpffsFlag.Name: &cfg.Dataplane.BPFFS, "metrics-addr": &cfg.MetricsListen} {
		if c.IsSet(flag) || *dst == "" {
			*dst = c.String(flag)
		}
	}
	if c.IsSet("arp-responder") {
		cfg.Dataplane.ARPResponder = c.Bool("arp-responder")
	}
	mappingsSource := ""
	if src, ok := cfg.Sources["linux_bridge.physical_interface_mappings"]; ok {
		mappingsSource = src.String()
	}
	if c.IsSet("physical-interface-mappings") {
		m, msg, fix := config.ParseInterfaceMappings(c.String("physical-interface-mappings"))
		if msg != "" {
			errs = append(errs, fmt.Errorf("--physical-interface-mappings: %s: %s", msg, fix))
		}
		cfg.PhysicalInterfaceMappings, mappingsSource = m, "--physical-interface-mappings"
	}
	if m := cfg.Dataplane.XDPMode; m != dataplane.ModeAuto && m != dataplane.ModeNative && m != dataplane.ModeGeneric {
		errs = append(errs, fmt.Errorf("--xdp-mode %q: use auto, native or generic", m))
	}
	if m := cfg.Dataplane.TCMode; m != dataplane.ModeAuto && m != dataplane.ModeTCX && m != dataplane.ModeClsact {
		errs = append(errs, fmt.Errorf("--tc-mode %q: use auto, tcx or clsact", m))
	}
	if err := control.ValidHost(cfg.Host); err != nil {
		errs = append(errs, fmt.Errorf("--host: %w", err))
	}

	instance := c.String(instanceFlag.Name)
	if instance == "" {
		instance = cfg.Host
	}
	if instance == "" || strings.ContainsAny(instance, "/ ") {
		errs = append(errs, fmt.Errorf("--instance %q: must be non-empty without '/' or spaces", instance))
	}
	dir := c.String(stateDirFlag.Name)
	if dir == "" {
		dir = filepath.Join(cfg.StateDir, instance)
	}
	s := &agentSettings{
		cfg:       cfg,
		stateFile: c.String("state"),
		metrics:   cfg.MetricsListen,
		dp: dataplane.Options{
			Instance: instance, BPFFS: cfg.Dataplane.BPFFS, StateDir: dir, LocalIP: cfg.LocalIP,
			VXLANPort: cfg.VXLANPort, Kernel: !cfg.Dataplane.EnableBPF, ARPResponder: cfg.Dataplane.ARPResponder,
			TTL: uint8(cfg.TTL), XDPMode: cfg.Dataplane.XDPMode, TCMode: cfg.Dataplane.TCMode, Log: log,
			SecurityGroups: cfg.EnableSecurityGroup, MapSizes: mapSizes(cfg.Dataplane), DHCP: cfg.Dataplane.DHCP,
			PhysicalInterfaceMappings: cfg.PhysicalInterfaceMappings,
			MappingsSource:            mappingsSource,
		},
	}
	base := cfg.ConnectOptions()
	base.Name, base.InboxPrefix, base.Retry, base.Log = "vxdp-agent "+cfg.Host, control.InboxPrefix(cfg.Host), true, log
	s.nats = natsConnectOptions(c, base)
	if c.IsSet("bucket") || cfg.NATS.Bucket == "" {
		cfg.NATS.Bucket = c.String("bucket")
	}
	if r := c.Duration("resync"); r <= 0 {
		errs = append(errs, fmt.Errorf("--resync %v: must be positive, e.g. 1m", r))
	}
	if !c.Bool("cleanup") && !cfg.LocalIP.IsValid() {
		errs = append(errs, errors.New("--local-ip (or [vxlan] local_ip in --config) is required: the VTEP address"))
	}
	return s, errors.Join(errs...)
}

func newLogger(level string) (*slog.Logger, error) {
	log, _, err := newLeveledLogger(level)
	return log, err
}

// newLeveledLogger is newLogger with a level that can change while it runs.
func newLeveledLogger(level string) (*slog.Logger, *slog.LevelVar, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	v := new(slog.LevelVar)
	v.Set(l)
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: v})), v, nil
}

func runAgent(c *cli.Context) error {
	if c.Args().Present() {
		// The agent takes no arguments: this is a mistyped subcommand.
		return unknownCommand(c, c.Args().First())
	}
	// A reload (SIGHUP) while starting is taken once running, rather than
	// ending the process (SIGHUP's default).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	log, level, err := newLeveledLogger(c.String("log-level"))
	if err != nil {
		return err
	}
	s, err := agentSettingsFrom(c, log)
	if err != nil {
		return err
	}
	if l, err := logLevel(c, s); err == nil {
		level.Set(l)
	}
	if err := enterNetns(c); err != nil {
		return err
	}
	if c.Bool("check-config") {
		return checkConfig(c, s)
	}
	if c.Bool("cleanup") {
		if err := dataplane.Cleanup(s.dp); err != nil {
			return fmt.Errorf("cleanup: %w", err)
		}
		log.Info("removed everything installed", "instance", s.dp.Instance)
		return nil
	}

	// The desired-state source and the metrics listener must be usable
	// before the kernel is touched.
	var first *state.Desired
	var producer state.Producer
	var nc *nats.Conn
	reload := make(chan struct{}, 1)
	h := &health{}
	if s.stateFile != "" {
		if first, err = state.LoadFile(s.stateFile); err != nil {
			return err
		}
		producer = &state.FileProducer{Path: s.stateFile, Reload: reload, Log: log}
	} else {
		if nc, err = control.Connect(c.Context, s.nats); err != nil {
			return fmt.Errorf("nats: %w", err)
		}
		defer nc.Close()
		h.connected = nc.IsConnected
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfoMetric())
	if addr := s.metrics; addr != "" {
		srv, err := serveMetrics(addr, "[agent] metrics_listen / --metrics-addr", metricsHandler(reg, h), log)
		if err != nil {
			return err
		}
		defer srv.Close()
	}

	dp, err := dataplane.Open(s.dp)
	if err != nil {
		return err
	}
	defer dp.Close()
	if ac, ok := any(dp).(attachmentChecker); ok {
		h.attached = ac
	}
	metrics, err := dataplane.NewMetrics(reg, dp)
	if err != nil {
		return err
	}
	go dp.RunSweeper(c.Context, dataplane.DefaultSweepInterval, metrics.ObserveSweep)
	var observer state.Observer
	if nc != nil {
		ao := s.cfg.AgentOptions()
		ao.StateDir, ao.AppliedRevision, ao.Log, ao.Metrics, ao.Version = s.dp.StateDir, dp.AppliedRevision(), log, reg, version
		agent, err := control.NewAgent(nc, ao)
		if err != nil {
			return err
		}
		producer, observer = agent, agent
	}
	source := "nats " + strings.Join(s.nats.URLs, ",")
	if s.stateFile != "" {
		source = "file " + s.stateFile
	}
	log.Info("agent started", "host", s.cfg.Host, "instance", s.dp.Instance, "local_ip", s.dp.LocalIP,
		"dataplane", map[bool]string{true: "kernel", false: "bpf"}[s.dp.Kernel], "state", source,
		"pins", s.dp.PinDir(), "applied_revision", dp.AppliedRevision(), "metrics", s.metrics)

	// SIGHUP: re-read the configuration, and the state file in file mode;
	// re-apply the desired state either way.
	reapply := make(chan struct{}, 1)
	go func() {
		running := s
		for range hup {
			running = reloadSettings(c, running, level, log)
			if s.stateFile != "" {
				poke(reload)
			} else {
				poke(reapply)
			}
		}
	}()

	return runLoop(c.Context, log, dp, metrics, producer, observer, first, c.Duration("resync"), h, reapply)
}

// mapSizes are the tracked-flow table sizes the configuration sets.
func mapSizes(c config.DataplaneConfig) maps.Sizes {
	sz := maps.Sizes{}
	if c.CTTCPMax > 0 {
		sz[maps.CTTCP] = uint32(c.CTTCPMax)
	}
	if c.CTOtherMax > 0 {
		sz[maps.CTOther] = uint32(c.CTOtherMax)
	}
	return sz
}

// poke wakes a loop waiting on ch without blocking.
func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// runLoop runs the producer against the dataplane (state.Loop) until ctx
// ends: taps appearing or going and SIGHUP re-apply the whole state.
func runLoop(ctx context.Context, log *slog.Logger, dp *dataplane.Dataplane, m *dataplane.Metrics,
	producer state.Producer, observer state.Observer, first *state.Desired, resync time.Duration,
	h *health, reapply <-chan struct{}) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	taps, err := dp.WatchTaps(ctx)
	if err != nil {
		return fmt.Errorf("watch links: %w", err)
	}
	wake := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-taps:
			case <-reapply:
			}
			poke(wake)
		}
	}()
	loop := &state.Loop{
		Producer: producer, Reconciler: dp, Observer: observer, First: first, Resync: resync, Wake: wake, Log: log,
		AfterApply: func(d *state.Desired, res state.Result, err error, took time.Duration) {
			m.ObserveApply(d, res, err, took)
			if err == nil {
				h.applied.Store(true)
			}
		},
	}
	return loop.Run(ctx)
}
