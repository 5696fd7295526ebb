package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckGenerateNamesCompiler: `make check-generate` refuses a clang
// other than the pinned one (scripts/bpf-clang.env) before compiling
// anything, naming the expected compiler and the one it found, and the
// Makefile pins the same one.
func TestCheckGenerateNamesCompiler(t *testing.T) {
	env, err := os.ReadFile(filepath.Join(repoRoot, "scripts/bpf-clang.env"))
	if err != nil {
		t.Fatal(err)
	}
	pin := map[string]string{}
	for _, line := range strings.Split(string(env), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			pin[k] = v
		}
	}
	major, version := pin["BPF_LLVM_MAJOR"], pin["BPF_CLANG_VERSION"]
	if major == "" || !strings.HasPrefix(version, major+".") {
		t.Fatalf("scripts/bpf-clang.env: major %q, version %q", major, version)
	}

	for _, tc := range []struct {
		name, clang, want string
	}{
		{"another version", "Debian clang version 15.0.7", "found: Debian clang version 15.0.7"},
		{"not installed", "", "found: no clang-" + major},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A PATH whose clang-N is the fake (or missing), with sh and the
			// tools the script needs from the system.
			bin := t.TempDir()
			for _, tool := range []string{"sh", "head", "dirname", "cat"} {
				if p, err := exec.LookPath(tool); err == nil {
					os.Symlink(p, filepath.Join(bin, tool))
				}
			}
			if tc.clang != "" {
				fake := "#!/bin/sh\necho '" + tc.clang + "'\n"
				if err := os.WriteFile(filepath.Join(bin, "clang-"+major), []byte(fake), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(filepath.Join(bin, "sh"), filepath.Join(repoRoot, "scripts/check-generate.sh"))
			cmd.Env = []string{"PATH=" + bin}
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("check-generate with %q passed:\n%s", tc.clang, out)
			}
			for _, want := range []string{"built with clang-" + major + " " + version, tc.want} {
				if !strings.Contains(string(out), want) {
					t.Errorf("check-generate output lacks %q:\n%s", want, out)
				}
			}
		})
	}

	mk, err := exec.Command("make", "-s", "-C", repoRoot, "-p", "-n", "check-generate").Output()
	if err != nil {
		t.Skipf("make -p: %v", err)
	}
	if !strings.Contains(string(mk), "\nBPF_LLVM_MAJOR = "+major+"\n") && !strings.Contains(string(mk), "\nBPF_LLVM_MAJOR := "+major+"\n") {
		t.Errorf("the Makefile does not read BPF_LLVM_MAJOR=%s from scripts/bpf-clang.env", major)
	}
}
