//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* vxdp segment program: TC ingress of the physical interfaces of provider
 * networks, and of the far ends of emulated VLAN devices.
 *
 * On a physical interface it sees what the uplink program left to the
 * kernel of a provider network — TCP after GRO, broadcasts, unknown
 * destinations — with the VLAN tag in the skb. A frame for a local port
 * of the network is untagged and redirected to its tap (whose deliver
 * program applies the port's groups), skipping the bridge. Anything else
 * goes to the bridge: through the kernel's VLAN device (or the flat
 * interface's bridge port), or, where the kernel has no 802.1Q devices,
 * untagged into the emulated VLAN device, a veth pair whose near end is
 * on the bridge.
 *
 * On the far end of an emulated VLAN device it sees what the bridge sends
 * to the physical network, and tags and sends it there. */
#include "abi.h"
#include "maps.h"
#include "parse.h"
#include "verdict.h"
#include "fdb.h"
#include "monitor.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* A frame of net for its bridge: through the emulated VLAN device when
 * there is one, else the kernel's way (r). */
static __always_inline enum vxdp_reason to_bridge(struct __sk_buff *skb, const struct net_info *net, int tagged,
						  enum vxdp_reason r)
{
	if (!(net->flags & NET_F_VLAN_EMULATED))
		return r;
	if (tagged && bpf_skb_vlan_pop(skb))
		return r;
	bpf_redirect(net->peer_ifindex, 0);
	return REDIRECT_TO_BRIDGE;
}

/* What the bridge sent out of an emulated VLAN device of seg. */
static __always_inline enum vxdp_reason to_physical(struct __sk_buff *skb, __u32 dev, __u32 seg)
{
	struct net_info *net = bpf_map_lookup_elem(&networks, &seg);

	if (!net || net->kind != NET_VLAN || !(net->flags & NET_F_VLAN_EMULATED) || net->peer_ifindex != dev)
		return DROP_SEGMENT_UNKNOWN;
	if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), net->vlan))
		return DROP_SEGMENT_UNKNOWN;
	bpf_redirect(net->phys_ifindex, 0);
	return REDIRECT_TO_PHYSICAL;
}

static __always_inline enum vxdp_reason decide(struct __sk_buff *skb, __u32 *seg_out)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = header_at(struct ethhdr, data, data_end);
	const struct vxdp_config *cfg = get_config();
	struct provider_key k = { .ifindex = skb->ifindex };
	__u32 ifindex = 0, *seg;
	struct port_info *port;
	struct net_info *net;
	int tagged = skb->vlan_present;
	enum vxdp_reason r;

	seg = bpf_map_lookup_elem(&segment_devs, &k.ifindex);
	if (seg) {
		*seg_out = *seg;
		return to_physical(skb, k.ifindex, *seg);
	}
	/* The kernel put any tag into the skb before this hook. */
	if (tagged)
		k.vlan = skb->vlan_tci & VLAN_VID_MASK;
	seg = bpf_map_lookup_elem(&provider_in, &k);
	if (!seg)
		return PASS_NOT_PROVIDER;
	*seg_out = *seg;
	net = bpf_map_lookup_elem(&networks, seg);
	if (!net || net->kind == NET_VXLAN || net->phys_ifindex != k.ifindex)
		return DROP_VNI_MISMATCH;
	if (!eth)
		return DROP_RUNT;
	if (mac_is_local_port(*seg, eth->h_source))
		return DROP_INNER_SRC_LOCAL;
	/* The kernel took any tag out: h_proto is what the tag carried. */
	if (link_local_ip(eth->h_dest, eth->h_proto))
		return DROP_LINK_LOCAL_DST;
	if (!forwarding(cfg))
		return to_bridge(skb, net, tagged, PASS_KERNEL_FORWARDING);
	if (mac_is_multicast(eth->h_dest))
		return to_bridge(skb, net, tagged, PASS_PROVIDER_BUM);
	r = local_target(*seg, eth->h_dest, &ifindex, &port, PASS_PROVIDER_FDB_MISS);
	if (r == PASS_PROVIDER_FDB_MISS)
		return to_bridge(skb, net, tagged, r);
	if (r)
		return r;
	if (tagged && bpf_skb_vlan_pop(skb))
		return to_bridge(skb, net, tagged, PASS_PROVIDER_FDB_MISS);
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
	return tc_exit(skb, cfg, mon, VXDP_PROG_SEGMENT, r, seg, len);
}
