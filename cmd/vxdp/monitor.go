package main

import (
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
line per decision: time, program, reason, device, segment (VNI, or physical
network/VLAN), the VLAN tag on entry>exit, the tunnel's outer addresses and the
frame as the program saw it (the inner frame of VXLAN). -o json prints one
JSON object per line (docs/cli.md, "monitor event"). --pcap FILE (or -w - to
pipe into tshark/Wireshark) writes the frames the programs saw and left,
before and after encapsulation or decapsulation, VLAN tags included, as
pcapng with the decision as comment: the tap and the wire can be captured
again even where XDP redirects bypass packet capture (docs/operations.md).

  vxdp monitor --netns vxdp-node4 --instance vxdp-node4
  vxdp monitor --host node3 --reason DROP_VTEP
  vxdp monitor --trace --vni default/99 -o json
  vxdp monitor --trace --port tap9784ef08-97 -w - | tshark -r -`,
		Flags: append(append(agentFlags(), outputFlags(monitorEventView)...),
			&cli.BoolFlag{Name: "trace", Usage: "every decision, not only drops"},
			&cli.StringFlag{Name: "port", Usage: "only decisions on `TAP` (a tap name, or a port id's first characters)"},
			&cli.StringFlag{Name: "vni", Aliases: []string{"segment"},
				Usage: "only frames of `SEGMENT`: a VNI (100), a provider network's PHYSNET/VLAN (default/99) or flat PHYSNET, or pN/VLAN"},
			&cli.StringSliceFlag{Name: "reason", Usage: "only these `REASON`s (e.g. DROP_SPOOF_MAC; a prefix such as DROP_SG matches several)"},
			&cli.StringSliceFlag{Name: "host", Usage: "only tunnelled frames from or to `HOST`'s VTEP: an address, or a host name (NATS mode)"},
			&cli.StringFlag{Name: "pcap", Aliases: []string{"w"}, Usage: "write the frames to pcapng `FILE` (- for standard output)"},
			&cli.IntFlag{Name: "count", Usage: "stop after `N` events (0: until interrupted)"},
			&cli.DurationFlag{Name: "duration", Usage: "stop after `D` (0: until interrupted)"},
		),
		Action: runMonitor,
	}
}

// tapOf is the tap of a port named by its tap or its id's first characters.
func tapOf(port string) string {
	if strings.HasPrefix(port, "tap") {
		return port
	}
	return "tap" + port[:min(len(port), 11)]
}

// monitorFilterOf reads the filter flags.
func monitorFilterOf(c *cli.Context, stateDir string) (monitorFilter, segmentNames, error) {
	names := readSegmentNames(stateDir)
	f := monitorFilter{reasons: c.StringSlice("reason")}
	var err error
	if v := c.String("vni"); v != "" {
		if f.segment, err = names.parse(v); err != nil {
			return f, names, err
		}
	}
	if f.hosts, err = parseHosts(c.StringSlice("host"), stateDir); err != nil {
		return f, names, err
	}
	if p := c.String("port"); p != "" {
		ifi, err := net.InterfaceByName(tapOf(p))
		if err != nil {
			return f, names, fmt.Errorf("--port %s: no device %s here (run with --netns of the agent): %w", p, tapOf(p), err)
		}
		f.ifindex = ifi.Index
	}
	return f, names, nil
}

func runMonitor(c *cli.Context) error {
	p, err := printerOf(c)
	if err != nil {
		return err
	}
	if err := enterNetns(c); err != nil {
		return err
	}
	set, stateDir, err := openAgentMaps(c)
	if err != nil {
		return err
	}
	defer set.Close()
	f, names, err := monitorFilterOf(c, stateDir)
	if err != nil {
		return err
	}
	var pcap *pcapgo.NgWriter
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
			p.w = c.App.ErrWriter // the lines go aside, the capture to stdout
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
		ev := newMonitorEvent(mon, names, e)
		if err := printEvent(p, ev); err != nil {
			return err
		}
		if pcap != nil {
			if err := writeEventFrames(pcap, ev, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeEventFrames writes the frame before the decision and, when the
// program changed it, after, each as on the wire (VLAN tag included) with
// the decision as comment.
func writeEventFrames(w *pcapgo.NgWriter, ev monitorEvent, e maps.MonEvent) error {
	comment := ev.comment()
	before, after := maps.BeforeOnWire(e), maps.AfterOnWire(e)
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
