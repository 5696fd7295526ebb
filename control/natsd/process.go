package natsd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Process is `vxdp server` running as a child process.
type Process struct {
	cmd  *exec.Cmd
	url  string
	done chan error
}

// Args are the `vxdp server` arguments that run a server with o, writing
// its client URL to readyFile once it serves clients. Users are not passed
// (write a users file and add "--users FILE").
func Args(o Options, readyFile string) []string {
	args := []string{"server", "--store", o.StoreDir}
	if o.Listen != "" {
		args = append(args, "--listen", o.Listen)
	}
	if o.Name != "" {
		args = append(args, "--name", o.Name)
	}
	if o.Cluster != "" {
		args = append(args, "--cluster", o.Cluster, "--cluster-listen", o.ClusterListen)
		if len(o.Routes) > 0 {
			args = append(args, "--routes", strings.Join(o.Routes, ","))
		}
	}
	if o.Domain != "" {
		args = append(args, "--domain", o.Domain)
	}
	if o.LeafListen != "" {
		args = append(args, "--leaf-listen", o.LeafListen)
	}
	if len(o.Leaf) > 0 {
		args = append(args, "--leaf", strings.Join(o.Leaf, ","))
	}
	if o.TLSCert != "" {
		args = append(args, "--tls-cert", o.TLSCert, "--tls-key", o.TLSKey)
		if o.TLSCA != "" {
			args = append(args, "--tls-ca", o.TLSCA)
		}
	}
	if readyFile != "" {
		args = append(args, "--ready-file", readyFile)
	}
	return args
}

// ReadyInfo is what `vxdp server --ready-file` writes once it serves clients.
type ReadyInfo struct {
	URL string `json:"url"`
	PID int    `json:"pid"`
}

// WriteReadyFile writes info atomically (write + rename) so a reader never
// sees half of it.
func WriteReadyFile(path string, info ReadyInfo) error {
	raw, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("ready file: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		return fmt.Errorf("ready file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("ready file: %w", err)
	}
	return nil
}

// StartProcess runs `binary server ...` (binary is the vxdp executable,
// extra are further arguments such as "--users", file) and waits until it
// serves clients or ctx ends.
func StartProcess(ctx context.Context, binary string, o Options, extra ...string) (*Process, error) {
	if o.StoreDir == "" {
		return nil, errors.New("nats server process: a JetStream store directory is required")
	}
	if err := os.MkdirAll(o.StoreDir, 0o750); err != nil {
		return nil, fmt.Errorf("nats server process: %w", err)
	}
	ready := filepath.Join(o.StoreDir, "ready.json")
	_ = os.Remove(ready)
	cmd := exec.Command(binary, append(Args(o, ready), extra...)...)
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s server: %w", binary, err)
	}
	p := &Process{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-p.done:
			p.done <- err
			return nil, fmt.Errorf("%s server exited before serving clients: %v", binary, err)
		case <-ctx.Done():
			p.Stop()
			return nil, fmt.Errorf("%s server: %w", binary, ctx.Err())
		case <-tick.C:
			raw, err := os.ReadFile(ready)
			if err != nil {
				continue
			}
			var info ReadyInfo
			if json.Unmarshal(raw, &info) == nil && info.URL != "" {
				p.url = info.URL
				return p, nil
			}
		}
	}
}

// ClientURL is the URL clients connect to.
func (p *Process) ClientURL() string { return p.url }

// Stop terminates the server (SIGTERM, then SIGKILL after 10s) and waits.
func (p *Process) Stop() {
	if p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		p.done <- <-p.done
	}
}

// Kill kills the server (SIGKILL: a crashed node) and waits for it.
func (p *Process) Kill() {
	if p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	err := <-p.done
	p.done <- err
}

// PID is the server's process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }
