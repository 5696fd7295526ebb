package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ManifestFile is the record of a lab in its directory.
const ManifestFile = "lab.json"

// manifestVersion 2 lists what the lab made; version 0 (older vxdp) only
// had the configuration and the agents' pids.
const manifestVersion = 2

// Manifest is what a lab made in the host, written to its directory as it
// makes things, so Teardown removes exactly that, from disk alone, after a
// crash too. A namespace is listed once it was created (creation is
// exclusive, so it is the lab's); paths inside the lab's own directory and
// its agents' pin directories are listed before they are made.
type Manifest struct {
	Version int       `json:"manifest_version"`
	Config  Config    `json:"config"`
	Owner   int       `json:"owner_pid"`
	Created time.Time `json:"created"`
	// Namespaces the lab created, in creation order.
	Namespaces []string `json:"namespaces"`
	// Processes the lab started and that still run.
	Processes []Process `json:"processes"`
	// Paths are files and directories the lab made (removed with their
	// content); EmptyDirs are directories it made that may be shared
	// (removed only when empty).
	Paths     []string `json:"paths"`
	EmptyDirs []string `json:"empty_dirs"`
	// Agents is node -> pid of its running agent (kept for older readers).
	Agents map[string]int `json:"agents"`
}

// Process is a process the lab started: its pid and start time (clock
// ticks since boot), so a recycled pid is never mistaken for it.
type Process struct {
	Key   string `json:"key"` // a node name, or "nats"
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// Lab is a built (or being built) lab.
type Lab struct {
	Config
	control ControlPlane
	log     io.Writer

	mu       sync.Mutex
	m        Manifest
	agents   map[string]*agent
	revision uint64
	closed   bool
	// saving serialises writeManifest: one temporary file at a time.
	saving sync.Mutex
}

// New validates cfg, claims cfg.Dir and records the lab there. It refuses
// a directory that holds a lab and a prefix whose names are in use
// (namespaces, agent instances, pin directories), and then makes nothing
// else; call Build and StartAgents (or use Up). Progress lines go to log
// (nil: discarded).
func New(cfg Config, log io.Writer) (*Lab, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = io.Discard
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("lab: needs root (network namespaces, BPF)")
	}
	if err := checkFree(c); err != nil {
		return nil, err
	}
	l := newLab(c, log)
	l.m = Manifest{Version: manifestVersion, Config: c, Owner: os.Getpid(), Created: time.Now().UTC()}
	if !exists(c.Dir) {
		l.m.EmptyDirs = append(l.m.EmptyDirs, c.Dir)
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab dir: %w", err)
	}
	// Exclusive: of two labs started on one directory, one gets it.
	f, err := os.OpenFile(filepath.Join(c.Dir, ManifestFile), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, dirInUse(c.Dir)
		}
		return nil, fmt.Errorf("lab manifest: %w", err)
	}
	f.Close()
	if err := l.writeManifest(); err != nil {
		return nil, err
	}
	return l, nil
}

// checkFree refuses a directory holding a lab and a prefix in use.
func checkFree(c Config) error {
	if exists(filepath.Join(c.Dir, ManifestFile)) {
		return dirInUse(c.Dir)
	}
	var used []string
	for _, ns := range c.Namespaces() {
		if NSExists(ns) {
			used = append(used, "namespace "+ns)
		}
	}
	holder := ""
	for _, n := range Nodes {
		for _, pid := range agentPIDs(c.Instance(n)) {
			used = append(used, fmt.Sprintf("agent %s (pid %d)", c.Instance(n), pid))
			if d := cmdlineValue(pid, "--state-dir"); d != "" && holder == "" {
				holder = filepath.Dir(d)
			}
		}
		if exists(c.PinDir(n)) {
			used = append(used, "pins "+c.PinDir(n))
		}
	}
	if len(used) == 0 {
		return nil
	}
	fix := "choose another --prefix, or tear the other lab down with `vxdp lab down --dir DIR`"
	if holder != "" {
		fix = fmt.Sprintf("choose another --prefix, or tear that lab down with `vxdp lab down --dir %s`", holder)
	}
	return fmt.Errorf("lab prefix %q is in use (%s); nothing was changed: %s", c.Prefix, strings.Join(used, ", "), fix)
}

func dirInUse(dir string) error {
	return fmt.Errorf("%s holds a lab already (%s); nothing was changed: tear it down with `vxdp lab down --dir %s`, or use another --dir",
		dir, ManifestFile, dir)
}

// Up builds the lab, starts the agents and waits until each has applied
// its state. On error everything it made is removed, and nothing else.
func Up(ctx context.Context, cfg Config, log io.Writer) (*Lab, error) {
	l, err := New(cfg, log)
	if err != nil {
		return nil, err
	}
	err = l.Build()
	if err == nil {
		err = l.StartAgents()
	}
	if err == nil {
		err = l.WaitGuest(ctx)
	}
	if err == nil && !cfg.NoPublish {
		err = l.WaitApplied(ctx)
	}
	if err == nil && !cfg.NoPublish {
		err = l.leaseAll(ctx)
	}
	if err != nil {
		if terr := l.Close(); terr != nil {
			err = errors.Join(err, fmt.Errorf("teardown: %w", terr))
		}
		return nil, err
	}
	return l, nil
}

// Build makes the namespaces and links, and publishes each node's state.
func (l *Lab) Build() error {
	if err := ensureBPFFS(l.BPFFS); err != nil {
		return err
	}
	fmt.Fprintf(l.log, "building %d namespaces with prefix %q\n", len(l.Namespaces()), l.Prefix)
	for _, ns := range l.Namespaces() {
		if err := l.createNS(ns); err != nil {
			return err
		}
	}
	if err := buildTopology(l.Config); err != nil {
		return err
	}
	if err := l.startGuest(); err != nil {
		return err
	}
	if err := l.control.Start(context.Background()); err != nil {
		return err
	}
	if l.NoPublish {
		return nil
	}
	return l.Publish()
}

// createNS creates a namespace and records it. Creation is exclusive: a
// namespace that exists is somebody else's and is left alone.
func (l *Lab) createNS(name string) error {
	err := createNS(name)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("namespace %s appeared while the lab was being built (another lab with prefix %q?); it is left alone", name, l.Prefix)
	}
	if err == nil || NSExists(name) { // made, even if setting it up failed
		l.record(func(m *Manifest) { m.Namespaces = append(m.Namespaces, name) })
		if werr := l.writeManifest(); err == nil {
			err = werr
		}
	}
	return err
}

// record changes the manifest in memory; writeManifest saves it.
func (l *Lab) record(change func(m *Manifest)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	change(&l.m)
}

// recordPaths adds paths the lab is about to make, once each.
func (l *Lab) recordPaths(paths ...string) {
	l.record(func(m *Manifest) {
		for _, p := range paths {
			if !slices.Contains(m.Paths, p) {
				m.Paths = append(m.Paths, p)
			}
		}
	})
}

// Publish makes the lab's networks and ports the desired state: state
// files with a new revision, or records in the NATS control plane.
func (l *Lab) Publish() error {
	return l.control.Publish(context.Background())
}

// Revision is the revision of the last published state.
func (l *Lab) Revision() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.revision
}

// Close stops the agents and removes everything the lab made, as its
// manifest lists it. It is idempotent.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	for _, n := range append(Nodes, natsKey) {
		if err := l.StopAgent(n); err != nil {
			fmt.Fprintf(l.log, "stop %s: %v\n", n, err)
		}
	}
	l.mu.Lock()
	m := l.m
	l.mu.Unlock()
	return teardown(&m, l.log)
}

// writeManifest saves the manifest with the processes running now.
func (l *Lab) writeManifest() error {
	l.saving.Lock()
	defer l.saving.Unlock()
	l.mu.Lock()
	l.m.Processes, l.m.Agents = nil, map[string]int{}
	for _, k := range slices.Sorted(maps.Keys(l.agents)) {
		a := l.agents[k]
		if !a.running() {
			continue
		}
		l.m.Processes = append(l.m.Processes, Process{Key: k, PID: a.pid, Start: a.start})
		if k != natsKey {
			l.m.Agents[k] = a.pid
		}
	}
	m := l.m
	l.mu.Unlock()
	return writeJSON(filepath.Join(l.Dir, ManifestFile), m)
}

// ReadManifest reads the manifest of the lab in dir.
func ReadManifest(dir string) (*Manifest, error) {
	path := filepath.Join(dir, ManifestFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("%s is empty: a lab was being created (or crashed while being created) in %s", path, dir)
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m.Config.Dir = dir
	if m.Version == 0 {
		m.fromLegacy()
	}
	return &m, nil
}

// fromLegacy fills the lists of a manifest written by an older vxdp, which
// recorded only the configuration and the agents: what that version made
// is what its configuration names and exists now.
func (m *Manifest) fromLegacy() {
	c := m.Config
	for _, ns := range c.Namespaces() {
		if NSExists(ns) {
			m.Namespaces = append(m.Namespaces, ns)
		}
	}
	for n, pid := range m.Agents {
		if isAgentOf(pid, c.Instance(n)) {
			start, _ := procStart(pid)
			m.Processes = append(m.Processes, Process{Key: n, PID: pid, Start: start})
		}
	}
	for _, pid := range natsPIDs(c) {
		start, _ := procStart(pid)
		m.Processes = append(m.Processes, Process{Key: natsKey, PID: pid, Start: start})
	}
	for _, n := range Nodes {
		m.Paths = append(m.Paths, c.processPaths(n)...)
		m.Paths = append(m.Paths, c.StateFile(n), c.StateFile(n)+".tmp")
	}
	m.Paths = append(m.Paths, c.processPaths(natsKey)...)
	m.EmptyDirs = []string{filepath.Join(c.BPFFS, "vxdp"), c.Dir}
}

// Attach returns the lab recorded in dir, e.g. for `vxdp lab status`. Its
// agents are not children of this process: they can be signalled and
// restarted, not waited for.
func Attach(dir string, log io.Writer) (*Lab, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	m, err := ReadManifest(abs)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = io.Discard
	}
	l := newLab(m.Config, log)
	l.m = *m
	for _, p := range m.Processes {
		if pr, ok := p.find(); ok {
			l.agents[p.Key] = &agent{pid: p.PID, proc: pr, start: p.Start}
		}
	}
	return l, nil
}

// find returns the process if it still runs (same pid, same start time).
func (p Process) find() (*os.Process, bool) {
	if start, err := procStart(p.PID); err != nil || start != p.Start || !isAlive(p.PID) {
		return nil, false
	}
	pr, err := os.FindProcess(p.PID)
	return pr, err == nil
}

func newLab(c Config, log io.Writer) *Lab {
	l := &Lab{Config: c, log: log, agents: map[string]*agent{}}
	if c.Control == ControlNATS {
		l.control = &NATSControl{l: l}
	} else {
		l.control = &FileControl{l: l}
	}
	return l
}

// writeJSON writes v to path atomically (temp file + rename), so a reader
// never sees a partial file.
func writeJSON(path string, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(raw, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return nil
}

// ensureBPFFS mounts a bpffs at dir unless one is there.
func ensureBPFFS(dir string) error {
	const bpffsMagic = 0xcafe4a11
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bpffs %s: %w", dir, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("bpffs %s: %w", dir, err)
	}
	if st.Type == bpffsMagic {
		return nil
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs on %s: %w", dir, err)
	}
	return nil
}
