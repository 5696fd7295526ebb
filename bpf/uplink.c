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

#ifndef ENODATA
#define ENODATA 61
#endif

/* Whether the packet at l3off (of ethertype proto) is TCP over IPv4 or
 * IPv6 without extension headers: what GRO merges. */
static __always_inline int l3_is_tcp(void *data, void *data_end, __be16 proto, __u32 l3off)
{
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = header_at(struct iphdr, data + l3off, data_end);

		return ip && ip->protocol == IPPROTO_TCP;
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = header_at(struct ipv6hdr, data + l3off, data_end);

		return ip6 && ip6->nexthdr == IPPROTO_TCP;
	}
	return 0;
}

/* The checks every frame for a local port passes in XDP, decapsulated or
 * from a provider network: the target port (of seg), TCP left to the
 * kernel's GRO, the port's security groups (the frame never passes the
 * tap's deliver program), and the devmap redirect, resolved before the
 * caller touches the frame: the lookup and the redirect are one step, so a
 * port leaving tx_ports in between cannot turn into XDP_ABORTED after the
 * frame changed (XDP_PASS in the low bits is the verdict when the key is
 * missing). Returns 0 when the frame is redirected once the caller strips
 * what comes before eth. */
static __always_inline enum vxdp_reason to_local_port(void *data, void *data_end, const __u8 *dst, __be16 proto,
						      __u32 l3off, __u32 seg, enum vxdp_reason miss)
{
	struct port_info *port;
	__u32 ifindex = 0;
	enum vxdp_reason r;

	/* At most 14 + 22 + 20 + 8 + 8 (VXLAN) or 18 (a tag): the mask
	 * only tells the verifier. */
	l3off &= 0x7f;
	r = local_target(seg, dst, &ifindex, &port, miss);
	if (r)
		return r;
	if (l3_is_tcp(data, data_end, proto, l3off))
		return PASS_TCP_GRO;
	if (port->flags & PORT_F_SG) {
		if (eth_is_vlan(proto))
			return PASS_INNER_TAGGED;
		if (proto == bpf_htons(ETH_P_IP) || proto == bpf_htons(ETH_P_IPV6)) {
			r = sg_check(data, data_end, l3off, proto, ifindex, port, SG_INGRESS);
			if (r)
				return r;
		}
	}
	if (bpf_redirect_map(&tx_ports, ifindex, XDP_PASS) != XDP_REDIRECT)
		return PASS_NO_TXPORT;
	return 0;
}

/* A VLAN tag the driver took out of the frame (hardware VLAN stripping,
 * or a veth peer's out-of-band tag): 1 with *vid set, 0 when there is
 * none, -1 when the driver cannot say. Only a program bound to its device
 * (VXDP_DEV_BOUND, loaded per interface) may ask the driver; the unbound
 * build (generic XDP, drivers that refuse bound programs, tests) assumes
 * tags stay in the frame. */
#ifdef VXDP_DEV_BOUND
extern int bpf_xdp_metadata_rx_vlan_tag(const struct xdp_md *ctx, __be16 *vlan_proto, __u16 *vlan_tci) __ksym;

static __always_inline int stripped_tag(struct xdp_md *ctx, __u16 *vid)
{
	__be16 proto = 0;
	__u16 tci = 0;
	int err = bpf_xdp_metadata_rx_vlan_tag(ctx, &proto, &tci);

	if (!err) {
		*vid = tci & VLAN_VID_MASK;
		return 1;
	}
	return err == -ENODATA ? 0 : -1;
}
#else
static __always_inline int stripped_tag(struct xdp_md *ctx __attribute__((unused)), __u16 *vid __attribute__((unused)))
{
	return 0;
}
#endif

/* A frame of a provider network served here: tagged (in the frame, or by
 * the driver) with a VLAN id of this interface, or untagged on an
 * interface with a flat network (only when the driver can say it took no
 * tag out). Returns 0 when the frame is no provider network's (the caller
 * goes on with VXLAN), else the reason; REDIRECT_FROM_PROVIDER once the
 * frame is untagged and redirected to the tap. */
static __always_inline enum vxdp_reason from_provider(struct xdp_md *ctx, const struct vxdp_config *cfg,
						      const struct l3 *l3, int stripped, __u16 stripped_vid, __u32 *seg_out)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = header_at(struct ethhdr, data, data_end);
	struct provider_key k = { .ifindex = ctx->ingress_ifindex };
	struct net_info *net;
	__u32 *seg, tag = 0;
	enum vxdp_reason r;

	if (!eth)
		return 0;
	if (stripped > 0) {
		k.vlan = stripped_vid;
	} else if (l3->tags) {
		k.vlan = l3->vid;
		tag = sizeof(struct vlanhdr);
	} else if (stripped < 0) {
		return 0; /* untagged, or a tag the driver hides: not ours to say */
	}
	seg = bpf_map_lookup_elem(&provider_in, &k);
	if (!seg)
		return 0;
	/* An untagged frame on a flat network's interface is the network's
	 * only when it is for one of its ports (or a broadcast); anything else
	 * may be the host's (VXLAN to local_ip, ARP). */
	if (!k.vlan && !mac_is_multicast(eth->h_dest) && !mac_is_local_port(*seg, eth->h_dest))
		return 0;
	*seg_out = *seg;
	net = bpf_map_lookup_elem(&networks, seg);
	if (!net || net->kind == NET_VXLAN || net->phys_ifindex != k.ifindex)
		return DROP_VNI_MISMATCH;
	if (mac_is_local_port(*seg, eth->h_source))
		return DROP_INNER_SRC_LOCAL;
	if (link_local_ip(eth->h_dest, l3->proto))
		return DROP_LINK_LOCAL_DST;
	if (!forwarding(cfg))
		return PASS_KERNEL_FORWARDING;
	if (mac_is_multicast(eth->h_dest))
		return PASS_PROVIDER_BUM;
	if (tag) {
		struct vlanhdr *vh = header_at(struct vlanhdr, eth + 1, data_end);

		if (!vh)
			return PASS_PROVIDER_FDB_MISS;
		if (eth_is_vlan(vh->encap_proto))
			return PASS_INNER_TAGGED;
		r = to_local_port(data, data_end, eth->h_dest, vh->encap_proto, ETH_HLEN + tag, *seg, PASS_PROVIDER_FDB_MISS);
	} else {
		r = to_local_port(data, data_end, eth->h_dest, eth->h_proto, ETH_HLEN, *seg, PASS_PROVIDER_FDB_MISS);
	}
	if (r)
		return r;
	if (tag) {
		__u8 macs[2 * ETH_ALEN];

		__builtin_memcpy(macs, eth, sizeof(macs));
		if (bpf_xdp_adjust_head(ctx, sizeof(struct vlanhdr)))
			return PASS_DECAP_FAILED;
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		if (data + sizeof(macs) > data_end)
			return PASS_DECAP_FAILED;
		__builtin_memcpy(data, macs, sizeof(macs));
	}
	return REDIRECT_FROM_PROVIDER;
}

/* VXLAN comes in on the tunnel interface only. The program also runs on
 * provider networks' physical interfaces, whose hosts the underlay's
 * VTEP check cannot vouch for: the kernel's VXLAN socket is bound to any
 * address and would take VXLAN to local_ip arriving there, and XDP runs
 * before rp_filter. */
static __always_inline int on_uplink(const struct xdp_md *ctx, const struct vxdp_config *cfg)
{
	return ctx->ingress_ifindex == cfg->uplink_ifindex;
}

/* vxdp_udp6_csum sums the len bytes at off of the frame onto seed (the
 * pseudo-header's sum) and reports whether the UDP checksum they hold is
 * right: IPv6 has no header checksum, so this is also what vouches for
 * the source address. bpf_csum_diff takes 512- then 64-byte chunks, then
 * 32 down to 4; the last bytes go by hand. A global function: the verifier checks it once,
 * apart from the program's paths. */
#define CSUM_CHUNKS 18 /* 512-byte chunks: a 9000-byte jumbo frame */

__attribute__((noinline)) int vxdp_udp6_csum(struct xdp_md *ctx, __u32 off, __u32 len, __u32 seed)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *p = data + (off & 0x7f);
	__u64 acc = seed;
	__s64 sum;

	for (int i = 0; i < CSUM_CHUNKS; i++) {
		if (len < 512)
			break;
		if ((void *)(p + 512) > data_end)
			return 0;
		sum = bpf_csum_diff(0, 0, (__be32 *)p, 512, 0);
		if (sum < 0)
			return 0;
		acc += (__u64)sum;
		p += 512;
		len -= 512;
	}
	for (int i = 0; i < 8; i++) {
		if (len < 64)
			break;
		if ((void *)(p + 64) > data_end)
			return 0;
		sum = bpf_csum_diff(0, 0, (__be32 *)p, 64, 0);
		if (sum < 0)
			return 0;
		acc += (__u64)sum;
		p += 64;
		len -= 64;
	}
#pragma unroll
	for (__u32 size = 32; size >= 4; size /= 2) {
		if (len >= size) {
			if ((void *)(p + size) > data_end)
				return 0;
			sum = bpf_csum_diff(0, 0, (__be32 *)p, size, 0);
			if (sum < 0)
				return 0;
			acc += (__u64)sum;
			p += size;
			len -= size;
		}
	}
	/* In memory order, trailing bytes are a word padded with zeros. */
	if (len >= 2) {
		if ((void *)(p + 2) > data_end)
			return 0;
		acc += *(__u16 *)p;
		p += 2;
		len -= 2;
	}
	if (len) {
		if ((void *)(p + 1) > data_end)
			return 0;
		acc += *p;
	}
	acc = (acc & 0xffffffff) + (acc >> 32);
	acc = (acc & 0xffffffff) + (acc >> 32);
	acc = (acc & 0xffff) + (acc >> 16);
	acc = (acc & 0xffff) + (acc >> 16);
	acc = (acc & 0xffff) + (acc >> 16);
	return acc == 0xffff;
}

/* The sum of an IPv6 UDP pseudo-header (addresses, length, next header),
 * in memory order, folded to 32 bits; 0 on failure. */
static __always_inline __u32 udp6_pseudo_sum(const struct ipv6hdr *ip6, __u32 len)
{
	__s64 sum = bpf_csum_diff(0, 0, (__be32 *)&ip6->saddr, 2 * sizeof(struct in6_addr), 0);
	__u64 acc;

	if (sum < 0)
		return 0;
	acc = (__u64)(__u32)sum + bpf_htonl(len) + bpf_htonl(IPPROTO_UDP);
	return (__u32)((acc & 0xffffffff) + (acc >> 32));
}

/* VXLAN over an IPv6 underlay (CFG_F_UNDERLAY_IPV6): the checks of the
 * IPv4 path, with the UDP checksum (mandatory over IPv6) verified before
 * a frame is decapsulated in XDP; anything unusual goes to the kernel,
 * whose decapsulation the vxlan program checks. */
static __always_inline enum vxdp_reason decide6(struct xdp_md *ctx, const struct vxdp_config *cfg, __u32 l3off,
						__u32 *vni_out)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ipv6hdr *ip6;
	struct udphdr *udp;
	struct vxlanhdr *vx;
	struct ethhdr *inner;
	struct vni_addr6 vtep = {};
	__u32 vni, len;
	enum vxdp_reason r;

	if (l3off > 22)
		return PASS_MALFORMED;
	ip6 = header_at(struct ipv6hdr, data + l3off, data_end);
	if (!ip6 || ip6->version != 6)
		return PASS_MALFORMED;
	if (ip6->nexthdr != IPPROTO_UDP)
		return PASS_NOT_UDP; /* extension headers too: the kernel's */
	udp = (struct udphdr *)(ip6 + 1);
	if (!header_at(struct udphdr, udp, data_end))
		return PASS_MALFORMED;
	if (udp->dest != cfg->vxlan_port)
		return PASS_NOT_VXLAN;
	if (!on_uplink(ctx, cfg))
		return DROP_NOT_UPLINK;
	len = bpf_ntohs(ip6->payload_len);
	vx = (struct vxlanhdr *)(udp + 1);
	inner = (struct ethhdr *)(vx + 1);
	if ((void *)(inner + 1) > data_end || (void *)udp + len != data_end || bpf_ntohs(udp->len) != len)
		return DROP_VXLAN_TRUNCATED;
	if (vx->vx_flags != bpf_htonl(VXLAN_HF_VNI) || (vx->vx_vni & bpf_htonl(0xff)))
		return DROP_VXLAN_FLAGS;
	vni = bpf_ntohl(vx->vx_vni) >> 8;
	*vni_out = vni;
	vtep.vni = vni;
	__builtin_memcpy(vtep.addr, &ip6->saddr, sizeof(vtep.addr));
	if (!bpf_map_lookup_elem(&vteps6, &vtep))
		return bpf_map_lookup_elem(&networks, &vni) ? DROP_VTEP_UNKNOWN : PASS_VNI_UNKNOWN;
	if (!ipv6_equal(&ip6->daddr, cfg->local_ip6))
		return DROP_NOT_LOCAL;
	if (mac_is_local_port(vni, inner->h_source))
		return DROP_INNER_SRC_LOCAL;
	/* A zero checksum is the kernel's to accept (udp6zerocsumrx) or drop. */
	if (!udp->check)
		return PASS_UDP_CSUM;
	if (!forwarding(cfg))
		return PASS_KERNEL_FORWARDING;
	if (mac_is_multicast(inner->h_dest))
		return PASS_INNER_BUM;
	r = to_local_port(data, data_end, inner->h_dest, inner->h_proto, (void *)(inner + 1) - data, vni, PASS_INNER_FDB_MISS);
	if (r)
		return r;
	if (!vxdp_udp6_csum(ctx, (void *)udp - data, len, udp6_pseudo_sum(ip6, len)))
		return DROP_UDP_CSUM;
	if (bpf_xdp_adjust_head(ctx, (int)((void *)inner - data)))
		return PASS_DECAP_FAILED;
	return REDIRECT_LOCAL;
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
	struct vni_addr vtep;
	struct l3 l3 = {};
	__u32 vni;
	__u16 ip_len, stripped_vid = 0;
	enum vxdp_reason r;
	int parsed, stripped;

	if (!header_at(struct ethhdr, data, data_end))
		return PASS_MALFORMED;
	parsed = l3_of(data, data_end, &l3);
	cfg = get_config();
	stripped = stripped_tag(ctx, &stripped_vid);
	r = from_provider(ctx, cfg, &l3, stripped, stripped_vid, vni_out);
	if (r)
		return r;
	/* Priority tags (VLAN id 0) are stripped by the kernel before it
	 * decapsulates: look through them. Any other tag, in the frame or
	 * taken out by the driver, is for a VLAN device. */
	if (!parsed || !l3.vid_zero || (stripped > 0 && stripped_vid))
		return PASS_VLAN_TAGGED;
	if (cfg && (cfg->flags & CFG_F_UNDERLAY_IPV6))
		return l3.proto == bpf_htons(ETH_P_IPV6) ? decide6(ctx, cfg, l3.off, vni_out) : PASS_NOT_IPV4;
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
	if (!cfg || udp->dest != cfg->vxlan_port)
		return PASS_NOT_VXLAN;
	if (!on_uplink(ctx, cfg))
		return DROP_NOT_UPLINK;
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
	vx = (struct vxlanhdr *)(udp + 1);
	inner = (struct ethhdr *)(vx + 1);
	/* One bound check for both headers (a pointer-or-NULL per header
	 * compiles into something the verifier cannot follow). */
	if ((void *)(inner + 1) > data_end || (void *)ip + ip_len != data_end ||
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
	r = to_local_port(data, data_end, inner->h_dest, inner->h_proto, (void *)(inner + 1) - data, vni, PASS_INNER_FDB_MISS);
	if (r)
		return r;
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
