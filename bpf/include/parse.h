/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Header layouts and parsing shared by the programs. Every helper
 * bounds-checks against data_end and returns NULL (or 0) when the header
 * does not fit. */
#ifndef VXDP_PARSE_H
#define VXDP_PARSE_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>

#define VXLAN_HF_VNI 0x08000000 /* the I flag, host order of the first word */
#define VXLAN_HLEN 8
#define IP_MF 0x2000     /* IPv4 "more fragments" */
#define IP_OFFSET 0x1fff /* IPv4 fragment offset mask */
#define VLAN_VID_MASK 0x0fff
#define VLAN_MAX_TAGS 2 /* 802.1ad + 802.1Q */

#define ETH_P_8021Q_BE bpf_htons(ETH_P_8021Q)
#define ETH_P_8021AD_BE bpf_htons(ETH_P_8021AD)

#define IPPROTO_ICMPV6_ 58
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_DEST 60
#define IPV6_EXT_MAX 4 /* extension headers walked before giving up */

#define ICMPV6_MLD_REPORT 131
#define ICMPV6_RA 134
#define ICMPV6_NS 135
#define ICMPV6_NA 136
#define ICMPV6_MLD2_REPORT 143

#define DHCP_SERVER_PORT 67
#define DHCP_CLIENT_PORT 68
#define DHCPV6_CLIENT_PORT 546
#define DHCPV6_SERVER_PORT 547

struct vxlanhdr {
	__be32 vx_flags;
	__be32 vx_vni;
};

struct vlanhdr {
	__be16 tci;
	__be16 encap_proto;
};

/* ARP for Ethernet/IPv4 (RFC 826), the only kind vxdp answers or allows. */
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

/* ICMPv6 header, with a neighbour solicitation/advertisement's target. */
struct icmp6_nd {
	__u8 type;
	__u8 code;
	__be16 csum;
	__be32 flags;
	struct in6_addr target;
};

struct ipv6_opt_hdr_ {
	__u8 nexthdr;
	__u8 hdrlen; /* 8-octet units, not counting the first 8 */
};

#define header_at(type, ptr, end) \
	((void *)(ptr) + sizeof(type) <= (void *)(end) ? (type *)(ptr) : (type *)0)

static __always_inline int mac_is_multicast(const __u8 *mac)
{
	return mac[0] & 1; /* also true for broadcast */
}

/* 01:80:c2:00:00:00-0f: IEEE 802.1D reserved group addresses (STP, LACP,
 * 802.1X, LLDP). A bridge never floods them; it hands them to the stack of
 * the port they arrived on. */
static __always_inline int mac_is_link_local(const __u8 *mac)
{
	return mac[0] == 0x01 && mac[1] == 0x80 && mac[2] == 0xc2 && mac[3] == 0 && mac[4] == 0 &&
	       (mac[5] & 0xf0) == 0;
}

/* A link-local group frame carrying IPv4, IPv6 or ARP: the bridge hands it
 * to the stack of the port it came in on, where sockets bound to any
 * address (the kernel's VXLAN socket among them) would take it. Other
 * protocols to those addresses (LLDP, LACP, 802.1X) stay the host's, as on
 * any NIC. */
static __always_inline int link_local_ip(const __u8 *dst, __be16 proto)
{
	return mac_is_link_local(dst) &&
	       (proto == bpf_htons(ETH_P_IP) || proto == bpf_htons(ETH_P_IPV6) || proto == bpf_htons(ETH_P_ARP));
}

static __always_inline int mac_equal(const __u8 *a, const __u8 *b)
{
	return *(const __u32 *)a == *(const __u32 *)b && *(const __u16 *)(a + 4) == *(const __u16 *)(b + 4);
}

static __always_inline void mac_copy(__u8 *dst, const __u8 *src)
{
	__builtin_memcpy(dst, src, ETH_ALEN);
}

static __always_inline int eth_is_vlan(__be16 proto)
{
	return proto == ETH_P_8021Q_BE || proto == ETH_P_8021AD_BE;
}

static __always_inline int ipv6_is_zero(const struct in6_addr *a)
{
	return (a->in6_u.u6_addr32[0] | a->in6_u.u6_addr32[1] | a->in6_u.u6_addr32[2] | a->in6_u.u6_addr32[3]) == 0;
}

static __always_inline int ipv6_equal(const struct in6_addr *a, const __u8 *b)
{
	const __u32 *w = (const __u32 *)b;

	return a->in6_u.u6_addr32[0] == w[0] && a->in6_u.u6_addr32[1] == w[1] &&
	       a->in6_u.u6_addr32[2] == w[2] && a->in6_u.u6_addr32[3] == w[3];
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

/* The L3 header of a frame: its ethertype and offset, after up to
 * VLAN_MAX_TAGS in-band VLAN tags. tags counts the tags skipped. */
struct l3 {
	__be16 proto;
	__u16 off;
	__u8 tags;
	__u8 vid_zero; /* every skipped tag had VLAN id 0 (priority tags) */
	__u16 vid;     /* the first tag's VLAN id */
};

/* l3_of finds the L3 header after the Ethernet header and in-band tags.
 * It returns 0 when a tag is truncated or there are more tags than
 * VLAN_MAX_TAGS (l3 then describes the last tag reached). */
static __always_inline int l3_of(void *data, void *data_end, struct l3 *l3)
{
	struct ethhdr *eth = data;
	struct vlanhdr *vh;

	l3->proto = eth->h_proto;
	l3->off = sizeof(*eth);
	l3->tags = 0;
	l3->vid_zero = 1;
	l3->vid = 0;
#pragma unroll
	for (int i = 0; i < VLAN_MAX_TAGS; i++) {
		if (!eth_is_vlan(l3->proto))
			return 1;
		vh = header_at(struct vlanhdr, data + l3->off, data_end);
		if (!vh)
			return 0;
		if (vh->tci & bpf_htons(VLAN_VID_MASK))
			l3->vid_zero = 0;
		if (i == 0)
			l3->vid = bpf_ntohs(vh->tci) & VLAN_VID_MASK;
		l3->proto = vh->encap_proto;
		l3->off += sizeof(*vh);
		l3->tags++;
	}
	return !eth_is_vlan(l3->proto);
}

struct ipv6_frag_hdr_ {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset in 8-octet units << 3 | M */
	__be32 id;
};

#define L4_NONE 256 /* a later fragment: it carries no upper-layer header */

/* The upper-layer protocol of the IPv6 packet at data + ip6off, after up
 * to IPV6_EXT_MAX hop-by-hop, routing, destination-options and fragment
 * headers; *l4off is where its header starts. A later fragment gives
 * L4_NONE; a truncated packet or too many extension headers give -1. */
static __always_inline int ipv6_upper(void *data, void *data_end, __u32 ip6off, __u32 *l4off)
{
	struct ipv6hdr *ip6 = data + ip6off;
	struct ipv6_frag_hdr_ *frag;
	struct ipv6_opt_hdr_ *opt;
	__u32 off = ip6off + sizeof(struct ipv6hdr);
	__u8 next;

	if (!header_at(struct ipv6hdr, ip6, data_end))
		return -1;
	next = ip6->nexthdr;
#pragma unroll
	for (int i = 0; i < IPV6_EXT_MAX; i++) {
		if (off > 512)
			return -1;
		if (next == NEXTHDR_FRAGMENT) {
			frag = header_at(struct ipv6_frag_hdr_, data + off, data_end);
			if (!frag)
				return -1;
			if (frag->frag_off & bpf_htons(0xfff8))
				return L4_NONE;
			next = frag->nexthdr;
			off += sizeof(*frag);
			continue;
		}
		if (next != NEXTHDR_HOP && next != NEXTHDR_ROUTING && next != NEXTHDR_DEST)
			break;
		opt = header_at(struct ipv6_opt_hdr_, data + off, data_end);
		if (!opt)
			return -1;
		next = opt->nexthdr;
		off += ((__u32)opt->hdrlen + 1) * 8;
	}
	/* Longer chains than IPV6_EXT_MAX headers, or an upper-layer header
	 * further than 512 bytes in, are not what a VM needs: malformed. */
	if (next == NEXTHDR_HOP || next == NEXTHDR_ROUTING || next == NEXTHDR_DEST || next == NEXTHDR_FRAGMENT || off > 512)
		return -1;
	*l4off = off;
	return next;
}

#endif
