/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* FDB lookups shared by the programs. */
#ifndef VXDP_FDB_H
#define VXDP_FDB_H

#include "maps.h"
#include "parse.h"

static __always_inline struct fdb_entry *fdb_lookup(__u32 vni, const __u8 *mac)
{
	struct fdb_key key = { .vni = vni };

	mac_copy(key.mac, mac);
	return bpf_map_lookup_elem(&fdb, &key);
}

/* Whether mac is a local port's in vni: a decapsulated frame from such a
 * source is a forgery (the port is here, not behind a VTEP). */
static __always_inline int mac_is_local_port(__u32 vni, const __u8 *mac)
{
	struct fdb_entry *e = fdb_lookup(vni, mac);

	return e && e->kind == FDB_LOCAL;
}

/* The local port a decapsulated or switched frame of vni goes to. Returns
 * 0 with *ifindex and *port set, or the reason it does not go to a local
 * port. The FDB key carries the VNI already; the target's own VNI is
 * checked again so a stale entry can never cross tenants. */
static __always_inline enum vxdp_reason local_target(__u32 vni, const __u8 *mac, __u32 *ifindex, struct port_info **port,
						     enum vxdp_reason miss)
{
	struct fdb_entry *e = fdb_lookup(vni, mac);
	struct port_info *p;
	__u32 idx;

	if (!e || e->kind != FDB_LOCAL)
		return miss;
	idx = e->ifindex;
	p = bpf_map_lookup_elem(&ports, &idx);
	if (!p || p->vni != vni || (p->flags & PORT_F_DISABLED))
		return DROP_VNI_MISMATCH;
	*ifindex = idx;
	*port = p;
	return 0;
}

#endif
