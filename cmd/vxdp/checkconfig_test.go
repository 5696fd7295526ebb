package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seedINI is the seed's linuxbridge_agent.ini on node3, with its VTEP
// address replaced by vtep and its provider network mapped to lo (this
// host has no eth1).
func seedINI(t *testing.T, vtep string) string {
	return seedINIMapped(t, vtep, "lo")
}

func seedINIMapped(t *testing.T, vtep, physIf string) string {
	t.Helper()
	raw, err := os.ReadFile("../../control/config/testdata/linuxbridge_agent.ini")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(raw), "local_ip = 192.168.248.3", "local_ip = "+vtep, 1)
	return strings.Replace(s, "physical_interface_mappings = default:eth1", "physical_interface_mappings = default:"+physIf, 1)
}

// hostIPv4 is an IPv4 address of an interface of this host (not loopback).
func hostIPv4(t *testing.T) (string, string) {
	t.Helper()
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if p, ok := a.(*net.IPNet); ok && p.IP.To4() != nil && !p.IP.IsLoopback() {
				return p.IP.String(), i.Name
			}
		}
	}
	t.Skip("this host has no IPv4 address outside loopback to play the VTEP")
	return "", ""
}

// TestCheckConfig: `agent --check-config` finds the seed's `[DEFAULT` typo
// and a local_ip no interface holds, names file and line and the fix,
// and touches nothing; a good configuration is summarised.
func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	bpffs, stateDir := filepath.Join(dir, "bpffs"), filepath.Join(dir, "state")
	vtep, uplink := hostIPv4(t)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	vxdpINI := write("vxdp-agent.ini", "[agent]\nmetrics_listen = 127.0.0.1:9641\n[nats]\nservers = nats://10.30.1.208:4222\ncreds_file = "+dir+"/node3.creds\n")
	write("node3.creds", "-----BEGIN NATS USER JWT-----\n")
	check := func(args ...string) (string, error) {
		return vxdp(t, append([]string{"agent", "--check-config", "--host", "node3", "--bpffs", bpffs, "--state-dir", stateDir}, args...)...)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string // in the error; "" for success
	}{
		{"seed typo", []string{"--config", write("typo.ini", strings.Replace(seedINI(t, vtep), "[DEFAULT]", "[DEFAULT", 1))},
			dir + `/typo.ini:1: invalid section header "[DEFAULT": must end with "]" — write "[DEFAULT]"`},
		{"local_ip on no interface", []string{"--config", write("wrongip.ini", seedINI(t, "192.0.2.77")), "--config", vxdpINI},
			dir + "/wrongip.ini:11: local_ip 192.0.2.77 is not an address of any interface of this host"},
		{"wrong --local-ip flag", []string{"--config", write("good.ini", seedINI(t, vtep)), "--local-ip", "192.0.2.78"},
			"--local-ip: local_ip 192.0.2.78 is not an address of any interface"},
		{"unreadable credentials", []string{"--config", write("good2.ini", seedINI(t, vtep)), "--config",
			write("nocreds.ini", "[nats]\nservers = nats://10.30.1.208:4222\ncreds_file = /nonexistent/node3.creds\n")},
			dir + "/nocreds.ini:3: cannot read /nonexistent/node3.creds"},
		{"physical interface missing", []string{"--config", write("nophys.ini", seedINIMapped(t, vtep, "ethnone0")), "--config", vxdpINI},
			dir + `/nophys.ini:4: interface ethnone0 of physical network "default" does not exist on this host`},
		{"good", []string{"--config", write("good3.ini", seedINI(t, vtep)), "--config", vxdpINI}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := check(tc.args...)
			if tc.want == "" {
				if err != nil || !strings.Contains(out, "configuration OK") || !strings.Contains(out, "VTEP "+vtep+" on "+uplink) {
					t.Errorf("good configuration: %v\n%s", err, out)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v\n%s\nwant an error with %q", err, out, tc.want)
			}
			for _, d := range []string{bpffs, stateDir} {
				if _, err := os.Stat(d); err == nil {
					t.Errorf("--check-config made %s", d)
				}
			}
		})
	}
}
