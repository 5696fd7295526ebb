package lab

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Teardown removes the lab recorded in dir, exactly what its manifest
// lists: it stops the processes the lab started, runs `vxdp agent
// --cleanup` in each node namespace it created, deletes those namespaces
// (and with them every link), the pin directories and the files it made.
// Namespaces that merely share the prefix are reported as strays and left
// alone. It works from the manifest alone, after a crash too, and does
// nothing if dir holds no lab.
func Teardown(dir string, log io.Writer) error {
	if log == nil {
		log = io.Discard
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	m, err := ReadManifest(abs)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return teardown(m, log)
}

func teardown(m *Manifest, log io.Writer) error {
	c := m.Config
	var errs []error
	for _, p := range m.Processes {
		pr, ok := p.find()
		if !ok {
			continue // exited (or its pid is somebody else's now)
		}
		fmt.Fprintf(log, "stopping %s (pid %d)\n", p.Key, p.PID)
		if err := stopProcess(&agent{pid: p.PID, proc: pr}, 10*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	// The agents' own cleanup, inside the namespaces the lab made.
	if c.Binary != "" && exists(c.Binary) {
		for _, n := range Nodes {
			if !slices.Contains(m.Namespaces, c.NS(n)) || !NSExists(c.NS(n)) {
				continue
			}
			args := []string{"agent", "--cleanup", "--instance", c.Instance(n), "--netns", c.NS(n),
				"--bpffs", c.BPFFS, "--state-dir", c.StateDir(n)}
			out, err := exec.Command(c.Binary, args...).CombinedOutput()
			if err != nil {
				// Not fatal: the namespace goes anyway; the pins are removed below.
				fmt.Fprintf(log, "%s %s: %v\n%s", c.Binary, strings.Join(args, " "), err, out)
			}
		}
	}
	// Namespaces in creation order: the underlay first, so no frame is in
	// flight between the others.
	for _, ns := range m.Namespaces {
		if err := deleteNS(ns); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range m.Paths {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range []string{filepath.Join(c.Dir, ManifestFile+".tmp"), filepath.Join(c.Dir, ManifestFile)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for _, d := range m.EmptyDirs {
		_ = os.Remove(d) // only when nothing else is left in it
	}
	if left := m.remaining(); len(left) > 0 {
		errs = append(errs, fmt.Errorf("left behind: %s", strings.Join(left, ", ")))
	}
	for _, s := range m.strays() {
		fmt.Fprintf(log, "left alone: %s (not made by this lab)\n", s)
	}
	return errors.Join(errs...)
}

// remaining lists what the manifest records that still exists.
func (m *Manifest) remaining() []string {
	var out []string
	for _, ns := range m.Namespaces {
		if NSExists(ns) {
			out = append(out, "netns "+ns)
		}
	}
	for _, p := range m.Processes {
		if _, ok := p.find(); ok {
			out = append(out, fmt.Sprintf("%s pid %d", p.Key, p.PID))
		}
	}
	for _, p := range m.Paths {
		if exists(p) {
			out = append(out, "file "+p)
		}
	}
	return out
}

// strays are namespaces named with the lab's prefix that it did not make.
func (m *Manifest) strays() []string {
	var out []string
	ents, _ := os.ReadDir(netnsDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), m.Config.Prefix) && !slices.Contains(m.Namespaces, e.Name()) {
			out = append(out, "netns "+e.Name())
		}
	}
	return out
}

// Leftovers lists what carries the names of lab c in the host: namespaces
// named with the prefix, agent processes of its instances, pin
// directories, the lab's files. Tests use it (with prefixes of their own)
// to check a teardown.
func Leftovers(c Config) []string {
	var out []string
	ents, _ := os.ReadDir(netnsDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), c.Prefix) {
			out = append(out, "netns "+e.Name())
		}
	}
	for _, n := range Nodes {
		for _, pid := range agentPIDs(c.Instance(n)) {
			out = append(out, fmt.Sprintf("agent %s pid %d", c.Instance(n), pid))
		}
		if exists(c.PinDir(n)) {
			out = append(out, "pins "+c.PinDir(n))
		}
	}
	for _, n := range Nodes {
		for _, p := range []string{c.StateFile(n), c.StateDir(n), c.LogFile(n)} {
			if exists(p) {
				out = append(out, "file "+p)
			}
		}
	}
	for _, pid := range natsPIDs(c) {
		out = append(out, fmt.Sprintf("nats server pid %d", pid))
	}
	for _, p := range []string{c.NATSStore(), c.NATSLog(), filepath.Join(c.Dir, ManifestFile)} {
		if exists(p) {
			out = append(out, "file "+p)
		}
	}
	return out
}

// Signal sends sig to node's agent (e.g. SIGHUP to reload).
func (l *Lab) Signal(node string, sig syscall.Signal) error {
	l.mu.Lock()
	a := l.agents[node]
	l.mu.Unlock()
	if !a.running() {
		return fmt.Errorf("agent of %s is not running", node)
	}
	return a.proc.Signal(sig)
}
