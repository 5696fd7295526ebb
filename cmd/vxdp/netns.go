package main

import (
	"fmt"
	"os"
	"runtime"
	"syscall"

	"github.com/urfave/cli/v2"
	"github.com/vishvananda/netns"
)

// netnsEnv marks a process that already entered its --netns.
const netnsEnv = "VXDP_IN_NETNS"

var netnsFlag = &cli.StringFlag{
	Name:  "netns",
	Usage: "run inside the named network namespace (/run/netns/`NAME`), e.g. a lab node",
}

// enterNetns re-executes the command inside the network namespace named by
// --netns. A Go process cannot move all its threads into a namespace, but
// execve from a thread that switched carries the namespace over, so the
// whole new process (netlink sockets, BPF attach by ifindex, /proc/sys/net)
// lives there.
func enterNetns(c *cli.Context) error {
	name := c.String(netnsFlag.Name)
	if name == "" || os.Getenv(netnsEnv) == name {
		return nil
	}
	runtime.LockOSThread()
	ns, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("network namespace %q: %w", name, err)
	}
	if err := netns.Set(ns); err != nil {
		return fmt.Errorf("enter network namespace %q: %w", name, err)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return syscall.Exec(exe, os.Args, append(os.Environ(), netnsEnv+"="+name))
}
