package lab

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
)

// ensureCommands installs, from Debian's packages, those of the commands
// (command -> package) that are not on PATH.
func ensureCommands(what string, commands map[string]string, log io.Writer) error {
	var missing []string
	for cmd, pkg := range commands {
		if _, err := exec.LookPath(cmd); err != nil && !slices.Contains(missing, pkg) {
			missing = append(missing, pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	fmt.Fprintf(log, "%s: installing %s\n", what, strings.Join(missing, " "))
	if out, err := apt(append([]string{"install", "-y", "-q", "--no-install-recommends"}, missing...)...); err != nil {
		return fmt.Errorf("apt-get install %s: %w\n%s", strings.Join(missing, " "), err, out)
	}
	return nil
}

func apt(args ...string) ([]byte, error) {
	cmd := exec.Command("apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	return cmd.CombinedOutput()
}
