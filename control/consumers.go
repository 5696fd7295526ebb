package control

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// consumerSpec is what a follower asks for: the keys it follows, where to
// start, and the subject its messages go to.
type consumerSpec struct {
	// Filters are key patterns (without the "$KV.<bucket>." prefix).
	Filters []string `json:"filters"`
	// Proofs name, for each filter an agent may have only because of a
	// record (a network it hosts, a security group of its ports), that
	// record's key: the broker reads it to check the claim.
	Proofs map[string]string `json:"proofs,omitempty"`
	// LastPerSubject delivers only the latest message of each key (a full
	// load); otherwise delivery starts at StartRevision.
	LastPerSubject bool   `json:"last_per_subject,omitempty"`
	StartRevision  uint64 `json:"start_revision,omitempty"`
	// DeliverSubject is where the server pushes the messages: below the
	// follower's own inbox.
	DeliverSubject string `json:"deliver_subject"`
}

// consumerSource makes, inspects and removes the consumers followers read
// from: directly through the JetStream API (the controller and the broker,
// which own the bucket) or through the broker (agents, which may not use
// the JetStream API at all).
type consumerSource interface {
	// newInbox is a fresh deliver subject the source may use.
	newInbox() string
	// create makes a consumer for spec and returns its name and how many
	// messages it has to deliver.
	create(ctx context.Context, spec consumerSpec) (name string, pending uint64, err error)
	// pending is how many messages the consumer still has to deliver.
	pending(ctx context.Context, name string) (uint64, error)
	// remove deletes the consumer in the background (the server drops it a
	// minute after its follower went away anyway).
	remove(name string)
}

// errRefused marks a consumer the broker will not make as asked (a filter
// the host is not entitled to, e.g. a network it no longer hosts): asking
// again changes nothing; the agent resyncs from scratch instead.
var errRefused = errors.New("refused")

// Consumer settings: messages are pushed to the follower's inbox with flow
// control, never acknowledged, and the server forgets a consumer whose
// follower went away after consumerInactive.
const (
	consumerHeartbeat = 5 * time.Second
	consumerInactive  = time.Minute
)

// consumerMetaHost is the consumer metadata naming the host a broker made
// the consumer for.
const consumerMetaHost = "vxdp_host"

// pushConsumerConfig is the configuration of every consumer vxdp makes: an
// ephemeral-style push consumer (memory, one replica, deleted when idle)
// delivering to spec.DeliverSubject in stream order, with flow control and
// idle heartbeats so that the follower notices gaps and stalls.
func pushConsumerConfig(bucket string, spec consumerSpec, name, host string) jetstream.ConsumerConfig {
	prefix := KeyPrefix(bucket)
	subjects := make([]string, len(spec.Filters))
	for i, f := range spec.Filters {
		subjects[i] = prefix + f
	}
	cfg := jetstream.ConsumerConfig{
		Name:              name,
		DeliverSubject:    spec.DeliverSubject,
		AckPolicy:         jetstream.AckNonePolicy,
		FlowControl:       true,
		IdleHeartbeat:     consumerHeartbeat,
		InactiveThreshold: consumerInactive,
		MemoryStorage:     true,
		Replicas:          1,
	}
	if len(subjects) == 1 {
		cfg.FilterSubject = subjects[0]
	} else {
		cfg.FilterSubjects = subjects
	}
	if host != "" {
		cfg.Metadata = map[string]string{consumerMetaHost: HostToken(host)}
	}
	if spec.LastPerSubject {
		cfg.DeliverPolicy = jetstream.DeliverLastPerSubjectPolicy
	} else {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = max(spec.StartRevision, 1)
	}
	return cfg
}

// consumerName is an unguessable consumer name, with (the start of) the
// host it serves for operators reading `nats consumer ls`; at most 64
// characters, a valid id.
func consumerName(host string) string {
	if host == "" {
		return "vxdp_" + uniqueToken()
	}
	tok := HostToken(host)
	return "vxdp_" + tok[:min(len(tok), 32)] + "_" + uniqueToken()
}

// uniqueToken is a random subject token (what nats.NewInbox appends).
func uniqueToken() string { return strings.TrimPrefix(nats.NewInbox(), nats.InboxPrefix) }

// directConsumers makes consumers through the JetStream API.
type directConsumers struct {
	js     jetstream.JetStream
	bucket string
	// host is recorded in the consumers' metadata (the broker's, "" otherwise).
	host string
}

func newDirectConsumers(js jetstream.JetStream, bucket string) *directConsumers {
	return &directConsumers{js: js, bucket: bucket}
}

func (d *directConsumers) newInbox() string { return d.js.Conn().NewInbox() }

func (d *directConsumers) create(ctx context.Context, spec consumerSpec) (string, uint64, error) {
	cfg := pushConsumerConfig(d.bucket, spec, consumerName(d.host), d.host)
	c, err := d.js.CreatePushConsumer(ctx, StreamName(d.bucket), cfg)
	if err != nil {
		return "", 0, fmt.Errorf("create consumer: %w", err)
	}
	return cfg.Name, c.CachedInfo().NumPending, nil
}

func (d *directConsumers) pending(ctx context.Context, name string) (uint64, error) {
	c, err := d.js.PushConsumer(ctx, StreamName(d.bucket), name)
	if err != nil {
		return 0, err
	}
	return c.CachedInfo().NumPending, nil
}

func (d *directConsumers) remove(name string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.js.DeleteConsumer(ctx, StreamName(d.bucket), name)
	}()
}

// isStatus reports whether m is a JetStream status message (idle heartbeat,
// flow-control request) rather than a stored message.
func isStatus(m *nats.Msg) bool {
	return len(m.Data) == 0 && m.Header.Get("Status") != ""
}
