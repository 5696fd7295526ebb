package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vxdp/vxdp/control"
)

// Listener modes: how a bare listener receives the bucket's changes.
const (
	// ListenConsumer: a push consumer per listener with an agent's
	// filters, as agents follow the bucket (the floor of that design).
	ListenConsumer = "consumer"
	// ListenRePublish: a core subscription to the bucket's changes
	// republished by the stream (the alternative live path).
	ListenRePublish = "republish"
)

// RePublishPrefix is where the benchmark has the stream republish the
// bucket's subjects ("$KV.vxdp.K" -> "vxdp.live.K").
const RePublishPrefix = "vxdp.live."

// ListenOptions configure a process of bare listeners (`vxdp bench
// listen`): Count connections that receive what an agent hosting Network
// would, and do nothing with it.
type ListenOptions struct {
	URL     string
	Count   int
	First   int // index of the first listener (host names l<i>)
	Mode    string
	Network string
	// Watch is the key prefix of the events timed: every listener's
	// receive time of each key below it is reported.
	Watch string
	Out   io.Writer
	// Timeout for one listener's set-up, retried (default 20s).
	Timeout time.Duration
}

// listenLine is what a listener process prints: once ready, then per
// watched key the receive times of every listener.
type listenLine struct {
	Ready   int     `json:"ready,omitempty"`
	Retries int     `json:"retries,omitempty"`
	Key     string  `json:"key,omitempty"`
	UnixNS  []int64 `json:"unix_ns,omitempty"`
	Error   string  `json:"error,omitempty"`
}

// RunListeners runs the listeners until ctx ends.
func RunListeners(ctx context.Context, o ListenOptions) error {
	if o.Timeout <= 0 {
		o.Timeout = 20 * time.Second
	}
	out := &lineWriter{w: bufio.NewWriter(o.Out)}
	rx := &receipts{want: o.Count, byKey: map[string][]int64{}, out: out}
	conns := make([]*nats.Conn, o.Count)
	defer func() {
		for _, nc := range conns {
			if nc != nil {
				nc.Close()
			}
		}
	}()
	var retries atomic.Int64
	sem := make(chan struct{}, 32)
	errs := make(chan error, o.Count)
	var wg sync.WaitGroup
	for i := range o.Count {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			nc, err := retried(ctx, &retries, func(ctx context.Context) (*nats.Conn, error) {
				return listen(ctx, o, o.First+i, rx)
			}, o.Timeout)
			conns[i] = nc
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			out.write(listenLine{Error: err.Error()})
			return err
		}
	}
	out.write(listenLine{Ready: o.Count, Retries: int(retries.Load())})
	<-ctx.Done()
	return nil
}

// retried calls f until it succeeds, each attempt bounded by timeout,
// with backoff; only ctx ends it. Set-up under load is slow, not fatal.
func retried[T any](ctx context.Context, retries *atomic.Int64, f func(context.Context) (T, error), timeout time.Duration) (T, error) {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		actx, cancel := context.WithTimeout(ctx, timeout)
		v, err := f(actx)
		cancel()
		if err == nil {
			return v, nil
		}
		if ctx.Err() != nil {
			return v, ctx.Err()
		}
		retries.Add(1)
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// listen connects listener i and subscribes it as o.Mode says.
func listen(ctx context.Context, o ListenOptions, i int, rx *receipts) (*nats.Conn, error) {
	host := fmt.Sprintf("l%05d", i)
	nc, err := nats.Connect(o.URL, nats.Name("vxdp-bench-listener "+host), nats.Timeout(5*time.Second), nats.MaxReconnects(-1))
	if err != nil {
		return nil, err
	}
	prefix := control.KeyPrefix(control.DefaultBucket)
	filters := []string{control.RegistrationsFilter, control.AgentKey(host), control.BindingsFilter(host), control.NetworkFilter(o.Network)}
	watch := prefix + o.Watch
	switch o.Mode {
	case ListenRePublish:
		for _, f := range filters {
			if _, err := nc.Subscribe(RePublishPrefix+f, func(m *nats.Msg) {
				if key := strings.TrimPrefix(m.Subject, RePublishPrefix); strings.HasPrefix(key, o.Watch) {
					rx.add(key)
				}
			}); err != nil {
				nc.Close()
				return nil, err
			}
		}
	case ListenConsumer:
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return nil, err
		}
		inbox := nc.NewInbox()
		if _, err := nc.Subscribe(inbox, func(m *nats.Msg) {
			if len(m.Data) == 0 && m.Header.Get("Status") != "" {
				if m.Reply != "" {
					_ = m.Respond(nil) // flow control
				}
				return
			}
			if strings.HasPrefix(m.Subject, watch) {
				rx.add(m.Subject[len(prefix):])
			}
		}); err != nil {
			nc.Close()
			return nil, err
		}
		subjects := make([]string, len(filters))
		for j, f := range filters {
			subjects[j] = prefix + f
		}
		_, err = js.CreatePushConsumer(ctx, control.StreamName(control.DefaultBucket), jetstream.ConsumerConfig{
			DeliverSubject: inbox, DeliverPolicy: jetstream.DeliverNewPolicy, AckPolicy: jetstream.AckNonePolicy,
			FlowControl: true, IdleHeartbeat: 5 * time.Second, InactiveThreshold: time.Minute, MemoryStorage: true,
			Replicas: 1, FilterSubjects: subjects,
		})
		if err != nil {
			nc.Close()
			return nil, err
		}
	default:
		nc.Close()
		return nil, fmt.Errorf("listener mode %q: want %s or %s", o.Mode, ListenConsumer, ListenRePublish)
	}
	if err := nc.FlushTimeout(10 * time.Second); err != nil {
		nc.Close()
		return nil, err
	}
	return nc, nil
}

// receipts collects the receive times of watched keys and reports a key
// once every listener has it (or a newer watched key shows it never will).
type receipts struct {
	mu    sync.Mutex
	want  int
	byKey map[string][]int64
	order []string
	out   *lineWriter
}

func (r *receipts) add(key string) {
	now := time.Now().UnixNano()
	r.mu.Lock()
	defer r.mu.Unlock()
	ts, seen := r.byKey[key]
	if !seen {
		r.order = append(r.order, key)
		// Keys older than the last few are given up on: a listener
		// missed them.
		for len(r.order) > 4 {
			old := r.order[0]
			r.order = r.order[1:]
			if t, ok := r.byKey[old]; ok {
				r.out.write(listenLine{Key: old, UnixNS: t})
				delete(r.byKey, old)
			}
		}
	}
	ts = append(ts, now)
	if len(ts) == r.want {
		r.out.write(listenLine{Key: key, UnixNS: ts})
		delete(r.byKey, key)
		return
	}
	r.byKey[key] = ts
}

// lineWriter writes JSON lines from several goroutines.
type lineWriter struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (l *lineWriter) write(v any) {
	raw, err := json.Marshal(v)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w.Write(raw)
	l.w.WriteByte('\n')
	l.w.Flush()
}
