package natsd

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/vxdp/vxdp/control"
)

// The test binary doubles as a minimal `vxdp server` for StartProcess:
// with VXDP_NATSD_CHILD=1 it serves the arguments Args builds.
func TestMain(m *testing.M) {
	if os.Getenv("VXDP_NATSD_CHILD") == "1" {
		os.Exit(childServer(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func childServer(args []string) int {
	if len(args) == 0 || args[0] != "server" {
		fmt.Fprintln(os.Stderr, "want: server ...")
		return 2
	}
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	store := fs.String("store", "", "")
	listen := fs.String("listen", "", "")
	ready := fs.String("ready-file", "", "")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	s, err := Start(ctx, Options{StoreDir: *store, Listen: *listen})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Shutdown()
	if err := WriteReadyFile(*ready, ReadyInfo{URL: s.ClientURL(), PID: os.Getpid()}); err != nil {
		return 1
	}
	<-ctx.Done()
	return 0
}

func TestStartProcess(t *testing.T) {
	t.Setenv("VXDP_NATSD_CHILD", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := StartProcess(ctx, os.Args[0], Options{Listen: "127.0.0.1:0", StoreDir: filepath.Join(t.TempDir(), "store")})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	nc, err := nats.Connect(p.ClientURL())
	if err != nil {
		t.Fatalf("connect to the child at %s: %v", p.ClientURL(), err)
	}
	nc.Close()
	p.Stop()
	if _, err := nats.Connect(p.ClientURL(), nats.Timeout(time.Second)); err == nil {
		t.Error("server still up after Stop")
	}
}

func TestArgs(t *testing.T) {
	got := strings.Join(Args(Options{StoreDir: "/s", Listen: "0.0.0.0:4222", Name: "n1", Cluster: "vxdp", ClusterListen: "0.0.0.0:6222",
		Routes: []string{"nats-route://a:6222", "nats-route://b:6222"}}, "/r"), " ")
	want := "server --store /s --listen 0.0.0.0:4222 --name n1 --cluster vxdp --cluster-listen 0.0.0.0:6222 --routes nats-route://a:6222,nats-route://b:6222 --ready-file /r"
	if got != want {
		t.Errorf("args %q\nwant %q", got, want)
	}
}

func TestOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no store", Options{}, "store directory is required"},
		{"bad listen", Options{StoreDir: "/tmp/x", Listen: "4222"}, "listen address"},
		{"cluster without listen", Options{StoreDir: "/tmp/x", Cluster: "c"}, "cluster listen address"},
		{"bad route", Options{StoreDir: "/tmp/x", Cluster: "c", ClusterListen: "127.0.0.1:0", Routes: []string{"::"}}, "want nats-route://host:port"},
		{"bad role", Options{StoreDir: "/tmp/x", Users: []User{{Name: "a", Role: "admin"}}}, `role "admin"`},
		{"agent without host", Options{StoreDir: "/tmp/x", Users: []User{{Name: "a", Role: RoleAgent}}}, "invalid host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := serverOptions(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// The users file becomes an authorization block a hand-configured
// nats-server accepts, with the same permissions vxdp server applies: an
// agent reaches only its broker subjects and its own inbox.
func TestLoadUsers(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "users.json")
	if err := os.WriteFile(f, []byte(`{"users":[{"user":"node3","password":"p","role":"agent","host":"node3.example.com"},
		{"user":"ctl","password":"c","role":"controller"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	users, err := LoadUsers(f)
	if err != nil || len(users) != 2 || users[0].Host != "node3.example.com" {
		t.Fatalf("users %+v, %v", users, err)
	}
	conf, err := AuthorizationConfig("", users)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"vxdp.vxdp.api.node3_example_com.>"`, `"_INBOX_node3_example_com.>"`, "allow_responses: true"} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %s:\n%s", want, conf)
		}
	}
	file := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(file, []byte("listen: 127.0.0.1:-1\n"+conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("nats-server refuses the block: %v\n%s", err, conf)
	}
	for i, u := range opts.Users {
		want, err := serverUser(control.DefaultBucket, users[i])
		if err != nil {
			t.Fatal(err)
		}
		got, exp := u.Permissions, want.Permissions
		if !slices.Equal(got.Publish.Allow, exp.Publish.Allow) || !slices.Equal(got.Subscribe.Allow, exp.Subscribe.Allow) || (got.Response == nil) != (exp.Response == nil) {
			t.Errorf("user %s: parsed permissions %+v, vxdp server applies %+v", u.Username, got, exp)
		}
		for _, s := range got.Publish.Allow {
			if users[i].Role == RoleAgent && (strings.HasPrefix(s, "$KV.") || strings.HasPrefix(s, "$JS.API")) {
				t.Errorf("agent may publish %s", s)
			}
		}
	}
}
