package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/control/natsd"
)

func serverCommand() *cli.Command {
	return &cli.Command{
		Name:  "server",
		Usage: "run the embedded NATS server of the control plane (JetStream, one machine or a cluster member)",
		Description: `vxdp server is the neutron-server side's message store: a NATS server with
JetStream whose key-value bucket holds networks, ports, security groups and
agents. On one machine it needs nothing else. In production, run three members
(--cluster, --cluster-listen, --routes) with --replicas 3 so the bucket survives
the loss of a node, or point every command at an existing cluster with --nats.

The server runs the broker: agents write their agent record, heartbeat and port
statuses and get their consumers through it, and it checks each against what the
host may have (docs/control-plane.md, "Broker"). On an existing cluster, run
"vxdp server broker" with controller credentials instead.

--users FILE turns on per-host credentials:
  {"users": [{"user": "controller", "password": "...", "role": "controller"},
             {"user": "node3", "password": "...", "role": "agent", "host": "node3"}]}
An agent user may only ask the broker, on its own host's subjects, publish its
apply reports and receive on its own inbox; "vxdp server permissions --users
FILE" prints the same rules for a cluster configured by hand.`,
		Flags: slices.Concat([]cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:4222", Usage: "client `HOST:PORT` (port 0 picks a free one)"},
			&cli.StringFlag{Name: "store", Value: "/var/lib/vxdp/nats", Usage: "JetStream store `DIR`"},
			&cli.StringFlag{Name: "name", Usage: "server `NAME`, unique in a cluster"},
			&cli.StringFlag{Name: "cluster", Usage: "cluster `NAME` (makes this server a cluster member)"},
			&cli.StringFlag{Name: "cluster-listen", Usage: "route `HOST:PORT` for the other members"},
			&cli.StringFlag{Name: "routes", Usage: "the members' route `URLS` (nats-route://host:port,...)"},
			&cli.IntFlag{Name: "replicas", Value: 1, Usage: "replicas of the control-plane bucket (3 on a three-node cluster)"},
			&cli.StringFlag{Name: "domain", Usage: "JetStream domain `NAME` (core members accepting leafnodes: the same on each, default core; a leafnode: its own)"},
			&cli.StringFlag{Name: "leaf-listen", Usage: "accept leafnodes on `HOST:PORT` (a core member)"},
			&cli.StringFlag{Name: "leaf", Usage: "run as a leafnode of the core members' leafnode `URLS` (nats-leaf://host:7422,...): agents of a rack connect here and resync from a mirror of the core's bucket"},
			&cli.StringFlag{Name: "hub-domain", Value: "core", Usage: "JetStream domain `NAME` of the core (with --leaf)"},
			&cli.StringFlag{Name: "bucket", Value: control.DefaultBucket, Usage: "bucket `NAME`"},
			&cli.StringFlag{Name: "users", Usage: "users `FILE` (JSON) with per-role permissions"},
			&cli.StringFlag{Name: "tls-cert", Usage: "server certificate `FILE`"},
			&cli.StringFlag{Name: "tls-key", Usage: "server key `FILE`"},
			&cli.StringFlag{Name: "tls-ca", Usage: "CA `FILE` to verify client certificates"},
			&cli.StringFlag{Name: "ready-file", Usage: "write {\"url\":...} to `FILE` once serving (for supervisors and the lab)"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
			netnsFlag, memberSyncFlag,
		}, bucketLimitFlags(), brokerFlags(), quotaFlags(), ml2Flags()),
		Action: runServer,
		Subcommands: []*cli.Command{
			{
				Name:  "permissions",
				Usage: "print the nats-server authorization block for the users of a users file",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "users", Required: true, Usage: "users `FILE`"},
					&cli.StringFlag{Name: "bucket", Value: control.DefaultBucket, Usage: "bucket `NAME`"},
				},
				Action: func(c *cli.Context) error {
					users, err := natsd.LoadUsers(c.String("users"))
					if err != nil {
						return err
					}
					out, err := natsd.AuthorizationConfig(c.String("bucket"), users)
					if err != nil {
						return err
					}
					_, err = fmt.Fprint(c.App.Writer, out)
					return err
				},
			},
			{
				Name:  "bucket",
				Usage: "create the control-plane bucket on an existing cluster, or change its replicas, limits, quotas and provider network options",
				Flags: slices.Concat(natsFlags(), []cli.Flag{&cli.IntFlag{Name: "replicas", Value: 3, Usage: "replicas"}, netnsFlag},
					bucketLimitFlags(), quotaFlags(), ml2Flags()),
				Action: withJetStream(func(c *cli.Context, ctx context.Context, js jetstream.JetStream) error {
					bs, err := bucketSettingsOf(c)
					if err != nil {
						return err
					}
					bo := bs.bucket
					if _, err := control.EnsureBucket(ctx, js, bo); err != nil {
						return err
					}
					ctl, err := control.NewController(ctx, js.Conn(), control.ControllerOptions{Bucket: bo.Name, Log: cliLogger()})
					if err != nil {
						return err
					}
					if err := bs.store(ctx, ctl); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "bucket %s: %d replica(s)\n", c.String("bucket"), c.Int("replicas"))
					return nil
				}),
			},
			{
				Name:  "broker",
				Usage: "run only the broker, on an existing NATS cluster (with controller credentials; several form a queue group)",
				Flags: slices.Concat(natsFlags(), brokerFlags(), []cli.Flag{
					&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"}, netnsFlag, memberSyncFlag}),
				Action: runBroker,
			},
			{
				Name:  "compact",
				Usage: "remove old delete markers (agents behind the compaction resync fully)",
				Flags: append(natsFlags(), &cli.DurationFlag{Name: "older-than", Value: 24 * time.Hour, Usage: "keep markers younger than this"}),
				Action: func(c *cli.Context) error {
					nc, err := natsConnect(c, "vxdp-cli", cliLogger())
					if err != nil {
						return err
					}
					defer nc.Close()
					ctl, err := control.NewController(c.Context, nc, control.ControllerOptions{Bucket: c.String("bucket"), Log: cliLogger()})
					if err != nil {
						return err
					}
					return ctl.Compact(c.Context, c.Duration("older-than"))
				},
			},
		},
	}
}

func runServer(c *cli.Context) error {
	if c.Args().Present() {
		return unknownCommand(c, c.Args().First())
	}
	log, err := newLogger(c.String("log-level"))
	if err != nil {
		return err
	}
	if err := enterNetns(c); err != nil {
		return err
	}
	o := natsd.Options{
		Name: c.String("name"), Listen: c.String("listen"), StoreDir: c.String("store"),
		Cluster: c.String("cluster"), ClusterListen: c.String("cluster-listen"), Routes: control.ParseURLs(c.String("routes")),
		Domain: c.String("domain"), LeafListen: c.String("leaf-listen"), Leaf: control.ParseURLs(c.String("leaf")),
		Bucket: c.String("bucket"), TLSCert: c.String("tls-cert"), TLSKey: c.String("tls-key"), TLSCA: c.String("tls-ca"),
		Log: log,
	}
	if f := c.String("users"); f != "" {
		if o.Users, err = natsd.LoadUsers(f); err != nil {
			return err
		}
	}
	if o.LeafListen != "" && o.Domain == "" {
		o.Domain = "core"
	}
	hub := ""
	if len(o.Leaf) > 0 {
		hub = c.String("hub-domain")
		switch {
		case o.Domain == "":
			return errors.New("--leaf: a leafnode needs its own JetStream domain: add --domain, e.g. --domain rack1")
		case o.Domain == hub:
			return fmt.Errorf("--domain %s is the core's (--hub-domain): a leafnode needs its own", hub)
		case o.LeafListen != "":
			return errors.New("--leaf and --leaf-listen: a server is a core member or a leafnode, not both")
		}
	}
	if c.Int("replicas") < 1 || c.Int("replicas") > 5 {
		return fmt.Errorf("--replicas %d: use 1-5 (3 on a three-node cluster)", c.Int("replicas"))
	}
	reg := prometheus.NewRegistry()
	if o.Broker, err = brokerOptions(c, log, reg); err != nil {
		return err
	}
	bs, err := bucketSettingsOf(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.StoreDir, 0o750); err != nil {
		return fmt.Errorf("--store: %w", err)
	}
	stop, err := serveBrokerMetrics(c.String("metrics-addr"), reg, log)
	if err != nil {
		return err
	}
	defer stop()
	return serve(c.Context, o, serveOptions{settings: bs, hub: hub, memberSync: c.Duration("member-sync-interval"), readyFile: c.String("ready-file")}, log)
}

// serveOptions are what serve does besides running NATS.
type serveOptions struct {
	settings bucketSettings
	// hub is the core's JetStream domain on a leafnode ("" on a core
	// member): a leafnode mirrors the core's bucket and writes nothing.
	hub        string
	memberSync time.Duration
	readyFile  string
}

// serve runs the server until ctx ends: it creates the bucket (retrying
// while a cluster elects its leaders) — on a leafnode, the mirror of the
// bucket of the core's domain hub — and, on a core member, stores the
// quotas and provider network options and keeps security group members in
// step with the ports; then it reports readiness.
func serve(ctx context.Context, o natsd.Options, so serveOptions, log *slog.Logger) error {
	bo, hub := so.settings.bucket, so.hub
	srv, err := natsd.Start(ctx, o)
	if err != nil {
		return err
	}
	defer srv.Shutdown()
	replicas := bo.Replicas
	nc, err := srv.Connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	for wait := 200 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var err error
		if hub != "" {
			_, err = control.EnsureMirror(bctx, js, bo, hub)
		} else {
			_, err = control.EnsureBucket(bctx, js, bo)
		}
		cancel()
		if err == nil {
			break
		}
		log.Info("waiting to create the bucket", "bucket", o.Bucket, "replicas", replicas, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	if hub == "" {
		ctl, err := control.NewController(ctx, nc, control.ControllerOptions{Bucket: o.Bucket, Log: log})
		if err != nil {
			return err
		}
		if err := so.settings.store(ctx, ctl); err != nil {
			return err
		}
		go syncMembers(ctx, nc, o.Bucket, so.memberSync, log)
	}
	log.Info("vxdp server ready", "url", srv.ClientURL(), "store", o.StoreDir, "bucket", o.Bucket, "replicas", replicas,
		"cluster", o.Cluster, "domain", o.Domain, "leaf_of", o.Leaf, "auth", len(o.Users) > 0)
	if so.readyFile != "" {
		if err := natsd.WriteReadyFile(so.readyFile, natsd.ReadyInfo{URL: srv.ClientURL(), PID: os.Getpid()}); err != nil {
			return err
		}
		defer os.Remove(so.readyFile)
	}
	<-ctx.Done()
	log.Info("vxdp server stopping")
	return nil
}

// bucketLimitFlags set the limits of the bucket (control.BucketOptions).
func bucketLimitFlags() []cli.Flag {
	return []cli.Flag{
		&cli.Int64Flag{Name: "max-bytes", Value: control.DefaultMaxBytes, Usage: "bucket size limit in `BYTES` (writes beyond it fail)"},
		&cli.Int64Flag{Name: "max-keys", Value: control.DefaultMaxKeys, Usage: "bucket limit of `KEYS`, delete markers included"},
		&cli.IntFlag{Name: "max-value-size", Value: control.DefaultMaxValueSize, Usage: "largest record in `BYTES`"},
		&cli.IntFlag{Name: "max-consumers", Value: control.DefaultMaxConsumers, Usage: "consumers of the bucket at once (agents hold one, briefly two)"},
	}
}

func bucketOptions(c *cli.Context) (control.BucketOptions, error) {
	o := control.BucketOptions{Name: c.String("bucket"), Replicas: c.Int("replicas"), MaxBytes: c.Int64("max-bytes"),
		MaxKeys: c.Int64("max-keys"), MaxValueSize: int32(min(c.Int("max-value-size"), 1<<30)), MaxConsumers: c.Int("max-consumers")}
	switch {
	case o.MaxValueSize < 1<<10 || o.MaxValueSize > 1<<20:
		return o, fmt.Errorf("--max-value-size %d: want 1024 to 1048576 (the server's largest message)", c.Int("max-value-size"))
	case o.MaxBytes < 1<<20:
		return o, fmt.Errorf("--max-bytes %d: want at least 1048576", o.MaxBytes)
	case o.MaxKeys < 1000:
		return o, fmt.Errorf("--max-keys %d: want at least 1000", o.MaxKeys)
	case o.MaxConsumers < 1:
		return o, fmt.Errorf("--max-consumers %d: want at least 1", o.MaxConsumers)
	}
	return o, nil
}

// brokerFlags configure the broker (control.BrokerOptions).
func brokerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "max-status-keys-per-host", Value: 10_000, Usage: "port status records one host may hold"},
		&cli.IntFlag{Name: "max-status-bytes-per-host", Value: 4 << 20, Usage: "bytes of port status records one host may hold"},
		&cli.Float64Flag{Name: "writes-per-second", Value: 100, Usage: "records one host may write per second (sustained)"},
		&cli.IntFlag{Name: "write-burst", Value: 2000, Usage: "records one host may write at once"},
		&cli.IntFlag{Name: "max-consumers-per-host", Value: 4, Usage: "consumers one host holds at once through a broker (more delete its oldest)"},
		&cli.BoolFlag{Name: "manual-registration", Usage: "register hosts' VTEPs only with \"vxdp host add\" (no first-registration-wins)"},
		&cli.StringFlag{Name: "metrics-addr", Usage: "serve the broker's Prometheus metrics on `HOST:PORT`"},
	}
}

func brokerOptions(c *cli.Context, log *slog.Logger, reg prometheus.Registerer) (control.BrokerOptions, error) {
	o := control.BrokerOptions{
		Bucket: c.String("bucket"), MaxStatusKeysPerHost: c.Int("max-status-keys-per-host"), MaxStatusBytesPerHost: c.Int("max-status-bytes-per-host"),
		WritesPerSecond: c.Float64("writes-per-second"), WriteBurst: c.Int("write-burst"), MaxConsumersPerHost: c.Int("max-consumers-per-host"),
		ManualRegistration: c.Bool("manual-registration"), Log: log, Metrics: reg,
	}
	for _, f := range []string{"max-status-keys-per-host", "max-status-bytes-per-host", "write-burst", "max-consumers-per-host"} {
		if c.Int(f) < 1 {
			return o, fmt.Errorf("--%s %d: want at least 1", f, c.Int(f))
		}
	}
	if o.WritesPerSecond <= 0 {
		return o, fmt.Errorf("--writes-per-second %g: want more than 0", o.WritesPerSecond)
	}
	return o, nil
}

// runBroker is `vxdp server broker`: the broker alone, for a NATS cluster
// run without vxdp server.
func runBroker(c *cli.Context) error {
	log, err := newLogger(c.String("log-level"))
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	o, err := brokerOptions(c, log, reg)
	if err != nil {
		return err
	}
	nc, err := natsConnect(c, "vxdp-broker", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	b, err := control.NewBroker(nc, o)
	if err != nil {
		return err
	}
	stop, err := serveBrokerMetrics(c.String("metrics-addr"), reg, log)
	if err != nil {
		return err
	}
	defer stop()
	go syncMembers(c.Context, nc, o.Bucket, c.Duration("member-sync-interval"), log)
	return b.Run(c.Context)
}

// serveBrokerMetrics serves reg's metrics on addr ("" serves nothing) until
// the returned function is called.
func serveBrokerMetrics(addr string, reg *prometheus.Registry, log *slog.Logger) (func(), error) {
	if addr == "" {
		return func() {}, nil
	}
	srv, err := serveMetrics(addr, "--metrics-addr", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), log)
	if err != nil {
		return nil, err
	}
	return func() { _ = srv.Close() }, nil
}
