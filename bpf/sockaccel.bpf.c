// SPDX-License-Identifier: GPL-2.0-only
/*
 * The sockaccel data plane.
 *
 *  - sockaccel_sockops (sockops, attached to a cgroup): puts every newly
 *    established TCP socket of the cgroup into sock_hash.
 *  - sockaccel_redirect (sk_msg, attached to sock_hash): redirects each send
 *    of a socket in sock_hash straight into its peer's receive queue, when the
 *    peer is in sock_hash too; otherwise the send takes the TCP stack.
 *
 * Data safety, the reason for most of the code here (docs/kernel-facts.md):
 *  - Ordering rule (fact 2). tcp_bpf_recvmsg() serves redirected data before
 *    data that came through the TCP stack. So once a socket has sent a single
 *    byte through TCP, it must never redirect again, or its peer could read
 *    later bytes first. That mark lives in socket-local storage, created at
 *    insert time; a socket without it never redirects.
 *  - Back-pressure: a sender whose peer has more than max_unread_bytes
 *    unread sends through TCP (and blocks there, as TCP does) until the peer
 *    has caught up; see SOCKACCEL_SK_HELD_BACK in abi.h.
 *  - Reader checks: a send is redirected only into a socket whose reader
 *    sees redirected data exactly as it sees TCP data (non-blocking, no
 *    SO_RCVLOWAT); see SOCKACCEL_GATE_READER_OK in abi.h.
 *  - Demotion: a connection that runs slower redirected than on TCP is
 *    marked for TCP for good and handed to the daemon's lossless drain,
 *    which takes it out of the sockhash; see demote() below.
 *  - Never drop: every path returns SK_PASS, and apply_bytes/cork are never
 *    used, so a verdict can only choose between "redirect" and "TCP".
 *  - Lossless drain (fact 1: deleting a socket frees its unread redirected
 *    data). sockaccel_drain, a sockhash iterator, removes a socket only when
 *    no redirected byte is unread in it and none can still arrive; see the
 *    comment above it and docs/architecture.md.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#include "sockaccel/abi.h"
#include "sockaccel/key.h"
#include "kernel.bpf.h"

/* errno values, without pulling libc headers into BPF code. */
#define E2BIG_ 7
#define ENOMEM_ 12

char LICENSE[] SEC("license") = "GPL";

/* Capacity is set by the daemon before load (bpf_map__set_max_entries). */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct sockaccel_key);
	__type(value, __u64); /* 8 bytes: user space reads back socket cookies */
} sock_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sockaccel_sk_state);
} sk_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sockaccel_config);
} config SEC(".maps");

/* The half-close gate (enum sockaccel_gate_bit), one word per inserted
 * socket, keyed by its sockhash key. LRU, sized like the sockhash: a word
 * left behind by a socket whose close was not seen (sockops detached) is
 * evicted eventually, and a missing word only ever means "take TCP" for a
 * sender and "stay" for a closing socket. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* set to the sockhash capacity before load */
	__type(key, struct sockaccel_key);
	__type(value, struct sockaccel_gate);
} redir_gate SEC(".maps");

/* Drain pass control and the cookies the daemon has judged safe to delete. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sockaccel_drain_ctl);
} drain_ctl SEC(".maps");

/* The drain's two cookie sets are filled by the daemon for one pass and
 * emptied after it, and sized for a whole flush: allocated per element, so
 * the memory is only used while a drain runs (preallocated, they cost
 * about 20 MiB each at a capacity of 262,144). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536); /* set to the sockhash capacity before load */
	__type(key, __u64);
	__type(value, struct sockaccel_drain_verdict);
} drain_delete SEC(".maps");

/* Sockets a CLAIM_LISTED pass claims (key: socket cookie; value: enum
 * sockaccel_drain_list). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536); /* set to the sockhash capacity before load */
	__type(key, __u64);
	__type(value, __u32);
} drain_claim SEC(".maps");

/* Reader checks that kept a socket on TCP, for the daemon's log (struct
 * sockaccel_reader_event), once per cgroup and reason (reader_seen). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} reader_events SEC(".maps");

/* Demotions, for the daemon to drain (struct sockaccel_demote_event). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} demote_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct sockaccel_reader_event); /* ports zero */
	__type(value, __u8);
} reader_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SOCKACCEL_CNT__MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Operator policy (struct sockaccel_config.policy and the comment above
 * enum sockaccel_policy_flag in abi.h). Written only by the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * SOCKACCEL_POLICY_PORT_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} policy_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, SOCKACCEL_POLICY_MAX_CIDRS);
	__type(key, struct sockaccel_cidr_key);
	__type(value, __u32);
} policy_cidrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCKACCEL_POLICY_MAX_CGROUPS);
	__type(key, __u64);
	__type(value, __u32);
} policy_cgroups SEC(".maps");

static __always_inline void count(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	/* Per-CPU, but a preemptible kernel can interleave two programs on one
	 * CPU; the atomic add keeps the totals exact. */
	if (v)
		__sync_fetch_and_add(v, n);
}

static __always_inline struct sockaccel_config *config_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&config, &zero);
}

static __always_inline struct sk_psock *sk_psock_of(struct sock *sk)
{
	unsigned long data = (unsigned long)BPF_CORE_READ(sk, sk_user_data);

	return (struct sk_psock *)(data & SOCKACCEL_SK_USER_DATA_PTRMASK);
}

/* Redirected bytes queued in `sk` and not yet read; 0 where the kernel does
 * not keep the total (no psock->msg_tot_len): there is no back-pressure
 * there, which the daemon's feature probe reports. */
static __always_inline __u64 unread_bytes(struct sock *sk)
{
	struct sk_psock *psock;

	if (!bpf_core_field_exists(struct sk_psock, msg_tot_len))
		return 0;
	psock = sk_psock_of(sk);
	if (!psock)
		return 0;
	return BPF_CORE_READ(psock, msg_tot_len);
}

/* Whether `psock` holds no redirected data: its ingress list is empty.
 * Both kernels have the list (6.1 has no msg_tot_len). */
static __always_inline int ingress_empty(struct sk_psock *psock)
{
	void *head = (void *)psock + bpf_core_field_offset(struct sk_psock, ingress_msg);

	return (void *)BPF_CORE_READ(psock, ingress_msg.next) == head;
}

/* The socket bpf_msg_redirect_hash() just chose, read from the kernel's
 * struct sk_msg behind the context (no helper returns it). */
static __always_inline struct sock *redirect_target(struct sk_msg_md *msg)
{
	struct sock *peer = NULL;

	bpf_probe_read_kernel(&peer, sizeof(peer),
			      (void *)msg + bpf_core_field_offset(struct sk_msg, sk_redir));
	return peer;
}

/* Reader checks (SOCKACCEL_GATE_READER_OK). What the socket at `addr`
 * (a struct sock) says about its reader: */
enum reader_verdict {
	READER_OK = 1,       /* non-blocking, SO_RCVLOWAT at most 1 */
	READER_PENDING = 0,  /* no file yet (not accepted) or unreadable */
	READER_BLOCKING = -1,
	READER_LOWAT = -2,
};

static __always_inline int reader_check(__u64 addr)
{
	struct sock *sk = (struct sock *)addr;
	struct socket *sock;
	struct file *file;

	if (!sk)
		return READER_PENDING;
	sock = BPF_CORE_READ(sk, sk_socket);
	if (!sock)
		return READER_PENDING;
	file = BPF_CORE_READ(sock, file);
	if (!file)
		return READER_PENDING;
	if (!(BPF_CORE_READ(file, f_flags) & SOCKACCEL_O_NONBLOCK))
		return READER_BLOCKING;
	if (BPF_CORE_READ(sk, sk_rcvlowat) > 1)
		return READER_LOWAT;
	return READER_OK;
}

static __always_inline __u32 reader_counter(int verdict)
{
	return verdict == READER_BLOCKING ? SOCKACCEL_CNT_READER_BLOCKING
	       : verdict == READER_LOWAT  ? SOCKACCEL_CNT_READER_LOWAT
					  : SOCKACCEL_CNT_READER_UNKNOWN;
}

/* A reader check kept the socket at `addr` (a struct sock) on TCP: count
 * it, and tell the daemon the first time for its cgroup and reason. */
static __always_inline void reader_kept(__u64 addr, int verdict, struct bpf_sock_ops *skops)
{
	struct sockaccel_reader_event ev = {};
	__u8 one = 1;

	ev.reason = reader_counter(verdict);
	count(ev.reason, 1);
	if (!addr)
		return;
	ev.cgroup_id = BPF_CORE_READ((struct sock *)addr, sk_cgrp_data.cgroup, kn, id);
	if (bpf_map_update_elem(&reader_seen, &ev, &one, BPF_NOEXIST))
		return; /* reported before (or the table is busy: the counter has it) */
	ev.local_port = (__u16)skops->local_port;
	ev.remote_port = (__u16)bpf_ntohl(skops->remote_port);
	bpf_ringbuf_output(&reader_events, &ev, sizeof(ev), 0);
}

/* May a HELD_BACK socket redirect again? Only when its peer has read every
 * byte this socket sent through TCP, so no TCP byte can be overtaken (the
 * ordering rule): TCP has delivered everything we wrote (peer rcv_nxt ==
 * our write_seq) and the peer's TCP receive queue is empty (an skb leaves it
 * only once fully read). copied_seq is not used: whether reads of redirected
 * data advance it differs between kernels. And the peer must have worked its
 * redirect queue down to half the limit (hysteresis, so a sender does not
 * flap at the threshold). */
static __always_inline int may_resume(struct bpf_sock *sk, __u64 peer_addr, __u64 limit,
				      __u32 *seq)
{
	struct tcp_sock *self = bpf_skc_to_tcp_sock(sk);
	struct tcp_sock *peer = (struct tcp_sock *)peer_addr;

	if (!self || !peer)
		return 0;
	*seq = BPF_CORE_READ(self, write_seq);
	if (BPF_CORE_READ(peer, rcv_nxt) != *seq)
		return 0;
	if (BPF_CORE_READ((struct sock *)peer, sk_receive_queue.qlen) != 0)
		return 0;
	return unread_bytes((struct sock *)peer) < limit / 2;
}

/* A send may also resume on a hint (SOCKACCEL_SK_RESUME_HINT): a segment
 * received while held found the peer drained up to resume_seq, and no TCP
 * byte was written since. A sender that keeps outrunning its reader is
 * seldom at a send just when the reader has caught up (on one core, the
 * woken sender tends to run before the reader has read the rest); the ACK
 * the reader sends once it has read everything is that moment, and it
 * reaches the sender's own socket. */
static __always_inline int resume_hinted(struct bpf_sock *sk, struct sockaccel_sk_state *st)
{
	struct tcp_sock *self;

	if (!(st->flags & SOCKACCEL_SK_RESUME_HINT))
		return 0;
	self = bpf_skc_to_tcp_sock(sk);
	if (self && BPF_CORE_READ(self, write_seq) == st->resume_seq)
		return 1;
	/* Stale: TCP bytes were written since. Dropped at once, so it can
	 * never match again once write_seq has wrapped around. */
	__sync_fetch_and_and(&st->flags, ~SOCKACCEL_SK_RESUME_HINT);
	return 0;
}

/* The key of the socket behind a sockops or sk_msg context. Both context
 * types name these fields alike, but each field access must be a direct
 * context load (the verifier rewrites it), so this is a macro, not a
 * function taking a pointer. Zeroes *key first (the padding is hashed). */
#define key_of_ctx(ctx, key)                                                        \
	({                                                                           \
		struct sockaccel_sock_fields __f = {                                \
			.family = (ctx)->family,                                    \
			.local_ip4 = (ctx)->local_ip4,                              \
			.remote_ip4 = (ctx)->remote_ip4,                            \
			.local_ip6 = { (ctx)->local_ip6[0], (ctx)->local_ip6[1],    \
				       (ctx)->local_ip6[2], (ctx)->local_ip6[3] },  \
			.remote_ip6 = { (ctx)->remote_ip6[0], (ctx)->remote_ip6[1], \
					(ctx)->remote_ip6[2], (ctx)->remote_ip6[3] }, \
			.local_port = (ctx)->local_port,                            \
			.remote_port = (ctx)->remote_port,                          \
		};                                                                   \
		__builtin_memset((key), 0, sizeof(*(key)));                          \
		sockaccel_key_from_fields((key), &__f, bpf_get_netns_cookie(ctx));  \
	})

static __always_inline int key_of_skops(struct bpf_sock_ops *skops, struct sockaccel_key *key)
{
	return key_of_ctx(skops, key);
}

/* The gate word of the socket keyed `key`, or NULL if it has none. */
static __always_inline __u64 *gate_word(const struct sockaccel_key *key)
{
	struct sockaccel_gate *gate = bpf_map_lookup_elem(&redir_gate, key);

	return gate ? &gate->word : NULL;
}

/*
 * Leaving the sockhash safely, from the socket's own events. Deleting a
 * socket frees the redirected data queued in it (fact 1), so: announce
 * CLOSING on our gate word (every sender that has not yet decided takes TCP
 * from now on), and delete only if no sender had decided a redirect into us
 * before that (PEER_REDIRECTED unset), hence none is queued or in flight.
 * One atomic fetch-or on the word that senders fetch-or too, so exactly one
 * side sees the other's bit. Returns 1 if the socket left, 0 if it stays.
 */
static __always_inline int gate_leave(struct sockaccel_key *key, __u32 kept_counter)
{
	struct sockaccel_gate *gate = bpf_map_lookup_elem(&redir_gate, key);

	if (!gate)
		return 0; /* cannot prove anything: stay */
	if (__sync_fetch_and_or(&gate->word, SOCKACCEL_GATE_CLOSING) &
	    SOCKACCEL_GATE_PEER_REDIRECTED) {
		if (kept_counter < SOCKACCEL_CNT__MAX)
			count(kept_counter, 1);
		return 0;
	}
	return bpf_map_delete_elem(&sock_hash, key) == 0;
}

static __always_inline int port_in(__u32 set, __u32 port)
{
	__u32 idx = SOCKACCEL_POLICY_PORT_WORD(set, port & 0xffff);
	__u64 *word = bpf_map_lookup_elem(&policy_ports, &idx);

	return word && (*word & (1ULL << (port & 63)));
}

/* The verdict of the longest CIDR prefix holding `ip` (16 bytes, IPv4
 * mapped), or 0. */
static __always_inline __u32 cidr_verdict(const __u32 ip[4], __u16 family)
{
	struct sockaccel_cidr_key k = { .prefixlen = 128 };
	__u32 *v;

	if (family == SOCKACCEL_AF_INET) {
		/* ::ffff:a.b.c.d */
		__builtin_memset(k.addr, 0, 10);
		k.addr[10] = 0xff;
		k.addr[11] = 0xff;
		__builtin_memcpy(&k.addr[12], &ip[0], 4);
	} else {
		__builtin_memcpy(k.addr, ip, 16);
	}
	v = bpf_map_lookup_elem(&policy_cidrs, &k);
	return v ? *v : 0;
}

/* The verdict of the nearest cgroup, from the socket's own up, that has an
 * entry; 0 if none. */
static __always_inline __u32 cgroup_verdict(struct sock *sk)
{
	struct cgroup_subsys_state *css;
	struct cgroup *cg;
	__u32 *v;
	__u64 id;
	int i;

	cg = BPF_CORE_READ(sk, sk_cgrp_data.cgroup);
	for (i = 0; i < SOCKACCEL_POLICY_CGROUP_DEPTH && cg; i++) {
		id = BPF_CORE_READ(cg, kn, id);
		v = bpf_map_lookup_elem(&policy_cgroups, &id);
		if (v)
			return *v;
		css = BPF_CORE_READ(cg, self.parent);
		cg = css ? (struct cgroup *)((void *)css - bpf_core_field_offset(struct cgroup, self))
			 : NULL;
	}
	return 0;
}

/* May this socket be in the sockhash? See enum sockaccel_policy_flag. `sk`
 * is only read for its cgroup, and only if a cgroup rule exists. */
static __always_inline int policy_allows(struct sock *sk, const struct sockaccel_key *key,
					 __u32 policy)
{
	__u32 lv, rv, cv;

	if (!policy)
		return 1;
	if ((policy & SOCKACCEL_POLICY_EXCLUDE_PORTS) &&
	    (port_in(SOCKACCEL_POLICY_PORTS_EXCLUDE, key->local_port) ||
	     port_in(SOCKACCEL_POLICY_PORTS_EXCLUDE, key->remote_port)))
		return 0;
	if ((policy & SOCKACCEL_POLICY_INCLUDE_PORTS) &&
	    !port_in(SOCKACCEL_POLICY_PORTS_INCLUDE, key->local_port) &&
	    !port_in(SOCKACCEL_POLICY_PORTS_INCLUDE, key->remote_port))
		return 0;
	if (policy & (SOCKACCEL_POLICY_INCLUDE_CIDRS | SOCKACCEL_POLICY_EXCLUDE_CIDRS)) {
		lv = cidr_verdict(key->local_ip, key->family);
		rv = cidr_verdict(key->remote_ip, key->family);
		if (lv == SOCKACCEL_POLICY_MATCH_EXCLUDE || rv == SOCKACCEL_POLICY_MATCH_EXCLUDE)
			return 0;
		if ((policy & SOCKACCEL_POLICY_INCLUDE_CIDRS) &&
		    lv != SOCKACCEL_POLICY_MATCH_INCLUDE && rv != SOCKACCEL_POLICY_MATCH_INCLUDE)
			return 0;
	}
	if (policy & SOCKACCEL_POLICY_CGROUPS) {
		if (!sk)
			return 0;
		cv = cgroup_verdict(sk);
		if (cv == SOCKACCEL_POLICY_MATCH_EXCLUDE)
			return 0;
		if ((policy & SOCKACCEL_POLICY_INCLUDE_CGROUPS) && cv != SOCKACCEL_POLICY_MATCH_INCLUDE)
			return 0;
	}
	return 1;
}

/*
 * The half-close mitigation (kernel issue eagain_blocking_read). A socket in
 * a sockhash reads through tcp_bpf_recvmsg(), which turns the wakeup of the
 * delayed ACK of our own FIN into EAGAIN for a blocking read: "shutdown, then
 * read the answer" fails. Leaving the sockhash at our FIN restores plain
 * tcp_recvmsg(), but deleting a socket frees its unread redirected data
 * (fact 1), so it leaves only if the gate proves that no redirect into it
 * was ever decided, hence none is queued or in flight, and none can come:
 * every later sender sees CLOSING and takes TCP.
 * Runs in tcp_set_state() with the socket locked.
 */
static __always_inline int state_change(struct bpf_sock_ops *skops)
{
	struct sockaccel_key key;

	if (key_of_skops(skops, &key) < 0)
		return 1;
	if (skops->args[1] == BPF_TCP_CLOSE) {
		bpf_map_delete_elem(&redir_gate, &key);
		return 1;
	}
	if (skops->args[1] != BPF_TCP_FIN_WAIT1)
		return 1;
	if (gate_leave(&key, SOCKACCEL_CNT_FIN_KEPT))
		count(SOCKACCEL_CNT_FIN_REMOVED, 1);
	return 1;
}

/*
 * Local-peer detection, active side (SOCKACCEL_GATE_LOCAL_PEER). Called for
 * the first segment an actively established socket receives. A local peer
 * claims us while it processes the handshake's last ACK, before it can send
 * anything, so by now a local peer has claimed us; if none has, the peer is
 * remote (or not accelerated) and we leave. A socket that sends first
 * already took TCP for good in the sk_msg verdict; it leaves here, at the
 * ACK of that send.
 */
static __always_inline int first_segment(struct bpf_sock_ops *skops,
					 struct sockaccel_sk_state *st)
{
	struct sockaccel_key key;
	__u64 *gate;

	/* Once is enough: every further segment would cost a callback. A
	 * sender held on TCP keeps them, for its resume hint (held_segment()). */
	if (st)
		__sync_fetch_and_or(&st->flags, SOCKACCEL_SK_SEGMENT_SEEN);
	if (!st || !(st->flags & SOCKACCEL_SK_HELD_BACK))
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags &
							 ~BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG);
	if (key_of_skops(skops, &key) < 0)
		return 1;
	gate = gate_word(&key);
	if (gate && (*gate & SOCKACCEL_GATE_LOCAL_PEER))
		return 1;
	/* Should we stay after all (a peer redirected into us), we must still
	 * never redirect: no claimed peer. */
	if (st)
		__sync_fetch_and_or(&st->flags, SOCKACCEL_SK_TCP_PATH);
	if (gate_leave(&key, SOCKACCEL_CNT__MAX))
		count(SOCKACCEL_CNT_UNCLAIMED_REMOVED, 1);
	return 1;
}

/*
 * Reader check, accepted side (SOCKACCEL_SK_READER_PENDING). An accepted
 * socket is inserted before accept() gives it a file, so its reader is
 * checked at the segments it receives (nothing is redirected into it
 * meanwhile: senders wait for READER_OK on TCP, so their sends are such
 * segments). Compatible: READER_OK. Not: leave the sockhash, through the
 * gate (nothing was redirected into it, so nothing can be freed), and read
 * through plain tcp_recvmsg() again.
 */
static __always_inline int reader_segment(struct bpf_sock_ops *skops,
					  struct sockaccel_sk_state *st, struct bpf_sock *sk)
{
	struct sockaccel_key key;
	__u64 *gate;
	int verdict;

	verdict = reader_check((__u64)bpf_skc_to_tcp_sock(sk));
	if (verdict == READER_PENDING)
		return 1; /* not accepted yet: the next segment checks again */
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags &
						 ~BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG);
	__sync_fetch_and_and(&st->flags, ~SOCKACCEL_SK_READER_PENDING);
	if (key_of_skops(skops, &key) < 0)
		return 1;
	if (verdict == READER_OK) {
		gate = gate_word(&key);
		if (gate)
			__sync_fetch_and_or(gate, SOCKACCEL_GATE_READER_OK);
		return 1;
	}
	/* Its own sends stop here too, whatever the gate decides. It stays
	 * only if a sender's check passed just before the reader changed (a
	 * redirect may be queued); every later send re-checks and holds. */
	__sync_fetch_and_or(&st->flags, SOCKACCEL_SK_TCP_PATH);
	reader_kept((__u64)bpf_skc_to_tcp_sock(sk), verdict, skops);
	gate_leave(&key, SOCKACCEL_CNT__MAX);
	return 1;
}

/*
 * A segment for a connecting socket that was held on TCP at its first
 * segment (typically its first sends, made before the peer was accepted:
 * a reader hold). While it stays held, each segment looks for the moment
 * its peer has read every TCP byte and leaves a resume hint for the next
 * send (resume_hinted()); once it is not held, segments stop. Runs with
 * the socket locked, so our write_seq cannot move during the check.
 */
static __always_inline int held_segment(struct bpf_sock_ops *skops,
					struct sockaccel_sk_state *st, struct bpf_sock *sk)
{
	struct sockaccel_config *cfg;
	__u64 limit;
	__u32 seq = 0;

	if (!(st->flags & SOCKACCEL_SK_HELD_BACK)) {
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags &
							 ~BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG);
		return 1;
	}
	cfg = config_get();
	limit = cfg && cfg->max_unread_bytes ? cfg->max_unread_bytes : ~0ULL;
	if (may_resume(sk, st->peer_sk, limit, &seq)) {
		st->resume_seq = seq;
		__sync_fetch_and_or(&st->flags, SOCKACCEL_SK_RESUME_HINT);
	}
	return 1;
}

/* A segment arrived for a socket that asked for segments: an accepted
 * socket whose reader is not checked yet, a connecting socket's first, or
 * a later one of a connecting socket held on TCP. */
static __always_inline int segment(struct bpf_sock_ops *skops)
{
	struct sockaccel_sk_state *st = NULL;
	struct bpf_sock *sk = skops->sk;

	if (sk) {
		st = bpf_sk_storage_get(&sk_state, sk, 0, 0);
		if (st && (st->flags & SOCKACCEL_SK_READER_PENDING))
			return reader_segment(skops, st, sk);
		if (st && (st->flags & SOCKACCEL_SK_SEGMENT_SEEN))
			return held_segment(skops, st, sk);
	}
	return first_segment(skops, st);
}

SEC("sockops")
int sockaccel_sockops(struct bpf_sock_ops *skops)
{
	struct sockaccel_key key, peer;
	struct sockaccel_config *cfg;
	struct sockaccel_sk_state *st;
	struct sockaccel_gate gate_init = {};
	__u64 *peer_gate = NULL;
	struct bpf_sock *sk;
	__u32 cb_flags;
	int reader;
	long err;

	if (skops->family != SOCKACCEL_AF_INET && skops->family != SOCKACCEL_AF_INET6)
		return 1;
	if (skops->op == BPF_SOCK_OPS_STATE_CB)
		return state_change(skops);
	if (skops->op == BPF_SOCK_OPS_PARSE_HDR_OPT_CB)
		return segment(skops);
	/* Inserting is only allowed from the ESTABLISHED callbacks (fact 6). */
	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;

	cfg = config_get();
	if (!cfg || !(cfg->flags & SOCKACCEL_CFG_INSERT)) {
		count(SOCKACCEL_CNT_ADD_SKIPPED_DISABLED, 1);
		return 1;
	}
	/* TCP Fast Open can carry data in the SYN, before this callback. That
	 * data went through TCP, so by the ordering rule this socket may never
	 * redirect: leave it out. */
	if (skops->data_segs_out > 0) {
		count(SOCKACCEL_CNT_ADD_SKIPPED_DATA_SENT, 1);
		return 1;
	}

	if (key_of_skops(skops, &key) < 0)
		return 1;
	sk = skops->sk;
	if (!sk)
		return 1;
	if (cfg->policy && !policy_allows((struct sock *)bpf_skc_to_tcp_sock(sk), &key, cfg->policy)) {
		count(SOCKACCEL_CNT_POLICY_SKIPPED, 1);
		return 1;
	}
	gate_init.sk = (__u64)bpf_skc_to_tcp_sock(sk);

	/* Reader check, connecting side: connect() was called on a file, so
	 * its reader can be checked now. One that cannot see redirected data
	 * stays out, and so does its whole connection (the accepted side finds
	 * no gate word below). */
	if (skops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) {
		reader = reader_check(gate_init.sk);
		if (reader != READER_OK) {
			reader_kept(gate_init.sk, reader, skops);
			return 1;
		}
		gate_init.word = SOCKACCEL_GATE_READER_OK;
	}

	/* Local-peer detection, passive side: our peer must be a socket we
	 * inserted (its gate word exists), hence on this host and accelerated.
	 * Claim it, unless it is already leaving. A remote peer, or a local one
	 * outside the attached cgroup or the policy, leaves us out of the map
	 * altogether. */
	if (skops->op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) {
		sockaccel_key_peer(&peer, &key);
		peer_gate = gate_word(&peer);
		if (!peer_gate ||
		    (__sync_fetch_and_or(peer_gate, SOCKACCEL_GATE_LOCAL_PEER) &
		     SOCKACCEL_GATE_CLOSING)) {
			count(SOCKACCEL_CNT_PEER_NOT_LOCAL, 1);
			return 1;
		}
		gate_init.word = SOCKACCEL_GATE_LOCAL_PEER;
	}

	/* The ordering-rule mark must exist before the socket can send through
	 * sk_msg: without it the socket would have nowhere to record a TCP send.
	 * No storage, no insert. */
	err = -1;
	st = bpf_sk_storage_get(&sk_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		goto not_inserted;
	if (gate_init.word & SOCKACCEL_GATE_LOCAL_PEER)
		__sync_fetch_and_or(&st->flags,
				    SOCKACCEL_SK_LOCAL_PEER | SOCKACCEL_SK_READER_PENDING);

	/* The drain identifies sockets by cookie, and a walk that reaches a
	 * socket only through an untrusted pointer (iter/task_file) can read
	 * the cookie but not generate it. */
	bpf_get_socket_cookie(skops);

	/* The gate word must exist before the socket can be a redirect target:
	 * a sender without one takes TCP. */
	if (bpf_map_update_elem(&redir_gate, &key, &gate_init, BPF_ANY))
		goto not_inserted;

	err = bpf_sock_hash_update(skops, &sock_hash, &key, BPF_NOEXIST);
	if (err == 0) {
		count(SOCKACCEL_CNT_SOCKETS_ADDED, 1);
		/* State callbacks: FIN (the half-close gate) and CLOSE. Both
		 * sides also want received segments: a connecting socket its
		 * first, to check that a local peer claimed it; an accepted one
		 * those until its reader is checked (reader_segment()). */
		cb_flags = skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG |
			   BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG;
		bpf_sock_ops_cb_flags_set(skops, cb_flags);
		return 1;
	}
	/* Not inserted: a gate word claiming a peer would let that peer
	 * believe we are here, and a claimed peer would stay in the map with
	 * nobody to redirect to. Unclaim it, so it leaves at its first segment
	 * (if it has not looked yet; otherwise at its FIN). */
	bpf_map_delete_elem(&redir_gate, &key);
not_inserted:
	if (peer_gate)
		__sync_fetch_and_and(peer_gate, ~(__u64)SOCKACCEL_GATE_LOCAL_PEER);
	if (err == -E2BIG_ || err == -ENOMEM_)
		count(SOCKACCEL_CNT_ADD_FAILED_FULL, 1);
	else
		count(SOCKACCEL_CNT_ADD_FAILED_OTHER, 1);
	return 1;
}

/*
 * Demotion (SOCKACCEL_CFG_DEMOTE): a connection that runs slower redirected
 * than on TCP goes back to TCP for good. Holding such a sender on TCP is
 * not enough: every send of a socket in a sockhash goes through
 * tcp_bpf_sendmsg(), whatever the verdict, and that is where the time
 * goes. So the pair must leave the sockhash, which only the drain can do
 * without loss (fact 1; and sk_msg programs may not delete from a
 * sockhash). The marks are those of a drain's claim (claim_socket()) plus
 * the ordering rule's: CLOSING on both gate words, so neither side
 * redirects into the other again, and TCP_PATH here; then the daemon,
 * told through demote_events, claims both sockets and removes them once
 * nothing redirected is unread or in flight. Nothing is marked unless the
 * event is sent: a socket marked but never drained would stay in the map,
 * paying for it, for its whole life. Deferred, it is judged again.
 */
static __always_inline void demote(struct sockaccel_sk_state *st, const struct sockaccel_key *key,
				   struct sockaccel_gate *peer_gate, __u32 reason, __u32 flag)
{
	struct sockaccel_demote_event *ev;
	__u64 *own;

	ev = bpf_ringbuf_reserve(&demote_events, sizeof(*ev), 0);
	if (!ev) {
		count(SOCKACCEL_CNT_DEMOTE_DEFERRED, 1);
		return;
	}
	own = gate_word(key);
	if (own)
		__sync_fetch_and_or(own, SOCKACCEL_GATE_CLOSING);
	if (peer_gate)
		__sync_fetch_and_or(&peer_gate->word, SOCKACCEL_GATE_CLOSING);
	__sync_fetch_and_or(&st->flags, SOCKACCEL_SK_TCP_PATH | flag);
	__builtin_memcpy(&ev->key, key, sizeof(ev->key));
	ev->reason = reason;
	ev->pad = 0;
	bpf_ringbuf_submit(ev, 0);
	count(reason, 1);
	count(SOCKACCEL_CNT_TCP_PATH_SOCKETS, 1);
}

/*
 * Small-write demotion, judged after each redirect into `target`. TCP
 * appends a small write to the segment its reader has not read yet, so the
 * reader gets many writes per read() and per wakeup; redirected, each write
 * is its own message and its own wakeup, which makes such a stream run at
 * half the speed of TCP on one core. A write counts when it is smaller than
 * `small_bytes` and the peer still holds unread redirected data (this
 * message is not queued yet). Request/response traffic never counts: each
 * side reads the other's message before it answers. Returns 1 when a
 * window of SOCKACCEL_DEMOTE_WINDOW sends is at least half such writes.
 */
static __always_inline int small_writes_window(struct sockaccel_sk_state *st, __u32 size,
					       struct sock *target, __u32 small_bytes)
{
	__u16 sends = st->window_sends + 1;
	__u16 small = st->window_small;
	struct sk_psock *psock;

	if (size < small_bytes) {
		psock = sk_psock_of(target);
		if (psock && !ingress_empty(psock))
			small++;
	}
	if (sends < SOCKACCEL_DEMOTE_WINDOW) {
		st->window_sends = sends;
		st->window_small = small;
		return 0;
	}
	st->window_sends = 0;
	st->window_small = 0;
	return small * 2 >= SOCKACCEL_DEMOTE_WINDOW;
}

/* Does this held send count towards demotion? A back-pressure hold
 * always does. A hold for the peer's reader only while that reader is
 * incompatible (blocking, SO_RCVLOWAT): a connection whose first sends came
 * before the peer was accepted is held until the peer has caught up on
 * them, which a stream can take thousands of sends to do, and it gains
 * once it has. */
static __always_inline int held_for_nothing(const struct sockaccel_sk_state *st)
{
	return !(st->flags & SOCKACCEL_SK_HOLD_READER) || reader_check(st->peer_sk) < READER_PENDING;
}

/* A sender held on TCP (HELD_BACK) that could not resume for
 * demote_held_sends sends in a row is demoted: by back-pressure, it keeps
 * outrunning its reader, and its sends pay for the sockhash for nothing;
 * for its peer's reader, the reader stays incompatible. */
static __always_inline void demote_held(struct sk_msg_md *msg, struct sockaccel_sk_state *st)
{
	struct sockaccel_key key, peer;
	int reader = st->flags & SOCKACCEL_SK_HOLD_READER;

	if (key_of_ctx(msg, &key) < 0)
		return;
	__builtin_memset(&peer, 0, sizeof(peer));
	sockaccel_key_peer(&peer, &key);
	demote(st, &key, bpf_map_lookup_elem(&redir_gate, &peer),
	       reader ? SOCKACCEL_CNT_DEMOTE_READER : SOCKACCEL_CNT_DEMOTE_BACKPRESSURE,
	       reader ? SOCKACCEL_SK_DEMOTED_READER : SOCKACCEL_SK_DEMOTED_BACKPRESSURE);
}

/* The verdict. `kernel_reads` is a constant in each caller, so the basic
 * program has none of the kernel reads that the reader checks, lifting a
 * hold and back-pressure need, and loads on kernels that do not allow them
 * in sk_msg (the daemon's feature probe picks the program). Back-pressure
 * also needs psock->msg_tot_len; where the kernel has none (6.1),
 * unread_bytes() is 0 and the limit never holds. */
static __always_inline int redirect_verdict(struct sk_msg_md *msg, const int kernel_reads)
{
	struct sockaccel_key key, peer;
	struct sockaccel_config *cfg;
	struct sockaccel_sk_state *st;
	struct sockaccel_gate *peer_gate;
	struct bpf_sock *sk = msg->sk;
	__u32 size = msg->size;
	__u64 limit, word, *gate;
	struct sock *target;
	int reader, demote_on;
	__u32 seq = 0;

	if (!sk)
		goto pass;
	/* Created by sockops at insert; missing means "never redirect". */
	st = bpf_sk_storage_get(&sk_state, sk, 0, 0);
	if (!st) {
		count(SOCKACCEL_CNT_STORAGE_MISSING, 1);
		goto pass;
	}
	if (st->flags & SOCKACCEL_SK_TCP_PATH)
		goto pass;
	cfg = config_get();
	if (!cfg || !(cfg->flags & SOCKACCEL_CFG_REDIRECT))
		goto mark_tcp_path;
	limit = kernel_reads ? cfg->max_unread_bytes : 0;
	demote_on = kernel_reads && (cfg->flags & SOCKACCEL_CFG_DEMOTE);
	if (st->flags & SOCKACCEL_SK_HELD_BACK) {
		if (!kernel_reads)
			goto pass; /* cannot tell when to resume: stay on TCP */
		/* A limit turned off since the hold lifts it on the same terms. */
		if (!may_resume(sk, st->peer_sk, limit ? limit : ~0ULL, &seq) &&
		    !resume_hinted(sk, st)) {
			if (demote_on && cfg->demote_held_sends && held_for_nothing(st) &&
			    ++st->held_sends >= cfg->demote_held_sends)
				demote_held(msg, st);
			goto pass;
		}
		/* The reader check below runs again before any redirect. */
		count(st->flags & SOCKACCEL_SK_HOLD_READER ? SOCKACCEL_CNT_READER_RESUMES
							  : SOCKACCEL_CNT_BACKPRESSURE_RESUMES,
		      1);
		__sync_fetch_and_and(&st->flags, ~(SOCKACCEL_SK_HELD_BACK | SOCKACCEL_SK_HOLD_READER |
						   SOCKACCEL_SK_RESUME_HINT));
		st->held_sends = 0;
	}

	if (key_of_ctx(msg, &key) < 0)
		goto mark_tcp_path;
	__builtin_memset(&peer, 0, sizeof(peer));
	sockaccel_key_peer(&peer, &key);

	/* Local-peer detection, active side: no local peer has claimed us, so
	 * none will. Take TCP for good; the socket leaves the sockhash at its
	 * first received segment, the ACK of this send at the latest
	 * (first_segment(): sk_msg programs may not delete from a sockhash). */
	if (!(st->flags & SOCKACCEL_SK_LOCAL_PEER)) {
		gate = gate_word(&key);
		if (!gate || !(*gate & SOCKACCEL_GATE_LOCAL_PEER))
			goto mark_tcp_path;
		__sync_fetch_and_or(&st->flags, SOCKACCEL_SK_LOCAL_PEER);
	}

	/* Announce the redirect on the peer's gate before deciding it; a peer
	 * that has started closing may leave the map, so take TCP (see
	 * gate_leave()). Announcing once is enough: a peer whose word already
	 * holds PEER_REDIRECTED stays at its FIN, so later sends only read the
	 * word and do not write the peer's cache line on every message. */
	peer_gate = bpf_map_lookup_elem(&redir_gate, &peer);
	if (!peer_gate)
		goto miss;
	word = *(volatile __u64 *)&peer_gate->word;
	if (word & SOCKACCEL_GATE_CLOSING)
		goto gate_closed;

	/* Reader check, on every send and before anything is announced: a
	 * peer whose reader cannot see redirected data must be able to leave
	 * the sockhash (reader_segment()), which PEER_REDIRECTED would forbid,
	 * and a reader may turn blocking or raise SO_RCVLOWAT after a
	 * non-blocking connect or accept. Until the peer passes, this send
	 * takes TCP, as a hold: lifted, by the ordering rule, only once the
	 * peer has read every TCP byte. The basic program cannot read the peer
	 * or lift a hold, so it redirects only into a peer whose own check
	 * passed (READER_OK), and otherwise stays on TCP. */
	reader = kernel_reads ? reader_check(peer_gate->sk)
			      : (word & SOCKACCEL_GATE_READER_OK) ? READER_OK : READER_PENDING;
	if (reader != READER_OK || !(word & SOCKACCEL_GATE_READER_OK)) {
		if (reader != READER_OK) {
			st->peer_sk = peer_gate->sk;
			st->held_sends = 0;
			__sync_fetch_and_and(&st->flags, ~SOCKACCEL_SK_RESUME_HINT);
			__sync_fetch_and_or(&st->flags,
					    SOCKACCEL_SK_HELD_BACK | SOCKACCEL_SK_HOLD_READER);
			count(SOCKACCEL_CNT_READER_HOLDS, 1);
			goto pass;
		}
		__sync_fetch_and_or(&peer_gate->word, SOCKACCEL_GATE_READER_OK);
	}

	if (!(word & SOCKACCEL_GATE_PEER_REDIRECTED))
		word = __sync_fetch_and_or(&peer_gate->word, SOCKACCEL_GATE_PEER_REDIRECTED);
	if (word & SOCKACCEL_GATE_CLOSING)
		goto gate_closed;

	if (bpf_msg_redirect_hash(msg, &sock_hash, &peer, BPF_F_INGRESS) == SK_PASS) {
		count(SOCKACCEL_CNT_REDIRECT_MSGS, 1);
		count(SOCKACCEL_CNT_REDIRECT_BYTES, size);
		/* Back-pressure. A redirect never blocks the sender: it queues in
		 * the peer however much the peer has not read, so a receiver that
		 * stops reading would let the sender fill memory. Past the limit,
		 * this message still goes (the verdict is taken) and the next ones
		 * take TCP, whose flow control blocks the sender, until
		 * may_resume(). Redirected bytes are read before TCP bytes, so
		 * the switch keeps the order (the ordering rule). */
		target = limit || demote_on ? redirect_target(msg) : NULL;
		if (!target)
			return SK_PASS;
		if (limit && unread_bytes(target) >= limit) {
			st->peer_sk = (__u64)target;
			st->held_sends = 0;
			__sync_fetch_and_and(&st->flags, ~SOCKACCEL_SK_RESUME_HINT);
			__sync_fetch_and_or(&st->flags, SOCKACCEL_SK_HELD_BACK);
			count(SOCKACCEL_CNT_BACKPRESSURE_HOLDS, 1);
		} else if (demote_on && cfg->demote_small_bytes &&
			   small_writes_window(st, size, target, cfg->demote_small_bytes)) {
			demote(st, &key, peer_gate, SOCKACCEL_CNT_DEMOTE_SMALL_WRITES,
			       SOCKACCEL_SK_DEMOTED_SMALL_WRITES);
		}
		return SK_PASS;
	}
miss:
	count(SOCKACCEL_CNT_REDIRECT_MISSES, 1);
	goto mark_tcp_path;
gate_closed:
	count(SOCKACCEL_CNT_GATE_CLOSED_SENDS, 1);

mark_tcp_path:
	/* This send takes TCP; from now on so must every send of this socket.
	 * Atomic: the drain iterator sets other bits of the same word. */
	__sync_fetch_and_or(&st->flags, SOCKACCEL_SK_TCP_PATH);
	count(SOCKACCEL_CNT_TCP_PATH_SOCKETS, 1);
pass:
	count(SOCKACCEL_CNT_PASS_MSGS, 1);
	count(SOCKACCEL_CNT_PASS_BYTES, size);
	return SK_PASS;
}

SEC("sk_msg")
int sockaccel_redirect(struct sk_msg_md *msg)
{
	return redirect_verdict(msg, 1);
}

/* For kernels without bpf_probe_read_kernel/bpf_skc_to_tcp_sock in sk_msg:
 * no back-pressure, and redirects only into a peer whose own reader check
 * passed; a sender held for its peer's reader stays on TCP. */
SEC("sk_msg")
int sockaccel_redirect_basic(struct sk_msg_md *msg)
{
	return redirect_verdict(msg, 0);
}

/*
 * The drain, one pass per walk (the daemon runs passes until the sockets it
 * claimed are gone, see daemon/src/drain.cpp):
 *
 *  CLAIM: claim each socket: set CLOSING on its gate word and on its
 *    peer's, so nothing redirects into it and it redirects into nothing
 *    (the verdict reads the target's word before every redirect), then
 *    DRAIN_CLAIMED on its own. Then SCAN.
 *  CLAIM_POLICY: the same for the sockets the current policy no longer
 *    allows (policy-set --apply-existing).
 *  CLAIM_LISTED: the same for the sockets listed in drain_claim, which an
 *    earlier walk could not reach (see the backends below). Then SCAN.
 *  SCAN: a socket claimed in an earlier pass with no send in progress is
 *    QUIESCED: nothing it redirected is still in flight. Report each socket
 *    with its unread redirected bytes (psock->ingress_msg).
 *  DELETE: the daemon has put into drain_delete the cookies of sockets that
 *    are QUIESCED, empty, and whose peer is QUIESCED or gone, so nothing can
 *    arrive any more. Delete them if their queue is still empty.
 *
 * The claim lives in the gate word, keyed like the sockhash, because every
 * walk can reach that by key, whereas socket storage needs a socket pointer
 * the verifier trusts, which iter/task_file does not give on recent kernels
 * (it marks sock->sk untrusted). For the same reason the visit reads the
 * cookie and the psock with fault-safe CO-RE reads.
 *
 * Deleting from the walk's own visit is what makes the check and the delete
 * one step. Only BPF_TRACE_ITER programs may delete from a sockhash outside
 * the socket's own events (may_update_sockmap() in kernel/bpf/verifier.c),
 * and a kernel's security policy may refuse any iterator type, so the same
 * visit runs behind three walks; the daemon loads the first one the kernel
 * accepts (docs/architecture.md, "Drain backends"):
 *  - sockaccel_drain (iter/sockmap): exactly the sockhash's entries;
 *  - sockaccel_drain_files (iter/task_file): every socket in some task's
 *    file table, every network namespace; blind to sockets in none
 *    (io_uring fixed files, descriptors in flight in SCM_RIGHTS);
 *  - sockaccel_drain_tcp (iter/tcp): every TCP socket of the network
 *    namespace that creates the iterator, each visit under lock_sock().
 * The last two find the entry, and its exact key, through the socket's psock
 * (sock_hash_elem_of()), so they never delete by a key they computed.
 */

/* Claims the socket keyed `key`, whose gate word is *gate (NULL if it has
 * none), see above; returns its gate word after the claim and points *gate at
 * it. A socket without a word gets one: none meant that nothing could
 * redirect into it, which CLOSING keeps true. The caller checked that the
 * socket is not claimed yet; only one walk runs at a time (the daemon's), so
 * the pass number is OR-ed into zero bits. */
static __always_inline __u64 claim_socket(const struct sockaccel_key *key, __u64 **gate,
					  __u32 pass)
{
	const __u64 claimed = SOCKACCEL_GATE_DRAIN_CLAIMED |
			      ((__u64)pass << SOCKACCEL_GATE_CLAIM_PASS_SHIFT);
	struct sockaccel_gate closing = { .word = SOCKACCEL_GATE_CLOSING };
	__u64 *peer_gate;
	struct sockaccel_key peer;

	if (!*gate) {
		bpf_map_update_elem(&redir_gate, key, &closing, BPF_NOEXIST);
		*gate = gate_word(key);
		if (!*gate)
			return 0; /* not claimed; reported as such */
	}
	/* Atomic, full barrier: the marks are in place before anything this
	 * walk reads next, and every send that starts later sees them. */
	__sync_fetch_and_or(*gate, SOCKACCEL_GATE_CLOSING);
	__builtin_memset(&peer, 0, sizeof(peer));
	sockaccel_key_peer(&peer, key);
	/* No word: the verdict finds none either, and takes TCP. */
	peer_gate = gate_word(&peer);
	if (peer_gate)
		__sync_fetch_and_or(peer_gate, SOCKACCEL_GATE_CLOSING);
	return __sync_fetch_and_or(*gate, claimed) | claimed;
}

/*
 * The flags sk_state holds for `sk`, read-only and without the storage
 * helpers, for a walk whose socket pointer they refuse. The socket's local
 * storage caches a pointer to each map's data (bpf_local_storage_lookup()
 * fills the slot on every lookup, and the verdict looks ours up on every
 * send). Returns 0 with *flags set, 1 if the socket has no storage at all
 * (so not ours: FOREIGN), -1 if no cache slot holds ours (unknown).
 */
static __always_inline int sk_state_flags_of(struct sock *sk, __u32 *flags)
{
	struct bpf_local_storage *storage = BPF_CORE_READ(sk, sk_bpf_storage);
	struct bpf_local_storage_data *cache[SOCKACCEL_LOCAL_STORAGE_CACHE_SIZE];
	int i;

	if (!storage)
		return 1;
	/* One read for the whole cache: each read is a fault-safe copy, and
	 * the drain visits every socket of the host's file tables. */
	if (bpf_probe_read_kernel(cache, sizeof(cache),
				  (void *)storage + bpf_core_field_offset(struct bpf_local_storage, cache)))
		return -1;
	for (i = 0; i < SOCKACCEL_LOCAL_STORAGE_CACHE_SIZE; i++) {
		if (!cache[i] || BPF_CORE_READ(cache[i], smap) != (void *)&sk_state)
			continue;
		if (bpf_probe_read_kernel(flags, sizeof(*flags),
					  (void *)cache[i] +
						  bpf_core_field_offset(struct bpf_local_storage_data, data) +
						  __builtin_offsetof(struct sockaccel_sk_state, flags)))
			return -1;
		return 0;
	}
	return -1;
}

/* The visit of one socket of sock_hash; rec->key is its entry's key.
 * `helpers` (a constant at each call): sk is a pointer the socket helpers
 * accept, so the cookie may be generated and socket storage read. */
static __always_inline int drain_visit(struct seq_file *seq, struct sock *sk,
				       struct sockaccel_drain_record *rec, struct sk_psock *psock,
				       const int helpers)
{
	struct sockaccel_drain_verdict *verdict;
	struct sockaccel_sk_state *st;
	struct sockaccel_drain_ctl *dc;
	struct sockaccel_config *cfg;
	__u32 zero = 0, *listed;
	__u64 word, *gate;
	int claim, by_policy, found;

	dc = bpf_map_lookup_elem(&drain_ctl, &zero);
	if (!dc)
		return 0;
	if (helpers)
		rec->cookie = bpf_get_socket_cookie(sk);
	else
		rec->cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	/* No cookie yet (inserted by an older sockops that did not make one):
	 * not visited. The daemon lists the map's entries for sockets a walk
	 * misses, and reading an entry generates its cookie. */
	if (!rec->cookie)
		return 0;

	if (psock) {
		if (ingress_empty(psock))
			rec->status |= SOCKACCEL_DRAIN_EMPTY;
		if (bpf_core_field_exists(psock->msg_tot_len)) {
			rec->pending_bytes = BPF_CORE_READ(psock, msg_tot_len);
			rec->status |= SOCKACCEL_DRAIN_BYTES_KNOWN;
		}
	}

	if (helpers) {
		st = bpf_sk_storage_get(&sk_state, sk, 0, 0);
		if (st)
			rec->sk_flags = st->flags;
		else
			rec->status |= SOCKACCEL_DRAIN_FOREIGN;
	} else {
		found = sk_state_flags_of(sk, &rec->sk_flags);
		if (found > 0)
			rec->status |= SOCKACCEL_DRAIN_FOREIGN;
		else if (found < 0)
			rec->status |= SOCKACCEL_DRAIN_FLAGS_UNKNOWN;
	}

	gate = gate_word(&rec->key);
	word = gate ? *(volatile __u64 *)gate : 0;
	if (dc->mode == SOCKACCEL_DRAIN_CLAIM || dc->mode == SOCKACCEL_DRAIN_SCAN ||
	    dc->mode == SOCKACCEL_DRAIN_CLAIM_POLICY || dc->mode == SOCKACCEL_DRAIN_CLAIM_LISTED) {
		claim = dc->mode == SOCKACCEL_DRAIN_CLAIM;
		by_policy = dc->mode == SOCKACCEL_DRAIN_CLAIM_POLICY;
		if (dc->mode == SOCKACCEL_DRAIN_CLAIM_LISTED) {
			listed = bpf_map_lookup_elem(&drain_claim, &rec->cookie);
			claim = listed && *listed == SOCKACCEL_DRAIN_LIST_CLAIM;
			by_policy = listed && *listed == SOCKACCEL_DRAIN_LIST_CLAIM_POLICY;
		}
		/* One call site: the policy walk is the largest part of the
		 * program, and the verifier explores each inlined copy. */
		if (by_policy) {
			cfg = config_get();
			claim = cfg && !policy_allows(sk, &rec->key, cfg->policy);
		}
		if (claim && !(word & SOCKACCEL_GATE_DRAIN_CLAIMED))
			word = claim_socket(&rec->key, &gate, dc->pass);
		/* QUIESCED only for a claim made by an earlier pass: that pass's
		 * syscall has completed, so every send that starts later sees the
		 * marks, and "no send in progress" now means none missed them. (A
		 * socket open in several descriptors is visited several times in
		 * one iter/task_file pass, hence the pass number.) */
		/* tcp_bpf_sendmsg() holds a psock reference for the whole call,
		 * including the unlocked redirect into the peer
		 * (tcp_bpf_send_verdict -> tcp_bpf_sendmsg_redir, in
		 * net/ipv4/tcp_bpf.c). A count of 1 is the sockhash's own
		 * reference: no send is in progress. Safe, but conservative: a
		 * thread blocked in recvmsg also holds one, so such a socket
		 * drains once that read returns. None of the walks takes a psock
		 * reference of its own. */
		if (gate && (word & SOCKACCEL_GATE_DRAIN_CLAIMED) &&
		    !(word & SOCKACCEL_GATE_DRAIN_QUIESCED) &&
		    (__u32)(word >> SOCKACCEL_GATE_CLAIM_PASS_SHIFT) != dc->pass && psock &&
		    BPF_CORE_READ(psock, refcnt.refs.counter) == 1)
			word = __sync_fetch_and_or(gate, SOCKACCEL_GATE_DRAIN_QUIESCED) |
			       SOCKACCEL_GATE_DRAIN_QUIESCED;
	} else if (dc->mode == SOCKACCEL_DRAIN_DELETE ||
		   dc->mode == SOCKACCEL_DRAIN_FORCE_DELETE) {
		verdict = bpf_map_lookup_elem(&drain_delete, &rec->cookie);
		if (verdict &&
		    ((rec->status & SOCKACCEL_DRAIN_EMPTY) ||
		     dc->mode == SOCKACCEL_DRAIN_FORCE_DELETE) &&
		    bpf_map_delete_elem(&sock_hash, &rec->key) == 0) {
			rec->status |= SOCKACCEL_DRAIN_DELETED;
			/* The record below may be discarded (see abi.h); this
			 * is what the daemon counts. */
			verdict->pending_bytes = rec->pending_bytes;
			verdict->status = rec->status;
		}
	}
	if (word & SOCKACCEL_GATE_DRAIN_CLAIMED)
		rec->status |= SOCKACCEL_DRAIN_CLAIMED;
	if (word & SOCKACCEL_GATE_DRAIN_QUIESCED)
		rec->status |= SOCKACCEL_DRAIN_QUIESCED;
	bpf_seq_write(seq, rec, sizeof(*rec));
	return 0;
}

SEC("iter/sockmap")
int sockaccel_drain(struct bpf_iter__sockmap *ctx)
{
	struct sockaccel_drain_record rec = {};
	struct sock *sk = ctx->sk;
	void *key = ctx->key;

	if (!sk || !key)
		return 0;
	/* The iterator's key is read-only memory; helpers need a copy. */
	if (bpf_probe_read_kernel(&rec.key, sizeof(rec.key), key))
		return 0;
	return drain_visit(ctx->meta->seq, sk, &rec, sk_psock_of(sk), 1);
}

/*
 * The sock_hash element that holds `sk`, or NULL if `sk` is not in
 * sock_hash. Each map a socket is in adds a struct sk_psock_link to
 * psock->link (sock_map_add_link() in net/core/sock_map.c); for a sockhash
 * its link_raw is the element, which carries the entry's key. The list is
 * read without psock->link_lock, through fault-safe CO-RE reads: a link
 * removed under us can only make this answer NULL (the socket is treated
 * as not ours on this pass) or name an element whose sk we check.
 * sk_user_data of a socket outside any sockmap may belong to another
 * subsystem, hence the psock->sk check first.
 */
#define SOCKACCEL_PSOCK_LINKS_MAX 8

static __always_inline void *sock_hash_elem_of(struct sock *sk, struct sk_psock *psock)
{
	struct list_head *head, *pos;
	struct sk_psock_link *link;
	void *elem;
	int i;

	if (!psock || (void *)BPF_CORE_READ(psock, sk) != (void *)sk)
		return NULL;
	head = (struct list_head *)((void *)psock + bpf_core_field_offset(struct sk_psock, link));
	pos = BPF_CORE_READ(psock, link.next);
	for (i = 0; i < SOCKACCEL_PSOCK_LINKS_MAX; i++) {
		if (!pos || pos == head)
			return NULL;
		link = (struct sk_psock_link *)((void *)pos -
						 bpf_core_field_offset(struct sk_psock_link, list));
		if ((void *)BPF_CORE_READ(link, map) == (void *)&sock_hash) {
			elem = BPF_CORE_READ(link, link_raw);
			if (!elem || (void *)BPF_CORE_READ((struct bpf_shtab_elem *)elem, sk) != (void *)sk)
				return NULL;
			return elem;
		}
		pos = BPF_CORE_READ(pos, next);
	}
	return NULL;
}

/* Visits `sk` if it is in sock_hash, with the key its element holds. */
static __always_inline int drain_visit_if_ours(struct seq_file *seq, struct sock *sk,
					       const int helpers)
{
	struct sockaccel_drain_record rec = {};
	struct sk_psock *psock = sk_psock_of(sk);
	void *elem = sock_hash_elem_of(sk, psock);

	if (!elem)
		return 0;
	if (bpf_probe_read_kernel(&rec.key, sizeof(rec.key),
				  elem + bpf_core_field_offset(struct bpf_shtab_elem, key)))
		return 0;
	return drain_visit(seq, sk, &rec, psock, helpers);
}

/* A socket open in several descriptors or processes is visited once per
 * descriptor; the visit is idempotent and the daemon keeps one record per
 * cookie. Threads sharing their leader's file table are skipped by the
 * kernel (task_file_seq_get_next()). */
SEC("iter/task_file")
int sockaccel_drain_files(struct bpf_iter__task_file *ctx)
{
	struct file *file = ctx->file;
	struct socket *sock;
	struct sock *sk;

	if (!file)
		return 0;
	sock = bpf_sock_from_file(file);
	if (!sock)
		return 0;
	/* Untrusted to the verifier on recent kernels: CO-RE reads only. */
	sk = sock->sk;
	if (!sk)
		return 0;
	return drain_visit_if_ours(ctx->meta->seq, sk, 0);
}

SEC("iter/tcp")
int sockaccel_drain_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct tcp_sock *tp;

	if (!skc)
		return 0;
	/* NULL for request and time-wait sockets, which are never in a
	 * sockhash. */
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	return drain_visit_if_ours(ctx->meta->seq, (struct sock *)tp, 1);
}

/*
 * Counts the sockhash's entries for status and metrics: each entry's socket
 * cookie into the iterator's output, so user space counts with a few read()
 * calls instead of one bpf(BPF_MAP_GET_NEXT_KEY) call per entry (about
 * 1.6 us each; 160 ms for a map of 100,000 sockets). Cookies, not just a
 * byte, because a walk may report an entry twice (see abi.h).
 */
SEC("iter/sockmap")
int sockaccel_count(struct bpf_iter__sockmap *ctx)
{
	/* One load, checked: each ctx->sk load is a maybe-NULL pointer again
	 * to the verifier, and 6.1's cookie helper refuses those. */
	struct sock *sk = ctx->sk;
	__u64 cookie;

	if (!sk)
		return 0;
	cookie = bpf_get_socket_cookie(sk);
	bpf_seq_write(ctx->meta->seq, &cookie, sizeof(cookie));
	return 0;
}

/*
 * Counts the sockhash's entries without visiting them: the kernel keeps the
 * number in struct bpf_shtab (sock_hash_alloc_elem() and
 * sock_hash_free_elem() in net/core/sock_map.c), and a walk over the maps
 * reads it. Writes a struct sockaccel_map_count for every sockhash on the
 * host; the daemon keeps the one with its map's id. (Comparing with
 * &sock_hash here would let the compiler read through the map pointer,
 * which the verifier refuses.) Preferred to sockaccel_count where both
 * load: its cost does not grow with the sockets.
 */
SEC("iter/bpf_map")
int sockaccel_count_map(struct bpf_iter__bpf_map *ctx)
{
	struct sockaccel_map_count out = {};
	struct bpf_map *map = ctx->map;

	if (!map || BPF_CORE_READ(map, map_type) != BPF_MAP_TYPE_SOCKHASH)
		return 0;
	out.map_id = BPF_CORE_READ(map, id);
	out.count = BPF_CORE_READ((struct bpf_shtab *)map, count.counter);
	bpf_seq_write(ctx->meta->seq, &out, sizeof(out));
	return 0;
}
