/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Header parsing shared by the programs. Every helper bounds-checks against
 * data_end and returns NULL when the header does not fit. */
#ifndef VXDP_PARSE_H
#define VXDP_PARSE_H

#include "vxdp.h"

struct vxlanhdr {
	__be32 vx_flags;
	__be32 vx_vni;
};

/* ARP for Ethernet/IPv4 (RFC 826), the only kind vxdp answers. */
struct arp_eth {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[ETH_ALEN];
	__be32 spa;
	__u8 tha[ETH_ALEN];
	__be32 tpa;
} __attribute__((packed));

#define ARP_HTYPE_ETHER 1
#define ARP_OP_REQUEST 1
#define ARP_OP_REPLY 2

/* The headers encapsulation writes at the front of the frame. */
struct vxlan_encap {
	struct ethhdr outer_eth;
	struct iphdr ip;
	struct udphdr udp;
	struct vxlanhdr vxlan;
	struct ethhdr inner_eth;
} __attribute__((packed));

#define header_at(type, ptr, end) \
	((void *)(ptr) + sizeof(type) <= (void *)(end) ? (type *)(ptr) : (type *)0)

static __always_inline int mac_is_multicast(const __u8 *mac)
{
	return mac[0] & 1; /* also true for broadcast */
}

static __always_inline int mac_equal(const __u8 *a, const __u8 *b)
{
	return *(const __u32 *)a == *(const __u32 *)b &&
	       *(const __u16 *)(a + 4) == *(const __u16 *)(b + 4);
}

static __always_inline void mac_copy(__u8 *dst, const __u8 *src)
{
	__builtin_memcpy(dst, src, ETH_ALEN);
}

static __always_inline int fdb_is(const struct fdb_entry *e, enum fdb_kind kind)
{
	return e->kind == kind;
}

static __always_inline int eth_is_vlan(__be16 proto)
{
	return proto == ETH_P_8021Q_BE || proto == ETH_P_8021AD_BE;
}

/* Internet checksum over a 20-byte IPv4 header: the value of the check
 * field when it is zero, and 0 when the header, check included, is intact. */
static __always_inline __u16 ipv4_csum(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*ip) / 2); i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* An ARP message in the one layout struct arp_eth describes. */
static __always_inline int arp_is_eth_ipv4(const struct arp_eth *arp)
{
	return arp->htype == bpf_htons(ARP_HTYPE_ETHER) && arp->ptype == bpf_htons(ETH_P_IP) &&
	       arp->hlen == ETH_ALEN && arp->plen == 4;
}

static __always_inline int ipv4_is_fragment(const struct iphdr *ip)
{
	return ip->frag_off & bpf_htons(IP_MF | IP_OFFSET);
}

#endif
