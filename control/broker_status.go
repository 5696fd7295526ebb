package control

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// status writes or deletes a port status of host: a write only for a port
// bound to host on that network, within the host's limits; a delete only
// of a record the host holds.
func (b *Broker) status(ctx context.Context, host string, data []byte) (writeReply, error) {
	var req statusRequest
	if err := decodeRequest(data, &req); err != nil {
		return writeReply{}, err
	}
	if err := errors.Join(ValidID(req.Network), ValidID(req.Port)); err != nil {
		return writeReply{}, refusal(ReasonInvalid, "status: %v", err)
	}
	key := StatusKey(req.Network, host, req.Port)
	var raw []byte
	if req.Record != nil {
		var err error
		if raw, err = checkRecord(key, req.Record); err != nil {
			return writeReply{}, err
		}
	}
	if err := b.spend(host); err != nil {
		return writeReply{}, err
	}
	select {
	case <-b.index.ready:
	case <-ctx.Done():
		return writeReply{}, fmt.Errorf("status: the broker is still loading the bucket: %w", ctx.Err())
	}
	b.mu.Lock()
	lim := b.limits(host)
	b.mu.Unlock()
	lim.statusMu.Lock()
	defer lim.statusMu.Unlock()
	if req.Record == nil {
		return b.deleteStatus(ctx, host, key, req.Revision)
	}
	if err := b.checkBound(ctx, host, req.Network, req.Port); err != nil {
		return writeReply{}, err
	}
	if err := b.index.fits(host, key, len(raw)); err != nil {
		return writeReply{}, err
	}
	rev, err := b.ctl.kv.Put(ctx, key, raw)
	if err != nil {
		return writeReply{}, fmt.Errorf("put %s: %w", key, err)
	}
	b.index.stored(host, key, rev, len(raw))
	return writeReply{Revision: rev}, nil
}

// checkBound fails unless port is bound to host on network netID (the
// binding index entry the controller writes before binding a port).
func (b *Broker) checkBound(ctx context.Context, host, netID, port string) error {
	rec, _, err := b.ctl.get(ctx, BindingKey(host, port))
	var re *RecordError
	switch {
	case errors.Is(err, ErrNotFound) || errors.As(err, &re):
		return refusal(ReasonNotBound, "port %s is not bound to host %s", port, host)
	case err != nil:
		return err
	case rec.(*BindingRecord).NetworkID != netID:
		return refusal(ReasonNotBound, "port %s of host %s is on network %s, not %s", port, host, rec.(*BindingRecord).NetworkID, netID)
	}
	return nil
}

// deleteStatus deletes key if it holds a record (at rev, when given);
// otherwise it writes nothing (no delete markers on demand).
func (b *Broker) deleteStatus(ctx context.Context, host, key string, rev uint64) (writeReply, error) {
	e, err := b.ctl.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return writeReply{}, nil
	}
	if err != nil {
		return writeReply{}, fmt.Errorf("get %s: %w", key, err)
	}
	if rev != 0 && e.Revision() != rev {
		return writeReply{}, nil // rewritten meanwhile: the agent decides again
	}
	if err := b.ctl.del(ctx, key, e.Revision()); err != nil {
		if errors.Is(err, ErrConflict) {
			return writeReply{}, nil
		}
		return writeReply{}, err
	}
	b.index.stored(host, key, e.Revision()+1, -1)
	return writeReply{}, nil
}
