/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The few kernel-internal types the drain reads, declared locally with
 * preserve_access_index. libbpf relocates every field access against the
 * running kernel's BTF (CO-RE), so the object is not tied to the headers of
 * the build host's kernel, and a field that moved between 6.1 and 6.18 is
 * found where it is. Only the fields used are declared.
 */
#ifndef SOCKACCEL_KERNEL_BPF_H
#define SOCKACCEL_KERNEL_BPF_H

#include <linux/bpf.h>
#include <linux/types.h>

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

struct sock;
struct socket;

/* include/linux/skmsg.h. msg_tot_len (unread redirected bytes) exists in
 * recent kernels only; check with bpf_core_field_exists(). `link` lists one
 * struct sk_psock_link per map the socket is in. */
struct sk_psock {
	struct sock *sk;
	struct list_head ingress_msg;
	__u32 msg_tot_len;
	struct list_head link;
	struct refcount_struct refcnt;
} __attribute__((preserve_access_index));

/* include/linux/bpf.h */
struct bpf_map {
	enum bpf_map_type map_type;
	__u32 id;
} __attribute__((preserve_access_index));

/* net/core/sock_map.c (sock_map_add_link()): for a sockhash, link_raw is the
 * map element, struct bpf_shtab_elem, which holds the entry's key. */
struct sk_psock_link {
	struct list_head list;
	struct bpf_map *map;
	void *link_raw;
} __attribute__((preserve_access_index));

struct bpf_shtab_elem {
	struct sock *sk;
	__u8 key[0];
} __attribute__((preserve_access_index));

/* net/core/sock_map.c: the sockhash behind a struct bpf_map (its first
 * member). count is the number of entries, kept by the kernel on every
 * insert and delete. */
struct bpf_shtab {
	atomic_t count;
} __attribute__((preserve_access_index));

struct sk_buff_head {
	__u32 qlen;
} __attribute__((preserve_access_index));

/* The cgroup policy walks from a socket's cgroup to the root
 * (include/linux/cgroup-defs.h, fs/kernfs). kn->id is the cgroup id, the
 * inode number of the cgroup's directory. sock_cgroup_data holds a plain
 * cgroup pointer since 5.16, so 6.1 and later read it the same way. */
struct kernfs_node {
	__u64 id;
} __attribute__((preserve_access_index));

struct cgroup_subsys_state {
	struct cgroup_subsys_state *parent;
} __attribute__((preserve_access_index));

struct cgroup {
	struct cgroup_subsys_state self; /* first member: a css is its cgroup */
	struct kernfs_node *kn;
} __attribute__((preserve_access_index));

struct sock_cgroup_data {
	struct cgroup *cgroup;
} __attribute__((preserve_access_index));

typedef struct {
	__s64 counter;
} atomic64_t;

/* The socket cookie, generated on first use (sock_gen_cookie()); 0 until
 * then. */
struct sock_common {
	atomic64_t skc_cookie;
} __attribute__((preserve_access_index));

/* include/linux/bpf_local_storage.h: a socket's storage, one element per
 * storage map, with a cache of one slot per map (cache_idx) that every
 * lookup fills. The data of an element starts after its map pointer. */
struct bpf_local_storage_data {
	void *smap;
	__u8 data[0];
} __attribute__((preserve_access_index));

#define SOCKACCEL_LOCAL_STORAGE_CACHE_SIZE 16

struct bpf_local_storage {
	struct bpf_local_storage_data *cache[SOCKACCEL_LOCAL_STORAGE_CACHE_SIZE];
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	struct bpf_local_storage *sk_bpf_storage;
	struct sk_buff_head sk_receive_queue; /* bytes that came through TCP */
	void *sk_user_data;
	struct sock_cgroup_data sk_cgrp_data; /* cgroup of the creating process */
	/* What the reader checks read (SOCKACCEL_GATE_READER_OK): the socket's
	 * file, NULL until accept(), and its SO_RCVLOWAT. */
	struct socket *sk_socket;
	int sk_rcvlowat;
} __attribute__((preserve_access_index));

/* include/linux/tcp.h: what back-pressure compares. write_seq is the end of
 * what the application has written to TCP; rcv_nxt the end of what TCP has
 * delivered in order. Redirected bytes move neither. */
struct tcp_sock {
	__u32 rcv_nxt;
	__u32 write_seq;
} __attribute__((preserve_access_index));

/* include/linux/skmsg.h: the kernel object behind an sk_msg program's
 * context. bpf_msg_redirect_hash() stores the peer socket it found in
 * sk_redir. */
struct sk_msg {
	struct sock *sk_redir;
} __attribute__((preserve_access_index));

/* include/linux/fs.h: open flags of a file (O_NONBLOCK). */
struct file {
	unsigned int f_flags;
} __attribute__((preserve_access_index));

/* include/linux/net.h: the socket behind a socket file, and back. */
struct socket {
	struct sock *sk;
	struct file *file;
} __attribute__((preserve_access_index));

#define SOCKACCEL_O_NONBLOCK 04000 /* include/uapi/asm-generic/fcntl.h */

struct seq_file;
struct task_struct;

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
} __attribute__((preserve_access_index));

struct bpf_iter__sockmap {
	struct bpf_iter_meta *meta;
	struct bpf_map *map;
	void *key;
	struct sock *sk;
} __attribute__((preserve_access_index));

/* The iterators the drain can walk with (kernel/bpf/task_iter.c,
 * net/ipv4/tcp_ipv4.c, kernel/bpf/map_iter.c). */
struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	__u32 fd;
	struct file *file;
} __attribute__((preserve_access_index));

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
	__u32 uid;
} __attribute__((preserve_access_index));

struct bpf_iter__bpf_map {
	struct bpf_iter_meta *meta;
	struct bpf_map *map;
} __attribute__((preserve_access_index));

/* sk_user_data carries flag bits in its low bits (SK_USER_DATA_NOCOPY,
 * _BPF, _PSOCK in include/net/sock.h); the pointer is what is left. */
#define SOCKACCEL_SK_USER_DATA_PTRMASK (~7UL)

#endif /* SOCKACCEL_KERNEL_BPF_H */
