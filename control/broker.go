package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// BrokerOptions configure a Broker. Zero values take the defaults.
type BrokerOptions struct {
	// Bucket name (default DefaultBucket).
	Bucket string
	// MaxStatusKeysPerHost and MaxStatusBytesPerHost bound the port status
	// records one host holds (default 10000 keys, 4 MiB): every agent
	// hosting a network receives and keeps all of them.
	MaxStatusKeysPerHost  int
	MaxStatusBytesPerHost int
	// WritesPerSecond and WriteBurst bound how fast one host writes
	// (statuses, heartbeats, its agent record): a token bucket, default 100
	// per second with bursts of 2000 (an agent starting with thousands of
	// ports writes their statuses at once).
	WritesPerSecond float64
	WriteBurst      int
	// MaxConsumersPerHost is how many consumers one host holds at once
	// through this broker (default 4: an agent uses one, and one more
	// while it loads); making another deletes the host's oldest.
	MaxConsumersPerHost int
	// MaxFilters bounds the filters of one consumer (default 4096).
	MaxFilters int
	// ManualRegistration turns off first-registration-wins: a host's VTEP
	// is then only what `vxdp host add` registered.
	ManualRegistration bool
	// Log (default slog.Default()).
	Log *slog.Logger
	// Metrics registers the broker's metrics (default: a private registry).
	Metrics prometheus.Registerer
}

// Broker answers the agents' requests on their own subjects (APISubject):
// it writes their agent records, heartbeats and port statuses, and makes
// their consumers, after checking that each is what the host may have.
// Agents' credentials allow nothing else (AgentPermissions): NATS subject
// permissions cannot look inside a JetStream request (a consumer's deliver
// subject, the reply subject the server answers to) nor express "ports
// bound to this host". Brokers run next to the server (`vxdp server`) with
// the controller's rights; several form a queue group.
type Broker struct {
	nc    *nats.Conn
	o     BrokerOptions
	log   *slog.Logger
	m     *brokerMetrics
	ready chan struct{} // closed once serving
	ctl   *Controller
	index *brokerIndex
	cons  *consumerLedger
	slots chan struct{} // requests served at once
	// origin is the bucket's identity when it is a leafnode's mirror.
	origin originCreated

	mu     sync.Mutex
	hosts  map[string]*hostLimits
	logged map[string]time.Time // refusals logged, by host and reason
}

// hostLimits is what the broker tracks per host.
type hostLimits struct {
	inflight int
	tokens   float64
	last     time.Time
	// statusMu serialises the host's status writes, so the key and byte
	// limits are checked against a count no other write changes meanwhile.
	statusMu sync.Mutex
}

// Per-host request limits.
const (
	maxInflightPerHost  = 8
	maxRequestsAtOnce   = 256
	maxAgentRecordBytes = 4 << 10
	refusalLogEvery     = 10 * time.Second
)

// NewBroker makes a broker on nc, a connection with the controller's
// rights. Nothing is read or served before Run.
func NewBroker(nc *nats.Conn, o BrokerOptions) (*Broker, error) {
	if o.Bucket == "" {
		o.Bucket = DefaultBucket
	}
	if o.MaxStatusKeysPerHost <= 0 {
		o.MaxStatusKeysPerHost = 10_000
	}
	if o.MaxStatusBytesPerHost <= 0 {
		o.MaxStatusBytesPerHost = 4 << 20
	}
	if o.WritesPerSecond <= 0 {
		o.WritesPerSecond = 100
	}
	if o.WriteBurst <= 0 {
		o.WriteBurst = 2000
	}
	if o.MaxConsumersPerHost <= 0 {
		o.MaxConsumersPerHost = 4
	}
	if o.MaxFilters <= 0 {
		o.MaxFilters = 4096
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	m, err := newBrokerMetrics(o.Metrics)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	b := &Broker{
		nc: nc, o: o, log: log.With("component", "broker"), m: m, ready: make(chan struct{}),
		cons: &consumerLedger{max: o.MaxConsumersPerHost, byHost: map[string][]string{}}, slots: make(chan struct{}, maxRequestsAtOnce),
		hosts: map[string]*hostLimits{}, logged: map[string]time.Time{},
	}
	b.index = newBrokerIndex(b)
	return b, nil
}

// Run serves requests until ctx ends. It waits for the bucket first
// (agents retry meanwhile).
func (b *Broker) Run(ctx context.Context) error {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		ctl, err := NewController(ctx, b.nc, ControllerOptions{Bucket: b.o.Bucket, Log: b.log})
		if err == nil {
			b.ctl = ctl
			break
		}
		b.log.Debug("waiting for the bucket", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	sub, err := b.nc.QueueSubscribe(APIWildcard(b.o.Bucket), BrokerQueue, func(m *nats.Msg) { b.serve(ctx, m) })
	if err == nil {
		err = b.nc.Flush()
	}
	if err != nil {
		return fmt.Errorf("broker: subscribe: %w", err)
	}
	defer sub.Unsubscribe()
	close(b.ready)
	b.log.Info("broker serving", "bucket", b.o.Bucket, "subject", APIWildcard(b.o.Bucket))
	b.index.run(ctx)
	return nil
}

// Ready is closed once the broker serves requests.
func (b *Broker) Ready() <-chan struct{} { return b.ready }

// serve answers one request in the background; at most maxRequestsAtOnce
// run at once (the subscription queues the rest).
func (b *Broker) serve(ctx context.Context, m *nats.Msg) {
	host, op, ok := parseAPISubject(b.o.Bucket, m.Subject)
	if !ok || ValidHost(host) != nil {
		return
	}
	if !knownOps[op] {
		op = "unknown" // the metrics' op label takes no value an agent makes up
	}
	// The reply goes where the requester says: only below the host's own
	// inbox, or an agent could make the broker publish, with the
	// controller's rights, to any subject (a key of the bucket).
	if !strings.HasPrefix(m.Reply, InboxPrefix(host)+".") || strings.ContainsAny(m.Reply, "*> \t") {
		b.refused(host, op, refusal(ReasonReply, "reply subject %q is not below %s.", m.Reply, InboxPrefix(host)))
		return
	}
	if !b.enter(host) {
		b.answer(m, host, op, nil, refusal(ReasonBusy, "more than %d requests of host %s at once", maxInflightPerHost, host))
		return
	}
	b.slots <- struct{}{}
	go func() {
		defer func() { <-b.slots; b.leave(host) }()
		rctx, cancel := context.WithTimeout(ctx, brokerTimeout)
		defer cancel()
		res, err := b.handle(rctx, host, op, m.Data)
		b.answer(m, host, op, res, err)
	}()
}

func (b *Broker) handle(ctx context.Context, host, op string, data []byte) (any, error) {
	switch op {
	case opInfo:
		return b.info(ctx)
	case opRegister:
		return b.register(ctx, host, data)
	case opHeartbeat:
		return b.heartbeat(ctx, host, data)
	case opStatus:
		return b.status(ctx, host, data)
	case opConsumerCreate:
		return b.createConsumer(ctx, host, data)
	case opConsumerInfo:
		return b.consumerInfo(ctx, host, data)
	case opConsumerDelete:
		return b.deleteConsumer(ctx, host, data)
	}
	return nil, refusal(ReasonUnknownOp, "no such operation")
}

var knownOps = map[string]bool{opInfo: true, opRegister: true, opHeartbeat: true, opStatus: true,
	opConsumerCreate: true, opConsumerInfo: true, opConsumerDelete: true}

// answer replies with res or err, and counts the request.
func (b *Broker) answer(m *nats.Msg, host, op string, res any, err error) {
	var r brokerReply
	result := "ok"
	if err != nil {
		var be *BrokerError
		if !errors.As(err, &be) {
			be = &BrokerError{Reason: ReasonUnavailable, Msg: err.Error()}
			b.log.Warn("request failed", "host", host, "op", op, "err", err)
		}
		r.Error, r.Reason = be.Msg, be.Reason
		result = "error"
		if be.Reason != ReasonUnavailable {
			result = "refused"
			b.refused(host, op, be)
		}
	} else if res != nil {
		raw, merr := json.Marshal(res)
		if merr != nil {
			r.Error, r.Reason, result = merr.Error(), ReasonUnavailable, "error"
		}
		r.Result = raw
	}
	b.m.requests.WithLabelValues(op, result).Inc()
	raw, _ := json.Marshal(r)
	_ = m.Respond(raw)
}

// refused counts a refusal and logs it (once per host and reason every
// refusalLogEvery: a hostile agent must not flood the log).
func (b *Broker) refused(host, op string, err error) {
	var be *BrokerError
	if !errors.As(err, &be) {
		return
	}
	b.m.refused.WithLabelValues(op, be.Reason).Inc()
	key := host + "\x00" + be.Reason
	b.mu.Lock()
	quiet := time.Since(b.logged[key]) < refusalLogEvery
	if !quiet {
		b.logged[key] = time.Now()
	}
	b.mu.Unlock()
	if !quiet {
		b.log.Warn("agent request refused", "host", host, "op", op, "reason", be.Reason, "err", be.Msg)
	}
}

func (b *Broker) limits(host string) *hostLimits {
	h := b.hosts[host]
	if h == nil {
		h = &hostLimits{tokens: float64(b.o.WriteBurst), last: time.Now()}
		b.hosts[host] = h
	}
	return h
}

func (b *Broker) enter(host string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.limits(host)
	if h.inflight >= maxInflightPerHost {
		return false
	}
	h.inflight++
	return true
}

func (b *Broker) leave(host string) {
	b.mu.Lock()
	b.hosts[host].inflight--
	b.mu.Unlock()
}

// spend takes one write token of host (a token bucket).
func (b *Broker) spend(host string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.limits(host)
	t := time.Now()
	h.tokens = min(float64(b.o.WriteBurst), h.tokens+t.Sub(h.last).Seconds()*b.o.WritesPerSecond)
	h.last = t
	if h.tokens < 1 {
		return refusal(ReasonRate, "host %s writes faster than %.0f records per second", host, b.o.WritesPerSecond)
	}
	h.tokens--
	return nil
}

func decodeRequest(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return refusal(ReasonInvalid, "request: %v", err)
	}
	return nil
}

// checkRecord validates rec as the record of key and returns its encoding.
func checkRecord(key string, rec any) ([]byte, error) {
	if err := validateRecord(ParseKey(key), rec); err != nil {
		return nil, refusal(ReasonInvalid, "%s: %v", key, err)
	}
	raw, err := encodeRecord(rec)
	if err != nil {
		return nil, refusal(ReasonInvalid, "%s: %v", key, err)
	}
	return raw, nil
}

// info identifies the bucket: its creation time, last revision and
// compaction floor (what an agent needs to decide how to resync).
func (b *Broker) info(ctx context.Context) (bucketInfo, error) {
	s, err := b.ctl.js.Stream(ctx, StreamName(b.o.Bucket))
	if err != nil {
		return bucketInfo{}, fmt.Errorf("bucket %s: %w", b.o.Bucket, err)
	}
	si := s.CachedInfo()
	r := bucketInfo{Created: si.Created, LastRevision: si.State.LastSeq}
	if m := si.Config.Mirror; m != nil {
		r.Created = b.origin.of(ctx, b.nc, m, si.Created)
	}
	rec, _, err := b.ctl.get(ctx, FloorKey)
	switch {
	case err == nil:
		r.Floor = rec.(*FloorRecord).Revision
	case !errors.Is(err, ErrNotFound):
		return bucketInfo{}, err
	}
	return r, nil
}

// register writes the agent record of host unless the stored one is the
// same, after registering the host's VTEP if it has no registration yet
// (first registration wins; only the controller changes it afterwards).
// An agent record whose VTEP differs from the registration is stored
// (`agent list` shows the mismatch) and not used for forwarding.
func (b *Broker) register(ctx context.Context, host string, data []byte) (registerReply, error) {
	var rec AgentRecord
	if err := decodeRequest(data, &rec); err != nil {
		return registerReply{}, err
	}
	if rec.ID != AgentID(host) {
		return registerReply{}, refusal(ReasonInvalid, "agent id %q: the agent of %s has id %s", rec.ID, host, AgentID(host))
	}
	key := AgentKey(host)
	raw, err := checkRecord(key, &rec)
	if err != nil {
		return registerReply{}, err
	}
	if len(raw) > maxAgentRecordBytes {
		return registerReply{}, refusal(ReasonInvalid, "agent record of %d bytes, at most %d", len(raw), maxAgentRecordBytes)
	}
	if err := b.spend(host); err != nil {
		return registerReply{}, err
	}
	var r registerReply
	reg, err := b.ensureRegistration(ctx, host, rec.VTEP)
	if err != nil {
		return r, err
	}
	if reg != nil {
		r.RegisteredVTEP = reg.VTEP
	}
	if cur, _, err := b.ctl.get(ctx, key); err == nil && sameRecord(cur, &rec) {
		return r, nil
	}
	r.Revision, err = b.ctl.put(ctx, key, &rec)
	return r, err
}

// ensureRegistration returns the registration of host, creating it with
// vtep if there is none and registration is not manual (nil: none).
func (b *Broker) ensureRegistration(ctx context.Context, host string, vtep netip.Addr) (*RegistrationRecord, error) {
	key := RegistrationKey(host)
	for range 2 {
		rec, _, err := b.ctl.get(ctx, key)
		if err == nil {
			return rec.(*RegistrationRecord), nil
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		if b.o.ManualRegistration {
			return nil, nil
		}
		reg := &RegistrationRecord{Host: host, VTEP: vtep, RegisteredBy: RegisteredByAgent, CreatedAt: now()}
		if _, err := b.ctl.create(ctx, key, reg); err == nil {
			b.log.Info("host registered by its first agent record", "host", host, "vtep", vtep)
			return reg, nil
		} else if !errors.Is(err, ErrExists) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("registration of %s: changed concurrently", host)
}

// heartbeat writes the heartbeat of host.
func (b *Broker) heartbeat(ctx context.Context, host string, data []byte) (any, error) {
	var rec HeartbeatRecord
	if err := decodeRequest(data, &rec); err != nil {
		return nil, err
	}
	if rec.AgentID != AgentID(host) {
		return nil, refusal(ReasonInvalid, "agent id %q: the agent of %s has id %s", rec.AgentID, host, AgentID(host))
	}
	key := HeartbeatKey(host)
	if _, err := checkRecord(key, &rec); err != nil {
		return nil, err
	}
	if err := b.spend(host); err != nil {
		return nil, err
	}
	rev, err := b.ctl.put(ctx, key, &rec)
	return writeReply{Revision: rev}, err
}
