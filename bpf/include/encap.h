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

/* fmix32 of MurmurHash3: spreads every input bit over the result. */
static __always_inline __u32 hash_mix(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* The inner flow's hash for the outer UDP source port: addresses,
 * protocol and (first fragment or whole packet) ports. Computed here from
 * the headers port security already parsed instead of by the kernel's
 * flow dissector (bpf_get_hash_recalc): the same entropy for ECMP and the
 * receiver's RSS at a fraction of the cost. l3off is the untagged L3
 * offset (ETH_HLEN). */
static __always_inline __u32 inner_flow_hash(void *data, void *data_end, __be16 proto)
{
	__u32 h = 0, l4 = 0;
	__u8 next = 0;

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = header_at(struct iphdr, data + ETH_HLEN, data_end);

		if (!ip)
			return 0;
		h = ip->saddr ^ hash_mix(ip->daddr);
		next = ip->protocol;
		if (!(ip->frag_off & bpf_htons(IP_OFFSET)) && ip->ihl == 5)
			l4 = ETH_HLEN + sizeof(*ip);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = header_at(struct ipv6hdr, data + ETH_HLEN, data_end);
		const __u32 *w;

		if (!ip6)
			return 0;
		w = ip6->saddr.in6_u.u6_addr32;
		h = w[0] ^ w[1] ^ w[2] ^ w[3];
		w = ip6->daddr.in6_u.u6_addr32;
		h ^= hash_mix(w[0] ^ w[1] ^ w[2] ^ w[3]);
		next = ip6->nexthdr;
		l4 = ETH_HLEN + sizeof(*ip6);
	}
	if (l4 && (next == IPPROTO_TCP || next == IPPROTO_UDP || next == IPPROTO_SCTP)) {
		__u32 *ports = header_at(__u32, data + l4, data_end);

		if (ports)
			h ^= hash_mix(*ports);
	}
	return hash_mix(h ^ next);
}

/* VXLAN-encapsulate the frame to vtep (srcport from the inner flow hash,
 * UDP checksum 0, TTL from config, DF clear) and hand it to the neighbour
 * subsystem on the uplink. Returns 0 when redirected, or a reason: a PASS
 * one with the frame unchanged, DROP_ENCAP_FAILED once it no longer is.
 * proto is the inner ethertype (IPv4 or IPv6, untagged). */
static __always_inline enum vxdp_reason encap_vxlan(struct __sk_buff *skb, const struct vxdp_config *cfg, __u32 vni,
						    __be32 vtep, __be16 proto)
{
	const __u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
			    BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN);
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = header_at(struct ethhdr, data, data_end);
	struct vxlan_encap *out;
	struct mac_value *nh;
	struct ethhdr inner;
	struct iphdr ip = {};
	__u32 inner_len = skb->len;
	__u32 hash, range;
	__be16 sport;

	if (!eth)
		return PASS_ENCAP_FAILED;
	inner = *eth;

	/* udp_flow_src_port(): the flow's hash scaled into the range. */
	hash = inner_flow_hash(data, data_end, proto);
	range = (__u32)cfg->src_port_max - cfg->src_port_min;
	sport = bpf_htons((__u16)(((__u64)hash * range) >> 32) + cfg->src_port_min);

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

	if (bpf_skb_adjust_room(skb, VXLAN_ENCAP_ROOM, BPF_ADJ_ROOM_MAC, flags))
		return PASS_ENCAP_FAILED;

	/* The room is in the linear head (adjust_room makes it so): write the
	 * headers in place. */
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	out = header_at(struct vxlan_encap, data, data_end);
	if (!out)
		return DROP_ENCAP_FAILED; /* room already added: the frame is no longer intact */
	/* Our MAC and the next hop's, when the agent knows it; else
	 * bpf_redirect_neigh looks it up (and fills both). */
	nh = bpf_map_lookup_elem(&vtep_nexthop, &vtep);
	if (nh)
		mac_copy(out->outer_eth.h_dest, nh->mac);
	else
		__builtin_memset(out->outer_eth.h_dest, 0, ETH_ALEN);
	mac_copy(out->outer_eth.h_source, cfg->uplink_mac);
	out->outer_eth.h_proto = bpf_htons(ETH_P_IP);
	out->ip = ip;
	out->udp.source = sport;
	out->udp.dest = cfg->vxlan_port;
	out->udp.len = bpf_htons((__u16)(inner_len + sizeof(struct udphdr) + VXLAN_HLEN));
	out->udp.check = 0;
	out->vxlan.vx_flags = bpf_htonl(VXLAN_HF_VNI);
	out->vxlan.vx_vni = bpf_htonl(vni << 8);
	out->inner_eth = inner;
	if (nh)
		bpf_redirect(cfg->uplink_ifindex, 0);
	else
		bpf_redirect_neigh(cfg->uplink_ifindex, 0, 0, 0);
	return 0;
}

#endif
