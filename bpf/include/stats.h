/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#ifndef VXDP_STATS_H
#define VXDP_STATS_H

#include "maps.h"

/* Count one packet of len bytes under (prog, reason) on this CPU. */
static __always_inline void count(enum vxdp_prog prog, enum vxdp_reason reason, __u64 len)
{
	__u32 idx = prog * VXDP_REASON_SLOTS + reason;
	struct stat_value *v = bpf_map_lookup_elem(&stats, &idx);

	if (v) {
		v->packets++;
		v->bytes += len;
	}
}

static __always_inline const struct vxdp_config *get_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&config, &zero);
}

#endif
