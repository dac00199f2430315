/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The one ABI shared by the BPF programs (bpf/NAME.bpf.c) and the daemon (C++).
 *
 * Everything a map holds is defined here, with fixed-width fields, explicit
 * padding and size asserts on both sides. Pinned maps outlive the daemon that
 * created them, so any change to a layout or meaning below MUST bump
 * SOCKACCEL_ABI_VERSION: a daemon only adopts pinned state whose config map
 * carries the same version.
 */
#ifndef SOCKACCEL_ABI_H
#define SOCKACCEL_ABI_H

#include <linux/types.h>

#define SOCKACCEL_ABI_VERSION 6

/* Address families as the kernel reports them (AF_INET, AF_INET6). Spelled out
 * so the BPF side does not need <sys/socket.h>. */
#define SOCKACCEL_AF_INET 2
#define SOCKACCEL_AF_INET6 10

/*
 * Key of the sockhash: one socket, seen from its own side.
 *
 * - family is SOCKACCEL_AF_INET or SOCKACCEL_AF_INET6. An IPv4-mapped IPv6
 *   connection (::ffff:a.b.c.d on a dual-stack socket) is stored as
 *   SOCKACCEL_AF_INET, so it matches an IPv4-only peer socket.
 * - Addresses are in network byte order. IPv4 uses local_ip[0] and
 *   remote_ip[0]; the other words are zero.
 * - Ports are in host byte order.
 * - netns is the network namespace cookie when either address is loopback,
 *   and 0 otherwise. Every network namespace has its own 127.0.0.1, so two
 *   containers can hold the same loopback 4-tuple; without the cookie one
 *   container's sends could be redirected into the other's socket.
 *   Non-loopback peers may sit in another namespace on the host (containers
 *   on a bridge), so their key cannot carry it.
 *
 * The peer of a socket has the same key with local and remote swapped.
 * Always build keys from a zeroed struct: the padding is hashed too.
 */
struct sockaccel_key {
	__u64 netns;
	__u32 local_ip[4];
	__u32 remote_ip[4];
	__u16 family;
	__u16 local_port;
	__u16 remote_port;
	__u16 pad;
};

/* Indexes into the per-CPU counter array (one __u64 per CPU each). The daemon
 * sums the CPUs. Append only; renumbering is an ABI change. */
enum sockaccel_counter {
	/* sockops: sockets inserted into the sockhash. */
	SOCKACCEL_CNT_SOCKETS_ADDED = 0,
	/* sockops: insert failed because the sockhash is full (-E2BIG/-ENOMEM). */
	SOCKACCEL_CNT_ADD_FAILED_FULL,
	/* sockops: insert failed for another reason (e.g. -EEXIST, -EBUSY). */
	SOCKACCEL_CNT_ADD_FAILED_OTHER,
	/* sockops: established sockets not inserted because inserting is off. */
	SOCKACCEL_CNT_ADD_SKIPPED_DISABLED,
	/* sockops: not inserted because data already left through TCP (TFO). */
	SOCKACCEL_CNT_ADD_SKIPPED_DATA_SENT,
	/* sk_msg: messages and bytes redirected into the peer's receive queue. */
	SOCKACCEL_CNT_REDIRECT_MSGS,
	SOCKACCEL_CNT_REDIRECT_BYTES,
	/* sk_msg: the peer was not in the sockhash; the send took TCP. */
	SOCKACCEL_CNT_REDIRECT_MISSES,
	/* sk_msg: sockets that the ordering rule holds on TCP for good. */
	SOCKACCEL_CNT_TCP_PATH_SOCKETS,
	/* sk_msg: messages and bytes that took TCP (miss, drain or TCP-path). */
	SOCKACCEL_CNT_PASS_MSGS,
	SOCKACCEL_CNT_PASS_BYTES,
	/* sk_msg: a socket without its ordering-rule storage sent; it never
	 * redirects (the safe choice). Should stay 0; counted so it is visible. */
	SOCKACCEL_CNT_STORAGE_MISSING,
	/* sk_msg: a sender found more than max_unread_bytes queued unread in its
	 * peer and switched to TCP, whose buffers block it (back-pressure). */
	SOCKACCEL_CNT_BACKPRESSURE_HOLDS,
	/* sk_msg: a held-back sender whose peer had read everything, TCP bytes
	 * included, went back to redirecting. */
	SOCKACCEL_CNT_BACKPRESSURE_RESUMES,
	/* sockops: sockets that left the sockhash at their own FIN (shutdown or
	 * close) because no redirect into them was ever decided: their reads go
	 * back to plain TCP, which avoids the blocking-read EAGAIN of half-close
	 * (docs/operations.md, "Known kernel issues"). */
	SOCKACCEL_CNT_FIN_REMOVED,
	/* sockops: sockets kept at their FIN because their peer had redirected
	 * into them (removing them could free queued data). */
	SOCKACCEL_CNT_FIN_KEPT,
	/* sk_msg: sends whose peer was already closing; they took TCP. */
	SOCKACCEL_CNT_GATE_CLOSED_SENDS,
	/* sockops: a passively established socket whose peer is not a socket
	 * we track (a remote host, or a local process outside the attached
	 * cgroup or the policy) was not inserted. */
	SOCKACCEL_CNT_PEER_NOT_LOCAL,
	/* An actively established socket left the sockhash because no local
	 * peer claimed it: its peer is remote or not accelerated (see
	 * SOCKACCEL_GATE_LOCAL_PEER). Counted at its first send or first
	 * received segment, whichever came first. */
	SOCKACCEL_CNT_UNCLAIMED_REMOVED,
	/* sockops: established sockets that the operator's policy excludes
	 * (see struct sockaccel_policy_*); never inserted. */
	SOCKACCEL_CNT_POLICY_SKIPPED,
	/* Reader checks (SOCKACCEL_GATE_READER_OK): sockets kept on TCP because
	 * their reader cannot see redirected data the way it sees TCP data. A
	 * connecting socket is checked at insert and left out; an accepted one
	 * once it has a file, at its first segments, and it then leaves the
	 * sockhash before anything was redirected into it. */
	/* The socket is blocking (no O_NONBLOCK): a blocking read of a socket
	 * in a sockhash can fail with EAGAIN (fact 3, e.g. when a signal
	 * interrupts it) and MSG_WAITALL returns early. */
	SOCKACCEL_CNT_READER_BLOCKING,
	/* SO_RCVLOWAT above 1: redirected data makes the socket readable
	 * whatever the low-water mark. */
	SOCKACCEL_CNT_READER_LOWAT,
	/* A connecting socket with no file to check (not inserted). */
	SOCKACCEL_CNT_READER_UNKNOWN,
	/* sk_msg: sends that took TCP because the peer's reader was not yet
	 * known to see redirected data (not accepted yet, or failing the
	 * check); the sender resumes redirecting once the reader is known
	 * compatible and has read every TCP byte (SOCKACCEL_SK_HOLD_READER). */
	SOCKACCEL_CNT_READER_HOLDS,
	SOCKACCEL_CNT_READER_RESUMES,
	/* Demotion (SOCKACCEL_CFG_DEMOTE): sockets whose connection runs
	 * slower redirected than on TCP, moved back to TCP for good. Counted
	 * once per demoting socket, by reason; the daemon then takes the pair
	 * out of the sockhash through the lossless drain.
	 * Small writes queued behind unread ones: in a window of
	 * SOCKACCEL_DEMOTE_WINDOW redirected sends, at least half were smaller
	 * than demote_small_bytes and found the peer's previous redirected
	 * data still unread. TCP would have coalesced them into one segment
	 * and one wakeup; redirected, each is its own message. */
	SOCKACCEL_CNT_DEMOTE_SMALL_WRITES,
	/* Held by back-pressure (SOCKACCEL_SK_HELD_BACK) for demote_held_sends
	 * sends in a row without being able to resume: the sender keeps
	 * outrunning its reader, and TCP through a socket in a sockhash is
	 * slower than plain TCP. */
	SOCKACCEL_CNT_DEMOTE_BACKPRESSURE,
	/* Held for its peer's reader (SOCKACCEL_SK_HOLD_READER) for
	 * demote_held_sends sends in a row: the reader stays incompatible. */
	SOCKACCEL_CNT_DEMOTE_READER,
	/* A demotion was due but the demote_events ring buffer was full; the
	 * socket stays as it was and is judged again (nothing is marked). */
	SOCKACCEL_CNT_DEMOTE_DEFERRED,
	SOCKACCEL_CNT__MAX,
};

/* Bits of sockaccel_config.flags. */
enum sockaccel_config_flag {
	/* sockops inserts newly established sockets. Cleared on stop, before
	 * the sockops link is detached. */
	SOCKACCEL_CFG_INSERT = 1u << 0,
	/* sk_msg redirects. Cleared to drain: every sender then falls back to
	 * TCP for good (see the ordering rule in sockaccel.bpf.c). */
	SOCKACCEL_CFG_REDIRECT = 1u << 1,
	/* sk_msg demotes connections that run slower redirected (the
	 * SOCKACCEL_CNT_DEMOTE_* counters); needs the kernel reads of
	 * sockaccel_redirect. */
	SOCKACCEL_CFG_DEMOTE = 1u << 2,
};

/* Redirected sends per small-write demotion window; half of them must be
 * small writes into unread data. */
#define SOCKACCEL_DEMOTE_WINDOW 128

/* Run-time configuration: element 0 of an array map. Written by the daemon,
 * read by every program on every event, so changing behaviour never needs a
 * program reload.
 *
 * Frozen across every ABI version: the value starts with abi_version and
 * flags, and flag bits INSERT and REDIRECT keep their meaning. That is what
 * lets any daemon quiesce state pinned by any other version (flags = 0: no
 * inserts, and every sender falls back to TCP for good) before retiring it,
 * without knowing the rest of its layout. Also frozen: the pin names
 * `config` (this array, element 0), `sock_hash` and `sockops_link` in the
 * pin directory (docs/architecture.md, "Upgrades and incompatible state"). */
struct sockaccel_config {
	__u32 abi_version; /* SOCKACCEL_ABI_VERSION of the daemon that created it */
	__u32 flags;       /* enum sockaccel_config_flag */
	/* Back-pressure: a sender whose peer holds more unread redirected bytes
	 * than this sends through TCP until the peer has read everything (see
	 * SOCKACCEL_SK_HELD_BACK). 0 = no limit. */
	__u64 max_unread_bytes;
	__u32 policy;      /* enum sockaccel_policy_flag */
	__u32 pad;
	/* Demotion (SOCKACCEL_CFG_DEMOTE): a redirected send smaller than
	 * this, into a peer with unread redirected data, is a small write;
	 * and a sender held on TCP for this many sends in a row is demoted. */
	__u32 demote_small_bytes;
	__u32 demote_held_sends;
};

/*
 * Operator policy, evaluated by sockops for each socket on its own, at
 * insert time (so a change applies to new connections). A connection is
 * accelerated only if both of its sockets pass; every rule below looks at
 * the connection's 4-tuple from either end, so both ends of one connection
 * agree, except for cgroups, which belong to each socket's own process.
 *
 *  - ports (policy_ports): a socket matches when its local or its remote
 *    port is in the set.
 *  - CIDRs (policy_cidrs, an LPM trie): for its local and its remote
 *    address, the longest matching prefix decides; an EXCLUDE prefix
 *    excludes, an INCLUDE prefix matches. So "include 10.0.0.0/8, exclude
 *    10.1.0.0/16" means what it says.
 *  - cgroups (policy_cgroups): the nearest of the socket's cgroup and its
 *    ancestors that has an entry decides, the same way.
 *
 * A socket is inserted when no kind excludes it and, for each kind whose
 * INCLUDE list is not empty (a SOCKACCEL_POLICY_INCLUDE_* flag in
 * sockaccel_config.policy), it matches an include entry of that kind.
 */
enum sockaccel_policy_flag {
	SOCKACCEL_POLICY_INCLUDE_PORTS = 1u << 0,
	SOCKACCEL_POLICY_INCLUDE_CIDRS = 1u << 1,
	SOCKACCEL_POLICY_INCLUDE_CGROUPS = 1u << 2,
	/* Any cgroup entry exists: sockops has to walk the cgroup tree. */
	SOCKACCEL_POLICY_CGROUPS = 1u << 3,
	/* Any port or CIDR exclude entry exists. */
	SOCKACCEL_POLICY_EXCLUDE_PORTS = 1u << 4,
	SOCKACCEL_POLICY_EXCLUDE_CIDRS = 1u << 5,
};

/* Values of policy_cidrs and policy_cgroups entries. */
enum sockaccel_policy_verdict {
	SOCKACCEL_POLICY_MATCH_INCLUDE = 1,
	SOCKACCEL_POLICY_MATCH_EXCLUDE = 2,
};

/* policy_ports is an array of 64-bit bitmap words: word
 * SOCKACCEL_POLICY_PORT_WORD(set, port) holds bit (port % 64) for `set`. */
enum sockaccel_policy_port_set {
	SOCKACCEL_POLICY_PORTS_INCLUDE = 0,
	SOCKACCEL_POLICY_PORTS_EXCLUDE = 1,
};
#define SOCKACCEL_POLICY_PORT_WORDS (65536 / 64)
#define SOCKACCEL_POLICY_PORT_WORD(set, port) ((set) * SOCKACCEL_POLICY_PORT_WORDS + (port) / 64)

/* Key of policy_cidrs. IPv4 prefixes are stored IPv4-mapped
 * (::ffff:a.b.c.d, prefixlen + 96), so one trie serves both families. */
struct sockaccel_cidr_key {
	__u32 prefixlen;
	__u8 addr[16];
};
#define SOCKACCEL_POLICY_MAX_CIDRS 1024
#define SOCKACCEL_POLICY_MAX_CGROUPS 1024
/* How many levels above a socket's cgroup sockops looks for an entry. */
#define SOCKACCEL_POLICY_CGROUP_DEPTH 16

/* Bits of sockaccel_sk_state.flags (socket-local storage). */
enum sockaccel_sk_flag {
	/* This socket has sent at least one byte through the TCP stack, so it
	 * must never redirect again (kernel-facts fact 2: the receiver would read
	 * later redirected bytes before the earlier TCP bytes). */
	SOCKACCEL_SK_TCP_PATH = 1u << 0,
	/* Bits 1 and 2 (a drain's claim, ABI 3 and earlier) are unused: the
	 * drain keeps its state in the gate word, which every walk can reach
	 * by key (SOCKACCEL_GATE_DRAIN_CLAIMED). */
	/* Back-pressure: the peer had more than max_unread_bytes unread, so this
	 * socket sends through TCP, where the peer's receive window and our send
	 * buffer block it the way TCP always does. Unlike TCP_PATH it is lifted:
	 * once the peer has read every byte this socket sent through TCP
	 * (everything written delivered, and its TCP receive queue empty), no
	 * TCP byte can be overtaken and redirecting resumes. */
	SOCKACCEL_SK_HELD_BACK = 1u << 3,
	/* The gate word said LOCAL_PEER once; cached so later sends skip the
	 * lookup. */
	SOCKACCEL_SK_LOCAL_PEER = 1u << 4,
	/* An accepted socket whose reader is not checked yet: each segment it
	 * receives checks it (sockops), until it has a file. */
	SOCKACCEL_SK_READER_PENDING = 1u << 5,
	/* With HELD_BACK: held because the peer's reader was not known to see
	 * redirected data, not because of its backlog (the counters differ;
	 * the hold is lifted the same way). */
	SOCKACCEL_SK_HOLD_READER = 1u << 6,
	/* Demoted (with TCP_PATH), and why: its connection goes back to TCP
	 * for good and leaves the sockhash through the drain. */
	SOCKACCEL_SK_DEMOTED_SMALL_WRITES = 1u << 7,
	SOCKACCEL_SK_DEMOTED_BACKPRESSURE = 1u << 8,
	SOCKACCEL_SK_DEMOTED_READER = 1u << 9,
	/* With HELD_BACK: a received segment (sockops) found the peer had
	 * read every TCP byte up to resume_seq, so a send that finds our
	 * write_seq still there may resume (no TCP byte was sent since). */
	SOCKACCEL_SK_RESUME_HINT = 1u << 10,
	/* The connecting side's first received segment was seen (local-peer
	 * detection ran); later segments arrive only while it is held. */
	SOCKACCEL_SK_SEGMENT_SEEN = 1u << 11,
};
#define SOCKACCEL_SK_DEMOTED                                                   \
	(SOCKACCEL_SK_DEMOTED_SMALL_WRITES | SOCKACCEL_SK_DEMOTED_BACKPRESSURE | \
	 SOCKACCEL_SK_DEMOTED_READER)

/* Per-socket state in a BPF_MAP_TYPE_SK_STORAGE map; lives and dies with the
 * socket, whatever happens to the sockhash entry. */
struct sockaccel_sk_state {
	__u32 flags; /* enum sockaccel_sk_flag */
	/* Small-write demotion: the current window's redirected sends, and of
	 * those the small writes into unread data. Updated without atomics by
	 * the socket's own sends: a lost update between two threads sending
	 * at once only shifts the estimate. */
	__u16 window_sends;
	__u16 window_small;
	/* While HELD_BACK: the kernel address of the peer socket, recorded by
	 * the redirect that found it backlogged, or from the peer's gate (a
	 * reader hold). Only ever read through
	 * bpf_probe_read_kernel, to decide when to resume; a stale value can
	 * only delay or trigger a resume whose redirect then misses (a closed
	 * peer is gone from the sockhash), never misdirect data. */
	__u64 peer_sk;
	/* Sends held on TCP in a row (HELD_BACK), for demotion. */
	__u32 held_sends;
	/* Our write_seq when RESUME_HINT was set. */
	__u32 resume_seq;
};

#define SOCKACCEL_GATE_CLAIM_PASS_SHIFT 32

/* Bits of the per-target gate word (the redir_gate map, keyed like the
 * sockhash by the target socket's key). Before every redirect verdict a
 * sender makes sure PEER_REDIRECTED is set on its peer's word (fetch-or the
 * first time, a plain read once it is set) and takes TCP instead if CLOSING
 * was set; at its FIN a socket sets CLOSING and, if PEER_REDIRECTED was not
 * set, leaves the sockhash. Both bits live in one word changed only by
 * atomic fetch-or, so exactly one side sees the other's bit: either the
 * sender backs off, or the closing socket sees that a redirect may be
 * queued and stays. */
enum sockaccel_gate_bit {
	SOCKACCEL_GATE_PEER_REDIRECTED = 1u << 0,
	/* Set when the socket leaves, or may leave, the sockhash: at its FIN,
	 * or when no local peer claimed it. Senders then take TCP. */
	SOCKACCEL_GATE_CLOSING = 1u << 1,
	/* Local-peer detection. The passive side of a connection is inserted
	 * only if its peer's word exists (the peer is a socket we inserted, so
	 * it is on this host), and it then sets this bit on that word ("claims"
	 * its peer) and on its own. An active socket whose word still lacks it
	 * at its first send or first received segment has no local peer: it
	 * leaves the sockhash through the same gate as at FIN. */
	SOCKACCEL_GATE_LOCAL_PEER = 1u << 2,
	/* A drain claimed the socket: CLOSING is set on its word and on its
	 * peer's, so nothing redirects into it and it redirects into nothing
	 * any more. Set by the drain walk, last, with the number of the pass
	 * that claimed it in bits 32-63 (SOCKACCEL_GATE_CLAIM_PASS_SHIFT). */
	SOCKACCEL_GATE_DRAIN_CLAIMED = 1u << 3,
	/* Seen with no send in progress by a pass after the one that claimed
	 * it, so no redirect of its own can still be in flight: every send
	 * that starts later reads CLOSING on its peer's word. Sticky. */
	SOCKACCEL_GATE_DRAIN_QUIESCED = 1u << 4,
	/* The socket's reader sees redirected data as it sees TCP data: its
	 * socket is non-blocking and its SO_RCVLOWAT is at most 1. Senders
	 * redirect into a socket only once its word says so. Set by sockops
	 * at insert (a connecting socket, whose file exists by then), at a
	 * later segment of an accepted socket, or by a sender's verdict that
	 * read the same through sockaccel_gate.sk. */
	SOCKACCEL_GATE_READER_OK = 1u << 5,
};

/* Value of the redir_gate map. */
struct sockaccel_gate {
	__u64 word; /* enum sockaccel_gate_bit; changed only by atomic or/and */
	/* The socket's kernel address, recorded by sockops at insert. Only
	 * read with fault-safe reads, to check the socket's reader before a
	 * sender redirects into it; redirects themselves find their target by
	 * key, so a stale address can only delay acceleration. */
	__u64 sk;
};

/* What the drain walk does on this pass (sockaccel_drain_ctl.mode). */
enum sockaccel_drain_mode {
	/* Claim every socket in the sockhash (SOCKACCEL_GATE_DRAIN_CLAIMED),
	 * then as SCAN. */
	SOCKACCEL_DRAIN_CLAIM = 1,
	/* Mark QUIESCED the claimed sockets that are; report every socket.
	 * Sockets inserted since the claim are left alone. */
	SOCKACCEL_DRAIN_SCAN = 2,
	/* Delete sockets whose cookie is in drain_delete and whose redirect
	 * queue is empty; report. */
	SOCKACCEL_DRAIN_DELETE = 3,
	/* Delete every socket whose cookie is in drain_delete, unread data
	 * included (flush-map --force); report the bytes dropped. */
	SOCKACCEL_DRAIN_FORCE_DELETE = 4,
	/* As CLAIM, for the sockets the current policy would not insert. */
	SOCKACCEL_DRAIN_CLAIM_POLICY = 5,
	/* As CLAIM, for the sockets whose cookie is in drain_claim (enum
	 * sockaccel_drain_list): those an earlier pass's walk could not reach. */
	SOCKACCEL_DRAIN_CLAIM_LISTED = 6,
};

/* Values of the drain_claim hash (key: socket cookie). */
enum sockaccel_drain_list {
	SOCKACCEL_DRAIN_LIST_CLAIM = 1,        /* claim it */
	SOCKACCEL_DRAIN_LIST_CLAIM_POLICY = 2, /* claim it if the policy excludes it */
};

/* Element 0 of the drain_ctl array map, written before each pass. The drain
 * structures below are never pinned: each daemon creates its own, so they
 * may change without an ABI version. */
struct sockaccel_drain_ctl {
	__u32 mode; /* enum sockaccel_drain_mode */
	__u32 pass; /* differs from one pass to the next (SOCKACCEL_GATE_DRAIN_CLAIMED) */
};

/* Bits of sockaccel_drain_record.status. */
enum sockaccel_drain_status {
	SOCKACCEL_DRAIN_EMPTY = 1u << 0,         /* no unread redirected data */
	SOCKACCEL_DRAIN_DELETED = 1u << 1,       /* removed from the sockhash in this pass */
	SOCKACCEL_DRAIN_FOREIGN = 1u << 2,       /* no sk_state: not inserted by us */
	SOCKACCEL_DRAIN_BYTES_KNOWN = 1u << 3,   /* pending_bytes is exact */
	SOCKACCEL_DRAIN_CLAIMED = 1u << 4,       /* its gate word says DRAIN_CLAIMED */
	SOCKACCEL_DRAIN_QUIESCED = 1u << 5,      /* its gate word says DRAIN_QUIESCED */
	/* The walk could not read the socket's storage (iter/task_file, whose
	 * socket pointer the storage helpers refuse on recent kernels, found
	 * no cached pointer to it): sk_flags is 0. */
	SOCKACCEL_DRAIN_FLAGS_UNKNOWN = 1u << 6,
};

/* One record per sockhash entry and visit, written by the drain iterator
 * to its seq_file and read by the daemon. A walk of a sockhash that spans
 * several read() calls resumes at the start of the hash bucket it stopped
 * in (sock_hash_seq_start), so a pass may report an entry twice. And a
 * record that overflows the iterator's output buffer is discarded and its
 * entry visited again on the next read, which an entry that visit deleted
 * does not survive. So the daemon keeps each cookie's last record and
 * learns of deletions from drain_delete (below), not from records. */
struct sockaccel_drain_record {
	struct sockaccel_key key;
	__u64 cookie;
	__u64 pending_bytes; /* unread redirected bytes (exact if BYTES_KNOWN) */
	__u32 sk_flags;      /* enum sockaccel_sk_flag (see FLAGS_UNKNOWN) */
	__u32 status;        /* enum sockaccel_drain_status */
};

/* Value of the drain_delete hash (key: socket cookie). The daemon writes
 * zeros for each socket a DELETE pass may remove; the drain iterator fills
 * it in when it removes that socket. */
struct sockaccel_drain_verdict {
	__u32 status;        /* the socket's enum sockaccel_drain_status, DELETED set */
	__u32 pad;
	__u64 pending_bytes; /* unread redirected bytes it held (dropped unless EMPTY) */
};

/* What sockops reports, through the reader_events ring buffer, the first
 * time a reader check keeps a socket of some cgroup on TCP for some reason
 * (once per cgroup and reason: reader_seen remembers), so the daemon can
 * log the cgroup for the operator. Not pinned. */
struct sockaccel_reader_event {
	__u64 cgroup_id; /* the socket's cgroup (its kernfs id, the directory's inode) */
	__u32 reason;    /* the counter: SOCKACCEL_CNT_READER_BLOCKING, _LOWAT or _UNKNOWN */
	__u16 local_port;
	__u16 remote_port;
};

/* What sk_msg reports, through the demote_events ring buffer, when it
 * demotes a socket: its sockhash key and the reason (a
 * SOCKACCEL_CNT_DEMOTE_* counter). The daemon claims it and its peer for
 * the drain. Not pinned. */
struct sockaccel_demote_event {
	struct sockaccel_key key;
	__u32 reason;
	__u32 pad;
};

/* What sockaccel_count_map writes for each sockhash on the host. */
struct sockaccel_map_count {
	__u32 map_id;
	__u32 count; /* entries */
};

#ifdef __cplusplus
static_assert(sizeof(struct sockaccel_map_count) == 8, "sockaccel_map_count layout");
static_assert(sizeof(struct sockaccel_gate) == 16, "sockaccel_gate layout");
static_assert(sizeof(struct sockaccel_reader_event) == 16, "sockaccel_reader_event layout");
static_assert(sizeof(struct sockaccel_key) == 48, "sockaccel_key layout");
static_assert(sizeof(struct sockaccel_config) == 32, "sockaccel_config layout");
static_assert(sizeof(struct sockaccel_sk_state) == 24, "sockaccel_sk_state layout");
static_assert(sizeof(struct sockaccel_demote_event) == 56, "sockaccel_demote_event layout");
static_assert(sizeof(struct sockaccel_drain_ctl) == 8, "sockaccel_drain_ctl layout");
static_assert(sizeof(struct sockaccel_drain_record) == 72, "sockaccel_drain_record layout");
static_assert(sizeof(struct sockaccel_cidr_key) == 20, "sockaccel_cidr_key layout");
#else
_Static_assert(sizeof(struct sockaccel_map_count) == 8, "sockaccel_map_count layout");
_Static_assert(sizeof(struct sockaccel_gate) == 16, "sockaccel_gate layout");
_Static_assert(sizeof(struct sockaccel_reader_event) == 16, "sockaccel_reader_event layout");
_Static_assert(sizeof(struct sockaccel_key) == 48, "sockaccel_key layout");
_Static_assert(sizeof(struct sockaccel_config) == 32, "sockaccel_config layout");
_Static_assert(sizeof(struct sockaccel_sk_state) == 24, "sockaccel_sk_state layout");
_Static_assert(sizeof(struct sockaccel_demote_event) == 56, "sockaccel_demote_event layout");
_Static_assert(sizeof(struct sockaccel_drain_ctl) == 8, "sockaccel_drain_ctl layout");
_Static_assert(sizeof(struct sockaccel_drain_record) == 72, "sockaccel_drain_record layout");
_Static_assert(sizeof(struct sockaccel_drain_verdict) == 16, "sockaccel_drain_verdict layout");
_Static_assert(sizeof(struct sockaccel_cidr_key) == 20, "sockaccel_cidr_key layout");
#endif

#endif /* SOCKACCEL_ABI_H */
