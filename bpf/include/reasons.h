/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Why a packet got its verdict: the one list of reasons.
 *
 * Every packet a program sees ends in exactly one reason, counted per CPU
 * under (program, reason) in the stats map, so the counters of a program
 * add up to the packets it saw. The name's prefix is the verdict (PASS:
 * handed to the kernel unchanged; DROP; REDIRECT: forwarded by BPF; TX:
 * answered on the device it came from). The second column is the verdict
 * again, for the C side; the third the programs that can give the reason,
 * so metrics export only pairs that can occur; the last is the
 * explanation docs/reasons.md is checked against. The Go side reads names,
 * values and program masks from BTF (enums vxdp_reason and
 * vxdp_reason_progs). Values index the stats map: a change is a layout
 * change (VXDP_LAYOUT). */
#ifndef VXDP_REASONS_H
#define VXDP_REASONS_H

#define P_PORT (1 << VXDP_PROG_PORT)
#define P_UPLINK (1 << VXDP_PROG_UPLINK)
#define P_VXLAN (1 << VXDP_PROG_VXLAN)
#define P_BRIDGE (1 << VXDP_PROG_BRIDGE)
#define P_DELIVER (1 << VXDP_PROG_DELIVER)
#define P_SEGMENT (1 << VXDP_PROG_SEGMENT)

#define VXDP_REASONS(X)                                                                                        \
	/* port program: frames a VM sends */                                                                  \
	X(DROP_PORT_UNKNOWN, DROP, P_PORT | P_DELIVER, "the tap has a vxdp program but no entry in the ports map (never expected)") \
	X(DROP_PORT_DISABLED, DROP, P_PORT | P_DELIVER, "the port is no longer bound to this host but its tap still exists")          \
	X(DROP_RUNT, DROP, P_PORT | P_VXLAN | P_SEGMENT, "shorter than an Ethernet header")                                           \
	X(DROP_LINK_LOCAL_DST, DROP, P_PORT | P_UPLINK | P_VXLAN | P_SEGMENT, "to an IEEE 802.1D link-local group address (01:80:c2:00:00:0X): a bridge hands those to the hypervisor's own stack (from a tap or a VXLAN peer: any frame; from a physical network: IPv4, IPv6 and ARP, LLDP and LACP stay the host's)") \
	X(DROP_SPOOF_MAC, DROP, P_PORT, "port security: the source MAC is neither the port's nor an allowed address pair's") \
	X(DROP_SPOOF_IP, DROP, P_PORT, "port security: the IPv4/IPv6 source is not allowed with this source MAC (0.0.0.0 only for a DHCP client, :: only for DAD and MLD)") \
	X(DROP_SPOOF_ARP, DROP, P_PORT, "port security: the ARP sender MAC differs from the frame's, or the sender IP is not allowed")  \
	X(DROP_SPOOF_ND, DROP, P_PORT, "port security: a neighbour advertisement for an address the port may not use")  \
	X(DROP_MALFORMED, DROP, P_PORT | P_UPLINK | P_DELIVER, "port security or security groups: a truncated or invalid IPv4/IPv6/ARP header, or ARP not Ethernet/IPv4: it cannot be checked") \
	X(DROP_VLAN, DROP, P_PORT, "port security: a VLAN-tagged frame on a network that is not VLAN-transparent (or more than two tags)") \
	X(DROP_DHCP_SERVER, DROP, P_PORT, "port security: a DHCP (UDP 67->68) or DHCPv6 (547->546) server message from a VM")  \
	X(DROP_ROUTER_ADVERT, DROP, P_PORT, "port security: an ICMPv6 router advertisement from a VM")                          \
	X(TX_DHCP_REPLY, TX, P_PORT, "DHCP at the port: DISCOVER, REQUEST or INFORM from the port's own MAC, answered with its fixed IP and its subnet's settings") \
	X(TX_DHCP_NAK, TX, P_PORT, "DHCP at the port: a REQUEST for an address that is not the port's, answered DHCPNAK") \
	X(DROP_DHCP_MALFORMED, DROP, P_PORT, "DHCP at the port: a truncated or invalid BOOTP message or option, no message type, or plain BOOTP: never answered") \
	X(DROP_DHCP_UNKNOWN_CLIENT, DROP, P_PORT, "DHCP at the port: a client hardware address that is not the port's MAC: no lease for it, no answer (RFC 2131)") \
	X(DROP_DHCP_DECLINE, DROP, P_PORT, "DHCP at the port: DHCPDECLINE, the VM found its address in use on the network (an address conflict)") \
	X(DROP_DHCP_FAILED, DROP, P_PORT, "DHCP at the port: the answer could not be written into the frame (never expected)") \
	X(DROP_DHCP_IGNORED, DROP, P_PORT, "DHCP at the port: DHCPRELEASE (the address stays the port's) or a message a server does not answer") \
	X(DROP_SG_EGRESS, DROP, P_PORT, "security groups: no rule of the port's groups allows it out")                     \
	X(DROP_SG_INGRESS, DROP, P_UPLINK | P_DELIVER, "security groups: no rule of the port's groups allows it in")        \
	X(DROP_SG_FLOW_CUT, DROP, P_PORT | P_UPLINK | P_DELIVER, "security groups: a tracked flow the port's rules no longer allow (cut until they allow it again)") \
	X(DROP_NOT_BRIDGED, DROP, P_PORT, "would go to the kernel, but the tap is not on its bridge (yet, or any more): it would reach the hypervisor's stack") \
	X(PASS_VLAN, PASS, P_PORT, "VLAN-tagged, from a VLAN-transparent network or a port without port security: the bridge forwards it") \
	X(PASS_KERNEL_FORWARDING, PASS, P_PORT | P_UPLINK | P_VXLAN | P_SEGMENT, "checked, and forwarding is the kernel's on this node (--dataplane=kernel)") \
	X(PASS_BUM, PASS, P_PORT, "broadcast/multicast (and ARP no proxy entry answers): the bridge floods it to the l2pop flood list") \
	X(TX_ARP_REPLY, TX, P_PORT, "ARP request for a remote port's IP: answered from the arp map (l2pop proxy ARP)")      \
	X(PASS_FDB_MISS, PASS, P_PORT, "unicast to a MAC not in the port's VNI (or an unusable entry): the kernel floods it") \
	X(PASS_HAIRPIN, PASS, P_PORT, "to the sending port itself: the bridge decides (it drops it)")                        \
	X(PASS_NOT_IP, PASS, P_PORT, "to a remote port, neither IPv4 nor IPv6: the kernel vxlan device encapsulates it")      \
	X(PASS_TOO_BIG, PASS, P_PORT, "larger than the network MTU (whole, or per GSO segment): the kernel answers or fragments") \
	X(PASS_ENCAP_FAILED, PASS, P_PORT, "no uplink configured, or bpf_skb_adjust_room refused (e.g. UDP GSO): the kernel vxlan device encapsulates it") \
	X(DROP_ENCAP_FAILED, DROP, P_PORT, "the outer headers could not be written after the room was added")                \
	X(DROP_VNI_MISMATCH, DROP, P_PORT | P_UPLINK | P_VXLAN | P_SEGMENT, "the FDB target port is on another VNI/segment, or gone, or a segment arrived on a device not its own (never expected)") \
	X(REDIRECT_LOCAL, REDIRECT, P_PORT | P_UPLINK | P_VXLAN | P_SEGMENT, "to a local port's tap")                       \
	X(REDIRECT_REMOTE, REDIRECT, P_PORT, "VXLAN-encapsulated to a remote VTEP")                                          \
	X(REDIRECT_REMOTE_GSO, REDIRECT, P_PORT, "the same, for a TSO/GSO super-frame")                                      \
	X(REDIRECT_REMOTE_KERNEL, REDIRECT, P_PORT, "to a remote port over an IPv6 underlay: straight to the network's vxlan device, which encapsulates with the outer UDP checksum IPv6 needs") \
	X(REDIRECT_PROVIDER, REDIRECT, P_PORT, "to a remote port of a provider network: tagged with its VLAN (flat: as it is) and sent out of its physical interface") \
	/* uplink program: frames from the underlay */                                                         \
	X(PASS_NOT_IPV4, PASS, P_UPLINK, "not of the underlay's IP version: not VXLAN of ours")                           \
	X(PASS_MALFORMED, PASS, P_UPLINK, "a truncated or invalid outer header, or a bad IPv4 header checksum: the kernel drops it") \
	X(PASS_NOT_UDP, PASS, P_UPLINK, "not UDP")                                                                         \
	X(PASS_VLAN_TAGGED, PASS, P_UPLINK | P_SEGMENT, "tagged (in the frame or by the driver) with a VLAN id no provider network here has: for a VLAN device (the vxlan program checks what the kernel decapsulates)") \
	X(PASS_IP_OPTIONS, PASS, P_UPLINK, "outer IPv4 with options: the kernel verifies and decapsulates it, the vxlan program checks it")      \
	X(PASS_FRAGMENT, PASS, P_UPLINK, "outer IPv4 fragment (a first one from a registered VTEP): the kernel reassembles it") \
	X(PASS_NOT_VXLAN, PASS, P_UPLINK, "UDP, but not to the VXLAN port")                                                 \
	X(DROP_VXLAN_TRUNCATED, DROP, P_UPLINK, "VXLAN header, lengths or inner Ethernet truncated or inconsistent")        \
	X(DROP_VXLAN_FLAGS, DROP, P_UPLINK, "I flag missing or reserved bits set (the kernel drops these too)")             \
	X(PASS_VNI_UNKNOWN, PASS, P_UPLINK, "a VNI not served here: the kernel has no device for it and drops it")          \
	X(DROP_VTEP_UNKNOWN, DROP, P_UPLINK | P_VXLAN, "the outer source is not a VTEP registered for this VNI")            \
	X(DROP_NOT_UPLINK, DROP, P_UPLINK, "VXLAN on a provider network's physical interface: only the tunnel interface carries it (a host of that network forging a VTEP's address)") \
	X(DROP_NOT_LOCAL, DROP, P_UPLINK | P_VXLAN, "VXLAN of a served VNI addressed to something other than local_ip (broadcast, another local address)") \
	X(PASS_UDP_CSUM, PASS, P_UPLINK, "IPv4: a non-zero outer UDP checksum; IPv6: a zero one: the kernel verifies (or refuses) it before decapsulating (the vxlan program then checks the VTEP)") \
	X(DROP_UDP_CSUM, DROP, P_UPLINK, "IPv6 underlay: VXLAN of a registered VTEP with a wrong outer UDP checksum (the kernel drops these too)") \
	X(DROP_INNER_SRC_LOCAL, DROP, P_UPLINK | P_VXLAN | P_SEGMENT, "the (inner) source MAC is a local port's: a forgery from the underlay or the physical network that would poison the bridge FDB") \
	X(PASS_INNER_BUM, PASS, P_UPLINK | P_VXLAN, "inner broadcast/multicast: the kernel vxlan device and bridge flood it") \
	X(PASS_INNER_FDB_MISS, PASS, P_UPLINK | P_VXLAN, "inner destination not a local port: the kernel vxlan device and bridge") \
	X(PASS_TCP_GRO, PASS, P_UPLINK, "(inner) TCP to a local port: the kernel's GRO aggregates it and the vxlan or segment program redirects the result") \
	X(PASS_INNER_TAGGED, PASS, P_UPLINK, "the frame for a port is itself VLAN-tagged (inner VXLAN frame or QinQ on a provider network): the kernel path, where the deliver program checks it") \
	X(PASS_NO_TXPORT, PASS, P_UPLINK, "the local port is not in the tx_ports devmap yet")                               \
	X(PASS_DECAP_FAILED, PASS, P_UPLINK, "bpf_xdp_adjust_head refused")                                                 \
	X(REDIRECT_FROM_PROVIDER, REDIRECT, P_UPLINK, "a provider network's frame for a local port of it: untagged and redirected to its tap") \
	X(PASS_PROVIDER_BUM, PASS, P_UPLINK | P_SEGMENT, "a provider network's broadcast/multicast: its VLAN device and bridge flood it") \
	X(PASS_PROVIDER_FDB_MISS, PASS, P_UPLINK | P_SEGMENT, "a provider network's frame not for a local port of it: the kernel bridge") \
	/* vxlan program: what the kernel vxlan device decapsulated */                                         \
	X(DROP_NO_TUNNEL_INFO, DROP, P_VXLAN, "no tunnel metadata on the frame (the agent's tun_id rule is missing): cannot check the VTEP, so fail closed") \
	X(DROP_VNI_UNKNOWN, DROP, P_VXLAN, "the tunnel id is not a VNI served here")                                        \
	/* segment program: what the kernel received on a provider network's interface, and the emulated VLAN devices */ \
	X(PASS_NOT_PROVIDER, PASS, P_SEGMENT, "not a provider network's frame (another VLAN, the host's own traffic): the kernel") \
	X(REDIRECT_TO_BRIDGE, REDIRECT, P_SEGMENT, "a VLAN network's frame for the bridge (broadcast, unknown, kernel forwarding): untagged and handed to its emulated VLAN device") \
	X(REDIRECT_TO_PHYSICAL, REDIRECT, P_SEGMENT, "what the bridge sent out of an emulated VLAN device: tagged and sent out of the physical interface") \
	X(DROP_SEGMENT_UNKNOWN, DROP, P_SEGMENT, "an emulated VLAN device whose network is gone or not emulated (never expected)") \
	/* bridge program: frames a bridge hands to the hypervisor */                                         \
	X(DROP_TO_HOST, DROP, P_BRIDGE, "a frame the bridge would hand to the hypervisor's own stack (IPv4, IPv6, ARP, any ethertype)") \
	/* deliver program: frames on their way into a VM */                                                 \
	X(PASS_NO_SG, PASS, P_DELIVER, "no security groups are enforced on the port (port security off, or groups disabled on this node)") \
	X(PASS_NON_IP, PASS, P_DELIVER, "ARP or another non-IP ethertype: security groups filter IP only")            \
	X(PASS_SG_ALLOWED, PASS, P_DELIVER, "allowed by the port's security groups: a tracked flow, a rule, a related ICMP error or always allowed (sg_stats tells which)")

/* Verdict codes: two bits each. */
enum vxdp_verdict {
	VERDICT_PASS = 0,
	VERDICT_DROP = 1,
	VERDICT_REDIRECT = 2,
	VERDICT_TX = 3,
};

enum vxdp_reason {
	REASON_UNSPEC = 0,
#define VXDP_REASON_ENUM(name, verdict, progs, doc) name,
	VXDP_REASONS(VXDP_REASON_ENUM)
#undef VXDP_REASON_ENUM
	REASON_MAX,
};

/* RP_<reason> = the programs (bit per enum vxdp_prog) that can give it. */
enum vxdp_reason_progs {
#define VXDP_REASON_PROGS(name, verdict, progs, doc) RP_##name = (progs),
	VXDP_REASONS(VXDP_REASON_PROGS)
#undef VXDP_REASON_PROGS
};

#define VXDP_REASON_SLOTS 128 /* stats map stride per program; > REASON_MAX */
_Static_assert(REASON_MAX <= VXDP_REASON_SLOTS, "stats stride too small");
_Static_assert(REASON_MAX <= 128, "verdict table holds 128 reasons");

/* The verdict table: reason r's two-bit code sits in word r/32 at bit
 * 2*(r%32). Built at compile time from the list, so the exit of a program
 * finds a verdict with a few ALU operations instead of a switch. */
#define VXDP_VERDICT_BITS(name, verdict, progs, doc) \
	+(((name) >> 5) == VXDP_VERDICT_WORD ? ((__u64)VERDICT_##verdict << (((name)&31) * 2)) : 0)
#define VXDP_VERDICT_WORD 0
static const __u64 vxdp_verdicts0 = 0 VXDP_REASONS(VXDP_VERDICT_BITS);
#undef VXDP_VERDICT_WORD
#define VXDP_VERDICT_WORD 1
static const __u64 vxdp_verdicts1 = 0 VXDP_REASONS(VXDP_VERDICT_BITS);
#undef VXDP_VERDICT_WORD
#define VXDP_VERDICT_WORD 2
static const __u64 vxdp_verdicts2 = 0 VXDP_REASONS(VXDP_VERDICT_BITS);
#undef VXDP_VERDICT_WORD
#define VXDP_VERDICT_WORD 3
static const __u64 vxdp_verdicts3 = 0 VXDP_REASONS(VXDP_VERDICT_BITS);
#undef VXDP_VERDICT_WORD
#undef VXDP_VERDICT_BITS

static __always_inline enum vxdp_verdict reason_verdict(enum vxdp_reason r)
{
	__u64 w = r < 32 ? vxdp_verdicts0 : r < 64 ? vxdp_verdicts1 : r < 96 ? vxdp_verdicts2 : vxdp_verdicts3;

	return (enum vxdp_verdict)((w >> ((r & 31) * 2)) & 3);
}

#endif
