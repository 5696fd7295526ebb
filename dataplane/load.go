// Package dataplane installs vxdp on a host: it loads and pins the BPF
// programs and maps, attaches them to taps and the uplink, keeps the kernel's
// Neutron-style bridge, vxlan device and FDB correct, and reconciles all of it
// against a state.Desired. It knows nothing of where that state comes from.
package dataplane

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/vxdp/vxdp/bpf"
	"github.com/vxdp/vxdp/maps"
)

// Programs are the loaded vxdp programs, sharing one map set.
type Programs struct {
	Port    *ebpf.Program // TC ingress of taps
	Uplink  *ebpf.Program // XDP on the VTEP interface
	VXLAN   *ebpf.Program // TC ingress of vxlan-<VNI>
	Bridge  *ebpf.Program // TC ingress of brq… bridges
	Deliver *ebpf.Program // TC egress of taps
}

// LoadPrograms loads every program against the maps of set.
func LoadPrograms(set *maps.Set) (*Programs, error) {
	opts := &ebpf.CollectionOptions{MapReplacements: set.All()}
	var (
		p       Programs
		port    bpf.PortPrograms
		uplink  bpf.UplinkPrograms
		vxlan   bpf.VxlanPrograms
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
		{"bridge", bpf.LoadBridge, &bridge},
		{"deliver", bpf.LoadDeliver, &deliver},
	} {
		if err := loadAssign(l.load, l.obj, opts); err != nil {
			p.Close()
			return nil, fmt.Errorf("load %s program: %w", l.name, err)
		}
		p.Port, p.Uplink, p.VXLAN, p.Bridge, p.Deliver = port.VxdpPort, uplink.VxdpUplink, vxlan.VxdpVxlan, bridge.VxdpBridge, deliver.VxdpDeliver
	}
	return &p, nil
}

func loadAssign(load func() (*ebpf.CollectionSpec, error), obj any, opts *ebpf.CollectionOptions) error {
	spec, err := load()
	if err != nil {
		return err
	}
	err = spec.LoadAndAssign(obj, opts)
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("%w\n%+v", err, ve)
	}
	return err
}

// Close releases the program file descriptors (attached programs stay).
func (p *Programs) Close() {
	for _, prog := range []*ebpf.Program{p.Port, p.Uplink, p.VXLAN, p.Bridge, p.Deliver} {
		if prog != nil {
			prog.Close()
		}
	}
}
