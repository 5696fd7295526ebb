package control

import "github.com/vxdp/vxdp/state"

// networkState is what an agent's state says of a network record: its
// type and segment, MTU, DNS domain and subnets (each traced to the
// network record, which holds them).
func networkState(id string, n rev[NetworkRecord], src state.Source) state.Network {
	r := n.Rec
	net := state.Network{ID: id, Name: r.Name, Type: r.NetworkType, VNI: r.VNI, PhysicalNetwork: r.PhysicalNetwork,
		VLAN: r.SegmentationID, MTU: r.MTU, DNSDomain: r.DNSDomain, Source: src}
	if len(r.Subnets) > 0 {
		net.Subnets = make([]state.Subnet, len(r.Subnets))
		for i := range r.Subnets {
			net.Subnets[i] = r.Subnets[i].state(src)
		}
	}
	return net
}
