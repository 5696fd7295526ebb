/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Port security (Neutron's port_security): a VM sends only from its own
 * MAC and addresses, or from its allowed address pairs, and never as a
 * DHCP server or IPv6 router. Each check returns 0 to go on, or the reason
 * of the drop. */
#ifndef VXDP_PORTSEC_H
#define VXDP_PORTSEC_H

#include <linux/icmpv6.h>
#include "maps.h"
#include "parse.h"

/* The allow-list entry that covers (mac, family, addr) on a port: 0 when
 * the MAC is not allowed at all. addr is 4 or 16 bytes (network order) or
 * NULL for a MAC-only question. */
static __always_inline __u32 addr_kind(__u32 ifindex, const __u8 *mac, __u8 family, const void *addr)
{
	struct port_addr_key key = {
		.prefixlen = PORT_ADDR_ADDR_BITS + 128,
		.ifindex = ifindex,
		.family = family,
	};
	struct port_addr_value *v;

	mac_copy(key.mac, mac);
	if (family == ADDR_IPV4)
		__builtin_memcpy(key.addr, addr, 4);
	else if (family == ADDR_IPV6)
		__builtin_memcpy(key.addr, addr, 16);
	v = bpf_map_lookup_elem(&port_addrs, &key);
	return v ? v->kind : 0;
}

/* Whether the port may send from mac at all. */
static __always_inline int mac_allowed(__u32 ifindex, const struct port_info *port, const __u8 *mac)
{
	return mac_equal(mac, port->mac) || addr_kind(ifindex, mac, ADDR_MAC, 0);
}

/* The reason a (mac, source address) pair is refused, or 0. */
static __always_inline enum vxdp_reason source_reason(__u32 kind)
{
	if (kind == PORT_ADDR_ALLOWED)
		return 0;
	return kind ? DROP_SPOOF_IP : DROP_SPOOF_MAC;
}

static __always_inline enum vxdp_reason check_ipv4(void *data, void *data_end, __u32 off, __u32 ifindex,
						   const struct port_info *port, const __u8 *mac)
{
	struct iphdr *ip = data + off;
	struct udphdr *udp = 0;
	__be32 saddr;

	if (!header_at(struct iphdr, ip, data_end) || ip->version != 4 || ip->ihl < 5)
		return DROP_MALFORMED;
	/* Only a first fragment (or a whole packet) carries the UDP header. */
	if (ip->protocol == IPPROTO_UDP && !(ip->frag_off & bpf_htons(IP_OFFSET))) {
		udp = (void *)ip + ip->ihl * 4;
		if (!header_at(struct udphdr, udp, data_end))
			return DROP_MALFORMED;
		if (udp->source == bpf_htons(DHCP_SERVER_PORT) && udp->dest == bpf_htons(DHCP_CLIENT_PORT))
			return DROP_DHCP_SERVER;
	}
	saddr = ip->saddr;
	if (saddr == 0) {
		/* A DHCP client has no address yet: only 0.0.0.0:68 -> :67. */
		if (udp && udp->source == bpf_htons(DHCP_CLIENT_PORT) && udp->dest == bpf_htons(DHCP_SERVER_PORT))
			return mac_allowed(ifindex, port, mac) ? 0 : DROP_SPOOF_MAC;
		return DROP_SPOOF_IP;
	}
	if (saddr == port->ip4 && mac_equal(mac, port->mac))
		return 0;
	return source_reason(addr_kind(ifindex, mac, ADDR_IPV4, &saddr));
}

static __always_inline enum vxdp_reason check_ipv6(void *data, void *data_end, __u32 off, __u32 ifindex,
						   const struct port_info *port, const __u8 *mac)
{
	struct ipv6hdr *ip6 = data + off;
	struct icmp6_nd *icmp = 0;
	struct udphdr *udp;
	__u32 l4off = 0;
	int proto;

	if (!header_at(struct ipv6hdr, ip6, data_end) || ip6->version != 6)
		return DROP_MALFORMED;
	proto = ipv6_upper(data, data_end, off, &l4off);
	if (proto < 0)
		return DROP_MALFORMED;
	l4off &= 0x3ff; /* ipv6_upper keeps it at most 512; the verifier wants the bound */
	if (proto == IPPROTO_ICMPV6_) {
		/* Type and code are all DAD, MLD and RA need; NA needs its target. */
		icmp = data + l4off;
		if (!header_at(struct icmp6hdr, icmp, data_end))
			return DROP_MALFORMED;
		if (icmp->type == ICMPV6_RA)
			return DROP_ROUTER_ADVERT;
	} else if (proto == IPPROTO_UDP) {
		udp = data + l4off;
		if (!header_at(struct udphdr, udp, data_end))
			return DROP_MALFORMED;
		if (udp->source == bpf_htons(DHCPV6_SERVER_PORT) && udp->dest == bpf_htons(DHCPV6_CLIENT_PORT))
			return DROP_DHCP_SERVER;
	}

	if (ipv6_is_zero(&ip6->saddr)) {
		/* Before it has an address a VM only probes (DAD) and joins
		 * multicast groups (MLD), from ::. */
		if (!icmp || (icmp->type != ICMPV6_NS && icmp->type != ICMPV6_MLD_REPORT &&
			      icmp->type != ICMPV6_MLD2_REPORT))
			return DROP_SPOOF_IP;
		if (!mac_allowed(ifindex, port, mac))
			return DROP_SPOOF_MAC;
	} else if (!(mac_equal(mac, port->mac) && ipv6_equal(&ip6->saddr, port->ip6))) {
		enum vxdp_reason r = source_reason(addr_kind(ifindex, mac, ADDR_IPV6, &ip6->saddr));

		if (r)
			return r;
	}
	/* A neighbour advertisement claims its target: like an ARP sender,
	 * it must be an address the port may use. */
	if (icmp && icmp->type == ICMPV6_NA) {
		if (!header_at(struct icmp6_nd, icmp, data_end))
			return DROP_MALFORMED;
		if (addr_kind(ifindex, mac, ADDR_IPV6, &icmp->target) != PORT_ADDR_ALLOWED)
			return DROP_SPOOF_ND;
	}
	return 0;
}

static __always_inline enum vxdp_reason check_arp(void *data, void *data_end, __u32 off, __u32 ifindex,
						  const struct port_info *port, const __u8 *mac)
{
	struct arp_eth *arp = data + off;
	__be32 spa;

	/* Only the Ethernet/IPv4 layout has sha/spa where we look. */
	if (!header_at(struct arp_eth, arp, data_end) || !arp_is_eth_ipv4(arp))
		return DROP_MALFORMED;
	if (!mac_allowed(ifindex, port, mac))
		return DROP_SPOOF_MAC;
	if (!mac_equal(arp->sha, mac))
		return DROP_SPOOF_ARP;
	spa = arp->spa;
	/* An ARP probe (RFC 5227) has sender 0.0.0.0 and updates no cache. */
	if (spa == 0 || (spa == port->ip4 && mac_equal(mac, port->mac)))
		return 0;
	return addr_kind(ifindex, mac, ADDR_IPV4, &spa) == PORT_ADDR_ALLOWED ? 0 : DROP_SPOOF_ARP;
}

/* port_security checks a frame from a port with port security on. l3 is
 * where its network header is (after in-band VLAN tags). */
static __always_inline enum vxdp_reason port_security(struct __sk_buff *skb, void *data, void *data_end,
						      const struct l3 *l3, const struct port_info *port)
{
	struct ethhdr *eth = data;
	__u32 ifindex = skb->ifindex;

	if (skb->vlan_present || l3->tags) {
		__u32 vni = port->vni;
		struct net_info *net = bpf_map_lookup_elem(&networks, &vni);

		if (!net || !(net->flags & NET_F_VLAN_TRANSPARENT))
			return DROP_VLAN;
	}
	switch (l3->proto) {
	case bpf_htons(ETH_P_IP):
		return check_ipv4(data, data_end, l3->off, ifindex, port, eth->h_source);
	case bpf_htons(ETH_P_IPV6):
		return check_ipv6(data, data_end, l3->off, ifindex, port, eth->h_source);
	case bpf_htons(ETH_P_ARP):
		return check_arp(data, data_end, l3->off, ifindex, port, eth->h_source);
	default:
		return mac_allowed(ifindex, port, eth->h_source) ? 0 : DROP_SPOOF_MAC;
	}
}

#endif
