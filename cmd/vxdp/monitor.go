package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/maps"
)

func monitorCommand() *cli.Command {
	return &cli.Command{
		Name:  "monitor",
		Usage: "watch the BPF programs' decisions live: every drop with its reason, or every decision with --trace",
		Description: `vxdp monitor turns event emission on in the agent's programs while it runs
(nothing is emitted, and nothing costs, while no monitor runs) and prints one
line per decision: time, program, reason, device, VNI and the frame as the
program saw it (the inner frame of VXLAN). --pcap FILE (or -w - to pipe into
tshark/Wireshark) writes the frames the programs saw and left, before and
after encapsulation or decapsulation, as pcapng with the decision as comment:
the tap and the wire can be captured again even where XDP redirects bypass
packet capture.

  vxdp monitor --netns vxdp-node4 --instance vxdp-node4
  vxdp monitor --trace --port tap9784ef08-97 -w - | tshark -r -`,
		Flags: append(agentFlags(),
			&cli.BoolFlag{Name: "trace", Usage: "every decision, not only drops"},
			&cli.StringFlag{Name: "port", Usage: "only decisions on `TAP` (a tap name, or a port id's first characters)"},
			&cli.UintFlag{Name: "vni", Usage: "only frames of `VNI`"},
			&cli.StringSliceFlag{Name: "reason", Usage: "only these `REASON`s (e.g. DROP_SPOOF_MAC; a prefix such as DROP_SG matches several)"},
			&cli.StringFlag{Name: "pcap", Aliases: []string{"w"}, Usage: "write the frames to pcapng `FILE` (- for standard output)"},
			&cli.IntFlag{Name: "count", Aliases: []string{"c"}, Usage: "stop after `N` events (0: until interrupted)"},
			&cli.DurationFlag{Name: "duration", Usage: "stop after `D` (0: until interrupted)"},
			&cli.BoolFlag{Name: "json", Usage: "one JSON object per event instead of a line"},
		),
		Action: runMonitor,
	}
}

// monitorFilter selects events.
type monitorFilter struct {
	ifindex int // 0: any
	vni     uint32
	reasons []string
}

func (f monitorFilter) match(e maps.MonEvent) bool {
	if f.ifindex != 0 && int(e.Ifindex) != f.ifindex {
		return false
	}
	if f.vni != 0 && e.Vni != f.vni {
		return false
	}
	if len(f.reasons) == 0 {
		return true
	}
	name := maps.ReasonName(maps.Reason(e.Reason))
	for _, r := range f.reasons {
		if strings.HasPrefix(name, strings.ToUpper(r)) {
			return true
		}
	}
	return false
}

// monitorEvent is an event as JSON.
type monitorEvent struct {
	Time    time.Time `json:"time"`
	Program string    `json:"program"`
	Reason  string    `json:"reason"`
	Verdict string    `json:"verdict"`
	Ifindex uint32    `json:"ifindex"`
	Device  string    `json:"device,omitempty"`
	VNI     uint32    `json:"vni"`
	Length  uint32    `json:"length"`
	Frame   string    `json:"frame"`
}

func runMonitor(c *cli.Context) error {
	if err := enterNetns(c); err != nil {
		return err
	}
	set, _, err := openAgentMaps(c)
	if err != nil {
		return err
	}
	defer set.Close()
	f := monitorFilter{vni: uint32(c.Uint("vni")), reasons: c.StringSlice("reason")}
	if p := c.String("port"); p != "" {
		name := p
		if !strings.HasPrefix(p, "tap") {
			name = "tap" + p[:min(len(p), 11)]
		}
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return fmt.Errorf("--port %s: no device %s here (run with --netns of the agent): %w", p, name, err)
		}
		f.ifindex = ifi.Index
	}
	var pcap *pcapgo.NgWriter
	out := c.App.Writer
	if path := c.String("pcap"); path != "" {
		w := io.Writer(os.Stdout)
		if path != "-" {
			file, err := os.Create(path)
			if err != nil {
				return err
			}
			defer file.Close()
			w = file
		} else {
			out = c.App.ErrWriter // the lines go aside, the capture to stdout
		}
		if pcap, err = pcapgo.NewNgWriter(w, layers.LinkTypeEthernet); err != nil {
			return err
		}
		defer pcap.Flush()
	}
	mon, err := maps.StartMonitor(set, c.Bool("trace"))
	if err != nil {
		return err
	}
	defer mon.Close()

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(stop)
	deadline := time.Time{}
	if d := c.Duration("duration"); d > 0 {
		deadline = time.Now().Add(d)
	}
	seen := 0
	for n := c.Int("count"); n == 0 || seen < n; {
		select {
		case <-stop:
			return nil
		default:
		}
		next := time.Now().Add(200 * time.Millisecond)
		if !deadline.IsZero() && deadline.Before(next) {
			next = deadline
		}
		mon.SetDeadline(next)
		e, err := mon.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if !deadline.IsZero() && time.Now().After(deadline) {
				return nil
			}
			continue
		}
		if err != nil {
			return err
		}
		if !f.match(e) {
			continue
		}
		seen++
		if err := printEvent(out, c.Bool("json"), mon, e); err != nil {
			return err
		}
		if pcap != nil {
			if err := writeEventFrames(pcap, mon, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// eventLine is the one-line form of an event.
func eventLine(mon *maps.Monitor, e maps.MonEvent) monitorEvent {
	r := maps.Reason(e.Reason)
	ev := monitorEvent{Time: mon.Time(e), Program: maps.ProgName(maps.Prog(e.Prog)), Reason: maps.ReasonName(r),
		Verdict: maps.Verdict(r), Ifindex: e.Ifindex, VNI: e.Vni, Length: e.Len, Frame: maps.Summary(maps.Before(e))}
	if i, err := net.InterfaceByIndex(int(e.Ifindex)); err == nil {
		ev.Device = i.Name
	}
	return ev
}

func printEvent(w io.Writer, asJSON bool, mon *maps.Monitor, e maps.MonEvent) error {
	ev := eventLine(mon, e)
	if asJSON {
		return json.NewEncoder(w).Encode(ev)
	}
	dev := ev.Device
	if dev == "" {
		dev = fmt.Sprint(ev.Ifindex)
	}
	_, err := fmt.Fprintf(w, "%s %-7s %-22s %-16s vni %-5d len %-5d %s\n",
		ev.Time.Format("15:04:05.000000"), ev.Program, ev.Reason, dev, ev.VNI, ev.Length, ev.Frame)
	return err
}

// writeEventFrames writes the frame before the decision and, when the
// program changed it, after, each with the decision as comment.
func writeEventFrames(w *pcapgo.NgWriter, mon *maps.Monitor, e maps.MonEvent) error {
	ev := eventLine(mon, e)
	comment := fmt.Sprintf("vxdp %s %s on %s (ifindex %d) vni %d", ev.Program, ev.Reason, ev.Device, ev.Ifindex, ev.VNI)
	before, after := maps.Before(e), maps.After(e)
	frames := []struct {
		data []byte
		note string
	}{{before, comment + ": as received"}}
	if len(after) > 0 && string(after) != string(before) {
		frames = append(frames, struct {
			data []byte
			note string
		}{after, comment + ": as sent"})
	}
	for _, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: ev.Time, CaptureLength: len(f.data), Length: int(max(e.Len, uint32(len(f.data))))}
		if err := w.WritePacketWithOptions(ci, f.data, pcapgo.NgPacketOptions{Comments: []string{f.note}}); err != nil {
			return err
		}
	}
	return nil
}
