package control

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultNATSURL is where `vxdp server` listens by default.
const DefaultNATSURL = "nats://127.0.0.1:4222"

// ConnectOptions say how to reach NATS: the embedded server of `vxdp
// server` or an existing cluster, with its credentials.
type ConnectOptions struct {
	// URLs of one server or of several members of a cluster; the client
	// fails over between them.
	URLs []string
	// Name identifies the connection in server monitoring.
	Name string
	// User and Password authenticate with a user/password pair.
	User, Password string
	// NKeySeedFile is a file holding an NKey seed (SU...).
	NKeySeedFile string
	// CredsFile is a decentralised-auth .creds file (JWT + seed).
	CredsFile string
	// TLSCA verifies the server; TLSCert/TLSKey authenticate the client.
	TLSCA, TLSCert, TLSKey string
	// InboxPrefix replaces "_INBOX" for reply subjects. Agents set it to
	// InboxPrefix(host) so their credentials can be limited to it.
	InboxPrefix string
	// Retry keeps trying to connect in the background when no server is
	// reachable at start (agents: the dataplane keeps its last state);
	// without it Connect fails at once (CLI commands).
	Retry bool
	// Timeout of each connection attempt (default 5s).
	Timeout time.Duration
	// Dialer, if set, makes the TCP connections (first and reconnects),
	// e.g. inside another network namespace.
	Dialer nats.CustomDialer
	// Log receives disconnect/reconnect notices (default slog.Default()).
	Log *slog.Logger
	// OnError, if set, is also told of asynchronous errors, such as a
	// write denied by the server's permissions (a publish that breaks
	// them is dropped by the server, and the writer's request times out).
	OnError func(error)
}

// ParseURLs splits a comma- or space-separated list of NATS URLs.
func ParseURLs(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Connect opens a NATS connection. Reconnection is unlimited: an agent must
// survive outages of any length.
func Connect(ctx context.Context, o ConnectOptions) (*nats.Conn, error) {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	urls := o.URLs
	if len(urls) == 0 {
		urls = []string{DefaultNATSURL}
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.Timeout(timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.ReconnectJitter(200*time.Millisecond, time.Second),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			log.Warn("nats async error", "err", err)
			if o.OnError != nil {
				o.OnError(err)
			}
		}),
	}
	if o.Retry {
		opts = append(opts, nats.RetryOnFailedConnect(true))
	}
	if o.User != "" || o.Password != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.NKeySeedFile != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey seed %s: %w", o.NKeySeedFile, err)
		}
		opts = append(opts, opt)
	}
	if o.TLSCA != "" {
		opts = append(opts, nats.RootCAs(o.TLSCA))
	}
	if o.TLSCert != "" || o.TLSKey != "" {
		if o.TLSCert == "" || o.TLSKey == "" {
			return nil, errors.New("nats tls: a client certificate needs both a cert and a key file")
		}
		opts = append(opts, nats.ClientCert(o.TLSCert, o.TLSKey))
	}
	if o.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(o.InboxPrefix))
	}
	if o.Dialer != nil {
		opts = append(opts, nats.SetCustomDialer(o.Dialer))
	}
	type result struct {
		nc  *nats.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(strings.Join(urls, ","), opts...)
		ch <- result{nc, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("connect to nats %s: %w", strings.Join(urls, ","), r.err)
		}
		return r.nc, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("connect to nats %s: %w", strings.Join(urls, ","), ctx.Err())
	}
}

// BucketOptions configure the control-plane bucket. Zero values take the
// defaults, sized for a cloud of 10,000 hypervisors (docs/control-plane.md,
// "Limits").
type BucketOptions struct {
	// Name of the bucket (default DefaultBucket).
	Name string
	// Replicas of the bucket's stream: 1 on one machine, 3 on a
	// three-node cluster so that it survives the loss of a node.
	Replicas int
	// MaxValueSize bounds one record (default 64 KiB: a security group
	// with hundreds of rules).
	MaxValueSize int32
	// MaxBytes bounds the bucket (default 4 GiB); writes beyond it fail,
	// nothing stored is dropped.
	MaxBytes int64
	// MaxKeys bounds the number of keys, delete markers included
	// (default 10 million).
	MaxKeys int64
	// MaxConsumers bounds the consumers of the bucket's stream (default
	// 100000). Every agent holds one, briefly two, and the broker at most
	// MaxConsumersPerHost; nats-server's default limit of 1000 per stream
	// applies when a stream sets none, which would stop a fleet at a
	// thousand hosts.
	MaxConsumers int
	// Memory keeps the bucket in memory instead of on disk (tests).
	Memory bool
}

// Bucket limits by default.
const (
	DefaultMaxValueSize = 64 << 10
	DefaultMaxBytes     = 4 << 30
	DefaultMaxKeys      = 10_000_000
	DefaultMaxConsumers = 100_000
	// consumerMaxInactive bounds how long any consumer of the bucket
	// outlives its reader, durable or not.
	consumerMaxInactive = 5 * time.Minute
)

// EnsureBucket creates the control-plane bucket, or updates its replica
// count and limits (bucketConfig), and returns it.
func EnsureBucket(ctx context.Context, js jetstream.JetStream, o BucketOptions) (jetstream.KeyValue, error) {
	cfg := bucketConfig(o)
	cfg.Description = "vxdp control plane: networks, ports, security groups, agents"
	cfg.Subjects = []string{KeyPrefix(cmp.Or(o.Name, DefaultBucket)) + ">"}
	return ensureStream(ctx, js, cfg)
}

// bucketConfig is the stream of a bucket: a KV bucket's (history 1),
// with limits, and roll-up headers refused: a KV purge is never used by
// vxdp, and a writer of one key could otherwise send a "Nats-Rollup: all"
// message that wipes every key of the bucket.
func bucketConfig(o BucketOptions) jetstream.StreamConfig {
	storage := jetstream.FileStorage
	if o.Memory {
		storage = jetstream.MemoryStorage
	}
	return jetstream.StreamConfig{
		Name:              StreamName(cmp.Or(o.Name, DefaultBucket)),
		MaxMsgsPerSubject: 1,
		MaxBytes:          cmp.Or(o.MaxBytes, DefaultMaxBytes),
		MaxMsgs:           cmp.Or(o.MaxKeys, DefaultMaxKeys),
		MaxMsgSize:        cmp.Or(o.MaxValueSize, DefaultMaxValueSize),
		MaxConsumers:      cmp.Or(o.MaxConsumers, DefaultMaxConsumers),
		ConsumerLimits:    jetstream.StreamConsumerLimits{InactiveThreshold: consumerMaxInactive},
		Storage:           storage,
		Replicas:          max(o.Replicas, 1),
		AllowRollup:       false,
		DenyDelete:        true,
		AllowDirect:       true,
		Duplicates:        2 * time.Minute,
		Discard:           jetstream.DiscardNew,
	}
}

func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.KeyValue, error) {
	name := strings.TrimPrefix(cfg.Name, "KV_")
	if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
		return nil, fmt.Errorf("create bucket %s (replicas %d): %w", name, cfg.Replicas, err)
	}
	kv, err := js.KeyValue(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", name, err)
	}
	return kv, nil
}

// OpenBucket binds to an existing bucket.
func OpenBucket(ctx context.Context, js jetstream.JetStream, name string) (jetstream.KeyValue, error) {
	if name == "" {
		name = DefaultBucket
	}
	kv, err := js.KeyValue(ctx, name)
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, fmt.Errorf("open bucket %s: %w (start `vxdp server`, or create it with a controller command)", name, err)
		}
		return nil, fmt.Errorf("open bucket %s: %w", name, err)
	}
	return kv, nil
}
