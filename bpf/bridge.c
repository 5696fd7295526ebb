//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* vxdp bridge program: TC ingress of each brq… bridge device, i.e. every
 * frame the bridge hands up to the hypervisor's own stack (broadcasts,
 * multicasts, frames to the bridge's MAC) instead of forwarding it. A
 * tenant network's bridge carries no address of the host, so nothing a VM
 * or a remote VTEP sends has any business there: IPv4, IPv6, ARP or any
 * other ethertype, whatever its addresses. Forwarding between the
 * bridge's ports is not affected. */
#include "abi.h"
#include "maps.h"
#include "verdict.h"
#include "monitor.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tc")
int vxdp_bridge(struct __sk_buff *skb)
{
	const struct vxdp_config *cfg = get_config();
	int mon = monitoring(cfg);

	if (mon)
		mon_before_skb(skb);
	return tc_exit(skb, cfg, mon, VXDP_PROG_BRIDGE, DROP_TO_HOST, 0, skb->len);
}
