/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Every vxdp map. Each program object carries all of them; the loader
 * shares one instance of each between the programs and pins it. */
#ifndef VXDP_MAPS_H
#define VXDP_MAPS_H

#include "vxdp.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vxdp_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct agent_meta);
} meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VXDP_PROG_MAX * VXDP_REASON_SLOTS);
	__type(key, __u32);
	__type(value, struct stat_value);
} stats SEC(".maps");

/* Outer IPv4 ID per CPU (the kernel's vxlan sends with DF clear, so IDs
 * must vary); the loader seeds each CPU at a different offset. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} ip_id SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* tap ifindex */
	__type(value, struct port_info);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* VNI */
	__type(value, struct net_info);
} networks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fdb_key);
	__type(value, struct fdb_entry);
} fdb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct vni_addr);
	__type(value, __u32); /* reserved flags */
} vteps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct vni_addr);
	__type(value, struct mac_value);
} arp SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct port_addr_key);
	__type(value, struct mac_value);
} port_addrs SEC(".maps");

/* XDP redirect targets: local taps, keyed by ifindex. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} tx_ports SEC(".maps");

#endif
