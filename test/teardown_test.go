package test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vxdp/vxdp/lab"
	"github.com/vxdp/vxdp/state"
)

// TestTeardown: `vxdp agent --cleanup` removes what one agent installed,
// and the lab's teardown removes every namespace, link, pin, process and
// file of the lab, and can run twice.
func TestTeardown(t *testing.T) {
	requireRoot(t)
	cfg := labConfig(t, lab.Config{SecondNetwork: true, Rogue: true, VIP: true, Provider: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, cfg, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() }) // safety net if an assertion below stops the test

	left := lab.Leftovers(l.Config)
	for _, want := range []string{"netns " + l.NS("node3"), "pins " + l.PinDir("node3"), "agent " + l.Instance("node3")} {
		if !slices.ContainsFunc(left, func(s string) bool { return strings.HasPrefix(s, want) }) {
			t.Fatalf("a running lab should show %q among its objects: %v", want, left)
		}
	}

	// One agent's own cleanup.
	if err := l.StopAgent("node3"); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(l.Binary, "agent", "--cleanup", "--instance", l.Instance("node3"), "--netns", l.NS("node3"),
		"--bpffs", l.BPFFS, "--state-dir", l.StateDir("node3")).CombinedOutput()
	if err != nil {
		t.Fatalf("vxdp agent --cleanup: %v\n%s", err, out)
	}
	if l.PinsExist("node3") {
		t.Errorf("--cleanup left %s", l.PinDir("node3"))
	}
	links, err := lab.Links(l.NS("node3"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{state.BridgeName(lab.Net100ID), state.BridgeName(lab.Net200ID), state.VXLANName(100), state.VXLANName(200),
		state.BridgeName(lab.NetVLAN99ID), state.BridgeName(lab.NetExternalID), lab.ProviderDev + ".99"} {
		if slices.Contains(links, name) {
			t.Errorf("--cleanup left link %s in node3 (links: %v)", name, links)
		}
	}
	for _, dev := range []string{lab.VTEPDev, lab.VM2.Tap(), lab.VM3.Tap(), lab.ProviderDev, lab.ExternalDev, lab.VM5.Tap()} {
		att, err := lab.BPFAttachments(l.NS("node3"), dev)
		if err != nil {
			t.Fatal(err)
		}
		if len(att) > 0 {
			t.Errorf("--cleanup left BPF on %s: %v", dev, att)
		}
	}

	if err := l.Close(); err != nil {
		t.Fatalf("teardown: %v", err)
	}
	if left := lab.Leftovers(l.Config); len(left) > 0 {
		t.Errorf("teardown left behind: %v", left)
	}
	if _, err := os.Stat(l.Dir); err == nil {
		t.Errorf("teardown left the lab directory %s", l.Dir)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second teardown: %v", err)
	}
	if err := lab.Teardown(l.Dir, nil); err != nil {
		t.Errorf("teardown of a removed lab: %v", err)
	}
}

// Environment of TestCrashHelper, run as a child of TestTeardownAfterCrash.
const (
	crashModeEnv   = "VXDP_E2E_CRASH"
	crashPrefixEnv = "VXDP_E2E_CRASH_PREFIX"
	crashDirEnv    = "VXDP_E2E_CRASH_DIR"
)

// TestCrashHelper is not a test on its own: TestTeardownAfterCrash runs the
// test binary again with it to bring a lab up and then fail ("fail") or
// hang until killed ("kill").
func TestCrashHelper(t *testing.T) {
	mode := os.Getenv(crashModeEnv)
	if mode == "" {
		t.Skip("helper of TestTeardownAfterCrash")
	}
	cfg := lab.Config{Prefix: os.Getenv(crashPrefixEnv), Dir: os.Getenv(crashDirEnv), Binary: vxdpBinary(t)}
	switch mode {
	case "fail":
		newLab(t, cfg)
		t.Fatal("deliberate failure with the lab up")
	case "kill":
		if _, err := lab.Up(context.Background(), cfg, nil); err != nil {
			t.Fatal(err)
		}
		os.Stdout.WriteString("READY\n")
		time.Sleep(time.Minute)
	}
}

// TestTeardownAfterCrash: a test that fails with its lab up leaves nothing
// behind, and a test process killed with its lab up leaves a lab that
// Teardown removes from what is on disk alone.
func TestTeardownAfterCrash(t *testing.T) {
	requireRoot(t)
	bin := vxdpBinary(t)
	child := func(mode string) (lab.Config, *exec.Cmd) {
		cfg := labConfig(t, lab.Config{})
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), crashModeEnv+"="+mode, crashPrefixEnv+"="+cfg.Prefix, crashDirEnv+"="+cfg.Dir, binaryEnv+"="+bin)
		return cfg, cmd
	}

	t.Run("failed test", func(t *testing.T) {
		cfg, cmd := child("fail")
		t.Cleanup(func() { lab.Teardown(cfg.Dir, nil) })
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "deliberate failure") {
			t.Fatalf("helper should have failed deliberately: %v\n%s", err, out)
		}
		if left := lab.Leftovers(cfg); len(left) > 0 {
			t.Errorf("a failed test left behind: %v", left)
		}
	})

	t.Run("killed test", func(t *testing.T) {
		cfg, cmd := child("kill")
		t.Cleanup(func() { lab.Teardown(cfg.Dir, nil) })
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan bool, 1)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if sc.Text() == "READY" {
					ready <- true
				}
			}
			ready <- false
		}()
		select {
		case ok := <-ready:
			if !ok {
				cmd.Wait()
				t.Fatal("helper exited before its lab was up")
			}
		case <-time.After(time.Minute):
			t.Fatal("helper's lab did not come up")
		}
		cmd.Process.Kill()
		cmd.Wait()
		left := lab.Leftovers(cfg)
		if !slices.ContainsFunc(left, func(s string) bool { return strings.HasPrefix(s, "agent ") }) ||
			!slices.ContainsFunc(left, func(s string) bool { return strings.HasPrefix(s, "netns ") }) {
			t.Fatalf("a killed test should leave its agents and namespaces: %v", left)
		}
		if err := lab.Teardown(cfg.Dir, testWriter{t}); err != nil {
			t.Errorf("teardown from disk: %v", err)
		}
		if left := lab.Leftovers(cfg); len(left) > 0 {
			t.Errorf("teardown from disk left behind: %v", left)
		}
	})
}
