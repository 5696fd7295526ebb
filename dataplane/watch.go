package dataplane

import (
	"context"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// WatchTaps signals on the returned channel whenever a desired tap appears,
// is recreated or disappears, so the agent re-applies: a port is installed
// the moment its VM's tap exists, and removed when it goes. Signals are
// coalesced; the channel closes when ctx ends or the subscription fails.
func (d *Dataplane) WatchTaps(ctx context.Context) (<-chan struct{}, error) {
	updates := make(chan netlink.LinkUpdate, 64)
	if err := netlink.LinkSubscribeWithOptions(updates, ctx.Done(), netlink.LinkSubscribeOptions{}); err != nil {
		return nil, err
	}
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		for u := range updates {
			if d.tapChanged(u) {
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out, nil
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
