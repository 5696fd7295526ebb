/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The map ABI: every key and value the programs share with the Go side
 * (bpf2go generates the Go types from these with -type). Each struct is
 * fixed-size and explicitly padded, with no implicit holes. Changing one
 * is a layout change: bump VXDP_LAYOUT, and an agent finding pinned maps of
 * another layout refuses them (the operator runs `vxdp agent --cleanup`). */
#ifndef VXDP_ABI_H
#define VXDP_ABI_H

#include <linux/bpf.h>

#define VXDP_LAYOUT 9

/* Programs that count decisions; the first dimension of the stats map. */
enum vxdp_prog {
	VXDP_PROG_PORT = 0,   /* TC ingress of a tap: frames the VM sends */
	VXDP_PROG_UPLINK = 1, /* XDP on the VTEP interface: frames from the underlay */
	VXDP_PROG_VXLAN = 2,  /* TC ingress of vxlan-<VNI>: frames the kernel decapsulated */
	VXDP_PROG_BRIDGE = 3, /* TC ingress of brq…: frames the bridge hands to the host */
	VXDP_PROG_DELIVER = 4, /* TC egress of a tap: frames on their way into the VM */
	VXDP_PROG_SEGMENT = 5, /* TC ingress of a provider segment device (eth1.99, a flat NIC) */
	VXDP_PROG_MAX = 6,
};

/* Agent-wide settings; single entry in the config map. Addresses and the
 * port are in network byte order, as they appear on the wire. */
struct vxdp_config {
	__u32 local_ip; /* IPv4 underlay */
	__u32 uplink_ifindex;
	__u16 vxlan_port;
	__u16 src_port_min; /* host order: the kernel's ip_local_port_range */
	__u16 src_port_max;
	__u8 ttl;
	__u8 flags; /* CFG_F_* */
	__u8 uplink_mac[6];
	__u8 pad[2];
	__u8 local_ip6[16]; /* IPv6 underlay (CFG_F_UNDERLAY_IPV6) */
};

enum config_flag {
	/* BPF forwards (redirect, encapsulate, decapsulate, proxy ARP). Off
	 * with --dataplane=kernel: the programs only filter and the kernel
	 * bridge and vxlan device forward everything. */
	CFG_F_FORWARD = 0x1,
	/* `vxdp monitor` listens: emit an event per drop, or per decision. */
	CFG_F_MONITOR_DROPS = 0x2,
	CFG_F_MONITOR_TRACE = 0x4,
	/* local_ip is IPv6: VXLAN runs over IPv6/UDP with checksums; the
	 * vteps6 map holds the VTEPs, and the kernel vxlan devices
	 * encapsulate (the outer UDP checksum needs their offloads). */
	CFG_F_UNDERLAY_IPV6 = 0x8,
};

#define MON_SNAPLEN 128 /* bytes of a frame an event carries, before and after */

/* One decision for `vxdp monitor`: where, which, why, and the frame as
 * the program saw it (before) and left it (after: encapsulated,
 * decapsulated or unchanged). */
struct mon_event {
	__u64 ts_ns;    /* bpf_ktime_get_ns() */
	__u32 ifindex;  /* the device the program runs on */
	__u32 vni;      /* the port's or the decapsulated VNI; 0: none */
	__u32 len;      /* length on entry */
	__u16 reason;   /* enum vxdp_reason */
	__u8 prog;      /* enum vxdp_prog */
	__u8 verdict;   /* enum vxdp_verdict */
	__u16 before_len;
	__u16 after_len;
	/* A VLAN tag outside the frame's bytes (the driver or the kernel
	 * stripped it, bpf_skb_vlan_push put it) on entry and on exit:
	 * TPID (0: none) and TCI. A tag in the frame is in
	 * before/after. */
	__u16 before_vlan_proto;
	__u16 before_vlan_tci;
	__u16 after_vlan_proto;
	__u16 after_vlan_tci;
	/* The tunnel's outer addresses where the frame does not show them
	 * (the vxlan program sees the decapsulated frame): 4 or 6, 0: none.
	 * src is the sending VTEP, dst the receiving one. */
	__u8 outer_family;
	__u8 pad[3];
	__u8 outer_src[16];
	__u8 outer_dst[16];
	__u8 before[MON_SNAPLEN];
	__u8 after[MON_SNAPLEN];
};

/* The frame as a program saw it on entry, kept per CPU while it decides,
 * with what the program learns of it on the way (mon_note_tunnel). */
struct mon_frame {
	__u16 len;
	__u16 vlan_proto;
	__u16 vlan_tci;
	__u8 outer_family;
	__u8 pad;
	__u8 outer_src[16];
	__u8 outer_dst[16];
	__u8 data[MON_SNAPLEN];
};

/* What the agent last applied; lives (and dies) with the pinned maps, so a
 * restarted agent knows whether its maps reflect a given control-plane
 * revision. Written by userspace only. */
struct agent_meta {
	__u64 revision;      /* control-plane revision of the applied state */
	__u64 applied_at_ns; /* CLOCK_REALTIME of that apply */
	__u32 layout;        /* VXDP_LAYOUT of the agent that created the maps */
	__u32 pad;
};

enum port_flag {
	PORT_F_SECURITY = 0x1, /* port security: MAC/IP anti-spoofing */
	/* The tap is on its network's bridge. Until then (and after it left)
	 * a frame passed to the kernel would reach the hypervisor's own stack
	 * through the tap, so every pass becomes DROP_NOT_BRIDGED. */
	PORT_F_BRIDGED = 0x2,
	/* The port is no longer bound here (unbound, deleted, migrated away)
	 * but its tap still exists: everything the VM sends is dropped. */
	PORT_F_DISABLED = 0x4,
	/* Security groups are enforced: the port's policy decides what IP
	 * traffic passes, both ways (without: everything passes). */
	PORT_F_SG = 0x8,
	/* The port's groups are stateless: nothing is tracked. */
	PORT_F_STATELESS = 0x10,
	/* The port has an IPv6 address: router advertisements may come in. */
	PORT_F_IPV6 = 0x20,
};

/* A local port, keyed by its tap ifindex. ip4/ip6 repeat the port's first
 * fixed address of each family so the common anti-spoofing check needs no
 * lookup; port_addrs holds the complete list. */
struct port_info {
	__u32 vni;
	__u16 mtu;   /* network MTU: largest inner frame payload we encapsulate */
	__u16 flags; /* PORT_F_* */
	__u8 mac[6];
	__u8 pad[2];
	__u32 ip4;     /* network order; 0: none */
	__u8 ip6[16];  /* all zero: none */
	__u32 policy;  /* the compiled security groups (PORT_F_SG) */
	/* Bumped by the agent whenever the port's policy changes: a tracked
	 * flow of an older generation is checked again on its next packet. */
	__u32 generation;
};

/* DHCP at the port (dhcp.h): the answer the port program gives a VM,
 * a BOOTREPLY the agent builds from the port and its subnet. The program
 * fills in what comes from the request (xid, flags, ciaddr), the message
 * type and the addresses; everything else is the agent's. */
#define DHCP_PAYLOAD_LEN 548      /* BOOTP with a 312-byte options field: a 576-byte IPv4 packet */
#define DHCP_NAK_LEN 300          /* a DHCPNAK: 53, 54 and END, padded to BOOTP's minimum */
#define DHCP_OPT_MSG_TYPE 242     /* option 53's value, in every reply */
#define DHCP_OPT_LEASE 249        /* options 51, 58, 59 (lease, T1, T2), after 53 and 54 */
#define DHCP_OPT_LEASE_LEN 18     /* left out (padded) of an answer to DHCPINFORM */
/* A request being answered: what its options say and what the answer
 * echoes (network order). */
struct dhcp_work {
	__be32 xid;
	__be32 ciaddr;
	__be32 requested;
	__be32 server;
	__be16 flags;
	__u8 type;
	__u8 has_requested;
	__u8 has_server;
	__u8 pad[3];
};
struct dhcp_lease {
	__u32 yiaddr;        /* the port's fixed IPv4 (network order) */
	__u32 server;        /* the server identifier (option 54): the answers' source */
	__u8 server_mac[6];  /* the answers' Ethernet source: the tap's own MAC */
	__u8 pad[2];
	__u8 reply[DHCP_PAYLOAD_LEN]; /* the DHCPOFFER as the agent built it */
};

enum net_flag {
	/* Neutron's vlan_transparent: VMs may send 802.1Q/802.1ad tagged
	 * frames (their inner headers are checked like untagged ones). */
	NET_F_VLAN_TRANSPARENT = 0x1,
	/* The kernel has no 802.1Q devices (CONFIG_VLAN_8021Q unset): the
	 * VLAN device <phys>.<vlan> is a veth pair, and the segment program
	 * tags and untags for it. */
	NET_F_VLAN_EMULATED = 0x2,
};

/* Networks are keyed by segment: the VNI of a VXLAN network (24 bits),
 * or SEG_PROVIDER | physical network index << 12 | VLAN id of a provider
 * network (flat: VLAN id 0). No VXLAN header can name a provider network.
 * Ports, FDB entries and policies carry the segment as their "vni". */
#define SEG_PROVIDER 0x01000000

enum net_kind {
	NET_VXLAN = 0,
	NET_VLAN = 1, /* 802.1Q-tagged on a physical interface */
	NET_FLAT = 2, /* untagged on a physical interface */
};

/* A network served on this host, keyed by segment. */
struct net_info {
	__u32 dev_ifindex;  /* its device on the bridge: vxlan-<VNI>, <phys>.<vlan> or the flat interface */
	__u32 phys_ifindex; /* provider networks: the physical interface frames leave and arrive by */
	/* NET_F_VLAN_EMULATED: the far end of the veth pair that stands in for
	 * the VLAN device; frames sent out of it reach the bridge. */
	__u32 peer_ifindex;
	__u16 mtu;
	__u16 flags; /* NET_F_* */
	__u16 vlan;  /* NET_VLAN: the VLAN id */
	__u8 kind;   /* enum net_kind */
	__u8 pad;
};

/* A provider network as it arrives on a physical interface: the interface
 * and the VLAN id (0 for untagged, i.e. a flat network). */
struct provider_key {
	__u32 ifindex;
	__u16 vlan;
	__u16 pad;
};

struct fdb_key {
	__u32 vni;
	__u8 mac[6];
	__u8 pad[2];
};

enum fdb_kind {
	FDB_LOCAL = 1,  /* a port on this host: deliver to ifindex */
	FDB_REMOTE = 2, /* a port behind a remote VTEP: encapsulate to vtep */
	/* a port of a provider network on another host: out of the network's
	 * physical interface, tagged with its VLAN */
	FDB_PROVIDER = 3,
};

struct fdb_entry {
	__u32 ifindex;
	__u32 vtep; /* network order; 0 over an IPv6 underlay */
	__u8 kind;  /* enum fdb_kind */
	__u8 pad[3];
	__u8 vtep6[16]; /* the VTEP over an IPv6 underlay (the kernel's FDB encapsulates) */
};

/* (VNI, IPv4) key: a VTEP registered for a VNI, or an IP for proxy ARP. */
struct vni_addr {
	__u32 vni;
	__u32 addr; /* network order */
};

/* (VNI, IPv6) key: a VTEP registered for a VNI over an IPv6 underlay. */
struct vni_addr6 {
	__u32 vni;
	__u8 addr[16];
};

struct mac_value {
	__u8 mac[6];
	__u8 pad[2];
};

/* Families of a port_addr_key. */
enum addr_family {
	ADDR_MAC = 0, /* a MAC-only entry: the port may send from this MAC */
	ADDR_IPV4 = 4,
	ADDR_IPV6 = 6,
};

/* LPM key of the per-port allow-list of (source MAC, source address)
 * pairs: the port MAC with each fixed IP and its EUI-64 link-local
 * address, and every allowed address pair (an address or a CIDR, with its
 * own MAC or the port's). Every allowed MAC also has a MAC-only entry
 * (prefixlen PORT_ADDR_MAC_BITS), so one lookup of (ifindex, MAC, family,
 * address) tells three outcomes apart: the pair is allowed (an address
 * entry matches), only the MAC is (the MAC-only entry is the longest
 * match), or neither. Keying by MAC lets several pairs share a prefix with
 * different MACs and a fixed IP stay allowed from the port MAC inside a
 * narrower pair that carries another MAC. */
struct port_addr_key {
	__u32 prefixlen;
	__u32 ifindex;
	__u8 mac[6];
	__u8 family; /* enum addr_family */
	__u8 pad;
	__u8 addr[16]; /* IPv4 in the first 4 bytes, network order */
};

/* Bits of a port_addr_key before the address: ifindex, MAC, family, pad. */
#define PORT_ADDR_MAC_BITS (32 + 48)
#define PORT_ADDR_ADDR_BITS (32 + 48 + 8 + 8)

/* What a port_addr_key entry allows. */
enum port_addr_kind {
	PORT_ADDR_MAC_ONLY = 1, /* the MAC, not (yet) the address looked up */
	PORT_ADDR_ALLOWED = 2,  /* the (MAC, address) pair */
};

struct port_addr_value {
	__u32 kind; /* enum port_addr_kind */
};

struct stat_value {
	__u64 packets;
	__u64 bytes;
};

/* Directions of security-group rules, seen from the VM. */
enum sg_dir {
	SG_INGRESS = 0, /* to the VM */
	SG_EGRESS = 1,  /* from the VM */
};

/* A set of rule classes: a policy allows a packet when the classes its
 * remote address is in and the classes its protocol and port are in
 * share one. */
#define SG_MASK_WORDS 4 /* 256 classes per policy, direction and family */
struct sg_mask {
	__u64 w[SG_MASK_WORDS];
};

/* LPM key: the classes whose remote prefixes contain addr. prefixlen
 * counts policy, dir, family and pad (64 bits) plus the prefix. */
struct policy_remote_key {
	__u32 prefixlen;
	__u32 policy;
	__u8 dir;    /* enum sg_dir */
	__u8 family; /* 4 or 6 */
	__u8 pad[2];
	__u8 addr[16]; /* IPv4 in the first 4 bytes */
};

/* LPM key: the classes that allow a protocol and destination port (for
 * ICMP, type << 8 | code). prefixlen counts policy, dir and family (48
 * bits: any protocol), then the protocol (56: every port of it), then pad
 * and the port's prefix (64 + up to 16). */
struct policy_l4_key {
	__u32 prefixlen;
	__u32 policy;
	__u8 dir;
	__u8 family;
	__u8 proto;
	__u8 pad;
	__be16 port;
	__u8 pad2[2];
};

#define POLICY_REMOTE_BASE_BITS 64
#define POLICY_L4_ANY_BITS 48
#define POLICY_L4_PROTO_BITS 56
#define POLICY_L4_PORT_BASE_BITS 64

/* A tracked flow of one port, from the VM's side: local is the VM's
 * address and port (for ICMP echo, the identifier), remote the other
 * end's. Both directions of a flow find the same key. */
struct ct_key {
	__u32 ifindex; /* the port: two VMs never share state */
	__u8 proto;
	__u8 family;
	__be16 local_port;
	__be16 remote_port;
	__u8 pad[2];
	__u8 local[16];
	__u8 remote[16];
};

enum ct_state {
	CT_OPEN = 1,
	/* The flow's rules went: every packet of it is dropped until the
	 * policy allows it again (the next generation re-checks). */
	CT_CUT = 2,
};

enum ct_tcp_seen {
	CT_SYN = 0x1,      /* a SYN from the opener: not yet established */
	CT_REPLIED = 0x2,  /* a packet from the other side */
	CT_FIN_OUT = 0x4,  /* FIN from the VM */
	CT_FIN_IN = 0x8,   /* FIN to the VM */
	CT_RST = 0x10,
};

struct ct_entry {
	__u64 expires;    /* bpf_ktime_get_coarse_ns() deadline */
	__u32 generation; /* the port's generation when last checked */
	__u8 opener;      /* enum sg_dir of the first packet */
	__u8 state;       /* enum ct_state */
	__u8 seen;        /* enum ct_tcp_seen */
	__u8 pad;
	/* What the first packet's rule matched on: its destination port, or
	 * for ICMP type << 8 | code. A re-check matches the flow as opened. */
	__be16 opener_l4;
	__u8 pad2[6];
};

/* Security-group events per direction, per CPU (sg_stats index:
 * dir * SG_EVENT_MAX + event). */
enum sg_event {
	SG_EV_ESTABLISHED = 0, /* a tracked flow's packet */
	SG_EV_NEW = 1,         /* allowed by a rule, flow tracked from now */
	SG_EV_RELATED = 2,     /* an ICMP error of a tracked flow */
	SG_EV_ALWAYS = 3,      /* always allowed (DHCP, ND, ...) */
	SG_EV_STATELESS = 4,   /* allowed by a rule, nothing tracked: a stateless group, a later fragment, ICMP other than echo */
	SG_EV_DENIED = 5,      /* no rule allows it */
	SG_EV_RECHECKED = 6,   /* a flow of an older generation, still allowed */
	SG_EV_CUT = 7,         /* a flow of an older generation, no longer allowed */
	SG_EV_CT_FULL = 8,     /* allowed, but the table was full: not tracked */
	SG_EVENT_MAX = 9,
};

#endif
