package dataplane

import (
	"bytes"
	"context"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// WatchTaps signals on the returned channel whenever a desired tap appears,
// is recreated or disappears, so the agent re-applies: a port is installed
// the moment its VM's tap exists, and removed when it goes. It also keeps
// the VTEPs' next hops current as the kernel's neighbour table changes.
// Signals are coalesced. A subscription the kernel ends (e.g. its socket overflowed
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
	neighs, err := d.subscribeNeighs(ctx)
	if err != nil {
		return nil, err
	}
	go d.watchNeighs(ctx, neighs, signal)
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
	// The uplink's new MAC goes into the config (the outer source MAC).
	if k := d.kernel; k != nil && idx == k.uplink.Attrs().Index && u.Header.Type != unix.RTM_DELLINK &&
		!bytes.Equal(u.Link.Attrs().HardwareAddr, k.uplink.Attrs().HardwareAddr) {
		return true
	}
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

func (d *Dataplane) subscribeNeighs(ctx context.Context) (chan netlink.NeighUpdate, error) {
	updates := make(chan netlink.NeighUpdate, 256)
	err := netlink.NeighSubscribeWithOptions(updates, ctx.Done(), netlink.NeighSubscribeOptions{
		ErrorCallback: func(err error) { d.log.Warn("neighbour subscription", "err", err) },
	})
	return updates, err
}

// watchNeighs signals for neighbour changes of the VTEPs' next hops,
// renewing a subscription the kernel ends (with a signal: events may have
// been missed).
func (d *Dataplane) watchNeighs(ctx context.Context, updates chan netlink.NeighUpdate, signal func()) {
	for {
		for u := range updates {
			d.nexthopUpdate(u)
		}
		for ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			var err error
			if updates, err = d.subscribeNeighs(ctx); err == nil {
				signal() // events may have been lost: an apply reads the table again
				break
			}
			d.log.Error("renew neighbour subscription", "err", err)
		}
		if ctx.Err() != nil {
			return
		}
	}
}
