package control

import (
	"context"
	"sync/atomic"
	"time"
)

// heartbeat registers the agent record and writes a heartbeat every report
// interval, through the broker; the first apply after a start and a
// changed agent record are written at once.
type heartbeat struct {
	*agentEnv
	again       chan struct{} // the agent record must be written again
	now         chan struct{} // a heartbeat is due now
	appliedOnce atomic.Bool
}

func newHeartbeat(env *agentEnv) *heartbeat {
	return &heartbeat{agentEnv: env, again: make(chan struct{}, 1), now: make(chan struct{}, 1)}
}

// reregister asks for the agent record to be written again (the view
// lacks it or holds another version).
func (h *heartbeat) reregister() { poke(h.again) }

// applied is told every apply: the heartbeat written at start carried the
// revision applied before the restart, so the first apply is reported at
// once, not a report interval later.
func (h *heartbeat) applied() {
	if !h.appliedOnce.Swap(true) {
		poke(h.now)
	}
}

func (h *heartbeat) run(ctx context.Context) {
	registered := false
	beat := func() {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if !registered {
			if err := h.register(ctx); err != nil {
				h.log.Warn("agent registration failed; will retry", "err", err)
			} else {
				registered = true
			}
		}
		err := h.broker.heartbeat(ctx, &HeartbeatRecord{Host: h.opts.Host, AgentID: h.id, StartedAt: h.start, Time: now(),
			AppliedRevision: h.appliedRev.Load()})
		if err != nil {
			h.m.heartbeats.WithLabelValues("error").Inc()
			h.logWriteError("heartbeat failed", HeartbeatKey(h.opts.Host), err)
			return
		}
		h.m.heartbeats.WithLabelValues("ok").Inc()
	}
	// Until registered, retry sooner than the report interval: other
	// agents cannot reach this host's ports before they know its VTEP.
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	backoff := time.Second
	again := func() {
		if !registered {
			retry.Reset(backoff)
			backoff = min(2*backoff, h.opts.ReportInterval)
		} else {
			backoff = time.Second
		}
	}
	beat()
	again()
	t := time.NewTicker(h.opts.ReportInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			beat()
		case <-retry.C:
			beat()
		case <-h.again:
			registered = false
			beat()
		case <-h.now:
			beat()
		}
		again()
	}
}

// register has the broker write the agent record (it writes nothing when
// the stored one is the same: a restart wakes no other agent), and warns
// when the host's registered VTEP is not this agent's: other hosts send
// to the registered one.
func (h *heartbeat) register(ctx context.Context) error {
	r, err := h.broker.register(ctx, h.agentRecord())
	if err != nil {
		return err
	}
	switch {
	case !r.RegisteredVTEP.IsValid():
		h.log.Warn("this host has no VTEP registration: other hosts cannot reach its ports until `vxdp host add` registers it",
			"vtep", h.opts.VTEP)
	case r.RegisteredVTEP != h.opts.VTEP:
		h.log.Error("this host's registered VTEP is not its local_ip: other hosts send its traffic to the registered address; "+
			"fix local_ip, or change the registration with `vxdp host add HOST --vtep IP --replace`",
			"registered_vtep", r.RegisteredVTEP, "local_ip", h.opts.VTEP)
	}
	if r.Revision != 0 {
		h.log.Info("agent registered", "id", h.id, "vtep", h.opts.VTEP)
	}
	return nil
}
