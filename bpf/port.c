//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* vxdp port program: TC ingress of a VM's tap, i.e. every frame the VM sends.
 *
 * Order of decisions: port lookup -> frames that must never reach the
 * kernel -> port security -> security groups (egress) -> BUM / proxy ARP
 * -> FDB: local port (redirect to its tap, whose deliver program applies
 * that port's groups) or remote port (VXLAN encapsulate and redirect to
 * the uplink). Anything vxdp does not handle itself goes to the kernel bridge
 * unchanged (TC_ACT_OK), which floods it with the l2pop flood list or
 * encapsulates it in the kernel vxlan device; the bridge program on the
 * bridge keeps it from the hypervisor's own stack. */
#include "abi.h"
#include "maps.h"
#include "parse.h"
#include "verdict.h"
#include "fdb.h"
#include "portsec.h"
#include "sg.h"
#include "dhcp.h"
#include "encap.h"
#include "monitor.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* bpf2go -type only sees types that reach BTF: anchor the enums the Go side
 * uses (reason names and programs for counters, FDB kinds, flags). */
const enum vxdp_reason *btf_anchor_reason __attribute__((unused));
const enum vxdp_reason_progs *btf_anchor_reason_progs __attribute__((unused));
const enum vxdp_prog *btf_anchor_prog __attribute__((unused));
const enum fdb_kind *btf_anchor_fdb_kind __attribute__((unused));
const enum port_flag *btf_anchor_port_flag __attribute__((unused));
const enum net_flag *btf_anchor_net_flag __attribute__((unused));
const enum net_kind *btf_anchor_net_kind __attribute__((unused));
const enum config_flag *btf_anchor_config_flag __attribute__((unused));
const enum addr_family *btf_anchor_addr_family __attribute__((unused));
const enum port_addr_kind *btf_anchor_port_addr_kind __attribute__((unused));
const enum sg_dir *btf_anchor_sg_dir __attribute__((unused));
const enum sg_event *btf_anchor_sg_event __attribute__((unused));
const enum ct_state *btf_anchor_ct_state __attribute__((unused));
const enum ct_tcp_seen *btf_anchor_ct_tcp_seen __attribute__((unused));
const struct mon_event *btf_anchor_mon_event __attribute__((unused));

/* Answer an ARP request for a remote port from the l2pop table by turning
 * the request into the reply in place. Returns 1 when answered. */
static __always_inline int proxy_arp(struct ethhdr *eth, struct arp_eth *req, __u32 vni)
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

/* Whether a frame is too big for the port's network, whole or (TSO/GSO)
 * per segment, whose payload plus at least an IPv4 and a TCP header must
 * fit: the kernel path then answers with ICMP fragmentation-needed or
 * fragments. */
static __always_inline int too_big(struct __sk_buff *skb, const struct port_info *port)
{
	return skb->gso_size ? skb->gso_size + GSO_MIN_HEADERS > port->mtu : skb->len > (__u32)port->mtu + ETH_HLEN;
}

/* Over an IPv6 underlay a remote port is reached through the network's
 * vxlan device, which encapsulates from its (l2pop) FDB: the outer UDP
 * checksum IPv6 requires needs the checksum offloads of the kernel's
 * UDP tunnel path, which a program cannot set up. The bridge is skipped. */
static __always_inline enum vxdp_reason to_vxlan_dev(struct __sk_buff *skb, const struct port_info *port)
{
	__u32 vni = port->vni;
	struct net_info *net = bpf_map_lookup_elem(&networks, &vni);

	if (!net || net->kind != NET_VXLAN || !net->dev_ifindex)
		return PASS_FDB_MISS;
	bpf_redirect(net->dev_ifindex, 0);
	return REDIRECT_REMOTE_KERNEL;
}

/* Send a frame to a remote port of the provider network seg: tagged with
 * its VLAN (a flat network's as it is) out of its physical interface. */
static __always_inline enum vxdp_reason to_provider(struct __sk_buff *skb, __u32 seg)
{
	struct net_info *net = bpf_map_lookup_elem(&networks, &seg);

	if (!net || net->kind == NET_VXLAN || !net->phys_ifindex)
		return PASS_FDB_MISS;
	if (net->kind == NET_VLAN && bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), net->vlan))
		return PASS_ENCAP_FAILED;
	bpf_redirect(net->phys_ifindex, 0);
	return REDIRECT_PROVIDER;
}

/* Where a checked, untagged frame goes: a broadcast (or a proxy ARP
 * answer), a local port, a remote port, or the kernel. */
static __always_inline enum vxdp_reason forward(struct __sk_buff *skb, const struct port_info *port,
						const struct vxdp_config *cfg)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = header_at(struct ethhdr, data, data_end);
	struct port_info *dst_port;
	struct fdb_entry *dst;
	__u32 ifindex = skb->ifindex;
	__u32 target;
	enum vxdp_reason r;

	if (!eth)
		return DROP_RUNT;
	if (mac_is_multicast(eth->h_dest)) {
		if (eth->h_proto == bpf_htons(ETH_P_ARP)) {
			struct arp_eth *req = header_at(struct arp_eth, eth + 1, data_end);

			if (req && arp_is_eth_ipv4(req) && proxy_arp(eth, req, port->vni)) {
				bpf_redirect(ifindex, 0);
				return TX_ARP_REPLY;
			}
		}
		return PASS_BUM;
	}

	dst = fdb_lookup(port->vni, eth->h_dest);
	if (!dst)
		return PASS_FDB_MISS;
	if (dst->kind == FDB_LOCAL) {
		target = dst->ifindex;
		if (target == ifindex)
			return PASS_HAIRPIN;
		/* The FDB key already carries the VNI; re-check the target so a
		 * stale entry can never cross tenants. */
		dst_port = bpf_map_lookup_elem(&ports, &target);
		if (!dst_port || dst_port->vni != port->vni || (dst_port->flags & PORT_F_DISABLED))
			return DROP_VNI_MISMATCH;
		bpf_redirect(target, 0);
		return REDIRECT_LOCAL;
	}

	if (dst->kind == FDB_PROVIDER)
		return too_big(skb, port) ? PASS_TOO_BIG : to_provider(skb, port->vni);
	if (dst->kind == FDB_REMOTE && (cfg->flags & CFG_F_UNDERLAY_IPV6))
		return to_vxlan_dev(skb, port);
	/* Anything but a well-formed remote entry is left to the kernel: an
	 * entry of another kind or without a VTEP would encapsulate to 0.0.0.0. */
	if (dst->kind != FDB_REMOTE || !dst->vtep)
		return PASS_FDB_MISS;
	/* bpf_skb_adjust_room only moves IP frames; ARP replies and other
	 * ethertypes take the kernel vxlan device. */
	if (skb->protocol != bpf_htons(ETH_P_IP) && skb->protocol != bpf_htons(ETH_P_IPV6))
		return PASS_NOT_IP;
	if (too_big(skb, port))
		return PASS_TOO_BIG;
	if (!cfg->uplink_ifindex)
		return PASS_ENCAP_FAILED;
	r = skb->gso_size ? REDIRECT_REMOTE_GSO : REDIRECT_REMOTE;
	return encap_vxlan(skb, cfg, port->vni, dst->vtep, skb->protocol) ?: r;
}

static __always_inline enum vxdp_reason decide(struct __sk_buff *skb, const struct port_info *port)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = header_at(struct ethhdr, data, data_end);
	const struct vxdp_config *cfg;
	struct l3 l3 = {};
	int parsed, tagged;
	enum vxdp_reason r;

	if (!port)
		return DROP_PORT_UNKNOWN;
	if (port->flags & PORT_F_DISABLED)
		return DROP_PORT_DISABLED;
	if (!eth)
		return DROP_RUNT;
	/* A bridge hands link-local group frames to the stack of the tap they
	 * came in on, i.e. to the hypervisor: never let one through. */
	if (mac_is_link_local(eth->h_dest))
		return DROP_LINK_LOCAL_DST;

	parsed = l3_of(data, data_end, &l3);
	tagged = skb->vlan_present || l3.tags;
	if (port->flags & PORT_F_SECURITY) {
		if (!parsed)
			return l3.tags == VLAN_MAX_TAGS ? DROP_VLAN : DROP_MALFORMED;
		r = port_security(skb, data, data_end, &l3, port);
		if (r)
			return r;
	}
	/* DHCP at the port: a network service, with or without port security. */
	if (!tagged && l3.proto == bpf_htons(ETH_P_IP) && is_dhcp_client(data, data_end)) {
		r = vxdp_dhcp(skb);
		if (r)
			return r;
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}
	/* Security groups, egress (PORT_F_SG implies port security). */
	if ((port->flags & PORT_F_SG) && (l3.proto == bpf_htons(ETH_P_IP) || l3.proto == bpf_htons(ETH_P_IPV6))) {
		r = sg_check(data, data_end, l3.off, l3.proto, skb->ifindex, port, SG_EGRESS);
		if (r)
			return r;
	}
	if (tagged)
		return PASS_VLAN;

	cfg = get_config();
	if (!forwarding(cfg))
		return PASS_KERNEL_FORWARDING;
	return forward(skb, port, cfg);
}

SEC("tc")
int vxdp_port(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	__u32 len = skb->len;
	struct port_info *port = bpf_map_lookup_elem(&ports, &ifindex);
	const struct vxdp_config *cfg = get_config();
	int mon = monitoring(cfg);
	enum vxdp_reason r;

	if (mon)
		mon_before_skb(skb);
	r = decide(skb, port);
	/* Until the tap is on its bridge a pass would hand the frame to the
	 * hypervisor's stack through the tap itself. */
	if (reason_verdict(r) == VERDICT_PASS && port && !(port->flags & PORT_F_BRIDGED))
		r = DROP_NOT_BRIDGED;
	return tc_exit(skb, cfg, mon, VXDP_PROG_PORT, r, port ? port->vni : 0, len);
}
