package main

import (
	"errors"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// buildInfo is what `vxdp version` reports: the build, and the kernel
// features vxdp relies on as found on this machine.
type buildInfo struct {
	Version, Commit, BuildDate, GoVersion string
	Kernel                                string
	// BTF: /sys/kernel/btf/vmlinux exists (CO-RE relocations).
	BTF bool
	// BPFFS: /sys/fs/bpf is a bpffs (the agent mounts it otherwise).
	BPFFS bool
	// TCX is nil when it could not be probed (no CAP_BPF).
	TCX *bool
}

// currentBuild fills what -ldflags did not set from the Go toolchain's
// record of the build (module version, VCS revision and time).
func currentBuild() buildInfo {
	b := buildInfo{Version: version, Commit: commit, BuildDate: buildDate, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && b.Commit == "":
				b.Commit = s.Value
			case s.Key == "vcs.time" && b.BuildDate == "":
				b.BuildDate = s.Value
			}
		}
	}
	return b
}

// probeKernel adds the kernel release and features to b.
func probeKernel(b buildInfo) buildInfo {
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		b.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	_, err := os.Stat("/sys/kernel/btf/vmlinux")
	b.BTF = err == nil
	var st unix.Statfs_t
	b.BPFFS = unix.Statfs("/sys/fs/bpf", &st) == nil && st.Type == unix.BPF_FS_MAGIC
	if tcx, err := probeTCX(); err == nil {
		b.TCX = &tcx
	}
	return b
}

// probeTCX attaches a trivial program with TCX to an interface index that
// does not exist: a kernel with TCX refuses the interface, one without
// refuses the attach type.
func probeTCX() (bool, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		return false, err
	}
	defer prog.Close()
	l, err := link.AttachTCX(link.TCXOptions{Interface: math.MaxInt32, Program: prog, Attach: ebpf.AttachTCXIngress})
	if err == nil {
		l.Close()
		return true, nil
	}
	return !errors.Is(err, ebpf.ErrNotSupported), nil
}

var versionView = view[buildInfo]{
	kind: "version",
	columns: []column[buildInfo]{
		{key: "version", header: "Version", value: func(b buildInfo) any { return b.Version }},
		{key: "commit", header: "Commit", value: func(b buildInfo) any { return stringOrNil(b.Commit) }},
		{key: "build_date", header: "Build Date", value: func(b buildInfo) any { return stringOrNil(b.BuildDate) }},
		{key: "go_version", header: "Go Version", value: func(b buildInfo) any { return b.GoVersion }},
		{key: "kernel", header: "Kernel", value: func(b buildInfo) any { return b.Kernel }},
		{key: "btf", header: "BTF", value: func(b buildInfo) any { return b.BTF }},
		{key: "bpffs", header: "bpffs", value: func(b buildInfo) any { return b.BPFFS }},
		{key: "tcx", header: "TCX", value: func(b buildInfo) any {
			if b.TCX == nil {
				return nil
			}
			return *b.TCX
		}, text: func(b buildInfo) string {
			if b.TCX == nil {
				return "unknown (probing needs root)"
			}
			return map[bool]string{true: "true", false: "false (clsact fallback)"}[*b.TCX]
		}},
	},
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version, the build and the kernel features vxdp uses",
		Description: strings.TrimSpace(`
Kernel features as found on this machine: BTF (/sys/kernel/btf/vmlinux),
bpffs mounted on /sys/fs/bpf, and TCX (Linux >= 6.6; the agent falls back to
clsact without it). Native XDP is a property of each network driver: "vxdp
status" shows the mode each program was attached in.`),
		Flags: outputFlags(versionView),
		Action: func(c *cli.Context) error {
			return printOne(c, versionView, probeKernel(currentBuild()))
		},
	}
}
