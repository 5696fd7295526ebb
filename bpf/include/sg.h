/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Security groups: Neutron's semantics on a port with PORT_F_SG.
 *
 * Rules only allow. A packet passes when it is always allowed (DHCP, ND,
 * ...), belongs to a tracked flow of the port (or is an ICMP error about
 * one), or a rule of the port's policy allows it; only a rule creates a
 * tracked flow, and ICMP other than echo none. The policy is two LPM lookups however many rules it has:
 * the classes of rules whose remote prefixes hold the remote address,
 * and those allowing the protocol and destination port; a shared class
 * allows. A tracked flow of an older generation than the port's is
 * checked again, as it was opened: still allowed, it goes on; no longer,
 * it is cut (both ways) until a later generation allows it again.
 * sg_check works on bare packet data, so TC and XDP programs share it. */
#ifndef VXDP_SG_H
#define VXDP_SG_H

#include "maps.h"
#include "parse.h"

/* Timeouts of tracked flows, by protocol and state (nanoseconds). */
#define CT_SEC 1000000000ULL
#define CT_TCP_SYN_TIMEOUT (60 * CT_SEC)
#define CT_TCP_ESTABLISHED_TIMEOUT (21600 * CT_SEC)
#define CT_TCP_CLOSE_TIMEOUT (10 * CT_SEC)
#define CT_UDP_TIMEOUT (30 * CT_SEC)
#define CT_UDP_REPLIED_TIMEOUT (120 * CT_SEC)
#define CT_ICMP_TIMEOUT (30 * CT_SEC)
#define CT_OTHER_TIMEOUT (600 * CT_SEC)
/* An entry's deadline is rewritten only when it moves by more than this. */
#define CT_REFRESH (1 * CT_SEC)

#define TCP_F_FIN 0x01
#define TCP_F_SYN 0x02
#define TCP_F_RST 0x04
#define TCP_F_ACK 0x10

/* A packet as security groups see it. Ports are the transport's (for
 * ICMP echo: the identifier as source port); l4 is what a rule matches:
 * the destination port, or type << 8 | code for ICMP. */
struct sg_pkt {
	__u8 family; /* 4 or 6 */
	__u8 proto;
	__u8 tcp_flags;
	__u8 icmp_error; /* an ICMP error: inner_* describe the packet it quotes */
	__u8 fragment;   /* a later fragment: no transport header */
	__u8 inner_proto;
	__be16 sport, dport;
	__be16 l4;
	__be16 inner_sport, inner_dport;
	__u8 saddr[16], daddr[16];
	__u8 inner_saddr[16], inner_daddr[16];
};

static __always_inline int proto_has_ports(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == 33 /* DCCP */ || proto == IPPROTO_SCTP ||
	       proto == 136 /* UDP-Lite */;
}

static __always_inline int icmp_proto(__u8 family, __u8 proto)
{
	return (family == 4 && proto == IPPROTO_ICMP) || (family == 6 && proto == IPPROTO_ICMPV6_);
}

/* ICMP errors carry the packet they are about: IPv4 destination
 * unreachable, time exceeded, parameter problem; ICMPv6 1-4. */
static __always_inline int icmp_is_error(__u8 family, __u8 type)
{
	return family == 4 ? (type == 3 || type == 11 || type == 12) : (type >= 1 && type <= 4);
}

/* ICMP echo request or reply, whose identifier tracks the flow. */
static __always_inline int icmp_is_echo(__u8 family, __u8 type)
{
	return family == 4 ? (type == 8 || type == 0) : (type == 128 || type == 129);
}

/* The first four bytes of a transport header: the ports. */
static __always_inline int read_ports(void *data, void *data_end, __u32 off, __be16 *sport, __be16 *dport)
{
	__be16 *p = data + off;

	if ((void *)(p + 2) > data_end)
		return -1;
	*sport = p[0];
	*dport = p[1];
	return 0;
}

/* The IP header at off (the outer one, or the one an ICMP error quotes):
 * family, protocol, addresses; the transport offset, L4_NONE for a later
 * fragment, -1 when truncated. */
static __always_inline int ip_header(void *data, void *data_end, __u32 off, __u8 family, __u8 *proto, __u8 *saddr,
				     __u8 *daddr)
{
	if (family == 4) {
		struct iphdr *ip = data + off;

		if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5)
			return -1;
		*proto = ip->protocol;
		__builtin_memcpy(saddr, &ip->saddr, 4);
		__builtin_memcpy(daddr, &ip->daddr, 4);
		if (ip->frag_off & bpf_htons(IP_OFFSET))
			return L4_NONE;
		return off + ip->ihl * 4;
	} else {
		struct ipv6hdr *ip6 = data + off;
		__u32 l4 = 0;
		int next;

		if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
			return -1;
		__builtin_memcpy(saddr, &ip6->saddr, 16);
		__builtin_memcpy(daddr, &ip6->daddr, 16);
		next = ipv6_upper(data, data_end, off, &l4);
		if (next < 0 || next == L4_NONE)
			return next;
		*proto = next;
		return l4;
	}
}

/* sg_parse fills p from the packet whose IP header is at l3off. Returns
 * 0, or -1 for a packet that cannot be checked. */
static __always_inline int sg_parse(void *data, void *data_end, __u32 l3off, __u8 family, struct sg_pkt *p)
{
	__u8 *icmp;
	int l4;

	p->family = family;
	l4 = ip_header(data, data_end, l3off, family, &p->proto, p->saddr, p->daddr);
	if (l4 < 0)
		return -1;
	if (l4 == L4_NONE) {
		p->fragment = 1;
		return 0;
	}
	l4 &= 0x3ff;
	if (proto_has_ports(p->proto)) {
		if (read_ports(data, data_end, l4, &p->sport, &p->dport))
			return -1;
		p->l4 = p->dport;
		if (p->proto == IPPROTO_TCP) {
			__u8 *flags = data + l4 + 13;

			if ((void *)(flags + 1) > data_end)
				return -1;
			p->tcp_flags = *flags;
		}
		return 0;
	}
	if (!icmp_proto(family, p->proto))
		return 0;
	icmp = data + l4;
	if ((void *)(icmp + 8) > data_end)
		return -1;
	p->l4 = bpf_htons((__u16)icmp[0] << 8 | icmp[1]);
	if (icmp_is_echo(family, icmp[0])) {
		p->sport = *(__be16 *)(icmp + 4); /* identifier */
		p->dport = p->sport;
		return 0;
	}
	if (!icmp_is_error(family, icmp[0]))
		return 0;
	/* The quoted packet: its header and transport ports, if there. */
	l4 = ip_header(data, data_end, l4 + 8, family, &p->inner_proto, p->inner_saddr, p->inner_daddr);
	if (l4 < 0 || l4 == L4_NONE)
		return 0; /* not related to anything: the rules decide */
	l4 &= 0x3ff;
	if (proto_has_ports(p->inner_proto)) {
		if (read_ports(data, data_end, l4, &p->inner_sport, &p->inner_dport))
			return 0;
	} else if (icmp_proto(family, p->inner_proto)) {
		__u8 *inner = data + l4;

		if ((void *)(inner + 8) > data_end || !icmp_is_echo(family, inner[0]))
			return 0;
		p->inner_sport = *(__be16 *)(inner + 4);
		p->inner_dport = p->inner_sport;
	}
	p->icmp_error = 1;
	return 0;
}

static __always_inline void sg_count(__u8 dir, enum sg_event ev)
{
	__u32 idx = dir * SG_EVENT_MAX + ev;
	__u64 *v = bpf_map_lookup_elem(&sg_stats, &idx);

	if (v)
		(*v)++;
}

/* Whether the port's policy allows, in dir, traffic with this remote
 * address, protocol and l4 (destination port, or ICMP type/code). */
static __always_inline int sg_allows(__u32 policy, __u8 dir, __u8 family, const __u8 *remote, __u8 proto, __be16 l4)
{
	struct policy_remote_key rk = {
		.prefixlen = POLICY_REMOTE_BASE_BITS + (family == 4 ? 32 : 128),
		.policy = policy,
		.dir = dir,
		.family = family,
	};
	struct policy_l4_key lk = {
		.prefixlen = POLICY_L4_PORT_BASE_BITS + 16,
		.policy = policy,
		.dir = dir,
		.family = family,
		.proto = proto,
		.port = l4,
	};
	struct sg_mask *a, *b;

	__builtin_memcpy(rk.addr, remote, 16);
	a = bpf_map_lookup_elem(&policy_remote, &rk);
	if (!a)
		return 0;
	b = bpf_map_lookup_elem(&policy_l4, &lk);
	if (!b)
		return 0;
	return ((a->w[0] & b->w[0]) | (a->w[1] & b->w[1]) | (a->w[2] & b->w[2]) | (a->w[3] & b->w[3])) != 0;
}

/* Traffic a port lets through whatever its rules (Neutron's): out, DHCP
 * and DHCPv6 clients and ICMPv6 (router advertisements are dropped by
 * port security); in, DHCP and DHCPv6 answers, MLD queries, neighbour
 * discovery and, to a port with IPv6, router advertisements. */
static __always_inline int sg_always(const struct sg_pkt *p, __u8 dir, const struct port_info *port)
{
	__u8 type = bpf_ntohs(p->l4) >> 8;

	if (p->fragment)
		return 0;
	if (p->proto == IPPROTO_UDP) {
		__u16 s = bpf_ntohs(p->sport), d = bpf_ntohs(p->dport);

		if (dir == SG_EGRESS)
			return (s == DHCP_CLIENT_PORT && d == DHCP_SERVER_PORT) ||
			       (s == DHCPV6_CLIENT_PORT && d == DHCPV6_SERVER_PORT);
		return (s == DHCP_SERVER_PORT && d == DHCP_CLIENT_PORT) || (s == DHCPV6_SERVER_PORT && d == DHCPV6_CLIENT_PORT);
	}
	if (p->family != 6 || p->proto != IPPROTO_ICMPV6_)
		return 0;
	if (dir == SG_EGRESS)
		return type != ICMPV6_RA;
	return type == 130 || type == ICMPV6_NS || type == ICMPV6_NA || (type == ICMPV6_RA && (port->flags & PORT_F_IPV6));
}

/* The tracked-flow key of a packet of port ifindex in dir: local is the
 * VM's side. */
static __always_inline void ct_key_of(struct ct_key *k, __u32 ifindex, __u8 dir, __u8 family, __u8 proto,
				      const __u8 *saddr, const __u8 *daddr, __be16 sport, __be16 dport)
{
	k->ifindex = ifindex;
	k->proto = proto;
	k->family = family;
	if (dir == SG_EGRESS) {
		__builtin_memcpy(k->local, saddr, 16);
		__builtin_memcpy(k->remote, daddr, 16);
		k->local_port = sport;
		k->remote_port = dport;
	} else {
		__builtin_memcpy(k->local, daddr, 16);
		__builtin_memcpy(k->remote, saddr, 16);
		k->local_port = dport;
		k->remote_port = sport;
	}
}

static __always_inline struct ct_entry *ct_lookup(const struct ct_key *k)
{
	if (k->proto == IPPROTO_TCP)
		return bpf_map_lookup_elem(&ct_tcp, k);
	return bpf_map_lookup_elem(&ct_other, k);
}

static __always_inline int ct_create(const struct ct_key *k, const struct ct_entry *e)
{
	if (k->proto == IPPROTO_TCP)
		return bpf_map_update_elem(&ct_tcp, k, e, BPF_ANY);
	return bpf_map_update_elem(&ct_other, k, e, BPF_ANY);
}

/* How long a flow lives after this packet. */
static __always_inline __u64 ct_timeout(__u8 proto, __u8 seen)
{
	switch (proto) {
	case IPPROTO_TCP:
		if ((seen & CT_RST) || ((seen & CT_FIN_OUT) && (seen & CT_FIN_IN)))
			return CT_TCP_CLOSE_TIMEOUT;
		return (seen & CT_REPLIED) ? CT_TCP_ESTABLISHED_TIMEOUT : CT_TCP_SYN_TIMEOUT;
	case IPPROTO_UDP:
		return (seen & CT_REPLIED) ? CT_UDP_REPLIED_TIMEOUT : CT_UDP_TIMEOUT;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6_:
		return CT_ICMP_TIMEOUT;
	default:
		return CT_OTHER_TIMEOUT;
	}
}

/* What a packet tells about its flow's state. */
static __always_inline __u8 ct_seen(const struct sg_pkt *p, __u8 dir, __u8 opener)
{
	__u8 seen = dir != opener ? CT_REPLIED : 0;

	if (p->proto != IPPROTO_TCP)
		return seen;
	if (p->tcp_flags & TCP_F_RST)
		seen |= CT_RST;
	if (p->tcp_flags & TCP_F_FIN)
		seen |= dir == SG_EGRESS ? CT_FIN_OUT : CT_FIN_IN;
	return seen;
}

/* The flow as it was opened: allowed by the port's policy now? */
static __always_inline int ct_still_allowed(const struct ct_key *k, const struct ct_entry *e, const struct port_info *port)
{
	return sg_allows(port->policy, e->opener, k->family, k->remote, k->proto, e->opener_l4);
}

/* A live flow of an older generation than the port's is checked again,
 * as it was opened, and marked open or cut until the next change. Every
 * use of an entry goes through here, so a policy change (a remote group's
 * members, say) never leaves a flow judged by a stale generation. */
static __always_inline void ct_revalidate(const struct ct_key *k, struct ct_entry *e, const struct port_info *port,
					  __u8 dir)
{
	if (e->generation == port->generation)
		return;
	e->state = ct_still_allowed(k, e, port) ? CT_OPEN : CT_CUT;
	e->generation = port->generation;
	sg_count(dir, e->state == CT_OPEN ? SG_EV_RECHECKED : SG_EV_CUT);
}

/* sg_check decides a packet of a port with security groups, in dir.
 * Returns 0 when it passes, or the reason of the drop; counts the event. */
static __always_inline enum vxdp_reason sg_check(void *data, void *data_end, __u32 l3off, __be16 ethertype,
						  __u32 ifindex, const struct port_info *port, __u8 dir)
{
	enum vxdp_reason deny = dir == SG_EGRESS ? DROP_SG_EGRESS : DROP_SG_INGRESS;
	struct sg_pkt p = {};
	struct ct_key k = {};
	struct ct_entry *e, fresh = {};
	const __u8 *remote;
	__u64 now;
	__u8 seen;

	if (sg_parse(data, data_end, l3off, ethertype == bpf_htons(ETH_P_IP) ? 4 : 6, &p))
		return DROP_MALFORMED;
	if (sg_always(&p, dir, port)) {
		sg_count(dir, SG_EV_ALWAYS);
		return 0;
	}
	remote = dir == SG_EGRESS ? p.daddr : p.saddr;
	if (port->flags & PORT_F_STATELESS || p.fragment) {
		/* Untracked: the rules alone decide; a later fragment carries
		 * no port, so only a rule for every port of its protocol. */
		if (!sg_allows(port->policy, dir, p.family, remote, p.proto, p.l4)) {
			sg_count(dir, SG_EV_DENIED);
			return deny;
		}
		sg_count(dir, SG_EV_STATELESS);
		return 0;
	}

	now = bpf_ktime_get_coarse_ns();
	ct_key_of(&k, ifindex, dir, p.family, p.proto, p.saddr, p.daddr, p.sport, p.dport);
	e = ct_lookup(&k);
	if (e && e->expires > now) {
		ct_revalidate(&k, e, port, dir);
		if (e->state == CT_CUT)
			return DROP_SG_FLOW_CUT;
		seen = e->seen | ct_seen(&p, dir, e->opener);
		now += ct_timeout(p.proto, seen);
		if (seen != e->seen || now > e->expires + CT_REFRESH) {
			e->seen = seen;
			e->expires = now;
		}
		sg_count(dir, SG_EV_ESTABLISHED);
		return 0;
	}
	if (p.icmp_error) {
		/* The quoted packet went the other way round: in its tuple the
		 * VM's side is the source for an error coming in. An error about
		 * a flow is as good as the flow: re-checked as it was opened
		 * after a policy change, it relates while the flow may go on
		 * (a PMTU error must not wait for the flow's next packet). */
		struct ct_key ik = {};
		struct ct_entry *ie;

		ct_key_of(&ik, ifindex, dir == SG_EGRESS ? SG_INGRESS : SG_EGRESS, p.family, p.inner_proto, p.inner_saddr,
			  p.inner_daddr, p.inner_sport, p.inner_dport);
		ie = ct_lookup(&ik);
		if (ie && ie->expires > now)
			ct_revalidate(&ik, ie, port, dir);
		if (ie && ie->expires > now && ie->state == CT_OPEN) {
			sg_count(dir, SG_EV_RELATED);
			return 0;
		}
	}
	if (!sg_allows(port->policy, dir, p.family, remote, p.proto, p.l4)) {
		sg_count(dir, SG_EV_DENIED);
		return deny;
	}
	/* ICMP other than echo opens no flow (nor does it in conntrack): it
	 * carries no identifier, so a flow of one message would let every
	 * other non-echo type between the two addresses through, both ways,
	 * whatever types the rules allow. The rules alone decide it. */
	if (icmp_proto(p.family, p.proto) && !icmp_is_echo(p.family, bpf_ntohs(p.l4) >> 8)) {
		sg_count(dir, SG_EV_STATELESS);
		return 0;
	}
	/* Only an allowed packet creates state; TCP is picked up mid-stream. */
	fresh.generation = port->generation;
	fresh.opener = dir;
	fresh.state = CT_OPEN;
	fresh.opener_l4 = p.l4;
	fresh.seen = ct_seen(&p, dir, dir);
	if (p.proto == IPPROTO_TCP && !((p.tcp_flags & TCP_F_SYN) && !(p.tcp_flags & TCP_F_ACK)))
		fresh.seen |= CT_REPLIED; /* mid-stream: established already */
	fresh.expires = now + ct_timeout(p.proto, fresh.seen);
	if (ct_create(&k, &fresh))
		sg_count(dir, SG_EV_CT_FULL);
	else
		sg_count(dir, SG_EV_NEW);
	return 0;
}

#endif
