package dataplane

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
)

// rpFilterWarnings names the interfaces with an IPv4 address that vxdp
// does not serve (the management network, typically) where reverse-path
// filtering is not strict. The kernel's VXLAN socket is bound to any
// address: VXLAN to local_ip arriving there from a registered VTEP's
// address is only refused by a strict rp_filter, since vxdp attaches
// nothing to interfaces it does not serve. The effective setting is the
// larger of conf/all and conf/<dev>.
func rpFilterWarnings(nlh *netlink.Handle, sysctlDir string, served map[string]bool) []string {
	links, err := nlh.LinkList()
	if err != nil {
		return []string{fmt.Sprintf("cannot list interfaces to check rp_filter: %v", err)}
	}
	all, _ := readSysctlInt(filepath.Join(sysctlDir, "all", "rp_filter"))
	var out []string
	for _, l := range links {
		name := l.Attrs().Name
		if served[name] || l.Attrs().Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := nlh.AddrList(l, netlink.FAMILY_V4)
		if err != nil || len(addrs) == 0 {
			continue
		}
		dev, err := readSysctlInt(filepath.Join(sysctlDir, name, "rp_filter"))
		if err != nil {
			continue
		}
		if max(all, dev) != 1 {
			out = append(out, fmt.Sprintf("rp_filter on %s (%s) is %d: VXLAN forged with a VTEP's address can reach the kernel's VXLAN socket through it; set net.ipv4.conf.%s.rp_filter = 1 (docs/security.md)",
				name, addrs[0].IPNet, max(all, dev), name))
		}
	}
	return out
}

func readSysctlInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
