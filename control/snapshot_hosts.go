package control

import (
	"fmt"
	"net/netip"
	"path/filepath"
)

// SnapshotVTEPs reads the hosts' VTEPs from the snapshot an agent keeps in
// its state dir (NATS mode): each host's registered VTEP, the address
// other hosts send its traffic to and accept VXLAN for its ports from, or,
// for a host without a registration, the one its agent record claims. For
// tools naming a host (`vxdp monitor --host`); an agent without a snapshot
// (file mode) knows no host names.
func SnapshotVTEPs(dir string) (map[string]netip.Addr, error) {
	h, err := readSnapshotHeader(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, SnapshotFile), err)
	}
	_, v, err := readSnapshot(dir, h.Host, netip.Addr{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, SnapshotFile), err)
	}
	out := map[string]netip.Addr{}
	for _, r := range v.registrations {
		out[r.Rec.Host] = r.Rec.VTEP
	}
	for host, a := range v.agents {
		if _, ok := out[host]; !ok && a.Rec.VTEP.IsValid() {
			out[host] = a.Rec.VTEP
		}
	}
	return out, nil
}

// WriteRecordsSnapshot writes to dir the snapshot of host's agent holding
// just recs (key -> record: registrations, the agent record; no networks),
// as a fixture for the tools that read snapshots.
func WriteRecordsSnapshot(dir, host string, recs map[string]any) error {
	v := newView(host, netip.Addr{})
	rev := uint64(0)
	for key, rec := range recs {
		k := ParseKey(key)
		if !v.follows(k) || k.Kind == KindNetwork || k.Kind == KindPort || k.Kind == KindStatus {
			return fmt.Errorf("snapshot record %s: not a record kept whole", key)
		}
		rev++
		v.store(k, rev, rec)
	}
	raw, err := encodeSnapshot(v, snapshotHeader{Host: host, Watermark: rev, DesiredRevision: rev})
	if err != nil {
		return err
	}
	return writeSnapshot(dir, raw)
}
