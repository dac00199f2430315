// SPDX-License-Identifier: Apache-2.0
/*
 * mitigate: load mitigate.bpf.c, attach its sockops to CGROUP (bpf_link) and
 * its sk_msg to its own (unpinned) sockhash, run until SIGINT/SIGTERM, print
 * the counters, detach. Nothing is pinned: when this process exits, the maps
 * and programs go away (close the test sockets first).
 *
 * usage: mitigate CGROUP_DIR [0|1|2|4|5]
 *   0 none, 1 delete-at-fin (psock checks), 2 delete-at-fin unchecked, 4 gate,
 *   5 gate + quiet peer
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "mitigate.skel.h"

static volatile sig_atomic_t stop;
static void on_sig(int s) { (void)s; stop = 1; }

static const char *names[] = { "added", "redirects", "tcp_path_sends", "fin_seen", "fin_deleted",
			       "fin_skip_nonempty", "fin_skip_refs", "fin_delete_failed", "fin_no_psock", "fin_skip_peer_redirected", "gate_closed_sends", "gate_missing", "fin_peer_quiet_deleted" };

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s CGROUP_DIR [0|1|2|4|5]\n", argv[0]);
		return 2;
	}
	int mode = argc > 2 ? atoi(argv[2]) : 0;
	struct mitigate_bpf *skel = mitigate_bpf__open();
	if (!skel)
		return 1;
	skel->rodata->mitigation = mode;
	if (mitigate_bpf__load(skel)) {
		fprintf(stderr, "load failed\n");
		return 1;
	}
	int cg = open(argv[1], O_RDONLY | O_DIRECTORY);
	if (cg < 0) {
		perror("open cgroup");
		return 1;
	}
	struct bpf_link *link = bpf_program__attach_cgroup(skel->progs.mit_sockops, cg);
	if (!link) {
		perror("attach sockops");
		return 1;
	}
	int mapfd = bpf_map__fd(skel->maps.sock_hash);
	int msgfd = bpf_program__fd(skel->progs.mit_redirect);
	if (bpf_prog_attach(msgfd, mapfd, BPF_SK_MSG_VERDICT, 0)) {
		perror("attach sk_msg");
		return 1;
	}
	signal(SIGINT, on_sig);
	signal(SIGTERM, on_sig);
	printf("mitigate: mode %d attached to %s\n", mode, argv[1]);
	fflush(stdout);
	while (!stop)
		pause();
	printf("mitigate: counters:");
	for (unsigned int i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		unsigned long long v = 0;
		bpf_map_lookup_elem(bpf_map__fd(skel->maps.counters), &i, &v);
		printf(" %s=%llu", names[i], v);
	}
	printf("\n");
	bpf_prog_detach2(msgfd, mapfd, BPF_SK_MSG_VERDICT);
	bpf_link__destroy(link);
	close(cg);
	mitigate_bpf__destroy(skel);
	return 0;
}
