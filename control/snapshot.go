package control

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/vxdp/vxdp/state"
)

// SnapshotFile is the name of the agent's view snapshot in its state dir.
const SnapshotFile = "control-snapshot.bin"

// snapshotSchema versions the snapshot format: another version is not
// read (a full resync instead).
const snapshotSchema = 4

// snapshotMagic starts every snapshot file.
var snapshotMagic = [8]byte{'V', 'X', 'D', 'P', 'S', 'N', 'A', 'P'}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func crc32Of(b []byte) uint32 { return crc32.Checksum(b, crcTable) }

// snapshotHeader identifies what a snapshot belongs to. A snapshot is used
// for a delta resync only if every field matches the present.
type snapshotHeader struct {
	Schema int    `json:"schema"`
	Host   string `json:"host"`
	Bucket string `json:"bucket"`
	// StreamCreated identifies the bucket's stream: a bucket deleted and
	// created again (a lost NATS store) has another one.
	StreamCreated time.Time `json:"stream_created"`
	// Watermark: every change of the followed keys up to it is in the
	// snapshot; replay resumes after it.
	Watermark uint64 `json:"watermark"`
	// DesiredRevision is Desired.Revision of the state built from the
	// snapshot; it must equal the dataplane's applied revision.
	DesiredRevision uint64   `json:"desired_revision"`
	Networks        []string `json:"networks"`
	// Refs are the followed filters besides networks (see wanted).
	Refs    []string `json:"refs"`
	Records int      `json:"records"`
}

// The snapshot file: the magic, the header's length (uint32) and JSON,
// the view in binary (little endian; lengths before what they count), and
// a CRC-32C of everything before it. The body holds the host names (by
// hostID), the records kept whole (bindings, the agent record,
// registrations, security groups, their members and address groups,
// network records: key, revision, JSON),
// and per followed network, in the header's order, its ports (compact
// entries; a local port's record as JSON) and the statuses kept apart.

// encodeSnapshot writes the view as it is (the follower's goroutine owns
// it: nothing changes meanwhile).
func encodeSnapshot(v *view, h snapshotHeader) ([]byte, error) {
	h.Schema, h.Networks, h.Records = snapshotSchema, v.networkIDs(), v.size()
	head, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	w := &snapWriter{b: make([]byte, 0, 64*(h.Records+16))}
	w.b = append(w.b, snapshotMagic[:]...)
	w.u32(uint32(len(head)))
	w.b = append(w.b, head...)
	names := v.hosts.names[min(1, len(v.hosts.names)):] // names[0] is "" (no host)
	w.u32(uint32(len(names)))
	for _, n := range names {
		w.str(n)
	}
	type record struct {
		key string
		rev uint64
		rec any
	}
	var recs []record
	for id, b := range v.bindings {
		recs = append(recs, record{BindingKey(v.host, id), b.Rev, b.Rec})
	}
	for host, a := range v.agents {
		recs = append(recs, record{AgentKey(host), a.Rev, a.Rec})
	}
	for hid, r := range v.registrations {
		recs = append(recs, record{RegistrationKey(v.hosts.name(hid)), r.Rev, r.Rec})
	}
	for id, g := range v.sgs {
		recs = append(recs, record{SecGroupKey(id), g.Rev, g.Rec})
	}
	for id, ms := range v.members {
		for port, m := range ms {
			recs = append(recs, record{MemberKey(id, port), m.Rev, m.Rec})
		}
	}
	for id, ag := range v.addrGroups {
		recs = append(recs, record{AddressGroupKey(id), ag.Rev, ag.Rec})
	}
	for _, id := range h.Networks {
		if nv := v.net(id); nv.net != nil {
			recs = append(recs, record{NetworkKey(id), nv.net.Rev, nv.net.Rec})
		}
	}
	w.u32(uint32(len(recs)))
	for _, r := range recs {
		raw, err := json.Marshal(r.rec)
		if err != nil {
			return nil, fmt.Errorf("record %s: %w", r.key, err)
		}
		w.str(r.key)
		w.u64(r.rev)
		w.bytes(raw)
	}
	for _, id := range h.Networks {
		nv := v.net(id)
		w.u32(uint32(len(nv.ports)))
		for p, e := range nv.ports {
			w.b = append(w.b, p[:]...)
			w.u64(e.rev)
			w.u64(e.gen)
			w.u32(uint32(e.host))
			w.b = append(w.b, e.mac[:]...)
			w.b = append(w.b, e.ip4[:]...)
			w.status(e.st)
			flags := e.flags & flagIP4
			switch {
			case e.more == nil:
				w.b = append(w.b, flags)
			case e.more.rec != nil:
				w.b = append(w.b, flags|snapLocal)
				raw, err := json.Marshal(e.more.rec)
				if err != nil {
					return nil, err
				}
				w.bytes(raw)
			default:
				w.b = append(w.b, flags|snapMore)
				w.u32(uint32(len(e.more.ips)))
				for _, ip := range e.more.ips {
					w.bytes(ip.AsSlice())
				}
			}
		}
		w.u32(uint32(len(nv.others)))
		for ref, st := range nv.others {
			w.b = append(w.b, ref.port[:]...)
			w.u32(uint32(ref.host))
			w.status(st)
		}
	}
	return binary.LittleEndian.AppendUint32(w.b, crc32Of(w.b)), nil
}

// snapPortMin is the size of the smallest port entry of a snapshot.
const snapPortMin = len(pid{}) + 8 + 8 + 4 + 6 + 4 + 17 + 1

// What a port entry of a snapshot carries besides the fixed fields.
const (
	snapLocal = 1 << 6 // the record of a local port (JSON)
	snapMore  = 1 << 7 // a remote port's addresses (not one IPv4 address)
)

type snapWriter struct{ b []byte }

func (w *snapWriter) u32(n uint32)   { w.b = binary.LittleEndian.AppendUint32(w.b, n) }
func (w *snapWriter) u64(n uint64)   { w.b = binary.LittleEndian.AppendUint64(w.b, n) }
func (w *snapWriter) str(s string)   { w.u32(uint32(len(s))); w.b = append(w.b, s...) }
func (w *snapWriter) bytes(b []byte) { w.u32(uint32(len(b))); w.b = append(w.b, b...) }
func (w *snapWriter) status(st portStatus) {
	w.u64(st.rev)
	w.u64(st.gen)
	w.b = append(w.b, st.state)
}

// writeSnapshot writes an encoded snapshot to dir atomically.
func writeSnapshot(dir string, raw []byte) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	tmp, err := os.CreateTemp(dir, SnapshotFile+".*")
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, SnapshotFile)); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// errSnapshotMissing: there is no snapshot (a first start); it is an
// fs.ErrNotExist.
var errSnapshotMissing = fmt.Errorf("no snapshot (%w)", fs.ErrNotExist)

// readSnapshotHeader reads the header of the snapshot in dir.
func readSnapshotHeader(dir string) (*snapshotHeader, error) {
	f, err := os.Open(filepath.Join(dir, SnapshotFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errSnapshotMissing
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var pre [12]byte
	if _, err := io.ReadFull(f, pre[:]); err != nil || !bytes.Equal(pre[:8], snapshotMagic[:]) {
		return nil, errors.New("not a vxdp snapshot")
	}
	head := make([]byte, min(binary.LittleEndian.Uint32(pre[8:]), 1<<24))
	if _, err := io.ReadFull(f, head); err != nil {
		return nil, fmt.Errorf("snapshot header: %w", err)
	}
	var h snapshotHeader
	if err := json.Unmarshal(head, &h); err != nil {
		return nil, fmt.Errorf("snapshot header: %w", err)
	}
	return &h, nil
}

// SnapshotRevision is the desired revision of the snapshot in dir: the
// state it was captured with (0 when there is none or it is unreadable).
func SnapshotRevision(dir string) uint64 {
	h, err := readSnapshotHeader(dir)
	if err != nil {
		return 0
	}
	return h.DesiredRevision
}

// readSnapshot loads a snapshot into a view (which tracks nothing yet:
// its first state is built whole). A snapshot of another format version,
// another host, or whose checksum does not match is refused.
func readSnapshot(dir, host string, ownVTEP netip.Addr) (*snapshotHeader, *view, error) {
	raw, err := os.ReadFile(filepath.Join(dir, SnapshotFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, errSnapshotMissing
	}
	if err != nil {
		return nil, nil, err
	}
	if len(raw) < 16 || !bytes.Equal(raw[:8], snapshotMagic[:]) {
		return nil, nil, errors.New("not a vxdp snapshot")
	}
	body, sum := raw[:len(raw)-4], binary.LittleEndian.Uint32(raw[len(raw)-4:])
	if crc32Of(body) != sum {
		return nil, nil, errors.New("snapshot checksum mismatch (a torn or corrupt file)")
	}
	r := &snapReader{b: body[8:]}
	var h snapshotHeader
	if err := json.Unmarshal(r.bytes(), &h); err != nil || r.err != nil {
		return nil, nil, fmt.Errorf("snapshot header: %v", errors.Join(err, r.err))
	}
	if h.Schema != snapshotSchema {
		return nil, nil, fmt.Errorf("snapshot format %d, this agent reads %d", h.Schema, snapshotSchema)
	}
	if h.Host != host {
		return nil, nil, fmt.Errorf("snapshot of host %q, this agent is %q", h.Host, host)
	}
	v, err := decodeView(r, &h, host, ownVTEP)
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot: %w", err)
	}
	return &h, v, nil
}

func decodeView(r *snapReader, h *snapshotHeader, host string, ownVTEP netip.Addr) (*view, error) {
	v := newView(host, ownVTEP)
	hosts := make([]hostID, r.u32()+1)
	for i := 1; i < len(hosts) && r.err == nil; i++ {
		hosts[i] = v.hosts.of(r.str())
	}
	hostOf := func() hostID {
		i := r.u32()
		if int(i) >= len(hosts) {
			r.fail("host %d of %d", i, len(hosts))
			return 0
		}
		return hosts[i]
	}
	for _, id := range h.Networks {
		v.followNetwork(id)
	}
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		key, rev, value := r.str(), r.u64(), r.bytes()
		k, rec, err := DecodeRecord(key, value)
		if err != nil {
			return nil, err
		}
		if k.Kind == KindPort || k.Kind == KindStatus || !v.follows(k) {
			return nil, fmt.Errorf("record %s outside the followed keys", key)
		}
		v.store(k, rev, rec)
	}
	for _, netID := range h.Networks {
		nv := v.net(netID)
		n := r.u32()
		if int(n) <= len(r.b)/snapPortMin {
			// Sized once: growing maps of 100k entries costs more than
			// filling them.
			nv.ports, nv.byMAC = make(map[pid]portEntry, n), make(map[state.MAC]pid, n)
		}
		for ; n > 0 && r.err == nil; n-- {
			var id pid
			copy(id[:], r.take(len(id)))
			e := portEntry{rev: r.u64(), gen: r.u64(), host: hostOf()}
			copy(e.mac[:], r.take(6))
			copy(e.ip4[:], r.take(4))
			e.st = r.status()
			flags := r.byte()
			e.flags = flags & flagIP4
			switch {
			case flags&snapLocal != 0:
				var rec PortRecord
				k, dec, err := DecodeRecord(PortKey(netID, v.ids.name(id)), r.bytes())
				if err != nil {
					return nil, err
				}
				if k.Kind == KindPort {
					rec = *dec.(*PortRecord)
				}
				e.more = &portMore{rec: &rec}
			case flags&snapMore != 0:
				m := &portMore{}
				for n := r.u32(); n > 0 && r.err == nil; n-- {
					m.ips = append(m.ips, r.addr())
				}
				e.more = m
			}
			if e.host == v.self && (e.more == nil || e.more.rec == nil) {
				return nil, fmt.Errorf("local port %s without its record", v.ids.name(id))
			}
			if e.host == v.self && e.st.rev != 0 {
				nv.own[id] = e.st
			}
			v.index(nv, id, e)
		}
		for n := r.u32(); n > 0 && r.err == nil; n-- {
			var ref statusRef
			copy(ref.port[:], r.take(len(ref.port)))
			ref.host = hostOf()
			st := r.status()
			nv.others[ref] = st
			if ref.host == v.self {
				nv.own[ref.port] = st
			}
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d bytes after the last network", len(r.b))
	}
	return v, r.err
}

// snapReader reads what snapWriter wrote; the first short read sets err
// and every later read returns zero values.
type snapReader struct {
	b   []byte
	err error
}

func (r *snapReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
	r.b = nil
}

func (r *snapReader) take(n int) []byte {
	if n < 0 || n > len(r.b) {
		r.fail("truncated: %d bytes wanted, %d left", n, len(r.b))
		return make([]byte, 16) // what the fixed-size reads need
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *snapReader) byte() byte    { return r.take(1)[0] }
func (r *snapReader) u32() uint32   { return binary.LittleEndian.Uint32(r.take(4)) }
func (r *snapReader) u64() uint64   { return binary.LittleEndian.Uint64(r.take(8)) }
func (r *snapReader) bytes() []byte { return r.take(int(r.u32())) }
func (r *snapReader) str() string   { return string(r.bytes()) }
func (r *snapReader) addr() netip.Addr {
	a, ok := netip.AddrFromSlice(r.bytes())
	if !ok {
		r.fail("invalid address")
	}
	return a
}

func (r *snapReader) status() portStatus {
	return portStatus{rev: r.u64(), gen: r.u64(), state: r.byte()}
}
