package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/maps"
	"github.com/vxdp/vxdp/state"
)

// Options configure a Dataplane. The agent validates them before Open.
type Options struct {
	Instance  string     // names the pin directory and owned-object marks
	BPFFS     string     // bpffs mount point, default /sys/fs/bpf
	StateDir  string     // where applied.json is written
	LocalIP   netip.Addr // the VTEP address; its interface is the uplink
	VXLANPort uint16     // UDP destination port, 8472 like the seed
	// Kernel leaves forwarding to the kernel bridge and vxlan device
	// (--dataplane=kernel): the programs still filter (port security, the
	// VTEP check of what the kernel decapsulates, nothing to the host),
	// but redirect, encapsulate and decapsulate nothing, and no XDP
	// program is attached.
	Kernel bool
	// ARPResponder makes the kernel vxlan device answer ARP for remote
	// ports itself (Neutron's arp_responder). Off by default: ARP for an
	// address l2pop does not know (an allowed address pair, a port not yet
	// pushed) is then flooded to the VTEPs instead of dropped. The BPF port
	// program answers known addresses either way.
	ARPResponder bool
	// SecurityGroups enforces the security groups of ports with port
	// security (Neutron's [securitygroup] enable_security_group).
	SecurityGroups bool
	// PhysicalInterfaceMappings maps physical networks to interfaces
	// (Neutron's [linux_bridge] physical_interface_mappings), for VLAN and
	// flat networks; MappingsSource says where they were set (file:line),
	// for errors.
	PhysicalInterfaceMappings map[string]string
	MappingsSource            string
	// DHCP answers DHCPv4 at the port for ports whose subnet has DHCP on
	// ([dataplane] dhcp); otherwise DHCP goes to the network.
	DHCP bool
	// MapSizes sizes the tracked-flow tables when the maps are created
	// (maps.Resizable; default: the sizes in bpf/include/maps.h).
	MapSizes maps.Sizes
	TTL      uint8  // outer TTL; 0: the kernel's ip_default_ttl, like the vxlan device
	XDPMode  string // auto, native or generic
	TCMode   string // auto, tcx or clsact
	Log      *slog.Logger
}

// PinDir is where this instance's maps and links are pinned.
func (o Options) PinDir() string { return filepath.Join(o.BPFFS, "vxdp", o.Instance) }

func (o Options) mapDir() string  { return filepath.Join(o.PinDir(), "maps") }
func (o Options) linkDir() string { return filepath.Join(o.PinDir(), "links") }

// Owner is the link alias that marks kernel objects of this instance.
func (o Options) Owner() string { return "vxdp:" + o.Instance }

// Dataplane is vxdp installed on this host (in the current network
// namespace). It implements state.Reconciler.
type Dataplane struct {
	opts   Options
	log    *slog.Logger
	nl     *netlink.Handle
	kernel *kernel
	set    *maps.Set
	progs  *Programs
	att    *attacher

	mu        sync.Mutex
	installed map[string]int // tap name -> ifindex with the port program
	desired   map[string]bool
	// nexthopVia are the VTEPs' next hops on the uplink, with the address
	// the maps use (zero: none), and nexthopVTEPs the VTEPs behind each:
	// a neighbour change updates their entries (nexthopUpdate).
	nexthopVia   map[netip.Addr]state.MAC
	nexthopVTEPs map[netip.Addr][]netip.Addr
	// attachments are the programs the last successful apply attached
	// (CheckAttached).
	attachments []Attachment
	// uncompiled counts the ports whose groups the last apply could not
	// compile (the vxdp_sg_uncompiled_ports metric).
	uncompiled int
}

var _ state.Reconciler = (*Dataplane)(nil)

// Open prepares the dataplane: finds the uplink, mounts bpffs if needed,
// adopts pinned maps (or creates and pins them), loads the programs and
// makes the kernel attach tunnel metadata to what it decapsulates (the
// vxlan program needs it). Nothing is attached until the first Apply.
func Open(opts Options) (*Dataplane, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	nl, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	d := &Dataplane{opts: opts, log: opts.Log, nl: nl, installed: map[string]int{}}
	uplink, err := findUplink(nl, opts.LocalIP)
	if err != nil {
		nl.Close()
		return nil, err
	}
	d.kernel = &kernel{nl: nl, owner: opts.Owner(), uplink: uplink, localIP: opts.LocalIP, vxlanPort: int(opts.VXLANPort), arpProxy: opts.ARPResponder, ttl: opts.TTL, log: opts.Log}
	if err := ensureTunnelMetadata(); err != nil {
		nl.Close()
		return nil, err
	}
	if err := d.openBPF(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func (d *Dataplane) openBPF() error {
	if err := ensureBPFFS(d.opts.BPFFS); err != nil {
		return err
	}
	set, err := maps.OpenPinned(d.opts.mapDir())
	switch {
	case errors.Is(err, maps.ErrNotPinned):
		if set, err = maps.Create(d.opts.MapSizes); err != nil {
			return err
		}
		if err := seedIPID(set); err != nil {
			set.Close()
			return err
		}
		if err := set.Map(maps.Meta).Update(uint32(0), maps.MetaValue{Layout: layoutVersion}, ebpf.UpdateAny); err != nil {
			set.Close()
			return fmt.Errorf("write meta: %w", err)
		}
		if err := set.Pin(d.opts.mapDir()); err != nil {
			set.Close()
			return err
		}
		d.log.Info("created and pinned maps", "dir", d.opts.mapDir())
	case err != nil:
		return err
	default:
		var m maps.MetaValue
		if err := set.Map(maps.Meta).Lookup(uint32(0), &m); err != nil || m.Layout != layoutVersion {
			set.Close()
			return fmt.Errorf("pinned maps in %s have layout %d, this vxdp uses %d: run `vxdp agent --cleanup` and restart",
				d.opts.mapDir(), m.Layout, layoutVersion)
		}
		d.log.Info("adopted pinned maps", "dir", d.opts.mapDir())
	}
	d.set = set
	if d.progs, err = LoadPrograms(set); err != nil {
		return err
	}
	d.att = &attacher{linkDir: d.opts.linkDir(), nl: d.nl, progs: d.progs,
		xdpMode: d.opts.XDPMode, tcMode: d.opts.TCMode, refreshed: map[string]bool{}, log: d.log}
	return nil
}

// layoutVersion is VXDP_LAYOUT of bpf/include/abi.h.
const layoutVersion = 9

// seedIPID starts each CPU's outer IPv4 ID counter at a different offset
// so CPUs do not reuse each other's IDs towards the same VTEP.
func seedIPID(set *maps.Set) error {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return err
	}
	ids := make([]uint32, n)
	for i := range ids {
		ids[i] = uint32(i * (1 << 16) / n)
	}
	if err := set.Map(maps.IPID).Update(uint32(0), ids, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("seed ip_id: %w", err)
	}
	return nil
}

// Maps returns the BPF maps.
func (d *Dataplane) Maps() *maps.Set { return d.set }

// Close releases file descriptors. Everything installed stays: pinned
// programs keep forwarding until the next agent adopts them.
func (d *Dataplane) Close() {
	if d.progs != nil {
		d.progs.Close()
	}
	if d.set != nil {
		d.set.Close()
	}
	d.nl.Close()
}

// AppliedRevision is the revision of the last state applied to the pinned
// maps.
func (d *Dataplane) AppliedRevision() uint64 {
	var m maps.MetaValue
	if err := d.set.Map(maps.Meta).Lookup(uint32(0), &m); err == nil {
		return m.Revision
	}
	return 0
}

// Apply makes the host match want. See state.Reconciler.
func (d *Dataplane) Apply(ctx context.Context, want *state.Desired) (state.Result, error) {
	rec := &recorder{prov: map[string]string{}}
	want = d.servable(want, rec)
	err := d.apply(ctx, want, rec)
	res := state.Result{Ops: rec.ops, Unchanged: rec.unchanged, Pending: rec.pending}
	if werr := d.writeApplied(want, res, rec, err); werr != nil && err == nil {
		err = werr
	}
	return res, err
}

func (d *Dataplane) apply(ctx context.Context, want *state.Desired, rec *recorder) error {
	if err := want.Validate(); err != nil {
		return fmt.Errorf("invalid desired state: %w", err)
	}
	// The largest tenant MTU the underlay carries once VXLAN is added.
	maxMTU := d.kernel.uplink.Attrs().MTU - overhead(d.opts.LocalIP)
	nets := map[string]*kernelNet{}
	keep := map[string]bool{}
	for _, n := range want.Networks {
		if err := ctx.Err(); err != nil {
			return err
		}
		kn := &kernelNet{id: n.ID, kind: n.Kind(), vni: n.VNI, seg: n.VNI, mtu: n.MTU}
		if n.Provider() {
			if err := d.providerNet(n, kn); err != nil {
				return err
			}
		} else if kn.mtu == 0 || kn.mtu > maxMTU {
			if kn.mtu > maxMTU {
				d.log.Warn("network MTU too large for the underlay; using the largest that fits",
					"network", n.ID, "mtu", kn.mtu, "uplink_mtu", maxMTU+overhead(d.opts.LocalIP), "using", maxMTU)
			}
			kn.mtu = maxMTU
		}
		if err := d.kernel.ensureNetwork(kn, rec); err != nil {
			return fmt.Errorf("network %s: %w", n.ID, err)
		}
		nets[n.ID] = kn
		keep[kn.bridge.Attrs().Name] = true
		keep[kn.dev.Attrs().Name] = true
		if kn.peer != nil {
			keep[kn.peer.Attrs().Name] = true
		}
	}

	var present []localPort
	desired := map[string]bool{}
	for _, p := range want.LocalPorts {
		tapName := p.TapName()
		desired[tapName] = true
		tap, err := d.kernel.linkByName(tapName)
		if err != nil {
			return fmt.Errorf("port %s: look up %s: %w", p.ID, tapName, err)
		}
		if tap == nil {
			rec.pending = append(rec.pending, portName(p))
			continue
		}
		present = append(present, localPort{LocalPort: p, tap: tap, net: nets[p.NetworkID]})
	}

	// Port security first: a tap joins its bridge only once its program
	// and map entries are in place, so no frame of it is bridged unchecked,
	// and its frames reach the kernel only once it is on the bridge.
	if err := d.syncBPF(want, nets, present, rec); err != nil {
		return err
	}
	for _, p := range present {
		if err := d.kernel.enslave(p.tap, p.net.bridge, p.net.mtu, rec); err != nil {
			return fmt.Errorf("port %s: %w", p.ID, err)
		}
	}
	if err := d.markBridged(present, rec); err != nil {
		return err
	}
	// A tap left on one of our bridges without a port (unbound, deleted,
	// moved to another network) would be bridged without port security;
	// its program now drops everything it sends (see disabledTaps).
	if _, err := d.kernel.releaseSlaves(nets, present, rec); err != nil {
		return err
	}

	for _, n := range want.Networks {
		if n.Provider() {
			continue // no l2pop on provider networks: the bridge learns, ARP floods
		}
		fdb, neigh := kernelL2pop(want, n.ID, d.opts.LocalIP, rec)
		kn := nets[n.ID]
		if err := d.kernel.syncFDB(kn.vxlan, fdb, rec); err != nil {
			return err
		}
		if err := d.kernel.syncProxyARP(kn.vxlan, neigh, rec); err != nil {
			return err
		}
	}
	if err := d.kernel.removeStale(keep, rec); err != nil {
		return err
	}
	meta := maps.MetaValue{Revision: want.Revision, AppliedAtNs: uint64(time.Now().UnixNano()), Layout: layoutVersion}
	if err := d.set.Map(maps.Meta).Update(uint32(0), meta, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("record applied revision: %w", err)
	}
	installed := map[string]int{}
	for _, p := range present {
		installed[p.TapName()] = p.ifindex()
	}
	d.mu.Lock()
	d.installed, d.desired = installed, desired
	d.mu.Unlock()
	return nil
}

// localPort is a desired local port whose tap exists.
type localPort struct {
	state.LocalPort
	tap netlink.Link
	net *kernelNet
}

func (p localPort) ifindex() int { return p.tap.Attrs().Index }

func portName(p state.LocalPort) string {
	if p.ID != "" {
		return p.ID
	}
	return p.TapName()
}

// kernelL2pop computes the l2pop view of one network for the kernel: FDB
// entries of its vxlan device and the proxy-ARP neighbours.
func kernelL2pop(want *state.Desired, netID string, local netip.Addr, rec *recorder) (map[fdbDst]state.Source, map[netip.Addr]state.MAC) {
	fdb := map[fdbDst]state.Source{}
	neigh := map[netip.Addr]state.MAC{}
	for _, v := range want.FloodList(netID) {
		if v.IP.Is4() != local.Is4() {
			continue // the other IP version: the device cannot reach it (buildBPF logs it)
		}
		e := fdbDst{dst: v.IP}
		fdb[e] = v.Source
		rec.source("kernel/fdb", e.mac.String()+" dst "+e.dst.String(), v.Source)
	}
	for _, p := range want.RemotePorts {
		if p.NetworkID != netID || p.VTEP.Is4() != local.Is4() {
			continue
		}
		e := fdbDst{mac: p.MAC, dst: p.VTEP}
		fdb[e] = p.Source
		rec.source("kernel/fdb", p.MAC.String()+" dst "+p.VTEP.String(), p.Source)
		for _, ip := range p.IPs {
			if ip.Is4() {
				neigh[ip] = p.MAC
				rec.source("kernel/neigh", ip.String(), p.Source)
			}
		}
	}
	return fdb, neigh
}

// recorder collects what an Apply changed and where each entry came from.
type recorder struct {
	ops       []state.Op
	unchanged int
	pending   []string
	// unservable are the networks this host cannot carry (a provider
	// network without a mapped interface): left out, their ports pending.
	unservable []UnservableNetwork
	prov       map[string]string // "object/key" -> source
	policies   map[string]AppliedPolicy
}

func (r *recorder) op(object, action, key string) {
	r.ops = append(r.ops, state.Op{Object: object, Action: action, Key: key})
}

func (r *recorder) source(object, key string, src state.Source) {
	r.prov[object+"/"+key] = src.String()
}

// Applied is what the agent records after every apply in
// <state-dir>/applied.json: for operators, tests and `vxdp dump`.
type Applied struct {
	Instance  string    `json:"instance"`
	Dataplane string    `json:"dataplane"`
	Revision  uint64    `json:"revision"`
	AppliedAt time.Time `json:"applied_at"`
	Error     string    `json:"error,omitempty"`
	Ops       int       `json:"ops"`
	Unchanged int       `json:"unchanged"`
	Pending   []string  `json:"pending"`
	// Unservable networks were left out of the apply: the rest of the
	// host's state is applied regardless.
	Unservable []UnservableNetwork `json:"unservable,omitempty"`
	Provenance map[string]string   `json:"provenance"`
	// Policies are the compiled security groups by policy id (what
	// `vxdp dump policy` shows for a port).
	Policies map[string]AppliedPolicy `json:"policies,omitempty"`
	// What the apply installed, for `vxdp status` to find what changed
	// since: the programs and where they run, and per network the l2pop
	// entries the maps and the kernel hold.
	Attachments []Attachment     `json:"attachments"`
	Networks    []AppliedNetwork `json:"networks"`
}

// AppliedNetwork is one network as applied: its devices, its flood list,
// its local ports whose tap exists and its remote ports.
type AppliedNetwork struct {
	ID   string `json:"id"`
	Type string `json:"network_type"`
	// VNI is the network's key in the BPF maps: its VNI, or a provider
	// network's segment (maps.ProviderSegment).
	VNI    uint32 `json:"vni"`
	Bridge string `json:"bridge"`
	// VXLAN is the network's device on the bridge: vxlan-<VNI>, the VLAN
	// device or the flat interface.
	VXLAN string `json:"vxlan"`
	// Physical is a provider network's physical interface.
	Physical string          `json:"physical,omitempty"`
	VLAN     uint16          `json:"vlan,omitempty"`
	VTEPs    []netip.Addr    `json:"vteps"`
	Local    []AppliedPort   `json:"local_ports"`
	Remote   []AppliedRemote `json:"remote_ports"`

	// PhysicalNetwork is a provider network's physical network (e.g.
	// "default"): `vxdp monitor` names its segment so.
	PhysicalNetwork string `json:"physical_network,omitempty"`
}

// provider reports whether the network is a provider network (an older
// record has no type: VXLAN).
func (n AppliedNetwork) provider() bool {
	return n.Type == state.NetworkVLAN || n.Type == state.NetworkFlat
}

// AppliedPort is a local port as applied.
type AppliedPort struct {
	Tap string    `json:"tap"`
	MAC state.MAC `json:"mac"`
}

// AppliedRemote is a remote port as applied.
type AppliedRemote struct {
	MAC  state.MAC    `json:"mac"`
	VTEP netip.Addr   `json:"vtep"`
	IPs  []netip.Addr `json:"ips"`
}

// appliedNetworks is the record of want's networks; ports in pending have
// no tap. The flood list is FloodList's: the network's VTEPs, then those
// of its remote ports.
func (d *Dataplane) appliedNetworks(want *state.Desired, pending []string) []AppliedNetwork {
	out := make([]AppliedNetwork, len(want.Networks))
	byID := make(map[string]*AppliedNetwork, len(want.Networks))
	flood := map[string]map[netip.Addr]bool{}
	addVTEP := func(an *AppliedNetwork, ip netip.Addr) {
		if !flood[an.ID][ip] {
			flood[an.ID][ip] = true
			an.VTEPs = append(an.VTEPs, ip)
		}
	}
	for i, n := range want.Networks {
		out[i] = AppliedNetwork{ID: n.ID, Type: n.Kind(), VNI: n.VNI, Bridge: state.BridgeName(n.ID), VXLAN: state.VXLANName(n.VNI),
			VTEPs: []netip.Addr{}, Local: []AppliedPort{}, Remote: []AppliedRemote{}}
		if n.Provider() {
			phys := d.opts.PhysicalInterfaceMappings[n.PhysicalNetwork]
			out[i].VNI, _ = d.segment(n)
			out[i].Physical, out[i].VLAN, out[i].VXLAN = phys, n.VLAN, phys
			out[i].PhysicalNetwork = n.PhysicalNetwork
			if n.Kind() == state.NetworkVLAN {
				out[i].VXLAN = vlanDevName(phys, n.VLAN)
			}
		}
		byID[n.ID], flood[n.ID] = &out[i], map[netip.Addr]bool{}
		for _, v := range n.VTEPs {
			addVTEP(&out[i], v.IP)
		}
	}
	isPending := make(map[string]bool, len(pending))
	for _, p := range pending {
		isPending[p] = true
	}
	for _, p := range want.LocalPorts {
		if an := byID[p.NetworkID]; an != nil && !isPending[portName(p)] {
			an.Local = append(an.Local, AppliedPort{Tap: p.TapName(), MAC: p.MAC})
		}
	}
	for _, p := range want.RemotePorts {
		if an := byID[p.NetworkID]; an != nil {
			an.Remote = append(an.Remote, AppliedRemote{MAC: p.MAC, VTEP: p.VTEP, IPs: p.IPs})
			if p.VTEP.IsValid() {
				addVTEP(an, p.VTEP)
			}
		}
	}
	return out
}

// attachmentsFor lists the programs an apply of nets attaches: the uplink's
// (when BPF forwards), each network's bridge and vxlan device, and each
// local port's tap (both directions).
func (d *Dataplane) attachmentsFor(nets []AppliedNetwork) []Attachment {
	var out []Attachment
	xdp, seg := map[string]bool{}, map[string]bool{}
	if !d.opts.Kernel {
		out = append(out, Attachment{Kind: xdpKind, Device: d.kernel.uplink.Attrs().Name})
		xdp[d.kernel.uplink.Attrs().Name] = true
	}
	for _, n := range nets {
		out = append(out, Attachment{Kind: bridgeHook.kind, Device: n.Bridge})
		if !n.provider() {
			out = append(out, Attachment{Kind: vxlanHook.kind, Device: n.VXLAN})
		} else {
			if !d.opts.Kernel && !xdp[n.Physical] {
				out = append(out, Attachment{Kind: xdpKind, Device: n.Physical})
				xdp[n.Physical] = true
			}
			if !seg[n.Physical] {
				out = append(out, Attachment{Kind: segmentHook.kind, Device: n.Physical})
				seg[n.Physical] = true
			}
		}
		for _, p := range n.Local {
			out = append(out, Attachment{Kind: portHook.kind, Device: p.Tap}, Attachment{Kind: deliverHook.kind, Device: p.Tap})
		}
	}
	return out
}

// AppliedPolicy is one distinct set of security groups as compiled.
type AppliedPolicy struct {
	Groups    []string      `json:"groups"`
	Stateless bool          `json:"stateless,omitempty"`
	Rules     []AppliedRule `json:"rules"`
	Error     string        `json:"error,omitempty"` // why it allows nothing
	// Ports are the local ports in these groups (ids, or taps).
	Ports []string `json:"ports,omitempty"`
}

// AppliedRule is one rule of a policy, with the record behind it.
type AppliedRule struct {
	Group     string `json:"group"`
	ID        string `json:"id"`
	Direction string `json:"direction"`
	EtherType string `json:"ethertype"`
	Match     string `json:"match"`  // protocol and ports or ICMP type/code
	Remote    string `json:"remote"` // prefixes, or "any"
	Source    string `json:"source"`
}

func (d *Dataplane) writeApplied(want *state.Desired, res state.Result, rec *recorder, applyErr error) error {
	a := Applied{Instance: d.opts.Instance, Dataplane: "bpf", Revision: want.Revision, AppliedAt: time.Now().UTC(),
		Ops: len(res.Ops), Unchanged: res.Unchanged, Pending: res.Pending, Unservable: rec.unservable, Provenance: rec.prov, Policies: rec.policies}
	if d.opts.Kernel {
		a.Dataplane = "kernel"
	}
	a.Networks = d.appliedNetworks(want, res.Pending)
	a.Attachments = d.attachmentsFor(a.Networks)
	if applyErr == nil {
		d.mu.Lock()
		d.attachments = a.Attachments
		d.mu.Unlock()
	}
	if a.Pending == nil {
		a.Pending = []string{}
	}
	if applyErr != nil {
		a.Error = applyErr.Error()
	}
	return writeJSON(filepath.Join(d.opts.StateDir, appliedFile), a)
}

// ensureBPFFS mounts a bpf filesystem at dir unless one is there.
func ensureBPFFS(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("bpffs %s: %w", dir, err)
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs at %s: %w", dir, err)
	}
	return nil
}
