// SPDX-License-Identifier: Apache-2.0
//
// The half-close mitigation of the blocking-read EAGAIN kernel issue
// (docs/operations.md, "Known kernel issues"; the gate in
// bpf/sockaccel.bpf.c): a client that sends its request, shuts down its
// write side and then waits in a blocking recv() for the answer must get the
// answer, not EAGAIN, and every byte of it.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "harness.h"

using namespace sockaccel;
using namespace sockaccel::test;
using nlohmann::json;

namespace {

struct HalfCloseResult {
    int runs = 0;
    int answered = 0;  // the whole answer arrived, byte for byte, then EOF
    int eagain = 0;    // the blocking recv() failed with EAGAIN
    int other = 0;     // anything else (short answer, other error)
};

constexpr std::size_t kRequest = 300;
constexpr std::size_t kAnswer = 5000;

std::uint8_t byte_at(std::size_t i) { return static_cast<std::uint8_t>(i * 7 + 3); }

// One connection: the client sends a request (and, with `early_reply`, the
// server first answers a hello, so the server has redirected into the client
// before its FIN), shuts down its write side, then reads the answer that the
// server sends 50 ms after the request's EOF with blocking recv() calls.
// Returns 0 answered, 1 EAGAIN, 2 other.
int one_run(bool early_reply) {
    int ls = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (ls < 0 || ::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(ls, 1) != 0 ||
        ::getsockname(ls, reinterpret_cast<sockaddr*>(&a), &len) != 0)
        return 2;
    // Connected and accepted non-blocking, then blocking I/O (the usual
    // connect-with-a-timeout pattern), so both ends are in the sockhash
    // and sockaccel's reader checks see the switch. With `early_reply`
    // the client only switches once it has the hello, so the hello is
    // redirected into it.
    int c = connect_nonblocking(ls);
    int s = accept_nonblocking(ls);
    ::close(ls);
    if (c < 0 || s < 0) return 2;
    auto set_blocking = [](int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK); };
    set_blocking(s);
    if (!early_reply) set_blocking(c);

    std::thread server([s, early_reply] {
        std::uint8_t buf[4096];
        if (early_reply) {
            const char hello[] = "hello";
            (void)::send(s, hello, sizeof hello, MSG_NOSIGNAL);
        }
        while (::recv(s, buf, sizeof buf, 0) > 0) {
        }  // the request, up to the client's FIN
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        std::uint8_t answer[kAnswer];
        for (std::size_t i = 0; i < kAnswer; ++i) answer[i] = byte_at(i);
        (void)::send(s, answer, kAnswer, MSG_NOSIGNAL);
        ::close(s);
    });

    std::uint8_t req[kRequest] = {};
    int outcome = 2;
    if (early_reply || ::send(c, req, sizeof req, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof req)) {
        std::uint8_t hello[6];
        bool ok = true;
        if (early_reply) {
            ok = read_exact_nonblocking(c, hello, sizeof hello);
            set_blocking(c);
            ok = ok && ::send(c, req, sizeof req, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof req);
        }
        ::shutdown(c, SHUT_WR);
        std::size_t got = 0;
        while (ok) {
            std::uint8_t buf[8192];
            ssize_t r = ::recv(c, buf, sizeof buf, 0);
            if (r < 0 && errno == EAGAIN) {
                outcome = 1;
                break;
            }
            if (r < 0) break;
            if (r == 0) {
                outcome = got == kAnswer ? 0 : 2;
                break;
            }
            for (ssize_t i = 0; i < r; ++i)
                if (buf[i] != byte_at(got + static_cast<std::size_t>(i))) ok = false;
            got += static_cast<std::size_t>(r);
        }
    }
    server.join();
    ::close(c);
    return outcome;
}

// Runs `runs` connections in a child process that joined `cgroup` (so the
// daemon's programs see them) and returns the tally.
HalfCloseResult run_in_cgroup(const std::string& cgroup, int runs, bool early_reply) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t parent = ::getpid();
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(3);
        ::close(fds[0]);
        {
            std::ofstream procs(cgroup + "/cgroup.procs");
            procs << ::getpid() << std::flush;
            if (!procs) ::_exit(3);
        }
        int tally[3] = {0, 0, 0};
        for (int i = 0; i < runs; ++i) ++tally[one_run(early_reply)];
        (void)!::write(fds[1], tally, sizeof tally);
        ::_exit(0);
    }
    ::close(fds[1]);
    int tally[3] = {0, 0, 0};
    const bool read_ok = ::read(fds[0], tally, sizeof tally) == sizeof tally;
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    REQUIRE(read_ok);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    return {runs, tally[0], tally[1], tally[2]};
}

std::uint64_t counter(ControlClient& ctl, const char* name) {
    return result(ctl.request("stats"))["counters"][name].get<std::uint64_t>();
}

}  // namespace

TEST_CASE("half-close: shutdown then a blocking read gets the answer, not EAGAIN") {
    TestCgroup cg("halfclose");
    TestPinDir pins("halfclose");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());
    // The kernel has the issue (the self-test), so without the gate this
    // pattern fails in most runs (docs/research/eagain: 50 of 50).
    const auto issues = result(ctl.request("status"))["kernel_issues"];
    REQUIRE(issues.size() == 1);
    CHECK(issues[0]["detected"] == true);

    constexpr int kRuns = 40;
    const auto removed = counter(ctl, "fin_removed");
    const auto r = run_in_cgroup(cg.path(), kRuns, /*early_reply=*/false);
    INFO("answered " << r.answered << ", EAGAIN " << r.eagain << ", other " << r.other);
    CHECK(r.answered == kRuns);
    CHECK(r.eagain == 0);
    // Each client left the map at its FIN; the answer went through TCP.
    CHECK(counter(ctl, "fin_removed") - removed >= static_cast<std::uint64_t>(kRuns));
    std::fprintf(stderr, "half-close: %d of %d answered, %d EAGAIN, fin_removed +%llu\n",
                 r.answered, kRuns, r.eagain,
                 (unsigned long long)(counter(ctl, "fin_removed") - removed));
    CHECK(result(ctl.request("status"))["map"]["entries"] == 0);
    CHECK(daemon.stop() == 0);
}

TEST_CASE("half-close: a socket its peer has redirected into stays, and loses nothing") {
    TestCgroup cg("halfkept");
    TestPinDir pins("halfkept");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());
    // The server says hello first (redirected into the client), so the
    // client's FIN cannot prove its queue empty: it must stay in the map.
    // The gate does not help this pattern; EAGAIN may occur (it is the
    // kernel issue), but no byte may be lost or changed.
    constexpr int kRuns = 20;
    const auto kept = counter(ctl, "fin_kept");
    const auto r = run_in_cgroup(cg.path(), kRuns, /*early_reply=*/true);
    INFO("answered " << r.answered << ", EAGAIN " << r.eagain << ", other " << r.other);
    CHECK(r.other == 0);
    CHECK(r.answered + r.eagain == kRuns);
    CHECK(counter(ctl, "fin_kept") - kept >= static_cast<std::uint64_t>(kRuns));
    std::fprintf(stderr, "half-close after a redirect: %d answered, %d EAGAIN of %d (kept)\n",
                 r.answered, r.eagain, kRuns);
    CHECK(daemon.stop() == 0);
}
