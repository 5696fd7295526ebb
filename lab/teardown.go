package lab

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Teardown removes the lab recorded in dir: it stops its agents, runs
// `vxdp agent --cleanup` for every instance, deletes the namespaces (and
// with them every link), the pin directories and the files the lab wrote.
// It works from the manifest alone, after a crash too, and does nothing if
// dir holds no lab.
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
	return teardown(m.Config, log)
}

func teardown(c Config, log io.Writer) error {
	var errs []error
	// Agents: every process running as one of our instances, whoever
	// started it.
	for _, n := range Nodes {
		for _, pid := range agentPIDs(c.Instance(n)) {
			p, _ := os.FindProcess(pid)
			fmt.Fprintf(log, "stopping agent %s (pid %d)\n", c.Instance(n), pid)
			if err := stopProcess(&agent{pid: pid, proc: p}, 10*time.Second); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, pid := range natsPIDs(c) {
		p, _ := os.FindProcess(pid)
		fmt.Fprintf(log, "stopping nats server (pid %d)\n", pid)
		if err := stopProcess(&agent{pid: pid, proc: p}, 10*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	// The agents' own cleanup, while their namespaces still exist.
	if c.Binary != "" && exists(c.Binary) {
		for _, n := range Nodes {
			if !NSExists(c.NS(n)) && !exists(c.PinDir(n)) {
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
	// Namespaces, underlay first so no frame is in flight between them.
	for _, ns := range c.Namespaces() {
		if err := deleteNS(ns); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range Nodes {
		if err := os.RemoveAll(c.PinDir(n)); err != nil {
			errs = append(errs, fmt.Errorf("remove pins: %w", err))
		}
	}
	_ = os.Remove(filepath.Join(c.BPFFS, "vxdp")) // only if no other instance is left
	for _, n := range Nodes {
		for _, p := range []string{c.StateFile(n), c.StateFile(n) + ".tmp", c.StateDir(n), c.LogFile(n)} {
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, p := range []string{c.NATSStore(), c.NATSLog(), filepath.Join(c.Dir, "nats.ready"),
		filepath.Join(c.Dir, ManifestFile+".tmp"), filepath.Join(c.Dir, ManifestFile)} {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	_ = os.Remove(c.Dir) // only if we made everything in it
	if left := Leftovers(c); len(left) > 0 {
		errs = append(errs, fmt.Errorf("left behind: %s", strings.Join(left, ", ")))
	}
	return errors.Join(errs...)
}

// Leftovers lists what of lab c still exists in the host: namespaces (any
// named with the prefix), agent processes, pin directories, lab files.
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
