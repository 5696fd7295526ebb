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
	Port   *ebpf.Program
	Uplink *ebpf.Program
}

// LoadPrograms loads both programs against the maps of set.
func LoadPrograms(set *maps.Set) (*Programs, error) {
	opts := &ebpf.CollectionOptions{MapReplacements: set.All()}
	var port bpf.PortPrograms
	if err := loadAssign(bpf.LoadPort, &port, opts); err != nil {
		return nil, fmt.Errorf("load port program: %w", err)
	}
	var uplink bpf.UplinkPrograms
	if err := loadAssign(bpf.LoadUplink, &uplink, opts); err != nil {
		port.Close()
		return nil, fmt.Errorf("load uplink program: %w", err)
	}
	return &Programs{Port: port.VxdpPort, Uplink: uplink.VxdpUplink}, nil
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
	p.Port.Close()
	p.Uplink.Close()
}
