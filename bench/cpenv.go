package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/control/natsd"
)

// cpEnv is a `vxdp server` process with the bucket, and this process's
// controller connection to it.
type cpEnv struct {
	o   ControlPlaneOptions
	srv *natsd.Process
	dir string
	nc  *nats.Conn
	js  jetstream.JetStream
	ctl *control.Controller
}

// benchQuotaPorts lifts the project's port quota above the largest
// network the benchmark writes.
const benchQuotaPorts = 10_000_000

func cpStart(ctx context.Context, o ControlPlaneOptions) (*cpEnv, error) {
	dir, err := os.MkdirTemp("", "vxdp-bench-cp-")
	if err != nil {
		return nil, err
	}
	e := &cpEnv{o: o, dir: dir}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	e.srv, err = natsd.StartProcess(sctx, o.Binary, natsd.Options{Listen: "127.0.0.1:0", StoreDir: filepath.Join(dir, "nats")},
		"--log-level", "error", "--quota-ports", strconv.Itoa(benchQuotaPorts))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if e.nc, err = nats.Connect(e.srv.ClientURL(), nats.MaxReconnects(-1), nats.Name("vxdp-bench-controller")); err != nil {
		e.stop()
		return nil, err
	}
	if e.js, err = jetstream.New(e.nc); err != nil {
		e.stop()
		return nil, err
	}
	if e.ctl, err = control.NewController(sctx, e.nc, control.ControllerOptions{Log: o.Log}); err != nil {
		e.stop()
		return nil, err
	}
	return e, nil
}

func (e *cpEnv) stop() {
	if e.nc != nil {
		e.nc.Close()
	}
	e.srv.Stop()
	os.RemoveAll(e.dir)
}

func (e *cpEnv) serverPID() int { return e.srv.PID() }

// put writes a record directly (the controller's checks are not what is
// measured) and returns its revision.
func (e *cpEnv) put(ctx context.Context, key string, rec any) (uint64, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return 0, err
	}
	return e.ctl.KV().Put(ctx, key, b)
}

// bulk writes records as fast as the server acknowledges them.
func (e *cpEnv) bulk(ctx context.Context, records map[string]any) error {
	var futures []jetstream.PubAckFuture
	flush := func() error {
		select {
		case <-e.js.PublishAsyncComplete():
		case <-ctx.Done():
			return ctx.Err()
		}
		for _, f := range futures {
			select {
			case err := <-f.Err():
				return err
			default:
			}
		}
		futures = futures[:0]
		return nil
	}
	for key, rec := range records {
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		f, err := e.js.PublishAsync(control.KeySubject(control.DefaultBucket, key), b)
		if err != nil {
			return err
		}
		if futures = append(futures, f); len(futures) == 2000 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// register registers hosts at VTEPs (as `vxdp host add` does).
func (e *cpEnv) register(ctx context.Context, hosts map[string]netip.Addr) error {
	recs := map[string]any{}
	for h, ip := range hosts {
		recs[control.RegistrationKey(h)] = &control.RegistrationRecord{Schema: control.SchemaVersion, Host: h, VTEP: ip,
			RegisteredBy: control.RegisteredByController}
	}
	return e.bulk(ctx, recs)
}

// remotePorts writes count ACTIVE ports of netID, from index from, bound
// to hosts r000... (perHost ports each), with their statuses.
func (e *cpEnv) remotePorts(ctx context.Context, netID string, from, count, perHost int) error {
	recs := map[string]any{}
	for i := from; i < from+count; i++ {
		host := fmt.Sprintf("r%04d", i/perHost)
		maps := portRecords(netID, host, i)
		for k, v := range maps {
			recs[k] = v
		}
		if len(recs) >= 20000 {
			if err := e.bulk(ctx, recs); err != nil {
				return err
			}
			clear(recs)
		}
	}
	return e.bulk(ctx, recs)
}

// portRecords are the port record of port i of netID bound to host, and
// its ACTIVE status.
func portRecords(netID, host string, i int) map[string]any {
	id := cpUUID(i)
	return map[string]any{
		control.PortKey(netID, id): &control.PortRecord{Schema: control.SchemaVersion, ID: id, NetworkID: netID,
			MAC: cpMAC(0xbb, i), FixedIPs: []netip.Addr{netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)})},
			PortSecurity: true, Host: host, Generation: 1},
		control.StatusKey(netID, host, id): &control.StatusRecord{Schema: control.SchemaVersion, PortID: id, Host: host,
			Status: control.StatusActive, Generation: 1},
	}
}

// portUp makes port i of netID come up on host: its record, then its
// ACTIVE status. It returns when the status was written (t0: when its
// write began) and the status's key and revision.
func (e *cpEnv) portUp(ctx context.Context, netID, host string, i int) (key string, rev uint64, t0 time.Time, err error) {
	id := cpUUID(i)
	recs := portRecords(netID, host, i)
	if _, err = e.put(ctx, control.PortKey(netID, id), recs[control.PortKey(netID, id)]); err != nil {
		return
	}
	key = control.StatusKey(netID, host, id)
	t0 = time.Now()
	rev, err = e.put(ctx, key, recs[key])
	return
}

// cpAgent is one agent process and what it applied.
type cpAgent struct {
	host string
	c    *child
	mu   sync.Mutex
	// applied: every line, in order.
	applied []agentLine
	began   time.Time
}

func (e *cpEnv) startAgent(host string, vtep netip.Addr, stateDir string) (*cpAgent, error) {
	a := &cpAgent{host: host, began: time.Now()}
	args := []string{"bench", "agent", "--nats", e.srv.ClientURL(), "--host", host, "--local-ip", vtep.String()}
	if stateDir != "" {
		args = append(args, "--state-dir", stateDir)
	}
	if dir := os.Getenv("VXDP_BENCH_PROFILE_DIR"); dir != "" {
		args = append(args, "--cpuprofile", filepath.Join(dir, fmt.Sprintf("%s-%d.cpu", host, time.Now().UnixNano())))
	}
	c, err := startChild("agent "+host, e.o.Binary, args, func(line []byte) {
		var l agentLine
		if json.Unmarshal(line, &l) == nil {
			a.mu.Lock()
			a.applied = append(a.applied, l)
			a.mu.Unlock()
		}
	})
	a.c = c
	return a, err
}

// first is the first applied line satisfying ok.
func (a *cpAgent) first(ok func(agentLine) bool) (agentLine, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range a.applied {
		if ok(l) && l.Error == "" {
			return l, true
		}
	}
	return agentLine{}, false
}

func (a *cpAgent) last() agentLine {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.applied) == 0 {
		return agentLine{}
	}
	return a.applied[len(a.applied)-1]
}

// appliedAt is when the agent first applied a state of revision rev or later.
func (a *cpAgent) appliedAt(rev uint64) (time.Time, bool) {
	l, ok := a.first(func(l agentLine) bool { return l.Rev >= rev })
	return time.Unix(0, l.UnixNS), ok
}

// cpListeners are listener processes and what they received.
type cpListeners struct {
	procs   []*child
	mu      sync.Mutex
	ready   int
	retries int
	errs    []string
	byKey   map[string][]int64
}

func (e *cpEnv) startListeners(ctx context.Context, n int, mode, netID, watch string, pr *Progress) (*cpListeners, error) {
	ls := &cpListeners{byKey: map[string][]int64{}}
	for first := 0; first < n; first += e.o.ListenersPerProcess {
		count := min(e.o.ListenersPerProcess, n-first)
		args := []string{"bench", "listen", "--nats", e.srv.ClientURL(), "--count", strconv.Itoa(count), "--first", strconv.Itoa(first),
			"--mode", mode, "--network", netID, "--watch", watch}
		c, err := startChild(fmt.Sprintf("listeners %d-%d", first, first+count-1), e.o.Binary, args, func(line []byte) {
			var l listenLine
			if json.Unmarshal(line, &l) != nil {
				return
			}
			ls.mu.Lock()
			defer ls.mu.Unlock()
			switch {
			case l.Error != "":
				ls.errs = append(ls.errs, l.Error)
			case l.Ready > 0:
				ls.ready += l.Ready
				ls.retries += l.Retries
			case l.Key != "":
				ls.byKey[l.Key] = append(ls.byKey[l.Key], l.UnixNS...)
			}
		})
		if err != nil {
			ls.stop()
			return nil, err
		}
		ls.procs = append(ls.procs, c)
	}
	err := wait(ctx, 30*time.Minute, func() string { return fmt.Sprintf("%d %s listeners", n, mode) }, func() bool {
		ls.mu.Lock()
		defer ls.mu.Unlock()
		pr.Update("listeners (%s): %d of %d ready, %d set-ups retried", mode, ls.ready, n, ls.retries)
		return ls.ready == n
	}, ls.procs...)
	if err != nil {
		ls.stop()
		return nil, err
	}
	return ls, nil
}

// received is every listener's receive time of key so far.
func (ls *cpListeners) received(key string) []int64 {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return slices.Clone(ls.byKey[key])
}

func (ls *cpListeners) pids() []int {
	var out []int
	for _, c := range ls.procs {
		out = append(out, c.pid())
	}
	return out
}

func (ls *cpListeners) stop() {
	var wg sync.WaitGroup
	for _, c := range ls.procs {
		wg.Add(1)
		go func() { defer wg.Done(); c.stop() }()
	}
	wg.Wait()
}

func stopAgents(agents []*cpAgent) {
	var wg sync.WaitGroup
	for _, a := range agents {
		wg.Add(1)
		go func() { defer wg.Done(); a.c.stop() }()
	}
	wg.Wait()
}

func agentChildren(agents []*cpAgent) []*child {
	out := make([]*child, len(agents))
	for i, a := range agents {
		out[i] = a.c
	}
	return out
}

func agentPIDs(agents []*cpAgent) []int {
	out := make([]int, len(agents))
	for i, a := range agents {
		out[i] = a.c.pid()
	}
	return out
}

// Event sources: remote hosts whose ports come up during the events.
const cpSources = 10

func cpSourceHost(i int) string { return fmt.Sprintf("src%d", i%cpSources) }

func (e *cpEnv) registerSources(ctx context.Context) error {
	hosts := map[string]netip.Addr{}
	for i := range cpSources {
		hosts[cpSourceHost(i)] = netip.AddrFrom4([4]byte{10, 254, 0, byte(i + 1)})
	}
	return e.register(ctx, hosts)
}
