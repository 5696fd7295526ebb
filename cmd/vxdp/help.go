package main

// Unknown commands, shell completion and the man page: the parts of the
// command line that are about the command line itself.

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// setGroupActions gives the app and every command that only groups
// subcommands an action: help without arguments, "help CMD...", and an
// error naming the near commands for anything else (urfave/cli would
// answer "No help topic" with exit status 3).
func setGroupActions(app *cli.App) {
	app.Action = groupAction
	var walk func(cmds []*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, c := range cmds {
			if len(c.Subcommands) > 0 {
				c.HideHelpCommand = true
				if c.Action == nil {
					c.Action = groupAction
				}
			}
			walk(c.Subcommands)
		}
	}
	walk(app.Commands)
}

func groupAction(c *cli.Context) error {
	args := c.Args().Slice()
	switch {
	case len(args) == 0:
		return showHelp(c)
	case args[0] == "help":
		// "vxdp help port list" is "vxdp port list --help".
		return c.App.RunContext(c.Context, slices.Concat(commandPath(c), args[1:], []string{"--help"}))
	}
	return unknownCommand(c, args[0])
}

func showHelp(c *cli.Context) error {
	if len(c.Lineage()) <= 2 { // the app's own context
		return cli.ShowAppHelp(c)
	}
	return cli.ShowSubcommandHelp(c)
}

// commandPath is the command line that reached c, e.g. [vxdp port].
func commandPath(c *cli.Context) []string {
	var path []string
	for _, ctx := range c.Lineage() {
		if ctx.Command != nil && ctx.Command.Name != "" && ctx.Command.Name != c.App.Name {
			path = append([]string{ctx.Command.Name}, path...)
		}
	}
	return append([]string{c.App.Name}, path...)
}

// unknownCommand is the error for a command name that c does not have:
// it names the near ones and lists them all.
func unknownCommand(c *cli.Context, name string) error {
	cmds := c.App.Commands
	if len(c.Lineage()) > 2 {
		cmds = c.Command.Subcommands
	}
	var all []string
	for _, cmd := range cmds {
		if !cmd.Hidden {
			all = append(all, cmd.Name)
		}
	}
	where := strings.Join(commandPath(c), " ")
	msg := fmt.Sprintf("unknown command %q for %q", name, where)
	if near := nearNames(name, all); len(near) > 0 {
		msg += fmt.Sprintf("; did you mean %s?", strings.Join(quoteAll(near), " or "))
	}
	return errors.New(msg + fmt.Sprintf("\ncommands of %s: %s (see %s --help)", where, strings.Join(all, ", "), where))
}

// nearNames are the candidates within a small edit distance of name, or
// that it starts (or they start) with, closest first.
func nearNames(name string, candidates []string) []string {
	type scored struct {
		s string
		d int
	}
	var near []scored
	for _, c := range candidates {
		d := editDistance(strings.ToLower(name), c)
		if d <= max(1, len(name)/3) || strings.HasPrefix(c, name) || (len(name) >= 3 && strings.HasPrefix(name, c)) {
			near = append(near, scored{c, d})
		}
	}
	slices.SortStableFunc(near, func(a, b scored) int { return a.d - b.d })
	out := make([]string, len(near))
	for i, n := range near {
		out[i] = n.s
	}
	return out
}

// editDistance is the Damerau-Levenshtein (optimal string alignment)
// distance: "lsit" is one transposition from "list".
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// completionScripts complete vxdp's commands and flags by asking the binary
// (urfave/cli's --generate-bash-completion), without the bash-completion
// package.
var completionScripts = map[string]string{
	"bash": `# bash completion for vxdp: source it, or install it as
# /etc/bash_completion.d/vxdp (vxdp completion bash > /etc/bash_completion.d/vxdp)
_vxdp_complete() {
  local cur=${COMP_WORDS[COMP_CWORD]}
  local words=("${COMP_WORDS[@]:0:COMP_CWORD}")
  local opts
  if [[ $cur == -* ]]; then
    opts=$("${words[0]}" "${words[@]:1}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${words[0]}" "${words[@]:1}" --generate-bash-completion 2>/dev/null)
  fi
  local IFS=$'\n'
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -o bashdefault -o default -F _vxdp_complete vxdp
`,
	"zsh": `#compdef vxdp
# zsh completion for vxdp: put it in a directory of $fpath as _vxdp
# (vxdp completion zsh > "${fpath[1]}/_vxdp"), or source it after compinit.
_vxdp() {
  local -a opts
  local cur=${words[-1]}
  if [[ $cur == -* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} $cur --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ -n ${opts[1]} ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
if [[ "$funcstack[1]" == "_vxdp" ]]; then
  _vxdp "$@"
else
  compdef _vxdp vxdp
fi
`,
}

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print the shell completion script for bash or zsh",
		ArgsUsage: "bash|zsh",
		Description: `bash: source <(vxdp completion bash), or write it to /etc/bash_completion.d/vxdp.
zsh:  vxdp completion zsh > "${fpath[1]}/_vxdp" (then restart the shell).`,
		Action: func(c *cli.Context) error {
			shell := c.Args().First()
			script, ok := completionScripts[shell]
			if !ok || c.NArg() != 1 {
				return fmt.Errorf("completion: want bash or zsh, e.g. `vxdp completion bash`")
			}
			_, err := fmt.Fprint(c.App.Writer, script)
			return err
		},
	}
}

// manSection is the section of vxdp's man page (docs/vxdp.1, `make man`).
const manSection = 1

func manCommand() *cli.Command {
	return &cli.Command{
		Name:   "man",
		Usage:  "print the man page (make man writes it to docs/vxdp.1)",
		Hidden: true,
		Action: func(c *cli.Context) error {
			page, err := manPage()
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(c.App.Writer, page)
			return err
		},
	}
}

// manPage renders the man page from the command line itself, so it never
// disagrees with --help. It is the same whatever the build (no version).
func manPage() (string, error) {
	return newApp().ToManWithSection(manSection)
}
