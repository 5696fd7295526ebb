/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Every vxdp map, each with its purpose and a named size. Every program
 * object carries all of them; the loader shares one instance of each
 * between the programs and pins it. The Go side (package maps) reads the
 * sizes from the object, so a size lives here only. */
#ifndef VXDP_MAPS_H
#define VXDP_MAPS_H

#include <bpf/bpf_helpers.h>
#include "abi.h"
#include "reasons.h"

#define VXDP_PORTS_MAX 4096       /* local ports (taps) per host */
#define VXDP_NETWORKS_MAX 4096    /* networks served per host */
#define VXDP_PROVIDER_MAX 4096    /* (physical interface, VLAN) of provider networks served */
#define VXDP_FDB_MAX 65536        /* local + remote MACs of the served networks */
#define VXDP_VTEPS_MAX 65536      /* (VNI, VTEP) registrations */
#define VXDP_NEXTHOPS_MAX 65536   /* VTEPs whose underlay next hop the agent resolved */
#define VXDP_ARP_MAX 65536        /* (VNI, IPv4) of remote ports, for proxy ARP */
#define VXDP_PORT_ADDRS_MAX 16384 /* allowed (MAC, address) entries of all local ports */
#define VXDP_DHCP_MAX VXDP_PORTS_MAX /* ports answered by DHCP at the port */
/* Connection tracking, sized like Cilium's defaults; the agent may change
 * them ([dataplane] ct_tcp_max, ct_other_max) when it creates the maps. */
#define VXDP_CT_TCP_MAX 524288
#define VXDP_CT_OTHER_MAX 262144
#define VXDP_POLICY_REMOTE_MAX 262144 /* remote prefixes of all policies */
#define VXDP_POLICY_L4_MAX 262144     /* protocol/port prefixes of all policies */

/* Agent-wide settings (struct vxdp_config), written by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vxdp_config);
} config SEC(".maps");

/* The revision the agent last applied to these maps, and their layout. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct agent_meta);
} meta SEC(".maps");

/* Packets and bytes per (program, reason), per CPU: one count per packet. */
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

/* Local ports by tap ifindex: VNI, MAC, MTU, flags. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VXDP_PORTS_MAX);
	__type(key, __u32);
	__type(value, struct port_info);
} ports SEC(".maps");

/* DHCP at the port, by tap ifindex: the answer to the port's DHCP client
 * (only ports whose subnet has DHCP on; others' DHCP goes to the kernel). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VXDP_DHCP_MAX);
	__type(key, __u32);
	__type(value, struct dhcp_lease);
} dhcp SEC(".maps");

/* The DHCP request being answered, per CPU (the port program's stack is
 * too full to hold it across the helpers that rewrite the frame). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dhcp_work);
} dhcp_work SEC(".maps");

/* Provider networks by how they arrive: (physical interface, VLAN id;
 * 0 for flat) -> segment. The only tagged frames the uplink program takes. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VXDP_PROVIDER_MAX);
	__type(key, struct provider_key);
	__type(value, __u32);
} provider_in SEC(".maps");

/* Far ends of emulated VLAN devices by ifindex -> segment: what the bridge
 * sends there is tagged and sent to the physical network. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VXDP_PROVIDER_MAX);
	__type(key, __u32);
	__type(value, __u32);
} segment_devs SEC(".maps");

/* Networks served here, by segment (VNI or provider segment): the only VNIs decapsulated. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VXDP_NETWORKS_MAX);
	__type(key, __u32);
	__type(value, struct net_info);
} networks SEC(".maps");

/* Where a (VNI, MAC) lives: a local tap or a remote VTEP (l2pop). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VXDP_FDB_MAX);
	__type(key, struct fdb_key);
	__type(value, struct fdb_entry);
} fdb SEC(".maps");

/* VTEPs registered for a VNI: the only sources whose VXLAN of that VNI is
 * accepted, by BPF or by the kernel. Value reserved. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VXDP_VTEPS_MAX);
	__type(key, struct vni_addr);
	__type(value, __u32);
} vteps SEC(".maps");

/* The Ethernet address of each VTEP's next hop on the uplink, as the
 * kernel's neighbour table has it (IPv4 underlay): encapsulation writes it
 * and redirects, skipping a route and neighbour lookup per packet; a VTEP
 * without one goes through bpf_redirect_neigh. Kept current by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VXDP_NEXTHOPS_MAX);
	__type(key, __u32);
	__type(value, struct mac_value);
} vtep_nexthop SEC(".maps");

/* The same over an IPv6 underlay. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VXDP_VTEPS_MAX);
	__type(key, struct vni_addr6);
	__type(value, __u32);
} vteps6 SEC(".maps");

/* Proxy ARP: the MAC of a remote port's IPv4 address in a VNI (l2pop). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VXDP_ARP_MAX);
	__type(key, struct vni_addr);
	__type(value, struct mac_value);
} arp SEC(".maps");

/* Port security: the (source MAC, source address) pairs each port may
 * send from. See struct port_addr_key. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, VXDP_PORT_ADDRS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct port_addr_key);
	__type(value, struct port_addr_value);
} port_addrs SEC(".maps");

/* Security groups, compiled per distinct set of groups (a policy): the
 * classes of rules whose remote prefixes hold an address... */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, VXDP_POLICY_REMOTE_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct policy_remote_key);
	__type(value, struct sg_mask);
} policy_remote SEC(".maps");

/* ... and the classes that allow a protocol and port. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, VXDP_POLICY_L4_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct policy_l4_key);
	__type(value, struct sg_mask);
} policy_l4 SEC(".maps");

/* Tracked TCP flows of every port. Not an LRU: the agent's sweeper
 * removes expired entries and evicts the longest idle ones when the table
 * fills, counting each; a full table leaves a new flow untracked
 * (SG_EV_CT_FULL) instead of dropping an established one. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VXDP_CT_TCP_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
} ct_tcp SEC(".maps");

/* Tracked UDP, ICMP and other flows. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VXDP_CT_OTHER_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
} ct_other SEC(".maps");

/* Security-group events per direction (enum sg_event), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * SG_EVENT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} sg_stats SEC(".maps");

/* Events for `vxdp monitor` (CFG_F_MONITOR_*): nothing is written
 * while nobody listens. */
#define VXDP_EVENTS_BYTES (1 << 20)
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, VXDP_EVENTS_BYTES);
} events SEC(".maps");

/* The frame on entry, per CPU, while a monitored program decides. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mon_frame);
} mon_scratch SEC(".maps");

/* XDP redirect targets: local taps, keyed by ifindex. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, VXDP_PORTS_MAX);
	__type(key, __u32);
	__type(value, __u32);
} tx_ports SEC(".maps");

#endif
