package maps

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"

	"github.com/vxdp/vxdp/bpf"
	"golang.org/x/sys/unix"
)

// Security-group and conntrack views: keys, masks and flows as text.

// DirName names a rule direction (enum sg_dir).
func DirName(d uint8) string {
	if d == SGEgress {
		return "egress"
	}
	return "ingress"
}

var sgEventNames = []string{"established", "new", "related", "always", "stateless", "denied", "rechecked", "cut", "ct_full"}

// SGEventName names an enum sg_event.
func SGEventName(ev int) string {
	if ev < len(sgEventNames) {
		return sgEventNames[ev]
	}
	return "event" + strconv.Itoa(ev)
}

func familyAddr(family uint8, b [16]byte) netip.Addr {
	if family == 4 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}

func policyPrefix(k PolicyRemoteKey) netip.Prefix {
	return netip.PrefixFrom(familyAddr(k.Family, k.Addr), int(k.Prefixlen)-policyRemoteBaseBits)
}

// PolicyRemoteKeyString is the canonical key of a policy_remote entry.
func PolicyRemoteKeyString(k PolicyRemoteKey) string {
	return fmt.Sprintf("%d/%s/%s", k.Policy, DirName(k.Dir), policyPrefix(k))
}

// L4Match describes what a policy_l4 entry matches: "any", a protocol,
// or a protocol with a port range (for ICMP a type, or type/code).
func L4Match(k PolicyL4Key) string {
	bits := int(k.Prefixlen)
	switch {
	case bits <= policyL4AnyBits:
		return "any"
	case bits <= policyL4ProtoBits:
		return "proto " + strconv.Itoa(int(k.Proto))
	}
	port := uint16(k.Port>>8) | uint16(k.Port&0xff)<<8 // network order in memory
	plen := bits - policyL4PortBaseBits
	if (k.Family == 4 && k.Proto == 1) || (k.Family == 6 && k.Proto == 58) {
		if plen <= 8 {
			return fmt.Sprintf("proto %d type %d", k.Proto, port>>8)
		}
		return fmt.Sprintf("proto %d type %d code %d", k.Proto, port>>8, port&0xff)
	}
	hi := port | uint16(1<<(16-plen)-1)
	if plen == 16 {
		hi = port
	}
	return fmt.Sprintf("proto %d ports %d-%d", k.Proto, port, hi)
}

// PolicyL4KeyString is the canonical key of a policy_l4 entry.
func PolicyL4KeyString(k PolicyL4Key) string {
	return fmt.Sprintf("%d/%s/IPv%d/%s", k.Policy, DirName(k.Dir), k.Family, strings.ReplaceAll(L4Match(k), " ", "-"))
}

// MaskString lists the classes of a mask ("0,3,17").
func MaskString(m SGMask) string {
	var out []string
	for w, v := range m.W {
		for b := 0; b < 64; b++ {
			if v&(1<<b) != 0 {
				out = append(out, strconv.Itoa(w*64+b))
			}
		}
	}
	return strings.Join(out, ",")
}

const (
	policyRemoteBaseBits = 64 // POLICY_REMOTE_BASE_BITS
	policyL4AnyBits      = 48 // POLICY_L4_ANY_BITS
	policyL4ProtoBits    = 56 // POLICY_L4_PROTO_BITS
	policyL4PortBaseBits = 64 // POLICY_L4_PORT_BASE_BITS
	monotonicNsPerSecond = int64(time.Second)
)

var ctColumns = []string{"tap", "proto", "local", "remote", "opener", "state", "conn_state", "generation", "expires_in_s", "idle_s"}

func be16(v uint16) uint16 { return v>>8 | v<<8 }

// MonotonicNow is bpf_ktime_get_coarse_ns()'s clock, for CT deadlines.
func MonotonicNow() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return uint64(ts.Nano())
}

// CTKeyString is the canonical key of a tracked flow.
func CTKeyString(k CTKey) string {
	return fmt.Sprintf("%d/%d/%s/%s", k.Ifindex, k.Proto,
		netip.AddrPortFrom(familyAddr(k.Family, k.Local), be16(k.LocalPort)),
		netip.AddrPortFrom(familyAddr(k.Family, k.Remote), be16(k.RemotePort)))
}

// The bits of ct_entry.seen (enum ct_tcp_seen).
const (
	ctReplied = uint8(bpf.PortCtTcpSeenCT_REPLIED)
	ctFinOut  = uint8(bpf.PortCtTcpSeenCT_FIN_OUT)
	ctFinIn   = uint8(bpf.PortCtTcpSeenCT_FIN_IN)
	ctRST     = uint8(bpf.PortCtTcpSeenCT_RST)
)

// CTTimeout is ct_timeout() of bpf/include/sg.h: how long a flow lives
// after a packet, by protocol and what was seen of it. A flow's deadline
// is its last packet's time plus this (rewritten when it moves by more
// than a second), which is how `dump ct` tells how long a flow is idle.
func CTTimeout(proto, seen uint8) time.Duration {
	switch proto {
	case unix.IPPROTO_TCP:
		switch {
		case seen&ctRST != 0 || seen&(ctFinOut|ctFinIn) == ctFinOut|ctFinIn:
			return 10 * time.Second
		case seen&ctReplied != 0:
			return 21600 * time.Second
		}
		return 60 * time.Second
	case unix.IPPROTO_UDP:
		if seen&ctReplied != 0 {
			return 120 * time.Second
		}
		return 30 * time.Second
	case unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6:
		return 30 * time.Second
	}
	return 600 * time.Second
}

// CTConnState names what a flow's packets showed, from the VM's side (the
// table's local end): for TCP syn_sent (only the opener has sent),
// established (the other side answered), fin_wait (the VM sent a FIN),
// close_wait (the VM received one), closed (FINs both ways), reset (a
// RST); for other protocols unreplied or replied.
func CTConnState(proto, seen uint8) string {
	if proto != unix.IPPROTO_TCP {
		if seen&ctReplied != 0 {
			return "replied"
		}
		return "unreplied"
	}
	switch {
	case seen&ctRST != 0:
		return "reset"
	case seen&(ctFinOut|ctFinIn) == ctFinOut|ctFinIn:
		return "closed"
	case seen&ctFinOut != 0:
		return "fin_wait"
	case seen&ctFinIn != 0:
		return "close_wait"
	case seen&ctReplied != 0:
		return "established"
	}
	return "syn_sent"
}

func ctRows(m *ebpf.Map, n DevName) ([]Row, error) {
	entries, err := Entries[CTKey, CTEntry](m)
	if err != nil {
		return nil, err
	}
	now := MonotonicNow()
	out := make([]Row, 0, len(entries))
	for k, e := range entries {
		state := "open"
		if e.State == CTCut {
			state = "cut"
		}
		left := int64(e.Expires) - int64(now)
		idle := int64(CTTimeout(k.Proto, e.Seen)) - left
		out = append(out, Row{Key: CTKeyString(k), Values: []any{dev(n, k.Ifindex), k.Proto,
			netip.AddrPortFrom(familyAddr(k.Family, k.Local), be16(k.LocalPort)).String(),
			netip.AddrPortFrom(familyAddr(k.Family, k.Remote), be16(k.RemotePort)).String(),
			DirName(e.Opener), state, CTConnState(k.Proto, e.Seen), e.Generation,
			left / monotonicNsPerSecond, idle / monotonicNsPerSecond}})
	}
	return out, nil
}
