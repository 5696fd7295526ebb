package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/maps"
)

// monitorFilter selects events; a zero field selects all.
type monitorFilter struct {
	ifindex int
	segment maps.Segment
	reasons []string
	hosts   []netip.Addr // VTEPs: the tunnel's outer source or destination
}

func (f monitorFilter) match(e maps.MonEvent) bool {
	if f.ifindex != 0 && int(e.Ifindex) != f.ifindex {
		return false
	}
	if f.segment != 0 && e.Vni != f.segment {
		return false
	}
	if len(f.hosts) > 0 {
		src, dst := maps.Outer(e)
		if !slices.Contains(f.hosts, src) && !slices.Contains(f.hosts, dst) {
			return false
		}
	}
	if len(f.reasons) == 0 {
		return true
	}
	name := maps.ReasonName(maps.Reason(e.Reason))
	return slices.ContainsFunc(f.reasons, func(r string) bool { return strings.HasPrefix(name, strings.ToUpper(r)) })
}

// segmentNames names an agent's segments as the operator knows them: a
// VXLAN network by its VNI ("100"), a provider network by its physical
// network and VLAN id ("default/99", flat: "external"), as its
// applied.json records them; a segment it does not record prints as
// maps.SegmentString ("p0/99").
type segmentNames struct {
	names   map[maps.Segment]string
	missing string // why there are no names
}

// readSegmentNames reads the provider networks' names from the agent's
// applied state; without it, segments print as maps.SegmentString.
func readSegmentNames(stateDir string) segmentNames {
	s := segmentNames{names: map[maps.Segment]string{}}
	a, err := dataplane.ReadApplied(stateDir)
	if err != nil {
		s.missing = fmt.Sprintf("the agent's applied state is not readable (%v; --state-dir)", err)
		return s
	}
	for _, n := range a.Networks {
		if n.VNI&maps.SegProvider == 0 || n.PhysicalNetwork == "" {
			continue
		}
		s.names[n.VNI] = n.PhysicalNetwork
		if n.VLAN != 0 {
			s.names[n.VNI] += "/" + strconv.Itoa(int(n.VLAN))
		}
	}
	return s
}

// name is how a segment prints ("" for none).
func (s segmentNames) name(seg maps.Segment) string {
	if seg == 0 {
		return ""
	}
	if n, ok := s.names[seg]; ok {
		return n
	}
	return maps.SegmentString(seg)
}

// parse reads --vni: a VNI, a provider network's "physnet/VLAN" or flat
// "physnet", or maps.SegmentString's "pN/VLAN".
func (s segmentNames) parse(arg string) (maps.Segment, error) {
	if vni, err := strconv.ParseUint(arg, 10, 32); err == nil {
		if vni == 0 || vni >= 1<<24 {
			return 0, fmt.Errorf("--vni %s: a VNI is 1-16777215", arg)
		}
		return maps.Segment(vni), nil
	}
	for seg, n := range s.names {
		if n == arg || n+"/0" == arg {
			return seg, nil
		}
	}
	if idx, vlan, ok := strings.Cut(arg, "/"); ok && strings.HasPrefix(idx, "p") {
		phys, err1 := strconv.ParseUint(idx[1:], 10, 16)
		id, err2 := strconv.ParseUint(vlan, 10, 16)
		if err1 == nil && err2 == nil {
			return maps.ProviderSegment(int(phys), uint16(id))
		}
	}
	known := make([]string, 0, len(s.names))
	for _, n := range s.names {
		known = append(known, n)
	}
	slices.Sort(known)
	if s.missing != "" {
		known = append(known, s.missing)
	}
	return 0, fmt.Errorf("--vni %q: not a VNI, nor a provider network of this agent (%s), nor pN/VLAN",
		arg, strings.Join(append(known, "see vxdp dump networks"), "; "))
}

// parseHosts reads --host: VTEP addresses, or host names the agent's
// control-plane snapshot registers (NATS mode).
func parseHosts(args []string, stateDir string) ([]netip.Addr, error) {
	var out []netip.Addr
	var vteps map[string]netip.Addr
	var snapErr error
	for _, h := range args {
		if ip, err := netip.ParseAddr(h); err == nil {
			out = append(out, ip.Unmap())
			continue
		}
		if vteps == nil && snapErr == nil {
			vteps, snapErr = control.SnapshotVTEPs(stateDir)
		}
		if ip, ok := vteps[h]; ok {
			out = append(out, ip.Unmap())
			continue
		}
		if snapErr != nil {
			why := snapErr.Error()
			if errors.Is(snapErr, fs.ErrNotExist) {
				why = "the agent keeps no control-plane snapshot (" + filepath.Join(stateDir, control.SnapshotFile) + "): names are known in NATS mode only"
			}
			return nil, fmt.Errorf("--host %s: not an address, and %s; give the host's VTEP address", h, why)
		}
		known := make([]string, 0, len(vteps))
		for n, ip := range vteps {
			known = append(known, n+" ("+ip.String()+")")
		}
		slices.Sort(known)
		return nil, fmt.Errorf("--host %s: not an address, nor a host the agent knows: %s", h, strings.Join(known, ", "))
	}
	return out, nil
}
