//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* vxdp segment program: TC ingress of each provider segment device — the
 * VLAN device (<phys>.<vlan>) of a VLAN network, the physical interface of
 * a flat one — i.e. what the kernel received of a provider network after
 * its GRO: mostly TCP, which the uplink program leaves to the kernel so a
 * VM receives aggregates, as the kernel path would give it. A frame for a
 * local port of the segment is redirected to its tap (whose deliver
 * program applies the port's security groups), skipping the bridge;
 * anything else goes on to the bridge. */
#include "abi.h"
#include "maps.h"
#include "parse.h"
#include "verdict.h"
#include "fdb.h"
#include "monitor.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline enum vxdp_reason decide(struct __sk_buff *skb, __u32 *seg_out)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = header_at(struct ethhdr, data, data_end);
	const struct vxdp_config *cfg = get_config();
	__u32 dev = skb->ifindex, ifindex = 0, *seg;
	struct port_info *port;
	struct net_info *net;
	enum vxdp_reason r;

	seg = bpf_map_lookup_elem(&segment_devs, &dev);
	if (!seg)
		return DROP_SEGMENT_UNKNOWN;
	*seg_out = *seg;
	net = bpf_map_lookup_elem(&networks, seg);
	if (!net || net->kind == NET_VXLAN || net->dev_ifindex != dev)
		return DROP_VNI_MISMATCH;
	/* On a flat network's interface, tagged frames are for VLAN devices
	 * (the kernel hands them over after this hook). */
	if (skb->vlan_present)
		return PASS_VLAN_TAGGED;
	if (!eth)
		return DROP_RUNT;
	if (mac_is_local_port(*seg, eth->h_source))
		return DROP_INNER_SRC_LOCAL;
	if (!forwarding(cfg))
		return PASS_KERNEL_FORWARDING;
	if (mac_is_multicast(eth->h_dest))
		return PASS_PROVIDER_BUM;
	r = local_target(*seg, eth->h_dest, &ifindex, &port, PASS_PROVIDER_FDB_MISS);
	if (r)
		return r;
	bpf_redirect(ifindex, 0);
	return REDIRECT_LOCAL;
}

SEC("tc")
int vxdp_segment(struct __sk_buff *skb)
{
	__u32 len = skb->len, seg = 0;
	const struct vxdp_config *cfg = get_config();
	int mon = monitoring(cfg);
	enum vxdp_reason r;

	if (mon)
		mon_before_skb(skb);
	r = decide(skb, &seg);
	count(VXDP_PROG_SEGMENT, r, len);
	if (mon)
		mon_emit_skb(skb, cfg, VXDP_PROG_SEGMENT, r, seg, len);
	return tc_action(r);
}
