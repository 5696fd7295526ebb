/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The one exit of every program: count the reason, turn it into the
 * hook's action. Decisions return a reason; only this file counts. */
#ifndef VXDP_VERDICT_H
#define VXDP_VERDICT_H

#include <linux/pkt_cls.h>
#include "maps.h"

static __always_inline void count(enum vxdp_prog prog, enum vxdp_reason reason, __u64 len)
{
	__u32 idx = prog * VXDP_REASON_SLOTS + reason;
	struct stat_value *v = bpf_map_lookup_elem(&stats, &idx);

	if (v) {
		v->packets++;
		v->bytes += len;
	}
}

/* TC action of a reason. A REDIRECT or TX decision has already called
 * bpf_redirect*(), which returns TC_ACT_REDIRECT. */
static __always_inline int tc_action(enum vxdp_reason r)
{
	switch (reason_verdict(r)) {
	case VERDICT_PASS:
		return TC_ACT_OK;
	case VERDICT_DROP:
		return TC_ACT_SHOT;
	default:
		return TC_ACT_REDIRECT;
	}
}

/* XDP action of a reason. A REDIRECT decision has already called
 * bpf_redirect_map(). */
static __always_inline int xdp_action(enum vxdp_reason r)
{
	switch (reason_verdict(r)) {
	case VERDICT_PASS:
		return XDP_PASS;
	case VERDICT_DROP:
		return XDP_DROP;
	case VERDICT_TX:
		return XDP_TX;
	default:
		return XDP_REDIRECT;
	}
}

static __always_inline const struct vxdp_config *get_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&config, &zero);
}

static __always_inline int forwarding(const struct vxdp_config *cfg)
{
	return cfg && (cfg->flags & CFG_F_FORWARD);
}

#endif
