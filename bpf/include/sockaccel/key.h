/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Building sockhash keys: one implementation, compiled into the BPF programs
 * and into the daemon's unit tests, so what the tests check is what runs in
 * the kernel.
 *
 * Inputs are exactly what struct bpf_sock_ops and struct sk_msg_md expose:
 *   - family: AF_INET or AF_INET6 (the socket's family);
 *   - ip4 addresses: network byte order;
 *   - ip6 addresses: four 32-bit words, network byte order;
 *   - local_port: host byte order;
 *   - remote_port: the context's 32-bit field, which holds the port in
 *     network byte order in its upper 16 bits on little-endian hosts (see
 *     sock_ops_convert_ctx_access() in net/core/filter.c).
 * Pure functions; no allocation, no failure except an unsupported family.
 */
#ifndef SOCKACCEL_KEY_H
#define SOCKACCEL_KEY_H

#include "abi.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef SOCKACCEL_INLINE
#define SOCKACCEL_INLINE static inline __attribute__((always_inline))
#endif

SOCKACCEL_INLINE __u32 sockaccel_ntohl(__u32 v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return __builtin_bswap32(v);
#else
	return v;
#endif
}

/* The raw fields of one socket, as read from a BPF context. */
struct sockaccel_sock_fields {
	__u32 family;
	__u32 local_ip4;
	__u32 remote_ip4;
	__u32 local_ip6[4];
	__u32 remote_ip6[4];
	__u32 local_port;  /* host order */
	__u32 remote_port; /* context encoding, see above */
};

SOCKACCEL_INLINE int sockaccel_ip6_is_v4mapped(const __u32 ip6[4])
{
	/* ::ffff:a.b.c.d; word 2 is 0x0000ffff in network order. */
	return ip6[0] == 0 && ip6[1] == 0 && ip6[2] == sockaccel_ntohl(0x0000ffff);
}

SOCKACCEL_INLINE int sockaccel_ip4_is_loopback(__u32 ip4)
{
	return (sockaccel_ntohl(ip4) >> 24) == 127;
}

SOCKACCEL_INLINE int sockaccel_ip6_is_loopback(const __u32 ip6[4])
{
	return ip6[0] == 0 && ip6[1] == 0 && ip6[2] == 0 && ip6[3] == sockaccel_ntohl(1);
}

/*
 * Fill *key for the socket described by *f. *key must be zeroed by the caller
 * (the padding is hashed). Returns 0, or -1 for a family other than IPv4 and
 * IPv6. netns_cookie is stored only for loopback connections (see abi.h) and
 * is ignored otherwise; pass the context's network namespace cookie.
 */
SOCKACCEL_INLINE int sockaccel_key_from_fields(struct sockaccel_key *key,
					       const struct sockaccel_sock_fields *f,
					       __u64 netns_cookie)
{
	int loopback;

	if (f->family == SOCKACCEL_AF_INET) {
		key->family = SOCKACCEL_AF_INET;
		key->local_ip[0] = f->local_ip4;
		key->remote_ip[0] = f->remote_ip4;
		loopback = sockaccel_ip4_is_loopback(f->local_ip4) ||
			   sockaccel_ip4_is_loopback(f->remote_ip4);
	} else if (f->family == SOCKACCEL_AF_INET6) {
		if (sockaccel_ip6_is_v4mapped(f->local_ip6) &&
		    sockaccel_ip6_is_v4mapped(f->remote_ip6)) {
			/* A dual-stack socket talking IPv4: key it as IPv4 so
			 * it matches its (possibly IPv4-only) peer. */
			key->family = SOCKACCEL_AF_INET;
			key->local_ip[0] = f->local_ip6[3];
			key->remote_ip[0] = f->remote_ip6[3];
			loopback = sockaccel_ip4_is_loopback(f->local_ip6[3]) ||
				   sockaccel_ip4_is_loopback(f->remote_ip6[3]);
		} else {
			key->family = SOCKACCEL_AF_INET6;
			key->local_ip[0] = f->local_ip6[0];
			key->local_ip[1] = f->local_ip6[1];
			key->local_ip[2] = f->local_ip6[2];
			key->local_ip[3] = f->local_ip6[3];
			key->remote_ip[0] = f->remote_ip6[0];
			key->remote_ip[1] = f->remote_ip6[1];
			key->remote_ip[2] = f->remote_ip6[2];
			key->remote_ip[3] = f->remote_ip6[3];
			loopback = sockaccel_ip6_is_loopback(f->local_ip6) ||
				   sockaccel_ip6_is_loopback(f->remote_ip6);
		}
	} else {
		return -1;
	}
	key->local_port = (__u16)f->local_port;
	key->remote_port = (__u16)(sockaccel_ntohl(f->remote_port) & 0xffff);
	key->netns = loopback ? netns_cookie : 0;
	return 0;
}

/* The key under which the peer of the socket keyed *key is stored. */
SOCKACCEL_INLINE void sockaccel_key_peer(struct sockaccel_key *peer, const struct sockaccel_key *key)
{
	peer->netns = key->netns;
	peer->family = key->family;
	peer->pad = 0;
	peer->local_port = key->remote_port;
	peer->remote_port = key->local_port;
	peer->local_ip[0] = key->remote_ip[0];
	peer->local_ip[1] = key->remote_ip[1];
	peer->local_ip[2] = key->remote_ip[2];
	peer->local_ip[3] = key->remote_ip[3];
	peer->remote_ip[0] = key->local_ip[0];
	peer->remote_ip[1] = key->local_ip[1];
	peer->remote_ip[2] = key->local_ip[2];
	peer->remote_ip[3] = key->local_ip[3];
}

#ifdef __cplusplus
}
#endif

#endif /* SOCKACCEL_KEY_H */
