// SPDX-License-Identifier: Apache-2.0
//
// sockaccel-compat: a socket-API compatibility matrix for same-host TCP.
//
//   --list                      case names, one per line
//   --case NAME [--cgroup DIR]  run one case, print one JSON line
//   --all [--cgroup DIR]        run every case in order, one JSON line each
//   --establish blocking|nonblocking|nonblocking-io   how pairs are set up and used (below)
//
// Each case makes a fresh loopback TCP pair (listener on 127.0.0.1 port 0, connect, accept),
// exercises one socket behaviour and reports what it observed as an OUTCOME string:
// {"case":NAME,"outcome":"...","client_port":N,"server_port":N}.
//
// The contract: an outcome is deterministic. The tests run every case once on plain TCP and
// once inside a cgroup that sockaccel accelerates, and require the two outcome strings to be
// equal, so an outcome never contains timings, buffer-dependent byte counts or event counts
// that depend on scheduling: only data checksums, return values, errno names, readiness masks
// and option values that plain loopback TCP gives the same way on every run, also under load.
// Where readiness is checked, the writer's data is given generous time (tens of ms) to land.
// A case the kernel cannot run prints "unsupported: <reason>".
//
// sockaccel decides about a socket when its connection becomes established (and checks the
// accepted side's reader at the first send into it), so every case creates the pair first,
// then configures it, then exchanges data (PairOptions can set options before listen/connect
// where a case needs that). sockaccel keeps blocking sockets on TCP (it checks the reader's
// O_NONBLOCK at every send), so the three --establish modes accelerate different programs:
//   blocking        blocking connect/accept, blocking I/O: stays on TCP under sockaccel.
//   nonblocking     non-blocking connect/accept and one byte client to server, then both fds
//                   made blocking for the case ("connect with a timeout, then blocking I/O"):
//                   the set-up byte is accelerated, the case's blocking I/O stays on TCP.
//   nonblocking-io  set up exactly like nonblocking, but both fds stay non-blocking for the whole
//                   case, as in an event-loop program (nginx, Go, HAProxy): every call a case
//                   makes as a blocking call goes through an ev_* wrapper that on EAGAIN polls
//                   the fd for POLLIN/POLLOUT (up to the fd's SO_RCVTIMEO/SO_SNDTIMEO, 1 s) and
//                   retries; splice/tee use SPLICE_F_NONBLOCK; io_uring requests that complete
//                   with -EAGAIN are polled for and resubmitted. Outcomes are the same as in the
//                   blocking modes, except that cases about blocking semantics (MSG_WAITALL on a
//                   blocking fd, SO_RCVTIMEO, SO_SNDTIMEO, signal restart) print
//                   "n/a: needs a blocking socket".
//
// Exit status: 0 when the case(s) ran (whatever the outcome), 1 on a setup failure or a case
// that exceeded its watchdog ({"case":..,"error":".."}), 2 on a usage error.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/errqueue.h>
#include <linux/io_uring.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif
#ifndef SOL_TLS
#define SOL_TLS 282
#endif

namespace sockaccel::compat {
namespace {

using namespace std::chrono_literals;
using Bytes = std::vector<uint8_t>;
using ojson = nlohmann::ordered_json;

constexpr int kExitSetup = 1;
constexpr int kExitUsage = 2;
constexpr auto kSettle = 30ms;  // time given to loopback data before readiness is checked
constexpr auto kWatchdog = 5s;  // a case that runs longer than this is a hang

struct SetupError {
    std::string message;
};

// ---------------------------------------------------------------------------------------------
// Small utilities

class UniqueFd {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept {
        if (this != &o) reset(std::exchange(o.fd_, -1));
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }
    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    void reset(int fd = -1) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

template <typename... Args>
std::string cat(const Args&... args) {
    std::ostringstream os;
    (os << ... << args);
    return os.str();
}

std::string errname(int e) {
    const char* n = strerrorname_np(e);
    return n != nullptr ? n : cat("errno", e);
}

// "N" for a non-negative return, the errno name for -1.
std::string ret_or_errno(ssize_t r, int e) { return r >= 0 ? cat(r) : errname(e); }

uint64_t fnv1a(const uint8_t* p, size_t n, uint64_t h = 0xcbf29ce484222325ULL) {
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

std::string digest(const Bytes& b) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%016llx",
                  static_cast<unsigned long long>(fnv1a(b.data(), b.size())));
    return cat("n=", b.size(), " fnv=", buf);
}

// Position-dependent pseudo-random bytes: any 8-byte window identifies its offset.
Bytes pattern(size_t n, uint64_t seed = 1) {
    Bytes out(n);
    uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL;
    for (size_t i = 0; i < n; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out[i] = static_cast<uint8_t>(x >> 29);
    }
    return out;
}

std::string to_string(const Bytes& b) { return std::string(b.begin(), b.end()); }

void sleep_for(std::chrono::milliseconds d) { std::this_thread::sleep_for(d); }

std::string mask_name(uint32_t m, const std::vector<std::pair<uint32_t, const char*>>& names) {
    std::string s;
    for (const auto& [bit, name] : names) {
        if ((m & bit) == 0) continue;
        if (!s.empty()) s += '|';
        s += name;
        m &= ~bit;
    }
    if (m != 0) s += cat(s.empty() ? "" : "|", "0x", std::hex, m);
    return s.empty() ? "0" : s;
}

std::string poll_mask(short m) {
    return mask_name(static_cast<uint16_t>(m), {{POLLIN, "IN"},
                                                {POLLPRI, "PRI"},
                                                {POLLOUT, "OUT"},
                                                {POLLERR, "ERR"},
                                                {POLLHUP, "HUP"},
                                                {POLLNVAL, "NVAL"},
                                                {POLLRDNORM, "RDNORM"},
                                                {POLLRDBAND, "RDBAND"},
                                                {POLLWRNORM, "WRNORM"},
                                                {POLLWRBAND, "WRBAND"},
                                                {POLLRDHUP, "RDHUP"}});
}

std::string epoll_mask(uint32_t m) {
    return mask_name(m, {{EPOLLIN, "IN"},
                         {EPOLLPRI, "PRI"},
                         {EPOLLOUT, "OUT"},
                         {EPOLLERR, "ERR"},
                         {EPOLLHUP, "HUP"},
                         {EPOLLRDNORM, "RDNORM"},
                         {EPOLLRDBAND, "RDBAND"},
                         {EPOLLWRNORM, "WRNORM"},
                         {EPOLLWRBAND, "WRBAND"},
                         {EPOLLRDHUP, "RDHUP"}});
}

void set_int(int fd, int level, int opt, int v) {
    if (setsockopt(fd, level, opt, &v, sizeof v) != 0)
        throw SetupError{cat("setsockopt(", level, ",", opt, "): ", errname(errno))};
}

void set_timeout(int fd, int opt, std::chrono::milliseconds ms) {
    timeval tv{};
    tv.tv_sec = ms.count() / 1000;
    tv.tv_usec = (ms.count() % 1000) * 1000;
    if (setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv) != 0)
        throw SetupError{cat("setsockopt timeout: ", errname(errno))};
}

void set_nonblock(int fd) {
    const int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
        throw SetupError{cat("fcntl O_NONBLOCK: ", errname(errno))};
}

uint16_t local_port(int fd) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return 0;
    return ntohs(a.sin_port);
}

// Runs fn on a thread with every signal blocked, so that SIGALRM-based cases interrupt only
// the case's own (main) thread.
std::jthread spawn(std::function<void()> fn) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    std::jthread t([fn = std::move(fn)] {
        try {
            fn();
        } catch (const SetupError& e) {
            std::cerr << "sockaccel-compat: helper thread: " << e.message << '\n';
        }
    });
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return t;
}

// ---------------------------------------------------------------------------------------------
// --establish modes and event-loop I/O

enum class Establish { blocking, nonblocking, nonblocking_io };
Establish g_establish = Establish::blocking;

// --establish nonblocking-io: the pair's fds stay O_NONBLOCK, so the cases' "blocking" calls go
// through the ev_* wrappers below.
bool event_loop_io() { return g_establish == Establish::nonblocking_io; }

// What a case that only makes sense on a blocking fd reports in nonblocking-io mode.
const char* const kNeedsBlocking = "n/a: needs a blocking socket";

// How long an event-loop call waits for readiness: as long as the blocking call would, i.e. the
// fd's SO_RCVTIMEO (POLLIN) or SO_SNDTIMEO (POLLOUT); 1 s for a non-socket or no timeout.
std::chrono::milliseconds io_timeout(int fd, short events) {
    timeval tv{};
    socklen_t len = sizeof tv;
    const int opt = (events & POLLOUT) ? SO_SNDTIMEO : SO_RCVTIMEO;
    if (getsockopt(fd, SOL_SOCKET, opt, &tv, &len) != 0 || (tv.tv_sec == 0 && tv.tv_usec == 0))
        return 1000ms;
    return std::chrono::milliseconds(tv.tv_sec * 1000 + tv.tv_usec / 1000);
}

// Makes one call the way an event loop does on a non-blocking fd: while it fails with
// EAGAIN/EWOULDBLOCK, poll() fd for `events` and call again, until io_timeout(fd) has passed
// (then the call's EAGAIN stands, as a blocking call's timeout would). The result is that of the
// first call that did not fail with EAGAIN, so a read returns what the first successful read
// after readiness returns. In the other modes the fd is blocking and this is the call, once.
template <typename F>
auto when_ready(int fd, short events, F&& call) -> decltype(call()) {
    auto r = call();
    if (!event_loop_io()) return r;
    int err = errno;
    const auto deadline = std::chrono::steady_clock::now() + io_timeout(fd, events);
    while (r < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) break;
        pollfd pfd{fd, events, 0};
        const int n = poll(&pfd, 1, static_cast<int>(left.count()) + 1);
        if (n == 0 || (n < 0 && errno != EINTR)) break;
        r = call();
        err = errno;
    }
    errno = err;  // the call's, not poll()'s
    return r;
}

// Wrappers for the calls a case makes as blocking calls. MSG_DONTWAIT (and MSG_ERRQUEUE, which
// never waits) calls are non-blocking in every mode and go straight to the kernel.
ssize_t ev_recv(int fd, void* buf, size_t len, int flags) {
    if (flags & (MSG_DONTWAIT | MSG_ERRQUEUE)) return ::recv(fd, buf, len, flags);
    return when_ready(fd, POLLIN, [&] { return ::recv(fd, buf, len, flags); });
}
ssize_t ev_read(int fd, void* buf, size_t len) {
    return when_ready(fd, POLLIN, [&] { return ::read(fd, buf, len); });
}
ssize_t ev_readv(int fd, const iovec* iov, int cnt) {
    return when_ready(fd, POLLIN, [&] { return ::readv(fd, iov, cnt); });
}
ssize_t ev_recvfrom(int fd, void* buf, size_t len, int flags, sockaddr* from, socklen_t* flen) {
    return when_ready(fd, POLLIN, [&] { return ::recvfrom(fd, buf, len, flags, from, flen); });
}
ssize_t ev_recvmsg(int fd, msghdr* m, int flags) {
    return when_ready(fd, POLLIN, [&] { return ::recvmsg(fd, m, flags); });
}
ssize_t ev_send(int fd, const void* buf, size_t len, int flags) {
    return when_ready(fd, POLLOUT, [&] { return ::send(fd, buf, len, flags); });
}
ssize_t ev_write(int fd, const void* buf, size_t len) {
    return when_ready(fd, POLLOUT, [&] { return ::write(fd, buf, len); });
}
ssize_t ev_writev(int fd, const iovec* iov, int cnt) {
    return when_ready(fd, POLLOUT, [&] { return ::writev(fd, iov, cnt); });
}
ssize_t ev_sendmsg(int fd, const msghdr* m, int flags) {
    return when_ready(fd, POLLOUT, [&] { return ::sendmsg(fd, m, flags); });
}
ssize_t ev_sendfile(int out, int in, off_t* off, size_t len) {
    return when_ready(out, POLLOUT, [&] { return ::sendfile(out, in, off, len); });
}
// splice()/tee() that waits on `wait_fd` (the socket end) for `events`; in nonblocking-io mode
// with SPLICE_F_NONBLOCK, as event loops splice.
ssize_t ev_splice(int in, int out, size_t len, int wait_fd, short events) {
    const unsigned flags = event_loop_io() ? SPLICE_F_NONBLOCK : 0;
    return when_ready(wait_fd, events,
                      [&] { return ::splice(in, nullptr, out, nullptr, len, flags); });
}
ssize_t ev_tee(int in, int out, size_t len) {
    const unsigned flags = event_loop_io() ? SPLICE_F_NONBLOCK : 0;
    return when_ready(out, POLLOUT, [&] { return ::tee(in, out, len, flags); });
}

int send_all(int fd, const uint8_t* p, size_t n, int flags = 0);

// sendmmsg(). A non-blocking sendmmsg can end on a message the send buffer took only part of,
// where the blocking call would have waited to send it whole; an event loop sends the rest of
// that (last) message when the socket is writable again, so this does too. A partial message
// before the last one (the buffer drained between two messages) is left for the caller to see.
int ev_sendmmsg(int fd, mmsghdr* mm, unsigned cnt, int flags) {
    const int n = when_ready(fd, POLLOUT, [&] { return ::sendmmsg(fd, mm, cnt, flags); });
    if (!event_loop_io() || n <= 0) return n;
    mmsghdr& last = mm[n - 1];
    const iovec& v = last.msg_hdr.msg_iov[0];  // the cases send one iovec per message
    if (last.msg_hdr.msg_iovlen == 1 && last.msg_len < v.iov_len) {
        const auto* base = static_cast<const uint8_t*>(v.iov_base);
        if (int e = send_all(fd, base + last.msg_len, v.iov_len - last.msg_len, flags)) {
            errno = e;
            return -1;
        }
        last.msg_len = static_cast<unsigned>(v.iov_len);
    }
    return n;
}

// ---------------------------------------------------------------------------------------------
// Data movement helpers. Sockets made by make_pair have 1 s send/receive timeouts, so none of
// these blocks for long.

// 0 on success, else the errno of the failing send.
int send_all(int fd, const uint8_t* p, size_t n, int flags) {
    size_t off = 0;
    while (off < n) {
        const ssize_t w = ev_send(fd, p + off, n - off, flags | MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return errno;
        off += static_cast<size_t>(w);
    }
    return 0;
}
int send_all(int fd, const Bytes& b, int flags = 0) {
    return send_all(fd, b.data(), b.size(), flags);
}
int send_str(int fd, const std::string& s, int flags = 0) {
    return send_all(fd, reinterpret_cast<const uint8_t*>(s.data()), s.size(), flags);
}

struct ReadResult {
    Bytes data;
    int err = 0;  // errno of the call that ended the loop, 0 for EOF or "got enough"
    bool eof = false;
    std::string describe() const {
        std::string s = digest(data);
        if (err != 0) s += " err=" + errname(err);
        return s;
    }
};

// recv() (read() for a pipe: flags < 0) until `want` bytes, EOF or an error.
ReadResult read_upto(int fd, size_t want, int flags = 0) {
    ReadResult r;
    uint8_t buf[16384];
    while (r.data.size() < want) {
        const size_t len = std::min(sizeof buf, want - r.data.size());
        const ssize_t n = flags < 0 ? ev_read(fd, buf, len) : ev_recv(fd, buf, len, flags);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            r.err = errno;
            break;
        }
        if (n == 0) {
            r.eof = true;
            break;
        }
        r.data.insert(r.data.end(), buf, buf + n);
    }
    return r;
}
ReadResult read_to_eof(int fd) { return read_upto(fd, SIZE_MAX); }
ReadResult read_pipe(int fd, size_t want) { return read_upto(fd, want, -1); }

// Everything readable right now, without blocking.
std::string drain_now(int fd) {
    const ReadResult r = read_upto(fd, SIZE_MAX, MSG_DONTWAIT);
    return to_string(r.data);
}

// ---------------------------------------------------------------------------------------------
// The connection pair

struct Ports {
    uint16_t client = 0, server = 0;
};
Ports g_ports;

struct PairOptions {
    int protocol = IPPROTO_TCP;
    std::function<void(int)> on_listener;  // before listen(); accepted sockets inherit it
    std::function<void(int)> on_client;    // before connect()
};

struct Pair {
    UniqueFd client;  // the connecting end: usually the writer
    UniqueFd server;  // the accepted end: usually the reader
    int c() const { return client.get(); }
    int s() const { return server.get(); }
};

// --establish nonblocking: connect and accept with O_NONBLOCK, pass one byte from the client to
// the accepted socket, then put both back in blocking mode: the common "non-blocking connect with
// a timeout, then blocking I/O" pattern. sockaccel checks each socket's reader (non-blocking,
// SO_RCVLOWAT <= 1) as the connection is set up and at every send into it, so the set-up byte
// is redirected and the blocking I/O after it stays on TCP. One way only: a reply would put
// TCP into delayed-ACK "pingpong" mode and make ACK-dependent outcomes timing-dependent.
// --establish nonblocking-io: set up exactly the same way, but both fds stay O_NONBLOCK for the
// whole case, and the cases do their I/O as an event loop does (the ev_* wrappers).

void clear_nonblock(int fd) {
    const int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0)
        throw SetupError{cat("fcntl ~O_NONBLOCK: ", errname(errno))};
}

void wait_for(int fd, short events, const char* what) {
    pollfd pfd{fd, events, 0};
    if (poll(&pfd, 1, 1000) != 1) throw SetupError{cat(what, ": not ready within 1 s")};
}

// One byte from the client to the accepted socket, both non-blocking. Polled by recv() rather
// than poll(): an inherited SO_RCVLOWAT would hide one byte from poll().
void prime(int client, int server) {
    char c = 'P';
    if (::send(client, &c, 1, MSG_NOSIGNAL) != 1)
        throw SetupError{cat("prime send: ", errname(errno))};
    for (int i = 0; i < 1000; ++i) {
        if (::recv(server, &c, 1, 0) == 1) return;
        if (errno != EAGAIN) break;
        sleep_for(1ms);
    }
    throw SetupError{cat("prime recv: ", errname(errno))};
}

Pair make_pair(const PairOptions& opt = {}) {
    const int nb = g_establish != Establish::blocking ? SOCK_NONBLOCK : 0;
    UniqueFd lfd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, opt.protocol));
    if (!lfd) throw SetupError{cat("socket: ", errname(errno))};
    set_int(lfd.get(), SOL_SOCKET, SO_REUSEADDR, 1);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
        throw SetupError{cat("bind: ", errname(errno))};
    if (opt.on_listener) opt.on_listener(lfd.get());
    if (listen(lfd.get(), 4) != 0) throw SetupError{cat("listen: ", errname(errno))};
    a.sin_port = htons(local_port(lfd.get()));

    Pair p;
    p.client.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | nb, opt.protocol));
    if (!p.client) throw SetupError{cat("socket: ", errname(errno))};
    if (opt.on_client) opt.on_client(p.c());
    if (connect(p.c(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        if (!nb || errno != EINPROGRESS) throw SetupError{cat("connect: ", errname(errno))};
        wait_for(p.c(), POLLOUT, "connect");
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(p.c(), SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) throw SetupError{cat("connect: ", errname(err))};
    }
    wait_for(lfd.get(), POLLIN, "accept");
    p.server.reset(accept4(lfd.get(), nullptr, nullptr, SOCK_CLOEXEC | nb));
    if (!p.server) throw SetupError{cat("accept: ", errname(errno))};
    g_ports = {local_port(p.c()), local_port(p.s())};
    sleep_for(10ms);  // the accelerator may hold a first send until the accepted side is known
    if (nb) prime(p.c(), p.s());
    if (g_establish == Establish::nonblocking) {
        clear_nonblock(p.c());
        clear_nonblock(p.s());
    }
    for (int fd : {p.c(), p.s()}) {
        set_timeout(fd, SO_RCVTIMEO, 1000ms);
        set_timeout(fd, SO_SNDTIMEO, 1000ms);
    }
    return p;
}

// ---------------------------------------------------------------------------------------------
// Minimal io_uring over raw syscalls (no liburing): one request in flight at a time.

class Uring {
public:
    ~Uring() {
        for (auto& m : maps_)
            if (m.first != MAP_FAILED) munmap(m.first, m.second);
    }
    // 0 or the errno why the ring could not be set up.
    int init() {
        io_uring_params p{};
        const int fd = static_cast<int>(syscall(__NR_io_uring_setup, 4, &p));
        if (fd < 0) return errno;
        fd_.reset(fd);
        auto* sq = map(p.sq_off.array + p.sq_entries * sizeof(unsigned), IORING_OFF_SQ_RING);
        auto* cq = map(p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe), IORING_OFF_CQ_RING);
        auto* sqes = map(p.sq_entries * sizeof(io_uring_sqe), IORING_OFF_SQES);
        if (sq == nullptr || cq == nullptr || sqes == nullptr) return errno;
        sq_tail_ = reinterpret_cast<unsigned*>(sq + p.sq_off.tail);
        sq_mask_ = *reinterpret_cast<unsigned*>(sq + p.sq_off.ring_mask);
        sq_array_ = reinterpret_cast<unsigned*>(sq + p.sq_off.array);
        cq_head_ = reinterpret_cast<unsigned*>(cq + p.cq_off.head);
        cq_tail_ = reinterpret_cast<unsigned*>(cq + p.cq_off.tail);
        cq_mask_ = *reinterpret_cast<unsigned*>(cq + p.cq_off.ring_mask);
        cqes_ = reinterpret_cast<io_uring_cqe*>(cq + p.cq_off.cqes);
        sqes_ = reinterpret_cast<io_uring_sqe*>(sqes);
        return 0;
    }
    // Submits one request and waits up to 1 s for it: its cqe res, or -ETIME.
    int run(const io_uring_sqe& sqe) {
        const unsigned tail = *sq_tail_;
        const unsigned idx = tail & sq_mask_;
        sqes_[idx] = sqe;
        sq_array_[idx] = idx;
        __atomic_store_n(sq_tail_, tail + 1, __ATOMIC_RELEASE);
        __kernel_timespec ts{1, 0};
        io_uring_getevents_arg arg{};
        arg.sigmask_sz = _NSIG / 8;
        arg.ts = reinterpret_cast<uint64_t>(&ts);
        unsigned to_submit = 1;
        for (;;) {
            const unsigned head = *cq_head_;
            if (head != __atomic_load_n(cq_tail_, __ATOMIC_ACQUIRE)) {
                const int res = cqes_[head & cq_mask_].res;
                __atomic_store_n(cq_head_, head + 1, __ATOMIC_RELEASE);
                return res;
            }
            const long r = syscall(__NR_io_uring_enter, fd_.get(), to_submit, 1,
                                   IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof arg);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) return -errno;
            to_submit = 0;
        }
    }

private:
    uint8_t* map(size_t len, off_t off) {
        void* p =
            mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_.get(), off);
        maps_.emplace_back(p, len);
        return p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
    }
    UniqueFd fd_;
    std::vector<std::pair<void*, size_t>> maps_;
    unsigned *sq_tail_ = nullptr, *sq_array_ = nullptr, *cq_head_ = nullptr, *cq_tail_ = nullptr;
    unsigned sq_mask_ = 0, cq_mask_ = 0;
    io_uring_cqe* cqes_ = nullptr;
    io_uring_sqe* sqes_ = nullptr;
};

std::string uring_unsupported(int err) { return "unsupported: io_uring " + errname(err); }

// Runs one request; in nonblocking-io mode, a -EAGAIN completion is polled for and resubmitted
// like any other EAGAIN (when_ready). io_uring waits for readiness itself for RECV and SEND on an
// O_NONBLOCK socket, but SPLICE honours the socket's O_NONBLOCK and completes with -EAGAIN.
int ev_uring(Uring& ring, const io_uring_sqe& sqe, int fd, short events) {
    const int r = when_ready(fd, events, [&] {
        const int res = ring.run(sqe);
        errno = res < 0 ? -res : 0;
        return res < 0 ? -1 : res;
    });
    return r < 0 ? -errno : r;
}

// ---------------------------------------------------------------------------------------------
// Cases: reads. The client writes, the accepted socket reads.

std::string case_read() {
    auto p = make_pair();
    const Bytes data = pattern(10000);
    auto w = spawn([&] { send_all(p.c(), data); });
    Bytes got;
    uint8_t buf[4096];
    int err = 0;
    while (got.size() < data.size()) {
        const ssize_t n = ev_read(p.s(), buf, std::min(sizeof buf, data.size() - got.size()));
        if (n <= 0) {
            err = n < 0 ? errno : 0;
            break;
        }
        got.insert(got.end(), buf, buf + n);
    }
    return digest(got) + (err ? " err=" + errname(err) : "");
}

std::string case_readv() {
    auto p = make_pair();
    const Bytes data = pattern(10000);
    auto w = spawn([&] { send_all(p.c(), data); });
    Bytes got;
    uint8_t a[100], b[200], c[300];
    int err = 0;
    while (got.size() < data.size()) {
        iovec iov[3] = {{a, sizeof a}, {b, sizeof b}, {c, sizeof c}};
        ssize_t n = ev_readv(p.s(), iov, 3);
        if (n <= 0) {
            err = n < 0 ? errno : 0;
            break;
        }
        for (auto& v : iov) {
            const size_t take = std::min<size_t>(static_cast<size_t>(n), v.iov_len);
            auto* base = static_cast<uint8_t*>(v.iov_base);
            got.insert(got.end(), base, base + take);
            n -= static_cast<ssize_t>(take);
        }
    }
    return digest(got) + (err ? " err=" + errname(err) : "");
}

std::string case_recv_peek() {
    auto p = make_pair();
    send_str(p.c(), "hello world");
    sleep_for(kSettle);
    char buf[64];
    const ssize_t a = ev_recv(p.s(), buf, 5, MSG_PEEK);
    const std::string peek = a > 0 ? std::string(buf, a) : ret_or_errno(a, errno);
    const ssize_t b = ev_recv(p.s(), buf, 11, 0);
    const std::string read = b > 0 ? std::string(buf, b) : ret_or_errno(b, errno);
    return cat("peek=", a, ":", peek, " recv=", b, ":", read);
}

std::string case_recv_waitall_blocking() {
    if (event_loop_io()) return kNeedsBlocking;
    auto p = make_pair();
    auto w = spawn([&] {
        const Bytes chunk = pattern(100);
        for (int i = 0; i < 10; ++i) {
            send_all(p.c(), chunk);
            sleep_for(5ms);
        }
    });
    Bytes buf(1000);
    const ssize_t n = recv(p.s(), buf.data(), buf.size(), MSG_WAITALL);
    return "ret=" + ret_or_errno(n, errno);
}

std::string case_recv_waitall_nonblocking() {
    auto p = make_pair();
    set_nonblock(p.s());
    send_all(p.c(), pattern(1000));
    sleep_for(kSettle);
    Bytes buf(1000);
    const ssize_t n = recv(p.s(), buf.data(), buf.size(), MSG_WAITALL);
    return "ret=" + ret_or_errno(n, errno);
}

std::string case_recv_dontwait_empty() {
    auto p = make_pair();
    char buf[64];
    const ssize_t a = recv(p.s(), buf, sizeof buf, MSG_DONTWAIT);
    const std::string first = ret_or_errno(a, errno);
    send_str(p.c(), "12345");
    sleep_for(kSettle);
    const ssize_t b = recv(p.s(), buf, sizeof buf, MSG_DONTWAIT);
    return cat("empty=", first, " after_send=", ret_or_errno(b, errno));
}

std::string case_recv_trunc() {
    auto p = make_pair();
    send_all(p.c(), pattern(100));
    sleep_for(kSettle);
    char buf[200];
    const ssize_t a = recv(p.s(), buf, 10, MSG_TRUNC | MSG_DONTWAIT);
    const std::string first = ret_or_errno(a, errno);
    const ssize_t b = recv(p.s(), buf, sizeof buf, MSG_DONTWAIT);
    return cat("trunc=", first, " rest=", ret_or_errno(b, errno));
}

std::string case_recvfrom() {
    auto p = make_pair();
    send_all(p.c(), pattern(50));
    sleep_for(kSettle);
    char buf[200];
    sockaddr_in from;
    std::memset(&from, 0xab, sizeof from);
    socklen_t len = sizeof from;
    const ssize_t n =
        ev_recvfrom(p.s(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
    return cat("ret=", ret_or_errno(n, errno), " addrlen=", len,
               " addr_written=", from.sin_family != 0xabab ? "yes" : "no");
}

std::string case_recvmsg_iov() {
    auto p = make_pair();
    const Bytes data = pattern(500);
    send_all(p.c(), data);
    sleep_for(kSettle);
    Bytes a(3), b(1000);
    iovec iov[2] = {{a.data(), a.size()}, {b.data(), b.size()}};
    msghdr m{};
    m.msg_iov = iov;
    m.msg_iovlen = 2;
    const ssize_t n = ev_recvmsg(p.s(), &m, 0);
    if (n < 0) return "ret=" + errname(errno);
    Bytes got(a);
    got.insert(got.end(), b.begin(), b.begin() + (n > 3 ? n - 3 : 0));
    return cat("ret=", n, " iov0=", std::min<ssize_t>(n, 3), " iov1=", std::max<ssize_t>(n - 3, 0),
               " msg_flags=0x", std::hex, m.msg_flags, std::dec,
               " match=", got == data ? "yes" : "no");
}

std::string case_recvmmsg() {
    auto p = make_pair();
    send_all(p.c(), pattern(300));
    sleep_for(kSettle);
    uint8_t b0[200], b1[200];
    iovec iov[2] = {{b0, sizeof b0}, {b1, sizeof b1}};
    mmsghdr mm[2]{};
    for (int i = 0; i < 2; ++i) {
        mm[i].msg_hdr.msg_iov = &iov[i];
        mm[i].msg_hdr.msg_iovlen = 1;
    }
    const int n = recvmmsg(p.s(), mm, 2, MSG_DONTWAIT, nullptr);
    if (n < 0) return "ret=" + errname(errno);
    std::string s = cat("ret=", n, " lens=");
    for (int i = 0; i < n; ++i) s += cat(i ? "," : "", mm[i].msg_len);
    return s;
}

void send_oob_sequence(int fd) {
    send_str(fd, "abc");
    send_str(fd, "!", MSG_OOB);
    send_str(fd, "def");
}

std::string case_recv_oob() {
    auto p = make_pair();
    send_oob_sequence(p.c());
    sleep_for(50ms);
    char c = 0;
    const ssize_t n = recv(p.s(), &c, 1, MSG_OOB | MSG_DONTWAIT);
    const std::string oob = n == 1 ? std::string(1, c) : ret_or_errno(n, errno);
    return cat("oob=", oob, " normal=", drain_now(p.s()));
}

std::string case_recv_oob_inline() {
    auto p = make_pair();
    set_int(p.s(), SOL_SOCKET, SO_OOBINLINE, 1);
    send_oob_sequence(p.c());
    sleep_for(50ms);
    std::string reads, marks;
    for (int i = 0; i < 4; ++i) {
        int mark = -1;
        if (ioctl(p.s(), SIOCATMARK, &mark) != 0) mark = -1;
        marks += cat(i ? "," : "", mark);
        char buf[64];
        const ssize_t n = recv(p.s(), buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0) {
            reads += cat(i ? "|" : "", "<", ret_or_errno(n, errno), ">");
            break;
        }
        reads += cat(i ? "|" : "", std::string(buf, n));
    }
    return cat("reads=", reads, " atmark=", marks);
}

std::string case_recv_errqueue() {
    auto p = make_pair();
    char buf[64];
    const ssize_t n = recv(p.s(), buf, sizeof buf, MSG_ERRQUEUE);
    return "ret=" + ret_or_errno(n, errno);
}

std::string case_splice_from_socket() {
    auto p = make_pair();
    const Bytes data = pattern(100000);
    auto w = spawn([&] {
        send_all(p.c(), data);
        shutdown(p.c(), SHUT_WR);
    });
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) throw SetupError{"pipe2"};
    UniqueFd pr(pfd[0]), pw(pfd[1]);
    Bytes got;
    std::string end = "eof";
    for (;;) {
        const ssize_t n = ev_splice(p.s(), pw.get(), 65536, p.s(), POLLIN);
        if (n <= 0) {
            if (n < 0) end = errname(errno);
            break;
        }
        ReadResult r = read_pipe(pr.get(), static_cast<size_t>(n));
        got.insert(got.end(), r.data.begin(), r.data.end());
    }
    return cat(digest(got), " end=", end);
}

std::string case_tee_from_socket() {
    auto p = make_pair();
    const Bytes data = pattern(50000);
    auto w = spawn([&] {
        send_all(p.c(), data);
        shutdown(p.c(), SHUT_WR);
    });
    int a[2], b[2];
    if (pipe2(a, O_CLOEXEC) != 0 || pipe2(b, O_CLOEXEC) != 0) throw SetupError{"pipe2"};
    UniqueFd ar(a[0]), aw(a[1]), br(b[0]), bw(b[1]);
    Bytes got1, got2;
    std::string end = "eof";
    for (;;) {
        const ssize_t n = ev_splice(p.s(), aw.get(), 16384, p.s(), POLLIN);
        if (n <= 0) {
            if (n < 0) end = errname(errno);
            break;
        }
        const ssize_t t = ev_tee(ar.get(), bw.get(), static_cast<size_t>(n));
        if (t < 0) {
            end = "tee:" + errname(errno);
            break;
        }
        ReadResult r2 = read_pipe(br.get(), static_cast<size_t>(t));
        ReadResult r1 = read_pipe(ar.get(), static_cast<size_t>(n));
        got1.insert(got1.end(), r1.data.begin(), r1.data.end());
        got2.insert(got2.end(), r2.data.begin(), r2.data.end());
    }
    return cat("pipe1: ", digest(got1), " pipe2: ", digest(got2), " end=", end);
}

std::string case_zerocopy_receive() {
    auto p = make_pair();
    constexpr size_t kLen = 65536;
    const Bytes data = pattern(kLen);
    auto w = spawn([&] { send_all(p.c(), data); });
    sleep_for(50ms);
    void* addr = mmap(nullptr, kLen, PROT_READ, MAP_SHARED, p.s(), 0);
    if (addr == MAP_FAILED) {
        const int e = errno;
        return cat("mmap=", errname(e), " recv: ", read_upto(p.s(), kLen).describe());
    }
    tcp_zerocopy_receive zc{};
    zc.address = reinterpret_cast<uint64_t>(addr);
    zc.length = kLen;
    socklen_t zl = sizeof zc;
    const int rc = getsockopt(p.s(), IPPROTO_TCP, TCP_ZEROCOPY_RECEIVE, &zc, &zl);
    const int e = errno;
    Bytes got;
    if (rc == 0) {
        const auto* m = static_cast<const uint8_t*>(addr);
        got.assign(m, m + zc.length);  // mapped bytes are consumed from the stream
    }
    munmap(addr, kLen);
    const ReadResult r = read_upto(p.s(), kLen - got.size());
    got.insert(got.end(), r.data.begin(), r.data.end());
    return cat("zc=", rc == 0 ? "ok" : errname(e), " total: ", digest(got),
               got == data ? " match=yes" : " match=no");
}

std::string case_iouring_recv() {
    Uring ring;
    if (int e = ring.init()) return uring_unsupported(e);
    auto p = make_pair();
    const Bytes data = pattern(1000);
    send_all(p.c(), data);
    Bytes got;
    std::string end = "done";
    uint8_t buf[4096];
    while (got.size() < data.size()) {
        io_uring_sqe sqe{};
        sqe.opcode = IORING_OP_RECV;
        sqe.fd = p.s();
        sqe.addr = reinterpret_cast<uint64_t>(buf);
        sqe.len = sizeof buf;
        const int res = ev_uring(ring, sqe, p.s(), POLLIN);
        if (res <= 0) {
            end = res == 0 ? "eof" : errname(-res);
            break;
        }
        got.insert(got.end(), buf, buf + res);
    }
    return cat(digest(got), " end=", end);
}

std::string case_iouring_splice() {
    Uring ring;
    if (int e = ring.init()) return uring_unsupported(e);
    auto p = make_pair();
    const Bytes data = pattern(20000);
    send_all(p.c(), data);
    shutdown(p.c(), SHUT_WR);
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) throw SetupError{"pipe2"};
    UniqueFd pr(pfd[0]), pw(pfd[1]);
    Bytes got;
    std::string end = "eof";
    for (;;) {
        io_uring_sqe sqe{};
        sqe.opcode = IORING_OP_SPLICE;
        sqe.fd = pw.get();
        sqe.off = static_cast<uint64_t>(-1);
        sqe.splice_off_in = static_cast<uint64_t>(-1);
        sqe.splice_fd_in = p.s();
        sqe.len = 65536;
        const int res = ev_uring(ring, sqe, p.s(), POLLIN);
        if (res <= 0) {
            if (res < 0) end = errname(-res);
            break;
        }
        const ReadResult r = read_pipe(pr.get(), static_cast<size_t>(res));
        got.insert(got.end(), r.data.begin(), r.data.end());
    }
    return cat(digest(got), " end=", end);
}

// ---------------------------------------------------------------------------------------------
// Cases: sends. The client writes with the call under test from a thread, the accepted socket
// reads everything.

constexpr size_t kSendTotal = 20000;

std::string send_case(size_t total, const std::function<int(int, const Bytes&)>& writer) {
    auto p = make_pair();
    const Bytes data = pattern(total);
    int werr = 0;
    ReadResult r;
    {
        auto w = spawn([&] { werr = writer(p.c(), data); });
        r = read_upto(p.s(), total);
    }
    return r.describe() + (werr ? " writer=" + errname(werr) : "");
}

std::string case_write() {
    return send_case(kSendTotal, [](int fd, const Bytes& d) {
        for (size_t off = 0; off < d.size();) {
            const ssize_t n = ev_write(fd, d.data() + off, std::min<size_t>(2000, d.size() - off));
            if (n < 0) return errno;
            off += static_cast<size_t>(n);
        }
        return 0;
    });
}

std::string case_writev() {
    return send_case(kSendTotal, [](int fd, const Bytes& d) {
        for (size_t off = 0; off < d.size();) {  // 500 + 700 + 800 per call
            iovec iov[3];
            int cnt = 0;
            size_t o = off;
            for (size_t len : {500, 700, 800}) {
                if (o >= d.size()) break;
                len = std::min(len, d.size() - o);
                iov[cnt++] = {const_cast<uint8_t*>(d.data() + o), len};
                o += len;
            }
            const ssize_t n = ev_writev(fd, iov, cnt);
            if (n < 0) return errno;
            off += static_cast<size_t>(n);
        }
        return 0;
    });
}

std::string case_send() {
    return send_case(kSendTotal, [](int fd, const Bytes& d) {
        for (size_t off = 0; off < d.size(); off += 2000)
            if (int e = send_all(fd, d.data() + off, std::min<size_t>(2000, d.size() - off)))
                return e;
        return 0;
    });
}

std::string case_sendmsg() {
    return send_case(kSendTotal, [](int fd, const Bytes& d) {
        for (size_t off = 0; off < d.size();) {  // 4 iovecs of 500 per call
            iovec iov[4];
            int cnt = 0;
            for (size_t o = off; cnt < 4 && o < d.size(); o += 500)
                iov[cnt++] = {const_cast<uint8_t*>(d.data() + o),
                              std::min<size_t>(500, d.size() - o)};
            msghdr m{};
            m.msg_iov = iov;
            m.msg_iovlen = cnt;
            const ssize_t n = ev_sendmsg(fd, &m, MSG_NOSIGNAL);
            if (n < 0) return errno;
            off += static_cast<size_t>(n);
        }
        return 0;
    });
}

std::string case_sendmmsg() {
    return send_case(kSendTotal, [](int fd, const Bytes& d) {
        constexpr size_t kMsg = 1000;
        std::vector<iovec> iov;
        for (size_t o = 0; o < d.size(); o += kMsg)
            iov.push_back({const_cast<uint8_t*>(d.data() + o), std::min(kMsg, d.size() - o)});
        std::vector<mmsghdr> mm(iov.size());
        for (size_t i = 0; i < iov.size(); ++i) {
            mm[i].msg_hdr.msg_iov = &iov[i];
            mm[i].msg_hdr.msg_iovlen = 1;
        }
        for (size_t i = 0; i < mm.size();) {  // 4 messages per call
            const int n = ev_sendmmsg(fd, &mm[i], std::min<size_t>(4, mm.size() - i), MSG_NOSIGNAL);
            if (n < 0) return errno;
            if (n == 0) return EIO;
            for (int k = 0; k < n; ++k)
                if (mm[i + k].msg_len != iov[i + k].iov_len) return EMSGSIZE;  // partial message
            i += static_cast<size_t>(n);
        }
        return 0;
    });
}

std::string case_send_more() {
    return send_case(4000, [](int fd, const Bytes& d) {
        for (int i = 0; i < 4; ++i)
            if (int e = send_all(fd, d.data() + i * 1000, 1000, i < 3 ? MSG_MORE : 0)) return e;
        return 0;
    });
}

std::string case_tcp_cork() {
    return send_case(3000, [](int fd, const Bytes& d) {
        int on = 1, off = 0;
        if (setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on) != 0) return errno;
        for (int i = 0; i < 3; ++i)
            if (int e = send_all(fd, d.data() + i * 1000, 1000)) return e;
        return setsockopt(fd, IPPROTO_TCP, TCP_CORK, &off, sizeof off) != 0 ? errno : 0;
    });
}

std::string case_send_oob_read_normal() {
    auto p = make_pair();
    send_oob_sequence(p.c());
    sleep_for(kSettle);
    shutdown(p.c(), SHUT_WR);
    const ReadResult r = read_to_eof(p.s());
    return cat("read=", to_string(r.data), r.eof ? " eof" : "",
               r.err ? " err=" + errname(r.err) : "");
}

std::string case_send_zerocopy() {
    auto p = make_pair();
    constexpr size_t kLen = 65536;
    const Bytes data = pattern(kLen);
    const int one = 1;
    if (setsockopt(p.c(), SOL_SOCKET, SO_ZEROCOPY, &one, sizeof one) != 0)
        return "so_zerocopy=" + errname(errno);
    ssize_t sent = -1;
    int serr = 0;
    ReadResult r;
    {
        auto w = spawn([&] {
            sent = ev_send(p.c(), data.data(), data.size(), MSG_ZEROCOPY | MSG_NOSIGNAL);
            serr = errno;
            // An event loop sends the rest of a partial non-blocking send when writable again;
            // "sent" is then the total, as the one blocking call returns.
            while (event_loop_io() && sent > 0 && static_cast<size_t>(sent) < data.size()) {
                const ssize_t n = ev_send(p.c(), data.data() + sent, data.size() - sent,
                                          MSG_ZEROCOPY | MSG_NOSIGNAL);
                if (n <= 0) {
                    serr = n < 0 ? errno : EIO;
                    sent = -1;
                    break;
                }
                sent += n;
            }
        });
        r = read_upto(p.s(), kLen);
    }
    // Loopback copies zerocopy pages on delivery; the completion comes when the sender's skbs
    // are freed (acked), which on loopback is before the reader finished.
    std::string note = "no";
    pollfd pfd{p.c(), 0, 0};
    if (poll(&pfd, 1, 500) == 1 && (pfd.revents & POLLERR)) {
        char ctrl[128];
        msghdr m{};
        m.msg_control = ctrl;
        m.msg_controllen = sizeof ctrl;
        if (recvmsg(p.c(), &m, MSG_ERRQUEUE) >= 0) {
            for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
                const auto* ee = reinterpret_cast<const sock_extended_err*>(CMSG_DATA(c));
                if (ee->ee_origin != SO_EE_ORIGIN_ZEROCOPY) continue;
                note = cat("yes range=", ee->ee_info, "-", ee->ee_data,
                           " copied=", (ee->ee_code & SO_EE_CODE_ZEROCOPY_COPIED) ? "yes" : "no");
            }
        } else {
            note = "errqueue:" + errname(errno);
        }
    }
    return cat("send=", ret_or_errno(sent, serr), " read: ", r.describe(), " notified=", note);
}

std::string case_sendfile() {
    constexpr size_t kLen = 200000;
    const Bytes data = pattern(kLen);
    UniqueFd file(open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
    if (!file) throw SetupError{cat("O_TMPFILE: ", errname(errno))};
    if (::write(file.get(), data.data(), data.size()) != static_cast<ssize_t>(data.size()))
        throw SetupError{"writing the temp file"};
    return send_case(kLen, [&file](int fd, const Bytes& d) {
        off_t off = 0;
        while (static_cast<size_t>(off) < d.size()) {
            const ssize_t n = ev_sendfile(fd, file.get(), &off, d.size() - off);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return n < 0 ? errno : EIO;
        }
        return 0;
    });
}

// Moves d into the socket through a pipe; fill puts up to 16 KiB into the pipe.
int through_pipe(int sock, const Bytes& d, bool use_vmsplice) {
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) return errno;
    UniqueFd pr(pfd[0]), pw(pfd[1]);
    for (size_t off = 0; off < d.size();) {
        const size_t len = std::min<size_t>(16384, d.size() - off);
        ssize_t in;
        if (use_vmsplice) {
            iovec iov{const_cast<uint8_t*>(d.data() + off), len};
            in = vmsplice(pw.get(), &iov, 1, 0);
        } else {
            in = ::write(pw.get(), d.data() + off, len);
        }
        if (in <= 0) return in < 0 ? errno : EIO;
        for (ssize_t left = in; left > 0;) {
            const ssize_t n = ev_splice(pr.get(), sock, static_cast<size_t>(left), sock, POLLOUT);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return n < 0 ? errno : EIO;
            left -= n;
        }
        off += static_cast<size_t>(in);
    }
    return 0;
}

std::string case_splice_into_socket() {
    return send_case(100000, [](int fd, const Bytes& d) { return through_pipe(fd, d, false); });
}

std::string case_vmsplice_into_socket() {
    return send_case(100000, [](int fd, const Bytes& d) { return through_pipe(fd, d, true); });
}

std::string case_iouring_send() {
    Uring ring;
    if (int e = ring.init()) return uring_unsupported(e);
    return send_case(kSendTotal, [&ring](int fd, const Bytes& d) {
        for (size_t off = 0; off < d.size();) {
            io_uring_sqe sqe{};
            sqe.opcode = IORING_OP_SEND;
            sqe.fd = fd;
            sqe.addr = reinterpret_cast<uint64_t>(d.data() + off);
            sqe.len = static_cast<uint32_t>(std::min<size_t>(4000, d.size() - off));
            sqe.msg_flags = MSG_NOSIGNAL;
            const int res = ev_uring(ring, sqe, fd, POLLOUT);
            if (res <= 0) return res < 0 ? -res : EIO;
            off += static_cast<size_t>(res);
        }
        return 0;
    });
}

// ---------------------------------------------------------------------------------------------
// Cases: state and readiness.

std::string case_fionread() {
    auto p = make_pair();
    send_all(p.c(), pattern(1234));
    sleep_for(kSettle);
    int v = -1;
    const int rc = ioctl(p.s(), FIONREAD, &v);
    return rc == 0 ? cat("fionread=", v) : "fionread=" + errname(errno);
}

std::string case_siocoutq() {
    auto p = make_pair();
    send_all(p.c(), pattern(1234));
    sleep_for(kSettle);
    int before = -1, before_nsd = -1, after = -1;
    ioctl(p.c(), SIOCOUTQ, &before);
    ioctl(p.c(), SIOCOUTQNSD, &before_nsd);
    const ReadResult r = read_upto(p.s(), 1234);
    sleep_for(kSettle);
    ioctl(p.c(), SIOCOUTQ, &after);
    return cat("outq_unread=", before, " outqnsd_unread=", before_nsd, " read=", r.data.size(),
               " outq_after=", after);
}

std::string case_tcp_inq() {
    auto p = make_pair();
    set_int(p.s(), IPPROTO_TCP, TCP_INQ, 1);
    send_all(p.c(), pattern(500));
    sleep_for(kSettle);
    char buf[200];
    alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))];
    iovec iov{buf, sizeof buf};
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctrl;
    m.msg_controllen = sizeof ctrl;
    const ssize_t n = ev_recvmsg(p.s(), &m, 0);
    std::string cm = "none";
    if (n >= 0) {
        for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
            if (c->cmsg_level == IPPROTO_TCP && c->cmsg_type == TCP_CM_INQ) {
                int v;
                std::memcpy(&v, CMSG_DATA(c), sizeof v);
                cm = cat(v);
            }
        }
    }
    int opt = -1;
    socklen_t ol = sizeof opt;
    getsockopt(p.s(), IPPROTO_TCP, TCP_INQ, &opt, &ol);
    return cat("ret=", ret_or_errno(n, errno), " cmsg_inq=", cm, " opt=", opt);
}

std::string rcvlowat_sequence(Pair& p) {
    send_all(p.c(), pattern(100));
    sleep_for(kSettle);
    pollfd pfd{p.s(), POLLIN, 0};
    poll(&pfd, 1, 0);
    const std::string m1 = poll_mask(pfd.revents);
    send_all(p.c(), pattern(400, 2));
    sleep_for(kSettle);
    pfd.revents = 0;
    poll(&pfd, 1, 0);
    const std::string m2 = poll_mask(pfd.revents);
    char buf[1000];
    const ssize_t n = ev_recv(p.s(), buf, sizeof buf, 0);
    return cat("poll@100=", m1, " poll@500=", m2, " recv=", ret_or_errno(n, errno));
}

std::string case_so_rcvlowat() {
    auto p = make_pair();
    set_int(p.s(), SOL_SOCKET, SO_RCVLOWAT, 500);
    return rcvlowat_sequence(p);
}

std::string case_so_rcvlowat_listener() {
    auto p = make_pair({.on_listener = [](int fd) { set_int(fd, SOL_SOCKET, SO_RCVLOWAT, 500); }});
    return rcvlowat_sequence(p);
}

std::string case_so_rcvtimeo() {
    if (event_loop_io()) return kNeedsBlocking;
    auto p = make_pair();
    set_timeout(p.s(), SO_RCVTIMEO, 100ms);
    char buf[16];
    const ssize_t n = recv(p.s(), buf, sizeof buf, 0);
    return "recv=" + ret_or_errno(n, errno);
}

std::string case_so_sndtimeo() {
    if (event_loop_io()) return kNeedsBlocking;
    auto p = make_pair();
    set_timeout(p.c(), SO_SNDTIMEO, 100ms);
    const Bytes chunk = pattern(65536);
    const auto deadline = std::chrono::steady_clock::now() + 1500ms;
    while (std::chrono::steady_clock::now() < deadline) {
        const ssize_t n = ::send(p.c(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
        if (n < 0 && errno != EINTR) return "final=" + errname(errno);
    }
    return "final=none within 1.5 s";
}

std::string case_poll_level() {
    auto p = make_pair();
    send_all(p.c(), pattern(10));
    sleep_for(kSettle);
    std::string s;
    char buf[5];
    for (int i = 0; i < 3; ++i) {
        pollfd pfd{p.s(), POLLIN | POLLRDHUP, 0};
        const int n = poll(&pfd, 1, 0);
        s += cat(i ? " " : "", "poll", i, "=", n, ":", poll_mask(pfd.revents));
        if (i < 2) s += cat(" read=", ret_or_errno(ev_recv(p.s(), buf, 5, 0), errno));
    }
    return s;
}

std::string epoll_wait_now(int ep) {
    epoll_event ev[4]{};
    const int n = epoll_wait(ep, ev, 4, 0);
    if (n < 0) return errname(errno);
    std::string s = cat(n);
    for (int i = 0; i < n; ++i) s += ":" + epoll_mask(ev[i].events);
    return s;
}

UniqueFd epoll_on(int fd, uint32_t events) {
    UniqueFd ep(epoll_create1(EPOLL_CLOEXEC));
    if (!ep) throw SetupError{cat("epoll_create1: ", errname(errno))};
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    if (epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
        throw SetupError{cat("epoll_ctl: ", errname(errno))};
    return ep;
}

std::string case_epoll_level() {
    auto p = make_pair();
    auto ep = epoll_on(p.s(), EPOLLIN | EPOLLRDHUP);
    const std::string e0 = epoll_wait_now(ep.get());
    send_all(p.c(), pattern(10));
    sleep_for(kSettle);
    char buf[5];
    std::string s = "empty=" + e0;
    for (int i = 0; i < 3; ++i) {
        s += cat(" wait", i, "=", epoll_wait_now(ep.get()));
        if (i < 2) s += cat(" read=", ret_or_errno(ev_recv(p.s(), buf, 5, 0), errno));
    }
    return s;
}

std::string case_epoll_edge() {
    auto p = make_pair();
    auto ep = epoll_on(p.s(), EPOLLIN | EPOLLRDHUP | EPOLLET);
    send_all(p.c(), pattern(10));
    sleep_for(kSettle);
    std::string s = "first=" + epoll_wait_now(ep.get());
    char buf[5];
    s += " read=" + ret_or_errno(ev_recv(p.s(), buf, 5, 0), errno);
    s += " after_partial=" + epoll_wait_now(ep.get());
    send_all(p.c(), pattern(10, 2));
    sleep_for(kSettle);
    s += " after_more=" + epoll_wait_now(ep.get());
    s += " again=" + epoll_wait_now(ep.get());
    s += " drained=" + std::to_string(drain_now(p.s()).size());
    return s;
}

std::string case_epoll_rdhup() {
    auto p = make_pair();
    auto ep = epoll_on(p.s(), EPOLLIN | EPOLLRDHUP);
    shutdown(p.c(), SHUT_WR);
    sleep_for(kSettle);
    return "wait=" + epoll_wait_now(ep.get());
}

std::string case_epoll_pri() {
    auto p = make_pair();
    auto ep = epoll_on(p.s(), EPOLLIN | EPOLLPRI);
    send_str(p.c(), "!", MSG_OOB);
    sleep_for(kSettle);
    epoll_event ev{};
    const int n = epoll_wait(ep.get(), &ev, 1, 0);
    return cat("wait=", n, ":", n > 0 ? epoll_mask(ev.events) : "-",
               " pri=", (n > 0 && (ev.events & EPOLLPRI)) ? "yes" : "no");
}

const char* tcp_state_name(int s) {
    static const char* const names[] = {"?",          "ESTABLISHED", "SYN_SENT",  "SYN_RECV",
                                        "FIN_WAIT1",  "FIN_WAIT2",   "TIME_WAIT", "CLOSE",
                                        "CLOSE_WAIT", "LAST_ACK",    "LISTEN",    "CLOSING"};
    return s >= 0 && s < 12 ? names[s] : "?";
}

std::string case_tcp_info_bytes() {
    auto p = make_pair();
    send_all(p.c(), pattern(5000));
    const ReadResult r = read_upto(p.s(), 5000);
    sleep_for(kSettle);
    tcp_info ci{}, si{};
    socklen_t cl = sizeof ci, sl = sizeof si;
    if (getsockopt(p.c(), IPPROTO_TCP, TCP_INFO, &ci, &cl) != 0 ||
        getsockopt(p.s(), IPPROTO_TCP, TCP_INFO, &si, &sl) != 0)
        return "tcp_info=" + errname(errno);
    return cat("read=", r.data.size(),
               " client_acked>=5000=", ci.tcpi_bytes_acked >= 5000 ? "yes" : "no",
               " server_received>=5000=", si.tcpi_bytes_received >= 5000 ? "yes" : "no",
               " client_state=", tcp_state_name(ci.tcpi_state),
               " server_state=", tcp_state_name(si.tcpi_state));
}

// ---------------------------------------------------------------------------------------------
// Cases: lifecycle.

volatile sig_atomic_t g_alarms = 0;
void on_alarm(int) { g_alarms = g_alarms + 1; }

std::string signal_case(bool restart) {
    if (event_loop_io()) return kNeedsBlocking;
    auto p = make_pair();
    set_timeout(p.s(), SO_RCVTIMEO,
                0ms);  // with a timeout, recv returns EINTR even with SA_RESTART
    struct sigaction sa {};
    sa.sa_handler = on_alarm;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, nullptr);
    auto w = spawn([&] {
        const Bytes chunk = pattern(100);
        for (int i = 0; i < 30; ++i) {
            send_all(p.c(), chunk);
            sleep_for(10ms);
        }
        shutdown(p.c(), SHUT_WR);
    });
    itimerval it{{0, 3000}, {0, 3000}};
    setitimer(ITIMER_REAL, &it, nullptr);
    size_t total = 0;
    std::set<std::string> errors;
    char buf[4096];
    for (int guard = 0; guard < 100000; ++guard) {
        const ssize_t n = recv(p.s(), buf, sizeof buf, 0);
        if (n == 0) break;
        if (n > 0)
            total += static_cast<size_t>(n);
        else
            errors.insert(errname(errno));
    }
    itimerval off{};
    setitimer(ITIMER_REAL, &off, nullptr);
    signal(SIGALRM, SIG_IGN);  // discards a pending one
    // Names only: how often a call is interrupted depends on scheduling.
    std::string s = cat("total=", total, " errors=");
    if (errors.empty()) return s + "none";
    bool first = true;
    for (const auto& name : errors) {
        s += cat(first ? "" : ",", name);
        first = false;
    }
    return s;
}

std::string case_signal_restart() { return signal_case(true); }
std::string case_signal_norestart() { return signal_case(false); }

std::string case_half_close() {
    auto p = make_pair();
    send_all(p.c(), pattern(30));
    shutdown(p.c(), SHUT_WR);
    const ReadResult sr = read_to_eof(p.s());
    const int serr = send_all(p.s(), pattern(30, 2));
    const ReadResult cr = read_upto(p.c(), 30);
    return cat("server_read=", sr.data.size(), sr.eof ? "+eof" : "",
               " server_send=", serr ? errname(serr) : "ok", " client_read=", cr.data.size(),
               cr.err ? " err=" + errname(cr.err) : "");
}

std::string case_shutdown_rd() {
    auto p = make_pair();
    const int rc = shutdown(p.s(), SHUT_RD);
    char buf[200];
    const ssize_t a = recv(p.s(), buf, sizeof buf, MSG_DONTWAIT);
    const std::string first = ret_or_errno(a, errno);
    const int serr = send_all(p.c(), pattern(100));
    sleep_for(kSettle);
    const ssize_t b = recv(p.s(), buf, sizeof buf, MSG_DONTWAIT);
    const std::string second = ret_or_errno(b, errno);
    const ssize_t c = recv(p.s(), buf, sizeof buf, MSG_DONTWAIT);
    return cat("shutdown=", rc == 0 ? "ok" : errname(errno), " recv_before=", first,
               " send=", serr ? errname(serr) : "ok", " recv_after=", second,
               " recv_again=", ret_or_errno(c, errno));
}

std::string case_rst_linger0() {
    auto p = make_pair();
    send_all(p.c(), pattern(100));
    linger lg{1, 0};
    setsockopt(p.c(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    p.client.reset();
    sleep_for(kSettle);
    std::string seq;
    char buf[4096];
    for (int i = 0; i < 5; ++i) {
        const ssize_t n = recv(p.s(), buf, sizeof buf, MSG_DONTWAIT);
        const int e = errno;
        seq += cat(i ? "," : "", ret_or_errno(n, e));
        if (n == 0 || (n < 0 && e == EAGAIN)) break;
    }
    return "recv=" + seq;
}

std::string case_close_unread() {
    auto p = make_pair();
    send_all(p.c(), pattern(100));
    sleep_for(kSettle);
    p.server.reset();  // 100 bytes unread
    sleep_for(kSettle);
    const Bytes ten = pattern(10);
    const ssize_t a = ev_send(p.c(), ten.data(), ten.size(), MSG_NOSIGNAL);
    const std::string first = ret_or_errno(a, errno);
    sleep_for(kSettle);
    const ssize_t b = ev_send(p.c(), ten.data(), ten.size(), MSG_NOSIGNAL);
    const std::string second = ret_or_errno(b, errno);
    char c;
    const ssize_t r = recv(p.c(), &c, 1, MSG_DONTWAIT);
    return cat("send1=", first, " send2=", second, " client_recv=", ret_or_errno(r, errno));
}

std::string case_two_threads_read() {
    auto p = make_pair();
    constexpr size_t kLen = 100000;
    const Bytes data = pattern(kLen);
    set_timeout(p.s(), SO_RCVTIMEO, 500ms);
    std::vector<Bytes> chunks[2];
    {
        auto reader = [&](int k) {
            return [&, k] {
                uint8_t buf[1500];
                for (;;) {
                    const ssize_t n = ev_recv(p.s(), buf, sizeof buf, 0);
                    if (n < 0 && errno == EINTR) continue;
                    if (n <= 0) break;
                    chunks[k].emplace_back(buf, buf + n);
                }
            };
        };
        auto r0 = spawn(reader(0));
        auto r1 = spawn(reader(1));
        send_all(p.c(), data);
        shutdown(p.c(), SHUT_WR);
    }
    // Place every chunk back in the stream by its content: 8-byte windows of the pattern are
    // unique, short chunks go to the first uncovered place they match.
    std::unordered_map<uint64_t, size_t> where;
    for (size_t i = 0; i + 8 <= kLen; ++i) {
        uint64_t key;
        std::memcpy(&key, &data[i], 8);
        where.emplace(key, i);
    }
    std::vector<uint8_t> cover(kLen, 0);
    size_t total = 0, bad = 0;
    auto matches = [&](const Bytes& c, size_t at) {
        return at + c.size() <= kLen && std::equal(c.begin(), c.end(), data.begin() + at);
    };
    std::vector<const Bytes*> shorts;
    for (const auto& list : chunks) {
        for (const auto& c : list) {
            total += c.size();
            if (c.size() < 8) {
                shorts.push_back(&c);
                continue;
            }
            uint64_t key;
            std::memcpy(&key, c.data(), 8);
            auto it = where.find(key);
            if (it == where.end() || !matches(c, it->second)) {
                ++bad;
                continue;
            }
            for (size_t i = 0; i < c.size(); ++i) ++cover[it->second + i];
        }
    }
    for (const Bytes* c : shorts) {
        size_t at = 0;
        while (at < kLen && (cover[at] != 0 || !matches(*c, at))) ++at;
        if (at >= kLen) {
            ++bad;
            continue;
        }
        for (size_t i = 0; i < c->size(); ++i) ++cover[at + i];
    }
    const auto missing = static_cast<size_t>(std::count(cover.begin(), cover.end(), 0));
    const size_t dup = static_cast<size_t>(
        std::count_if(cover.begin(), cover.end(), [](uint8_t v) { return v > 1; }));
    const bool once = bad == 0 && missing == 0 && dup == 0;
    return cat("total=", total, " exactly_once=", once ? "yes" : "no",
               once ? "" : cat(" missing=", missing, " dup=", dup, " unplaced=", bad));
}

std::string case_ktls() {
    auto p = make_pair();
    if (setsockopt(p.c(), IPPROTO_TCP, TCP_ULP, "tls", sizeof "tls") != 0) {
        const int e = errno;
        if (e == ENOENT) return "unsupported: no tls module";
        return "ulp_client=" + errname(e);
    }
    tls12_crypto_info_aes_gcm_128 ci{};
    ci.info.version = TLS_1_2_VERSION;
    ci.info.cipher_type = TLS_CIPHER_AES_GCM_128;
    std::memset(ci.key, 0x11, sizeof ci.key);
    std::memset(ci.iv, 0x22, sizeof ci.iv);
    std::memset(ci.salt, 0x33, sizeof ci.salt);
    std::memset(ci.rec_seq, 0, sizeof ci.rec_seq);
    std::string s = "ulp_client=ok";
    auto step = [&](const char* name, int rc) {
        s += cat(" ", name, "=", rc == 0 ? "ok" : errname(errno));
        return rc == 0;
    };
    if (!step("tx", setsockopt(p.c(), SOL_TLS, TLS_TX, &ci, sizeof ci))) return s;
    if (!step("ulp_server", setsockopt(p.s(), IPPROTO_TCP, TCP_ULP, "tls", sizeof "tls"))) return s;
    if (!step("rx", setsockopt(p.s(), SOL_TLS, TLS_RX, &ci, sizeof ci))) return s;
    const Bytes data = pattern(1000);
    const int serr = send_all(p.c(), data);
    const ReadResult r = read_upto(p.s(), data.size());
    return cat(s, " send=", serr ? errname(serr) : "ok", " read: ", r.describe(),
               r.data == data ? " match=yes" : " match=no");
}

std::string case_mptcp() {
    {
        UniqueFd probe(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_MPTCP));
        if (!probe) {
            const int e = errno;
            if (e == EPROTONOSUPPORT || e == EINVAL || e == ENOPROTOOPT)
                return "unsupported: no mptcp";
            return "socket=" + errname(e);
        }
    }
    auto p = make_pair({.protocol = IPPROTO_MPTCP});
    const Bytes data = pattern(10000);
    ReadResult r;
    {
        auto w = spawn([&] { send_all(p.c(), data); });
        r = read_upto(p.s(), data.size());
    }
    return r.describe();
}

// ---------------------------------------------------------------------------------------------
// Registry, watchdog and command line

struct Case {
    const char* name;
    std::string (*fn)();
};

const std::vector<Case>& cases() {
    static const std::vector<Case> table = {
        {"read", case_read},
        {"readv", case_readv},
        {"recv_peek", case_recv_peek},
        {"recv_waitall_blocking", case_recv_waitall_blocking},
        {"recv_waitall_nonblocking", case_recv_waitall_nonblocking},
        {"recv_dontwait_empty", case_recv_dontwait_empty},
        {"recv_trunc", case_recv_trunc},
        {"recvfrom", case_recvfrom},
        {"recvmsg_iov", case_recvmsg_iov},
        {"recvmmsg", case_recvmmsg},
        {"recv_oob", case_recv_oob},
        {"recv_oob_inline", case_recv_oob_inline},
        {"recv_errqueue", case_recv_errqueue},
        {"splice_from_socket", case_splice_from_socket},
        {"tee_from_socket", case_tee_from_socket},
        {"zerocopy_receive", case_zerocopy_receive},
        {"iouring_recv", case_iouring_recv},
        {"iouring_splice", case_iouring_splice},
        {"write", case_write},
        {"writev", case_writev},
        {"send", case_send},
        {"sendmsg", case_sendmsg},
        {"sendmmsg", case_sendmmsg},
        {"send_more", case_send_more},
        {"tcp_cork", case_tcp_cork},
        {"send_oob_read_normal", case_send_oob_read_normal},
        {"send_zerocopy", case_send_zerocopy},
        {"sendfile", case_sendfile},
        {"splice_into_socket", case_splice_into_socket},
        {"vmsplice_into_socket", case_vmsplice_into_socket},
        {"iouring_send", case_iouring_send},
        {"fionread", case_fionread},
        {"siocoutq", case_siocoutq},
        {"tcp_inq", case_tcp_inq},
        {"so_rcvlowat", case_so_rcvlowat},
        {"so_rcvlowat_listener", case_so_rcvlowat_listener},
        {"so_rcvtimeo", case_so_rcvtimeo},
        {"so_sndtimeo", case_so_sndtimeo},
        {"poll_level", case_poll_level},
        {"epoll_level", case_epoll_level},
        {"epoll_edge", case_epoll_edge},
        {"epoll_rdhup", case_epoll_rdhup},
        {"epoll_pri", case_epoll_pri},
        {"tcp_info_bytes", case_tcp_info_bytes},
        {"signal_restart", case_signal_restart},
        {"signal_norestart", case_signal_norestart},
        {"half_close", case_half_close},
        {"shutdown_rd", case_shutdown_rd},
        {"rst_linger0", case_rst_linger0},
        {"close_unread", case_close_unread},
        {"two_threads_read", case_two_threads_read},
        {"ktls", case_ktls},
        {"mptcp", case_mptcp},
    };
    return table;
}

void print_line(const ojson& j) { std::cout << j.dump() << std::endl; }

// Ends the process when a case runs past kWatchdog: a hang is a failure, not an outcome.
class Watchdog {
public:
    Watchdog() : thread_(spawn([this] { loop(); })) {}
    ~Watchdog() {
        {
            std::lock_guard lk(mu_);
            stop_ = true;
        }
        cv_.notify_all();
    }
    void arm(const std::string& name) {
        std::lock_guard lk(mu_);
        name_ = name;
        deadline_ = std::chrono::steady_clock::now() + kWatchdog;
        armed_ = true;
        cv_.notify_all();
    }
    void disarm() {
        std::lock_guard lk(mu_);
        armed_ = false;
    }

private:
    void loop() {
        std::unique_lock lk(mu_);
        while (!stop_) {
            if (!armed_) {
                cv_.wait(lk);
                continue;
            }
            if (cv_.wait_until(lk, deadline_) == std::cv_status::timeout && armed_ &&
                std::chrono::steady_clock::now() >= deadline_) {
                print_line({{"case", name_}, {"error", "watchdog: case did not finish in 5 s"}});
                std::fflush(nullptr);
                _exit(kExitSetup);
            }
        }
    }
    std::mutex mu_;
    std::condition_variable cv_;
    std::string name_;
    std::chrono::steady_clock::time_point deadline_;
    bool armed_ = false, stop_ = false;
    std::jthread thread_;  // last: starts after the members it uses exist
};

void move_to_cgroup(const std::string& dir) {
    const std::string path = dir + "/cgroup.procs";
    UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) throw SetupError{cat("cannot open ", path, ": ", errname(errno))};
    const std::string pid = std::to_string(getpid()) + "\n";
    if (::write(fd.get(), pid.data(), pid.size()) != static_cast<ssize_t>(pid.size()))
        throw SetupError{cat("cannot write ", path, ": ", errname(errno))};
}

int run_case(const Case& c, Watchdog& dog) {
    ojson j;
    j["case"] = c.name;
    g_ports = {};
    dog.arm(c.name);
    int rc = 0;
    try {
        j["outcome"] = c.fn();
        j["client_port"] = g_ports.client;
        j["server_port"] = g_ports.server;
    } catch (const SetupError& e) {
        j["error"] = e.message;
        rc = kExitSetup;
    }
    dog.disarm();
    print_line(j);
    return rc;
}

int run(int argc, char** argv) {
    CLI::App app{"sockaccel-compat: socket-API compatibility matrix over loopback TCP"};
    bool list = false, all = false;
    std::string name, cgroup;
    app.add_flag("--list", list, "Print the case names, one per line");
    app.add_option("--case", name, "Run one case");
    app.add_flag("--all", all, "Run every case in order");
    app.add_option("--cgroup", cgroup, "cgroup v2 directory to move this process into first");
    std::string establish = "blocking";
    app.add_option("--establish", establish,
                   "How pairs are set up: blocking (sockets blocking from the start), "
                   "nonblocking (non-blocking connect/accept and one byte client to server, "
                   "then blocking) or nonblocking-io (set up like nonblocking, then staying "
                   "non-blocking, with event-loop I/O: poll() and retry on EAGAIN)")
        ->check(CLI::IsMember({"blocking", "nonblocking", "nonblocking-io"}));
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : kExitUsage;
    }
    if (static_cast<int>(list) + static_cast<int>(all) + static_cast<int>(!name.empty()) != 1) {
        std::cerr << "exactly one of --list, --case NAME, --all\n";
        return kExitUsage;
    }
    if (list) {
        for (const auto& c : cases()) std::cout << c.name << '\n';
        return 0;
    }
    const Case* one = nullptr;
    if (!name.empty()) {
        for (const auto& c : cases())
            if (name == c.name) one = &c;
        if (one == nullptr) {
            std::cerr << "unknown case: " << name << " (see --list)\n";
            return kExitUsage;
        }
    }
    g_establish = establish == "nonblocking"      ? Establish::nonblocking
                  : establish == "nonblocking-io" ? Establish::nonblocking_io
                                                  : Establish::blocking;
    signal(SIGPIPE, SIG_IGN);
    if (!cgroup.empty()) {
        try {
            move_to_cgroup(cgroup);
        } catch (const SetupError& e) {
            print_line({{"case", one ? one->name : "all"}, {"error", e.message}});
            return kExitSetup;
        }
    }
    Watchdog dog;
    if (one != nullptr) return run_case(*one, dog);
    int rc = 0;
    for (const auto& c : cases()) rc = std::max(rc, run_case(c, dog));
    return rc;
}

}  // namespace
}  // namespace sockaccel::compat

int main(int argc, char** argv) { return sockaccel::compat::run(argc, argv); }
