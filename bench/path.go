package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/lab"
	"github.com/vxdp/vxdp/state"
)

// Suites of `vxdp bench path`.
const (
	// SuitePath: vm2 -> vm1 across the lab in every mode: TCP, 64-byte
	// UDP, TCP request/response, CPU per packet and per GB.
	SuitePath = "path"
	// SuiteGuest: the same with vm1 a real guest (qemu, virtio-net),
	// kernel against bpf: TCP both ways and bytes per packet into it.
	SuiteGuest = "path-guest"
	// SuiteSG: vm1's port in a group of N rules, Neutron's iptables
	// firewall against vxdp's BPF groups: established and new flows.
	SuiteSG = "path-sg"
)

// Modes: how vm2's packets reach vm1.
const (
	ModePlain  = "plain"  // the VMs on one wire: no node, no overlay
	ModeFlat   = "flat"   // node bridges joined by the wire: no overlay
	ModeKernel = "kernel" // Neutron's linuxbridge path, no vxdp at all
	ModeBPF    = "bpf"    // vxdp's agents with the BPF dataplane
	// ModeKernelFiltered: vxdp's agents with --dataplane kernel: the
	// kernel forwards, vxdp's programs still filter.
	ModeKernelFiltered = "kernel-filtered"
)

// PathOptions size a path suite; zero values take the defaults.
type PathOptions struct {
	Suite  string // SuitePath (default), SuiteGuest or SuiteSG
	Binary string // the vxdp executable the bpf labs' agents run
	BPFFS  string // default /sys/fs/bpf
	Commit string // of Binary, for the report
	// Metrics are ids of the suite's metrics to run (default: all).
	Metrics []string
	// Modes in the order measured (default: plain, flat, kernel, bpf;
	// kernel, bpf for the guest and security-group suites).
	Modes []string
	// Runs of every metric per mode (default 5), alternating modes.
	Runs int
	// Window is how long each measurement counts (default 5 s; TCP
	// rounds it up to whole seconds, after Omit seconds of slow start).
	Window time.Duration
	Omit   int // TCP seconds left out at the start (default 1)
	// SGRules are the group sizes of SuiteSG (default 1, 100, 1000).
	SGRules []int
	// NoiseLimit flags a measurement whose other processes and steal
	// took more than this share of the machine (default 0.03); a noisy
	// measurement is taken again up to Retries times, the quietest try
	// counting.
	NoiseLimit float64
	Retries    int
	// Quick is a tiny load that proves the suite runs end to end.
	Quick bool
	// BPFStats has the kernel count each BPF program's runs and run time
	// (a profile of the bpf mode; the counting costs time per run).
	BPFStats bool
	Progress *Progress
}

func (o PathOptions) withDefaults() (PathOptions, error) {
	if o.Suite == "" {
		o.Suite = SuitePath
	}
	if !slices.Contains([]string{SuitePath, SuiteGuest, SuiteSG}, o.Suite) {
		return o, fmt.Errorf("bench path: suite %q: want %s, %s or %s", o.Suite, SuitePath, SuiteGuest, SuiteSG)
	}
	if len(o.Modes) == 0 {
		o.Modes = []string{ModePlain, ModeFlat, ModeKernel, ModeBPF}
		if o.Suite != SuitePath {
			o.Modes = []string{ModeKernel, ModeBPF}
		}
	}
	for _, m := range o.Modes {
		def, ok := pathModes[m]
		if !ok {
			return o, fmt.Errorf("bench path: mode %q: want %s", m, strings.Join(modeNames(), ", "))
		}
		if o.Suite != SuitePath && !def.overlay {
			return o, fmt.Errorf("bench path: mode %s has no guest or security groups: the %s suite compares %s, %s and %s", m, o.Suite, ModeKernel, ModeBPF, ModeKernelFiltered)
		}
	}
	for _, id := range o.Metrics {
		if !slices.ContainsFunc(suiteMetrics(o.Suite), func(m pathMetric) bool { return m.id == id }) {
			var ids []string
			for _, m := range suiteMetrics(o.Suite) {
				ids = append(ids, m.id)
			}
			return o, fmt.Errorf("bench path: metric %q is not one of the %s suite's: %s", id, o.Suite, strings.Join(ids, ", "))
		}
	}
	if o.Runs == 0 {
		o.Runs = map[bool]int{true: 2, false: 5}[o.Quick]
	}
	if o.Window == 0 {
		o.Window = map[bool]time.Duration{true: 300 * time.Millisecond, false: 5 * time.Second}[o.Quick]
	}
	if o.Omit == 0 && !o.Quick {
		o.Omit = 1
	}
	if len(o.SGRules) == 0 {
		o.SGRules = []int{1, 100, 1000}
		if o.Quick {
			o.SGRules = []int{1, 100}
		}
	}
	if o.NoiseLimit == 0 {
		o.NoiseLimit = 0.03
	}
	if o.Runs < 1 || o.Window < 100*time.Millisecond || o.Omit < 0 || o.Retries < 0 {
		return o, fmt.Errorf("bench path: runs %d, window %s, omit %d: want at least 1 run, a window of 100ms, omit >= 0", o.Runs, o.Window, o.Omit)
	}
	for _, n := range o.SGRules {
		if n < 1 || n > 10000 {
			return o, fmt.Errorf("bench path: --sg %d: want 1 to 10000 rules", n)
		}
	}
	if o.BPFFS == "" {
		o.BPFFS = "/sys/fs/bpf"
	}
	return o, nil
}

// pathMode is how a mode's lab is built and what its report says of it.
type pathMode struct {
	what    string
	overlay bool // VXLAN between the nodes (kernel, bpf): guests and groups
	bpf     bool // vxdp's programs forward: BPF redirects must count
	lab     func(c *lab.Config, suite string)
	// groups and groupsSG say which security groups the mode enforces, in
	// the path and guest suites and in the security-group suite.
	groups, groupsSG string
}

// agentsWith runs vxdp's agents with dataplane dp on every node.
func agentsWith(dp string) func(*lab.Config, string) {
	return func(c *lab.Config, _ string) {
		c.Dataplane = map[string]string{}
		for _, n := range lab.Nodes {
			c.Dataplane[n] = dp
		}
	}
}

// groupsIn is what a mode enforces in suite.
func (m pathMode) groupsIn(suite string) string {
	if suite == SuiteSG {
		return m.groupsSG
	}
	return m.groups
}

const vm1InGroup = "; vm1's port in a group of N rules, the others in the default group"

var pathModes = map[string]pathMode{
	ModePlain: {
		what:   "vm2's and vm1's NICs on the underlay bridge itself: the same wire, no node namespace, no overlay",
		lab:    func(c *lab.Config, _ string) { c.Mode = lab.ModePlain },
		groups: "none",
	},
	ModeFlat: {
		what:   "a flat network through the same node namespaces and hops: each node's bridge holds its taps and its NIC, no encapsulation",
		lab:    func(c *lab.Config, _ string) { c.Mode = lab.ModeFlat },
		groups: "none",
	},
	ModeKernel: {
		what: "Neutron's linuxbridge + l2population path, made with iproute2 as its agent does (brq bridge, vxlan-100 " +
			"dstport 8472 nolearning noudpcsum, l2pop FDB); no vxdp agent and no BPF program anywhere",
		overlay: true,
		lab: func(c *lab.Config, suite string) {
			c.Mode = lab.ModeNeutron
			if suite == SuiteSG {
				c.Firewall = lab.FirewallIptables
			}
		},
		groups: "none: Neutron with firewall_driver = noop (no iptables, br_netfilter off)",
		groupsSG: "Neutron's iptables+ipset firewall driver (per-port chains, physdev, conntrack zone, ipset) and ebtables " +
			"arp_protect" + vm1InGroup,
	},
	ModeBPF: {
		what:     "vxdp's agents, BPF dataplane on every node (port program encapsulates, uplink XDP decapsulates, TCP through the kernel's GRO and the vxlan program)",
		overlay:  true,
		bpf:      true,
		lab:      agentsWith(lab.DataplaneBPF),
		groups:   "on (vxdp's default): port security and the default group on every port, BPF conntrack",
		groupsSG: "vxdp's groups in BPF, port security on" + vm1InGroup,
	},
	ModeKernelFiltered: {
		what:     "vxdp's agents with --dataplane kernel: Neutron's objects forward, vxdp's programs still filter",
		overlay:  true,
		lab:      agentsWith(lab.DataplaneKernel),
		groups:   "on: port security and the default group in BPF",
		groupsSG: "vxdp's groups in BPF on the kernel's path" + vm1InGroup,
	},
}

func modeNames() []string {
	var out []string
	for m := range pathModes {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// pathSetup is one mode's lab, up for the whole suite.
type pathSetup struct {
	mode string
	def  pathMode
	lab  *lab.Lab
}

// vmNS is where a VM's side of a measurement runs.
func (s *pathSetup) vmNS(p lab.Port) string { return s.lab.PortNS(p) }

// RunPath runs a path suite: one lab per mode, all up at once, every
// metric measured Runs times per mode with the modes alternating (the
// order reversed every other round, so a drift of the machine weighs on
// every mode alike). Needs root; traffic stays in the labs' namespaces.
func RunPath(ctx context.Context, o PathOptions) (*PathReport, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("bench path: needs root (network namespaces, BPF)")
	}
	if err := lab.InstallPackages(map[string]string{"iperf3": "iperf3"}, progressWriter{o.Progress}, "bench"); err != nil {
		return nil, err
	}
	r := &pathRun{o: o, rep: newPathReport(o)}
	idle, err := checkIdle(map[bool]time.Duration{true: 500 * time.Millisecond, false: 3 * time.Second}[o.Quick], o.NoiseLimit)
	if err != nil {
		return nil, err
	}
	r.rep.Machine.IdleCheck = &idle
	if o.BPFStats {
		stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
		if err != nil {
			return nil, fmt.Errorf("bench path: --bpf-stats: %w", err)
		}
		defer stats.Close()
	}
	metrics := suiteMetrics(o.Suite)
	if len(o.Metrics) > 0 {
		metrics = slices.DeleteFunc(metrics, func(m pathMetric) bool { return !slices.Contains(o.Metrics, m.id) })
	}
	groups := []int{0}
	if o.Suite == SuiteSG {
		groups = o.SGRules
	}
	o.Progress.Start(len(o.Modes) + len(groups)*o.Runs*len(o.Modes)*len(metrics))
	defer o.Progress.Done()
	defer r.close()
	for _, m := range o.Modes {
		o.Progress.Step("%s: building its lab", m)
		if err := r.setUp(ctx, m); err != nil {
			return nil, err
		}
	}
	for _, n := range groups {
		group := ""
		if n > 0 {
			group = fmt.Sprintf("N=%d", n)
			if err := r.setGroups(ctx, n); err != nil {
				return nil, err
			}
		}
		for run := 1; run <= o.Runs; run++ {
			order := slices.Clone(r.setups)
			if run%2 == 0 {
				slices.Reverse(order)
			}
			for _, s := range order {
				if err := r.focus(s); err != nil {
					return nil, err
				}
				for _, m := range metrics {
					if err := ctx.Err(); err != nil {
						return nil, err
					}
					where := fmt.Sprintf("%s run %d/%d%s: %s", s.mode, run, o.Runs, map[bool]string{true: " " + group}[group != ""], m.label)
					o.Progress.Step("%s", where)
					smp, err := r.measureQuiet(ctx, s, m, where)
					if err != nil {
						return nil, fmt.Errorf("%s: %w", where, err)
					}
					smp.Group, smp.Run = group, run
					r.rep.Samples = append(r.rep.Samples, smp)
				}
			}
		}
	}
	r.rep.summarize(metrics, groups)
	return r.rep, nil
}

// measureQuiet measures, and measures again (up to Retries times) while
// others took more than the noise limit of the machine: of the tries the
// quietest counts. Each try waits (up to a minute, not with Quick) for a
// quiet second first.
func (r *pathRun) measureQuiet(ctx context.Context, s *pathSetup, m pathMetric, where string) (Sample, error) {
	var best Sample
	for try := 0; try <= r.o.Retries; try++ {
		// On a shared machine: start when others are quiet, if they
		// become so within a minute.
		if !r.o.Quick {
			if err := waitQuiet(ctx, r.o.NoiseLimit, time.Minute, r.o.Progress); err != nil {
				return best, err
			}
		}
		smp, err := r.measure(ctx, s, m)
		if err != nil {
			return smp, err
		}
		smp.Tries = try + 1
		if try == 0 || smp.CPU.OtherShare < best.CPU.OtherShare {
			best = smp
		}
		if !smp.CPU.Noisy {
			break
		}
		r.o.Progress.Logf("noisy: %s: other processes and steal took %.1f %% of the machine (try %d of %d)", where,
			100*smp.CPU.OtherShare, try+1, r.o.Retries+1)
	}
	best.Tries = min(best.Tries, r.o.Retries+1)
	return best, nil
}

// pathRun is a suite in progress.
type pathRun struct {
	o      PathOptions
	rep    *PathReport
	setups []*pathSetup
	dirs   []string
}

func (r *pathRun) setUp(ctx context.Context, mode string) error {
	def := pathModes[mode]
	dir, err := os.MkdirTemp("", "vxdp-bench-"+mode+"-")
	if err != nil {
		return err
	}
	r.dirs = append(r.dirs, dir)
	cfg := lab.Config{
		Prefix: fmt.Sprintf("vxb%d%c-", os.Getpid(), "pfkbx"[slices.Index([]string{ModePlain, ModeFlat, ModeKernel, ModeBPF, ModeKernelFiltered}, mode)]),
		Dir:    filepath.Join(dir, "lab"), Binary: r.o.Binary, BPFFS: r.o.BPFFS, Control: lab.ControlFile,
	}
	if r.o.Suite == SuiteGuest {
		cfg.Guest = lab.VM1.Name
	}
	def.lab(&cfg, r.o.Suite)
	upCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	l, err := lab.Up(upCtx, cfg, progressWriter{r.o.Progress})
	if err != nil {
		return fmt.Errorf("%s lab: %w", mode, err)
	}
	s := &pathSetup{mode: mode, def: def, lab: l}
	r.setups = append(r.setups, s)
	if err := l.LikeHardware(); err != nil {
		return fmt.Errorf("%s lab: %w", mode, err)
	}
	if err := checkPrograms(s); err != nil {
		return err
	}
	if r.o.Suite != SuiteGuest {
		if _, err := l.StartServer("iperf3", s.vmNS(lab.VM1), "iperf3", "-s"); err != nil {
			return err
		}
	}
	// Many short connections (crr): reuse the sender's ports in TIME_WAIT.
	if err := lab.Do(s.vmNS(lab.VM2), func() error {
		for k, v := range map[string]string{"net/ipv4/tcp_tw_reuse": "1", "net/ipv4/ip_local_port_range": "1024 65535"} {
			if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	return r.warm(s, 20)
}

// checkPrograms holds each mode to what it claims: no BPF program on any
// device of a node without vxdp's agents, the uplink program on node4's
// NIC with them.
func checkPrograms(s *pathSetup) error {
	agents := s.lab.Mode == ""
	for _, node := range lab.Nodes {
		links, err := lab.Links(s.lab.NS(node))
		if err != nil {
			return err
		}
		for _, dev := range links {
			progs, err := lab.BPFAttachments(s.lab.NS(node), dev)
			if err != nil {
				return err
			}
			if len(progs) > 0 && !agents {
				return fmt.Errorf("%s lab: %s on %s has BPF programs %v: the mode must run without any", s.mode, dev, node, progs)
			}
			if agents && node == lab.VM1.Node && dev == lab.VTEPDev && len(progs) == 0 {
				return fmt.Errorf("%s lab: no program on %s's %s", s.mode, node, dev)
			}
		}
	}
	return nil
}

// warm pings vm2 -> vm1 until it answers: ARP and bridge FDBs learned.
func (r *pathRun) warm(s *pathSetup, pings int) error {
	res, err := lab.Ping(s.vmNS(lab.VM2), lab.VM1.IP, pings, 10*time.Millisecond, time.Second)
	if err != nil {
		return err
	}
	if res.Received == 0 {
		return fmt.Errorf("%s lab: vm2 -> vm1 ping: no reply of %d", s.mode, res.Sent)
	}
	return nil
}

// setGroups puts vm1's port in a group of n rules in every lab.
func (r *pathRun) setGroups(ctx context.Context, n int) error {
	g := SGGroup(fmt.Sprintf("7b3e9c2a-1d4f-4a8b-9e6c-%012d", n), n, state.Ingress, netip.PrefixFrom(lab.VM2.IP, 32))
	for _, s := range r.setups {
		r.o.Progress.Logf("%s: vm1's port in a group of %d rules", s.mode, n)
		applyCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err := s.lab.SetPortGroups(applyCtx, map[string][]state.SecurityGroup{lab.VM1.Name: {g}})
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %d rules: %w", s.mode, n, err)
		}
		if err := r.warm(s, 5); err != nil {
			return err
		}
	}
	return nil
}

// focus readies s for measuring: other labs' guests paused (an idle
// emulated guest still costs CPU), its own running, the path warm.
func (r *pathRun) focus(s *pathSetup) error {
	for _, o := range r.setups {
		if err := o.lab.PauseGuest(o != s); err != nil {
			return err
		}
	}
	return r.warm(s, 3)
}

func (r *pathRun) close() {
	for _, s := range r.setups {
		_ = s.lab.PauseGuest(false)
		if err := s.lab.Close(); err != nil {
			r.o.Progress.Logf("%s lab teardown: %v", s.mode, err)
		}
	}
	for _, d := range r.dirs {
		os.RemoveAll(d)
	}
}

// progressWriter turns lab output into progress log lines.
type progressWriter struct{ p *Progress }

func (w progressWriter) Write(b []byte) (int, error) {
	if s := strings.TrimRight(string(b), "\n"); s != "" {
		w.p.Logf("%s", s)
	}
	return len(b), nil
}

var _ io.Writer = progressWriter{}
