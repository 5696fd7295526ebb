//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* vxdp deliver program: TC egress of a VM's tap, i.e. every frame on its
 * way into the VM however it got there: redirected by the port program
 * from a local port, by the vxlan program after the kernel decapsulated
 * it, or delivered by the kernel bridge (broadcast, unknown unicast, a
 * kernel-only peer). It applies the port's security groups, ingress. The
 * uplink program, whose XDP redirects never pass here, applies them
 * itself. */
#include "abi.h"
#include "maps.h"
#include "parse.h"
#include "verdict.h"
#include "sg.h"
#include "monitor.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Headers security groups read: Ethernet, two tags, the largest IPv6
 * header chain we follow, a transport header and an ICMP error's quote. */
#define DELIVER_HEADERS 256

static __always_inline enum vxdp_reason decide(struct __sk_buff *skb, const struct port_info *port)
{
	void *data, *data_end;
	struct l3 l3 = {};

	if (!port)
		return DROP_PORT_UNKNOWN;
	if (port->flags & PORT_F_DISABLED)
		return DROP_PORT_DISABLED;
	if (!(port->flags & PORT_F_SG))
		return PASS_NO_SG;
	/* A GRO packet may hold little more than the Ethernet header in its
	 * linear part: pull what the checks read. */
	if (skb->data_end - skb->data < DELIVER_HEADERS && skb->len > skb->data_end - skb->data)
		bpf_skb_pull_data(skb, skb->len < DELIVER_HEADERS ? skb->len : DELIVER_HEADERS);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (!header_at(struct ethhdr, data, data_end))
		return DROP_MALFORMED;
	if (!l3_of(data, data_end, &l3))
		return DROP_MALFORMED;
	if (l3.proto != bpf_htons(ETH_P_IP) && l3.proto != bpf_htons(ETH_P_IPV6))
		return PASS_NON_IP;
	return sg_check(data, data_end, l3.off, l3.proto, skb->ifindex, port, SG_INGRESS) ?: PASS_SG_ALLOWED;
}

SEC("tc")
int vxdp_deliver(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	__u32 len = skb->len;
	struct port_info *port = bpf_map_lookup_elem(&ports, &ifindex);
	const struct vxdp_config *cfg = get_config();
	int mon = monitoring(cfg);
	enum vxdp_reason r;

	if (mon)
		mon_before_skb(skb);
	r = decide(skb, port);
	return tc_exit(skb, cfg, mon, VXDP_PROG_DELIVER, r, port ? port->vni : 0, len);
}
