package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
)

// TCP throughput is iperf3's (the tool reviewers know): a client in the
// sending VM's namespace, the server in the receiving VM (its namespace,
// or inside the guest).

// errIperfBusy is a server still busy with the previous test.
var errIperfBusy = errors.New("iperf3 server busy")

// iperfResult is what the receiver got, omitted seconds excluded.
type iperfResult struct {
	BitsPerSecond float64 `json:"bits_per_second"`
	Bytes         uint64  `json:"bytes"`
	Retransmits   int     `json:"retransmits"`
}

// runIperf runs `iperf3 -c dst` in namespace ns: streams parallel
// streams for omit+seconds, the first omit seconds left out (slow start);
// reverse makes the server send.
func runIperf(ctx context.Context, ns string, dst netip.Addr, streams, omit, seconds int, reverse bool) (iperfResult, error) {
	args := []string{"netns", "exec", ns, "iperf3", "-c", dst.String(), "-J", "-P", strconv.Itoa(streams),
		"-t", strconv.Itoa(omit + seconds), "-O", strconv.Itoa(omit), "--connect-timeout", "3000"}
	if reverse {
		args = append(args, "-R")
	}
	out, err := exec.CommandContext(ctx, "ip", args...).Output()
	var rep struct {
		Error string `json:"error"`
		End   struct {
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				Bytes         uint64  `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if jerr := json.Unmarshal(out, &rep); jerr != nil {
		return iperfResult{}, fmt.Errorf("iperf3 -c %s in %s: %v (output %q)", dst, ns, err, strings.TrimSpace(string(out)))
	}
	if rep.Error != "" || err != nil {
		// Between tests the server closes and reopens its listener, or
		// refuses while it finishes the last one.
		for _, busy := range []string{"busy", "control message", "Connection refused"} {
			if strings.Contains(rep.Error, busy) {
				err = errIperfBusy
			}
		}
		if err == nil {
			err = errors.New("failed")
		}
		return iperfResult{}, fmt.Errorf("iperf3 -c %s in %s: %s: %w", dst, ns, rep.Error, err)
	}
	r := iperfResult{BitsPerSecond: rep.End.SumReceived.BitsPerSecond, Bytes: rep.End.SumReceived.Bytes,
		Retransmits: rep.End.SumSent.Retransmits}
	if r.Bytes == 0 {
		return r, fmt.Errorf("iperf3 -c %s in %s: nothing received", dst, ns)
	}
	return r, nil
}
