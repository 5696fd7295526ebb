package control

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/nats-io/nats.go"
)

// Broker operations: the last tokens of APISubject.
const (
	opInfo           = "info"
	opRegister       = "register"
	opHeartbeat      = "heartbeat"
	opStatus         = "status"
	opConsumerCreate = "consumer.create"
	opConsumerInfo   = "consumer.info"
	opConsumerDelete = "consumer.delete"
)

// Reasons the broker refuses a request (the "reason" label of
// vxdp_broker_refused_total).
const (
	ReasonInvalid     = "invalid"         // the request or record does not parse or validate
	ReasonNotBound    = "not_bound"       // a status of a port not bound to the host
	ReasonKeyLimit    = "key_limit"       // the host holds the most status records it may
	ReasonByteLimit   = "byte_limit"      // ... or the most bytes of them
	ReasonRate        = "rate"            // the host writes faster than it may
	ReasonFilter      = "filter"          // a consumer filter the host is not entitled to
	ReasonDeliver     = "deliver_subject" // a consumer delivering outside the host's inbox
	ReasonReply       = "reply_subject"   // a reply subject outside the host's inbox (not answered)
	ReasonNotOwner    = "not_owner"       // a consumer the broker did not make for the host
	ReasonUnknownOp   = "unknown_op"      // no such operation
	ReasonBusy        = "busy"            // too many requests of the host at once
	ReasonUnavailable = "unavailable"     // the broker cannot reach the bucket (retry)
)

// BrokerError is a request the broker refused or could not serve.
type BrokerError struct {
	Op, Reason, Msg string
}

// Error says what was refused and why.
func (e *BrokerError) Error() string { return fmt.Sprintf("broker %s: %s (%s)", e.Op, e.Msg, e.Reason) }

// Is makes a refusal that asking again cannot change match errRefused.
func (e *BrokerError) Is(target error) bool {
	return target == errRefused && e.Reason != ReasonBusy && e.Reason != ReasonRate && e.Reason != ReasonUnavailable
}

func refusal(reason, format string, args ...any) error {
	return &BrokerError{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// brokerReply is the envelope of every broker answer.
type brokerReply struct {
	Error  string          `json:"error,omitempty"`
	Reason string          `json:"reason,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// bucketInfo identifies the bucket for an agent's resync decisions.
type bucketInfo struct {
	Created      time.Time `json:"created"`
	LastRevision uint64    `json:"last_revision"`
	// Floor is the compaction floor (meta.compacted), 0 if none.
	Floor uint64 `json:"floor,omitempty"`
}

// registerReply says what the broker made of an agent record.
type registerReply struct {
	// Revision of the agent record; 0 when the stored one was the same.
	Revision uint64 `json:"revision"`
	// RegisteredVTEP is the host's registered VTEP (invalid when the host
	// is not registered: registration is manual and nobody did it yet).
	RegisteredVTEP netip.Addr `json:"registered_vtep,omitzero"`
}

// statusRequest writes (Record set) or deletes a port status of the host.
type statusRequest struct {
	Network string        `json:"network"`
	Port    string        `json:"port"`
	Record  *StatusRecord `json:"record,omitempty"`
	// Revision makes a delete conditional on the key's revision.
	Revision uint64 `json:"revision,omitempty"`
}

// writeReply is the revision a write made (0: nothing written).
type writeReply struct {
	Revision uint64 `json:"revision"`
}

// consumerRef names a consumer.
type consumerRef struct {
	Name string `json:"name"`
}

// consumerReply describes a consumer: its name and what it has to deliver.
type consumerReply struct {
	Name    string `json:"name"`
	Pending uint64 `json:"pending"`
}

// brokerTimeout bounds one request (a consumer over thousands of networks
// is checked key by key).
const brokerTimeout = 10 * time.Second

// brokerClient is the agent's side of the broker: every write and every
// consumer of the agent goes through it. Replies come to the host's inbox,
// whatever inbox prefix the connection has.
type brokerClient struct {
	nc     *nats.Conn
	bucket string
	host   string
}

func (b *brokerClient) newInbox() string { return InboxPrefix(b.host) + "." + uniqueToken() }

// call sends one request and decodes the result into res (may be nil).
func (b *brokerClient) call(ctx context.Context, op string, req, res any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("broker %s: %w", op, err)
	}
	inbox := b.newInbox()
	sub, err := b.nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("broker %s: %w", op, err)
	}
	defer sub.Unsubscribe()
	if err := b.nc.PublishMsg(&nats.Msg{Subject: APISubject(b.bucket, b.host, op), Reply: inbox, Data: body}); err != nil {
		return fmt.Errorf("broker %s: %w", op, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, brokerTimeout)
		defer cancel()
	}
	m, err := sub.NextMsgWithContext(ctx)
	if err != nil {
		return &BrokerError{Op: op, Reason: ReasonUnavailable, Msg: err.Error()}
	}
	if isStatus(m) {
		// 503: nobody subscribes to the request subject.
		return &BrokerError{Op: op, Reason: ReasonUnavailable, Msg: "no broker answers (is `vxdp server` running?)"}
	}
	var r brokerReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return fmt.Errorf("broker %s: reply: %w", op, err)
	}
	if r.Error != "" {
		return &BrokerError{Op: op, Reason: r.Reason, Msg: r.Error}
	}
	if res != nil {
		if err := json.Unmarshal(r.Result, res); err != nil {
			return fmt.Errorf("broker %s: result: %w", op, err)
		}
	}
	return nil
}

func (b *brokerClient) info(ctx context.Context) (bucketInfo, error) {
	var r bucketInfo
	err := b.call(ctx, opInfo, struct{}{}, &r)
	return r, err
}

func (b *brokerClient) register(ctx context.Context, rec *AgentRecord) (registerReply, error) {
	var r registerReply
	err := b.call(ctx, opRegister, rec, &r)
	return r, err
}

func (b *brokerClient) heartbeat(ctx context.Context, rec *HeartbeatRecord) error {
	return b.call(ctx, opHeartbeat, rec, nil)
}

// putStatus writes the host's status of a port.
func (b *brokerClient) putStatus(ctx context.Context, netID string, rec *StatusRecord) error {
	return b.call(ctx, opStatus, statusRequest{Network: netID, Port: rec.PortID, Record: rec}, nil)
}

// deleteStatus deletes the host's status of a port if it is still at rev.
func (b *brokerClient) deleteStatus(ctx context.Context, netID, portID string, rev uint64) error {
	return b.call(ctx, opStatus, statusRequest{Network: netID, Port: portID, Revision: rev}, nil)
}

// The consumerSource of agents.

func (b *brokerClient) create(ctx context.Context, spec consumerSpec) (string, uint64, error) {
	var r consumerReply
	if err := b.call(ctx, opConsumerCreate, spec, &r); err != nil {
		return "", 0, err
	}
	return r.Name, r.Pending, nil
}

func (b *brokerClient) pending(ctx context.Context, name string) (uint64, error) {
	var r consumerReply
	err := b.call(ctx, opConsumerInfo, consumerRef{Name: name}, &r)
	return r.Pending, err
}

func (b *brokerClient) remove(name string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.call(ctx, opConsumerDelete, consumerRef{Name: name}, nil)
	}()
}
