// SPDX-License-Identifier: GPL-2.0-only
/*
 * Experimental copy of the sockaccel data plane (bpf/sockaccel.bpf.c at the
 * time of writing: insert on ESTABLISHED, redirect with BPF_F_INGRESS, never
 * redirect again after one TCP-path send), plus one optional mitigation for
 * the half-close EAGAIN, selected by the loader through `mitigation`:
 *
 *   0  none (baseline, same behaviour as the project's programs)
 *   1  delete-at-fin: get BPF_SOCK_OPS_STATE_CB; when the socket enters
 *      FIN_WAIT1 (its own shutdown(SHUT_WR) or close()), delete it from the
 *      sockhash if its psock has no unread redirected data and nobody else
 *      holds the psock (refcnt == 1, i.e. only the map's reference).
 *      The callback runs inside tcp_set_state() with the socket lock held, so
 *      no redirect can be *enqueued* into this socket meanwhile
 *      (bpf_tcp_ingress() takes lock_sock() of the target).
 *      NOT SAFE: a peer send that already passed its verdict but has not yet
 *      taken a reference on our psock gets -EPIPE (seen on 6.1 under
 *      emulation), or, if it took that reference between our check and the
 *      delete, has its message purged with our psock (silent loss).
 *      (Checking the peer's psock through a sockhash lookup cannot be built:
 *      sockops may look the peer up but may not call bpf_sk_release(), so the
 *      verifier rejects it.)
 *   2  delete-at-fin-unchecked: the same without the two checks, to show what
 *      the checks are for (loses unread redirected data).
 *   4  gate: a per-receiver word in redir_gate, keyed like the sockhash.
 *      The peer's sk_msg sets PEER_REDIRECTED with an atomic fetch_or
 *      *before* it returns a redirect verdict into this socket, and does not
 *      redirect if the old value had CLOSING. At FIN_WAIT1 the socket sets
 *      CLOSING with an atomic fetch_or; if the old value had no
 *      PEER_REDIRECTED, no redirect into it was ever decided and none will
 *      be (both bits live in one word, so the two fetch_or's are ordered),
 *      hence its ingress_msg is empty for good and deleting it loses
 *      nothing and cannot make a peer send fail. Otherwise it is kept.
 *      No kernel-internal reads.
 *   5  gate + quiet peer: mode 4, and when the peer has redirected before,
 *      still delete if (a) this socket's ingress_msg is empty and (b) the
 *      peer's psock refcount is 1 right after CLOSING was set. A peer send
 *      holds its own psock (sk_psock_get() in tcp_bpf_sendmsg()) for the
 *      whole call, redirect included, and cannot finish a redirect into us
 *      while we hold our socket lock (bpf_tcp_ingress() takes it); so
 *      refcount 1 means no redirect into us is in flight, and every later
 *      one sees CLOSING. The peer's psock address is recorded at insert time
 *      in psock_addr (a stale address after the peer closed can only read a
 *      dead psock, which cannot be sending). Peers blocked in recv() also
 *      hold their psock: then we keep the socket (conservative).
 *
 * Research code; not part of the build.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* The project's key layout and key building, unchanged. */
#include "sockaccel/key.h"

/* Kernel-internal types, only the fields read; CO-RE relocates them. */
struct list_head {
	struct list_head *next;
	struct list_head *prev;
} __attribute__((preserve_access_index));

typedef struct {
	int counter;
} atomic_t;

struct refcount_struct {
	atomic_t refs;
} __attribute__((preserve_access_index));

struct sk_psock {
	struct list_head ingress_msg;
	struct refcount_struct refcnt;
} __attribute__((preserve_access_index));

struct sock {
	void *sk_user_data;
} __attribute__((preserve_access_index));

/* struct tcp_sock starts with inet_conn.icsk_inet.sk (struct sock). */
struct tcp_sock;

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 mitigation = 0;

#define SK_TCP_PATH 1u

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct sockaccel_key);
	__type(value, __u64);
} sock_hash SEC(".maps");

struct sk_st {
	__u32 flags;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sk_st);
} sk_state SEC(".maps");

#define GATE_PEER_REDIRECTED 1ull
#define GATE_CLOSING 2ull

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sockaccel_key);
	__type(value, __u64);
} redir_gate SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sockaccel_key);
	__type(value, __u64);
} psock_addr SEC(".maps");

enum {
	C_ADDED,
	C_REDIRECTS,
	C_TCP_PATH_SENDS,
	C_FIN_SEEN,
	C_FIN_DELETED,
	C_FIN_SKIP_NONEMPTY,
	C_FIN_SKIP_REFS,
	C_FIN_DELETE_FAILED,
	C_FIN_NO_PSOCK,
	C_FIN_SKIP_PEER_REDIRECTED,
	C_GATE_CLOSED_SENDS,
	C_GATE_MISSING,
	C_FIN_PEER_QUIET_DELETED,
	C__MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, C__MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &i);
	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline int key_of_skops(struct bpf_sock_ops *skops, struct sockaccel_key *key)
{
	struct sockaccel_sock_fields f = {};

	f.family = skops->family;
	f.local_ip4 = skops->local_ip4;
	f.remote_ip4 = skops->remote_ip4;
	f.local_ip6[0] = skops->local_ip6[0];
	f.local_ip6[1] = skops->local_ip6[1];
	f.local_ip6[2] = skops->local_ip6[2];
	f.local_ip6[3] = skops->local_ip6[3];
	f.remote_ip6[0] = skops->remote_ip6[0];
	f.remote_ip6[1] = skops->remote_ip6[1];
	f.remote_ip6[2] = skops->remote_ip6[2];
	f.remote_ip6[3] = skops->remote_ip6[3];
	f.local_port = skops->local_port;
	f.remote_port = skops->remote_port;
	__builtin_memset(key, 0, sizeof(*key));
	return sockaccel_key_from_fields(key, &f, bpf_get_netns_cookie(skops));
}

/* Read a socket's psock: ingress_msg emptiness and reference count.
 * Returns 0, or -1 if there is no psock / the reads fail. */
static __always_inline int psock_state(void *bsk, int *empty, int *refs)
{
	struct tcp_sock *tp;
	struct sk_psock *psock;
	void *ud = NULL;
	struct list_head *next = NULL;

	tp = bpf_skc_to_tcp_sock(bsk);
	if (!tp)
		return -1;
	if (bpf_probe_read_kernel(&ud, sizeof(ud), &((struct sock *)tp)->sk_user_data))
		return -1;
	psock = (struct sk_psock *)((unsigned long)ud & ~7UL);
	if (!psock)
		return -1;
	if (bpf_probe_read_kernel(&next, sizeof(next), &psock->ingress_msg.next))
		return -1;
	if (bpf_probe_read_kernel(refs, sizeof(*refs), &psock->refcnt.refs.counter))
		return -1;
	*empty = (void *)next == (void *)&psock->ingress_msg;
	return 0;
}

/* The address of the socket's psock, or 0. */
static __always_inline __u64 psock_of(void *bsk)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(bsk);
	void *ud = NULL;

	if (!tp || bpf_probe_read_kernel(&ud, sizeof(ud), &((struct sock *)tp)->sk_user_data))
		return 0;
	return (unsigned long)ud & ~7UL;
}

/* 1 if the socket's psock has nothing in ingress_msg and only one reference,
 * 0 if not (with *why set), -1 if unknown. */
static __always_inline int psock_idle(struct bpf_sock_ops *skops, int *why)
{
	struct bpf_sock *bsk = skops->sk;
	int empty = 0, refs = 0;

	if (!bsk)
		return -1;
	if (psock_state(bsk, &empty, &refs))
		return -1;
	if (!empty) {
		*why = C_FIN_SKIP_NONEMPTY;
		return 0;
	}
	if (refs != 1) {
		*why = C_FIN_SKIP_REFS;
		return 0;
	}
	return 1;
}

SEC("sockops")
int mit_sockops(struct bpf_sock_ops *skops)
{
	struct sockaccel_key key;
	struct sk_st *st;
	struct bpf_sock *sk;

	if (skops->family != SOCKACCEL_AF_INET && skops->family != SOCKACCEL_AF_INET6)
		return 1;

	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		if (skops->data_segs_out > 0)
			return 1;
		if (key_of_skops(skops, &key) < 0)
			return 1;
		sk = skops->sk;
		if (!sk)
			return 1;
		st = bpf_sk_storage_get(&sk_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (!st)
			return 1;
		if (mitigation >= 4) {
			/* The gate must exist before the socket can be a target. */
			__u64 zero = 0;
			if (bpf_map_update_elem(&redir_gate, &key, &zero, BPF_ANY))
				return 1;
		}
		if (bpf_sock_hash_update(skops, &sock_hash, &key, BPF_NOEXIST) == 0) {
			count(C_ADDED);
			if (mitigation)
				bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_STATE_CB_FLAG);
			if (mitigation == 5) {
				__u64 a = psock_of(sk);
				if (a)
					bpf_map_update_elem(&psock_addr, &key, &a, BPF_ANY);
			}
		}
		return 1;
	case BPF_SOCK_OPS_STATE_CB:
		if (!mitigation)
			return 1;
		if (mitigation >= 4 && skops->args[1] == BPF_TCP_CLOSE) {
			if (key_of_skops(skops, &key) == 0) {
				bpf_map_delete_elem(&redir_gate, &key);
				bpf_map_delete_elem(&psock_addr, &key);
			}
			return 1;
		}
		if (skops->args[1] != BPF_TCP_FIN_WAIT1)
			return 1;
		count(C_FIN_SEEN);
		if (key_of_skops(skops, &key) < 0)
			return 1;
		if (mitigation == 1) {
			int why = C_FIN_NO_PSOCK; /* e.g. close(): sock_map_close() unlinked it first */
			if (psock_idle(skops, &why) != 1) {
				count(why);
				return 1;
			}
		}
		if (mitigation >= 4) {
			__u64 *g = bpf_map_lookup_elem(&redir_gate, &key);
			if (!g) {
				count(C_GATE_MISSING);
				return 1;
			}
			if (__sync_fetch_and_or(g, GATE_CLOSING) & GATE_PEER_REDIRECTED) {
				struct sockaccel_key peer;
				struct sk_psock *pp;
				__u64 *pa;
				int empty = 0, refs = 0, prefs = 0;

				if (mitigation != 5) {
					count(C_FIN_SKIP_PEER_REDIRECTED);
					return 1;
				}
				__builtin_memset(&peer, 0, sizeof(peer));
				sockaccel_key_peer(&peer, &key);
				pa = bpf_map_lookup_elem(&psock_addr, &peer);
				if (!skops->sk || !pa || psock_state(skops->sk, &empty, &refs) || !empty) {
					count(C_FIN_SKIP_PEER_REDIRECTED);
					return 1;
				}
				pp = (struct sk_psock *)*pa;
				if (bpf_probe_read_kernel(&prefs, sizeof(prefs), &pp->refcnt.refs.counter) || prefs != 1) {
					count(C_FIN_SKIP_PEER_REDIRECTED);
					return 1;
				}
				count(C_FIN_PEER_QUIET_DELETED);
			}
		}
		if (bpf_map_delete_elem(&sock_hash, &key) == 0)
			count(C_FIN_DELETED);
		else
			count(C_FIN_DELETE_FAILED);
		return 1;
	}
	return 1;
}

SEC("sk_msg")
int mit_redirect(struct sk_msg_md *msg)
{
	struct sockaccel_sock_fields f = {};
	struct sockaccel_key key, peer;
	struct bpf_sock *sk = msg->sk;
	struct sk_st *st;

	if (!sk)
		return SK_PASS;
	st = bpf_sk_storage_get(&sk_state, sk, 0, 0);
	if (!st || (st->flags & SK_TCP_PATH))
		goto tcp;
	f.family = msg->family;
	f.local_ip4 = msg->local_ip4;
	f.remote_ip4 = msg->remote_ip4;
	f.local_ip6[0] = msg->local_ip6[0];
	f.local_ip6[1] = msg->local_ip6[1];
	f.local_ip6[2] = msg->local_ip6[2];
	f.local_ip6[3] = msg->local_ip6[3];
	f.remote_ip6[0] = msg->remote_ip6[0];
	f.remote_ip6[1] = msg->remote_ip6[1];
	f.remote_ip6[2] = msg->remote_ip6[2];
	f.remote_ip6[3] = msg->remote_ip6[3];
	f.local_port = msg->local_port;
	f.remote_port = msg->remote_port;
	__builtin_memset(&key, 0, sizeof(key));
	if (sockaccel_key_from_fields(&key, &f, bpf_get_netns_cookie(msg)) < 0)
		goto mark;
	__builtin_memset(&peer, 0, sizeof(peer));
	sockaccel_key_peer(&peer, &key);
	if (mitigation >= 4) {
		/* Announce the redirect before deciding it; back off if the
		 * target is closing. One atomic on the target's gate word. */
		__u64 *g = bpf_map_lookup_elem(&redir_gate, &peer);
		if (!g) {
			count(C_GATE_MISSING);
			goto mark;
		}
		if (__sync_fetch_and_or(g, GATE_PEER_REDIRECTED) & GATE_CLOSING) {
			count(C_GATE_CLOSED_SENDS);
			goto mark;
		}
	}
	if (bpf_msg_redirect_hash(msg, &sock_hash, &peer, BPF_F_INGRESS) == SK_PASS) {
		count(C_REDIRECTS);
		return SK_PASS;
	}
mark:
	st->flags |= SK_TCP_PATH;
tcp:
	count(C_TCP_PATH_SENDS);
	return SK_PASS;
}
