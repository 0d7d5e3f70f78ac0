/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Protocol classes of a socket (KubeArmor network.matchProtocols), shared by
 * the network enforcers. Same classification as bpf/net_enforcer.bpf.c's
 * ew_classify() (which predates this header; it can switch to it).
 */
#ifndef EW_NET_CLASSIFY_BPF_H
#define EW_NET_CLASSIFY_BPF_H

#include "edgeward_abi.h"

/* Not in vmlinux.h (macros in the uapi headers). */
#define EW_AF_INET 2
#define EW_AF_INET6 10
#define EW_AF_PACKET 17
#define EW_SOCK_STREAM 1
#define EW_SOCK_DGRAM 2
#define EW_SOCK_RAW 3
#define EW_SOCK_TYPE_MASK 0xf /* socket(2) ORs SOCK_NONBLOCK/SOCK_CLOEXEC into type */
#define EW_IPPROTO_ICMP 1
#define EW_IPPROTO_TCP 6
#define EW_IPPROTO_UDP 17
#define EW_IPPROTO_ICMPV6 58
#define EW_IPPROTO_UDPLITE 136
#define EW_IPPROTO_MPTCP 262

/*
 * The protocol classes of a socket: the first in bits 0..7, a second one in
 * bits 8..15 (0: none). A raw ICMP socket is both ICMP and RAW: with
 * IP_HDRINCL it writes whole IP packets of any protocol, so a `raw` rule
 * must catch it too. Packet sockets (AF_PACKET) are raw.
 */
static __always_inline __u32 ew_net_classify(__u32 family, __u32 type, __u32 protocol)
{
	if (family == EW_AF_PACKET)
		return EW_PROTO_RAW;
	if (family != EW_AF_INET && family != EW_AF_INET6)
		return 0;

	__u32 icmp = family == EW_AF_INET ? EW_IPPROTO_ICMP : EW_IPPROTO_ICMPV6;
	__u32 icmp_class = family == EW_AF_INET ? EW_PROTO_ICMP : EW_PROTO_ICMPV6;

	switch (type & EW_SOCK_TYPE_MASK) {
	case EW_SOCK_STREAM:
		/* MPTCP is TCP on the wire (its subflows are TCP connections). */
		if (protocol == 0 || protocol == EW_IPPROTO_TCP || protocol == EW_IPPROTO_MPTCP)
			return EW_PROTO_TCP;
		return 0;
	case EW_SOCK_DGRAM:
		/* UDP-Lite has UDP's datagram semantics; a udp rule covers it. */
		if (protocol == 0 || protocol == EW_IPPROTO_UDP || protocol == EW_IPPROTO_UDPLITE)
			return EW_PROTO_UDP;
		if (protocol == icmp)
			return icmp_class; /* unprivileged "ping" socket */
		return 0;
	case EW_SOCK_RAW:
		if (protocol == icmp)
			return icmp_class | (EW_PROTO_RAW << 8);
		return EW_PROTO_RAW;
	}
	return 0;
}

/*
 * Resource names of the classes (a decision's `resource`), NUL-padded.
 * Globals (one definition per object including this header): `static const`
 * arrays come out as overlapping .rodata entries the kernel's BTF check refuses.
 */
const char ew_net_class_names[8][8] = {
	[EW_PROTO_TCP] = "tcp", [EW_PROTO_UDP] = "udp", [EW_PROTO_ICMP] = "icmp",
	[EW_PROTO_ICMPV6] = "icmpv6", [EW_PROTO_RAW] = "raw",
};
const __u8 ew_net_class_name_lens[8] = {
	[EW_PROTO_TCP] = 3, [EW_PROTO_UDP] = 3, [EW_PROTO_ICMP] = 4,
	[EW_PROTO_ICMPV6] = 6, [EW_PROTO_RAW] = 3,
};

#endif /* EW_NET_CLASSIFY_BPF_H */
