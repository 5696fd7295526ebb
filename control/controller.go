package control

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vxdp/vxdp/state"
)

// Errors of controller operations; test with errors.Is.
var (
	ErrNotFound  = errors.New("not found")
	ErrConflict  = errors.New("changed concurrently")
	ErrInUse     = errors.New("in use")
	ErrInvalid   = errors.New("invalid")
	ErrExists    = errors.New("already exists")
	ErrExhausted = errors.New("exhausted")
)

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// VNIRange is an inclusive range of VNIs a network may be allocated from.
type VNIRange struct{ Min, Max uint32 }

// DefaultVNIRanges are Neutron's ml2 vni_ranges of the seed deployment.
var DefaultVNIRanges = []VNIRange{{1001, 2000}}

// ParseVNIRanges parses Neutron's vni_ranges syntax: "1001:2000[,3000:3999]".
func ParseVNIRanges(s string) ([]VNIRange, error) {
	var out []VNIRange
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, ok := strings.Cut(part, ":")
		a, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 32)
		b, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 32)
		if !ok || err1 != nil || err2 != nil || a == 0 || b > state.MaxVNI || a > b {
			return nil, invalidf("vni range %q: want MIN:MAX with 1 <= MIN <= MAX <= %d, e.g. 1001:2000", part, state.MaxVNI)
		}
		out = append(out, VNIRange{uint32(a), uint32(b)})
	}
	if len(out) == 0 {
		return nil, invalidf("vni ranges %q: empty", s)
	}
	return out, nil
}

// ControllerOptions configure a Controller.
type ControllerOptions struct {
	// Bucket name (default DefaultBucket).
	Bucket string
	// VNIRanges to allocate from when a network is created without a VNI
	// (default DefaultVNIRanges).
	VNIRanges []VNIRange
	// Log (default slog.Default()).
	Log *slog.Logger
	// MemberSyncGrace: SyncMembers leaves member records this young alone
	// (default DefaultMemberSyncGrace).
	MemberSyncGrace time.Duration
}

// Controller performs the neutron-server role: it validates requests and
// writes networks, ports and security groups to the bucket. Every write is
// conditional (create-only or compare-and-set on the key's revision), so
// concurrent controllers never overwrite each other silently.
type Controller struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	reader bucketReader
	bucket string
	ranges []VNIRange
	log    *slog.Logger
	// memberGrace: see ControllerOptions.MemberSyncGrace.
	memberGrace time.Duration
}

// NewController binds to the bucket through nc; the bucket must exist
// (EnsureBucket, or `vxdp server`).
func NewController(ctx context.Context, nc *nats.Conn, o ControllerOptions) (*Controller, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	kv, err := OpenBucket(ctx, js, o.Bucket)
	if err != nil {
		return nil, err
	}
	c := &Controller{js: js, kv: kv, bucket: kv.Bucket(), ranges: o.VNIRanges, log: o.Log, memberGrace: cmp.Or(o.MemberSyncGrace, DefaultMemberSyncGrace)}
	if c.ranges == nil {
		c.ranges = DefaultVNIRanges
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.reader = directReader(js, c.bucket, c.log)
	return c, nil
}

// Bucket is the bucket the controller writes.
func (c *Controller) Bucket() string { return c.bucket }

// KV gives direct access to the bucket (tests, benchmarks).
func (c *Controller) KV() jetstream.KeyValue { return c.kv }

func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// get reads and decodes one key.
func (c *Controller) get(ctx context.Context, key string) (any, uint64, error) {
	value, rev, err := c.getValue(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	_, rec, err := DecodeRecord(key, value)
	if err != nil {
		return nil, 0, err
	}
	return rec, rev, nil
}

// getValue reads key. A replicated bucket answers reads from any replica
// (direct gets), and one that lags may not have the controller's own
// write of a moment ago (a project's default group, created just before
// a port joins it): "not found" is confirmed by the stream's leader.
func (c *Controller) getValue(ctx context.Context, key string) ([]byte, uint64, error) {
	e, err := c.kv.Get(ctx, key)
	if err == nil {
		return e.Value(), e.Revision(), nil
	}
	if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, fmt.Errorf("get %s: %w", key, err)
	}
	stream, serr := c.js.Stream(ctx, StreamName(c.bucket))
	if serr != nil {
		return nil, 0, fmt.Errorf("get %s: %w", key, serr)
	}
	m, serr := stream.GetLastMsgForSubject(ctx, "$KV."+c.bucket+"."+key)
	switch {
	case errors.Is(serr, jetstream.ErrMsgNotFound):
		return nil, 0, fmt.Errorf("%s: %w", key, ErrNotFound)
	case serr != nil:
		return nil, 0, fmt.Errorf("get %s: %w", key, serr)
	}
	if op := m.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
		return nil, 0, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	return m.Data, m.Sequence, nil
}

func (c *Controller) create(ctx context.Context, key string, rec any) (uint64, error) {
	b, err := encodeRecord(rec)
	if err != nil {
		return 0, err
	}
	rev, err := c.kv.Create(ctx, key, b)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, fmt.Errorf("%s: %w", key, ErrExists)
		}
		return 0, fmt.Errorf("create %s: %w", key, err)
	}
	return rev, nil
}

func (c *Controller) update(ctx context.Context, key string, rec any, rev uint64) (uint64, error) {
	b, err := encodeRecord(rec)
	if err != nil {
		return 0, err
	}
	nrev, err := c.kv.Update(ctx, key, b, rev)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			return 0, fmt.Errorf("%s changed since revision %d: %w", key, rev, ErrConflict)
		}
		return 0, fmt.Errorf("update %s: %w", key, err)
	}
	return nrev, nil
}

func (c *Controller) put(ctx context.Context, key string, rec any) (uint64, error) {
	b, err := encodeRecord(rec)
	if err != nil {
		return 0, err
	}
	rev, err := c.kv.Put(ctx, key, b)
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	return rev, nil
}

// del deletes key; rev != 0 makes it conditional on the key's revision.
func (c *Controller) del(ctx context.Context, key string, rev uint64) error {
	var opts []jetstream.KVDeleteOpt
	if rev != 0 {
		opts = append(opts, jetstream.LastRevision(rev))
	}
	if err := c.kv.Delete(ctx, key, opts...); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("%s changed since revision %d: %w", key, rev, ErrConflict)
		}
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

func (c *Controller) load(ctx context.Context, filters ...string) ([]loadedRecord, error) {
	return c.reader.loadRecords(ctx, filters, func(err error) {
		c.log.Warn("skipping invalid record", "err", err)
	})
}

// NewUUID returns a random (version 4) UUID, the form of every id vxdp makes.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// NewMAC returns a random MAC with Neutron's base_mac prefix fa:16:3e.
func NewMAC() state.MAC {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return state.MAC{0xfa, 0x16, 0x3e, b[0], b[1], b[2]}
}

// ---- networks ----

// NetworkSpec asks for a network.
type NetworkSpec struct {
	Name string
	// NetworkType is vxlan (default), vlan or flat (Neutron's
	// --provider-network-type).
	NetworkType string
	// VNI of a VXLAN network chosen by an administrator; 0 allocates one
	// from the VNI ranges.
	VNI uint32
	// PhysicalNetwork of a vlan or flat network (--provider-physical-network).
	PhysicalNetwork string
	// Segment is the VLAN id of a vlan network (0 allocates one from
	// network_vlan_ranges), or the VNI of a vxlan network
	// (--provider-segment).
	Segment uint32
	// MTU (default DefaultMTU, DefaultPhysnetMTU for provider networks).
	MTU int
	// Subnets to create with the network, each with Neutron's defaults
	// (gateway the first address, DHCP on); CreateSubnet for the others.
	Subnets []netip.Prefix
	// DNSDomain DHCP hands out (default state.DefaultDNSDomain).
	DNSDomain string
	// ID to use instead of a random UUID (must be a UUID).
	ID string
	// Project owns the network ("": AdminProject).
	Project string
}

// Network is a network record with its revision.
type Network struct {
	NetworkRecord
	Revision uint64 `json:"revision"`
}

// CreateNetwork creates a network: VXLAN, or a provider network (VLAN,
// flat) the server's ML2Config allows. Its segment (VNI, VLAN of a
// physical network, or a physical network for its flat network) is
// reserved with a create-only write of its own key first, so two
// concurrent creates can never get the same one, whether chosen or
// allocated. A refused request writes nothing.
func (c *Controller) CreateNetwork(ctx context.Context, spec NetworkSpec) (Network, error) {
	rec := &NetworkRecord{ID: spec.ID, Name: spec.Name, NetworkType: spec.NetworkType, VNI: spec.VNI,
		PhysicalNetwork: spec.PhysicalNetwork, MTU: spec.MTU, DNSDomain: spec.DNSDomain,
		Project: ProjectOf(spec.Project), CreatedAt: now()}
	if rec.ID == "" {
		rec.ID = NewUUID()
	} else if !IsUUID(rec.ID) {
		return Network{}, invalidf("network id %q is not a UUID", rec.ID)
	}
	if rec.Provider() {
		if spec.Segment > state.MaxVLAN {
			return Network{}, invalidf("vlan %d: out of range 1-%d", spec.Segment, state.MaxVLAN)
		}
		rec.SegmentationID = uint16(spec.Segment)
	} else if spec.Segment != 0 {
		if rec.VNI != 0 && rec.VNI != spec.Segment {
			return Network{}, invalidf("vni %d and segment %d: a vxlan network's segment is its VNI; give one", rec.VNI, spec.Segment)
		}
		rec.VNI = spec.Segment
	}
	if rec.MTU == 0 {
		rec.MTU = DefaultMTU
		if rec.Provider() {
			rec.MTU = DefaultPhysnetMTU
		}
	}
	for _, p := range spec.Subnets {
		if !p.IsValid() || p.Masked() != p {
			return Network{}, invalidf("subnet %s is not a network address in CIDR form: write %s", p, p.Masked())
		}
		rec.Subnets = append(rec.Subnets, defaultSubnet(p))
	}
	m, err := c.GetML2Config(ctx)
	if err != nil {
		return Network{}, err
	}
	if err := checkProvider(m, rec); err != nil {
		return Network{}, fmt.Errorf("network %q: %w", spec.Name, err)
	}
	probe := *rec // the segment to allocate stands in for the check
	switch probe.Kind() {
	case state.NetworkVXLAN:
		probe.VNI = cmp.Or(probe.VNI, 1)
	case state.NetworkVLAN:
		probe.SegmentationID = cmp.Or(probe.SegmentationID, 1)
	}
	if err := probe.Validate(); err != nil {
		return Network{}, fmt.Errorf("%w: network %q: %w", ErrInvalid, spec.Name, err)
	}
	if err := c.checkQuota(ctx, rec.Project, usage{networks: 1}); err != nil {
		return Network{}, err
	}
	segRev, err := c.reserveSegment(ctx, m, rec)
	if err != nil {
		return Network{}, err
	}
	rev, err := c.create(ctx, NetworkKey(rec.ID), rec)
	if err != nil {
		_ = c.del(ctx, segmentKey(rec), segRev)
		return Network{}, fmt.Errorf("create network %q: %w", spec.Name, err)
	}
	c.log.Info("network created", "id", rec.ID, "name", rec.Name, "type", rec.Kind(), "segment", rec.segment(), "revision", rev)
	return Network{NetworkRecord: *rec, Revision: rev}, nil
}

// allocate reserves a free segment of ranges for rec (its VNI, or the VLAN
// of its physical network), filter matching the reservations taken. It
// starts at a random free candidate, so concurrent creates rarely
// collide, and moves on when the create-only reservation loses a race.
func (c *Controller) allocate(ctx context.Context, rec *NetworkRecord, filter string, ranges []VNIRange, exhausted string) (uint64, error) {
	used := map[uint32]bool{}
	recs, err := c.load(ctx, filter)
	if err != nil {
		return 0, err
	}
	for _, r := range recs {
		used[r.Parsed.VNI+uint32(r.Parsed.VLAN)] = true // one of them is set
	}
	var free []uint32
	for _, r := range ranges {
		for v := r.Min; v <= r.Max && v != 0; v++ {
			if !used[v] {
				free = append(free, v)
			}
			if v == r.Max {
				break
			}
		}
	}
	if len(free) == 0 {
		return 0, fmt.Errorf("%s: %w", exhausted, ErrExhausted)
	}
	n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(free))))
	start := int(n.Int64())
	for i := range free {
		v := free[(start+i)%len(free)]
		if rec.Provider() {
			rec.SegmentationID = uint16(v)
		} else {
			rec.VNI = v
		}
		rev, err := c.create(ctx, segmentKey(rec), segmentReservation(rec))
		if errors.Is(err, ErrExists) {
			continue
		}
		if err != nil {
			return 0, err
		}
		return rev, nil
	}
	return 0, fmt.Errorf("%s: %w", exhausted, ErrExhausted)
}

func (c *Controller) rangesString() string {
	parts := make([]string, len(c.ranges))
	for i, r := range c.ranges {
		parts[i] = fmt.Sprintf("%d:%d", r.Min, r.Max)
	}
	return strings.Join(parts, ",")
}

// ListNetworks returns every network, by name then id.
func (c *Controller) ListNetworks(ctx context.Context) ([]Network, error) {
	recs, err := c.load(ctx, NetworksFilter)
	if err != nil {
		return nil, err
	}
	out := make([]Network, 0, len(recs))
	for _, r := range recs {
		out = append(out, Network{NetworkRecord: *r.Rec.(*NetworkRecord), Revision: r.Rev})
	}
	slices.SortFunc(out, func(a, b Network) int {
		if x := strings.Compare(a.Name, b.Name); x != 0 {
			return x
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// GetNetwork finds a network by id or by (unique) name.
func (c *Controller) GetNetwork(ctx context.Context, ref string) (Network, error) {
	if ref == "" {
		return Network{}, invalidf("empty network reference")
	}
	if ValidID(ref) == nil {
		rec, rev, err := c.get(ctx, NetworkKey(ref))
		if err == nil {
			return Network{NetworkRecord: *rec.(*NetworkRecord), Revision: rev}, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return Network{}, err
		}
	}
	all, err := c.ListNetworks(ctx)
	if err != nil {
		return Network{}, err
	}
	var found []Network
	for _, n := range all {
		if n.Name == ref {
			found = append(found, n)
		}
	}
	switch len(found) {
	case 0:
		return Network{}, fmt.Errorf("network %q: %w", ref, ErrNotFound)
	case 1:
		return found[0], nil
	}
	return Network{}, invalidf("network name %q is ambiguous (%d networks); use the id", ref, len(found))
}

// DeleteNetwork deletes a network without ports and releases its segment.
// It first marks the network deleting (compare-and-set), then checks for
// ports; a port create racing with it sees the mark and backs out, so a
// port can never be left on a deleted network.
func (c *Controller) DeleteNetwork(ctx context.Context, ref string) error {
	n, err := c.GetNetwork(ctx, ref)
	if err != nil {
		return err
	}
	marked := n.NetworkRecord
	marked.Deleting = true
	rev, err := c.update(ctx, NetworkKey(n.ID), &marked, n.Revision)
	if err != nil {
		return fmt.Errorf("delete network %s: %w", n.ID, err)
	}
	ports, err := c.load(ctx, PortsOfNetworkFilter(n.ID))
	if err != nil {
		return err
	}
	if len(ports) > 0 {
		marked.Deleting = false
		if _, uerr := c.update(ctx, NetworkKey(n.ID), &marked, rev); uerr != nil {
			c.log.Warn("could not clear the deleting mark", "network", n.ID, "err", uerr)
		}
		return fmt.Errorf("network %s (%s) has %d port(s); delete them first: %w", n.Name, n.ID, len(ports), ErrInUse)
	}
	if err := c.del(ctx, NetworkKey(n.ID), rev); err != nil {
		return fmt.Errorf("delete network %s: %w", n.ID, err)
	}
	c.releaseSegment(ctx, &n.NetworkRecord)
	// Leftovers of ports deleted by a crashed controller.
	left, err := c.reader.loadLatest(ctx, []string{ReservationsOfNetworkFilter(n.ID), "nets." + n.ID + ".status.*.*"}, nil)
	if err == nil {
		for _, e := range left {
			if !e.Deleted {
				_ = c.del(ctx, e.Key, e.Rev)
			}
		}
	}
	c.log.Info("network deleted", "id", n.ID, "name", n.Name, "segment", n.segment())
	return nil
}

// ---- maintenance ----

// Compact removes delete markers older than olderThan (all of them when
// olderThan <= 0) and records the compaction floor. An agent whose applied
// revision is below the floor may have missed a deletion and resyncs
// fully instead of replaying changes.
func (c *Controller) Compact(ctx context.Context, olderThan time.Duration) error {
	opt := jetstream.DeleteMarkersOlderThan(olderThan)
	if olderThan <= 0 {
		opt = jetstream.DeleteMarkersOlderThan(-1)
	}
	if err := c.kv.PurgeDeletes(ctx, opt); err != nil {
		return fmt.Errorf("compact %s: %w", c.bucket, err)
	}
	info, err := c.js.Stream(ctx, StreamName(c.bucket))
	if err != nil {
		return fmt.Errorf("compact %s: %w", c.bucket, err)
	}
	if _, err := c.put(ctx, FloorKey, &FloorRecord{Revision: info.CachedInfo().State.LastSeq, Time: now()}); err != nil {
		return fmt.Errorf("compact %s: %w", c.bucket, err)
	}
	return nil
}
