package control

import (
	"context"
	"errors"
	"time"
)

// The agent's writes, all through the broker, off the sync loop.

// statusLoop performs status writes.
func (a *Agent) statusLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.statusKick:
		}
		a.mu.Lock()
		ops := a.statusQ
		a.statusQ = nil
		a.mu.Unlock()
		var err error
		for _, op := range ops {
			if err == nil {
				err = a.writeStatus(ctx, op)
			}
			select {
			case a.statusDone <- statusResult{op, err}:
			case <-ctx.Done():
				return
			}
		}
	}
}

func (a *Agent) writeStatus(ctx context.Context, op statusOp) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	k := ParseKey(op.key)
	if op.rec == nil {
		// Nothing is deleted when the key was rewritten meanwhile; the
		// next round decides again.
		return a.broker.deleteStatus(ctx, k.Network, k.Port, op.delRev)
	}
	err := a.broker.putStatus(ctx, k.Network, op.rec)
	result := "ok"
	if err != nil {
		result = "error"
		a.logWriteError("port status write failed; will retry", op.key, err)
	}
	a.m.statusWrites.WithLabelValues(op.rec.Status, result).Inc()
	return err
}

// logWriteError logs a failed write: a refusal (a bug, or limits set too
// low) loudly, an unreachable broker quietly (it is retried).
func (a *Agent) logWriteError(msg, key string, err error) {
	if errors.Is(err, errRefused) {
		a.log.Warn(msg, "key", key, "err", err)
		return
	}
	a.log.Debug(msg, "key", key, "err", err)
}

// heartbeatLoop registers the agent record and writes heartbeats.
func (a *Agent) heartbeatLoop(ctx context.Context) {
	registered := false
	beat := func() {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if !registered {
			if err := a.register(ctx); err != nil {
				a.log.Warn("agent registration failed; will retry", "err", err)
			} else {
				registered = true
			}
		}
		a.mu.Lock()
		applied := a.appliedRev
		a.mu.Unlock()
		err := a.broker.heartbeat(ctx, &HeartbeatRecord{Host: a.opts.Host, AgentID: a.id, StartedAt: a.start, Time: now(), AppliedRevision: applied})
		if err != nil {
			a.m.heartbeats.WithLabelValues("error").Inc()
			a.logWriteError("heartbeat failed", HeartbeatKey(a.opts.Host), err)
			return
		}
		a.m.heartbeats.WithLabelValues("ok").Inc()
	}
	// Until registered, retry sooner than the report interval: other
	// agents cannot reach this host's ports before they know its VTEP.
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	backoff := time.Second
	again := func() {
		if !registered {
			retry.Reset(backoff)
			backoff = min(2*backoff, a.opts.ReportInterval)
		} else {
			backoff = time.Second
		}
	}
	beat()
	again()
	t := time.NewTicker(a.opts.ReportInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			beat()
		case <-retry.C:
			beat()
		case <-a.reregister:
			registered = false
			beat()
		case <-a.beatNow:
			beat()
		}
		again()
	}
}

// register has the broker write the agent record (it writes nothing when
// the stored one is the same: a restart wakes no other agent), and warns
// when the host's registered VTEP is not this agent's: other hosts send
// to the registered one.
func (a *Agent) register(ctx context.Context) error {
	r, err := a.broker.register(ctx, a.agentRecord())
	if err != nil {
		return err
	}
	switch {
	case !r.RegisteredVTEP.IsValid():
		a.log.Warn("this host has no VTEP registration: other hosts cannot reach its ports until `vxdp host add` registers it",
			"vtep", a.opts.VTEP)
	case r.RegisteredVTEP != a.opts.VTEP:
		a.log.Error("this host's registered VTEP is not its local_ip: other hosts send its traffic to the registered address; "+
			"fix local_ip, or change the registration with `vxdp host add HOST --vtep IP --replace`",
			"registered_vtep", r.RegisteredVTEP, "local_ip", a.opts.VTEP)
	}
	if r.Revision != 0 {
		a.log.Info("agent registered", "id", a.id, "vtep", a.opts.VTEP)
	}
	return nil
}
