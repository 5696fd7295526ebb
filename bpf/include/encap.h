/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* VXLAN encapsulation the way the kernel vxlan device does it. */
#ifndef VXDP_ENCAP_H
#define VXDP_ENCAP_H

#include "maps.h"
#include "parse.h"

/* Outer IPv4 + UDP + VXLAN + inner Ethernet: what encapsulation adds after
 * the (reused) outer Ethernet header. */
#define VXLAN_ENCAP_ROOM (sizeof(struct iphdr) + sizeof(struct udphdr) + VXLAN_HLEN + ETH_HLEN)
#define GSO_MIN_HEADERS 40 /* IPv4 + TCP without options: a lower bound per segment */

/* The headers encapsulation writes at the front of the frame. */
struct vxlan_encap {
	struct ethhdr outer_eth;
	struct iphdr ip;
	struct udphdr udp;
	struct vxlanhdr vxlan;
	struct ethhdr inner_eth;
} __attribute__((packed));

static __always_inline __u16 next_ip_id(void)
{
	__u32 zero = 0;
	__u32 *id = bpf_map_lookup_elem(&ip_id, &zero);

	if (!id)
		return 0;
	return (__u16)(*id)++;
}

/* VXLAN-encapsulate the frame to vtep (srcport from the inner flow hash,
 * UDP checksum 0, TTL from config, DF clear) and hand it to the neighbour
 * subsystem on the uplink. Returns 0 when redirected, or a reason: a PASS
 * one with the frame unchanged, DROP_ENCAP_FAILED once it no longer is. */
static __always_inline enum vxdp_reason encap_vxlan(struct __sk_buff *skb, const struct vxdp_config *cfg, __u32 vni,
						    __be32 vtep)
{
	const __u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
			    BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN);
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = header_at(struct ethhdr, data, data_end);
	struct vxlan_encap h = {};
	struct iphdr ip = {};
	__u32 inner_len = skb->len;
	__u32 hash, range;

	if (!eth)
		return PASS_ENCAP_FAILED;
	h.inner_eth = *eth;

	/* udp_flow_src_port(): hash of the inner flow scaled into the range. */
	hash = bpf_get_hash_recalc(skb);
	hash ^= hash << 16;
	range = (__u32)cfg->src_port_max - cfg->src_port_min;
	h.udp.source = bpf_htons((__u16)(((__u64)hash * range) >> 32) + cfg->src_port_min);

	if (bpf_skb_adjust_room(skb, VXLAN_ENCAP_ROOM, BPF_ADJ_ROOM_MAC, flags))
		return PASS_ENCAP_FAILED;

	/* Outer MACs are filled by bpf_redirect_neigh; write ours meanwhile. */
	mac_copy(h.outer_eth.h_source, cfg->uplink_mac);
	h.outer_eth.h_proto = bpf_htons(ETH_P_IP);

	ip.version = 4;
	ip.ihl = 5;
	/* GSO super-frames may exceed 16 bits; segmentation rewrites lengths. */
	ip.tot_len = bpf_htons((__u16)(inner_len + sizeof(struct iphdr) + sizeof(struct udphdr) + VXLAN_HLEN));
	ip.id = bpf_htons(next_ip_id());
	ip.ttl = cfg->ttl;
	ip.protocol = IPPROTO_UDP;
	ip.saddr = cfg->local_ip;
	ip.daddr = vtep;
	ip.check = ipv4_csum(&ip);
	h.ip = ip;

	h.udp.dest = cfg->vxlan_port;
	h.udp.len = bpf_htons((__u16)(inner_len + sizeof(struct udphdr) + VXLAN_HLEN));
	h.udp.check = 0;

	h.vxlan.vx_flags = bpf_htonl(VXLAN_HF_VNI);
	h.vxlan.vx_vni = bpf_htonl(vni << 8);

	if (bpf_skb_store_bytes(skb, 0, &h, sizeof(h), 0))
		return DROP_ENCAP_FAILED; /* room already added: the frame is no longer intact */
	bpf_redirect_neigh(cfg->uplink_ifindex, 0, 0, 0);
	return 0;
}

#endif
