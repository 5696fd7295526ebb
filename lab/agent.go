package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ControlPlane gives the agents their desired state: state files
// (FileControl) or the NATS control plane (NATSControl). The lab starts
// every agent the same way and appends AgentArgs.
type ControlPlane interface {
	// Start brings the control plane up, before the agents start.
	Start(ctx context.Context) error
	// Publish makes the lab's networks and ports the desired state.
	Publish(ctx context.Context) error
	// AgentArgs are the agent flags that point it at its state.
	AgentArgs(node string) []string
}

// FileControl is the file mode: one JSON state file per node, read (and
// watched) by the agent with --state, written as l2population would push it.
type FileControl struct{ l *Lab }

func (f *FileControl) Start(context.Context) error { return nil }

// Publish writes the desired state of every node with a new revision.
func (f *FileControl) Publish(context.Context) error {
	l := f.l
	l.mu.Lock()
	l.revision++
	rev := l.revision
	l.mu.Unlock()
	for _, n := range Nodes {
		d := l.DesiredState(n)
		d.Revision = rev
		if err := d.Validate(); err != nil {
			return fmt.Errorf("state of %s: %w", n, err)
		}
		l.recordPaths(l.StateFile(n), l.StateFile(n)+".tmp")
		if err := l.writeManifest(); err != nil {
			return err
		}
		if err := writeJSON(l.StateFile(n), d); err != nil {
			return err
		}
	}
	return nil
}

func (f *FileControl) AgentArgs(node string) []string {
	return []string{"--state", f.l.StateFile(node)}
}

// agent is a running agent: our child (cmd set) or found from the manifest.
type agent struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // exit status once done is closed

	pid     int
	start   uint64 // start time of pid (clock ticks since boot)
	proc    *os.Process
	started time.Time
}

func (a *agent) running() bool {
	if a == nil {
		return false
	}
	if a.done != nil {
		select {
		case <-a.done:
			return false
		default:
			return true
		}
	}
	return a.proc.Signal(syscall.Signal(0)) == nil
}

// AgentCommand is the command line of node's agent (without the binary).
func (l *Lab) AgentCommand(node string) []string {
	args := []string{"agent"}
	args = append(args, l.control.AgentArgs(node)...)
	args = append(args,
		"--local-ip", l.VTEP(node).String(),
		"--netns", l.NS(node),
		"--instance", l.Instance(node),
		"--state-dir", l.StateDir(node),
		"--dataplane", l.DataplaneOf(node),
		"--bpffs", l.BPFFS,
	)
	if l.Provider {
		args = append(args, "--physical-interface-mappings", ProviderMappings)
	}
	return append(args, l.AgentArgs...)
}

// StartAgents starts one agent per node (in a benchmark mode, wires the
// nodes instead).
func (l *Lab) StartAgents() error {
	if l.Mode != "" {
		return l.wireMode() // a benchmark mode: no agents
	}
	for _, n := range Nodes {
		if err := l.StartAgent(n); err != nil {
			return err
		}
	}
	return nil
}

// StartAgent starts node's agent, logging (appending) to LogFile(node). It
// runs in its own session so it outlives `vxdp lab up`.
func (l *Lab) StartAgent(node string) error {
	a, err := l.spawn(node, l.AgentCommand(node), l.LogFile(node))
	if err != nil {
		return fmt.Errorf("start agent of %s: %w", node, err)
	}
	fmt.Fprintf(l.log, "started agent %s (pid %d, %s dataplane), log %s\n", l.Instance(node), a.pid, l.DataplaneOf(node), l.LogFile(node))
	return l.writeManifest()
}

// spawn starts `vxdp args...` as process key (a node's agent, or the NATS
// server), in its own session, appending its output to logPath. What the
// process will make (processPaths) is recorded first, the process once it
// runs.
func (l *Lab) spawn(key string, args []string, logPath string) (*agent, error) {
	if l.Binary == "" {
		return nil, errors.New("lab: no vxdp binary to run")
	}
	return l.spawnExec(key, l.Binary, args, logPath)
}

// spawnExec starts exe as process key (see spawn).
func (l *Lab) spawnExec(key, exe string, args []string, logPath string) (*agent, error) {
	l.mu.Lock()
	running := l.agents[key].running()
	l.mu.Unlock()
	if running {
		return nil, fmt.Errorf("%s is already running", key)
	}
	if vxdpDir := filepath.Join(l.BPFFS, "vxdp"); slices.Contains(Nodes, key) && !exists(vxdpDir) {
		l.record(func(m *Manifest) {
			if !slices.Contains(m.EmptyDirs, vxdpDir) {
				m.EmptyDirs = append(m.EmptyDirs, vxdpDir)
			}
		})
	}
	l.recordPaths(l.processPaths(key)...)
	if err := l.writeManifest(); err != nil {
		return nil, err
	}
	if slices.Contains(Nodes, key) {
		if err := os.MkdirAll(l.StateDir(key), 0o755); err != nil {
			return nil, err
		}
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== %s lab: %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), exe, strings.Join(args, " "))
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// Taken before the start: a fast agent may apply before Start returns.
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	a := &agent{cmd: cmd, done: make(chan struct{}), pid: cmd.Process.Pid, proc: cmd.Process, started: started}
	a.start, _ = procStart(a.pid)
	go func() {
		a.err = cmd.Wait()
		close(a.done)
	}()
	l.mu.Lock()
	l.agents[key] = a
	l.mu.Unlock()
	return a, nil
}

// StopAgent sends SIGTERM to node's agent and waits for it to exit (SIGKILL
// after 10 s). The agent leaves its dataplane installed. Stopping an agent
// that does not run is not an error.
func (l *Lab) StopAgent(node string) error {
	a := l.forget(node)
	if !a.running() {
		return nil
	}
	err := stopProcess(a, 10*time.Second)
	if merr := l.writeManifest(); merr != nil && err == nil {
		err = merr
	}
	return err
}

// KillAgent kills node's agent with SIGKILL (a crash).
func (l *Lab) KillAgent(node string) error {
	a := l.forget(node)
	if !a.running() {
		return nil
	}
	_ = a.proc.Kill()
	waitExit(a, 5*time.Second)
	return l.writeManifest()
}

// forget removes node's process from the lab's books and returns it.
func (l *Lab) forget(node string) *agent {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.agents[node]
	delete(l.agents, node)
	return a
}

// AgentRunning reports whether node's agent runs.
func (l *Lab) AgentRunning(node string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.agents[node].running()
}

// AgentExit returns the exit error of node's agent if it has exited.
func (l *Lab) AgentExit(node string) (exited bool, err error) {
	l.mu.Lock()
	a := l.agents[node]
	l.mu.Unlock()
	if a == nil || a.done == nil {
		return false, nil
	}
	select {
	case <-a.done:
		return true, a.err
	default:
		return false, nil
	}
}

func stopProcess(a *agent, grace time.Duration) error {
	if err := a.proc.Signal(syscall.SIGTERM); err != nil {
		return nil // already gone
	}
	if waitExit(a, grace) {
		return nil
	}
	_ = a.proc.Kill()
	waitExit(a, 5*time.Second)
	return fmt.Errorf("agent pid %d ignored SIGTERM for %s, killed", a.pid, grace)
}

func waitExit(a *agent, timeout time.Duration) bool {
	if a.done != nil {
		select {
		case <-a.done:
			return true
		case <-time.After(timeout):
			return false
		}
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !isAlive(a.pid) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// isAlive reports whether pid runs (a zombie does not count).
func isAlive(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Field 3, after the parenthesised command name.
	if i := bytes.LastIndexByte(raw, ')'); i >= 0 && i+2 < len(raw) {
		return raw[i+2] != 'Z' && raw[i+2] != 'X'
	}
	return true
}

// procStart returns the start time of pid in clock ticks since boot
// (field 22 of /proc/PID/stat): with the pid, it names one process.
func procStart(pid int) (uint64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	// Fields after the name start at 3 (state); starttime is field 22.
	fields := strings.Fields(string(raw[i+1:]))
	if len(fields) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields)+2)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// cmdlineValue returns the value of flag in pid's command line ("" if none).
func cmdlineValue(pid int, flag string) string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// isAgentOf reports whether pid is a running vxdp agent of instance.
func isAgentOf(pid int, instance string) bool {
	return cmdlineMatches(pid, "agent", "--instance", instance)
}

// cmdlineMatches reports whether pid runs a vxdp subcommand (its first
// argument) with flag set to value.
func cmdlineMatches(pid int, sub, flag, value string) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !isAlive(pid) {
		return false
	}
	return cmdlineHas(raw, sub, flag, value)
}

func cmdlineHas(cmdline []byte, sub, flag, value string) bool {
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(args) < 2 || args[1] != sub {
		return false
	}
	single := "-" + strings.TrimPrefix(flag, "--")
	for i, a := range args[2:] {
		if (a == flag || a == single) && i+3 < len(args) && args[i+3] == value {
			return true
		}
		if a == flag+"="+value || a == single+"="+value {
			return true
		}
	}
	return false
}

// agentPIDs finds every running agent process of instance.
func agentPIDs(instance string) []int {
	return pidsOf(func(pid int) bool { return isAgentOf(pid, instance) })
}

// pidsOf lists the processes (other than this one) match accepts.
func pidsOf(match func(pid int) bool) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		if match(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// Applied is the agent's record of its last apply (<state-dir>/applied.json).
type Applied struct {
	Revision   uint64            `json:"revision"`
	Provenance map[string]string `json:"provenance"`
	AppliedAt  time.Time         `json:"applied_at"`
	Pending    json.RawMessage   `json:"pending"`
	Error      string            `json:"error"`
	Ops        int               `json:"ops"`
}

// hasAll reports whether the apply installed (and traced) every key.
func (a Applied) hasAll(keys []string) bool {
	for _, k := range keys {
		if _, ok := a.Provenance[k]; !ok {
			return false
		}
	}
	return true
}

// HasPending reports whether ports were waiting for their tap.
func (a Applied) HasPending() bool {
	s := strings.TrimSpace(string(a.Pending))
	return s != "" && s != "null" && s != "[]"
}

// ReadApplied reads node's applied.json.
func (l *Lab) ReadApplied(node string) (*Applied, error) {
	path := filepath.Join(l.StateDir(node), "applied.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var a Applied
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &a, nil
}

// WaitApplied waits until every running agent has applied the last
// published revision without error and with no pending port.
func (l *Lab) WaitApplied(ctx context.Context) error {
	if l.Mode != "" {
		return nil
	}
	for _, n := range Nodes {
		if err := l.WaitNodeApplied(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// WaitNodeApplied waits until node's agent has applied the lab's state
// since it was started (default timeout 30 s): every l2pop FDB entry of the
// node installed, no port pending, and in file mode the last published
// revision. A restarted agent must write a new record; the one its
// predecessor left does not count.
func (l *Lab) WaitNodeApplied(ctx context.Context, node string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	want := l.Revision()
	var since time.Time
	l.mu.Lock()
	if a := l.agents[node]; a != nil {
		since = a.started
	}
	l.mu.Unlock()
	var last *Applied
	var lastErr error
	for {
		if exited, err := l.AgentExit(node); exited {
			return fmt.Errorf("agent of %s exited (%v) before applying revision %d; log %s:\n%s", node, err, want, l.LogFile(node), l.LogTail(node, 20))
		}
		last, lastErr = l.ReadApplied(node)
		if lastErr == nil && !last.AppliedAt.Before(since) && last.Error == "" && !last.HasPending() &&
			(l.Control == ControlNATS || last.Revision >= want) && last.hasAll(l.expectedFDB(node)) {
			return nil
		}
		select {
		case <-ctx.Done():
			detail := fmt.Sprintf("%v", lastErr)
			if last != nil {
				detail = fmt.Sprintf("revision %d at %s, error %q, pending %s; agent started at %s", last.Revision,
					last.AppliedAt.Format(time.RFC3339Nano), last.Error, last.Pending, since.UTC().Format(time.RFC3339Nano))
			}
			return fmt.Errorf("agent of %s did not apply revision %d in time (last applied.json: %s); log %s:\n%s",
				node, want, detail, l.LogFile(node), l.LogTail(node, 20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// LogTail returns the last n lines of node's agent log.
func (l *Lab) LogTail(node string, n int) string {
	raw, _ := os.ReadFile(l.LogFile(node))
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// AgentPID returns the pid of node's running agent, 0 if it does not run.
func (l *Lab) AgentPID(node string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a := l.agents[node]; a.running() {
		return a.pid
	}
	return 0
}
