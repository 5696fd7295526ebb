// Package natsd runs the NATS server of the vxdp control plane: an embedded
// nats-server with JetStream and a store directory, standalone on one
// machine or as a member of a cluster, optionally with per-host users whose
// permissions come from control.AgentPermissions / ControllerPermissions,
// and the broker (control.Broker) that answers the agents' requests.
//
// Start runs it in-process (tests, the lab); StartProcess runs `vxdp server`
// as a child process and waits until it serves clients.
package natsd

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/vxdp/vxdp/control"
)

// Role is what a user may do.
type Role string

// Roles of users.
const (
	RoleController Role = "controller" // writes networks, ports, security groups
	RoleAgent      Role = "agent"      // talks only to the broker, on its own host's subjects
)

// User is one NATS user of the control plane.
type User struct {
	Name     string `json:"user"`
	Password string `json:"password"`
	Role     Role   `json:"role"`
	// Host is the host an agent user speaks for (RoleAgent only).
	Host string `json:"host,omitempty"`
}

// Options configure the server.
type Options struct {
	// Name of the server; unique in a cluster (default: derived from Listen).
	Name string
	// Listen is host:port for clients (default 127.0.0.1:4222; port 0 picks a free one).
	Listen string
	// StoreDir is the JetStream store directory (required).
	StoreDir string
	// Cluster is the cluster name; empty runs standalone.
	Cluster string
	// ClusterListen is host:port for routes from the other members.
	ClusterListen string
	// Routes are the route URLs of the other members (nats-route://host:port).
	Routes []string
	// Domain is the server's JetStream domain. Core members that accept
	// leafnodes need one (all the same), so that a leafnode can mirror
	// their bucket; a leafnode has its own.
	Domain string
	// LeafListen is host:port for leafnode connections (core members).
	LeafListen string
	// Leaf makes the server a leafnode of a core cluster: the URLs of its
	// members' leafnode listeners (nats-leaf://[user:password@]host:port).
	Leaf []string
	// Users, when set, turn on authorization with per-role permissions.
	Users []User
	// Bucket the permissions refer to (default control.DefaultBucket).
	Bucket string
	// TLSCert and TLSKey serve clients over TLS; TLSCA verifies client
	// certificates when set.
	TLSCert, TLSKey, TLSCA string
	// MaxMemory and MaxStore bound JetStream resources (0 = server default).
	MaxMemory, MaxStore int64
	// Broker configures the broker run next to the server; NoBroker runs
	// none (another process runs it: `vxdp server broker`).
	Broker   control.BrokerOptions
	NoBroker bool
	// Log receives the server's log (default: discarded below Warn).
	Log *slog.Logger
}

// Server is a running embedded NATS server.
type Server struct {
	ns       *server.Server
	internal User // used by Connect when authorization is on
	authOn   bool
	// stopBroker ends the broker and waits for it.
	stopBroker func()
	broker     *control.Broker
}

// Start runs a NATS server with JetStream in this process and waits until
// it accepts clients.
func Start(ctx context.Context, o Options) (*Server, error) {
	opts, internal, err := serverOptions(o)
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ns.SetLoggerV2(&slogAdapter{log: log}, false, false, false)
	go ns.Start()
	deadline := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		deadline = time.Until(d)
	}
	if !ns.ReadyForConnections(deadline) {
		ns.Shutdown()
		return nil, fmt.Errorf("nats server on %s: not ready after %s", o.Listen, deadline)
	}
	s := &Server{ns: ns, internal: internal, authOn: len(o.Users) > 0, stopBroker: func() {}}
	if !o.NoBroker {
		if err := s.startBroker(o, log); err != nil {
			s.Shutdown()
			return nil, err
		}
	}
	return s, nil
}

// startBroker runs the broker on a privileged in-process connection; it
// serves once the bucket exists.
func (s *Server) startBroker(o Options, log *slog.Logger) error {
	bo := o.Broker
	if bo.Bucket == "" {
		bo.Bucket = o.Bucket
	}
	if bo.Log == nil {
		bo.Log = log
	}
	nc, err := s.Connect()
	if err != nil {
		return err
	}
	b, err := control.NewBroker(nc, bo)
	if err != nil {
		nc.Close()
		return err
	}
	s.broker = b
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := b.Run(ctx); err != nil {
			log.Error("broker stopped", "err", err)
		}
	}()
	s.stopBroker = sync.OnceFunc(func() {
		cancel()
		<-done
		nc.Close()
	})
	return nil
}

func serverOptions(o Options) (*server.Options, User, error) {
	var internal User
	if o.StoreDir == "" {
		return nil, internal, errors.New("nats server: a JetStream store directory is required")
	}
	listen := o.Listen
	if listen == "" {
		listen = "127.0.0.1:4222"
	}
	host, port, err := splitHostPort(listen)
	if err != nil {
		return nil, internal, fmt.Errorf("nats server listen address: %w", err)
	}
	name := o.Name
	if name == "" {
		name = "vxdp-" + strings.NewReplacer(":", "-", ".", "-").Replace(listen)
	}
	opts := &server.Options{
		ServerName:         name,
		Host:               host,
		Port:               port,
		JetStream:          true,
		StoreDir:           o.StoreDir,
		JetStreamMaxMemory: o.MaxMemory,
		JetStreamMaxStore:  o.MaxStore,
		NoSigs:             true,
		MaxPayload:         1 << 20,
		// An agent needs a few subscriptions; a hostile one must not make
		// the server hold millions.
		MaxSubs: 10_000,
		// One consumer per agent: no per-stream default limit (1000).
		JetStreamLimits: server.JSLimitOpts{DefaultMaxConsumers: -1},
	}
	if port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	if o.Cluster != "" {
		if o.ClusterListen == "" {
			return nil, internal, errors.New("nats server: a cluster member needs a cluster listen address")
		}
		ch, cp, err := splitHostPort(o.ClusterListen)
		if err != nil {
			return nil, internal, fmt.Errorf("nats cluster listen address: %w", err)
		}
		opts.Cluster = server.ClusterOpts{Name: o.Cluster, Host: ch, Port: cp}
		for _, r := range o.Routes {
			u, err := url.Parse(r)
			if err != nil || u.Host == "" {
				return nil, internal, fmt.Errorf("nats cluster route %q: want nats-route://host:port", r)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	if err := leafOptions(o, opts); err != nil {
		return nil, internal, err
	}
	if o.TLSCert != "" || o.TLSKey != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: o.TLSCert, KeyFile: o.TLSKey, CaFile: o.TLSCA, Verify: o.TLSCA != ""})
		if err != nil {
			return nil, internal, fmt.Errorf("nats server tls: %w", err)
		}
		opts.TLSConfig = tc
		opts.TLSVerify = o.TLSCA != ""
	}
	if len(o.Users) > 0 {
		bucket := o.Bucket
		if bucket == "" {
			bucket = control.DefaultBucket
		}
		internal = User{Name: "vxdp-server-" + randomHex(4), Password: randomHex(16), Role: RoleController}
		for _, u := range append(o.Users, internal) {
			su, err := serverUser(bucket, u)
			if err != nil {
				return nil, internal, err
			}
			opts.Users = append(opts.Users, su)
		}
	}
	return opts, internal, nil
}

// leafOptions sets the JetStream domain and the leafnode side of o.
func leafOptions(o Options, opts *server.Options) error {
	opts.JetStreamDomain = o.Domain
	if (o.LeafListen != "" || len(o.Leaf) > 0) && o.Domain == "" {
		return errors.New("nats server: leafnodes need a JetStream domain on both sides (core and leaf)")
	}
	if o.LeafListen != "" {
		h, p, err := splitHostPort(o.LeafListen)
		if err != nil {
			return fmt.Errorf("nats leafnode listen address: %w", err)
		}
		opts.LeafNode.Host, opts.LeafNode.Port = h, p
	}
	if len(o.Leaf) > 0 {
		// Each side's brokers serve their own agents: a leafnode's agents
		// read the leaf's mirror, and a broker reading the core's bucket
		// (or the reverse) could be ahead of what they read. Direct gets
		// stay on their side too: the leaf's mirror answers them
		// (MirrorDirect) and lags the core, so a controller on the core
		// reading what it just wrote could be told it is not there.
		bucket := cmp.Or(o.Bucket, control.DefaultBucket)
		api := []string{control.APIWildcard(bucket), "$JS.API.DIRECT.GET." + control.StreamName(bucket) + ".>"}
		remote := &server.RemoteLeafOpts{DenyExports: api, DenyImports: api}
		for _, r := range o.Leaf {
			u, err := url.Parse(r)
			if err != nil || u.Host == "" {
				return fmt.Errorf("nats leafnode remote %q: want nats-leaf://host:port", r)
			}
			remote.URLs = append(remote.URLs, u)
		}
		opts.LeafNode.Remotes = []*server.RemoteLeafOpts{remote}
		opts.LeafNode.ReconnectInterval = time.Second
	}
	return nil
}

func serverUser(bucket string, u User) (*server.User, error) {
	if u.Name == "" {
		return nil, errors.New("nats user: empty name")
	}
	var p control.Permissions
	switch u.Role {
	case RoleController:
		p = control.ControllerPermissions(bucket)
	case RoleAgent:
		if err := control.ValidHost(u.Host); err != nil {
			return nil, fmt.Errorf("nats user %s: %w", u.Name, err)
		}
		p = control.AgentPermissions(bucket, u.Host)
	default:
		return nil, fmt.Errorf("nats user %s: role %q, want %s or %s", u.Name, u.Role, RoleController, RoleAgent)
	}
	perms := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: p.Publish},
		Subscribe: &server.SubjectPermission{Allow: p.Subscribe},
	}
	if p.AllowResponses {
		perms.Response = &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
	}
	return &server.User{Username: u.Name, Password: u.Password, Permissions: perms}, nil
}

// BrokerReady is closed once the broker serves agents (never without one).
func (s *Server) BrokerReady() <-chan struct{} {
	if s.broker == nil {
		return nil
	}
	return s.broker.Ready()
}

// ClientURL is the URL clients connect to.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Connect opens a privileged in-process connection (the server's own
// controller user when authorization is on).
func (s *Server) Connect() (*nats.Conn, error) {
	opts := []nats.Option{nats.InProcessServer(s.ns), nats.Name("vxdp-server"), nats.MaxReconnects(-1)}
	if s.authOn {
		opts = append(opts, nats.UserInfo(s.internal.Name, s.internal.Password))
	}
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to embedded nats: %w", err)
	}
	return nc, nil
}

// Shutdown stops the broker and the server and waits until they are down.
func (s *Server) Shutdown() {
	s.stopBroker()
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// LoadUsers reads a users file: {"users": [{"user": "node3", "password":
// "...", "role": "agent", "host": "node3"}, {"user": "controller", ...,
// "role": "controller"}]}.
func LoadUsers(path string) ([]User, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read users: %w", err)
	}
	var f struct {
		Users []User `json:"users"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i, u := range f.Users {
		if _, err := serverUser(control.DefaultBucket, u); err != nil {
			return nil, fmt.Errorf("%s: users[%d]: %w", path, i, err)
		}
	}
	return f.Users, nil
}

// AuthorizationConfig renders the users as a nats-server configuration
// "authorization" block, for an existing cluster run with its own config.
func AuthorizationConfig(bucket string, users []User) (string, error) {
	if bucket == "" {
		bucket = control.DefaultBucket
	}
	var b strings.Builder
	b.WriteString("authorization {\n  users = [\n")
	for _, u := range users {
		su, err := serverUser(bucket, u)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "    # %s", u.Role)
		if u.Host != "" {
			fmt.Fprintf(&b, " of host %s", u.Host)
		}
		fmt.Fprintf(&b, "\n    { user: %q, password: %q, permissions: {\n", su.Username, su.Password)
		fmt.Fprintf(&b, "        publish: { allow: %s }\n", quoteList(su.Permissions.Publish.Allow))
		fmt.Fprintf(&b, "        subscribe: { allow: %s }\n", quoteList(su.Permissions.Subscribe.Allow))
		if su.Permissions.Response != nil {
			b.WriteString("        allow_responses: true\n")
		}
		b.WriteString("      } }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String(), nil
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = strconv.Quote(v)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func splitHostPort(hp string) (string, int, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q: want 0-65535", p)
	}
	return h, port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for
// cluster members whose route addresses must be known before they start.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// slogAdapter is nats-server's Logger on top of slog.
type slogAdapter struct{ log *slog.Logger }

// Noticef logs at Info.
func (a *slogAdapter) Noticef(format string, v ...any) {
	a.log.Info(fmt.Sprintf(format, v...), "component", "nats")
}

// Warnf logs at Warn.
func (a *slogAdapter) Warnf(format string, v ...any) {
	a.log.Warn(fmt.Sprintf(format, v...), "component", "nats")
}

// Fatalf logs at Error (the embedded server never exits the process).
func (a *slogAdapter) Fatalf(format string, v ...any) {
	a.log.Error(fmt.Sprintf(format, v...), "component", "nats")
}

// Errorf logs at Error.
func (a *slogAdapter) Errorf(format string, v ...any) {
	a.log.Error(fmt.Sprintf(format, v...), "component", "nats")
}

// Debugf logs at Debug.
func (a *slogAdapter) Debugf(format string, v ...any) {
	a.log.Debug(fmt.Sprintf(format, v...), "component", "nats")
}

// Tracef logs at Debug.
func (a *slogAdapter) Tracef(format string, v ...any) {
	a.log.Debug(fmt.Sprintf(format, v...), "component", "nats")
}
