// SPDX-License-Identifier: Apache-2.0
//
// sockaccel-bench: the load tool behind bench/run. It measures what sockaccel changes for one
// pair of local sockets (round-trip latency, one-way throughput) and what it costs per
// connection (connect/accept/close rate), and prints one JSON line per run. A fourth mode,
// hold, keeps many idle connections open so the control plane can be timed against a full map.
//
// rr, stream and connrate fork: the server is the child, the client the parent, so the two ends
// are two processes as in real deployments, and both can be moved into the cgroup sockacceld
// watches.
// Byte counts are always checked against the other side; any mismatch or error exits 1, so a
// benchmark number is never reported for a run that lost or reordered data.

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

[[noreturn]] void fail_errno(const std::string& what)
{
    throw Error(what + ": " + std::strerror(errno));
}

struct Options {
    std::string transport = "tcp";
    std::size_t size = 64;
    double seconds = 3.0;
    std::string cgroup;
    int cpu = -1;
    unsigned parallel = 1;
    std::size_t connections = 5000;
    std::size_t read_size = 256 * 1024;
    bool exchange = false;
    bool check_data = false;
};

// Writing our own pid (not relying on inheritance) keeps the rule simple: whichever process
// creates a socket is in the cgroup at that moment, which is what the sockops program sees.
void join_cgroup(const std::string& dir)
{
    if (dir.empty())
        return;
    std::ofstream procs(dir + "/cgroup.procs");
    procs << getpid() << '\n';
    procs.flush();
    if (!procs)
        throw Error("cannot join cgroup " + dir + " (need root and a cgroup v2 directory)");
}

// Same-core and cross-core round trips differ by ~4x on small VMs (kernel-facts), so the
// caller must be able to pin both ends to make runs comparable.
void pin_cpu(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        fail_errno("sched_setaffinity");
}

class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    Fd& operator=(Fd&& o) noexcept
    {
        if (this != &o) {
            reset();
            fd_ = std::exchange(o.fd_, -1);
        }
        return *this;
    }
    ~Fd() { reset(); }
    int get() const { return fd_; }
    void reset()
    {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = -1;
    }

private:
    int fd_ = -1;
};

// A blocking read on an accelerated socket can return EAGAIN after a wakeup that brought no
// data (kernel bug, kernel-facts fact 3). That is not data loss, so we wait and retry, but
// count it so the report shows whether the run hit it.
// Every data socket is non-blocking, as in the event-loop servers sockaccel
// accelerates (it keeps blocking sockets on TCP: a blocking read of a socket
// in a sockhash can fail with EAGAIN). So EAGAIN is the normal "wait for
// poll" here, and eagain_retries stays 0: it counts what a blocking socket
// would have seen, which none is.
std::atomic<std::uint64_t> g_eagain{0};

void wait_readable(int fd)
{
    pollfd p{fd, POLLIN, 0};
    while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
}

// Reads exactly len bytes. Returns false on EOF before the first byte (a clean end at a
// message boundary); EOF in the middle of a message is truncation and throws.
bool read_full(int fd, void* buf, std::size_t len)
{
    auto* p = static_cast<char*>(buf);
    std::size_t got = 0;
    while (got < len) {
        const ssize_t n = ::read(fd, p + got, len - got);
        if (n > 0) {
            got += static_cast<std::size_t>(n);
        } else if (n == 0) {
            if (got == 0)
                return false;
            throw Error("EOF after " + std::to_string(got) + " of " + std::to_string(len) +
                        " bytes of a message");
        } else if (errno == EINTR) {
        } else if (errno == EAGAIN) {
            wait_readable(fd);
        } else {
            fail_errno("read");
        }
    }
    return true;
}

// Returns the number of write() calls that took less than asked; a redirect that cannot
// charge the receiver's memory returns a short count instead of blocking (fact 4).
std::uint64_t write_full(int fd, const void* buf, std::size_t len)
{
    const auto* p = static_cast<const char*>(buf);
    std::size_t done = 0;
    std::uint64_t short_writes = 0;
    while (done < len) {
        const ssize_t n = ::write(fd, p + done, len - done);
        if (n > 0) {
            done += static_cast<std::size_t>(n);
            if (done < len)
                ++short_writes;
        } else if (n < 0 && errno == EINTR) {
        } else if (n < 0 && errno == EAGAIN) {
            pollfd pfd{fd, POLLOUT, 0};
            ::poll(&pfd, 1, -1);
        } else {
            fail_errno("write");
        }
    }
    return short_writes;
}

Fd tcp_listener(int backlog)
{
    Fd l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (l.get() < 0)
        fail_errno("socket");
    const int one = 1;
    ::setsockopt(l.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;  // an ephemeral port never collides with another engineer's servers
    if (::bind(l.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
        fail_errno("bind 127.0.0.1");
    if (::listen(l.get(), backlog) != 0)
        fail_errno("listen");
    return l;
}

sockaddr_in local_addr(int fd)
{
    sockaddr_in a{};
    socklen_t len = sizeof a;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
        fail_errno("getsockname");
    return a;
}

void set_nodelay(int fd)
{
    const int one = 1;
    if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        fail_errno("TCP_NODELAY");
}

Fd tcp_connect(const sockaddr_in& to)
{
    Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (s.get() < 0)
        fail_errno("socket");
    if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
        if (errno != EINPROGRESS)
            fail_errno("connect 127.0.0.1");
        pollfd p{s.get(), POLLOUT, 0};
        while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
        }
        int err = 0;
        socklen_t len = sizeof err;
        if (::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            errno = err;
            fail_errno("connect 127.0.0.1");
        }
    }
    return s;
}

// What the server child tells the parent when it is done; sent over a pipe so the parent can
// compare it with its own counts.
struct ChildReport {
    std::uint64_t ok = 0;
    std::uint64_t count = 0;  // messages echoed, bytes received or connections accepted
    std::uint64_t bytes = 0;
    std::uint64_t eagain = 0;
    char error[200] = {};
};

void send_report(int fd, const ChildReport& r)
{
    if (::write(fd, &r, sizeof r) != static_cast<ssize_t>(sizeof r))
        _exit(3);
}

ChildReport receive_report(int fd, pid_t child)
{
    ChildReport r;
    std::size_t got = 0;
    while (got < sizeof r) {
        const ssize_t n = ::read(fd, reinterpret_cast<char*>(&r) + got, sizeof r - got);
        if (n > 0)
            got += static_cast<std::size_t>(n);
        else if (n < 0 && errno == EINTR)
            continue;
        else
            break;
    }
    int status = 0;
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    if (got != sizeof r)
        throw Error("server child gave no report (exit status " + std::to_string(status) + ")");
    if (!r.ok)
        throw Error(std::string("server child: ") + r.error);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        throw Error("server child exited abnormally (status " + std::to_string(status) + ")");
    return r;
}

// Runs body in a forked child with the report pipe's write end; turns exceptions into a
// failed report so the parent always learns why. The child never returns into main().
template <typename Body>
pid_t fork_server(int report_fd, Body&& body)
{
    const pid_t pid = ::fork();
    if (pid < 0)
        fail_errno("fork");
    if (pid > 0)
        return pid;
    ChildReport r;
    try {
        body(r);
        r.ok = 1;
    } catch (const std::exception& e) {
        std::snprintf(r.error, sizeof r.error, "%s", e.what());
    }
    r.eagain += g_eagain.load();
    send_report(report_fd, r);
    _exit(r.ok ? 0 : 1);
}

struct Pipe {
    Fd r, w;
    Pipe()
    {
        int p[2];
        if (::pipe2(p, O_CLOEXEC) != 0)
            fail_errno("pipe");
        r = Fd(p[0]);
        w = Fd(p[1]);
    }
};

// A connected pair for rr/stream: the server end lives in the child. For TCP the listener is
// created in the parent after it joined the cgroup, because an accepted socket takes its
// cgroup from the listener.
struct Pair {
    Fd client;
    Fd server_side;  // AF_UNIX: the child's end; TCP: the listener
};

Pair make_pair(const Options& o)
{
    Pair p;
    if (o.transport == "unix") {
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
            fail_errno("socketpair");
        p.client = Fd(sv[0]);
        p.server_side = Fd(sv[1]);
    } else {
        p.server_side = tcp_listener(16);
    }
    return p;
}

// In the child: the connected server socket.
Fd server_socket(const Options& o, Fd& server_side)
{
    if (o.transport == "unix")
        return std::move(server_side);
    wait_readable(server_side.get());
    const int s = ::accept4(server_side.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (s < 0)
        fail_errno("accept");
    server_side.reset();
    Fd fd(s);
    set_nodelay(fd.get());
    return fd;
}

// The server side of a Pair in a forked child: it joins the cgroup, keeps only its own
// ends, and runs body(socket, report) on the connected socket.
template <typename Body>
pid_t fork_pair_server(const Options& o, Pair& p, Pipe& report, Body&& body)
{
    const pid_t child = fork_server(report.w.get(), [&](ChildReport& r) {
        join_cgroup(o.cgroup);
        report.r.reset();
        p.client.reset();
        Fd s = server_socket(o, p.server_side);
        body(s.get(), r);
    });
    report.w.reset();
    return child;
}

// From a catch block of the parent: kills and reaps the server child, then rethrows.
[[noreturn]] void abandon(pid_t child)
{
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    throw;
}

// In the parent: the connected client socket.
Fd client_socket(const Options& o, Pair& p)
{
    if (o.transport == "unix") {
        p.server_side.reset();
        return std::move(p.client);
    }
    const sockaddr_in to = local_addr(p.server_side.get());
    p.server_side.reset();
    Fd fd = tcp_connect(to);
    set_nodelay(fd.get());
    return fd;
}

double seconds_since(Clock::time_point t0)
{
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Sequence numbers at both ends of each message make a reordered or mixed-up message fail
// the run (the ordering hazard of fact 2), at a cost independent of the message size.
void stamp(std::vector<char>& buf, std::uint64_t seq)
{
    const std::size_t k = std::min<std::size_t>(sizeof seq, buf.size());
    std::memcpy(buf.data(), &seq, k);
    std::memcpy(buf.data() + buf.size() - k, &seq, k);
}

bool stamped(const std::vector<char>& buf, std::uint64_t seq)
{
    const std::size_t k = std::min<std::size_t>(sizeof seq, buf.size());
    return std::memcmp(buf.data(), &seq, k) == 0 &&
           std::memcmp(buf.data() + buf.size() - k, &seq, k) == 0;
}

double percentile(const std::vector<double>& sorted, double q)
{
    if (sorted.empty())
        return 0;
    const std::size_t i = std::min(sorted.size() - 1,
                                   static_cast<std::size_t>(q * static_cast<double>(sorted.size())));
    return sorted[i];
}

nlohmann::json run_rr(const Options& o)
{
    Pair p = make_pair(o);
    Pipe report;
    const pid_t child = fork_pair_server(o, p, report, [&](int s, ChildReport& r) {
        std::vector<char> buf(o.size);
        while (read_full(s, buf.data(), buf.size())) {
            write_full(s, buf.data(), buf.size());
            ++r.count;
            r.bytes += 2 * buf.size();
        }
    });

    std::uint64_t trips = 0;
    std::vector<double> lat_us;
    lat_us.reserve(1 << 20);
    double elapsed = 0;
    try {
        Fd c = client_socket(o, p);
        std::vector<char> out(o.size), in(o.size);
        const auto t0 = Clock::now();
        const auto deadline = t0 + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(o.seconds));
        for (auto now = t0; now < deadline;) {
            stamp(out, trips);
            write_full(c.get(), out.data(), out.size());
            if (!read_full(c.get(), in.data(), in.size()))
                throw Error("server closed the connection");
            if (!stamped(in, trips))
                throw Error("round trip " + std::to_string(trips) + " came back with wrong data");
            const auto t = Clock::now();
            lat_us.push_back(std::chrono::duration<double, std::micro>(t - now).count());
            now = t;
            ++trips;
        }
        elapsed = seconds_since(t0);
        ::shutdown(c.get(), SHUT_WR);
    } catch (...) {
        abandon(child);
    }
    const ChildReport r = receive_report(report.r.get(), child);
    if (r.count != trips)
        throw Error("server echoed " + std::to_string(r.count) + " messages, client completed " +
                    std::to_string(trips));
    if (trips == 0)
        throw Error("no round trip completed");

    std::sort(lat_us.begin(), lat_us.end());
    const double mean = std::accumulate(lat_us.begin(), lat_us.end(), 0.0) / lat_us.size();
    return {{"mode", "rr"},
            {"transport", o.transport},
            {"size", o.size},
            {"seconds", elapsed},
            {"round_trips", trips},
            {"round_trips_per_s", trips / elapsed},
            {"latency_us",
             {{"p50", percentile(lat_us, 0.50)},
              {"p99", percentile(lat_us, 0.99)},
              {"mean", mean},
              {"min", lat_us.front()},
              {"max", lat_us.back()}}},
            {"bytes_verified", r.bytes},
            {"eagain_retries", g_eagain.load() + r.eagain}};
}

// Cheap position-dependent pattern: a byte that arrives at the wrong offset is caught.
inline char pattern_at(std::uint64_t off)
{
    return static_cast<char>((off * 131 + (off >> 12)) & 0xff);
}

nlohmann::json run_stream(const Options& o)
{
    Pair p = make_pair(o);
    Pipe report;
    const pid_t child = fork_pair_server(o, p, report, [&](int s, ChildReport& r) {
        // The default, a large read buffer, lets plain TCP hand over many small writes at
        // once; the receiver must not be the bottleneck of a sender-side comparison. Smaller
        // reads stay in the CPU cache and are faster for both paths at 64 KiB writes.
        std::vector<char> buf(o.read_size);
        for (;;) {
            const ssize_t n = ::read(s, buf.data(), buf.size());
            if (n > 0) {
                if (o.check_data) {
                    for (ssize_t i = 0; i < n; ++i)
                        if (buf[i] != pattern_at(r.bytes + i))
                            throw Error("wrong byte at offset " + std::to_string(r.bytes + i));
                }
                r.bytes += static_cast<std::uint64_t>(n);
                ++r.count;
            } else if (n == 0) {
                break;
            } else if (errno == EINTR) {
            } else if (errno == EAGAIN) {
                wait_readable(s);
            } else {
                fail_errno("read");
            }
        }
    });

    std::uint64_t sent = 0, writes = 0, short_writes = 0;
    Clock::time_point t0;
    try {
        Fd c = client_socket(o, p);
        // With --check-data the sender fills each write with the pattern for its offset; the
        // cost lands on both ends, so such runs are for correctness, not for numbers.
        std::vector<char> out(o.size, 'x');
        t0 = Clock::now();
        const auto deadline = t0 + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(o.seconds));
        while (Clock::now() < deadline) {
            // Check the clock every 64 writes only: at 64 B a clock read per write would be a
            // visible part of the cost being measured.
            for (int i = 0; i < 64; ++i) {
                if (o.check_data)
                    for (std::size_t j = 0; j < o.size; ++j)
                        out[j] = pattern_at(sent + j);
                const char* src = out.data();
                short_writes += write_full(c.get(), src, o.size);
                sent += o.size;
                ++writes;
            }
        }
        ::shutdown(c.get(), SHUT_WR);
    } catch (...) {
        abandon(child);
    }
    // The run ends when the receiver has seen EOF, i.e. has read every byte, not when the
    // last write returned: otherwise socket buffers would count as delivered.
    const ChildReport r = receive_report(report.r.get(), child);
    const double elapsed = seconds_since(t0);
    if (r.bytes != sent)
        throw Error("receiver got " + std::to_string(r.bytes) + " bytes, sender wrote " +
                    std::to_string(sent));
    return {{"mode", "stream"},
            {"transport", o.transport},
            {"size", o.size},
            {"seconds", elapsed},
            {"bytes", sent},
            {"writes", writes},
            {"short_writes", short_writes},
            {"reads", r.count},
            {"read_size", o.read_size},
            {"gbytes_per_s", sent / elapsed / 1e9},
            {"writes_per_s", writes / elapsed},
            {"data_checked", o.check_data},
            {"eagain_retries", g_eagain.load() + r.eagain}};
}

nlohmann::json run_connrate(const Options& o)
{
    Fd listener = tcp_listener(4096);
    const sockaddr_in to = local_addr(listener.get());
    Pipe report, control;
    const pid_t child = fork_server(report.w.get(), [&](ChildReport& r) {
        join_cgroup(o.cgroup);
        report.r.reset();
        control.w.reset();
        if (::fcntl(listener.get(), F_SETFL, O_NONBLOCK) != 0)
            fail_errno("fcntl");
        // The parent sends the number of connections it completed; a completed connect may
        // still sit in the accept queue, so keep accepting until that many arrived.
        std::optional<std::uint64_t> expected;
        Clock::time_point give_up{};
        char one = 'a';
        while (!expected || r.count < *expected) {
            pollfd pfd[2] = {{listener.get(), POLLIN, 0}, {control.r.get(), POLLIN, 0}};
            const int n = ::poll(pfd, expected ? 1 : 2, 1000);
            if (n < 0 && errno != EINTR)
                fail_errno("poll");
            if (!expected && (pfd[1].revents & (POLLIN | POLLHUP))) {
                std::uint64_t v = 0;
                if (::read(control.r.get(), &v, sizeof v) != sizeof v)
                    throw Error("client went away without a count");
                expected = v;
                give_up = Clock::now() + std::chrono::seconds(10);
            }
            for (;;) {
                const int s =
                    ::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (s < 0) {
                    if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                        break;
                    fail_errno("accept");
                }
                if (o.exchange && ::write(s, &one, 1) != 1) {
                    const int e = errno;
                    ::close(s);
                    errno = e;
                    fail_errno("write");
                }
                ::close(s);
                ++r.count;
            }
            if (expected && r.count < *expected && Clock::now() > give_up)
                throw Error("accepted " + std::to_string(r.count) + " of " +
                            std::to_string(*expected) + " connections");
        }
    });
    report.w.reset();
    control.r.reset();
    listener.reset();

    std::atomic<std::uint64_t> total{0};
    std::atomic<bool> failed{false};
    std::string first_error;
    std::mutex err_mu;
    const auto t0 = Clock::now();
    const auto deadline =
        t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds));
    std::vector<std::thread> workers;
    for (unsigned w = 0; w < o.parallel; ++w) {
        workers.emplace_back([&] {
            std::uint64_t mine = 0;
            try {
                char b = 0;
                while (!failed.load(std::memory_order_relaxed) && Clock::now() < deadline) {
                    Fd s = tcp_connect(to);
                    if (o.exchange && !read_full(s.get(), &b, 1))
                        throw Error("server closed before its byte");
                    ++mine;
                }
            } catch (const std::exception& e) {
                std::lock_guard lock(err_mu);
                if (first_error.empty())
                    first_error = e.what();
                failed = true;
            }
            total += mine;
        });
    }
    for (auto& t : workers)
        t.join();
    const double elapsed = seconds_since(t0);
    const std::uint64_t n = total.load();
    if (::write(control.w.get(), &n, sizeof n) != sizeof n) {
        ::kill(child, SIGKILL);
        ::waitpid(child, nullptr, 0);
        fail_errno("write to server child");
    }
    const ChildReport r = receive_report(report.r.get(), child);
    if (failed)
        throw Error(first_error);
    if (r.count != n)
        throw Error("server accepted " + std::to_string(r.count) + ", client connected " +
                    std::to_string(n));
    return {{"mode", "connrate"},
            {"transport", "tcp"},
            {"parallel", o.parallel},
            {"exchange", o.exchange},
            {"seconds", elapsed},
            {"connections", n},
            {"connections_per_s", n / elapsed},
            {"eagain_retries", g_eagain.load() + r.eagain}};
}

// Both ends of a connection are descriptors of the holding process. Without
// CAP_SYS_RESOURCE (containers often drop it) a process cannot go above its hard limit, so
// hold spreads the connections over as many processes as that limit requires.
std::size_t connections_per_process()
{
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0)
        fail_errno("getrlimit");
    if (lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &lim) != 0)
            fail_errno("setrlimit RLIMIT_NOFILE");
    }
    // 64 descriptors of headroom for stdio, pipes and the listener. Loopback connections to
    // one listener also share the ephemeral port range (about 28k ports by default).
    const rlim_t usable = lim.rlim_cur > 128 ? (lim.rlim_cur - 64) / 2 : 32;
    return static_cast<std::size_t>(std::min<rlim_t>(usable, 16384));
}

// Sends one byte each way over every connection and checks its value: a connection that a
// flush (or anything else) broke, or a byte lost on the way, fails the run.
void exchange_all(const std::vector<Fd>& clients, const std::vector<Fd>& servers, char tag)
{
    for (std::size_t i = 0; i < clients.size(); ++i) {
        const char out[2] = {tag, static_cast<char>(tag + 1)};
        char in = 0;
        write_full(clients[i].get(), &out[0], 1);
        if (!read_full(servers[i].get(), &in, 1) || in != out[0])
            throw Error("connection " + std::to_string(i) + ": request byte lost or wrong");
        write_full(servers[i].get(), &out[1], 1);
        if (!read_full(clients[i].get(), &in, 1) || in != out[1])
            throw Error("connection " + std::to_string(i) + ": reply byte lost or wrong");
    }
}

// One holding process: opens n connections (both ends its own), checks them, says so on
// ready (and closes it, so the parent sees EOF rather than waiting forever if a sibling
// died), waits for EOF on go_fd, and checks them all again.
void hold_worker(std::size_t n, Fd& ready, int go_fd, ChildReport& r)
{
    Fd listener = tcp_listener(1024);
    const sockaddr_in to = local_addr(listener.get());
    std::vector<Fd> clients, servers;
    clients.reserve(n);
    servers.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        clients.push_back(tcp_connect(to));
        const int s = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (s < 0)
            fail_errno("accept");
        servers.emplace_back(s);
    }
    listener.reset();
    exchange_all(clients, servers, 'a');
    const char ok = 'r';
    if (::write(ready.get(), &ok, 1) != 1)
        fail_errno("write ready");
    ready.reset();
    char c;
    while (::read(go_fd, &c, 1) < 0 && errno == EINTR) {
    }
    exchange_all(clients, servers, 'x');
    r.count = n;
}

// hold: keeps o.connections idle TCP connections open (2 sockets each in sockacceld's map),
// each checked with a byte each way; prints a "ready" JSON line and waits for a line (or EOF)
// on stdin. Meanwhile the caller times status and flush-map against the full map. Then every
// connection must still carry a byte each way, over whichever path the flush left it on.
nlohmann::json run_hold(const Options& o)
{
    const std::size_t per = connections_per_process();
    Pipe ready, go;
    struct Worker {
        pid_t pid;
        Fd report;
    };
    std::vector<Worker> workers;
    auto reap_all = [&workers] {
        for (auto& w : workers) {
            ::kill(w.pid, SIGKILL);
            ::waitpid(w.pid, nullptr, 0);
        }
    };
    const auto t0 = Clock::now();
    try {
        for (std::size_t left = o.connections; left > 0;) {
            const std::size_t n = std::min(left, per);
            left -= n;
            Pipe report;
            const pid_t pid = fork_server(report.w.get(), [&](ChildReport& r) {
                ready.r.reset();
                go.w.reset();
                hold_worker(n, ready.w, go.r.get(), r);
            });
            workers.push_back({pid, std::move(report.r)});
        }
        ready.w.reset();
        go.r.reset();
        for (std::size_t i = 0; i < workers.size(); ++i) {
            char c;
            if (!read_full(ready.r.get(), &c, 1))
                break;  // a worker failed; its report says why
        }
    } catch (...) {
        reap_all();
        throw;
    }
    const double open_s = seconds_since(t0);
    std::printf("%s\n", nlohmann::json{{"mode", "hold"},
                                       {"state", "ready"},
                                       {"connections", o.connections},
                                       {"processes", workers.size()},
                                       {"open_seconds", open_s}}
                            .dump()
                            .c_str());
    std::fflush(stdout);
    std::string line;
    std::getline(std::cin, line);

    const auto t1 = Clock::now();
    go.w.reset();  // EOF: every worker checks its connections again
    std::uint64_t checked = 0, eagain = 0;
    std::string error;
    for (auto& w : workers) {
        try {
            const ChildReport r = receive_report(w.report.get(), w.pid);
            checked += r.count;
            eagain += r.eagain;
        } catch (const std::exception& e) {
            if (error.empty())
                error = e.what();
        }
    }
    if (!error.empty())
        throw Error(error);
    if (checked != o.connections)
        throw Error("checked " + std::to_string(checked) + " of " +
                    std::to_string(o.connections) + " connections");
    return {{"mode", "hold"},
            {"state", "done"},
            {"connections", o.connections},
            {"processes", workers.size()},
            {"open_seconds", open_s},
            {"verify_seconds", seconds_since(t1)},
            {"eagain_retries", eagain}};
}

}  // namespace

int main(int argc, char** argv)
{
    CLI::App app{"sockaccel-bench: same-host socket load tool for bench/run (one JSON line per run)"};
    app.require_subcommand(1);
    Options o;

    auto common = [&o](CLI::App* sub) {
        sub->add_option("--seconds", o.seconds, "How long to run")
            ->check(CLI::Range(0.05, 3600.0))
            ->capture_default_str();
        sub->add_option("--cgroup", o.cgroup,
                        "cgroup v2 directory both processes join before creating sockets");
        sub->add_option("--cpu", o.cpu, "Pin both processes to this CPU (-1: no pinning)")
            ->capture_default_str();
    };
    auto pair_opts = [&o, &common](CLI::App* sub) {
        sub->add_option("--transport", o.transport, "tcp (127.0.0.1) or unix")
            ->check(CLI::IsMember({"tcp", "unix"}))
            ->capture_default_str();
        sub->add_option("--size", o.size, "Bytes per message / write")
            ->check(CLI::Range(std::size_t{1}, std::size_t{64} << 20))
            ->capture_default_str();
        common(sub);
    };

    auto* rr = app.add_subcommand("rr", "Ping-pong of --size byte messages; latency and round trips/s");
    pair_opts(rr);
    auto* stream = app.add_subcommand("stream", "One-way bulk send of --size byte writes; GB/s");
    pair_opts(stream);
    stream->add_flag("--check-data", o.check_data, "Also verify every byte's value (costs CPU)");
    stream->add_option("--read-size", o.read_size, "Receiver's read() buffer in bytes")
        ->check(CLI::Range(std::size_t{1}, std::size_t{64} << 20))
        ->capture_default_str();
    auto* connrate = app.add_subcommand("connrate", "TCP connect/accept/close per second");
    common(connrate);
    connrate->add_option("--parallel", o.parallel, "Concurrent connecting threads")
        ->check(CLI::Range(1u, 256u))
        ->capture_default_str();
    connrate->add_flag("--exchange", o.exchange,
                       "The server sends one byte the client must read before closing");
    auto* hold = app.add_subcommand(
        "hold", "Open --connections idle TCP connections, print a ready line, wait for a line on "
                "stdin, then check every connection still works");
    hold->add_option("--cgroup", o.cgroup,
                     "cgroup v2 directory to join before creating sockets");
    hold->add_option("--connections", o.connections, "TCP connections (2 sockets each)")
        ->check(CLI::Range(std::size_t{1}, std::size_t{500000}))
        ->capture_default_str();

    CLI11_PARSE(app, argc, argv);

    // A peer that dies must surface as an error from write(), not kill us silently.
    ::signal(SIGPIPE, SIG_IGN);
    try {
        join_cgroup(o.cgroup);
        pin_cpu(o.cpu);
        nlohmann::json result;
        if (*rr)
            result = run_rr(o);
        else if (*stream)
            result = run_stream(o);
        else if (*connrate)
            result = run_connrate(o);
        else
            result = run_hold(o);
        if (o.cpu >= 0)
            result["cpu"] = o.cpu;
        result["cgroup"] = o.cgroup;
        std::printf("%s\n", result.dump().c_str());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sockaccel-bench: %s\n", e.what());
        return 1;
    }
}
