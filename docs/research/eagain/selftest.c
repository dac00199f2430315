// SPDX-License-Identifier: Apache-2.0
/*
 * selftest: does the running kernel return EAGAIN from a blocking recv() on a
 * TCP socket in a sockhash when the wait is woken without data?
 * (tcp_bpf_recvmsg(): "copied = -EAGAIN" after tcp_msg_wait_data() returns 0.)
 *
 * Design (what a daemon would run at start-up, in well under a second):
 *  - fork a child, so the probe's signal handler, threads and sockets never
 *    touch the daemon, and a hung probe can be killed (parent waits 1 s max);
 *  - in the child: create an unpinned BPF_MAP_TYPE_SOCKHASH (no program
 *    attached, no cgroup involved), make a loopback TCP pair with
 *    listen/connect/accept, insert both sockets from user space
 *    (BPF_MAP_UPDATE_ELEM with the fd as value). Membership alone switches
 *    the sockets' proto->recvmsg to tcp_bpf_recvmsg, the function under test;
 *  - probe A (state-change wakeup): a thread blocks in recv(C, 1 byte);
 *    once it sleeps (/proc/self/task/TID/status: State S, twice, with no
 *    voluntary context switch in between), the main thread calls
 *    shutdown(C, SHUT_WR), whose inet_shutdown() ends with
 *    sk->sk_state_change(): a wakeup without data. The main thread then waits
 *    until the reader has either returned or gone back to sleep (its
 *    voluntary_ctxt_switches went up and it is in S again), and only then
 *    sends one byte from the peer. Correct kernel: recv() returns that byte.
 *    Affected: EAGAIN, before the byte was sent.
 *  - probe B (signal wakeup): the same with pthread_kill(SIGUSR1) (SA_RESTART
 *    no-op handler) instead of shutdown(). Correct kernel: EINTR (the wait
 *    is timed, see below; the reader retries it) or a restart, then the
 *    byte. Affected: EAGAIN.
 *  - SO_RCVTIMEO of 1 s on C bounds every wait, so a broken probe cannot
 *    hang; an EAGAIN that comes after >= 900 ms is a timeout, reported as
 *    inconclusive.
 *  - --control runs the same probes without the sockhash (plain TCP), to
 *    check the probe itself: it must say "not affected".
 *  - Exit status: 0 not affected, 1 affected (A and/or B), 2 inconclusive
 *    (no sockhash support, reader never slept, ...). One line on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int g_control; /* --control: skip the sockhash insert (plain TCP) */

enum { PR_OK = 0, PR_EAGAIN = 1, PR_INCONCLUSIVE = 2 };

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static int sockhash_create(void)
{
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_type = BPF_MAP_TYPE_SOCKHASH;
	a.key_size = 4;
	a.value_size = 4;
	a.max_entries = 2;
	return syscall(__NR_bpf, BPF_MAP_CREATE, &a, sizeof(a));
}

static int sockhash_insert(int map, uint32_t key, int fd)
{
	union bpf_attr a;
	uint32_t val = fd;
	memset(&a, 0, sizeof(a));
	a.map_fd = map;
	a.key = (uintptr_t)&key;
	a.value = (uintptr_t)&val;
	a.flags = BPF_ANY;
	return syscall(__NR_bpf, BPF_MAP_UPDATE_ELEM, &a, sizeof(a));
}

static int tcp_pair(int *c, int *s)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0 || bind(l, (void *)&sa, sizeof(sa)) || listen(l, 1) || getsockname(l, (void *)&sa, &sl))
		return -1;
	*c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*c < 0 || connect(*c, (void *)&sa, sizeof(sa)))
		return -1;
	*s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	close(l);
	return *s < 0 ? -1 : 0;
}

struct reader {
	int fd;
	pid_t tid;
	volatile int done;
	ssize_t ret;
	int err;
	double elapsed_ms;
};

static void *reader_main(void *p)
{
	struct reader *r = p;
	char b;
	__atomic_store_n(&r->tid, gettid(), __ATOMIC_RELEASE);
	double t0 = now_ms();
	/* A timed recv() (SO_RCVTIMEO) is not restarted after a signal even with
	 * SA_RESTART: EINTR is the correct answer there, so retry it. */
	do
		r->ret = recv(r->fd, &b, 1, 0);
	while (r->ret < 0 && errno == EINTR);
	r->err = errno;
	r->elapsed_ms = now_ms() - t0;
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* State letter and voluntary context switches of one of our threads. */
static bool thread_status(pid_t tid, char *state, long *vcsw)
{
	char path[64], buf[2048];
	snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	char *st = strstr(buf, "\nState:\t");
	char *vc = strstr(buf, "\nvoluntary_ctxt_switches:\t");
	if (!st || !vc)
		return false;
	*state = st[strlen("\nState:\t")];
	*vcsw = atol(vc + strlen("\nvoluntary_ctxt_switches:\t"));
	return true;
}

static void on_sigusr1(int sig)
{
	(void)sig;
}

/* One probe on a fresh pair. how: 'A' shutdown wake, 'B' signal wake. */
static int probe(int map, char how, double *ms)
{
	int c, s, res = PR_INCONCLUSIVE;
	if (tcp_pair(&c, &s))
		return PR_INCONCLUSIVE;
	struct timeval tv = { 1, 0 };
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (!g_control && (sockhash_insert(map, 0, c) || sockhash_insert(map, 1, s)))
		goto out;
	struct reader r = { .fd = c };
	pthread_t th;
	if (pthread_create(&th, NULL, reader_main, &r))
		goto out;
	while (!__atomic_load_n(&r.tid, __ATOMIC_ACQUIRE))
		sched_yield();
	/* Asleep twice in a row, 100 us apart, without having run in between
	 * (at most ~200 ms). */
	int stable = 0;
	char st;
	long vcsw = -1, v;
	for (int i = 0; i < 2000 && stable < 2 && !r.done; i++) {
		sleep_us(100);
		if (thread_status(r.tid, &st, &v) && st == 'S' && (stable == 0 || v == vcsw)) {
			vcsw = v;
			stable++;
		} else {
			stable = 0;
		}
	}
	if (stable >= 2) {
		if (how == 'A')
			shutdown(c, SHUT_WR);
		else
			pthread_kill(th, SIGUSR1);
		/* Wait until the reader has handled the wakeup: it returned
		 * (affected kernel), or it went back to sleep, i.e. ran and
		 * switched out voluntarily once more (correct kernel). Only then
		 * send the byte, so a slow-to-run reader cannot find it there and
		 * hide the bug. At most ~300 ms. */
		bool handled = false;
		for (int i = 0; i < 3000 && !handled; i++) {
			sleep_us(100);
			handled = __atomic_load_n(&r.done, __ATOMIC_ACQUIRE) ||
				  (thread_status(r.tid, &st, &v) && st == 'S' && v > vcsw);
		}
		if (!handled)
			stable = 0; /* never observed handling the wakeup */
	}
	send(s, "x", 1, MSG_NOSIGNAL);
	pthread_join(th, NULL);
	*ms = r.elapsed_ms;
	if (stable < 2)
		res = PR_INCONCLUSIVE;
	else if (r.ret == 1)
		res = PR_OK;
	else if (r.ret < 0 && r.err == EAGAIN && r.elapsed_ms < 900)
		res = PR_EAGAIN;
	else
		res = PR_INCONCLUSIVE;
out:
	close(c);
	close(s);
	return res;
}

static int child(int outfd)
{
	char line[256];
	double t0 = now_ms(), ma = 0, mb = 0;
	struct sigaction sa = { .sa_handler = on_sigusr1, .sa_flags = SA_RESTART };
	sigaction(SIGUSR1, &sa, NULL);
	int map = sockhash_create();
	if (map < 0) {
		snprintf(line, sizeof(line), "inconclusive: sockhash: %s\n", strerror(errno));
		(void)!write(outfd, line, strlen(line));
		return PR_INCONCLUSIVE;
	}
	int a = probe(map, 'A', &ma);
	int b = probe(map, 'B', &mb);
	static const char *name[] = { "ok", "EAGAIN", "inconclusive" };
	int verdict = (a == PR_EAGAIN || b == PR_EAGAIN) ? 1 : (a == PR_OK && b == PR_OK) ? 0 : 2;
	snprintf(line, sizeof(line),
		 "%s: state-change wake -> %s (%.1f ms), signal wake -> %s (%.1f ms); probe took %.1f ms\n",
		 verdict == 1 ? "AFFECTED" : verdict == 0 ? "not affected" : "inconclusive", name[a], ma, name[b],
		 mb, now_ms() - t0);
	(void)!write(outfd, line, strlen(line));
	close(map);
	return verdict;
}

int main(int argc, char **argv)
{
	g_control = argc > 1 && !strcmp(argv[1], "--control");
	double t0 = now_ms();
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC))
		return 2;
	pid_t pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		_exit(child(pfd[1]));
	}
	close(pfd[1]);
	char line[256] = "";
	struct pollfd p = { pfd[0], POLLIN, 0 };
	ssize_t n = 0;
	if (poll(&p, 1, 1500) == 1)
		n = read(pfd[0], line, sizeof(line) - 1);
	int st = 0, code = 2;
	if (n <= 0) {
		kill(pid, SIGKILL);
		snprintf(line, sizeof(line), "inconclusive: probe did not finish\n");
	}
	waitpid(pid, &st, 0);
	if (n > 0 && WIFEXITED(st))
		code = WEXITSTATUS(st);
	printf("eagain-selftest: %s", line);
	printf("eagain-selftest: total %.1f ms (fork + probes)\n", now_ms() - t0);
	return code;
}
