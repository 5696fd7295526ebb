package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/control/state"
	"github.com/vxdp/vxdp/dataplane"
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
		Description: `The agent makes this host forward tenant traffic for the desired state it is
given (--state FILE), through BPF programs on the taps and the VTEP interface,
while keeping the kernel's brq bridges, vxlan-<VNI> devices and l2pop FDB/ARP
entries correct. Stopping it leaves everything installed and forwarding;
a restarted agent adopts what it finds. --cleanup removes it all.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "state", Usage: "desired state JSON `FILE` (re-read on change and SIGHUP)"},
			&cli.StringFlag{Name: "local-ip", Usage: "VTEP `IP` ([vxlan] local_ip); the interface holding it is the uplink"},
			&cli.StringFlag{Name: "dataplane", Value: "bpf", Usage: "bpf, or kernel for the kernel objects only"},
			&cli.UintFlag{Name: "vxlan-port", Value: 8472, Usage: "VXLAN UDP destination port"},
			&cli.BoolFlag{Name: "arp-responder", Usage: "let the kernel vxlan device answer ARP from the l2pop entries too (Neutron's [vxlan] arp_responder); ARP for unknown addresses is then dropped instead of flooded"},
			&cli.StringFlag{Name: "xdp-mode", Value: dataplane.ModeAuto, Usage: "auto, native or generic"},
			&cli.StringFlag{Name: "tc-mode", Value: dataplane.ModeAuto, Usage: "auto, tcx or clsact"},
			&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus metrics on `ADDR` (e.g. 127.0.0.1:9641)"},
			&cli.DurationFlag{Name: "resync", Value: time.Minute, Usage: "re-apply the desired state this often to repair drift"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
			&cli.BoolFlag{Name: "cleanup", Usage: "remove everything this instance installed and exit"},
			instanceFlag, bpffsFlag, stateDirFlag, netnsFlag,
		},
		Action: runAgent,
	}
}

// agentOptions validates the flags into dataplane options. It runs before
// anything touches the kernel.
func agentOptions(c *cli.Context, log *slog.Logger) (dataplane.Options, error) {
	opts := dataplane.Options{
		Instance:     instanceName(c),
		BPFFS:        c.String(bpffsFlag.Name),
		StateDir:     stateDir(c),
		XDPMode:      c.String("xdp-mode"),
		TCMode:       c.String("tc-mode"),
		VXLANPort:    uint16(c.Uint("vxlan-port")),
		ARPResponder: c.Bool("arp-responder"),
		Log:          log,
	}
	var errs []error
	switch c.String("dataplane") {
	case "bpf":
	case "kernel":
		opts.Kernel = true
	default:
		errs = append(errs, fmt.Errorf("--dataplane %q: use bpf or kernel", c.String("dataplane")))
	}
	if p := c.Uint("vxlan-port"); p == 0 || p > 65535 {
		errs = append(errs, fmt.Errorf("--vxlan-port %d: use 1-65535 (8472 is the Linux default)", p))
	}
	if m := opts.XDPMode; m != dataplane.ModeAuto && m != dataplane.ModeNative && m != dataplane.ModeGeneric {
		errs = append(errs, fmt.Errorf("--xdp-mode %q: use auto, native or generic", m))
	}
	if m := opts.TCMode; m != dataplane.ModeAuto && m != dataplane.ModeTCX && m != dataplane.ModeClsact {
		errs = append(errs, fmt.Errorf("--tc-mode %q: use auto, tcx or clsact", m))
	}
	if strings.ContainsAny(opts.Instance, "/ ") {
		errs = append(errs, fmt.Errorf("--instance %q: must not contain '/' or spaces", opts.Instance))
	}
	if !c.Bool("cleanup") {
		ip, err := netip.ParseAddr(c.String("local-ip"))
		switch {
		case c.String("local-ip") == "":
			errs = append(errs, errors.New("--local-ip is required: the VTEP address ([vxlan] local_ip)"))
		case err != nil || !ip.Is4():
			errs = append(errs, fmt.Errorf("--local-ip %q: want an IPv4 address like 192.168.248.3", c.String("local-ip")))
		default:
			opts.LocalIP = ip
		}
		if c.String("state") == "" {
			errs = append(errs, errors.New("--state FILE is required: the desired state of this host"))
		}
	}
	return opts, errors.Join(errs...)
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

func runAgent(c *cli.Context) error {
	log, err := newLogger(c.String("log-level"))
	if err != nil {
		return err
	}
	opts, err := agentOptions(c, log)
	if err != nil {
		return err
	}
	if err := enterNetns(c); err != nil {
		return err
	}
	if c.Bool("cleanup") {
		if err := dataplane.Cleanup(opts); err != nil {
			return fmt.Errorf("cleanup: %w", err)
		}
		log.Info("removed everything installed", "instance", opts.Instance)
		return nil
	}

	// The state must be valid before the kernel is touched.
	first, err := state.LoadFile(c.String("state"))
	if err != nil {
		return err
	}
	reload := make(chan struct{}, 1)
	producer := &state.FileProducer{Path: c.String("state"), Reload: reload, Log: log}

	dp, err := dataplane.Open(opts)
	if err != nil {
		return err
	}
	defer dp.Close()
	log.Info("agent started", "instance", opts.Instance, "local_ip", opts.LocalIP,
		"dataplane", c.String("dataplane"), "pins", opts.PinDir(), "applied_revision", dp.AppliedRevision())

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := dataplane.NewMetrics(reg, dp)
	if err != nil {
		return err
	}
	if addr := c.String("metrics-addr"); addr != "" {
		srv := &http.Server{Addr: addr, Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", "addr", addr, "err", err)
			}
		}()
		defer srv.Close()
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()

	return runLoop(c.Context, log, dp, metrics, producer, first, c.Duration("resync"))
}

// runLoop applies every desired state the producer sends, re-applies the
// last one when a tap appears or goes and every resync period, until ctx
// ends. Failed applies are retried with backoff; the agent never exits on
// a bad state.
func runLoop(ctx context.Context, log *slog.Logger, dp *dataplane.Dataplane, m *dataplane.Metrics,
	producer state.Producer, current *state.Desired, resync time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	updates := make(chan *state.Desired)
	go func() {
		if err := producer.Run(ctx, updates); err != nil && ctx.Err() == nil {
			log.Error("state producer stopped", "err", err)
		}
	}()
	taps, err := dp.WatchTaps(ctx)
	if err != nil {
		return fmt.Errorf("watch links: %w", err)
	}
	retry := time.NewTimer(0) // first apply right away
	defer retry.Stop()
	tick := time.NewTicker(resync)
	defer tick.Stop()
	backoff := time.Second
	for {
		select {
		case <-ctx.Done():
			log.Info("agent stopping; installed state stays in place")
			return nil
		case d := <-updates:
			current = d
		case <-taps:
		case <-tick.C:
		case <-retry.C:
		}
		start := time.Now()
		res, err := dp.Apply(ctx, current)
		took := time.Since(start)
		m.ObserveApply(current, res, err, took)
		if err != nil {
			log.Error("apply failed, will retry", "err", err, "retry_in", backoff)
			retry.Reset(backoff)
			backoff = min(backoff*2, time.Minute)
			continue
		}
		backoff = time.Second
		logApply(log, current, res, took)
	}
}

func logApply(log *slog.Logger, d *state.Desired, res state.Result, took time.Duration) {
	level := slog.LevelDebug
	if len(res.Ops) > 0 {
		level = slog.LevelInfo
	}
	log.Log(context.Background(), level, "applied", "revision", d.Revision, "changes", len(res.Ops),
		"unchanged", res.Unchanged, "pending_ports", len(res.Pending), "took", took.Round(time.Microsecond))
	for _, op := range res.Ops {
		log.Debug("change", "object", op.Object, "action", op.Action, "key", op.Key)
	}
}
