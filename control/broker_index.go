package control

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// brokerIndex is what a broker follows of the bucket: the size of every
// port status record per host (the per-host limits), and which hosts have
// a registration, to register a host from its first agent record however
// that record was written.
type brokerIndex struct {
	b *Broker
	// ready is closed once the index holds the whole bucket.
	ready chan struct{}

	mu         sync.Mutex
	statuses   map[string]*hostStatuses // by host token
	registered map[string]bool          // by host token
	// unregistered are agent records seen before ready, by host.
	unregistered map[string]netip.Addr
}

// hostStatuses are the status records of one host: value sizes by key.
type hostStatuses struct {
	sizes map[string]statusSize
	bytes int
}

type statusSize struct {
	rev  uint64
	size int
}

func newBrokerIndex(b *Broker) *brokerIndex {
	return &brokerIndex{b: b, ready: make(chan struct{}), statuses: map[string]*hostStatuses{},
		registered: map[string]bool{}, unregistered: map[string]netip.Addr{}}
}

// run follows the bucket until ctx ends.
func (x *brokerIndex) run(ctx context.Context) {
	filters := []string{StatusesFilter, AgentsFilter, RegistrationsFilter}
	var f *follower
	for wait := 250 * time.Millisecond; f == nil; wait = min(2*wait, 5*time.Second) {
		var err error
		if f, err = x.b.ctl.reader.follow(ctx, filters, followOptions{lastPerSubject: true}); err != nil {
			x.b.log.Warn("broker index: cannot follow the bucket; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
	defer f.close()
	if f.initialPending == 0 {
		x.loaded(ctx)
	}
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-f.ch:
			last = time.Now()
			x.apply(ctx, e)
			if e.Pending == 0 {
				x.loaded(ctx)
			}
		case <-poll.C:
			if time.Since(last) >= 2*time.Second && f.caughtUp(ctx) {
				x.loaded(ctx)
			}
		}
	}
}

// loaded marks the index complete and registers the hosts seen without a
// registration meanwhile.
func (x *brokerIndex) loaded(ctx context.Context) {
	select {
	case <-x.ready:
		return
	default:
	}
	x.mu.Lock()
	todo := x.unregistered
	x.unregistered = nil
	close(x.ready)
	x.mu.Unlock()
	for host, vtep := range todo {
		x.autoRegister(ctx, host, vtep)
	}
}

func (x *brokerIndex) apply(ctx context.Context, e kvEntry) {
	k := ParseKey(e.Key)
	tok := HostToken(k.Host)
	switch k.Kind {
	case KindStatus:
		size := len(e.Value)
		if e.Deleted {
			size = -1
		}
		x.stored(k.Host, e.Key, e.Rev, size)
	case KindRegistration:
		x.mu.Lock()
		x.registered[tok] = !e.Deleted
		delete(x.unregistered, k.Host)
		x.mu.Unlock()
	case KindAgent:
		if e.Deleted {
			return
		}
		_, rec, err := DecodeRecord(e.Key, e.Value)
		if err != nil {
			return
		}
		x.mu.Lock()
		known := x.registered[tok]
		early := x.unregistered != nil
		if !known && early {
			x.unregistered[k.Host] = rec.(*AgentRecord).VTEP
		}
		x.mu.Unlock()
		if !known && !early {
			x.autoRegister(ctx, k.Host, rec.(*AgentRecord).VTEP)
		}
	}
}

// autoRegister registers host with vtep unless registration is manual or
// the host has a registration (an agent record written past the broker,
// e.g. by an older agent).
func (x *brokerIndex) autoRegister(ctx context.Context, host string, vtep netip.Addr) {
	if x.b.o.ManualRegistration {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, brokerTimeout)
	defer cancel()
	if _, err := x.b.ensureRegistration(ctx, host, vtep); err != nil {
		x.b.log.Warn("broker index: cannot register host", "host", host, "err", err)
	}
}

// fits checks that host may hold a status record of size bytes under key.
func (x *brokerIndex) fits(host, key string, size int) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	hs := x.statuses[HostToken(host)]
	count, bytes, old := 0, 0, 0
	if hs != nil {
		count, bytes = len(hs.sizes), hs.bytes
		if s, ok := hs.sizes[key]; ok {
			count--
			old = s.size
		}
	}
	o := x.b.o
	if count+1 > o.MaxStatusKeysPerHost {
		return refusal(ReasonKeyLimit, "host %s holds %d port status records, at most %d", host, count, o.MaxStatusKeysPerHost)
	}
	if bytes-old+size > o.MaxStatusBytesPerHost {
		return refusal(ReasonByteLimit, "host %s would hold %d bytes of port status records, at most %d", host, bytes-old+size, o.MaxStatusBytesPerHost)
	}
	return nil
}

// stored records that key of host holds size bytes at rev (size < 0:
// deleted). Older news of a key is ignored.
func (x *brokerIndex) stored(host, key string, rev uint64, size int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	tok := HostToken(host)
	hs := x.statuses[tok]
	if hs == nil {
		hs = &hostStatuses{sizes: map[string]statusSize{}}
		x.statuses[tok] = hs
	}
	cur, ok := hs.sizes[key]
	if ok && rev < cur.rev {
		return
	}
	hs.bytes -= cur.size
	if size < 0 {
		delete(hs.sizes, key)
		return
	}
	hs.sizes[key] = statusSize{rev: rev, size: size}
	hs.bytes += size
}
