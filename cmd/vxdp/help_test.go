package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// asVxdpEnv makes the test binary run as vxdp (for the completion scripts).
const asVxdpEnv = "VXDP_TEST_AS_VXDP"

func TestMain(m *testing.M) {
	if os.Getenv(asVxdpEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestUnknownCommands: a mistyped command is an error (exit 1) naming the
// near ones, at every level, never urfave/cli's "No help topic" (exit 3).
func TestUnknownCommands(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"prot", "list"}, `unknown command "prot" for "vxdp"; did you mean "port"?`},
		{[]string{"port", "lsit"}, `unknown command "lsit" for "vxdp port"; did you mean "list"?`},
		{[]string{"sg", "rule", "remove"}, `unknown command "remove" for "vxdp sg rule"`},
		{[]string{"agent", "lst"}, `unknown command "lst" for "vxdp agent"; did you mean "list"?`},
		{[]string{"server", "bukcet"}, `unknown command "bukcet" for "vxdp server"; did you mean "bucket"?`},
		{[]string{"help", "nosuch"}, `unknown command "nosuch" for "vxdp"`},
		{[]string{"lab", "help", "nosuch"}, `unknown command "nosuch" for "vxdp lab"`},
		{[]string{"versoin"}, `did you mean "version"?`},
	} {
		out, err := vxdp(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(out+err.Error(), "No help topic") {
			t.Errorf("vxdp %s: %v\n%s\nwant an error with %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
		if _, isExit := err.(cli.ExitCoder); isExit {
			t.Errorf("vxdp %s: an exit-code error (%v): main must exit 1", strings.Join(tc.args, " "), err)
		}
	}
	for _, args := range [][]string{{"help"}, {"help", "port", "list"}, {"port"}, {"sg", "rule"}} {
		if out, err := vxdp(t, args...); err != nil || !strings.Contains(out, "USAGE:") {
			t.Errorf("vxdp %s: %v\n%s\nwant help", strings.Join(args, " "), err, out)
		}
	}
}

// TestFlagsWhereTheyApply: every command shows only flags it uses, and
// every command printing records has the output flags.
func TestFlagsWhereTheyApply(t *testing.T) {
	flags := map[string][]string{}
	var walk func(prefix string, cmds []*cli.Command)
	walk = func(prefix string, cmds []*cli.Command) {
		for _, c := range cmds {
			name := strings.TrimSpace(prefix + " " + c.Name)
			for _, f := range c.Flags {
				if vf, ok := f.(cli.VisibleFlag); !ok || vf.IsVisible() {
					flags[name] = append(flags[name], f.Names()[0])
				}
			}
			walk(name, c.Subcommands)
		}
	}
	walk("", newApp().Commands)
	// Commands that may create the bucket: the creators, and the server.
	creates := []string{"network create", "sg create", "address-group create", "server", "server bucket"}
	for cmd, fs := range flags {
		if slices.Contains(fs, "replicas") != slices.Contains(creates, cmd) {
			t.Errorf("%s: --replicas shown: %v (only commands that may create the bucket have it)", cmd, slices.Contains(fs, "replicas"))
		}
		if slices.Contains(fs, "vni-ranges") != (cmd == "network create") {
			t.Errorf("%s: --vni-ranges shown: %v (only network create allocates VNIs)", cmd, slices.Contains(fs, "vni-ranges"))
		}
	}
	for _, cmd := range []string{"agent list", "network list", "network show", "network create", "network delete",
		"port list", "port show", "port create", "port bind", "port unbind", "port delete", "sg list", "sg show",
		"sg create", "sg delete", "sg rule add", "sg rule delete", "sg rule list", "port set", "port unset", "address-group create",
		"address-group list", "address-group show", "address-group set", "address-group unset", "address-group delete",
		"dump", "lab status", "version"} {
		if !slices.Contains(flags[cmd], "output") || !slices.Contains(flags[cmd], "column") {
			t.Errorf("%s has no -o/-c: %v", cmd, flags[cmd])
		}
	}
}

// TestManPageCurrent: docs/vxdp.1 is what `make man` generates now.
func TestManPageCurrent(t *testing.T) {
	page, err := manPage()
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile("../../docs/vxdp.1")
	if err != nil {
		t.Fatal(err)
	}
	if string(committed) != page {
		t.Error("docs/vxdp.1 is out of date: run `make man` and commit it")
	}
	for _, want := range []string{".TH vxdp 1", "completion", "--check-config", "--output"} {
		if !strings.Contains(page, want) {
			t.Errorf("man page lacks %q", want)
		}
	}
}

// complete runs a completion script in shell with the words typed so far
// (the last one being completed) and returns the candidates offered.
func complete(t *testing.T, shell, script string, words ...string) []string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Symlink(os.Args[0], filepath.Join(dir, "vxdp")); err != nil {
		t.Fatal(err)
	}
	scriptFile := filepath.Join(dir, "completion")
	if err := os.WriteFile(scriptFile, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = "'" + w + "'"
	}
	cmd := exec.Command(shell, "-c", `source `+scriptFile+`
COMP_WORDS=(`+strings.Join(quoted, " ")+`); COMP_CWORD=`+strconv.Itoa(len(words)-1)+`
_vxdp_complete; printf '%s\n' "${COMPREPLY[@]}"`)
	cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), asVxdpEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s completion: %v\n%s", shell, err, out)
	}
	return strings.Fields(string(out))
}

// TestBashCompletion: the bash script completes commands, subcommands and
// the flags of the command typed, by asking the binary.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	script := mustVxdp(t, "completion", "bash")
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{"vxdp", "po"}, []string{"port"}},
		{[]string{"vxdp", "port", "l"}, []string{"list"}},
		{[]string{"vxdp", "port", "list", "--ou"}, []string{"--output"}},
		{[]string{"vxdp", "network", "create", "--vni-r"}, []string{"--vni-ranges"}},
		{[]string{"vxdp", "network", "list", "--vni-r"}, nil},
	} {
		if got := complete(t, bash, script, tc.words...); !slices.Equal(got, tc.want) {
			t.Errorf("completing %q: %q, want %q", strings.Join(tc.words, " "), got, tc.want)
		}
	}
}

// TestZshCompletion: the zsh script loads (zsh is not on every machine).
func TestZshCompletion(t *testing.T) {
	zsh, err := exec.LookPath("zsh")
	if err != nil {
		t.Skip("zsh is not installed; the zsh script is not exercised here")
	}
	script := mustVxdp(t, "completion", "zsh")
	f := filepath.Join(t.TempDir(), "_vxdp")
	if err := os.WriteFile(f, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(zsh, "-c", "autoload -Uz compinit && compinit -u && source "+f).CombinedOutput(); err != nil {
		t.Errorf("zsh: %v\n%s", err, out)
	}
}
