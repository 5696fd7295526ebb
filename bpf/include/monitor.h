/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* `vxdp monitor`: while someone listens (CFG_F_MONITOR_*), a program keeps
 * the first bytes of the frame on entry and, at its one exit, emits an
 * event with its decision and the frame before and after, with what the
 * bytes do not show: a VLAN tag held outside them and the outer addresses
 * of a tunnel the kernel decapsulated. While nobody
 * listens the cost is one flag test. */
#ifndef VXDP_MONITOR_H
#define VXDP_MONITOR_H

#include <bpf/bpf_endian.h>
#include "maps.h"
#include "verdict.h"

static __always_inline int monitoring(const struct vxdp_config *cfg)
{
	return cfg && (cfg->flags & (CFG_F_MONITOR_DROPS | CFG_F_MONITOR_TRACE));
}

/* Whether this decision is wanted: every one when tracing, drops otherwise. */
static __always_inline int mon_wanted(const struct vxdp_config *cfg, enum vxdp_reason r)
{
	return (cfg->flags & CFG_F_MONITOR_TRACE) || reason_verdict(r) == VERDICT_DROP;
}

static __always_inline struct mon_frame *mon_scratch_frame(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&mon_scratch, &zero);
}

/* Bytes to copy of a frame of len: 1..MON_SNAPLEN, in a form the
 * verifier sees bounded (MON_SNAPLEN is a power of two). */
static __always_inline __u32 mon_snaplen(__u32 len)
{
	if (len > MON_SNAPLEN)
		len = MON_SNAPLEN;
	return ((len - 1) & (MON_SNAPLEN - 1)) + 1;
}

/* mon_event_start reserves an event and fills all but the frame after. */
static __always_inline struct mon_event *mon_event_start(enum vxdp_prog prog, enum vxdp_reason r, __u32 ifindex,
							 __u32 vni, __u32 len)
{
	struct mon_frame *before = mon_scratch_frame();
	struct mon_event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);

	if (!ev)
		return 0;
	ev->ts_ns = bpf_ktime_get_ns();
	ev->ifindex = ifindex;
	ev->vni = vni;
	ev->len = len;
	ev->reason = r;
	ev->prog = prog;
	ev->verdict = reason_verdict(r);
	ev->before_len = 0;
	ev->after_len = 0;
	ev->before_vlan_proto = 0;
	ev->before_vlan_tci = 0;
	ev->after_vlan_proto = 0;
	ev->after_vlan_tci = 0;
	ev->outer_family = 0;
	__builtin_memset(ev->pad, 0, sizeof(ev->pad));
	__builtin_memset(ev->outer_src, 0, sizeof(ev->outer_src));
	__builtin_memset(ev->outer_dst, 0, sizeof(ev->outer_dst));
	if (before) {
		ev->before_len = before->len;
		ev->before_vlan_proto = before->vlan_proto;
		ev->before_vlan_tci = before->vlan_tci;
		ev->outer_family = before->outer_family;
		__builtin_memcpy(ev->outer_src, before->outer_src, sizeof(ev->outer_src));
		__builtin_memcpy(ev->outer_dst, before->outer_dst, sizeof(ev->outer_dst));
		__builtin_memcpy(ev->before, before->data, MON_SNAPLEN);
	}
	return ev;
}

/* A new frame: forget the last one's notes. */
static __always_inline struct mon_frame *mon_frame_reset(void)
{
	struct mon_frame *f = mon_scratch_frame();

	if (!f)
		return 0;
	f->len = 0;
	f->vlan_proto = 0;
	f->vlan_tci = 0;
	f->outer_family = 0;
	return f;
}

static __always_inline void mon_before_skb(struct __sk_buff *skb)
{
	struct mon_frame *f = mon_frame_reset();
	__u32 n = mon_snaplen(skb->len);

	if (!f)
		return;
	if (skb->vlan_present) {
		f->vlan_proto = bpf_ntohs(skb->vlan_proto);
		f->vlan_tci = skb->vlan_tci;
	}
	if (!bpf_skb_load_bytes(skb, 0, f->data, n))
		f->len = n;
}

/* mon_note_tunnel records the outer addresses of a frame the kernel
 * decapsulated, which its bytes no longer show (ipv6: tk holds IPv6
 * addresses). Only while someone listens. */
static __always_inline void mon_note_tunnel(const struct vxdp_config *cfg, const struct bpf_tunnel_key *tk, int ipv6)
{
	struct mon_frame *f;
	__u32 src, dst;

	if (!monitoring(cfg))
		return;
	f = mon_scratch_frame();
	if (!f)
		return;
	if (ipv6) {
		/* In network order already. */
		f->outer_family = 6;
		__builtin_memcpy(f->outer_src, tk->remote_ipv6, sizeof(f->outer_src));
		__builtin_memcpy(f->outer_dst, tk->local_ipv6, sizeof(f->outer_dst));
		return;
	}
	f->outer_family = 4;
	src = bpf_htonl(tk->remote_ipv4);
	dst = bpf_htonl(tk->local_ipv4);
	__builtin_memcpy(f->outer_src, &src, sizeof(src));
	__builtin_memcpy(f->outer_dst, &dst, sizeof(dst));
}

static __always_inline void mon_emit_skb(struct __sk_buff *skb, const struct vxdp_config *cfg, enum vxdp_prog prog,
					 enum vxdp_reason r, __u32 vni, __u32 len)
{
	struct mon_event *ev;
	__u32 n;

	if (!mon_wanted(cfg, r))
		return;
	ev = mon_event_start(prog, r, skb->ifindex, vni, len);
	if (!ev)
		return;
	if (skb->vlan_present) {
		ev->after_vlan_proto = bpf_ntohs(skb->vlan_proto);
		ev->after_vlan_tci = skb->vlan_tci;
	}
	n = mon_snaplen(skb->len);
	if (!bpf_skb_load_bytes(skb, 0, ev->after, n))
		ev->after_len = n;
	bpf_ringbuf_submit(ev, 0);
}

/* The one counted exit of a TC program: the verdict's counter, the
 * monitor's event when one listens (mon), the TC action. */
static __always_inline int tc_exit(struct __sk_buff *skb, const struct vxdp_config *cfg, int mon, enum vxdp_prog prog,
				   enum vxdp_reason r, __u32 vni, __u32 len)
{
	count(prog, r, len);
	if (mon)
		mon_emit_skb(skb, cfg, prog, r, vni, len);
	return tc_action(r);
}

static __always_inline void mon_before_xdp(struct xdp_md *ctx)
{
	struct mon_frame *f = mon_frame_reset();
	__u32 n = mon_snaplen(ctx->data_end - ctx->data);

	if (!f)
		return;
	if (!bpf_xdp_load_bytes(ctx, 0, f->data, n))
		f->len = n;
}

static __always_inline void mon_emit_xdp(struct xdp_md *ctx, const struct vxdp_config *cfg, enum vxdp_reason r,
					 __u32 vni, __u32 len)
{
	struct mon_event *ev;
	__u32 n;

	if (!mon_wanted(cfg, r))
		return;
	ev = mon_event_start(VXDP_PROG_UPLINK, r, ctx->ingress_ifindex, vni, len);
	if (!ev)
		return;
	n = mon_snaplen(ctx->data_end - ctx->data);
	if (!bpf_xdp_load_bytes(ctx, 0, ev->after, n))
		ev->after_len = n;
	bpf_ringbuf_submit(ev, 0);
}

#endif
