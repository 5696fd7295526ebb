package bench

import (
	"encoding/json"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestQuickSuites runs every suite as an operator would, `vxdp bench ...
// --quick --out DIR`, and checks that each produced a complete, sane
// report: JSON with every mode and metric measured, a Markdown page
// with its table and charts, PNG charts that decode; the path suites'
// modes carried by what they claim (the bench itself fails a run of the
// bpf mode that vxdp's programs did not redirect, and of any other mode
// that they did). It asserts no speed: --quick is a tiny load.
func TestQuickSuites(t *testing.T) {
	requireRoot(t)
	bin := filepath.Join(t.TempDir(), "vxdp")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/vxdp").CombinedOutput(); err != nil {
		t.Fatalf("build vxdp: %v\n%s", err, out)
	}
	suites := []struct {
		name  string
		args  []string
		modes []string
		check func(t *testing.T, raw []byte)
	}{
		{"bpf", []string{"bpf"}, nil, checkBPFReport},
		{"path", []string{"path"}, []string{ModePlain, ModeFlat, ModeKernel, ModeBPF}, nil},
		{"path-sg", []string{"path", "--sg", "1,100"}, []string{ModeKernel, ModeBPF}, nil},
		{"path-guest", []string{"path", "--guest"}, []string{ModeKernel, ModeBPF}, nil},
		{"controlplane", []string{"controlplane"}, nil, nil},
	}
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			out := t.TempDir()
			cmd := exec.CommandContext(t.Context(), bin, append(append([]string{"bench"}, s.args...), "--quick", "--out", out)...)
			stdout, err := cmd.Output()
			if err != nil {
				stderr := ""
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = string(ee.Stderr)
				}
				t.Fatalf("vxdp bench %s --quick: %v\n%s%s", strings.Join(s.args, " "), err, stdout, stderr)
			}
			if len(stdout) == 0 {
				t.Error("no table printed")
			}
			raw, err := os.ReadFile(filepath.Join(out, "report.json"))
			if err != nil {
				t.Fatal(err)
			}
			md, err := os.ReadFile(filepath.Join(out, "README.md"))
			if err != nil {
				t.Fatal(err)
			}
			checkCharts(t, out, string(md))
			if s.modes != nil {
				checkPathReport(t, raw, string(md), s.modes)
			}
			if s.check != nil {
				s.check(t, raw)
			}
		})
	}
}

// checkCharts decodes every PNG the page shows.
func checkCharts(t *testing.T, dir, md string) {
	t.Helper()
	shown := 0
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "![") {
			continue
		}
		name := line[strings.Index(line, "(")+1 : len(line)-1]
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("chart %s: %v", name, err)
			continue
		}
		cfg, err := png.DecodeConfig(f)
		f.Close()
		if err != nil || cfg.Width < 200 || cfg.Height < 200 {
			t.Errorf("chart %s: %dx%d, %v", name, cfg.Width, cfg.Height, err)
		}
		shown++
	}
	if shown == 0 {
		t.Errorf("the Markdown page shows no chart:\n%s", md)
	}
}

// checkPathReport holds a path report to what it must contain.
func checkPathReport(t *testing.T, raw []byte, md string, modes []string) {
	t.Helper()
	var r PathReport
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	if r.Machine.CPUs < 1 || r.Machine.Kernel == "" || r.Machine.IdleCheck == nil || !r.Settings.Quick {
		t.Errorf("machine and settings not recorded: %+v %+v", r.Machine, r.Settings)
	}
	var names []string
	for _, m := range r.Modes {
		names = append(names, m.Name)
		if m.What == "" || m.SecurityGroups == "" {
			t.Errorf("mode %s does not say what it is and which groups it enforces: %+v", m.Name, m)
		}
		if !strings.Contains(md, "| `"+m.Name+"` |") {
			t.Errorf("the page does not describe mode %s", m.Name)
		}
	}
	if strings.Join(names, ",") != strings.Join(modes, ",") {
		t.Errorf("modes %v, want %v", names, modes)
	}
	if len(r.Rows) == 0 {
		t.Fatal("no rows")
	}
	for _, row := range r.Rows {
		for _, m := range modes {
			f := row.Figures[m]
			if len(f.Runs) != r.Settings.Runs || f.Min > f.Median || f.Median > f.Max || f.Min < 0 {
				t.Errorf("%s %s, %s: %+v over %d runs", row.Group, row.Label, m, f, r.Settings.Runs)
			}
			// Rates, sizes and latencies are positive; a CPU figure may be
			// 0 when others took the whole window on a busy machine.
			if row.Field != FieldCPU && f.Min <= 0 {
				t.Errorf("%s %s, %s: a run measured nothing: %+v", row.Group, row.Label, m, f)
			}
		}
		if _, ok := row.Ratios[ModeBPF+"/"+ModeKernel]; !ok && row.Figures[ModeKernel].Median != 0 {
			t.Errorf("%s: no bpf/kernel ratio", row.Label)
		}
		if !strings.Contains(md, row.Label) {
			t.Errorf("the page's table lacks %q", row.Label)
		}
	}
	for _, s := range r.Samples {
		c := s.CPU
		if c.Seconds <= 0 || c.CPUs != r.Machine.CPUs || c.OtherShare < 0 || c.Path < 0 || c.Path > c.Busy || c.Noisy != (c.OtherShare > r.Settings.NoiseLimit) {
			t.Errorf("%s %s run %d: CPU accounting %+v", s.Mode, s.Metric, s.Run, c)
		}
		if (s.Mode == ModeBPF) != (s.BPFRedirects > 0) {
			t.Errorf("%s %s run %d: %d packets redirected by vxdp's programs", s.Mode, s.Metric, s.Run, s.BPFRedirects)
		}
	}
}

func checkBPFReport(t *testing.T, raw []byte) {
	t.Helper()
	var r BPFReport
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	programs := map[string]bool{}
	for _, c := range r.Cases {
		programs[c.Program] = true
		if c.Single.Runs == 0 || c.Single.EmptyNsPerPacket <= 0 || c.How == "" {
			t.Errorf("%s: %+v", c.Name, c)
		}
	}
	for _, p := range []string{progPort, progUplink, progDeliver} {
		if !programs[p] {
			t.Errorf("no case of the %s program", p)
		}
	}
	if len(r.NotMeasured) == 0 {
		t.Error("the report does not say what it could not measure")
	}
	if len(r.Passes) != 2 {
		t.Errorf("%d passes accounted, want --quick's 2", len(r.Passes))
	}
}
