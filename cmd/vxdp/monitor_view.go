package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/vxdp/vxdp/maps"
)

// monitorEvent is one decision as `vxdp monitor` prints it.
type monitorEvent struct {
	Time               time.Time
	Program, Reason    string
	Verdict            string
	Ifindex            uint32
	Device             string
	Segment            maps.Segment
	SegmentName        string
	TagIn, TagOut      *maps.VLANTag
	OuterSrc, OuterDst netip.Addr
	Length             uint32
	Frame              string
}

// newMonitorEvent describes e; names names its segment.
func newMonitorEvent(mon *maps.Monitor, names segmentNames, e maps.MonEvent) monitorEvent {
	r := maps.Reason(e.Reason)
	ev := monitorEvent{Time: mon.Time(e), Program: maps.ProgName(maps.Prog(e.Prog)), Reason: maps.ReasonName(r),
		Verdict: maps.Verdict(r), Ifindex: e.Ifindex, Segment: e.Vni, SegmentName: names.name(e.Vni), Length: e.Len,
		Frame: maps.Summary(maps.Before(e))}
	ev.TagIn, ev.TagOut = maps.Tags(e)
	ev.OuterSrc, ev.OuterDst = maps.Outer(e)
	if i, err := net.InterfaceByIndex(int(e.Ifindex)); err == nil {
		ev.Device = i.Name
	}
	return ev
}

func (ev monitorEvent) provider() bool { return ev.Segment&maps.SegProvider != 0 }

// segmentText is the segment as the line shows it: "vni 100", "vlan
// default/99", "flat external", or "vni -" for none.
func (ev monitorEvent) segmentText() string {
	switch {
	case ev.Segment == 0:
		return "vni -"
	case !ev.provider():
		return "vni " + ev.SegmentName
	case ev.Segment&0xfff == 0:
		return "flat " + ev.SegmentName
	}
	return "vlan " + ev.SegmentName
}

// tagText is the VLAN tag on entry and exit: "tag 99", "tag 99>none"
// (removed), "tag none>99" (added); "" when neither has one.
func (ev monitorEvent) tagText() string {
	id := func(t *maps.VLANTag) string {
		if t == nil {
			return "none"
		}
		return fmt.Sprint(t.ID())
	}
	switch {
	case ev.TagIn == nil && ev.TagOut == nil:
		return ""
	case ev.TagIn != nil && ev.TagOut != nil && *ev.TagIn == *ev.TagOut:
		return "tag " + id(ev.TagIn)
	}
	return "tag " + id(ev.TagIn) + ">" + id(ev.TagOut)
}

// outerText is the tunnel's "outer SRC > DST", or "".
func (ev monitorEvent) outerText() string {
	if !ev.OuterSrc.IsValid() {
		return ""
	}
	return fmt.Sprintf("outer %s > %s", ev.OuterSrc, ev.OuterDst)
}

// line is the default one-line form.
func (ev monitorEvent) line() string {
	dev := ev.Device
	if dev == "" {
		dev = fmt.Sprint(ev.Ifindex)
	}
	parts := []string{fmt.Sprintf("%s %-7s %-22s %-16s %-10s len %-5d", ev.Time.Format("15:04:05.000000"), ev.Program, ev.Reason,
		dev, ev.segmentText(), ev.Length)}
	for _, p := range []string{ev.tagText(), ev.outerText(), ev.Frame} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, " ")
}

// comment is the pcapng comment of the event's frames.
func (ev monitorEvent) comment() string {
	dev := ev.Device
	if dev == "" {
		dev = "?"
	}
	parts := []string{fmt.Sprintf("vxdp %s %s on %s (ifindex %d) %s", ev.Program, ev.Reason, dev, ev.Ifindex, ev.segmentText())}
	for _, p := range []string{ev.tagText(), ev.outerText()} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, " ")
}

func tagID(t *maps.VLANTag) any {
	if t == nil {
		return nil
	}
	return t.ID()
}

var monitorEventView = view[monitorEvent]{
	kind: "monitor event",
	columns: []column[monitorEvent]{
		{key: "time", header: "Time", value: func(e monitorEvent) any { return e.Time.UTC() },
			text: func(e monitorEvent) string { return e.Time.UTC().Format(time.RFC3339Nano) }},
		{key: "program", header: "Program", value: func(e monitorEvent) any { return e.Program }},
		{key: "reason", header: "Reason", value: func(e monitorEvent) any { return e.Reason }},
		{key: "verdict", header: "Verdict", value: func(e monitorEvent) any { return e.Verdict }},
		{key: "ifindex", header: "Ifindex", value: func(e monitorEvent) any { return e.Ifindex }},
		{key: "device", header: "Device", value: func(e monitorEvent) any { return stringOrNil(e.Device) }},
		{key: "segment", header: "Segment", value: func(e monitorEvent) any { return stringOrNil(e.SegmentName) }},
		{key: "vni", header: "VNI", value: func(e monitorEvent) any {
			if e.Segment == 0 || e.provider() {
				return nil
			}
			return e.Segment
		}},
		{key: "vlan_in", header: "VLAN In", value: func(e monitorEvent) any { return tagID(e.TagIn) }},
		{key: "vlan_out", header: "VLAN Out", value: func(e monitorEvent) any { return tagID(e.TagOut) }},
		{key: "outer_src", header: "Outer Src", value: func(e monitorEvent) any { return addrOrNil(e.OuterSrc) }},
		{key: "outer_dst", header: "Outer Dst", value: func(e monitorEvent) any { return addrOrNil(e.OuterDst) }},
		{key: "length", header: "Length", value: func(e monitorEvent) any { return e.Length }},
		{key: "frame", header: "Frame", value: func(e monitorEvent) any { return e.Frame }},
	},
}

// printEvent prints one event as the printer says: the line (table), one
// compact JSON object per line (a stream jq reads), a YAML document, or
// the values (-o value, or -c in a table).
func printEvent(p printer, ev monitorEvent) error {
	if p.format == formatTable && len(p.columns) == 0 {
		_, err := fmt.Fprintln(p.w, ev.line())
		return err
	}
	r, err := render(p, monitorEventView, []monitorEvent{ev}, true)
	if err != nil {
		return err
	}
	switch p.format {
	case formatJSON:
		b, err := json.Marshal(r.objects()[0])
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(p.w, "%s\n", b)
		return err
	case formatYAML:
		if _, err := io.WriteString(p.w, "---\n"); err != nil {
			return err
		}
		return writeYAML(p.w, r.objects()[0])
	}
	_, err = fmt.Fprintln(p.w, strings.Join(valueTexts(r.texts[0]), " "))
	return err
}
