package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/control"
)

// natsFlags are the connection flags of every command that talks to NATS
// (the agent's too): the servers of the embedded `vxdp server` or of an
// existing cluster, and the credentials.
func natsFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "nats", Value: control.DefaultNATSURL, EnvVars: []string{"VXDP_NATS"},
			Usage: "NATS server `URLS`, comma-separated (members of one cluster)"},
		&cli.StringFlag{Name: "nats-user", EnvVars: []string{"VXDP_NATS_USER"}, Usage: "NATS `USER`"},
		&cli.StringFlag{Name: "nats-password", EnvVars: []string{"VXDP_NATS_PASSWORD"}, Usage: "NATS `PASSWORD`"},
		&cli.StringFlag{Name: "nats-nkey", Usage: "NKey seed `FILE`"},
		&cli.StringFlag{Name: "nats-creds", Usage: "NATS credentials `FILE` (JWT + seed)"},
		&cli.StringFlag{Name: "nats-ca", Usage: "CA certificate `FILE` to verify the servers"},
		&cli.StringFlag{Name: "nats-cert", Usage: "client certificate `FILE`"},
		&cli.StringFlag{Name: "nats-key", Usage: "client key `FILE`"},
		&cli.StringFlag{Name: "bucket", Value: control.DefaultBucket, EnvVars: []string{"VXDP_BUCKET"}, Usage: "key-value bucket `NAME` of the control plane"},
	}
}

// natsConnectOptions reads the connection flags; options set on the
// command line override those of base (e.g. the agent's ini file).
func natsConnectOptions(c *cli.Context, base control.ConnectOptions) control.ConnectOptions {
	o := base
	set := func(flag string, dst *string) {
		if c.IsSet(flag) || *dst == "" {
			if v := c.String(flag); v != "" {
				*dst = v
			}
		}
	}
	if c.IsSet("nats") || len(o.URLs) == 0 {
		o.URLs = control.ParseURLs(c.String("nats"))
	}
	set("nats-user", &o.User)
	set("nats-password", &o.Password)
	set("nats-nkey", &o.NKeySeedFile)
	set("nats-creds", &o.CredsFile)
	set("nats-ca", &o.TLSCA)
	set("nats-cert", &o.TLSCert)
	set("nats-key", &o.TLSKey)
	return o
}

// natsConnect connects with the command's flags, failing at once when no
// server answers (CLI commands; the agent sets Retry).
func natsConnect(c *cli.Context, name string, log *slog.Logger) (*nats.Conn, error) {
	// With --netns (e.g. a lab's controller node) the command re-runs
	// inside that namespace; nothing was read or written before this point.
	if err := enterNetns(c); err != nil {
		return nil, err
	}
	o := natsConnectOptions(c, control.ConnectOptions{})
	o.Name, o.Log = name, log
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
	defer cancel()
	return control.Connect(ctx, o)
}

// withJetStream runs f with a JetStream context on a fresh connection and
// a 30 s deadline.
func withJetStream(f func(c *cli.Context, ctx context.Context, js jetstream.JetStream) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		nc, err := natsConnect(c, "vxdp-cli", cliLogger())
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return fmt.Errorf("jetstream: %w", err)
		}
		ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
		defer cancel()
		return f(c, ctx, js)
	}
}

// controllerFlags are the flags of controller commands that read or
// change existing records: the connection and --netns.
func controllerFlags() []cli.Flag {
	return append(natsFlags(), netnsFlag)
}

// creatorFlags are controllerFlags plus --replicas: commands that can write
// the first record (a network, a security group) create the bucket too
// when it is missing.
func creatorFlags() []cli.Flag {
	return append(controllerFlags(), &cli.IntFlag{Name: "replicas", Value: 1, EnvVars: []string{"VXDP_REPLICAS"},
		Usage: "replicas of the bucket if it must be created (3 on a three-node cluster)"})
}

// vniRangesFlag is for commands that allocate VNIs.
func vniRangesFlag() cli.Flag {
	return &cli.StringFlag{Name: "vni-ranges", Value: "1001:2000", EnvVars: []string{"VXDP_VNI_RANGES"},
		Usage: "`MIN:MAX[,MIN:MAX]` VNIs allocated to networks created without --vni (ml2 vni_ranges)"}
}

// hasFlag reports whether the running command defines flag name.
func hasFlag(c *cli.Context, name string) bool {
	return slices.ContainsFunc(c.Command.Flags, func(f cli.Flag) bool { return slices.Contains(f.Names(), name) })
}

// cliLogger logs warnings of CLI commands to stderr.
func cliLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// openController connects and binds the controller; a missing bucket is
// created with --replicas.
func openController(c *cli.Context) (*control.Controller, func(), error) {
	log := cliLogger()
	var ranges []control.VNIRange
	if hasFlag(c, "vni-ranges") {
		r, err := control.ParseVNIRanges(c.String("vni-ranges"))
		if err != nil {
			return nil, nil, fmt.Errorf("--vni-ranges: %w", err)
		}
		ranges = r
	}
	nc, err := natsConnect(c, "vxdp-cli", log)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	if _, err := js.KeyValue(ctx, c.String("bucket")); errors.Is(err, jetstream.ErrBucketNotFound) && hasFlag(c, "replicas") {
		if _, err := control.EnsureBucket(ctx, js, control.BucketOptions{Name: c.String("bucket"), Replicas: c.Int("replicas")}); err != nil {
			nc.Close()
			return nil, nil, err
		}
		fmt.Fprintf(os.Stderr, "created bucket %s with %d replica(s)\n", c.String("bucket"), c.Int("replicas"))
	}
	ctl, err := control.NewController(ctx, nc, control.ControllerOptions{Bucket: c.String("bucket"), VNIRanges: ranges, Log: log})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return ctl, nc.Close, nil
}

// withController runs f with a controller and reports its error.
func withController(f func(c *cli.Context, ctl *control.Controller) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		// Flags after the arguments (--nats, --netns...) must count before
		// connecting, not only when f reads its arguments.
		if _, err := positional(c); err != nil {
			return err
		}
		ctl, closeFn, err := openController(c)
		if err != nil {
			return err
		}
		defer closeFn()
		return f(c, ctl)
	}
}

// repeatable is a flag value collecting every occurrence as is; unlike
// cli.StringSliceFlag it does not split on commas ("IP,MAC" is one value).
type repeatable struct{ values []string }

// Set adds one occurrence.
func (r *repeatable) Set(v string) error { r.values = append(r.values, v); return nil }

func (r *repeatable) String() string { return strings.Join(r.values, " ") }

// repeatableFlag is a flag that may be given several times.
func repeatableFlag(name, usage string, aliases ...string) *cli.GenericFlag {
	return &cli.GenericFlag{Name: name, Aliases: aliases, Usage: usage, Value: &repeatable{}}
}

// repeated returns the values of a repeatableFlag.
func repeated(c *cli.Context, name string) []string {
	if r, ok := c.Generic(name).(*repeatable); ok && r != nil {
		return r.values
	}
	return nil
}

// positional returns the positional arguments and applies the flags that
// follow them: urfave/cli stops parsing flags at the first argument, and
// operators write `network create NAME --vni 100` as often as the reverse.
func positional(c *cli.Context) ([]string, error) {
	// Slice flags append: apply the trailing flags once per invocation.
	if pos, ok := c.Context.Value(positionalKey{}).([]string); ok {
		return pos, nil
	}
	pos, err := applyTrailingFlags(c)
	if err == nil {
		c.Context = context.WithValue(c.Context, positionalKey{}, pos)
	}
	return pos, err
}

type positionalKey struct{}

func applyTrailingFlags(c *cli.Context) ([]string, error) {
	var pos []string
	var trailing []cli.Flag
	args := c.Args().Slice()
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		var flag cli.Flag
		for _, f := range c.Command.Flags {
			for _, n := range f.Names() {
				if n == name {
					flag = f
				}
			}
		}
		if flag == nil {
			return nil, fmt.Errorf("%s: unknown flag %s (see --help)", c.Command.FullName(), a)
		}
		if _, isBool := flag.(*cli.BoolFlag); isBool && !hasVal {
			val = "true"
		} else if !hasVal {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("%s: flag %s needs a value", c.Command.FullName(), a)
			}
			i++
			val = args[i]
		}
		if err := c.Set(flag.Names()[0], val); err != nil {
			return nil, fmt.Errorf("%s: %s %q: %w", c.Command.FullName(), a, val, err)
		}
		trailing = append(trailing, flag)
	}
	// urfave/cli ran the actions (checks) of the leading flags only.
	for _, f := range trailing {
		if af, ok := f.(cli.ActionableFlag); ok {
			if err := af.RunAction(c); err != nil {
				return nil, err
			}
		}
	}
	return pos, nil
}

// oneArg returns the single positional argument (flags may follow it).
func oneArg(c *cli.Context, what string) (string, error) {
	pos, err := positional(c)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", fmt.Errorf("%s: want exactly one %s, got %d: %q", c.Command.FullName(), what, len(pos), pos)
	}
	return pos[0], nil
}

// need fails when a required flag is missing (checked after positional,
// so that it may come after the arguments).
func need(c *cli.Context, flags ...string) error {
	for _, f := range flags {
		if c.String(f) == "" {
			return fmt.Errorf("%s: --%s is required", c.Command.FullName(), f)
		}
	}
	return nil
}
