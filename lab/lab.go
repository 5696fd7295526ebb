package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ManifestFile is the record of a lab in its directory.
const ManifestFile = "lab.json"

// Manifest is what a lab writes to its directory before it makes anything,
// so Teardown works from disk alone.
type Manifest struct {
	Config  Config         `json:"config"`
	Owner   int            `json:"owner_pid"`
	Created time.Time      `json:"created"`
	Agents  map[string]int `json:"agents"` // node -> pid of its running agent
}

// Lab is a built (or being built) lab.
type Lab struct {
	Config
	control ControlPlane
	log     io.Writer

	mu       sync.Mutex
	agents   map[string]*agent
	revision uint64
	closed   bool
}

// New validates cfg, claims cfg.Dir and records the lab there. It makes
// nothing else; call Build and StartAgents (or use Up). Progress lines go
// to log (nil: discarded).
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
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab dir: %w", err)
	}
	mpath := filepath.Join(c.Dir, ManifestFile)
	if exists(mpath) {
		return nil, fmt.Errorf("%s exists: a lab is already up in %s (tear it down with `vxdp lab down --dir %s`)", mpath, c.Dir, c.Dir)
	}
	l := newLab(c, log)
	if err := l.writeManifest(); err != nil {
		return nil, err
	}
	return l, nil
}

// Up builds the lab, starts the agents and waits until each has applied
// its state. On error everything made so far is torn down.
func Up(ctx context.Context, cfg Config, log io.Writer) (*Lab, error) {
	l, err := New(cfg, log)
	if err != nil {
		return nil, err
	}
	err = l.Build()
	if err == nil {
		err = l.StartAgents()
	}
	if err == nil && !cfg.NoPublish {
		err = l.WaitApplied(ctx)
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
	if err := buildTopology(l.Config); err != nil {
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

// Close stops the agents and removes everything the lab made. It is
// idempotent.
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
	return teardown(l.Config, l.log)
}

func (l *Lab) writeManifest() error {
	m := Manifest{Config: l.Config, Owner: os.Getpid(), Created: time.Now().UTC(), Agents: map[string]int{}}
	l.mu.Lock()
	for n, a := range l.agents {
		if a.running() {
			m.Agents[n] = a.cmd.Process.Pid
		}
	}
	l.mu.Unlock()
	return writeJSON(filepath.Join(l.Dir, ManifestFile), m)
}

// ReadManifest reads the manifest of the lab in dir.
func ReadManifest(dir string) (*Manifest, error) {
	raw, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ManifestFile), err)
	}
	m.Config.Dir = dir
	return &m, nil
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
	for n, pid := range m.Agents {
		p, err := os.FindProcess(pid)
		if err != nil {
			continue
		}
		if (n == natsKey && cmdlineMatches(pid, "server", "--store", l.NATSStore())) || isAgentOf(pid, l.Instance(n)) {
			l.agents[n] = &agent{pid: pid, proc: p}
		}
	}
	return l, nil
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
