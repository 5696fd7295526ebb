//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* vxdp vxlan program: TC ingress of each vxlan-<VNI> device, i.e. every
 * frame the kernel decapsulated, however the outer packet reached the
 * kernel's VXLAN socket (the uplink program passed it, it came in on
 * another interface, to a broadcast or another local address, with VLAN
 * tags or IP options, as fragments, with a UDP checksum).
 *
 * The tunnel source and destination come from the tunnel metadata the
 * kernel attaches (the agent installs a tun_id rule so it does for every
 * vxlan device). VXLAN from a VTEP not registered for the VNI, or not to
 * local_ip, is dropped: no frame enters a tenant network unless its
 * source is a VTEP registered for it. A frame for a local port is then
 * redirected to its tap, skipping the bridge; GRO has already aggregated
 * TCP, so a VM receives what the kernel path would give it. */
#include "abi.h"
#include "maps.h"
#include "parse.h"
#include "verdict.h"
#include "fdb.h"
#include "monitor.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline enum vxdp_reason decide(struct __sk_buff *skb, __u32 *vni_out)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = header_at(struct ethhdr, data, data_end);
	const struct vxdp_config *cfg = get_config();
	struct bpf_tunnel_key tk = {};
	struct port_info *port;
	struct net_info *net;
	struct vni_addr vtep;
	__u32 vni, ifindex = 0;
	enum vxdp_reason r;
	int ipv6;

	if (!cfg)
		return DROP_NO_TUNNEL_INFO;
	ipv6 = cfg->flags & CFG_F_UNDERLAY_IPV6;
	if (bpf_skb_get_tunnel_key(skb, &tk, sizeof(tk), ipv6 ? BPF_F_TUNINFO_IPV6 : 0))
		return DROP_NO_TUNNEL_INFO;
	mon_note_tunnel(cfg, &tk, ipv6);
	vni = tk.tunnel_id;
	*vni_out = vni;
	net = bpf_map_lookup_elem(&networks, &vni);
	if (!net)
		return DROP_VNI_UNKNOWN;
	if (net->kind != NET_VXLAN || net->dev_ifindex != skb->ifindex)
		return DROP_VNI_MISMATCH;
	if (ipv6) {
		struct vni_addr6 vtep6 = { .vni = vni };

		/* The tunnel key holds IPv6 addresses in network order. */
		__builtin_memcpy(vtep6.addr, tk.remote_ipv6, sizeof(vtep6.addr));
		if (!bpf_map_lookup_elem(&vteps6, &vtep6))
			return DROP_VTEP_UNKNOWN;
		if (!ipv6_equal((const struct in6_addr *)tk.local_ipv6, cfg->local_ip6))
			return DROP_NOT_LOCAL;
	} else {
		vtep.vni = vni;
		vtep.addr = bpf_htonl(tk.remote_ipv4);
		if (!bpf_map_lookup_elem(&vteps, &vtep))
			return DROP_VTEP_UNKNOWN;
		if (bpf_htonl(tk.local_ipv4) != cfg->local_ip)
			return DROP_NOT_LOCAL;
	}
	if (!eth)
		return DROP_RUNT;
	if (mac_is_local_port(vni, eth->h_source))
		return DROP_INNER_SRC_LOCAL;
	/* The bridge would hand it to the vxlan device's own stack. */
	if (mac_is_link_local(eth->h_dest))
		return DROP_LINK_LOCAL_DST;
	if (!forwarding(cfg))
		return PASS_KERNEL_FORWARDING;

	if (mac_is_multicast(eth->h_dest))
		return PASS_INNER_BUM;
	r = local_target(vni, eth->h_dest, &ifindex, &port, PASS_INNER_FDB_MISS);
	if (r)
		return r;
	/* The tap's deliver program applies the port's security groups. */
	bpf_redirect(ifindex, 0);
	return REDIRECT_LOCAL;
}

SEC("tc")
int vxdp_vxlan(struct __sk_buff *skb)
{
	__u32 len = skb->len, vni = 0;
	const struct vxdp_config *cfg = get_config();
	int mon = monitoring(cfg);
	enum vxdp_reason r;

	if (mon)
		mon_before_skb(skb);
	r = decide(skb, &vni);
	return tc_exit(skb, cfg, mon, VXDP_PROG_VXLAN, r, vni, len);
}
