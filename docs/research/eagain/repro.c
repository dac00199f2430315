// SPDX-License-Identifier: Apache-2.0
/*
 * repro: spurious EAGAIN from a *blocking* recv() on a TCP socket that sits in
 * a BPF sockhash (tcp_bpf_recvmsg in net/ipv4/tcp_bpf.c). See README.md.
 *
 * Usage: repro [--mode plain|map|cgroup] [--cgroup DIR] [--iters N] SCENARIO...
 *
 * Modes (how the two sockets of each connection get accelerated):
 *   plain   nothing; the stock TCP path (control)
 *   map     this program creates its own (unpinned) sockhash and inserts both
 *           sockets from user space. No BPF program at all: the sockets only
 *           get tcp_bpf_recvmsg, every byte still travels through TCP.
 *   cgroup  join --cgroup DIR first (where sockacceld is attached), so the
 *           daemon's sockops inserts the sockets and its sk_msg redirects.
 *
 * Every scenario sets up one fresh loopback connection per iteration, parks a
 * reader thread in a blocking recv() on the client socket (no O_NONBLOCK, no
 * SO_RCVTIMEO), generates one kind of event, then makes sure the reader can
 * finish normally. The outcome of the reader's first recv() is tallied.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum mode { MODE_PLAIN, MODE_MAP, MODE_CGROUP };
static enum mode g_mode = MODE_PLAIN;
static int g_map_fd = -1;
static int g_iters = 100;
static int g_rcvlowat;    /* --rcvlowat N: SO_RCVLOWAT on the client socket */
static int g_rcvtimeo_ms; /* --rcvtimeo-ms N: SO_RCVTIMEO on the client socket */

#define DIE(...) do { fprintf(stderr, __VA_ARGS__); fprintf(stderr, " (%s)\n", strerror(errno)); exit(2); } while (0)

static void msleep(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static long sys_bpf(int cmd, union bpf_attr *a)
{
	return syscall(__NR_bpf, cmd, a, sizeof(*a));
}

static int make_sockhash(void)
{
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_type = BPF_MAP_TYPE_SOCKHASH;
	a.key_size = 4;
	a.value_size = 4;
	a.max_entries = 1024;
	int fd = sys_bpf(BPF_MAP_CREATE, &a);
	if (fd < 0)
		DIE("BPF_MAP_CREATE sockhash");
	return fd;
}

static uint32_t g_next_key;

static void map_insert(int sock)
{
	union bpf_attr a;
	uint32_t key = g_next_key++, val = sock;
	memset(&a, 0, sizeof(a));
	a.map_fd = g_map_fd;
	a.key = (uintptr_t)&key;
	a.value = (uintptr_t)&val;
	a.flags = BPF_ANY;
	if (sys_bpf(BPF_MAP_UPDATE_ELEM, &a))
		DIE("sockhash insert");
}

/* One loopback connection: *c is the client ("reader") side, *s the server. */
static void make_conn(int *c, int *s)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (void *)&sa, sizeof(sa)) || listen(l, 1) || getsockname(l, (void *)&sa, &sl))
		DIE("listen");
	*c = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(*c, (void *)&sa, sizeof(sa)))
		DIE("connect");
	*s = accept(l, NULL, NULL);
	if (*s < 0)
		DIE("accept");
	close(l);
	if (g_rcvlowat && setsockopt(*c, SOL_SOCKET, SO_RCVLOWAT, &g_rcvlowat, sizeof(g_rcvlowat)))
		DIE("SO_RCVLOWAT");
	if (g_rcvtimeo_ms) {
		struct timeval tv = { g_rcvtimeo_ms / 1000, (g_rcvtimeo_ms % 1000) * 1000 };
		if (setsockopt(*c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
			DIE("SO_RCVTIMEO");
	}
	if (g_mode == MODE_MAP) {
		map_insert(*c);
		map_insert(*s);
	}
}

/* ---- the reader thread ------------------------------------------------- */

struct reader {
	pthread_t th;
	pid_t tid;
	int fd;
	size_t len;
	int flags;
	volatile int done;
	ssize_t ret;
	int err;
};

static void *reader_main(void *p)
{
	struct reader *r = p;
	char *buf = malloc(r->len);
	r->tid = gettid();
	r->ret = recv(r->fd, buf, r->len, r->flags);
	r->err = r->ret < 0 ? errno : 0;
	free(buf);
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static bool proc_sleeping(const char *path)
{
	char buf[512];
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] == 'S';
}

static bool task_sleeping(pid_t tid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	return proc_sleeping(path);
}

/* Start a reader and return once it is asleep inside recv(). */
static void reader_start(struct reader *r, int fd, size_t len, int flags)
{
	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->len = len;
	r->flags = flags;
	if (pthread_create(&r->th, NULL, reader_main, r))
		DIE("pthread_create");
	while (!__atomic_load_n(&r->tid, __ATOMIC_ACQUIRE))
		sched_yield();
	for (int stable = 0; stable < 3 && !r->done;) {
		msleep(1);
		stable = task_sleeping(r->tid) ? stable + 1 : 0;
	}
}

static void reader_join(struct reader *r)
{
	pthread_join(r->th, NULL);
}

/* ---- outcome tally --------------------------------------------------------- */

#define MAXOUT 8
struct tally {
	const char *name[MAXOUT];
	int n[MAXOUT];
};

static void tally_add(struct tally *t, const char *what)
{
	for (int i = 0; i < MAXOUT; i++) {
		if (!t->name[i])
			t->name[i] = strdup(what);
		if (!strcmp(t->name[i], what)) {
			t->n[i]++;
			return;
		}
	}
}

static const char *outcome(struct reader *r, ssize_t want)
{
	static __thread char buf[64];
	if (r->ret < 0) {
		snprintf(buf, sizeof(buf), "%s", r->err == EAGAIN ? "EAGAIN" : strerrorname_np(r->err));
		return buf;
	}
	if (r->ret == want)
		return "ok";
	snprintf(buf, sizeof(buf), "ret=%zd", r->ret);
	return buf;
}

static void on_sigusr1(int sig)
{
	(void)sig;
}

/* ---- scenarios ------------------------------------------------------------- */

/*
 * halfclose: the /tmp/tcp_test.py pattern, racy by nature. The client sends
 * 1 MiB and shuts down its write side; the server reads to EOF, echoes the
 * data and closes; the client reads it back. Outcome of the client's first
 * recv.
 */
struct hc_srv {
	int s;
	size_t total;
};

static void *hc_server(void *p)
{
	struct hc_srv *h = p;
	char *buf = malloc(h->total);
	size_t got = 0;
	for (;;) {
		ssize_t n = recv(h->s, buf + got, h->total - got, 0);
		if (n > 0) {
			got += n;
			continue;
		}
		if (n < 0 && errno == EAGAIN) /* the server can be hit too */
			continue;
		break;
	}
	for (size_t off = 0; off < got;) {
		ssize_t n = send(h->s, buf + off, got - off, 0);
		if (n <= 0)
			break;
		off += n;
	}
	close(h->s);
	free(buf);
	return NULL;
}

static const char *sc_halfclose(void)
{
	static __thread char res[64];
	const size_t total = 1 << 20;
	int c, s;
	make_conn(&c, &s);
	struct hc_srv h = { s, total };
	pthread_t th;
	pthread_create(&th, NULL, hc_server, &h);
	char *buf = malloc(total);
	memset(buf, 'a', total);
	for (size_t off = 0; off < total;) {
		ssize_t n = send(c, buf + off, total - off, 0);
		if (n <= 0)
			DIE("send");
		off += n;
	}
	shutdown(c, SHUT_WR);
	ssize_t n = recv(c, buf, total, 0);
	int err = errno;
	if (n < 0)
		snprintf(res, sizeof(res), "%s", err == EAGAIN ? "EAGAIN" : strerrorname_np(err));
	else
		snprintf(res, sizeof(res), "ok");
	/* drain the rest so the server can finish */
	for (;;) {
		n = recv(c, buf, total, 0);
		if (n == 0 || (n < 0 && errno != EAGAIN))
			break;
	}
	pthread_join(th, NULL);
	close(c);
	free(buf);
	return res;
}

/* shutdown-wake: a thread blocked in recv(c); another thread calls
 * shutdown(c, SHUT_WR). inet_shutdown() ends with sk->sk_state_change(sk). */
static const char *sc_shutdown_wake(void)
{
	struct reader r;
	int c, s;
	make_conn(&c, &s);
	reader_start(&r, c, 1, 0);
	shutdown(c, SHUT_WR);
	msleep(5);
	send(s, "x", 1, 0);
	reader_join(&r);
	const char *o = outcome(&r, 1);
	close(c);
	close(s);
	return o;
}

/* signal-wake: a signal with an SA_RESTART handler hits the blocked reader. */
static const char *sc_signal_wake(void)
{
	struct reader r;
	int c, s;
	make_conn(&c, &s);
	reader_start(&r, c, 1, 0);
	pthread_kill(r.th, SIGUSR1);
	msleep(5);
	send(s, "x", 1, 0);
	reader_join(&r);
	const char *o = outcome(&r, 1);
	close(c);
	close(s);
	return o;
}

/* stop-cont: SIGSTOP + SIGCONT of the whole process (a debugger, ^Z/fg, a
 * checkpointer) while the reader is blocked. Sent to a child process. */
static const char *sc_stop_cont(void)
{
	int pfd[2];
	if (pipe(pfd))
		DIE("pipe");
	int c, s;
	make_conn(&c, &s);
	pid_t pid = fork();
	if (pid == 0) {
		char buf[1];
		close(pfd[0]);
		ssize_t n = recv(c, buf, 1, 0);
		char res[64];
		if (n < 0)
			snprintf(res, sizeof(res), "%s", errno == EAGAIN ? "EAGAIN" : strerrorname_np(errno));
		else
			snprintf(res, sizeof(res), n == 1 ? "ok" : "ret=%zd", n);
		if (write(pfd[1], res, strlen(res) + 1) < 0)
			_exit(1);
		_exit(0);
	}
	close(pfd[1]);
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	for (int stable = 0; stable < 3;) {
		msleep(1);
		stable = proc_sleeping(path) ? stable + 1 : 0;
	}
	kill(pid, SIGSTOP);
	msleep(2);
	kill(pid, SIGCONT);
	msleep(5);
	send(s, "x", 1, 0);
	static __thread char res[64];
	ssize_t n = read(pfd[0], res, sizeof(res));
	if (n <= 0)
		snprintf(res, sizeof(res), "child-died");
	waitpid(pid, NULL, 0);
	close(pfd[0]);
	close(c);
	close(s);
	return res;
}

/* peer-fin: the peer half-closes while the reader is blocked. Expected: 0. */
static const char *sc_peer_fin(void)
{
	struct reader r;
	int c, s;
	make_conn(&c, &s);
	reader_start(&r, c, 1, 0);
	shutdown(s, SHUT_WR);
	reader_join(&r);
	const char *o = outcome(&r, 0);
	close(c);
	close(s);
	return o;
}

/* peer-rst: the peer aborts (SO_LINGER 0 + close) while the reader is
 * blocked. Expected: ECONNRESET. */
static const char *sc_peer_rst(void)
{
	struct reader r;
	int c, s;
	make_conn(&c, &s);
	reader_start(&r, c, 1, 0);
	struct linger lg = { 1, 0 };
	setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(s);
	reader_join(&r);
	const char *o = outcome(&r, 1);
	close(c);
	return o;
}

/* tcp-data: data arrives while the reader is blocked (through whatever path
 * the mode gives it). Expected and observed: ok. Control for the others. */
static const char *sc_data(void)
{
	struct reader r;
	int c, s;
	make_conn(&c, &s);
	reader_start(&r, c, 1, 0);
	send(s, "x", 1, 0);
	reader_join(&r);
	const char *o = outcome(&r, 1);
	close(c);
	close(s);
	return o;
}

/* two-readers: two threads block in recv(c, 1); the peer sends one byte.
 * One reader gets it; the other must keep waiting (it gets a second byte
 * 5 ms later). Outcome of the reader that did not get the first byte. */
static const char *sc_two_readers(void)
{
	struct reader r1, r2;
	int c, s;
	make_conn(&c, &s);
	reader_start(&r1, c, 1, 0);
	reader_start(&r2, c, 1, 0);
	send(s, "x", 1, 0);
	msleep(5);
	send(s, "y", 1, 0);
	reader_join(&r1);
	reader_join(&r2);
	struct reader *loser = (r1.ret == 1 && r2.ret == 1) ? &r2 : (r1.ret == 1 ? &r2 : &r1);
	const char *o = outcome(loser, 1);
	close(c);
	close(s);
	return o;
}

/* write-space: the reader is blocked on c while a second thread on the same
 * socket is blocked in send() on a full send buffer; the server then drains,
 * the ACKs free the send buffer and sk_stream_write_space() wakes the socket's
 * wait queue (the same queue the reader sleeps on). */
struct ws_writer {
	int c;
	size_t total;
	ssize_t sent;
};

static void *ws_writer_main(void *p)
{
	struct ws_writer *w = p;
	char *buf = malloc(w->total);
	memset(buf, 'w', w->total);
	w->sent = 0;
	while ((size_t)w->sent < w->total) {
		ssize_t n = send(w->c, buf + w->sent, w->total - w->sent, 0);
		if (n <= 0)
			break;
		w->sent += n;
	}
	free(buf);
	return NULL;
}

static const char *sc_write_space(void)
{
	struct reader r;
	int c, s;
	int small = 16384;
	make_conn(&c, &s);
	setsockopt(c, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(s, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	reader_start(&r, c, 1, 0);
	struct ws_writer w = { c, 4 << 20, 0 };
	pthread_t wt;
	pthread_create(&wt, NULL, ws_writer_main, &w);
	msleep(20);
	char *buf = malloc(1 << 16);
	size_t got = 0;
	while (got < w.total) {
		ssize_t n = recv(s, buf, 1 << 16, 0);
		if (n <= 0) {
			if (n < 0 && errno == EAGAIN)
				continue;
			break;
		}
		got += n;
	}
	pthread_join(wt, NULL);
	if (!r.done)
		send(s, "x", 1, 0);
	reader_join(&r);
	const char *o = outcome(&r, 1);
	free(buf);
	close(c);
	close(s);
	return o;
}

/*
 * fin-ack: the common half-close pattern (HTTP/1.0 style client): shutdown
 * (SHUT_WR), then a blocking recv() for the answer, which the server sends
 * g_delay_ms later. The server's ACK of our FIN is a delayed ACK (tcp_fin()
 * puts the receiver in pingpong mode); it arrives a few ms later, moves us
 * from FIN_WAIT1 to FIN_WAIT2, and tcp_rcv_state_process() calls
 * sk->sk_state_change(), which wakes the blocked reader without data. If the
 * answer arrives before that ACK (or carries it), nothing happens.
 */
static int g_delay_ms = 50;

struct fa_srv {
	int s;
	int delay_ms;
};

static void *fa_server(void *p)
{
	struct fa_srv *f = p;
	msleep(f->delay_ms);
	send(f->s, "x", 1, 0);
	return NULL;
}

static const char *fin_ack(bool prior_reply)
{
	static __thread char res[64];
	int c, s;
	char b;
	make_conn(&c, &s);
	if (prior_reply) {
		/* The peer has already answered once (keep-alive style), so it
		 * has redirected into c before c's FIN. */
		send(s, "h", 1, 0);
		if (recv(c, &b, 1, 0) != 1)
			DIE("prior reply");
	}
	struct fa_srv f = { s, g_delay_ms };
	pthread_t th;
	shutdown(c, SHUT_WR);
	pthread_create(&th, NULL, fa_server, &f);
	ssize_t n = recv(c, &b, 1, 0);
	if (n < 0)
		snprintf(res, sizeof(res), "%s", errno == EAGAIN ? "EAGAIN" : strerrorname_np(errno));
	else
		snprintf(res, sizeof(res), n == 1 ? "ok" : "ret=%zd", n);
	pthread_join(th, NULL);
	close(c);
	close(s);
	return res;
}

static const char *sc_fin_ack(void)
{
	return fin_ack(false);
}

/* fin-ack-after-reply: fin-ack on a connection where the peer has already
 * sent one byte (read by the client) before the client's shutdown. */
static const char *sc_fin_ack_after_reply(void)
{
	return fin_ack(true);
}

/* waitall: recv(MSG_WAITALL) of 200 bytes that arrive as 100 + 100 with a
 * 5 ms gap. Not an EAGAIN, but the same loop: returns short when accelerated. */
static const char *sc_waitall(void)
{
	struct reader r;
	int c, s;
	char b[100];
	memset(b, 'z', sizeof(b));
	make_conn(&c, &s);
	reader_start(&r, c, 200, MSG_WAITALL);
	send(s, b, 100, 0);
	msleep(5);
	send(s, b, 100, 0);
	reader_join(&r);
	const char *o = outcome(&r, 200);
	close(c);
	close(s);
	return o;
}

/*
 * duplex: data-safety stress for half-close mitigations. The server streams
 * a numbered byte pattern (chunks of 1..8 KiB, 1 MiB in all) to the client
 * while the client shuts down its write side at a random moment (0..2 ms in)
 * and reads the stream to EOF, retrying EAGAIN. Outcomes: ok, ok+eagain (an
 * EAGAIN was retried), short=N / mismatch@N (bytes lost or reordered),
 * srv-ERR (a server send failed).
 */
struct dx_srv {
	int s;
	size_t total;
	size_t maxchunk;
	int err;
};

static unsigned char dx_byte(size_t i)
{
	return (unsigned char)((i * 7 + (i >> 8) * 13) & 0xff);
}

static void *dx_server(void *p)
{
	struct dx_srv *d = p;
	static __thread unsigned char buf[8192];
	unsigned int seed = (unsigned int)(uintptr_t)p ^ (unsigned int)time(NULL);
	size_t off = 0;
	d->err = 0;
	while (off < d->total) {
		size_t n = 1 + rand_r(&seed) % d->maxchunk;
		if (n > d->total - off)
			n = d->total - off;
		for (size_t k = 0; k < n; k++)
			buf[k] = dx_byte(off + k);
		ssize_t w = send(d->s, buf, n, MSG_NOSIGNAL);
		if (w <= 0) {
			d->err = errno;
			break;
		}
		off += w;
	}
	/* wait for the client's FIN, then close */
	char tmp[64];
	for (;;) {
		ssize_t n = recv(d->s, tmp, sizeof(tmp), 0);
		if (n == 0 || (n < 0 && errno != EAGAIN))
			break;
	}
	close(d->s);
	return NULL;
}

static const char *duplex(size_t total, size_t maxchunk, int same_thread)
{
	static __thread char res[64];
	int c, s;
	make_conn(&c, &s);
	struct dx_srv d = { s, total, maxchunk, 0 };
	pthread_t th;
	pthread_create(&th, NULL, dx_server, &d);
	long shut_at_us = rand() % 2000;
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (!same_thread) {
		struct timespec ts = { 0, shut_at_us * 1000L };
		nanosleep(&ts, NULL);
		shutdown(c, SHUT_WR);
	}
	bool shut = !same_thread;
	static __thread unsigned char buf[65536];
	size_t got = 0;
	long eagain = 0, bad = -1;
	for (;;) {
		if (!shut) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			long us = (now.tv_sec - t0.tv_sec) * 1000000L + (now.tv_nsec - t0.tv_nsec) / 1000;
			if (us >= shut_at_us) {
				shutdown(c, SHUT_WR);
				shut = true;
			}
		}
		ssize_t n = recv(c, buf, sizeof(buf), shut ? 0 : MSG_DONTWAIT);
		if (n < 0 && errno == EAGAIN) {
			if (shut)
				eagain++;
			continue;
		}
		if (n <= 0)
			break;
		for (ssize_t k = 0; k < n && bad < 0; k++)
			if (buf[k] != dx_byte(got + k))
				bad = got + k;
		got += n;
	}
	pthread_join(th, NULL);
	close(c);
	if (d.err)
		snprintf(res, sizeof(res), "srv-%s", strerrorname_np(d.err));
	else if (bad >= 0)
		snprintf(res, sizeof(res), "mismatch");
	else if (got != total)
		snprintf(res, sizeof(res), "short");
	else
		snprintf(res, sizeof(res), eagain ? "ok+eagain" : "ok");
	return res;
}

static const char *sc_duplex(void)
{
	return duplex(1 << 20, 8192, 0);
}

/* duplex-small: the same with 1..64-byte sends and the shutdown done by the
 * reading thread between two recv() calls (so no recv() holds the psock and
 * the receive queue is mostly empty: the case delete-at-fin acts on). */
static const char *sc_duplex_small(void)
{
	return duplex(64 << 10, 64, 1);
}

static const struct {
	const char *name;
	const char *(*fn)(void);
} scenarios[] = {
	{ "data", sc_data },
	{ "peer-fin", sc_peer_fin },
	{ "halfclose", sc_halfclose },
	{ "fin-ack", sc_fin_ack },
	{ "fin-ack-after-reply", sc_fin_ack_after_reply },
	{ "shutdown-wake", sc_shutdown_wake },
	{ "signal-wake", sc_signal_wake },
	{ "stop-cont", sc_stop_cont },
	{ "peer-rst", sc_peer_rst },
	{ "two-readers", sc_two_readers },
	{ "write-space", sc_write_space },
	{ "waitall", sc_waitall },
	{ "duplex", sc_duplex },
	{ "duplex-small", sc_duplex_small },
};

int main(int argc, char **argv)
{
	const char *cg = NULL;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--mode") && i + 1 < argc) {
			const char *m = argv[++i];
			g_mode = !strcmp(m, "map") ? MODE_MAP : !strcmp(m, "cgroup") ? MODE_CGROUP : MODE_PLAIN;
		} else if (!strcmp(argv[i], "--cgroup") && i + 1 < argc) {
			cg = argv[++i];
		} else if (!strcmp(argv[i], "--rcvlowat") && i + 1 < argc) {
			g_rcvlowat = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--rcvtimeo-ms") && i + 1 < argc) {
			g_rcvtimeo_ms = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--delay-ms") && i + 1 < argc) {
			g_delay_ms = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--iters") && i + 1 < argc) {
			g_iters = atoi(argv[++i]);
		} else {
			fprintf(stderr, "usage: %s [--mode plain|map|cgroup] [--cgroup DIR] [--iters N] [--delay-ms MS] [--rcvlowat N] [--rcvtimeo-ms MS] SCENARIO...|all\n", argv[0]);
			return 2;
		}
	}
	if (g_mode == MODE_CGROUP) {
		if (!cg) {
			fprintf(stderr, "--mode cgroup needs --cgroup DIR\n");
			return 2;
		}
		char path[512];
		snprintf(path, sizeof(path), "%s/cgroup.procs", cg);
		FILE *f = fopen(path, "w");
		if (!f || fprintf(f, "%d\n", getpid()) < 0 || fclose(f))
			DIE("join %s", path);
	}
	if (g_mode == MODE_MAP)
		g_map_fd = make_sockhash();

	struct sigaction sa = { .sa_handler = on_sigusr1, .sa_flags = SA_RESTART };
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	bool all = i < argc && !strcmp(argv[i], "all");
	for (size_t k = 0; k < sizeof(scenarios) / sizeof(scenarios[0]); k++) {
		bool want = all;
		for (int j = i; j < argc && !want; j++)
			want = !strcmp(argv[j], scenarios[k].name);
		if (!want)
			continue;
		struct tally t = { 0 };
		for (int it = 0; it < g_iters; it++)
			tally_add(&t, scenarios[k].fn());
		printf("%-6s %-19s n=%-5d", g_mode == MODE_PLAIN ? "plain" : g_mode == MODE_MAP ? "map" : "cgroup",
		       scenarios[k].name, g_iters);
		for (int o = 0; o < MAXOUT && t.name[o]; o++)
			printf(" %s=%d", t.name[o], t.n[o]);
		printf("\n");
		fflush(stdout);
	}
	return 0;
}
