package maps

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
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
	policyRemoteBaseBits  = 64 // POLICY_REMOTE_BASE_BITS
	policyL4AnyBits       = 48 // POLICY_L4_ANY_BITS
	policyL4ProtoBits     = 56 // POLICY_L4_PROTO_BITS
	policyL4PortBaseBits  = 64 // POLICY_L4_PORT_BASE_BITS
	ctStateCut            = 2
	monotonicNsPerSecond  = int64(time.Second)
	ctColumnsExpiresLabel = "expires_in_s"
)

var ctColumns = []string{"tap", "proto", "local", "remote", "opener", "state", "generation", ctColumnsExpiresLabel}

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

func ctRows(m *ebpf.Map, n DevName) ([]Row, error) {
	entries, err := Entries[CTKey, CTEntry](m)
	if err != nil {
		return nil, err
	}
	now := MonotonicNow()
	out := make([]Row, 0, len(entries))
	for k, e := range entries {
		state := "open"
		if e.State == ctStateCut {
			state = "cut"
		}
		left := (int64(e.Expires) - int64(now)) / monotonicNsPerSecond
		out = append(out, Row{Key: CTKeyString(k), Values: []any{dev(n, k.Ifindex), k.Proto,
			netip.AddrPortFrom(familyAddr(k.Family, k.Local), be16(k.LocalPort)).String(),
			netip.AddrPortFrom(familyAddr(k.Family, k.Remote), be16(k.RemotePort)).String(),
			DirName(e.Opener), state, e.Generation, left}})
	}
	return out, nil
}
