//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* vxdp uplink program: XDP on the interface that holds local_ip.
 *
 * VXLAN (UDP to the VXLAN port, to any address) of a VNI served here is
 * accepted only from a VTEP registered for that VNI and only to local_ip;
 * anything else of it is dropped. An accepted frame whose inner
 * destination is a local port is decapsulated and redirected to that
 * port's tap, except TCP, which the kernel's UDP-tunnel GRO aggregates
 * first (the vxlan program redirects the result, so a VM receives what
 * the kernel path would give it). Inner broadcast/unknown frames are
 * passed so the kernel vxlan device floods them. Outer frames that are
 * provably not VXLAN of ours are passed; the vxlan program on each
 * vxlan-<VNI> device checks whatever the kernel decapsulates, however it
 * got there. */
#include "abi.h"
#include "maps.h"
#include "parse.h"
#include "verdict.h"
#include "fdb.h"
#include "sg.h"
#include "monitor.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Whether an inner frame is TCP over IPv4 or IPv6 (no extension headers):
 * what UDP-tunnel GRO merges. */
static __always_inline int inner_is_tcp(struct ethhdr *inner, void *data_end)
{
	if (inner->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = header_at(struct iphdr, inner + 1, data_end);

		return ip && ip->protocol == IPPROTO_TCP;
	}
	if (inner->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = header_at(struct ipv6hdr, inner + 1, data_end);

		return ip6 && ip6->nexthdr == IPPROTO_TCP;
	}
	return 0;
}

static __always_inline enum vxdp_reason decide(struct xdp_md *ctx, __u32 *vni_out)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	const struct vxdp_config *cfg;
	struct ethhdr *inner;
	struct vxlanhdr *vx;
	struct udphdr *udp;
	struct iphdr *ip;
	struct port_info *port;
	struct vni_addr vtep;
	struct l3 l3 = {};
	__u32 vni, ifindex = 0;
	__u16 ip_len;
	enum vxdp_reason r;

	if (!header_at(struct ethhdr, data, data_end))
		return PASS_MALFORMED;
	/* Priority tags (VLAN id 0) are stripped by the kernel before it
	 * decapsulates: look through them. Any other tag is for a VLAN device. */
	if (!l3_of(data, data_end, &l3) || !l3.vid_zero)
		return PASS_VLAN_TAGGED;
	if (l3.proto != bpf_htons(ETH_P_IP))
		return PASS_NOT_IPV4;
	if (l3.off > 22)
		return PASS_MALFORMED; /* l3_of never goes further; the verifier wants the bound */
	ip = header_at(struct iphdr, data + l3.off, data_end);
	if (!ip || ip->version != 4 || ip->ihl < 5)
		return PASS_MALFORMED;
	if (ip->protocol != IPPROTO_UDP)
		return PASS_NOT_UDP;
	/* A later fragment carries no UDP header; without its first fragment
	 * (checked below like any VXLAN frame) the kernel cannot reassemble it. */
	if (ip->frag_off & bpf_htons(IP_OFFSET))
		return PASS_FRAGMENT;
	udp = (struct udphdr *)((void *)ip + ip->ihl * 4);
	if (!header_at(struct udphdr, udp, data_end))
		return PASS_MALFORMED;
	cfg = get_config();
	if (!cfg || udp->dest != cfg->vxlan_port)
		return PASS_NOT_VXLAN;
	/* A header with options is rare and slow: the kernel verifies and
	 * decapsulates it, and the vxlan program checks its VTEP. */
	if (ip->ihl != 5)
		return PASS_IP_OPTIONS;
	/* The kernel drops a bad header checksum before any socket sees it;
	 * decapsulating would trust a corrupted source VTEP. Pass it so the
	 * kernel drops and counts it (InCsumErrors). */
	if (ipv4_csum(ip))
		return PASS_MALFORMED;

	/* From here the frame is VXLAN: anything inconsistent is dropped, as
	 * the kernel vxlan socket would. Lengths must agree with the frame
	 * exactly so no trailing bytes ride along into the tenant network. A
	 * first fragment is checked the same way up to the VTEP, then left to
	 * the kernel to reassemble and decapsulate (and the vxlan program
	 * checks it again). */
	ip_len = bpf_ntohs(ip->tot_len);
	vx = header_at(struct vxlanhdr, udp + 1, data_end);
	inner = (struct ethhdr *)((void *)udp + sizeof(*udp) + sizeof(*vx));
	if (!vx || !header_at(struct ethhdr, inner, data_end) || (void *)ip + ip_len != data_end ||
	    (!ipv4_is_fragment(ip) && bpf_ntohs(udp->len) != ip_len - sizeof(*ip)))
		return DROP_VXLAN_TRUNCATED;
	if (vx->vx_flags != bpf_htonl(VXLAN_HF_VNI) || (vx->vx_vni & bpf_htonl(0xff)))
		return DROP_VXLAN_FLAGS;

	vni = bpf_ntohl(vx->vx_vni) >> 8;
	*vni_out = vni;
	/* A VTEP is registered only for a VNI served here: the network is
	 * looked up only to tell a foreign VNI (the kernel's) from a forgery. */
	vtep.vni = vni;
	vtep.addr = ip->saddr;
	if (!bpf_map_lookup_elem(&vteps, &vtep))
		return bpf_map_lookup_elem(&networks, &vni) ? DROP_VTEP_UNKNOWN : PASS_VNI_UNKNOWN;
	/* A registered VTEP sends to local_ip only; the kernel would also
	 * decapsulate VXLAN sent to a broadcast or any other local address. */
	if (ip->daddr != cfg->local_ip)
		return DROP_NOT_LOCAL;
	if (ipv4_is_fragment(ip))
		return PASS_FRAGMENT;
	if (mac_is_local_port(vni, inner->h_source))
		return DROP_INNER_SRC_LOCAL;
	/* Decapsulating would skip the checksum the kernel verifies. */
	if (udp->check)
		return PASS_UDP_CSUM;
	if (!forwarding(cfg))
		return PASS_KERNEL_FORWARDING;

	if (mac_is_multicast(inner->h_dest))
		return PASS_INNER_BUM;
	r = local_target(vni, inner->h_dest, &ifindex, &port, PASS_INNER_FDB_MISS);
	if (r)
		return r;
	if (inner_is_tcp(inner, data_end))
		return PASS_TCP_GRO;
	/* The frame never passes the tap's deliver program: its security
	 * groups are applied here. */
	if (port->flags & PORT_F_SG) {
		/* At most 22 + 20 + 8 + 8: the mask only tells the verifier. */
		__u32 off = ((void *)inner - data) & 0x7f;
		__be16 proto = inner->h_proto;

		if (eth_is_vlan(proto))
			return PASS_INNER_TAGGED;
		if (proto == bpf_htons(ETH_P_IP) || proto == bpf_htons(ETH_P_IPV6)) {
			r = sg_check(data, data_end, off + ETH_HLEN, proto, ifindex, port, SG_INGRESS);
			if (r)
				return r;
		}
	}
	/* Resolve the target before touching the frame: the devmap lookup
	 * and the redirect are one step, so a port leaving tx_ports between a
	 * check and the redirect cannot turn into XDP_ABORTED after decap.
	 * XDP_PASS in the low bits is the verdict when the key is missing. */
	if (bpf_redirect_map(&tx_ports, ifindex, XDP_PASS) != XDP_REDIRECT)
		return PASS_NO_TXPORT;
	if (bpf_xdp_adjust_head(ctx, (int)((void *)inner - data)))
		return PASS_DECAP_FAILED;
	return REDIRECT_LOCAL;
}

SEC("xdp")
int vxdp_uplink(struct xdp_md *ctx)
{
	/* Counted with the wire length, before any decapsulation. */
	__u32 len = ctx->data_end - ctx->data, vni = 0;
	const struct vxdp_config *cfg = get_config();
	int mon = monitoring(cfg);
	enum vxdp_reason r;

	if (mon)
		mon_before_xdp(ctx);
	r = decide(ctx, &vni);
	count(VXDP_PROG_UPLINK, r, len);
	if (mon)
		mon_emit_xdp(ctx, cfg, r, vni, len);
	return xdp_action(r);
}
