/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* DHCP at the port: the port program answers its VM's DHCPv4 client
 * (RFC 2131) from the dhcp map, so a network needs no DHCP server. A port
 * without an entry (its subnet has DHCP off, or vxdp's DHCP is off) and
 * a message for another server go on to the network unchanged. */
#ifndef VXDP_DHCP_H
#define VXDP_DHCP_H

#include "maps.h"
#include "parse.h"

#define BOOTP_OFF (ETH_HLEN + sizeof(struct iphdr) + sizeof(struct udphdr)) /* no IP options */
#define DHCP_MAGIC 0x63825363
#define BOOTP_BROADCAST 0x8000
#define DHCP_OPTIONS_ITER 96 /* options (pads count) before a request counts as oversized */

enum dhcp_msg {
	DHCPDISCOVER = 1,
	DHCPOFFER = 2,
	DHCPREQUEST = 3,
	DHCPDECLINE = 4,
	DHCPACK = 5,
	DHCPNAK = 6,
	DHCPRELEASE = 7,
	DHCPINFORM = 8,
};

enum dhcp_option {
	DHCP_OPT_PAD = 0,
	DHCP_OPT_REQUESTED_IP = 50,
	DHCP_OPT_TYPE = 53,
	DHCP_OPT_SERVER_ID = 54,
	DHCP_OPT_END = 255,
};

/* The fixed part of a BOOTP message (RFC 951, RFC 2131 section 2). */
struct bootp {
	__u8 op;
	__u8 htype;
	__u8 hlen;
	__u8 hops;
	__be32 xid;
	__be16 secs;
	__be16 flags;
	__be32 ciaddr;
	__be32 yiaddr;
	__be32 siaddr;
	__be32 giaddr;
	__u8 chaddr[16];
	__u8 sname[64];
	__u8 file[128];
	__be32 magic;
} __attribute__((packed));

/* dhcp_options reads the options a server needs (53, 50, 54) up to END,
 * each with bpf_skb_load_bytes: its offset is checked when it runs, so
 * the verifier tracks no offset range and the walk stays verifiable
 * whatever the option lengths. Returns 0, or -1 when an option runs past
 * end or has the wrong length, END is missing, or the options (pads
 * included) outnumber DHCP_OPTIONS_ITER. */
static __always_inline int dhcp_options(struct __sk_buff *skb, __u32 off, __u32 end, struct dhcp_work *req)
{
	for (int i = 0; i < DHCP_OPTIONS_ITER; i++) {
		__u8 code, len;

		if (off >= end || bpf_skb_load_bytes(skb, off, &code, 1))
			return -1; /* no END */
		if (code == DHCP_OPT_END)
			return 0;
		if (code == DHCP_OPT_PAD) {
			off++;
			continue;
		}
		if (off + 2 > end || bpf_skb_load_bytes(skb, off + 1, &len, 1) || off + 2 + len > end)
			return -1;
		switch (code) {
		case DHCP_OPT_TYPE:
			if (len != 1 || bpf_skb_load_bytes(skb, off + 2, &req->type, 1))
				return -1;
			break;
		case DHCP_OPT_REQUESTED_IP:
			if (len != 4 || bpf_skb_load_bytes(skb, off + 2, &req->requested, 4))
				return -1;
			req->has_requested = 1;
			break;
		case DHCP_OPT_SERVER_ID:
			if (len != 4 || bpf_skb_load_bytes(skb, off + 2, &req->server, 4))
				return -1;
			req->has_server = 1;
			break;
		}
		off += 2 + len;
	}
	return -1;
}

/* The answer to a request: its message type, or 0 with *r the reason
 * when there is none. */
static __always_inline __u8 dhcp_answer(const struct dhcp_work *req, const struct dhcp_lease *lease,
					enum vxdp_reason *r)
{
	*r = 0;
	switch (req->type) {
	case DHCPDISCOVER:
		return DHCPOFFER;
	case DHCPREQUEST:
		if (req->has_server) /* SELECTING: answer the offer it took */
			return req->has_requested && req->requested == lease->yiaddr ? DHCPACK : DHCPNAK;
		if (req->has_requested) /* INIT-REBOOT */
			return req->requested == lease->yiaddr ? DHCPACK : DHCPNAK;
		if (req->ciaddr) /* RENEWING, REBINDING */
			return req->ciaddr == lease->yiaddr ? DHCPACK : DHCPNAK;
		*r = DROP_DHCP_MALFORMED;
		return 0;
	case DHCPINFORM:
		return DHCPACK;
	case DHCPDECLINE:
		*r = DROP_DHCP_DECLINE;
		return 0;
	default: /* RELEASE: the address stays the port's; server types */
		*r = DROP_DHCP_IGNORED;
		return 0;
	}
}

/* Whether the untagged IPv4 packet at data + ETH_HLEN is from a DHCP
 * client (UDP 68 -> 67, a whole packet or a first fragment). */
static __always_inline int is_dhcp_client(void *data, void *data_end)
{
	struct iphdr *ip = data + ETH_HLEN;
	struct udphdr *udp;

	if (!header_at(struct iphdr, ip, data_end) || ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(IP_OFFSET)))
		return 0;
	udp = (void *)ip + ip->ihl * 4;
	return header_at(struct udphdr, udp, data_end) && udp->source == bpf_htons(DHCP_CLIENT_PORT) &&
	       udp->dest == bpf_htons(DHCP_SERVER_PORT);
}

/* vxdp_dhcp answers a DHCP client message from a VM: called for an
 * untagged IPv4 UDP frame from port 68 to port 67 (the caller checked
 * as much). Returns 0 when the frame is not vxdp's to answer (it goes
 * on as any other), or the reason. A global function: the verifier
 * checks it once, apart from the port program's paths. */
__attribute__((noinline)) int vxdp_dhcp(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + ETH_HLEN;
	struct udphdr *udp;
	struct bootp *b;
	struct dhcp_work *req;
	struct dhcp_lease *lease;
	__u32 ifindex = skb->ifindex, zero = 0;
	__be32 dst;
	__u8 type, *opts;
	__u32 plen;
	enum vxdp_reason r;

	if (!header_at(struct iphdr, ip, data_end))
		return 0;
	lease = bpf_map_lookup_elem(&dhcp, &ifindex);
	if (!lease)
		return 0; /* DHCP is the kernel path's for this port */
	if (ip->daddr != 0xffffffff && ip->daddr != lease->server)
		return 0; /* unicast to another server */
	if (ip->ihl != 5 || (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
		return DROP_DHCP_MALFORMED;
	udp = (void *)(ip + 1);
	b = (void *)(udp + 1);
	if (!header_at(struct bootp, b, data_end) || bpf_ntohs(ip->tot_len) + ETH_HLEN > skb->len ||
	    bpf_ntohs(udp->len) != bpf_ntohs(ip->tot_len) - sizeof(*ip) ||
	    bpf_ntohs(udp->len) < sizeof(*udp) + sizeof(*b))
		return DROP_DHCP_MALFORMED;
	if (b->op != 1 || b->htype != 1 || b->hlen != ETH_ALEN || b->magic != bpf_htonl(DHCP_MAGIC))
		return DROP_DHCP_MALFORMED;
	/* The agent wrote the port's MAC as chaddr: the only client it knows. */
	if (!mac_equal(b->chaddr, lease->reply + __builtin_offsetof(struct bootp, chaddr)) || !mac_equal(eth->h_source, b->chaddr))
		return DROP_DHCP_UNKNOWN_CLIENT;
	if (b->giaddr)
		return DROP_DHCP_IGNORED; /* a relay inside a VM: not served */
	/* What outlives the rewrite, per CPU: the stack is the port program's. */
	req = bpf_map_lookup_elem(&dhcp_work, &zero);
	if (!req)
		return 0;
	__builtin_memset(req, 0, sizeof(*req));
	req->xid = b->xid;
	req->flags = b->flags;
	req->ciaddr = b->ciaddr;
	if (dhcp_options(skb, BOOTP_OFF + sizeof(*b), ETH_HLEN + bpf_ntohs(ip->tot_len), req) || !req->type)
		return DROP_DHCP_MALFORMED;
	/* A client that chose (or declines, or releases to) another server. */
	if (req->has_server && req->server != lease->server)
		return 0;
	type = dhcp_answer(req, lease, &r);
	if (!type)
		return r;
	/* ciaddr is echoed only to a client that has its address (RFC 2131
	 * table 3): an INFORM, a RENEWING or REBINDING request. */
	if (!(req->type == DHCPINFORM || (req->type == DHCPREQUEST && !req->has_requested && !req->has_server)))
		req->ciaddr = 0;

	/* RFC 2131 4.1 (no relay): a NAK is broadcast; an answer to a client
	 * with an address goes to it; else by the broadcast bit. */
	if (type == DHCPNAK || (!req->ciaddr && (req->flags & bpf_htons(BOOTP_BROADCAST))))
		dst = 0xffffffff;
	else
		dst = req->ciaddr ?: lease->yiaddr;

	plen = type == DHCPNAK ? DHCP_NAK_LEN : DHCP_PAYLOAD_LEN;
	if (bpf_skb_change_tail(skb, BOOTP_OFF + plen, 0))
		return 0; /* the frame is unchanged: it goes on */
	if (type == DHCPNAK ? bpf_skb_store_bytes(skb, BOOTP_OFF, lease->reply, DHCP_NAK_LEN, 0)
			    : bpf_skb_store_bytes(skb, BOOTP_OFF, lease->reply, DHCP_PAYLOAD_LEN, 0))
		return DROP_DHCP_FAILED;

	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (data + BOOTP_OFF + DHCP_NAK_LEN > data_end)
		return DROP_DHCP_FAILED;
	eth = data;
	if (dst == 0xffffffff)
		__builtin_memset(eth->h_dest, 0xff, ETH_ALEN);
	else
		mac_copy(eth->h_dest, lease->reply + __builtin_offsetof(struct bootp, chaddr));
	mac_copy(eth->h_source, lease->server_mac);
	eth->h_proto = bpf_htons(ETH_P_IP);

	ip = data + ETH_HLEN;
	*(__u16 *)ip = bpf_htons(0x4500); /* version 4, 20 bytes, TOS 0 */
	ip->tot_len = bpf_htons(sizeof(struct iphdr) + sizeof(struct udphdr) + plen);
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->check = 0;
	ip->saddr = lease->server;
	ip->daddr = dst;
	ip->check = ipv4_csum(ip);
	udp = (void *)(ip + 1);
	udp->source = bpf_htons(DHCP_SERVER_PORT);
	udp->dest = bpf_htons(DHCP_CLIENT_PORT);
	udp->len = bpf_htons(sizeof(struct udphdr) + plen);
	udp->check = 0; /* optional over IPv4; DHCP clients accept it */

	b = (void *)(udp + 1);
	b->xid = req->xid;
	b->flags = req->flags;
	b->ciaddr = req->ciaddr;
	if (type == DHCPNAK || req->type == DHCPINFORM)
		b->yiaddr = 0;
	opts = (__u8 *)b;
	opts[DHCP_OPT_MSG_TYPE] = type;
	if (req->type == DHCPINFORM) /* no lease for an address the VM has */
		__builtin_memset(opts + DHCP_OPT_LEASE, DHCP_OPT_PAD, DHCP_OPT_LEASE_LEN);
	if (type == DHCPNAK) {
		opts[DHCP_OPT_LEASE] = DHCP_OPT_END;
		__builtin_memset(opts + DHCP_OPT_LEASE + 1, 0, DHCP_NAK_LEN - DHCP_OPT_LEASE - 1);
	}
	bpf_redirect(ifindex, 0);
	return type == DHCPNAK ? TX_DHCP_NAK : TX_DHCP_REPLY;
}

#endif
