package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/control/config"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/maps"
)

func dumpCommand() *cli.Command {
	return &cli.Command{
		Name:      "dump",
		Usage:     "print the BPF maps of an agent instance, bpftool-style",
		ArgsUsage: "[MAP...]",
		Description: fmt.Sprintf(`Prints the pinned maps of an agent instance (all of them when no MAP is named)
as tables, or JSON with --json. Maps: %v.
Each entry shows the source it was installed from (state file or KV key@revision)
when the agent's applied.json is readable.`, maps.Names()),
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			&cli.StringSliceFlag{Name: "config", Usage: "the agent's ini `FILE`s, to find its instance (host), bpffs and state dir"},
			instanceFlag, bpffsFlag, stateDirFlag, netnsFlag,
		},
		Action: func(c *cli.Context) error {
			if err := enterNetns(c); err != nil {
				return err
			}
			instance, bpffs, state := instanceName(c), c.String(bpffsFlag.Name), stateDir(c)
			if files := c.StringSlice("config"); len(files) > 0 {
				cfg, err := config.Load(files...)
				if err != nil {
					return err
				}
				if !c.IsSet(instanceFlag.Name) {
					instance = cfg.Host
				}
				if !c.IsSet(bpffsFlag.Name) {
					bpffs = cfg.Dataplane.BPFFS
				}
				if !c.IsSet(stateDirFlag.Name) {
					state = filepath.Join(cfg.StateDir, instance)
				}
			}
			set, err := maps.OpenPinned(filepath.Join(bpffs, "vxdp", instance, "maps"))
			if errors.Is(err, maps.ErrNotPinned) {
				return fmt.Errorf("%w: is an agent with --instance %s running with --dataplane=bpf (and --bpffs %s)?",
					err, instance, bpffs)
			}
			if err != nil {
				return err
			}
			defer set.Close()
			opts := maps.DumpOptions{JSON: c.Bool("json"), IfName: ifName}
			if a, err := dataplane.ReadApplied(state); err == nil {
				opts.Source = func(m, key string) string { return a.Provenance["bpf/"+m+"/"+key] }
			}
			return set.Dump(os.Stdout, c.Args().Slice(), opts)
		},
	}
}

func ifName(ifindex uint32) string {
	if i, err := net.InterfaceByIndex(int(ifindex)); err == nil {
		return i.Name
	}
	return ""
}
