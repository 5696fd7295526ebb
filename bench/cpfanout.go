package bench

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/vxdp/vxdp/control"
)

// cpFanOut measures events reaching n receivers: o.Agents agent processes
// hosting one network and n-o.Agents bare listeners, in each mode.
func cpFanOut(ctx context.Context, o ControlPlaneOptions, n int, pr *Progress) ([]FanOutFigure, error) {
	agentsN := min(o.Agents, n)
	pr.Step("fan-out to %d: starting vxdp server and %d agents", n, agentsN)
	env, err := cpStart(ctx, o)
	if err != nil {
		return nil, err
	}
	defer env.stop()
	netw, err := env.ctl.CreateNetwork(ctx, control.NetworkSpec{Name: "fanout", VNI: 4242})
	if err != nil {
		return nil, err
	}
	if err := env.registerSources(ctx); err != nil {
		return nil, err
	}
	var agents []*cpAgent
	defer func() { stopAgents(agents) }()
	// Agents start in waves, as hypervisors do, not all in one millisecond.
	const wave = 10
	for i := range agentsN {
		host := fmt.Sprintf("a%04d", i)
		if _, err := env.ctl.CreatePort(ctx, control.PortSpec{Network: netw.ID, MAC: cpMAC(0, i), Host: host}); err != nil {
			return nil, err
		}
		a, err := env.startAgent(host, cpVTEP(i), "")
		if err != nil {
			return nil, err
		}
		agents = append(agents, a)
		if (i+1)%wave == 0 || i == agentsN-1 {
			err := wait(ctx, 5*time.Minute, func() string { return "agents starting" }, func() bool {
				started := 0
				for _, a := range agents {
					if _, ok := a.first(func(l agentLine) bool { return l.Local > 0 }); ok {
						started++
					}
				}
				pr.Update("fan-out to %d: %d of %d agents started", n, started, agentsN)
				return started == len(agents)
			}, agentChildren(agents)...)
			if err != nil {
				return nil, err
			}
		}
	}
	err = wait(ctx, 5*time.Minute, func() string { return "agents converging" }, func() bool {
		done := 0
		for _, a := range agents {
			if a.last().Remote >= agentsN-1 {
				done++
			}
		}
		pr.Update("fan-out to %d: %d of %d agents see every other", n, done, agentsN)
		return done == agentsN
	}, agentChildren(agents)...)
	if err != nil {
		return nil, err
	}
	var figs []FanOutFigure
	portIndex := 0
	for _, mode := range o.Modes {
		fig, err := cpFanOutMode(ctx, env, agents, netw.ID, n, mode, &portIndex, pr)
		if err != nil {
			return figs, fmt.Errorf("%s listeners: %w", mode, err)
		}
		figs = append(figs, fig)
	}
	return figs, nil
}

func cpFanOutMode(ctx context.Context, env *cpEnv, agents []*cpAgent, netID string, n int, mode string, portIndex *int, pr *Progress) (FanOutFigure, error) {
	o := env.o
	fig := FanOutFigure{Receivers: n, Agents: len(agents), Listeners: n - len(agents), Mode: mode, Events: o.Events}
	if mode == ListenRePublish {
		if err := env.rePublish(ctx, true); err != nil {
			return fig, err
		}
		defer env.rePublish(context.Background(), false)
	}
	pr.Step("fan-out to %d: starting %d %s listeners", n, fig.Listeners, mode)
	setup := time.Now()
	watch := "nets." + netID + ".status."
	ls := &cpListeners{byKey: map[string][]int64{}}
	if fig.Listeners > 0 {
		var err error
		if ls, err = env.startListeners(ctx, fig.Listeners, mode, netID, watch, pr); err != nil {
			return fig, err
		}
		defer ls.stop()
	}
	fig.SetupSeconds, fig.SetupRetries = time.Since(setup).Seconds(), ls.retries
	time.Sleep(time.Second) // let the set-up's work settle before measuring
	all := append(agentChildren(agents), ls.procs...)
	pids := append([]int{env.serverPID()}, agentPIDs(agents)...)
	pids = append(pids, ls.pids()...)
	meter := startCPU(pids...)
	var agentMs, floorMs []float64
	for ev := range o.Events {
		pr.Update("fan-out to %d (%s listeners): event %d of %d", n, mode, ev+1, o.Events)
		i := 1_000_000 + *portIndex
		*portIndex++
		key, rev, t0, err := env.portUp(ctx, netID, cpSourceHost(i), i)
		if err != nil {
			return fig, err
		}
		// Every agent applies it; every listener receives it (or 30s pass).
		err = wait(ctx, 30*time.Second, func() string { return "event " + key }, func() bool {
			for _, a := range agents {
				if _, ok := a.appliedAt(rev); !ok {
					return false
				}
			}
			return len(ls.received(key)) >= fig.Listeners
		}, all...)
		if err != nil && !strings.Contains(err.Error(), "not done after") {
			return fig, err
		}
		for _, a := range agents {
			if at, ok := a.appliedAt(rev); ok {
				agentMs = append(agentMs, ms(at.Sub(t0)))
			}
		}
		got := ls.received(key)
		fig.Missed += fig.Listeners - len(got)
		for _, ns := range got {
			floorMs = append(floorMs, ms(time.Unix(0, ns).Sub(t0)))
		}
		time.Sleep(20 * time.Millisecond)
	}
	use := meter.stop()
	fig.Agent, fig.Floor = latencyOf(agentMs), latencyOf(floorMs)
	fig.AgentOverFloorP99Ms = fig.Agent.P99 - fig.Floor.P99
	var agentCPU, listenerCPU time.Duration
	for i := range agents {
		agentCPU += use.PerPID[1+i]
	}
	for _, c := range use.PerPID[1+len(agents):] {
		listenerCPU += c
	}
	fig.AgentCPUPerEventMs = ms(agentCPU) / float64(len(agents)*o.Events)
	fig.ServerCPUPerDeliveryUs = 1000 * ms(use.PerPID[0]) / float64(n*o.Events)
	if fig.Listeners > 0 {
		fig.ListenerCPUPerDeliveryUs = 1000 * ms(listenerCPU) / float64(fig.Listeners*o.Events)
	}
	fig.MachineBusy, fig.Load1 = use.MachineBusy, use.Load1
	for _, a := range agents {
		peak, _, _ := procMemory(a.c.pid())
		fig.AgentPeakRSSMiB = max(fig.AgentPeakRSSMiB, peak)
	}
	fig.ServerPeakRSSMiB, _, _ = procMemory(env.serverPID())
	pr.Logf("fan-out to %d (%s): agent p99 %.1f ms, floor p99 %.1f ms, agent CPU %.3f ms/event, server %.2f µs/delivery",
		n, mode, fig.Agent.P99, fig.Floor.P99, fig.AgentCPUPerEventMs, fig.ServerCPUPerDeliveryUs)
	return fig, nil
}

// rePublish turns the stream's republishing of every change onto core
// NATS (RePublishPrefix + key) on or off.
func (e *cpEnv) rePublish(ctx context.Context, on bool) error {
	s, err := e.js.Stream(ctx, control.StreamName(control.DefaultBucket))
	if err != nil {
		return err
	}
	cfg := s.CachedInfo().Config
	cfg.RePublish = nil
	if on {
		cfg.RePublish = &jetstream.RePublish{Source: control.KeyPrefix(control.DefaultBucket) + ">", Destination: RePublishPrefix + ">"}
	}
	_, err = e.js.UpdateStream(ctx, cfg)
	return err
}
