package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// disableIPv6 turns IPv6 off on a bridge or vxlan device of a tenant
// network, as Neutron's agent does: with it on, the device gets a
// link-local address and accepts router advertisements, so one RA from a
// VM would give the hypervisor an address and a default route into the
// tenant network. The bridge program drops what reaches the host anyway;
// this keeps the host from ever configuring itself from a tenant. Kernels
// without IPv6 have nothing to turn off.
func disableIPv6(dev string) error {
	path := filepath.Join("/proc/sys/net/ipv6/conf", dev, "disable_ipv6")
	cur, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if len(cur) > 0 && cur[0] == '1' {
		return nil
	}
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("disable IPv6 on %s: %w", dev, err)
	}
	return nil
}

// The policy-routing rule that makes the kernel attach tunnel metadata to
// what its vxlan devices decapsulate. The vxlan program reads the outer
// source from that metadata to check it is a registered VTEP. A vxlan
// device that is not "external" only collects metadata while some part of
// the kernel asks for it (ip_tunnel_need_metadata(), a global switch);
// adding a fib rule that matches a tunnel id is the one way to ask for it
// without a module. The rule never matches (no VNI is that large) and its
// action is nop, so it changes no routing decision; it is marked with
// vxdp's protocol number and priority so only vxdp removes it.
const (
	tunnelRulePriority = 32700
	tunnelRuleID       = 1 << 40 // above any 24-bit VNI
	// rtprotVXDP marks routing objects vxdp creates ("proto 118").
	rtprotVXDP = 118
	frActNop   = 3 // FR_ACT_NOP
)

// tunnelRuleRequest builds RTM_NEWRULE/RTM_DELRULE for the metadata rule.
// A raw request: netlink.Rule encodes FRA_TUN_ID with 4 bytes where the
// kernel wants a 64-bit big-endian id.
func tunnelRuleRequest(cmd int, flags int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(cmd, flags|unix.NLM_F_ACK)
	hdr := nl.NewRtMsg()
	hdr.Family = unix.AF_INET
	hdr.Protocol = rtprotVXDP
	hdr.Scope = unix.RT_SCOPE_UNIVERSE
	hdr.Table = unix.RT_TABLE_UNSPEC
	hdr.Type = frActNop
	req.AddData(hdr)
	var id [8]byte
	binary.BigEndian.PutUint64(id[:], tunnelRuleID)
	req.AddData(nl.NewRtAttr(nl.FRA_PRIORITY, nl.Uint32Attr(tunnelRulePriority)))
	req.AddData(nl.NewRtAttr(nl.FRA_TUN_ID, id[:]))
	req.AddData(nl.NewRtAttr(nl.FRA_PROTOCOL, nl.Uint8Attr(rtprotVXDP)))
	return req
}

// ensureTunnelMetadata adds the metadata rule unless it exists.
func ensureTunnelMetadata() error {
	_, err := tunnelRuleRequest(unix.RTM_NEWRULE, unix.NLM_F_CREATE|unix.NLM_F_EXCL).Execute(unix.NETLINK_ROUTE, 0)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add tun_id rule (tunnel metadata for the vxlan program): %w", err)
	}
	return nil
}

// removeTunnelMetadata deletes the metadata rule, if there.
func removeTunnelMetadata() error {
	_, err := tunnelRuleRequest(unix.RTM_DELRULE, 0).Execute(unix.NETLINK_ROUTE, 0)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove tun_id rule: %w", err)
	}
	return nil
}
