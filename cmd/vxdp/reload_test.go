package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestReloadSettings: SIGHUP's re-read takes the log level at once, names
// the settings that wait for a restart (keeping the running ones), and
// refuses a broken file without changing anything.
func TestReloadSettings(t *testing.T) {
	ini := filepath.Join(t.TempDir(), "vxdp-agent.ini")
	write := func(content string) {
		if err := os.WriteFile(ini, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("[DEFAULT]\nhost = node3\n[vxlan]\nlocal_ip = 192.168.248.3\n[nats]\nservers = nats://10.30.1.208:4222\n")
	var logs bytes.Buffer
	level := new(slog.LevelVar)
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: level}))

	steps := func(c *cli.Context) error {
		cur, err := agentSettingsFrom(c, log)
		if err != nil {
			return err
		}
		// debug on, a new VTEP address and NATS server.
		write("[DEFAULT]\nhost = node3\ndebug = true\n[vxlan]\nlocal_ip = 192.168.248.33\n[nats]\nservers = nats://10.30.1.209:4222\n")
		got := reloadSettings(c, cur, level, log)
		if level.Level() != slog.LevelDebug {
			t.Errorf("log level %v after reload with debug = true, want debug", level.Level())
		}
		if got != cur {
			t.Error("reload replaced the running settings although they need a restart")
		}
		out := logs.String()
		for _, want := range []string{"take effect only when the agent restarts", "[nats] servers", "[vxlan] local_ip"} {
			if !strings.Contains(out, want) {
				t.Errorf("reload log lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "[agent] report_interval") {
			t.Errorf("reload reports an unchanged setting:\n%s", out)
		}
		// A broken file changes nothing.
		logs.Reset()
		write("[DEFAULT\nhost = node3\n")
		if got := reloadSettings(c, cur, level, log); got != cur || level.Level() != slog.LevelDebug {
			t.Error("a broken configuration changed the running settings")
		}
		if !strings.Contains(logs.String(), "configuration refused, nothing changed") || !strings.Contains(logs.String(), ini+":1:") {
			t.Errorf("broken configuration not reported with its line:\n%s", logs.String())
		}
		return nil
	}
	app := newApp()
	for _, cmd := range app.Commands {
		if cmd.Name == "agent" {
			cmd.Action = steps
		}
	}
	if err := app.RunContext(context.Background(), []string{"vxdp", "agent", "--config", ini}); err != nil {
		t.Fatal(err)
	}
}
