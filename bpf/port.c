//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* vxdp port program: TC ingress of a VM's tap, i.e. every frame the VM sends.
 *
 * Order of decisions: port lookup -> port security -> BUM / proxy ARP ->
 * FDB: local port (redirect to its tap) or remote port (VXLAN encapsulate
 * and redirect to the uplink). Anything vxdp does not handle itself goes to
 * the kernel bridge unchanged (TC_ACT_OK), which floods it with the l2pop
 * flood list or encapsulates it in the kernel vxlan device. */
#include "vxdp.h"
#include "maps.h"
#include "parse.h"
#include "stats.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* bpf2go -type only sees types that reach BTF: anchor the enums the Go side
 * uses (reason names for counters, program ids, FDB kinds). */
const enum vxdp_reason *btf_anchor_reason __attribute__((unused));
const enum vxdp_prog *btf_anchor_prog __attribute__((unused));
const enum fdb_kind *btf_anchor_fdb_kind __attribute__((unused));
const enum port_flag *btf_anchor_port_flag __attribute__((unused));

static __always_inline int verdict(struct __sk_buff *skb, enum vxdp_reason reason, int action)
{
	count(VXDP_PROG_PORT, reason, skb->len);
	return action;
}

/* Port security for an IPv4 or ARP sender address: the (port, addr) pair
 * must be a fixed IP or an allowed address pair of the port, bound to the
 * source MAC. 0.0.0.0 (DHCP discover, ARP probe) is allowed from the port's
 * own MAC. */
static __always_inline int addr_allowed(__u32 ifindex, __be32 addr, const __u8 *src_mac,
					const struct port_info *port)
{
	struct port_addr_key key = {
		.prefixlen = 64,
		.ifindex = ifindex,
		.addr = addr,
	};
	struct mac_value *mac;

	if (addr == 0)
		return mac_equal(src_mac, port->mac);
	mac = bpf_map_lookup_elem(&port_addrs, &key);
	return mac && mac_equal(mac->mac, src_mac);
}

/* Answer an ARP request for a remote port from the l2pop table by turning
 * the request into the reply in place. Returns 1 when answered. */
static __always_inline int proxy_arp(struct __sk_buff *skb, struct ethhdr *eth, struct arp_eth *req,
				     __u32 vni)
{
	struct vni_addr key = { .vni = vni, .addr = req->tpa };
	struct mac_value *target;
	__be32 tpa = req->tpa;

	if (req->op != bpf_htons(ARP_OP_REQUEST) || req->spa == req->tpa)
		return 0; /* replies and gratuitous ARP go to the bridge */
	target = bpf_map_lookup_elem(&arp, &key);
	if (!target)
		return 0;

	mac_copy(eth->h_dest, eth->h_source);
	mac_copy(eth->h_source, target->mac);
	req->op = bpf_htons(ARP_OP_REPLY);
	mac_copy(req->tha, req->sha);
	req->tpa = req->spa;
	mac_copy(req->sha, target->mac);
	req->spa = tpa;
	return 1;
}

static __always_inline __u16 next_ip_id(void)
{
	__u32 zero = 0;
	__u32 *id = bpf_map_lookup_elem(&ip_id, &zero);

	if (!id)
		return 0;
	return (__u16)(*id)++;
}

/* VXLAN-encapsulate the frame to vtep the way the kernel vxlan device does
 * (srcport from the inner flow hash, UDP checksum 0, TTL from config, DF
 * clear), then hand it to the neighbour subsystem on the uplink. Returns a
 * TC action, or -1 with the frame unchanged when it cannot be done. */
static __always_inline int encap_vxlan(struct __sk_buff *skb, const struct vxdp_config *cfg, __u32 vni,
				       __be32 vtep)
{
	const __u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 |
			    BPF_F_ADJ_ROOM_ENCAP_L4_UDP | BPF_F_ADJ_ROOM_ENCAP_L2_ETH |
			    BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN);
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = header_at(struct ethhdr, data, data_end);
	struct vxlan_encap h = {};
	struct iphdr ip = {};
	__u32 inner_len = skb->len;
	__u32 hash, range;

	if (!eth)
		return -1;
	h.inner_eth = *eth;

	/* udp_flow_src_port(): hash of the inner flow scaled into the range. */
	hash = bpf_get_hash_recalc(skb);
	hash ^= hash << 16;
	range = (__u32)cfg->src_port_max - cfg->src_port_min;
	h.udp.source = bpf_htons((__u16)(((__u64)hash * range) >> 32) + cfg->src_port_min);

	if (bpf_skb_adjust_room(skb, VXLAN_ENCAP_ROOM, BPF_ADJ_ROOM_MAC, flags))
		return -1;

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
		return TC_ACT_SHOT; /* room already added: the frame is no longer intact */
	return bpf_redirect_neigh(cfg->uplink_ifindex, NULL, 0, 0);
}

SEC("tc")
int vxdp_port(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = header_at(struct ethhdr, data, data_end);
	const struct vxdp_config *cfg;
	struct port_info *port, *dst_port;
	struct fdb_entry *dst;
	struct fdb_key key = {};
	__u32 ifindex = skb->ifindex;
	int action;

	port = bpf_map_lookup_elem(&ports, &ifindex);
	if (!port)
		return verdict(skb, PASS_PORT_UNKNOWN, TC_ACT_OK);
	if (!eth)
		return verdict(skb, DROP_RUNT, TC_ACT_SHOT);

	/* Port security comes before every pass to the kernel bridge, VLAN
	 * included: a tagged frame from a spoofed MAC would otherwise poison
	 * the bridge's FDB. An in-band tag is checked by source MAC only (the
	 * else branch); an offloaded tag leaves the inner header after eth. */
	if (port->flags & PORT_F_SECURITY) {
		if (eth->h_proto == bpf_htons(ETH_P_IP)) {
			struct iphdr *ip = header_at(struct iphdr, eth + 1, data_end);

			if (!ip)
				return verdict(skb, DROP_MALFORMED_IP, TC_ACT_SHOT);
			if (!addr_allowed(ifindex, ip->saddr, eth->h_source, port))
				return verdict(skb, mac_equal(eth->h_source, port->mac) ? DROP_SPOOF_IP : DROP_SPOOF_MAC,
					       TC_ACT_SHOT);
		} else if (eth->h_proto == bpf_htons(ETH_P_ARP)) {
			struct arp_eth *arp = header_at(struct arp_eth, eth + 1, data_end);

			/* Only the Ethernet/IPv4 layout has sha/spa where we look. */
			if (!arp || !arp_is_eth_ipv4(arp))
				return verdict(skb, DROP_MALFORMED_IP, TC_ACT_SHOT);
			if (!mac_equal(arp->sha, eth->h_source) ||
			    !addr_allowed(ifindex, arp->spa, eth->h_source, port))
				return verdict(skb, DROP_SPOOF_ARP, TC_ACT_SHOT);
		} else if (!mac_equal(eth->h_source, port->mac)) {
			return verdict(skb, DROP_SPOOF_MAC, TC_ACT_SHOT);
		}
	}
	if (skb->vlan_present || eth_is_vlan(eth->h_proto))
		return verdict(skb, PASS_VLAN, TC_ACT_OK);

	if (mac_is_multicast(eth->h_dest)) {
		if (eth->h_proto == bpf_htons(ETH_P_ARP)) {
			struct arp_eth *arp = header_at(struct arp_eth, eth + 1, data_end);

			if (arp && arp_is_eth_ipv4(arp) && proxy_arp(skb, eth, arp, port->vni)) {
				count(VXDP_PROG_PORT, TX_ARP_REPLY, skb->len);
				return bpf_redirect(ifindex, 0);
			}
		}
		return verdict(skb, PASS_BUM, TC_ACT_OK);
	}

	key.vni = port->vni;
	mac_copy(key.mac, eth->h_dest);
	dst = bpf_map_lookup_elem(&fdb, &key);
	if (!dst)
		return verdict(skb, PASS_FDB_MISS, TC_ACT_OK);

	if (fdb_is(dst, FDB_LOCAL)) {
		if (dst->ifindex == ifindex)
			return verdict(skb, PASS_HAIRPIN, TC_ACT_OK);
		/* The FDB key already carries the VNI; re-check the target so a
		 * stale entry can never cross tenants. */
		dst_port = bpf_map_lookup_elem(&ports, &dst->ifindex);
		if (!dst_port || dst_port->vni != port->vni)
			return verdict(skb, DROP_VNI_MISMATCH, TC_ACT_SHOT);
		count(VXDP_PROG_PORT, REDIRECT_LOCAL, skb->len);
		return bpf_redirect(dst->ifindex, 0);
	}

	/* Anything but a well-formed remote entry is left to the kernel: an
	 * entry of another kind or without a VTEP would encapsulate to 0.0.0.0. */
	if (!fdb_is(dst, FDB_REMOTE) || !dst->vtep)
		return verdict(skb, PASS_FDB_MISS, TC_ACT_OK);

	/* Remote: bpf_skb_adjust_room only moves IP frames; ARP replies and
	 * other ethertypes take the kernel vxlan device. */
	if (skb->protocol != bpf_htons(ETH_P_IP) && skb->protocol != bpf_htons(ETH_P_IPV6))
		return verdict(skb, PASS_NOT_IP, TC_ACT_OK);
	/* Too big for the network, whole or (TSO/GSO) per segment, whose
	 * payload plus at least an IPv4 and a TCP header must fit: the kernel
	 * path then answers with ICMP fragmentation-needed or fragments. */
	if (skb->gso_size ? skb->gso_size + GSO_MIN_HEADERS > port->mtu : skb->len > (__u32)port->mtu + ETH_HLEN)
		return verdict(skb, PASS_TOO_BIG, TC_ACT_OK);
	cfg = get_config();
	if (!cfg || !cfg->uplink_ifindex)
		return verdict(skb, PASS_ENCAP_FAILED, TC_ACT_OK);

	__u32 len = skb->len;
	enum vxdp_reason reason = skb->gso_size ? REDIRECT_REMOTE_GSO : REDIRECT_REMOTE;

	action = encap_vxlan(skb, cfg, port->vni, dst->vtep);
	if (action < 0)
		return verdict(skb, PASS_ENCAP_FAILED, TC_ACT_OK);
	count(VXDP_PROG_PORT, action == TC_ACT_SHOT ? DROP_ENCAP_FAILED : reason, len);
	return action;
}
