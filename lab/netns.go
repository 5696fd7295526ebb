package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netns"
)

// netnsDir is where iproute2 (and vishvananda/netns) keep named namespaces.
const netnsDir = "/run/netns"

// Do runs fn on an OS thread that has entered the named network namespace.
// Sockets fn creates stay in that namespace, so they may be used from any
// goroutine afterwards. The thread is never returned to the Go scheduler:
// it exits with the goroutine, so no other code ever runs in the namespace
// by accident.
func Do(nsName string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		ns, err := netns.GetFromName(nsName)
		if err != nil {
			errc <- fmt.Errorf("netns %s: %w", nsName, err)
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", nsName, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// createNS makes a named namespace (as `ip netns add` does), brings its
// loopback up and turns IPv6 off in it, so router solicitations and MLD
// reports do not add noise to counters and captures.
func createNS(name string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread has switched namespace
		ns, err := netns.NewNamed(name)
		if err != nil {
			errc <- fmt.Errorf("create netns %s: %w", name, err)
			return
		}
		ns.Close()
		errc <- nsSetup()
	}()
	return <-errc
}

func nsSetup() error {
	for _, k := range []string{"net/ipv6/conf/all/disable_ipv6", "net/ipv6/conf/default/disable_ipv6"} {
		if err := writeSysctl(k, "1"); err != nil {
			return err
		}
	}
	return setUp("lo")
}

// writeSysctl writes a sysctl of the calling thread's network namespace.
func writeSysctl(key, value string) error {
	path := filepath.Join("/proc/sys", key)
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// deleteNS removes a named namespace; a missing one is not an error.
func deleteNS(name string) error {
	path := filepath.Join(netnsDir, name)
	if !exists(path) {
		return nil
	}
	if err := netns.DeleteNamed(name); err != nil {
		// A file left without a mount (crash between create and mount).
		if rmErr := os.Remove(path); rmErr != nil {
			return fmt.Errorf("delete netns %s: %w", name, err)
		}
	}
	return nil
}

// NSExists reports whether a named namespace exists.
func NSExists(name string) bool { return exists(filepath.Join(netnsDir, name)) }
