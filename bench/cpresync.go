package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/state"
)

// cpResync measures one agent hosting a network of ports remote ports.
func cpResync(ctx context.Context, o ControlPlaneOptions, ports int, pr *Progress) (ResyncFigure, error) {
	fig := ResyncFigure{Ports: ports, DeltaChanges: o.DeltaChanges}
	pr.Step("resync at %d ports: writing the network", ports)
	env, err := cpStart(ctx, o)
	if err != nil {
		return fig, err
	}
	defer env.stop()
	netw, err := env.ctl.CreateNetwork(ctx, control.NetworkSpec{Name: "big", VNI: 7000})
	if err != nil {
		return fig, err
	}
	const perHost = 1000 // 100 hosts at 100k ports
	hosts := map[string]netip.Addr{}
	for i := 0; i < (ports+o.ResyncEvents+o.DeltaChanges)/perHost+1; i++ {
		hosts[fmt.Sprintf("r%04d", i)] = cpVTEP(1<<16 + i)
	}
	if err := env.register(ctx, hosts); err != nil {
		return fig, err
	}
	if err := env.remotePorts(ctx, netw.ID, 0, ports, perHost); err != nil {
		return fig, err
	}
	if err := env.registerSources(ctx); err != nil {
		return fig, err
	}
	const host = "target"
	if _, err := env.ctl.CreatePort(ctx, control.PortSpec{Network: netw.ID, MAC: state.MAC{0xfa, 0x16, 0x3e, 0xcc, 0, 1}, Host: host}); err != nil {
		return fig, err
	}
	filters := []string{control.RegistrationsFilter, control.AgentKey(host), control.BindingsFilter(host), control.NetworkFilter(netw.ID)}
	pr.Step("resync at %d ports: transport floor (a bare consumer reads what the agent will)", ports)
	floor, err := env.loadFloor(ctx, filters)
	if err != nil {
		return fig, err
	}
	fig.FloorFullMs = ms(floor)

	pr.Step("resync at %d ports: full resync", ports)
	stateDir := filepath.Join(env.dir, "agent")
	a, err := env.startAgent(host, netip.MustParseAddr("10.255.0.1"), stateDir)
	if err != nil {
		return fig, err
	}
	defer func() { a.c.stop() }()
	first := func(a *cpAgent, want int) (agentLine, error) {
		var l agentLine
		err := wait(ctx, 10*time.Minute, func() string { return "first state" }, func() bool {
			var ok bool
			l, ok = a.first(func(l agentLine) bool { return l.Remote >= want })
			return ok
		}, a.c)
		return l, err
	}
	full, err := first(a, ports)
	if err != nil {
		return fig, err
	}
	fig.FullMs, fig.FullRecords = full.RunMS, full.Fetched
	fig.FullWallMs = ms(time.Unix(0, full.UnixNS).Sub(a.began))
	if c, err := procCPU(a.c.pid()); err == nil {
		fig.FullCPUMs = ms(c)
	}
	// Its registration and its port's ACTIVE status come back as more
	// states: let those settle.
	if err := env.settle(ctx, a, netw.ID, host, stateDir); err != nil {
		return fig, err
	}

	pr.Step("resync at %d ports: %d port events", ports, o.ResyncEvents)
	floorSub, err := env.eventFloor(ctx, netw.ID)
	if err != nil {
		return fig, err
	}
	defer floorSub.stop()
	meter := startCPU(a.c.pid())
	var lat, floorLat []float64
	for ev := range o.ResyncEvents {
		i := ports + ev
		key, rev, t0, err := env.portUp(ctx, netw.ID, fmt.Sprintf("r%04d", i/perHost), i)
		if err != nil {
			return fig, err
		}
		if err := wait(ctx, time.Minute, func() string { return "event " + key }, func() bool { _, ok := a.appliedAt(rev); return ok }, a.c); err != nil {
			return fig, err
		}
		at, _ := a.appliedAt(rev)
		lat = append(lat, ms(at.Sub(t0)))
		if ft, ok := floorSub.at(key); ok {
			floorLat = append(floorLat, ms(ft.Sub(t0)))
		}
		pr.Update("resync at %d ports: event %d of %d", ports, ev+1, o.ResyncEvents)
		time.Sleep(10 * time.Millisecond)
	}
	use := meter.stop()
	fig.Event, fig.FloorEvent = latencyOf(lat), latencyOf(floorLat)
	fig.AgentCPUPerEventMs = ms(use.Total) / float64(o.ResyncEvents)
	fig.PeakRSSMiB, fig.RSSMiB, _ = procMemory(a.c.pid())
	fig.Load1 = use.Load1

	pr.Step("resync at %d ports: restart after %d changes", ports, o.DeltaChanges)
	if err := env.settle(ctx, a, netw.ID, host, stateDir); err != nil {
		return fig, err
	}
	a.c.stop()
	if st, err := os.Stat(filepath.Join(stateDir, control.SnapshotFile)); err == nil {
		fig.SnapshotMB = float64(st.Size()) / 1e6
	}
	if err := env.remotePorts(ctx, netw.ID, ports+o.ResyncEvents, o.DeltaChanges, perHost); err != nil {
		return fig, err
	}
	a, err = env.startAgent(host, netip.MustParseAddr("10.255.0.1"), stateDir)
	if err != nil {
		return fig, err
	}
	delta, err := first(a, ports+o.ResyncEvents+o.DeltaChanges)
	if err != nil {
		return fig, err
	}
	fig.DeltaMs, fig.DeltaRecords, fig.DeltaMode = delta.RunMS, delta.Fetched, delta.Resync
	fig.DeltaWallMs = ms(time.Unix(0, delta.UnixNS).Sub(a.began))
	pr.Logf("resync at %d ports: full %.0f ms (floor %.0f), %.3f ms CPU per event, peak RSS %.1f MiB, restart %.1f ms (%s, %d records)",
		ports, fig.FullMs, fig.FloorFullMs, fig.AgentCPUPerEventMs, fig.PeakRSSMiB, fig.DeltaMs, fig.DeltaMode, fig.DeltaRecords)
	return fig, nil
}

// settle waits until the agent applied its own writes (agent record, its
// port's status) and persisted the snapshot of what it applied last.
func (e *cpEnv) settle(ctx context.Context, a *cpAgent, netID, host, stateDir string) error {
	kv := e.ctl.KV()
	ports, err := e.ctl.ListPorts(ctx, control.PortFilter{Host: host})
	if err != nil {
		return err
	}
	return wait(ctx, 2*time.Minute, func() string { return "agent settling" }, func() bool {
		need := uint64(0)
		keys := []string{control.AgentKey(host)}
		for _, p := range ports {
			keys = append(keys, control.StatusKey(netID, host, p.ID))
		}
		for _, k := range keys {
			en, err := kv.Get(ctx, k)
			if err != nil {
				return false
			}
			need = max(need, en.Revision())
		}
		applied := a.last().Rev
		return applied >= need && control.SnapshotRevision(stateDir) == applied
	}, a.c)
}

// loadFloor is how long a bare consumer takes to receive the latest
// value of every key matching filters, doing nothing with them.
func (e *cpEnv) loadFloor(ctx context.Context, filters []string) (time.Duration, error) {
	subjects := make([]string, len(filters))
	for i, f := range filters {
		subjects[i] = control.KeySubject(control.DefaultBucket, f)
	}
	nc, err := nats.Connect(e.srv.ClientURL())
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	done := make(chan struct{})
	var once sync.Once
	inbox := nc.NewInbox()
	t0 := time.Now()
	sub, err := nc.Subscribe(inbox, func(m *nats.Msg) {
		if len(m.Data) == 0 && m.Header.Get("Status") != "" {
			if m.Reply != "" {
				_ = m.Respond(nil)
			}
			return
		}
		if meta, err := m.Metadata(); err == nil && meta.NumPending == 0 {
			once.Do(func() { close(done) })
		}
	})
	if err != nil {
		return 0, err
	}
	defer sub.Unsubscribe()
	c, err := js.CreatePushConsumer(ctx, control.StreamName(control.DefaultBucket), jetstream.ConsumerConfig{
		DeliverSubject: inbox, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy, AckPolicy: jetstream.AckNonePolicy,
		FlowControl: true, IdleHeartbeat: 5 * time.Second, InactiveThreshold: time.Minute, MemoryStorage: true, Replicas: 1,
		FilterSubjects: subjects,
	})
	if err != nil {
		return 0, err
	}
	defer js.DeleteConsumer(context.Background(), control.StreamName(control.DefaultBucket), c.CachedInfo().Name)
	select {
	case <-done:
		return time.Since(t0), nil
	case <-time.After(5 * time.Minute):
		return 0, errors.New("the bare consumer did not finish in 5 minutes")
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// floorListener is a bare core subscriber to a network's changes, in this
// process: the transport floor of single-agent events.
type floorListener struct {
	nc    *nats.Conn
	mu    sync.Mutex
	times map[string]time.Time
}

func (e *cpEnv) eventFloor(ctx context.Context, netID string) (*floorListener, error) {
	f := &floorListener{times: map[string]time.Time{}}
	var err error
	if f.nc, err = nats.Connect(e.srv.ClientURL()); err != nil {
		return nil, err
	}
	prefix := control.KeyPrefix(control.DefaultBucket)
	if _, err := f.nc.Subscribe(prefix+control.NetworkFilter(netID), func(m *nats.Msg) {
		now := time.Now()
		f.mu.Lock()
		f.times[m.Subject[len(prefix):]] = now
		f.mu.Unlock()
	}); err != nil {
		f.nc.Close()
		return nil, err
	}
	return f, f.nc.FlushTimeout(10 * time.Second)
}

func (f *floorListener) at(key string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.times[key]
	return t, ok
}

func (f *floorListener) stop() { f.nc.Close() }
