// SPDX-License-Identifier: Apache-2.0
//
// Kernel self-test: does a blocking recv() on a TCP socket that is in a
// sockhash return EAGAIN when its wait is woken without data?
//
// The source is net/ipv4/tcp_bpf.c. Every TCP socket in a sockmap or
// sockhash gets tcp_bpf_recvmsg() as its recvmsg, even with no program
// attached. When both its queues are empty it calls tcp_msg_wait_data(),
// which sleeps once in sk_wait_event(); when that wait ends for any reason
// (a wakeup of the socket's wait queue that brought no data, or a signal)
// and both queues are still empty, tcp_bpf_recvmsg() returns -EAGAIN
// ("copied = -EAGAIN"), even for a blocking socket without a timeout.
// Plain tcp_recvmsg() loops instead. Present in 6.1 and 6.18; the research
// (measurements, triggers, mitigations) is in docs/research/eagain/, and the
// prototype this ports is docs/research/eagain/selftest.c.
//
// Who is affected: programs that do blocking reads on accelerated sockets
// and get woken without data: after their own half-close (the peer's
// delayed ACK of our FIN wakes the reader), while receiving signals (also
// SIGSTOP/SIGCONT and cgroup freeze), with a second thread shutting the
// socket down or reading it too, or on a peer RST (EAGAIN before
// ECONNRESET). Programs using epoll or non-blocking sockets already handle
// EAGAIN and are unaffected.
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "error.h"

namespace sockaccel {

// How long probe_blocking_read_eagain() may take by default. Measured: 2 to
// 40 ms (p99 24 ms idle, max 39 ms with every CPU busy); a kernel that takes
// longer is too loaded for the timing the probe relies on.
inline constexpr std::chrono::milliseconds kSelfTestDeadline{2000};

struct SelfTestOptions {
    // After this, the probe process is SIGKILLed and the verdict is unknown.
    std::chrono::milliseconds deadline = kSelfTestDeadline;
    // Tests only: run the same probes on plain TCP sockets (no sockhash).
    // A correct probe must then report "not detected" on every kernel.
    bool control = false;
};

struct KernelIssueProbe {
    // true: this kernel has the issue; false: it does not; nullopt: unknown
    // (the probe could not decide, or did not finish before the deadline).
    std::optional<bool> detected;
    // What each wakeup did, or why the verdict is unknown, e.g.
    // "shutdown() wake: EAGAIN after 0.4 ms; signal wake: EAGAIN after 0.3 ms".
    std::string details;
    // Wall time of the whole probe, fork to reaping the child.
    double elapsed_ms = 0;
};

// Runs the detection and returns its verdict. The contract:
//
//  - Isolation: everything happens in a forked child process, so the probe's
//    signal handler, thread and sockets never touch the caller, and a stuck
//    probe can be killed. The child dies with the caller (PR_SET_PDEATHSIG).
//  - In the child: a private, unpinned BPF_MAP_TYPE_SOCKHASH (bpf_map_create;
//    no programs, no cgroup, no pins), a loopback TCP pair per probe put into
//    it from user space (bpf_map_update_elem(.., BPF_NOEXIST)); membership
//    alone installs tcp_bpf_recvmsg. Then a thread blocks in recv() and is
//    woken without data, once by shutdown(SHUT_WR) and once by a signal.
//    It touches no other socket and leaves nothing behind: the map and the
//    sockets die with the child. (One exception by design of the data
//    plane: if the calling process sits in a cgroup that sockacceld
//    accelerates, the sockops program may also insert the probe's pair into
//    the production sockhash while it exists, like any other connection.)
//  - Bounded: the caller waits for the child on a pidfd with poll(), at most
//    `options.deadline`; then the child is SIGKILLed and reaped, and the
//    verdict is unknown. Without a deadline miss, the call takes a few ms.
//  - Clean: every file descriptor it opens is closed, and the child is
//    reaped, on every path (except a child that survives SIGKILL for a
//    further second, which is left as a zombie and said so in `details`).
//  - Errors: an unexpected OS failure (pipe, fork, pidfd, or in the child
//    socket/bpf/thread set-up) returns a SysError naming the step.
//
// Precondition: call it from a single-threaded process (sockacceld does, at
// start-up): fork() copies only the calling thread, and the child allocates
// and starts a thread. Blocks the calling thread for the probe's duration.
[[nodiscard]] Result<KernelIssueProbe> probe_blocking_read_eagain(const SelfTestOptions& options = {});

// The status command's kernel_issues entry for this issue; `detected` is
// true, false, or null when unknown (docs/protocol.md, status).
nlohmann::json eagain_issue_json(std::optional<bool> detected);

// ---- Pure helpers, exposed for unit tests -------------------------------

// What one wakeup did to the blocked reader.
enum class WakeOutcome : std::uint8_t {
    kept_waiting,       // correct: it went on waiting and got the byte sent later
    eagain,             // the issue: recv() returned EAGAIN before any data came
    never_blocked,      // inconclusive: the reader was never seen asleep in recv()
    wake_not_observed,  // inconclusive: it was never seen handling the wakeup
    other,              // inconclusive: any other result (timeout, error, EOF)
};

struct WakeResult {
    WakeOutcome outcome = WakeOutcome::other;
    double reader_ms = 0;  // how long the reader's recv() call(s) took
    std::int64_t ret = 0;  // recv()'s last return value
    int err = 0;           // and its errno when that was negative
};

// Classifies one probe. `blocked`: the reader was seen asleep before the
// wakeup; `handled`: it was then seen returning or going back to sleep
// before the byte was sent. An EAGAIN that took `timeout_ms` * 0.9 or more
// may be SO_RCVTIMEO expiring, so it counts as `other`.
WakeOutcome classify_wake(bool blocked, bool handled, std::int64_t ret, int err, double reader_ms,
                          double timeout_ms);

// Detected if either wakeup gave EAGAIN; not detected if both kept waiting;
// unknown otherwise.
std::optional<bool> combine_verdict(const WakeResult& shutdown_wake, const WakeResult& signal_wake);

// "shutdown() wake: EAGAIN after 0.4 ms; signal wake: kept waiting".
std::string describe_wakes(const WakeResult& shutdown_wake, const WakeResult& signal_wake);

// The scheduler state letter ('S', 'R', ...) and voluntary_ctxt_switches of
// a /proc/<pid>/task/<tid>/status text; nullopt if either is missing.
struct TaskStatus {
    char state = 0;
    long voluntary_switches = 0;
};
std::optional<TaskStatus> parse_task_status(std::string_view text);

}  // namespace sockaccel
