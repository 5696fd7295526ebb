/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Common definitions shared by every vxdp BPF program and, through bpf2go
 * (-type), by the Go side. Every struct here is part of the map ABI: fixed
 * size, explicitly padded, no implicit holes. */
#ifndef VXDP_H
#define VXDP_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define VXLAN_HF_VNI 0x08000000 /* the I flag, host order of the first word */
#define VXLAN_HLEN 8
/* Outer IPv4 + UDP + VXLAN + inner Ethernet: what encapsulation adds after
 * the (reused) outer Ethernet header. */
#define VXLAN_ENCAP_ROOM (sizeof(struct iphdr) + sizeof(struct udphdr) + VXLAN_HLEN + ETH_HLEN)
#define VXDP_MAX_VNI 0xffffff
#define GSO_MIN_HEADERS 40 /* IPv4 + TCP without options: a lower bound per segment */
#define IP_MF 0x2000     /* IPv4 "more fragments" */
#define IP_OFFSET 0x1fff /* IPv4 fragment offset mask */

#define ETH_P_8021Q_BE bpf_htons(ETH_P_8021Q)
#define ETH_P_8021AD_BE bpf_htons(ETH_P_8021AD)

/* Programs that count decisions; index the first dimension of the stats map. */
enum vxdp_prog {
	VXDP_PROG_PORT = 0,
	VXDP_PROG_UPLINK = 1,
	VXDP_PROG_MAX = 2,
};

/* Why a packet got its verdict. The name prefix is the verdict (PASS: handed
 * to the kernel unchanged, DROP, REDIRECT, TX: answered back on the same
 * device). Exactly one reason is counted per packet, so the counters of a
 * program add up to the packets it saw. The Go side reads the names from BTF;
 * docs/reasons.md explains each one. Append only: values are the map ABI. */
enum vxdp_reason {
	REASON_UNSPEC = 0,
	/* port program (tap ingress, frames sent by the VM) */
	PASS_PORT_UNKNOWN,      /* ingress device is not a vxdp port */
	DROP_RUNT,              /* shorter than an Ethernet header */
	DROP_SPOOF_MAC,         /* source MAC not the port's (port security) */
	DROP_SPOOF_IP,          /* IPv4 source not the port's / an allowed pair */
	DROP_SPOOF_ARP,         /* ARP sender MAC/IP not the port's */
	DROP_MALFORMED_IP,      /* truncated or bad IPv4/ARP header from a secured port */
	PASS_VLAN,              /* VLAN-tagged frame (after port security): the kernel decides */
	PASS_BUM,               /* broadcast/multicast: kernel bridge floods it */
	TX_ARP_REPLY,           /* l2pop proxy ARP answered in BPF */
	PASS_FDB_MISS,          /* unknown unicast (or an FDB entry neither local nor remote): kernel bridge */
	PASS_HAIRPIN,           /* destination is the sending port itself */
	PASS_NOT_IP,            /* remote destination, not IPv4/IPv6: kernel vxlan encapsulates */
	PASS_TOO_BIG,           /* frame (or GSO segment) larger than the network MTU */
	PASS_ENCAP_FAILED,      /* no uplink configured, or bpf_skb_adjust_room refused (e.g. UDP GSO) */
	DROP_ENCAP_FAILED,      /* headers could not be written after the room was added */
	DROP_VNI_MISMATCH,      /* FDB target port is on another VNI (never expected) */
	REDIRECT_LOCAL,         /* to a local port's tap */
	REDIRECT_REMOTE,        /* VXLAN-encapsulated to a remote VTEP */
	REDIRECT_REMOTE_GSO,    /* same, for a TSO/GSO super-frame */
	/* uplink program (XDP on the VTEP interface) */
	PASS_NOT_IPV4,          /* not IPv4: not ours */
	PASS_MALFORMED,         /* truncated/invalid outer header, or bad outer IPv4 checksum: the kernel drops it */
	PASS_NOT_UDP,
	PASS_IP_OPTIONS,        /* outer IPv4 with options, from a registered VTEP: the kernel decapsulates */
	PASS_FRAGMENT,          /* outer IPv4 fragment (a first one from a registered VTEP): the kernel reassembles */
	PASS_NOT_LOCAL,         /* outer destination is not our local_ip */
	PASS_NOT_VXLAN,         /* UDP, but not to the VXLAN port */
	DROP_VXLAN_TRUNCATED,   /* VXLAN header, lengths or inner Ethernet truncated/inconsistent */
	DROP_VXLAN_FLAGS,       /* I flag missing or reserved bits set (the kernel drops these too) */
	PASS_VNI_UNKNOWN,       /* VNI not served by vxdp here */
	DROP_VTEP_UNKNOWN,      /* outer source is not a VTEP registered for this VNI */
	PASS_INNER_BUM,         /* inner broadcast/multicast: kernel vxlan device */
	PASS_INNER_FDB_MISS,    /* inner destination not a local port: kernel vxlan device */
	PASS_NO_TXPORT,         /* local port not in the devmap yet */
	PASS_DECAP_FAILED,      /* bpf_xdp_adjust_head refused */
	REASON_MAX,
};

#define VXDP_REASON_SLOTS 64 /* stats map stride per program; > REASON_MAX */

struct stat_value {
	__u64 packets;
	__u64 bytes;
};

/* Agent-wide settings; single entry in the config map. Addresses and port
 * are in network byte order, as they appear on the wire. */
struct vxdp_config {
	__u32 local_ip;
	__u32 uplink_ifindex;
	__u16 vxlan_port;
	__u16 src_port_min; /* host order: the kernel's ip_local_port_range */
	__u16 src_port_max;
	__u8 ttl;
	__u8 flags;
	__u8 uplink_mac[6];
	__u8 pad[2];
};

enum port_flag {
	PORT_F_SECURITY = 0x1, /* port security: enforce MAC/IP of the port */
};

/* What the agent last applied; lives (and dies) with the pinned maps, so a
 * restarted agent knows whether its maps reflect a given control-plane
 * revision. Written by userspace only. */
struct agent_meta {
	__u64 revision;      /* control-plane revision of the applied state */
	__u64 applied_at_ns; /* CLOCK_REALTIME of that apply */
	__u32 layout;        /* map layout version, see VXDP_LAYOUT */
	__u32 pad;
};

#define VXDP_LAYOUT 1

/* A local port, keyed by its tap ifindex. */
struct port_info {
	__u32 vni;
	__u16 mtu;   /* network MTU: largest inner frame payload we encapsulate */
	__u16 flags; /* PORT_F_* */
	__u8 mac[6];
	__u8 pad[2];
};

/* A network served on this host, keyed by VNI. */
struct net_info {
	__u32 vxlan_ifindex; /* the kernel's vxlan-<VNI> device */
	__u16 mtu;
	__u16 flags;
};

struct fdb_key {
	__u32 vni;
	__u8 mac[6];
	__u8 pad[2];
};

enum fdb_kind {
	FDB_LOCAL = 1,  /* a port on this host: deliver to ifindex */
	FDB_REMOTE = 2, /* a port behind a remote VTEP: encapsulate to vtep */
};

struct fdb_entry {
	__u32 ifindex;
	__u32 vtep; /* network order */
	__u8 kind;  /* enum fdb_kind */
	__u8 pad[3];
};

/* (VNI, IPv4) key: a VTEP registered for a VNI, or an IP for proxy ARP. */
struct vni_addr {
	__u32 vni;
	__u32 addr; /* network order */
};

struct mac_value {
	__u8 mac[6];
	__u8 pad[2];
};

/* LPM key of the per-port address allow-list (fixed IPs and allowed address
 * pairs, possibly CIDRs). prefixlen counts ifindex bits (32) + IP bits. */
struct port_addr_key {
	__u32 prefixlen;
	__u32 ifindex;
	__u32 addr; /* network order */
};

#endif
