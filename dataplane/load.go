// Package dataplane installs vxdp on a host: it loads and pins the BPF
// programs and maps, attaches them to taps and the uplink, keeps the kernel's
// Neutron-style bridge, vxlan device and FDB correct, and reconciles all of it
// against a state.Desired. It knows nothing of where that state comes from.
package dataplane

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/bpf"
	"github.com/vxdp/vxdp/maps"
)

// Programs are the loaded vxdp programs, sharing one map set.
type Programs struct {
	Port    *ebpf.Program // TC ingress of taps
	Uplink  *ebpf.Program // XDP on the VTEP and physical interfaces, unbound
	VXLAN   *ebpf.Program // TC ingress of vxlan-<VNI>
	Segment *ebpf.Program // TC ingress of provider segment devices
	Bridge  *ebpf.Program // TC ingress of brq… bridges
	Deliver *ebpf.Program // TC egress of taps

	maps  *maps.Set
	bound map[int]*ebpf.Program // device-bound uplink programs by ifindex
}

// LoadPrograms loads every program against the maps of set.
func LoadPrograms(set *maps.Set) (*Programs, error) {
	var (
		p       = Programs{maps: set, bound: map[int]*ebpf.Program{}}
		port    bpf.PortPrograms
		uplink  bpf.UplinkPrograms
		vxlan   bpf.VxlanPrograms
		segment bpf.SegmentPrograms
		bridge  bpf.BridgePrograms
		deliver bpf.DeliverPrograms
	)
	for _, l := range []struct {
		name string
		load func() (*ebpf.CollectionSpec, error)
		obj  any
	}{
		{"port", bpf.LoadPort, &port},
		{"uplink", bpf.LoadUplink, &uplink},
		{"vxlan", bpf.LoadVxlan, &vxlan},
		{"segment", bpf.LoadSegment, &segment},
		{"bridge", bpf.LoadBridge, &bridge},
		{"deliver", bpf.LoadDeliver, &deliver},
	} {
		if err := loadAssign(l.load, l.obj, set); err != nil {
			p.Close()
			return nil, fmt.Errorf("load %s program: %w", l.name, err)
		}
		p.Port, p.Uplink, p.VXLAN, p.Segment, p.Bridge, p.Deliver = port.VxdpPort, uplink.VxdpUplink, vxlan.VxdpVxlan,
			segment.VxdpSegment, bridge.VxdpBridge, deliver.VxdpDeliver
	}
	return &p, nil
}

func loadAssign(load func() (*ebpf.CollectionSpec, error), obj any, set *maps.Set) error {
	spec, err := load()
	if err != nil {
		return err
	}
	err = spec.LoadAndAssign(obj, set.LoadOptions(spec))
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("%w\n%+v", err, ve)
	}
	return err
}

// boundUplink returns the uplink program bound to device ifindex (loaded
// on first use): only a bound program may ask the driver for the VLAN tag
// it stripped (bpf_xdp_metadata_rx_vlan_tag).
func (p *Programs) boundUplink(ifindex int) (*ebpf.Program, error) {
	if prog := p.bound[ifindex]; prog != nil {
		return prog, nil
	}
	spec, err := bpf.LoadUplinkBound()
	if err != nil {
		return nil, err
	}
	ps := spec.Programs["vxdp_uplink"]
	if ps == nil {
		return nil, errors.New("uplink object has no vxdp_uplink program")
	}
	ps.Ifindex = uint32(ifindex)
	ps.Flags |= unix.BPF_F_XDP_DEV_BOUND_ONLY
	var objs bpf.UplinkBoundPrograms
	if err := spec.LoadAndAssign(&objs, p.maps.LoadOptions(spec)); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load uplink program bound to ifindex %d: %w\n%+v", ifindex, err, ve)
		}
		return nil, fmt.Errorf("load uplink program bound to ifindex %d: %w", ifindex, err)
	}
	p.bound[ifindex] = objs.VxdpUplink
	return objs.VxdpUplink, nil
}

// Close releases the program file descriptors (attached programs stay).
func (p *Programs) Close() {
	for _, prog := range []*ebpf.Program{p.Port, p.Uplink, p.VXLAN, p.Segment, p.Bridge, p.Deliver} {
		if prog != nil {
			prog.Close()
		}
	}
	for _, prog := range p.bound {
		prog.Close()
	}
}
