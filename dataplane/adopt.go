package dataplane

// Taking over a host from Neutron's linuxbridge agent without a lost
// packet: its brq bridges and vxlan-<VNI> devices are adopted as they are
// where vxdp can work with them, changed in place where the kernel allows
// it, and recreated only when they cannot carry the network (another VNI,
// port, local address or uplink). An adopted device carries its previous
// settings in its alias, so `vxdp agent --cleanup` hands it back as it was
// found instead of deleting it.

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// adoptedMark follows the owner in the alias of an adopted device:
// "vxdp:node3 adopted learning=on alias=…".
const adoptedMark = " adopted"

// maxAlias is the longest alias the kernel keeps (IFALIASZ - 1).
const maxAlias = 255

// adoption is what the alias of an adopted device records: the settings
// vxdp changed (restored on hand-back) and the alias it had.
type adoption struct {
	learning *bool
	ttl      *int
	ageing   *int
	alias    string // the previous alias, "" for none
}

// record is the alias of a device adopted by owner.
func (a adoption) record(owner string) string {
	s := owner + adoptedMark
	if a.learning != nil {
		s += " learning=" + onOff(*a.learning)
	}
	if a.ttl != nil {
		s += " ttl=" + strconv.Itoa(*a.ttl)
	}
	if a.ageing != nil {
		s += " ageing=" + strconv.Itoa(*a.ageing)
	}
	if a.alias != "" {
		s += " alias=" + a.alias // last: it may hold spaces
	}
	// The kernel keeps 255 bytes (IFALIASZ); a previous alias that does
	// not fit is cut rather than failing the takeover.
	return s[:min(len(s), maxAlias)]
}

// parseAdoption reads the alias of a device: whether owner adopted it, and
// what to restore.
func parseAdoption(alias, owner string) (adoption, bool) {
	rest, ok := strings.CutPrefix(alias, owner+adoptedMark)
	if !ok || (rest != "" && rest[0] != ' ') {
		return adoption{}, false
	}
	var a adoption
	for rest != "" {
		rest = strings.TrimPrefix(rest, " ")
		if prev, ok := strings.CutPrefix(rest, "alias="); ok {
			a.alias = prev
			break
		}
		field, tail, _ := strings.Cut(rest, " ")
		rest = tail
		key, value, _ := strings.Cut(field, "=")
		switch n, err := strconv.Atoi(value); key {
		case "learning":
			on := value == "on"
			a.learning = &on
		case "ttl":
			if err == nil {
				a.ttl = &n
			}
		case "ageing":
			if err == nil {
				a.ageing = &n
			}
		}
	}
	return a, true
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// linkOwnership is how a link relates to this agent instance.
type linkOwnership int

const (
	foreign linkOwnership = iota // someone else's: Neutron's agent, an operator
	created                      // made by vxdp
	adopted                      // someone else's, taken over by vxdp
)

func (k *kernel) ownership(l netlink.Link) linkOwnership {
	alias := l.Attrs().Alias
	if alias == k.owner {
		return created
	}
	if _, ok := parseAdoption(alias, k.owner); ok {
		return adopted
	}
	return foreign
}

// isOwned reports whether a link is this instance's, created or adopted.
func (k *kernel) isOwned(l netlink.Link) bool { return k.ownership(l) != foreign }

// claim marks a link vxdp just created as its own, and adopts one it found
// (recording what it changes, see adoptVXLAN). A link already claimed is
// left alone.
func (k *kernel) claim(l netlink.Link, made bool, a adoption, rec *recorder) error {
	name := l.Attrs().Name
	switch {
	case k.ownership(l) != foreign:
		return nil
	case made:
		if err := k.nl.LinkSetAlias(l, k.owner); err != nil {
			return fmt.Errorf("mark %s as owned: %w", name, err)
		}
		return nil
	}
	a.alias = l.Attrs().Alias
	if err := k.nl.LinkSetAlias(l, a.record(k.owner)); err != nil {
		return fmt.Errorf("adopt %s: %w", name, err)
	}
	l.Attrs().Alias = a.record(k.owner)
	rec.op("kernel/"+l.Type(), "adopt", name)
	return nil
}

// vxlanFit is how an existing vxlan device compares with what addVXLAN
// would make.
type vxlanFit struct {
	// unusable says why the device cannot carry the network ("" if it
	// can): it must then be recreated.
	unusable string
	// changes are the differences the kernel can change in place.
	changes []vxlanChange
	// kept are differences that cannot be changed in place but leave the
	// device working, e.g. udpcsum or proxy set by Neutron's agent.
	kept []string
}

// vxlanChange is one attribute of a vxlan device changed in place.
type vxlanChange struct {
	what     string // "learning off", for logs
	attr     *nl.RtAttr
	remember func(*adoption) // records the previous value
}

func (k *kernel) vxlanFit(l netlink.Link, vni uint32) vxlanFit {
	vx, ok := l.(*netlink.Vxlan)
	switch {
	case !ok:
		return vxlanFit{unusable: "it is a " + l.Type() + " device"}
	case vx.VxlanId != int(vni):
		return vxlanFit{unusable: fmt.Sprintf("VNI %d, want %d", vx.VxlanId, vni)}
	case vx.Port != k.vxlanPort:
		return vxlanFit{unusable: fmt.Sprintf("dstport %d, want %d", vx.Port, k.vxlanPort)}
	case !vx.SrcAddr.Equal(net.IP(k.localIP.AsSlice())):
		return vxlanFit{unusable: fmt.Sprintf("local %v, want %s", vx.SrcAddr, k.localIP)}
	case vx.VtepDevIndex != k.uplink.Attrs().Index:
		return vxlanFit{unusable: fmt.Sprintf("dev ifindex %d, want %s", vx.VtepDevIndex, k.uplink.Attrs().Name)}
	case vx.Group != nil && !vx.Group.IsUnspecified():
		return vxlanFit{unusable: fmt.Sprintf("group %s (multicast flooding; l2population replicates to each VTEP)", vx.Group)}
	case vx.FlowBased:
		return vxlanFit{unusable: "external (collect_metadata) mode"}
	}
	var f vxlanFit
	if vx.Learning {
		prev := vx.Learning
		f.changes = append(f.changes, vxlanChange{what: "learning off",
			attr: nl.NewRtAttr(nl.IFLA_VXLAN_LEARNING, []byte{0}), remember: func(a *adoption) { a.learning = &prev }})
	}
	if vx.TTL != int(k.ttl) {
		prev := vx.TTL
		f.changes = append(f.changes, vxlanChange{what: fmt.Sprintf("ttl %d", k.ttl),
			attr: nl.NewRtAttr(nl.IFLA_VXLAN_TTL, []byte{k.ttl}), remember: func(a *adoption) { a.ttl = &prev }})
	}
	if vx.Age != vxlanAgeing {
		prev := vx.Age
		f.changes = append(f.changes, vxlanChange{what: fmt.Sprintf("ageing %d", vxlanAgeing),
			attr: nl.NewRtAttr(nl.IFLA_VXLAN_AGEING, nl.Uint32Attr(vxlanAgeing)), remember: func(a *adoption) { a.ageing = &prev }})
	}
	if vx.Proxy != k.arpProxy {
		f.kept = append(f.kept, map[bool]string{true: "proxy", false: "noproxy"}[vx.Proxy])
	}
	if vx.UDPCSum {
		f.kept = append(f.kept, "udpcsum")
	}
	if vx.PortLow != 0 || vx.PortHigh != 0 {
		f.kept = append(f.kept, fmt.Sprintf("srcport %d %d", vx.PortLow, vx.PortHigh))
	}
	if vx.TOS != 0 {
		f.kept = append(f.kept, fmt.Sprintf("tos %d", vx.TOS))
	}
	for flag, on := range map[string]bool{"l2miss": vx.L2miss, "l3miss": vx.L3miss, "rsc": vx.RSC, "gbp": vx.GBP} {
		if on {
			f.kept = append(f.kept, flag)
		}
	}
	if vx.Limit != 0 {
		f.kept = append(f.kept, fmt.Sprintf("maxaddress %d", vx.Limit))
	}
	return f
}

// reuseVXLAN decides what to do with an existing vxlan-<VNI> device: keep
// it (true), changing in place what can be changed, or have it recreated
// (false). A device vxdp made is recreated when it differs in what cannot
// be changed in place (the configuration changed: it gets exactly the new
// one); a device someone else made is adopted whenever it can carry the
// network, so a takeover from Neutron's agent loses no packet.
func (k *kernel) reuseVXLAN(vx netlink.Link, vni uint32, rec *recorder) (bool, error) {
	name := vx.Attrs().Name
	fit := k.vxlanFit(vx, vni)
	own := k.ownership(vx)
	if fit.unusable != "" {
		k.log.Warn("recreating the vxlan device: it cannot carry the network", "dev", name, "because", fit.unusable)
		return false, nil
	}
	if own == created && len(fit.kept) > 0 {
		return false, nil
	}
	var a adoption
	var failed []string
	for _, c := range fit.changes {
		err := k.changeVXLAN(vx.Attrs().Index, vni, c.attr)
		if err == nil {
			c.remember(&a)
			rec.op("kernel/vxlan", "update", name+" "+c.what)
			continue
		}
		if !errors.Is(err, unix.EOPNOTSUPP) {
			return false, fmt.Errorf("change %s in place (%s): %w", name, c.what, err)
		}
		if own == created {
			return false, nil // older kernels: recreate our own device
		}
		failed = append(failed, c.what)
	}
	switch own {
	case foreign:
		if err := k.claim(vx, false, a, rec); err != nil {
			return false, err
		}
		if kept := append(fit.kept, failed...); len(kept) > 0 {
			k.log.Warn("adopted the vxlan device with settings vxdp would not choose; they stay until the device is recreated",
				"dev", name, "kept", strings.Join(kept, " "))
		}
	case adopted:
		if a != (adoption{}) {
			// Changed again (another ttl configured): keep the first
			// previous values, which are what the previous owner had.
			prev, _ := parseAdoption(vx.Attrs().Alias, k.owner)
			if prev.learning == nil {
				prev.learning = a.learning
			}
			if prev.ttl == nil {
				prev.ttl = a.ttl
			}
			if prev.ageing == nil {
				prev.ageing = a.ageing
			}
			if err := k.nl.LinkSetAlias(vx, prev.record(k.owner)); err != nil {
				return false, fmt.Errorf("record the adoption of %s: %w", name, err)
			}
		}
	}
	return true, nil
}

// changeVXLAN changes attributes of an existing vxlan device in place
// (RTM_NEWLINK without NLM_F_CREATE: the kernel's changelink).
func (k *kernel) changeVXLAN(ifindex int, vni uint32, attrs ...*nl.RtAttr) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(ifindex)
	req.AddData(msg)
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("vxlan"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	data.AddRtAttr(nl.IFLA_VXLAN_ID, nl.Uint32Attr(vni))
	for _, a := range attrs {
		data.AddChild(a)
	}
	req.AddData(info)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// handBackAdopted gives every device this instance adopted back to its
// previous owner: the settings vxdp changed are restored and its alias
// with them; the device, its bridge ports and its FDB stay, so the kernel
// keeps forwarding until that owner (Neutron's agent) runs again.
func (k *kernel) handBackAdopted() ([]string, error) {
	all, err := k.nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []string
	for _, l := range all {
		a, ok := parseAdoption(l.Attrs().Alias, k.owner)
		if !ok {
			continue
		}
		name := l.Attrs().Name
		if vx, isVXLAN := l.(*netlink.Vxlan); isVXLAN {
			var restore []*nl.RtAttr
			if a.learning != nil && vx.Learning != *a.learning {
				restore = append(restore, nl.NewRtAttr(nl.IFLA_VXLAN_LEARNING, boolByte(*a.learning)))
			}
			if a.ttl != nil && vx.TTL != *a.ttl {
				restore = append(restore, nl.NewRtAttr(nl.IFLA_VXLAN_TTL, []byte{uint8(*a.ttl)}))
			}
			if a.ageing != nil && vx.Age != *a.ageing {
				restore = append(restore, nl.NewRtAttr(nl.IFLA_VXLAN_AGEING, nl.Uint32Attr(uint32(*a.ageing))))
			}
			if len(restore) > 0 {
				if err := k.changeVXLAN(l.Attrs().Index, uint32(vx.VxlanId), restore...); err != nil {
					return out, fmt.Errorf("restore the settings of %s: %w", name, err)
				}
			}
		}
		if err := k.nl.LinkSetAlias(l, a.alias); err != nil {
			return out, fmt.Errorf("hand back %s: %w", name, err)
		}
		out = append(out, name)
	}
	return out, nil
}
