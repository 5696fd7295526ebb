package dataplane

import (
	"context"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// WatchTaps signals on the returned channel whenever a desired tap appears,
// is recreated or disappears, so the agent re-applies: a port is installed
// the moment its VM's tap exists, and removed when it goes. Signals are
// coalesced. A subscription the kernel ends (e.g. its socket overflowed
// under a burst of link changes) is renewed, with a signal, since events
// may have been missed. The channel closes when ctx ends.
func (d *Dataplane) WatchTaps(ctx context.Context) (<-chan struct{}, error) {
	updates, err := d.subscribeLinks(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan struct{}, 1)
	signal := func() {
		select {
		case out <- struct{}{}:
		default:
		}
	}
	go func() {
		defer close(out)
		for {
			for u := range updates {
				if d.tapChanged(u) {
					signal()
				}
			}
			for ctx.Err() == nil {
				d.log.Warn("link subscription ended; renewing it")
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
				if updates, err = d.subscribeLinks(ctx); err == nil {
					signal()
					break
				}
				d.log.Error("renew link subscription", "err", err)
			}
			if ctx.Err() != nil {
				return
			}
		}
	}()
	return out, nil
}

func (d *Dataplane) subscribeLinks(ctx context.Context) (chan netlink.LinkUpdate, error) {
	updates := make(chan netlink.LinkUpdate, 256)
	err := netlink.LinkSubscribeWithOptions(updates, ctx.Done(), netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) { d.log.Warn("link subscription", "err", err) },
	})
	return updates, err
}

func (d *Dataplane) tapChanged(u netlink.LinkUpdate) bool {
	name := u.Link.Attrs().Name
	idx := int(u.Index)
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.desired[name] {
		return false
	}
	have, installed := d.installed[name]
	if u.Header.Type == unix.RTM_DELLINK {
		return installed && have == idx
	}
	return !installed || have != idx
}
