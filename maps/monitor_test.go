package maps_test

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/vxdp/vxdp/frames"
	"github.com/vxdp/vxdp/maps"
)

var (
	vm1, vm2 = frames.MAC("fa:16:3e:06:42:34"), frames.MAC("fa:16:3e:cb:98:2c")
	ip1, ip2 = netip.MustParseAddr("172.16.100.12"), netip.MustParseAddr("172.16.100.19")
	vtep3    = netip.MustParseAddr("192.168.248.3")
	vtep4    = netip.MustParseAddr("192.168.248.4")
)

// event is an event whose frame was before on entry and after on exit.
func event(before, after []byte) maps.MonEvent {
	var e maps.MonEvent
	e.BeforeLen = uint16(copy(e.Before[:], before))
	e.AfterLen = uint16(copy(e.After[:], after))
	return e
}

// TestMonitorOuter: the VTEPs of an event are those the program noted,
// else those of the VXLAN frame it received (decapsulation) or sent
// (encapsulation); none for a frame without a tunnel.
func TestMonitorOuter(t *testing.T) {
	inner := frames.UDP4(vm2, vm1, ip2, ip1, 40000, 9)
	wire := frames.FromVTEP(vm2, vm1, vtep3, vtep4, 100, inner).Bytes()
	v6src, v6dst := netip.MustParseAddr("fd00::3"), netip.MustParseAddr("fd00::4")
	noted6 := event(inner, inner)
	noted6.OuterFamily, noted6.OuterSrc, noted6.OuterDst = 6, v6src.As16(), v6dst.As16()
	noted4 := event(inner, inner)
	noted4.OuterFamily = 4
	copy(noted4.OuterSrc[:], vtep3.AsSlice())
	copy(noted4.OuterDst[:], vtep4.AsSlice())
	for _, tc := range []struct {
		name     string
		e        maps.MonEvent
		src, dst netip.Addr
	}{
		{"decapsulated by the uplink", event(wire, inner), vtep3, vtep4},
		{"dropped by the uplink", event(wire, wire), vtep3, vtep4},
		{"encapsulated by the port", event(inner, wire), vtep3, vtep4},
		{"noted by the vxlan program", noted4, vtep3, vtep4},
		{"noted over IPv6", noted6, v6src, v6dst},
		{"a tap's frame", event(inner, inner), netip.Addr{}, netip.Addr{}},
	} {
		src, dst := maps.Outer(tc.e)
		if src != tc.src || dst != tc.dst {
			t.Errorf("%s: outer %v > %v, want %v > %v", tc.name, src, dst, tc.src, tc.dst)
		}
	}
}

// TestMonitorTags: a tag held outside the frame's bytes (stripped on
// receive, pushed by a program) is reported and put back into the frame
// for the capture; a tag in the bytes is reported as it is.
func TestMonitorTags(t *testing.T) {
	frame := frames.UDP4(vm2, vm1, ip2, ip1, 40000, 9)
	pushed := event(frame, frame)
	pushed.AfterVlanProto, pushed.AfterVlanTci = 0x8100, 99
	in, out := maps.Tags(pushed)
	if in != nil || out == nil || out.ID() != 99 {
		t.Errorf("tag pushed: in %v out %v, want none and 99", in, out)
	}
	if got := maps.AfterOnWire(pushed); !bytes.Equal(got, frames.Tagged(frame, 99)) {
		t.Errorf("frame after the push as on the wire:\n%s", frames.Diff(got, frames.Tagged(frame, 99)))
	}
	if got := maps.BeforeOnWire(pushed); !bytes.Equal(got, frame) {
		t.Errorf("untagged frame changed on the way to the capture:\n%s", frames.Diff(got, frame))
	}

	inFrame := event(frames.Tagged(frame, 99), frame)
	stripped := event(frame, frame)
	stripped.BeforeVlanProto, stripped.BeforeVlanTci = 0x8100, 0x2000|99 // priority 1
	for name, e := range map[string]maps.MonEvent{"tag in the frame": inFrame, "tag stripped by the driver": stripped} {
		in, out := maps.Tags(e)
		if in == nil || in.ID() != 99 || out != nil {
			t.Errorf("%s, popped: in %v out %v, want 99 and none", name, in, out)
		}
		if got := maps.BeforeOnWire(e); got[12] != 0x81 || got[13] != 0 || len(got) != len(frame)+4 {
			t.Errorf("%s: capture of the frame on entry has no tag:\n%s", name, frames.Decode(got))
		}
	}
}
