package control

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A leafnode (`vxdp server --leaf`) serves the agents of its rack from a
// mirror of the core's bucket in its own JetStream domain: their consumers
// (full and delta resyncs, the live changes) read the mirror, the broker's
// writes go through it to the core (nats.go writes to a mirrored KV
// bucket through the origin's API prefix). A mirror keeps the origin's
// sequence numbers, so revisions mean the same on the leaf and the core.

// EnsureMirror creates, in the JetStream domain of js, a mirror of the
// bucket of domain hub (a leafnode's copy of the core's bucket: agents
// on the leafnode read it there; writes go to the core), and returns it.
// It works while the core is away: the mirror catches up once it is back.
func EnsureMirror(ctx context.Context, js jetstream.JetStream, o BucketOptions, hub string) (jetstream.KeyValue, error) {
	cfg := bucketConfig(o)
	cfg.Description = "vxdp control plane: mirror of the bucket of JetStream domain " + hub
	cfg.Mirror = &jetstream.StreamSource{Name: cfg.Name, Domain: hub}
	cfg.MirrorDirect = true
	return ensureStream(ctx, js, cfg)
}

// originCreated is the creation time of the stream a mirror copies (the
// bucket's identity for an agent deciding how to resync): asked from the
// origin's domain, remembered for when the core is away; the mirror's own
// until the origin answered once.
type originCreated struct {
	mu    sync.Mutex
	known map[string]time.Time
}

func (o *originCreated) of(ctx context.Context, nc *nats.Conn, m *jetstream.StreamSource, mirrorCreated time.Time) time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	key := m.Name
	if m.External != nil {
		key = m.External.APIPrefix + " " + m.Name
		if js, err := jetstream.NewWithAPIPrefix(nc, m.External.APIPrefix); err == nil {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if s, err := js.Stream(ctx, m.Name); err == nil {
				if o.known == nil {
					o.known = map[string]time.Time{}
				}
				o.known[key] = s.CachedInfo().Created
			}
		}
	}
	if t, ok := o.known[key]; ok {
		return t
	}
	return mirrorCreated
}
