/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* `vxdp monitor`: while someone listens (CFG_F_MONITOR_*), a program keeps
 * the first bytes of the frame on entry and, at its one exit, emits an
 * event with its decision and the frame before and after. While nobody
 * listens the cost is one flag test. */
#ifndef VXDP_MONITOR_H
#define VXDP_MONITOR_H

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
	if (before) {
		ev->before_len = before->len;
		__builtin_memcpy(ev->before, before->data, MON_SNAPLEN);
	}
	return ev;
}

static __always_inline void mon_before_skb(struct __sk_buff *skb)
{
	struct mon_frame *f = mon_scratch_frame();
	__u32 n = mon_snaplen(skb->len);

	if (!f)
		return;
	f->len = 0;
	if (!bpf_skb_load_bytes(skb, 0, f->data, n))
		f->len = n;
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
	n = mon_snaplen(skb->len);
	if (!bpf_skb_load_bytes(skb, 0, ev->after, n))
		ev->after_len = n;
	bpf_ringbuf_submit(ev, 0);
}

static __always_inline void mon_before_xdp(struct xdp_md *ctx)
{
	struct mon_frame *f = mon_scratch_frame();
	__u32 n = mon_snaplen(ctx->data_end - ctx->data);

	if (!f)
		return;
	f->len = 0;
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
