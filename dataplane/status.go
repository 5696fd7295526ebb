package dataplane

// What `vxdp status` and the agent's /readyz report: where every program
// runs (hook, attach mode, program id, pin), how full the maps are, and
// drift — entries where the BPF maps, the kernel's FDB and neighbours and
// the desired state the agent last applied (applied.json) disagree.

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/vxdp/vxdp/maps"
)

// Attachment is a program the agent attaches: the kind of its link pin
// (tc, deliver, vxlan, bridge, xdp; see attach.go) and the device.
type Attachment struct {
	Kind   string `json:"kind"`
	Device string `json:"device"`
}

// ProgramStatus is where one program runs, as found on the host.
type ProgramStatus struct {
	Attachment
	Program  string // port, deliver, vxlan, bridge, uplink
	Hook     string // "tc ingress", "tc egress", "xdp"
	Ifindex  int    // 0: no such device
	Mode     string // tcx, clsact, native, generic, offload; "" when not attached
	ProgID   uint32
	ProgName string // as bpftool prog show names it, e.g. vxdp_port
	Pin      string // the link pin, "" without one (clsact)
	// State is "attached", or what is wrong: "missing", "detached",
	// "pinned to another device", "no such device".
	State string
	// Expected: the last apply attached it. Others are the programs of
	// disabled taps (ports no longer bound here) and pins of devices gone.
	Expected bool
}

// Attached reports whether the program runs where it should.
func (p ProgramStatus) Attached() bool { return p.State == stateAttached }

const stateAttached = "attached"

// programOf names the program and hook of an attachment kind.
func programOf(kind string) (program, hook string, egress bool) {
	if kind == xdpKind {
		return "uplink", "xdp", false
	}
	h, _ := hookOf(kind)
	hook = "tc ingress"
	if h.egress {
		hook = "tc egress"
	}
	return strings.TrimPrefix(h.filter, "vxdp_"), hook, h.egress
}

// inspect finds how the program of kind runs on dev: through its pinned
// link (TCX or XDP), or a clsact filter (the pre-TCX fallback).
func inspect(nlh *netlink.Handle, linkDir string, a Attachment) ProgramStatus {
	p := ProgramStatus{Attachment: a}
	p.Program, p.Hook, _ = programOf(a.Kind)
	dev, err := nlh.LinkByName(a.Device)
	if err != nil {
		p.State = "no such device"
		return p
	}
	p.Ifindex = dev.Attrs().Index
	path := (&attacher{linkDir: linkDir}).pinPath(a.Kind, a.Device)
	l, err := link.LoadPinnedLink(path, nil)
	switch {
	case err == nil:
		defer l.Close()
		p.Pin = path
		p.State = linkState(l, dev, &p)
		return p
	case !errors.Is(err, os.ErrNotExist):
		p.Pin, p.State = path, "unreadable pin: "+err.Error()
		return p
	}
	if h, ok := hookOf(a.Kind); ok {
		fs, _ := (&attacher{nl: nlh}).clsactFilters(p.Ifindex, h.filter)
		for _, f := range fs {
			if (f.Parent == netlinkEgress) == h.egress {
				p.Mode, p.ProgID, p.State = ModeClsact, uint32(f.Id), stateAttached
				return p
			}
		}
	}
	p.State = "missing"
	return p
}

// linkState reads a pinned link: the device it is attached to and the
// program it runs.
func linkState(l link.Link, dev netlink.Link, p *ProgramStatus) string {
	info, err := l.Info()
	if err != nil {
		return "unreadable link: " + err.Error()
	}
	p.ProgID = uint32(info.Program)
	target := -1
	switch {
	case info.TCX() != nil:
		target, p.Mode = int(info.TCX().Ifindex), ModeTCX
	case info.XDP() != nil:
		target = int(info.XDP().Ifindex)
		if x := dev.Attrs().Xdp; x != nil {
			p.Mode = map[uint32]string{1: ModeNative, 2: ModeGeneric, 3: "offload"}[x.AttachMode]
		}
	}
	switch target {
	case p.Ifindex:
		return stateAttached
	case 0:
		p.Mode = ""
		return "detached"
	}
	p.Mode = ""
	return "pinned to another device"
}

// netlinkEgress is the parent of clsact egress filters.
const netlinkEgress = netlink.HANDLE_MIN_EGRESS

func programName(id uint32) string {
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		return ""
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		return ""
	}
	return info.Name
}

// inspectExpected inspects the attachments the last apply made.
func inspectExpected(nlh *netlink.Handle, linkDir string, expected []Attachment) []ProgramStatus {
	out := make([]ProgramStatus, 0, len(expected))
	for _, a := range expected {
		p := inspect(nlh, linkDir, a)
		p.Expected = true
		out = append(out, p)
	}
	return out
}

// programs inspects the attachments the last apply made, then the other
// pins of this instance (disabled taps, devices gone), and names the
// programs they run.
func programs(nlh *netlink.Handle, linkDir string, expected []Attachment) []ProgramStatus {
	out := inspectExpected(nlh, linkDir, expected)
	seen := map[Attachment]bool{}
	for _, a := range expected {
		seen[a] = true
	}
	entries, _ := os.ReadDir(linkDir)
	for _, e := range entries {
		kind, dev, ok := cutKind(e.Name())
		if a := (Attachment{Kind: kind, Device: dev}); ok && !seen[a] {
			out = append(out, inspect(nlh, linkDir, a))
		}
	}
	for i := range out {
		if out[i].ProgID != 0 {
			out[i].ProgName = programName(out[i].ProgID)
		}
	}
	return out
}

// missingPrograms describes the expected programs that do not run.
func missingPrograms(ps []ProgramStatus) []string {
	var out []string
	for _, p := range ps {
		if p.Expected && !p.Attached() {
			out = append(out, fmt.Sprintf("%s program on %s (%s): %s", p.Program, p.Device, p.Hook, p.State))
		}
	}
	return out
}

// CheckAttached reports the programs the last apply attached that no
// longer run where they should (nil when all do, or before any apply).
// The agent's /readyz asks it; `vxdp status` reports the same.
func (d *Dataplane) CheckAttached() error {
	d.mu.Lock()
	expected := d.attachments
	d.mu.Unlock()
	if len(expected) == 0 {
		return nil
	}
	nlh, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer nlh.Close()
	if missing := missingPrograms(inspectExpected(nlh, d.opts.linkDir(), expected)); len(missing) > 0 {
		return errors.New(strings.Join(missing, "; "))
	}
	return nil
}

// policyProblems names every port whose security groups the apply could
// not compile: its policy is empty, so it passes only what is always
// allowed (DHCP, ND, ...), which the agent's log alone would hide.
func policyProblems(a *Applied) []string {
	var out []string
	for _, p := range a.Policies {
		if p.Error == "" {
			continue
		}
		for _, port := range p.Ports {
			out = append(out, fmt.Sprintf("port %s: security groups %s not compiled: %s; it passes only always-allowed traffic",
				port, strings.Join(p.Groups, ", "), p.Error))
		}
	}
	slices.Sort(out)
	return out
}

// MapFill is how full one map is.
type MapFill struct {
	Name     string
	Type     string // bpftool's name: hash, lru_hash, lpm_trie, array, …
	Entries  int    // -1 for arrays: every slot always exists
	Capacity int
}

// Percent is the fill in percent (-1 for arrays).
func (m MapFill) Percent() float64 {
	if m.Entries < 0 || m.Capacity == 0 {
		return -1
	}
	return float64(m.Entries) * 100 / float64(m.Capacity)
}

// mapFullPercent is where a map counts as nearly full (the alert's 90 %).
const mapFullPercent = 90

var mapTypeNames = map[ebpf.MapType]string{ebpf.Hash: "hash", ebpf.LRUHash: "lru_hash", ebpf.LPMTrie: "lpm_trie",
	ebpf.Array: "array", ebpf.PerCPUArray: "percpu_array", ebpf.PerCPUHash: "percpu_hash", ebpf.DevMapHash: "devmap_hash",
	ebpf.DevMap: "devmap", ebpf.RingBuf: "ringbuf", ebpf.LRUCPUHash: "lru_percpu_hash"}

// countable are the map types whose entries come and go (in arrays every
// slot always exists).
var countable = map[ebpf.MapType]bool{ebpf.Hash: true, ebpf.LRUHash: true, ebpf.LPMTrie: true, ebpf.PerCPUHash: true,
	ebpf.LRUCPUHash: true, ebpf.DevMapHash: true}

// mapFill counts the entries of every map.
func mapFill(set *maps.Set) ([]MapFill, error) {
	var out []MapFill
	for _, desc := range maps.Descs() {
		m := set.Map(desc.Name)
		f := MapFill{Name: desc.Name, Type: cmp.Or(mapTypeNames[m.Type()], strings.ToLower(m.Type().String())),
			Capacity: int(m.MaxEntries()), Entries: -1}
		if countable[m.Type()] {
			n, err := countKeys(m)
			if err != nil {
				return nil, fmt.Errorf("count entries of %s: %w", desc.Name, err)
			}
			f.Entries = n
		}
		out = append(out, f)
	}
	return out, nil
}

// countKeys walks the keys of a hash-like map. A map changing meanwhile
// may restart the walk; it is bounded by twice the capacity.
func countKeys(m *ebpf.Map) (int, error) {
	n := 0
	var key any
	for range 2*m.MaxEntries() + 1 {
		next, err := m.NextKeyBytes(key)
		if err != nil {
			return 0, err
		}
		if next == nil {
			return n, nil
		}
		n++
		key = next
	}
	return n, nil
}

// Status is everything `vxdp status` reports about this host's dataplane.
type Status struct {
	Instance  string
	Dataplane string // bpf or kernel, as last applied ("" if unknown)
	PinDir    string
	// From the meta map: what the pinned maps hold.
	AppliedRevision uint64
	AppliedAt       time.Time
	// From applied.json: the last apply.
	ApplyError string
	Pending    []string
	Programs   []ProgramStatus
	Maps       []MapFill
	Drift      []Drift
	// Problems make the host not forward as applied: exit non-zero.
	Problems []string
	// Warnings are worth knowing but do not (yet) change forwarding.
	Warnings []string
}

// ReadStatus inspects what the agent instance of opts installed in this
// network namespace. It changes nothing.
func ReadStatus(opts Options) (*Status, error) {
	st := &Status{Instance: opts.Instance, PinDir: opts.PinDir()}
	nlh, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	defer nlh.Close()
	applied, err := ReadApplied(opts.StateDir)
	recorded := err == nil
	switch {
	case errors.Is(err, os.ErrNotExist):
		st.Problems = append(st.Problems, fmt.Sprintf("nothing applied yet: no %s in %s (is the agent running, with this --state-dir?)",
			appliedFile, opts.StateDir))
		applied = &Applied{}
	case err != nil:
		return nil, err
	}
	st.Dataplane, st.ApplyError, st.Pending = applied.Dataplane, applied.Error, applied.Pending
	if applied.Error != "" {
		st.Problems = append(st.Problems, "the last apply failed: "+applied.Error)
	}
	unserved := map[string]bool{}
	for _, u := range applied.Unservable {
		what := "network " + u.Network + " is not served on this host: " + u.Reason
		if len(u.Ports) > 0 {
			what += "; its ports stay DOWN: " + strings.Join(u.Ports, ", ")
		}
		st.Problems = append(st.Problems, what)
		for _, p := range u.Ports {
			unserved[p] = true
		}
	}
	st.Problems = append(st.Problems, policyProblems(applied)...)
	for _, p := range st.Pending {
		if !unserved[p] {
			st.Warnings = append(st.Warnings, "port "+p+" is pending: its tap does not exist yet")
		}
	}
	st.Programs = programs(nlh, opts.linkDir(), applied.Attachments)
	st.Problems = append(st.Problems, missingPrograms(st.Programs)...)
	served := make(map[string]bool, len(applied.Attachments))
	for _, a := range applied.Attachments {
		served[a.Device] = true
	}
	if recorded {
		st.Warnings = append(st.Warnings, rpFilterWarnings(nlh, "/proc/sys/net/ipv4/conf", served)...)
	}

	set, err := maps.OpenPinned(opts.mapDir())
	if errors.Is(err, maps.ErrNotPinned) {
		st.Problems = append(st.Problems, fmt.Sprintf("no pinned maps in %s: this instance installed nothing here (--instance, --bpffs, --netns?)",
			opts.mapDir()))
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	defer set.Close()
	var meta maps.MetaValue
	if err := set.Map(maps.Meta).Lookup(uint32(0), &meta); err != nil {
		return nil, fmt.Errorf("read meta map: %w", err)
	}
	st.AppliedRevision = meta.Revision
	if meta.AppliedAtNs != 0 {
		st.AppliedAt = time.Unix(0, int64(meta.AppliedAtNs)).UTC()
	}
	if st.Maps, err = mapFill(set); err != nil {
		return nil, err
	}
	for _, m := range st.Maps {
		if m.Percent() >= mapFullPercent {
			st.Warnings = append(st.Warnings, fmt.Sprintf("map %s is %.0f %% full (%d of %d entries)", m.Name, m.Percent(), m.Entries, m.Capacity))
		}
	}
	if !recorded {
		return st, nil // nothing to compare with
	}
	if st.Drift, err = findDrift(nlh, set, applied); err != nil {
		return nil, err
	}
	if n := len(st.Drift); n > 0 {
		what := fmt.Sprintf("%d entries drifted", n)
		if n == 1 {
			what = "1 entry drifted"
		}
		st.Problems = append(st.Problems, fmt.Sprintf("%s from the applied state, e.g. %s", what, st.Drift[0]))
	}
	return st, nil
}
