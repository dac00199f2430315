// SPDX-License-Identifier: Apache-2.0
//
// The EAGAIN self-test (kernel_selftest.h has the contract; the prototype
// and its measurements are docs/research/eagain/selftest.c and README.md).
//
// Layout: the parent side (probe_blocking_read_eagain) forks, waits on a
// pidfd with a deadline, reaps, and turns the child's one binary report into
// a verdict. The child side (child_main and below) does the probing and
// leaves through _exit(), so none of the caller's destructors, atexit
// handlers or stdio buffers run twice.
#include "kernel_selftest.h"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/fmt/fmt.h>  // fmt::format, as bundled with or used by spdlog
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <type_traits>

#include "system.h"

namespace sockaccel {

namespace {

using Clock = std::chrono::steady_clock;

// ---- Timing of one probe (child side) -----------------------------------
//
// SO_RCVTIMEO on the reading socket: only a safety net so no recv() can hang
// (every probe sends the byte that ends the read). An EAGAIN that comes
// near it may be the timeout itself, so classify_wake() does not count it.
constexpr double kRcvTimeoutMs = 1000;
// How long to wait for the reader to be seen asleep in recv(), and then for
// it to be seen handling the wakeup. Both normally take well under 1 ms;
// the bounds keep a probe under ~0.5 s, so two fit in the 2 s deadline.
constexpr double kBlockWaitMs = 200;
constexpr double kHandleWaitMs = 300;
// Cadence of reading the reader's /proc status while waiting.
constexpr long kStatusStepUs = 100;
// After SIGKILL, how long to wait for the child to die before giving up on
// reaping it (only a task stuck in uninterruptible sleep survives that).
constexpr int kKillGraceMs = 1000;

constexpr std::uint32_t kReportMagic = 0x53414754;  // "SAGT"

// The child's whole answer, written with one write(). It is smaller than
// PIPE_BUF, so the write is atomic: the parent reads all of it or nothing.
struct ChildReport {
    std::uint32_t magic = 0;
    std::int32_t error = 0;  // errno of the step that failed; 0: the probes ran
    char step[64] = {};      // which step failed
    WakeResult wakes[2];     // [0] shutdown() wake, [1] signal wake
};
static_assert(std::is_trivially_copyable_v<ChildReport>);
static_assert(sizeof(ChildReport) <= PIPE_BUF);

double now_ms() {
    struct timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

// ---- Child side ----------------------------------------------------------

// A failed set-up step, reported to the parent as a SysError.
struct Failure {
    const char* step = nullptr;
    int err = 0;
    bool set(const char* what, int e) {
        if (step == nullptr) {  // keep the first failure, the cause
            step = what;
            err = e != 0 ? e : EIO;
        }
        return false;
    }
};

// SA_RESTART no-op: the signal's only job is to end the reader's wait.
extern "C" void on_probe_signal(int) {}

// The blocked reader thread of one probe.
struct Reader {
    int fd = -1;
    std::atomic<pid_t> tid{0};
    std::atomic<bool> done{false};
    ssize_t ret = 0;
    int err = 0;
    double ms = 0;
};

extern "C" void* reader_main(void* arg) {
    auto* r = static_cast<Reader*>(arg);
    r->tid.store(::gettid(), std::memory_order_release);
    r->tid.notify_one();
    const double t0 = now_ms();
    char byte;
    ssize_t n;
    // A recv() with SO_RCVTIMEO is not restarted after a signal even with
    // SA_RESTART: EINTR is the correct answer there, so retry it. Only a
    // result other than EINTR is the answer under test.
    do {
        n = ::recv(r->fd, &byte, 1, 0);
    } while (n < 0 && errno == EINTR);
    r->err = n < 0 ? errno : 0;
    r->ret = n;
    r->ms = now_ms() - t0;
    r->done.store(true, std::memory_order_release);
    return nullptr;
}

// State and voluntary context switches of one of the child's threads.
std::optional<TaskStatus> read_task_status(pid_t tid) {
    char path[64];
    std::snprintf(path, sizeof(path), "/proc/self/task/%d/status", static_cast<int>(tid));
    UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
    if (!fd) return std::nullopt;
    char buf[4096];
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n <= 0) return std::nullopt;
    return parse_task_status(std::string_view(buf, static_cast<std::size_t>(n)));
}

// A connected loopback TCP pair: `client` connect()ed, `server` accept()ed.
// Port 0, so the kernel picks a free port; the listener is closed at once.
bool tcp_pair(UniqueFd& client, UniqueFd& server, Failure& fail) {
    struct sockaddr_in sa = {};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!listener) return fail.set("create a TCP socket", errno);
    auto* addr = reinterpret_cast<struct sockaddr*>(&sa);
    if (::bind(listener.get(), addr, sizeof(sa)) != 0) return fail.set("bind to 127.0.0.1", errno);
    if (::listen(listener.get(), 1) != 0) return fail.set("listen on 127.0.0.1", errno);
    if (::getsockname(listener.get(), addr, &len) != 0) return fail.set("getsockname", errno);
    client.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!client) return fail.set("create a TCP socket", errno);
    if (::connect(client.get(), addr, sizeof(sa)) != 0)
        return fail.set("connect to 127.0.0.1", errno);
    server.reset(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!server) return fail.set("accept on 127.0.0.1", errno);
    return true;
}

enum class Wake { shutdown, signal };

// One probe on a fresh pair: block a reader in recv() on `client`, wake it
// without data, and only once it has dealt with that wakeup send the byte
// it is waiting for. Keys 2*index and 2*index+1 of the sockhash are this
// probe's, so BPF_NOEXIST never meets the previous probe's entries.
bool run_wake(int map_fd, int index, Wake how, WakeResult& out, Failure& fail) {
    UniqueFd client, server;
    if (!tcp_pair(client, server, fail)) return false;

    // The safety net: no wait of this probe can outlast it.
    struct timeval tv = {static_cast<time_t>(kRcvTimeoutMs / 1000), 0};
    if (::setsockopt(client.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0)
        return fail.set("set SO_RCVTIMEO", errno);

    // Membership alone switches both sockets' recvmsg to tcp_bpf_recvmsg:
    // no program is attached to this map. Both go in, as the daemon's
    // sockops would do for a connection. (The control run skips this.)
    if (map_fd >= 0) {
        std::uint32_t key = 2 * static_cast<std::uint32_t>(index);
        int fd = client.get();
        if (bpf_map_update_elem(map_fd, &key, &fd, BPF_NOEXIST) != 0)
            return fail.set("insert a socket into the sockhash", errno);
        key += 1;
        fd = server.get();
        if (bpf_map_update_elem(map_fd, &key, &fd, BPF_NOEXIST) != 0)
            return fail.set("insert a socket into the sockhash", errno);
    }

    Reader r;
    r.fd = client.get();
    pthread_t thread;
    if (int e = ::pthread_create(&thread, nullptr, reader_main, &r); e != 0)
        return fail.set("start the reader thread", e);
    r.tid.wait(0, std::memory_order_acquire);  // until the reader has published its tid
    const pid_t tid = r.tid.load(std::memory_order_acquire);

    // 1. Wait until the reader sleeps in recv(): state S twice in a row,
    //    kStatusStepUs apart, without a voluntary switch in between (so it
    //    did not wake and sleep again). Waking it before that would test
    //    nothing: it would simply enter recv() afterwards.
    bool blocked = false;
    long switches = -1;
    int stable = 0;
    for (const double until = now_ms() + kBlockWaitMs;
         !r.done.load(std::memory_order_acquire) && now_ms() < until;) {
        sleep_us(kStatusStepUs);
        auto st = read_task_status(tid);
        if (st && st->state == 'S' && (stable == 0 || st->voluntary_switches == switches)) {
            switches = st->voluntary_switches;
            if (++stable >= 2) {
                blocked = true;
                break;
            }
        } else {
            stable = 0;
        }
    }

    // 2. The wakeup without data.
    //    shutdown(SHUT_WR): inet_shutdown() ends with sk->sk_state_change(),
    //    which wakes the socket's wait queue; nothing is queued.
    //    signal: wait_woken() sleeps TASK_INTERRUPTIBLE, so any handled
    //    signal ends sk_wait_event().
    bool handled = false;
    if (blocked) {
        int rc = how == Wake::shutdown ? (::shutdown(client.get(), SHUT_WR) == 0 ? 0 : errno)
                                       : ::pthread_kill(thread, SIGUSR1);
        if (rc != 0) {
            fail.set(how == Wake::shutdown ? "shutdown the probe socket" : "signal the reader", rc);
        } else {
            // 3. Wait until the reader has dealt with the wakeup: it returned
            //    (affected kernel) or ran and went back to sleep, i.e. one more
            //    voluntary switch and S again (correct kernel). Sending the
            //    byte before that would let a reader that is slow to run
            //    (CPU load) find it queued and hide the issue: the research
            //    saw 4/200 wrong verdicts under load without this step.
            for (const double until = now_ms() + kHandleWaitMs; !handled && now_ms() < until;) {
                sleep_us(kStatusStepUs);
                if (r.done.load(std::memory_order_acquire)) {
                    handled = true;
                } else {
                    auto st = read_task_status(tid);
                    handled = st && st->state == 'S' && st->voluntary_switches > switches;
                }
            }
        }
    }

    // 4. The byte the reader waits for: a correct kernel returns it. This
    //    also ends the read on every other path, so the join cannot hang.
    if (::send(server.get(), "x", 1, MSG_NOSIGNAL) != 1) fail.set("send the probe byte", errno);
    ::pthread_join(thread, nullptr);

    out.ret = r.ret;
    out.err = r.err;
    out.reader_ms = r.ms;
    out.outcome = classify_wake(blocked, handled, r.ret, r.err, r.ms, kRcvTimeoutMs);
    return fail.step == nullptr;
    // client and server close here; closing removes them from the sockhash.
}

// Everything the child does between set-up and reporting; fills `report`.
void run_probes(bool control, ChildReport& report) {
    Failure fail;
    // A private sockhash: unpinned, no program, u32 keys and values (the
    // socket fd on update), room for both probes' pairs. It lives only as
    // long as this fd, i.e. this process.
    UniqueFd map;
    if (!control) {
        map.reset(bpf_map_create(BPF_MAP_TYPE_SOCKHASH, "sa_selftest", sizeof(std::uint32_t),
                                 sizeof(std::uint32_t), 4, nullptr));
        if (!map) fail.set("create a sockhash", errno);
    }
    if (fail.step == nullptr && run_wake(map.get(), 0, Wake::shutdown, report.wakes[0], fail))
        run_wake(map.get(), 1, Wake::signal, report.wakes[1], fail);
    if (fail.step != nullptr) {
        report.error = fail.err;
        std::snprintf(report.step, sizeof(report.step), "%s", fail.step);
    }
}

[[noreturn]] void child_main(int report_fd, pid_t parent, bool control) noexcept {
    // Die with the caller: a probe must never outlive the daemon. The
    // getppid() check closes the race of the parent dying before prctl().
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) ::_exit(2);

    // Inherited signal handlers belong to the caller (sockacceld's
    // io_context handles SIGTERM/SIGINT/SIGHUP through a pipe shared with
    // this child): put every handled signal back to its default, so a
    // signal sent to the child can never reach the daemon's handlers.
    // Ignored signals stay ignored. Then unblock everything, so the
    // probe's SIGUSR1 can reach the reader whatever mask we inherited.
    for (int sig = 1; sig < NSIG; ++sig) {
        struct sigaction old = {};
        if (::sigaction(sig, nullptr, &old) != 0) continue;  // invalid or reserved
        if (!(old.sa_flags & SA_SIGINFO) &&
            (old.sa_handler == SIG_DFL || old.sa_handler == SIG_IGN))
            continue;
        struct sigaction dfl = {};
        dfl.sa_handler = SIG_DFL;
        ::sigaction(sig, &dfl, nullptr);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);

    ChildReport report;
    report.magic = kReportMagic;
    struct sigaction sa = {};
    sa.sa_handler = on_probe_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (::sigaction(SIGUSR1, &sa, nullptr) != 0) {
        report.error = errno;
        std::snprintf(report.step, sizeof(report.step), "install the SIGUSR1 handler");
    } else {
        try {
            run_probes(control, report);
        } catch (...) {  // nothing in there throws; never let it escape a forked child
            report.error = EIO;
            std::snprintf(report.step, sizeof(report.step), "unexpected exception");
        }
    }
    // One atomic write; if it fails the parent sees no report: "unknown".
    (void)!::write(report_fd, &report, sizeof(report));
    ::_exit(0);
}

// ---- Parent side ---------------------------------------------------------

// Waits until the child behind `pidfd` has exited (the pidfd polls
// readable), at most `timeout`. Restarts after signals with the remaining
// time. Returns true if it exited, false on timeout; -errno on failure.
int wait_exit(int pidfd, std::chrono::milliseconds timeout) {
    const auto until = Clock::now() + timeout;
    for (;;) {
        const auto left =
            std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now()).count();
        struct pollfd p = {pidfd, POLLIN, 0};
        int n = ::poll(&p, 1, static_cast<int>(std::max<long long>(left, 0)));
        if (n > 0) return 1;
        if (n == 0) return 0;
        if (errno != EINTR) return -errno;
    }
}

// Reaps `pid`, which has exited. ECHILD (SIGCHLD ignored by the caller, so
// the kernel reaped it) leaves `status` at "unknown" (-1).
int reap(pid_t pid) {
    int status = 0;
    for (;;) {
        if (::waitpid(pid, &status, 0) == pid) return status;
        if (errno != EINTR) return -1;
    }
}

std::string exit_description(int status) {
    if (status == -1) return "ended (status not available)";
    if (WIFSIGNALED(status)) return fmt::format("was killed by signal {}", WTERMSIG(status));
    return fmt::format("exited with status {}", WEXITSTATUS(status));
}

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

const char* wake_name(int i) { return i == 0 ? "shutdown() wake" : "signal wake"; }

}  // namespace

Result<KernelIssueProbe> probe_blocking_read_eagain(const SelfTestOptions& options) {
    const auto t0 = Clock::now();

    // The report pipe. Non-blocking: the parent reads it only after the
    // child has exited, and must never wait on it.
    int p[2];
    if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0)
        return errno_error("kernel self-test: create a pipe");
    UniqueFd report_rd(p[0]);
    UniqueFd report_wr(p[1]);

    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) return errno_error("kernel self-test: fork");
    if (pid == 0) {
        report_rd.reset();
        child_main(report_wr.get(), parent, options.control);  // never returns
    }
    report_wr.reset();

    // A pidfd makes "child exited" pollable, so the wait below is one
    // poll() with a timeout rather than a waitpid(WNOHANG) loop. It cannot
    // name another process: the child is ours and not yet reaped.
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd) {
        const int err = errno;
        ::kill(pid, SIGKILL);
        reap(pid);
        return sys_error(err, "kernel self-test: pidfd_open");
    }

    int exited = wait_exit(pidfd.get(), options.deadline);
    if (exited < 0) {
        ::kill(pid, SIGKILL);
        reap(pid);
        return sys_error(-exited, "kernel self-test: wait for the probe process");
    }
    if (exited == 0) {
        // Stuck or far too slow: kill it; its map and sockets die with it.
        // kill() by pid is safe here: an unreaped child's pid cannot be reused.
        ::kill(pid, SIGKILL);
        KernelIssueProbe out;
        out.details = fmt::format("the probe did not finish within {} ms and was killed",
                                  options.deadline.count());
        if (wait_exit(pidfd.get(), std::chrono::milliseconds(kKillGraceMs)) == 1)
            reap(pid);
        else
            out.details += fmt::format(" (process {} did not die; left unreaped)", pid);
        out.elapsed_ms = ms_since(t0);
        return out;
    }
    const int status = reap(pid);

    ChildReport report;
    const ssize_t n = ::read(report_rd.get(), &report, sizeof(report));
    KernelIssueProbe out;
    out.elapsed_ms = ms_since(t0);
    if (n != static_cast<ssize_t>(sizeof(report)) || report.magic != kReportMagic) {
        out.details = "the probe process " + exit_description(status) + " without a verdict";
        return out;
    }
    if (report.error != 0) {
        report.step[sizeof(report.step) - 1] = '\0';
        return sys_error(report.error, std::string("kernel self-test: ") + report.step);
    }
    out.detected = combine_verdict(report.wakes[0], report.wakes[1]);
    out.details = describe_wakes(report.wakes[0], report.wakes[1]);
    return out;
}

nlohmann::json eagain_issue_json(std::optional<bool> detected) {
    return {
        {"id", "eagain_blocking_read"},
        {"detected", detected ? nlohmann::json(*detected) : nlohmann::json(nullptr)},
        {"summary",
         "A blocking recv() or read() on an accelerated socket can fail with EAGAIN when it is "
         "woken without data, instead of waiting."},
        {"affects",
         "Programs that do blocking reads after a half-close (shutdown(SHUT_WR)) or while "
         "receiving signals; programs using epoll or non-blocking sockets are unaffected."},
        {"doc", "docs/operations.md#known-kernel-issues"},
    };
}

WakeOutcome classify_wake(bool blocked, bool handled, std::int64_t ret, int err, double reader_ms,
                          double timeout_ms) {
    if (!blocked) return WakeOutcome::never_blocked;
    if (!handled) return WakeOutcome::wake_not_observed;
    if (ret == 1) return WakeOutcome::kept_waiting;
    if (ret < 0 && err == EAGAIN && reader_ms < 0.9 * timeout_ms) return WakeOutcome::eagain;
    return WakeOutcome::other;
}

std::optional<bool> combine_verdict(const WakeResult& shutdown_wake,
                                    const WakeResult& signal_wake) {
    if (shutdown_wake.outcome == WakeOutcome::eagain || signal_wake.outcome == WakeOutcome::eagain)
        return true;
    if (shutdown_wake.outcome == WakeOutcome::kept_waiting &&
        signal_wake.outcome == WakeOutcome::kept_waiting)
        return false;
    return std::nullopt;
}

std::string describe_wakes(const WakeResult& shutdown_wake, const WakeResult& signal_wake) {
    std::string out;
    const WakeResult* wakes[2] = {&shutdown_wake, &signal_wake};
    for (int i = 0; i < 2; ++i) {
        const WakeResult& w = *wakes[i];
        if (i) out += "; ";
        out += wake_name(i);
        out += ": ";
        switch (w.outcome) {
            case WakeOutcome::kept_waiting:
                out += "kept waiting";
                break;
            case WakeOutcome::eagain:
                out += fmt::format("EAGAIN after {:.1f} ms", w.reader_ms);
                break;
            case WakeOutcome::never_blocked:
                out += "inconclusive (the reader was never seen blocked in recv())";
                break;
            case WakeOutcome::wake_not_observed:
                out += "inconclusive (the reader was not seen handling the wakeup)";
                break;
            case WakeOutcome::other:
                out += w.ret < 0
                           ? fmt::format("inconclusive (recv() failed with {} after {:.1f} ms)",
                                         std::strerror(w.err), w.reader_ms)
                           : fmt::format("inconclusive (recv() returned {} after {:.1f} ms)", w.ret,
                                         w.reader_ms);
                break;
        }
    }
    return out;
}

std::optional<TaskStatus> parse_task_status(std::string_view text) {
    // Returns the value text of "\n<key>:\t<value>", up to the end of line.
    auto field = [text](std::string_view key) -> std::optional<std::string_view> {
        std::string needle = "\n" + std::string(key) + ":\t";
        auto pos = text.find(needle);
        if (pos == std::string_view::npos) return std::nullopt;
        auto value = text.substr(pos + needle.size());
        return value.substr(0, value.find('\n'));
    };
    auto state = field("State");
    auto switches = field("voluntary_ctxt_switches");
    if (!state || state->empty() || !switches) return std::nullopt;
    TaskStatus out;
    out.state = state->front();
    auto [end, ec] = std::from_chars(switches->data(), switches->data() + switches->size(),
                                     out.voluntary_switches);
    if (ec != std::errc() || end == switches->data()) return std::nullopt;
    return out;
}

}  // namespace sockaccel
