package control

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// createConsumer makes a consumer for host: push, no acknowledgements,
// deleted when idle (pushConsumerConfig), delivering below the host's own
// inbox, on filters the host is entitled to. Never a durable one, never
// one delivering elsewhere.
func (b *Broker) createConsumer(ctx context.Context, host string, data []byte) (consumerReply, error) {
	var spec consumerSpec
	if err := decodeRequest(data, &spec); err != nil {
		return consumerReply{}, err
	}
	inbox := InboxPrefix(host) + "."
	if !strings.HasPrefix(spec.DeliverSubject, inbox) || len(spec.DeliverSubject) == len(inbox) ||
		strings.ContainsAny(spec.DeliverSubject, "*> \t") {
		return consumerReply{}, refusal(ReasonDeliver, "deliver subject %q is not below %s", spec.DeliverSubject, inbox)
	}
	if len(spec.Filters) == 0 || len(spec.Filters) > b.o.MaxFilters {
		return consumerReply{}, refusal(ReasonFilter, "%d filters: want 1 to %d", len(spec.Filters), b.o.MaxFilters)
	}
	held := &hostHoldings{b: b, host: host}
	for _, f := range spec.Filters {
		if err := b.entitled(ctx, held, f, spec.Proofs[f]); err != nil {
			return consumerReply{}, err
		}
	}
	spec.Proofs = nil
	cfg := pushConsumerConfig(b.o.Bucket, spec, consumerName(host), host)
	c, err := b.ctl.js.CreatePushConsumer(ctx, StreamName(b.o.Bucket), cfg)
	if err != nil {
		return consumerReply{}, fmt.Errorf("create consumer for %s: %w", host, err)
	}
	for _, old := range b.cons.add(host, cfg.Name) {
		b.log.Info("consumer limit of host reached: deleting its oldest", "host", host, "consumer", old)
		b.dropConsumer(old)
	}
	return consumerReply{Name: cfg.Name, Pending: c.CachedInfo().NumPending}, nil
}

// entitled checks that a host may follow filter: every registration, its
// own agent record and bindings; a network only while a port of the
// network is bound to it; a security group only while a port bound to it
// is in the group; a group's members or an address group only while a
// port bound to it is in a group with a rule naming them as remote. proof
// names the record that says so (a binding, a port record); when it does
// not, the host's bindings are searched.
func (b *Broker) entitled(ctx context.Context, held *hostHoldings, filter, proof string) error {
	host := held.host
	switch filter {
	case RegistrationsFilter, AgentKey(host), BindingsFilter(host):
		return nil
	}
	deny := func(format string, args ...any) error {
		return refusal(ReasonFilter, "filter %q: %s", filter, fmt.Sprintf(format, args...))
	}
	var holds func(key string) (bool, error)
	switch kind, id, _ := parseEntitledFilter(filter); kind {
	case KindNetwork:
		holds = func(key string) (bool, error) { return held.bound(ctx, key, id) }
	case KindSecGroup:
		holds = func(key string) (bool, error) { return held.inGroup(ctx, key, id) }
	case KindMember, KindAddressGroup:
		holds = func(key string) (bool, error) { return held.namesRemote(ctx, key, kind, id) }
	default:
		return deny("agents of host %s may not follow it", host)
	}
	if ok, err := holds(proof); ok || err != nil {
		return err
	}
	bindings, err := held.bindings(ctx)
	if err != nil {
		return err
	}
	for _, key := range bindings {
		if ok, err := holds(key); ok || err != nil {
			return err
		}
	}
	return deny("host %s has no port that needs it", host)
}

// hostHoldings reads, for one request, the records that entitle a host to
// follow networks, security groups, members and address groups.
type hostHoldings struct {
	b      *Broker
	host   string
	keys   []string                        // binding keys of the host, once loaded
	groups map[string]*SecurityGroupRecord // read so far (nil: none)
}

// record returns the record of key if it is of kind (nil otherwise).
func (h *hostHoldings) record(ctx context.Context, key string, kind KeyKind) (any, error) {
	if ParseKey(key).Kind != kind {
		return nil, nil
	}
	rec, _, err := h.b.ctl.get(ctx, key)
	var re *RecordError
	if errors.Is(err, ErrNotFound) || errors.As(err, &re) {
		return nil, nil
	}
	return rec, err
}

// bound reports whether key is a binding of the host to a port of netID.
func (h *hostHoldings) bound(ctx context.Context, key, netID string) (bool, error) {
	if k := ParseKey(key); k.Kind != KindBinding || BindingKey(h.host, k.Port) != key {
		return false, nil
	}
	rec, err := h.record(ctx, key, KindBinding)
	return rec != nil && rec.(*BindingRecord).NetworkID == netID, err
}

// boundPort returns the port record key names, or the port a binding of
// the host names, if that port is bound to the host (nil otherwise).
func (h *hostHoldings) boundPort(ctx context.Context, key string) (*PortRecord, error) {
	if k := ParseKey(key); k.Kind == KindBinding {
		rec, err := h.record(ctx, key, KindBinding)
		if rec == nil || err != nil || BindingKey(h.host, k.Port) != key {
			return nil, err
		}
		key = PortKey(rec.(*BindingRecord).NetworkID, k.Port)
	}
	rec, err := h.record(ctx, key, KindPort)
	if rec == nil || err != nil {
		return nil, err
	}
	if p := rec.(*PortRecord); HostToken(p.Host) == HostToken(h.host) {
		return p, nil
	}
	return nil, nil
}

// inGroup reports whether key is a port record, or a binding of the host
// naming one, of a port bound to the host and in security group sg.
func (h *hostHoldings) inGroup(ctx context.Context, key, sg string) (bool, error) {
	p, err := h.boundPort(ctx, key)
	return p != nil && slices.Contains(p.SecurityGroups, sg), err
}

// namesRemote reports whether key is a port record, or a binding of the
// host naming one, of a port bound to the host and in a security group
// with a rule whose remote group (kind KindMember) or address group (kind
// KindAddressGroup) is id.
func (h *hostHoldings) namesRemote(ctx context.Context, key string, kind KeyKind, id string) (bool, error) {
	p, err := h.boundPort(ctx, key)
	if p == nil || err != nil {
		return false, err
	}
	for _, sg := range p.SecurityGroups {
		g, err := h.group(ctx, sg)
		if err != nil {
			return false, err
		}
		if g != nil && slices.ContainsFunc(g.Rules, func(r SGRule) bool {
			return kind == KindMember && r.RemoteGroupID == id || kind == KindAddressGroup && r.RemoteAddressGroupID == id
		}) {
			return true, nil
		}
	}
	return false, nil
}

// group reads a security group once per request (nil: none).
func (h *hostHoldings) group(ctx context.Context, id string) (*SecurityGroupRecord, error) {
	if g, ok := h.groups[id]; ok {
		return g, nil
	}
	rec, err := h.record(ctx, SecGroupKey(id), KindSecGroup)
	if err != nil {
		return nil, err
	}
	if h.groups == nil {
		h.groups = map[string]*SecurityGroupRecord{}
	}
	g, _ := rec.(*SecurityGroupRecord)
	h.groups[id] = g
	return g, nil
}

// bindings are the binding keys of the host.
func (h *hostHoldings) bindings(ctx context.Context) ([]string, error) {
	if h.keys != nil {
		return h.keys, nil
	}
	recs, err := h.b.ctl.load(ctx, BindingsFilter(h.host))
	if err != nil {
		return nil, err
	}
	h.keys = make([]string, len(recs))
	for i, r := range recs {
		h.keys[i] = r.Key
	}
	return h.keys, nil
}

// ownConsumer returns the consumer name of ref if the broker made it for host.
func (b *Broker) ownConsumer(ctx context.Context, host string, data []byte) (jetstream.PushConsumer, error) {
	var ref consumerRef
	if err := decodeRequest(data, &ref); err != nil {
		return nil, err
	}
	if ValidID(ref.Name) != nil {
		return nil, refusal(ReasonInvalid, "consumer name %q", ref.Name)
	}
	c, err := b.ctl.js.PushConsumer(ctx, StreamName(b.o.Bucket), ref.Name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrNotPushConsumer) {
		return nil, refusal(ReasonNotOwner, "no consumer %s of host %s", ref.Name, host)
	}
	if err != nil {
		return nil, err
	}
	if c.CachedInfo().Config.Metadata[consumerMetaHost] != HostToken(host) {
		return nil, refusal(ReasonNotOwner, "consumer %s is not one of host %s", ref.Name, host)
	}
	return c, nil
}

// consumerInfo says how many messages a consumer of host has to deliver.
func (b *Broker) consumerInfo(ctx context.Context, host string, data []byte) (consumerReply, error) {
	c, err := b.ownConsumer(ctx, host, data)
	if err != nil {
		return consumerReply{}, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return consumerReply{}, err
	}
	return consumerReply{Name: info.Name, Pending: info.NumPending}, nil
}

// deleteConsumer deletes a consumer of host.
func (b *Broker) deleteConsumer(ctx context.Context, host string, data []byte) (any, error) {
	c, err := b.ownConsumer(ctx, host, data)
	if err != nil {
		return nil, err
	}
	name := c.CachedInfo().Name
	b.cons.drop(host, name)
	if err := b.ctl.js.DeleteConsumer(ctx, StreamName(b.o.Bucket), name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, err
	}
	return nil, nil
}

func (b *Broker) dropConsumer(name string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
		defer cancel()
		_ = b.ctl.js.DeleteConsumer(ctx, StreamName(b.o.Bucket), name)
	}()
}

// consumerLedger remembers the consumers a broker made per host, oldest
// first, to keep each host under its limit.
type consumerLedger struct {
	mu     sync.Mutex
	max    int
	byHost map[string][]string
}

// add records a new consumer of host and returns those to delete.
func (l *consumerLedger) add(host, name string) (evict []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	names := append(l.byHost[host], name)
	if n := len(names) - l.max; n > 0 {
		evict = slices.Clone(names[:n])
		names = names[n:]
	}
	l.byHost[host] = names
	return evict
}

func (l *consumerLedger) drop(host, name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.byHost[host] = slices.DeleteFunc(l.byHost[host], func(n string) bool { return n == name })
}
