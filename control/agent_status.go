package control

import (
	"context"
	"errors"
	"time"
)

// statusOp writes (rec != nil) or deletes (at revision delRev) a status key.
type statusOp struct {
	key    string
	rec    *StatusRecord
	delRev uint64
}

type statusResult struct {
	op  statusOp
	err error
}

// statusWriter writes the statuses the follower decides on, through the
// broker, off the follower's goroutine; it reports each outcome on done
// (a failure stops the rest of a batch: the follower decides again).
type statusWriter struct {
	*agentEnv
	ops  *latest[[]statusOp]
	done chan statusResult
}

func newStatusWriter(env *agentEnv) *statusWriter {
	return &statusWriter{agentEnv: env, ops: newLatest(appendOps), done: make(chan statusResult, 64)}
}

// queue asks for ops to be performed.
func (w *statusWriter) queue(ops []statusOp) {
	if len(ops) > 0 {
		w.ops.set(ops)
	}
}

func (w *statusWriter) run(ctx context.Context) {
	for {
		ops, ok := w.ops.wait(ctx)
		if !ok {
			return
		}
		var err error
		for _, op := range ops {
			if err == nil {
				err = w.write(ctx, op)
			}
			select {
			case w.done <- statusResult{op, err}:
			case <-ctx.Done():
				return
			}
		}
	}
}

func (w *statusWriter) write(ctx context.Context, op statusOp) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	k := ParseKey(op.key)
	if op.rec == nil {
		// Nothing is deleted when the key was rewritten meanwhile; the
		// next round decides again.
		return w.broker.deleteStatus(ctx, k.Network, k.Port, op.delRev)
	}
	err := w.broker.putStatus(ctx, k.Network, op.rec)
	result := "ok"
	if err != nil {
		result = "error"
		w.logWriteError("port status write failed; will retry", op.key, err)
	}
	w.m.statusWrites.WithLabelValues(op.rec.Status, result).Inc()
	return err
}

// logWriteError logs a failed write: a refusal (a bug, or limits set too
// low) loudly, an unreachable broker quietly (it is retried).
func (e *agentEnv) logWriteError(msg, key string, err error) {
	if errors.Is(err, errRefused) {
		e.log.Warn(msg, "key", key, "err", err)
		return
	}
	e.log.Debug(msg, "key", key, "err", err)
}
