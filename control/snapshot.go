package control

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"
)

// SnapshotFile is the name of the agent's view snapshot in its state dir.
const SnapshotFile = "control-snapshot.json"

// snapshotSchema versions the snapshot file format.
const snapshotSchema = 2

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
	SecurityGroups  []string `json:"security_groups"`
	Records         int      `json:"records"`
}

// snapshot is a captured view: what the agent knew when it built a Desired.
type snapshot struct {
	snapshotHeader
	records []snapshotRecord
}

// capture copies the view's record pointers (records are immutable), cheap
// enough to do at every build.
func (f *viewFollower) capture(v *view, watermark, desiredRev uint64, sgs map[string]bool) *snapshot {
	s := &snapshot{snapshotHeader: snapshotHeader{
		Schema: snapshotSchema, Host: f.opts.Host, Bucket: f.bucket, StreamCreated: f.streamCreated,
		Watermark: watermark, DesiredRevision: desiredRev,
	}}
	for id := range v.nets {
		s.Networks = append(s.Networks, id)
	}
	for id := range sgs {
		s.SecurityGroups = append(s.SecurityGroups, id)
	}
	slices.Sort(s.Networks)
	slices.Sort(s.SecurityGroups)
	s.records = v.records()
	s.Records = len(s.records)
	return s
}

// writeSnapshot writes s to dir atomically: the header as a JSON line,
// then one line per record: "<key> <revision> <record JSON>".
func writeSnapshot(dir string, s *snapshot) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	path := filepath.Join(dir, SnapshotFile)
	tmp, err := os.CreateTemp(dir, SnapshotFile+".*")
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer os.Remove(tmp.Name())
	fail := func(err error) error {
		tmp.Close()
		return fmt.Errorf("snapshot: %w", err)
	}
	w := bufio.NewWriterSize(tmp, 1<<20)
	head, err := json.Marshal(s.snapshotHeader)
	if err != nil {
		return fail(err)
	}
	w.Write(head)
	w.WriteByte('\n')
	var line []byte
	for _, r := range s.records {
		b, err := json.Marshal(r.Rec)
		if err != nil {
			return fail(fmt.Errorf("record %s: %w", r.Key, err))
		}
		line = append(line[:0], r.Key...)
		line = append(line, ' ')
		line = strconv.AppendUint(line, r.Rev, 10)
		line = append(line, ' ')
		line = append(line, b...)
		line = append(line, '\n')
		w.Write(line)
	}
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// readSnapshot loads a snapshot into a view. Every record is decoded and
// validated again (on all CPUs: at 100k ports this is most of a delta
// resync); a snapshot with a bad record is not used at all.
func readSnapshot(dir, host string) (*snapshotHeader, *view, error) {
	raw, err := os.ReadFile(filepath.Join(dir, SnapshotFile))
	if err != nil {
		return nil, nil, err
	}
	head, body, _ := bytes.Cut(raw, []byte("\n"))
	var h snapshotHeader
	if err := json.Unmarshal(head, &h); err != nil {
		return nil, nil, fmt.Errorf("snapshot header: %w", err)
	}
	if h.Schema != snapshotSchema {
		return nil, nil, fmt.Errorf("snapshot schema %d, want %d", h.Schema, snapshotSchema)
	}
	if h.Host != host {
		return nil, nil, fmt.Errorf("snapshot of host %q, this agent is %q", h.Host, host)
	}
	lines := bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n"))
	if len(body) == 0 {
		lines = nil
	}
	if len(lines) != h.Records {
		return nil, nil, fmt.Errorf("snapshot: %d records, header says %d", len(lines), h.Records)
	}
	type decoded struct {
		k   Key
		rev uint64
		rec any
		err error
	}
	out := make([]decoded, len(lines))
	workers := min(runtime.GOMAXPROCS(0), max(1, len(lines)/1000))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(lines); i += workers {
				key, rest, ok1 := bytes.Cut(lines[i], []byte(" "))
				revb, val, ok2 := bytes.Cut(rest, []byte(" "))
				rev, perr := strconv.ParseUint(string(revb), 10, 64)
				if !ok1 || !ok2 || perr != nil {
					out[i].err = fmt.Errorf("line %d: not \"<key> <revision> <record>\"", i+2)
					continue
				}
				out[i].k, out[i].rec, out[i].err = DecodeRecord(string(key), val)
				out[i].rev = rev
			}
		}()
	}
	wg.Wait()
	v := newView(host)
	for _, id := range h.Networks {
		v.followNetwork(id)
	}
	for i, d := range out {
		if d.err != nil {
			return nil, nil, fmt.Errorf("snapshot: %w", d.err)
		}
		if !v.follows(d.k) {
			return nil, nil, fmt.Errorf("snapshot: line %d: record outside the followed keys", i+2)
		}
		v.store(d.k, d.rev, d.rec)
	}
	return &h, v, nil
}

// SnapshotRevision is the desired revision of the snapshot in dir: the
// state it was captured with (0 when there is none or it is unreadable).
func SnapshotRevision(dir string) uint64 {
	f, err := os.Open(filepath.Join(dir, SnapshotFile))
	if err != nil {
		return 0
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadBytes('\n')
	var h snapshotHeader
	if json.Unmarshal(line, &h) != nil {
		return 0
	}
	return h.DesiredRevision
}
