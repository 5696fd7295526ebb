//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* vxdp uplink program: XDP on the interface that holds local_ip.
 *
 * Only VXLAN addressed to local_ip:vxlan_port is touched. A frame of a VNI
 * served here, from a VTEP registered for that VNI, whose inner destination
 * is a local port, is decapsulated and redirected to that port's tap.
 * Inner broadcast/unknown frames are passed so the kernel vxlan device
 * floods them; VXLAN from an unregistered VTEP is dropped. Outer frames we
 * cannot parse are passed: they are not provably ours, and the kernel
 * handles or drops them. Frames provably for our VXLAN port that the kernel
 * vxlan device would reject (bad flags, truncation) are dropped. */
#include "vxdp.h"
#include "maps.h"
#include "parse.h"
#include "stats.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline int verdict(struct xdp_md *ctx, enum vxdp_reason reason, int action)
{
	count(VXDP_PROG_UPLINK, reason, ctx->data_end - ctx->data);
	return action;
}

/* Whether the outer IPv4 header checksum, options included, is right. A
 * header with options is copied out first: its length is not known to
 * the verifier, the copy's is. */
static __always_inline int ipv4_header_ok(struct xdp_md *ctx, const struct iphdr *ip)
{
	__u16 words[30] = {}; /* the largest header, 60 bytes; zeros add nothing */
	__u32 len = ip->ihl * 4;
	__u32 sum = 0;

	if (len == sizeof(*ip))
		return ipv4_csum(ip) == 0;
	if (len < sizeof(*ip) || len > sizeof(words) ||
	    bpf_xdp_load_bytes(ctx, sizeof(struct ethhdr), words, len))
		return 0;
#pragma unroll
	for (int i = 0; i < 30; i++)
		sum += words[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum == 0;
}

SEC("xdp")
int vxdp_uplink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = header_at(struct ethhdr, data, data_end);
	const struct vxdp_config *cfg;
	struct ethhdr *inner;
	struct vxlanhdr *vx;
	struct fdb_entry *dst;
	struct port_info *port;
	struct udphdr *udp;
	struct iphdr *ip;
	struct fdb_key key = {};
	struct vni_addr vtep;
	__u32 vni, ifindex;
	__u16 ip_len;
	int slow;

	if (!eth)
		return verdict(ctx, PASS_MALFORMED, XDP_PASS);
	if (eth_is_vlan(eth->h_proto))
		return verdict(ctx, PASS_VLAN, XDP_PASS);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return verdict(ctx, PASS_NOT_IPV4, XDP_PASS);
	ip = header_at(struct iphdr, eth + 1, data_end);
	if (!ip || ip->version != 4 || ip->ihl < 5)
		return verdict(ctx, PASS_MALFORMED, XDP_PASS);
	if (ip->protocol != IPPROTO_UDP)
		return verdict(ctx, PASS_NOT_UDP, XDP_PASS);
	cfg = get_config();
	if (!cfg || ip->daddr != cfg->local_ip)
		return verdict(ctx, PASS_NOT_LOCAL, XDP_PASS);
	/* A later fragment carries no UDP header; without its first fragment
	 * (checked below like any VXLAN frame) the kernel cannot reassemble it. */
	if (ip->frag_off & bpf_htons(IP_OFFSET))
		return verdict(ctx, PASS_FRAGMENT, XDP_PASS);
	udp = (struct udphdr *)((void *)ip + ip->ihl * 4);
	if (!header_at(struct udphdr, udp, data_end))
		return verdict(ctx, PASS_MALFORMED, XDP_PASS);
	if (udp->dest != cfg->vxlan_port)
		return verdict(ctx, PASS_NOT_VXLAN, XDP_PASS);
	/* The kernel drops a bad header checksum before any socket sees it;
	 * decapsulating would trust a corrupted source VTEP. Pass it so the
	 * kernel drops and counts it (InCsumErrors). */
	if (!ipv4_header_ok(ctx, ip))
		return verdict(ctx, PASS_MALFORMED, XDP_PASS);

	/* From here the frame is VXLAN to us: anything inconsistent is dropped,
	 * as the kernel vxlan socket would. Lengths must agree with the frame
	 * exactly so no trailing bytes ride along into the tenant network. A
	 * first fragment or a header with options is checked the same way up
	 * to the VTEP, then left to the kernel to reassemble and decapsulate:
	 * neither may carry VXLAN from an unregistered VTEP past this point. */
	slow = ipv4_is_fragment(ip) || ip->ihl != 5;
	ip_len = bpf_ntohs(ip->tot_len);
	vx = header_at(struct vxlanhdr, udp + 1, data_end);
	inner = (struct ethhdr *)((void *)udp + sizeof(*udp) + sizeof(*vx));
	if (!vx || !header_at(struct ethhdr, inner, data_end) || (void *)ip + ip_len != data_end ||
	    (!ipv4_is_fragment(ip) && bpf_ntohs(udp->len) != ip_len - ip->ihl * 4))
		return verdict(ctx, DROP_VXLAN_TRUNCATED, XDP_DROP);
	if (vx->vx_flags != bpf_htonl(VXLAN_HF_VNI) || (vx->vx_vni & bpf_htonl(0xff)))
		return verdict(ctx, DROP_VXLAN_FLAGS, XDP_DROP);

	vni = bpf_ntohl(vx->vx_vni) >> 8;
	if (!bpf_map_lookup_elem(&networks, &vni))
		return verdict(ctx, PASS_VNI_UNKNOWN, XDP_PASS);
	vtep.vni = vni;
	vtep.addr = ip->saddr;
	if (!bpf_map_lookup_elem(&vteps, &vtep))
		return verdict(ctx, DROP_VTEP_UNKNOWN, XDP_DROP);
	if (slow)
		return verdict(ctx, ipv4_is_fragment(ip) ? PASS_FRAGMENT : PASS_IP_OPTIONS, XDP_PASS);

	if (mac_is_multicast(inner->h_dest))
		return verdict(ctx, PASS_INNER_BUM, XDP_PASS);
	key.vni = vni;
	mac_copy(key.mac, inner->h_dest);
	dst = bpf_map_lookup_elem(&fdb, &key);
	if (!dst || !fdb_is(dst, FDB_LOCAL))
		return verdict(ctx, PASS_INNER_FDB_MISS, XDP_PASS);
	ifindex = dst->ifindex;
	port = bpf_map_lookup_elem(&ports, &ifindex);
	if (!port || port->vni != vni)
		return verdict(ctx, DROP_VNI_MISMATCH, XDP_DROP);
	/* Resolve the target before touching the frame: the devmap lookup
	 * and the redirect are one step, so a port leaving tx_ports between a
	 * check and the redirect cannot turn into XDP_ABORTED after decap.
	 * XDP_PASS in the low bits is the verdict when the key is missing. */
	if (bpf_redirect_map(&tx_ports, ifindex, XDP_PASS) != XDP_REDIRECT)
		return verdict(ctx, PASS_NO_TXPORT, XDP_PASS);

	/* Counted with the wire length, before the head moves. */
	__u64 wire_len = data_end - data;

	if (bpf_xdp_adjust_head(ctx, (int)((void *)inner - data)))
		return verdict(ctx, PASS_DECAP_FAILED, XDP_PASS);
	count(VXDP_PROG_UPLINK, REDIRECT_LOCAL, wire_len);
	return XDP_REDIRECT;
}
