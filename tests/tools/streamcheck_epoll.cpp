// SPDX-License-Identifier: Apache-2.0
//
// Default I/O engine: nonblocking sockets driven by one level-triggered epoll loop per process.
// Level-triggered keeps fairness simple (one read per readiness event, the kernel reports the
// socket again if more is queued); EPOLLOUT interest is only registered while there is
// something to send and no pause is running, so an idle writable socket never spins the loop.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <memory>
#include <queue>
#include <unordered_map>

#include "streamcheck_engine.hpp"

namespace sockaccel::streamcheck {

namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kListenKey = 0;
constexpr size_t kReadBuffer = 256 * 1024;
// Writes per EPOLLOUT event before yielding to other connections.
constexpr int kWritesPerEvent = 8;
// Upper bound on one epoll_wait so signals that slip in before the call are still noticed.
constexpr int kMaxWaitMs = 100;

struct Conn {
    uint64_t key = 0;
    int fd = -1;
    bool connecting = false;
    bool recv_done = false;
    bool send_done = false;  // everything sent and SHUT_WR issued (or nothing to send)
    bool shutdown_deferred = false;  // --late-half-close: SHUT_WR waits for the peer's EOF
    bool paused = false;
    bool read_paused = false;      // --read-pause-*: not reading for now
    bool read_pause_taken = false;  // the one pause of this receiver has begun
    bool read_pause_marked = false;  // "<hold>.queued" written for this pause
    bool registered = true;         // in the epoll set (left while read-paused with no interest)
    uint32_t interest = 0;
    Clock::time_point deadline;
    ConnCore core;

    Conn(ConnCore c) : core(std::move(c)) {}
};

enum class TimerKind { kDeadline, kResume, kResumeRead };

struct Timer {
    Clock::time_point when;
    uint64_t key;
    TimerKind kind;
    bool operator>(const Timer& o) const { return when > o.when; }
};

class EpollEngine {
public:
    EpollEngine(const Config& cfg) : cfg_(cfg), rbuf_(kReadBuffer) {
        ep_ = epoll_create1(EPOLL_CLOEXEC);
        timeout_ = std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(cfg.timeout_sec));
    }
    ~EpollEngine() {
        for (auto& [key, c] : conns_) close(c->fd);
        if (listen_fd_ >= 0) close(listen_fd_);
        if (ep_ >= 0) close(ep_);
    }

    Report run_client(const SockAddr& dst);
    Report run_server(int listen_fd);

private:
    void open_client(uint32_t conn_id, const SockAddr& dst);
    void accept_ready();
    void stop_listening();
    void handle(Conn& c, uint32_t events);
    bool do_read(Conn& c);
    bool do_write(Conn& c);
    bool finish_send(Conn& c);
    void after_io(Conn& c);
    void update_interest(Conn& c);
    void finalize(Conn& c, Outcome outcome, const std::string& detail);
    void fail(Conn& c, const std::string& detail) { finalize(c, Outcome::kError, detail); }
    void run_timers();
    void abort_all(const std::string& why);
    int wait_timeout_ms() const;
    void poll_once();
    void setup_failure(const std::string& what);

    const Config& cfg_;
    int ep_ = -1;
    int listen_fd_ = -1;
    std::string peer_;  // client: server address, for messages
    Clock::duration timeout_{};
    std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns_;
    std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
    std::vector<uint8_t> rbuf_;
    std::vector<uint8_t> sbuf_;
    uint64_t next_key_ = 1;
    uint64_t accepted_ = 0;
    int handled_stop_requests_ = 0;
    bool fatal_ = false;  // the loop itself broke; give up on everything
    ConnIdRegistry registry_;
    Report report_;
};

void EpollEngine::setup_failure(const std::string& what) {
    ++report_.errors;
    report_.add_failure({monotonic_seconds(), what});
}

void EpollEngine::open_client(uint32_t conn_id, const SockAddr& dst) {
    auto conn = std::make_unique<Conn>(ConnCore::client(cfg_, conn_id));
    Conn& c = *conn;
    c.key = next_key_++;
    c.deadline = Clock::now() + timeout_;
    c.fd = socket(dst.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) {
        c.core.collect(report_, Outcome::kError, errno_string("socket", errno));
        return;
    }
    if (connect(c.fd, reinterpret_cast<const sockaddr*>(&dst.ss), dst.len) != 0) {
        if (errno != EINPROGRESS) {
            const int err = errno;
            close(c.fd);
            c.core.collect(report_, Outcome::kError,
                           errno_string(("connect " + dst.to_string()).c_str(), err));
            return;
        }
        c.connecting = true;
    }
    c.interest = c.connecting ? EPOLLOUT : (EPOLLIN | EPOLLOUT);
    epoll_event ev{};
    ev.events = c.interest;
    ev.data.u64 = c.key;
    if (epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev) != 0) {
        const int err = errno;
        close(c.fd);
        c.core.collect(report_, Outcome::kError, errno_string("epoll_ctl", err));
        return;
    }
    timers_.push({c.deadline, c.key, TimerKind::kDeadline});
    conns_.emplace(c.key, std::move(conn));
}

void EpollEngine::accept_ready() {
    for (;;) {
        if (listen_fd_ < 0) return;
        const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == EINTR || errno == ECONNABORTED) continue;
            setup_failure(errno_string("accept", errno));
            return;
        }
        auto conn = std::make_unique<Conn>(ConnCore::server(cfg_, accepted_++, &registry_));
        Conn& c = *conn;
        c.key = next_key_++;
        c.fd = fd;
        c.deadline = Clock::now() + timeout_;
        c.interest = EPOLLIN;  // nothing to send until the request header arrives
        epoll_event ev{};
        ev.events = c.interest;
        ev.data.u64 = c.key;
        if (epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) {
            const int err = errno;
            close(fd);
            c.core.collect(report_, Outcome::kError, errno_string("epoll_ctl", err));
        } else {
            timers_.push({c.deadline, c.key, TimerKind::kDeadline});
            conns_.emplace(c.key, std::move(conn));
        }
        if (cfg_.connections > 0 && accepted_ >= cfg_.connections) stop_listening();
    }
}

void EpollEngine::stop_listening() {
    if (listen_fd_ < 0) return;
    epoll_ctl(ep_, EPOLL_CTL_DEL, listen_fd_, nullptr);
    // Closing makes further connection attempts fail fast instead of sitting in the backlog.
    close(listen_fd_);
    listen_fd_ = -1;
}

void EpollEngine::handle(Conn& c, uint32_t events) {
    if (c.connecting) {
        if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) return fail(c, errno_string(("connect " + peer_).c_str(), err));
        c.connecting = false;
        events |= EPOLLOUT;
    }
    if (!c.recv_done && !c.read_paused && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) {
        if (!do_read(c)) return;
    }
    if (!c.send_done && (events & (EPOLLOUT | EPOLLERR)) != 0) {
        if (!do_write(c)) return;
    }
    if ((events & EPOLLERR) != 0) {
        // Errors not surfaced by read/write above (e.g. reset while the write side is paused
        // and the read side is finished).
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) return fail(c, errno_string("socket error", err));
    }
    after_io(c);
}

bool EpollEngine::do_read(Conn& c) {
    const ssize_t r = recv(c.fd, rbuf_.data(), rbuf_.size(), 0);
    if (r > 0) {
        c.core.on_data(rbuf_.data(), static_cast<size_t>(r));
        const ReadPauseParams& rp = cfg_.read_pause;
        if (!c.read_pause_taken && rp.due(c.core.is_client(), c.core.verifier().received())) {
            c.read_pause_taken = true;
            c.read_paused = true;
            ++report_.read_pauses;
            read_pause_begin(rp, c.core.label());
            timers_.push({Clock::now() + std::chrono::milliseconds(rp.ms), c.key,
                          TimerKind::kResumeRead});
        }
        return true;
    }
    if (r == 0) {
        c.core.on_eof();
        c.recv_done = true;
        if (c.shutdown_deferred && shutdown(c.fd, SHUT_WR) != 0) {
            fail(c, errno_string("shutdown(SHUT_WR)", errno));
            return false;
        }
        return true;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return true;
    fail(c, errno_string("recv", errno));
    return false;
}

bool EpollEngine::finish_send(Conn& c) {
    // Half-close: the peer reads EOF after the last byte while our read side stays open.
    if (cfg_.late_half_close && c.core.is_client() && !c.recv_done) {
        c.shutdown_deferred = true;  // done by do_read() at the server's EOF
        c.send_done = true;
        return true;
    }
    if (shutdown(c.fd, SHUT_WR) != 0) {
        fail(c, errno_string("shutdown(SHUT_WR)", errno));
        return false;
    }
    c.send_done = true;
    return true;
}

bool EpollEngine::do_write(Conn& c) {
    for (int i = 0; i < kWritesPerEvent; ++i) {
        switch (c.core.send_state()) {
            case SendState::kAwaitingHeader:
                return true;
            case SendState::kNone:
                return finish_send(c);
            case SendState::kActive:
                break;
        }
        StreamSender& s = c.core.sender();
        if (s.done()) return finish_send(c);
        if (c.paused) return true;
        const auto msg = s.current_message(sbuf_);
        const ssize_t w = send(c.fd, msg.data(), msg.size(), MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                ++report_.send_eagain;
                read_pause_mark(cfg_.read_pause, ".blocked");
                return true;
            }
            if (errno == EINTR) continue;
            fail(c, errno_string("send", errno));
            return false;
        }
        const auto pause = s.advance(static_cast<size_t>(w));
        if (pause.count() > 0) {
            c.paused = true;
            timers_.push({Clock::now() + pause, c.key, TimerKind::kResume});
            return true;
        }
    }
    if (c.core.send_state() == SendState::kActive && c.core.sender().done()) {
        return finish_send(c);
    }
    return true;
}

void EpollEngine::after_io(Conn& c) {
    // A server whose request turned out bad has nothing to send: half-close right away so the
    // client is not left waiting for a reply that will never come.
    if (!c.send_done && !c.connecting && c.core.send_state() == SendState::kNone) {
        if (!finish_send(c)) return;
    }
    if (c.recv_done && c.send_done) return finalize(c, Outcome::kCompleted, "");
    update_interest(c);
}

void EpollEngine::update_interest(Conn& c) {
    uint32_t want = 0;
    if (c.connecting) {
        want = EPOLLOUT;
    } else {
        if (!c.recv_done && !c.read_paused) want |= EPOLLIN;
        if (!c.send_done && !c.paused && c.core.send_state() != SendState::kAwaitingHeader) {
            want |= EPOLLOUT;
        }
    }
    if (c.read_paused && want == 0) {
        // Leave the epoll set while nothing is wanted: EPOLLHUP/EPOLLERR are reported whatever
        // the interest, and would spin the loop for the whole pause.
        if (c.registered && epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr) != 0) {
            return fail(c, errno_string("epoll_ctl(DEL)", errno));
        }
        c.registered = false;
        c.interest = 0;
        return;
    }
    if (want == c.interest && c.registered) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.u64 = c.key;
    if (epoll_ctl(ep_, c.registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c.fd, &ev) != 0) {
        return fail(c, errno_string("epoll_ctl(MOD)", errno));
    }
    c.registered = true;
    c.interest = want;
}

void EpollEngine::finalize(Conn& c, Outcome outcome, const std::string& detail) {
    if (outcome == Outcome::kHang) {
        // Abort with RST (linger 0) rather than a FIN: the connection is declared dead and the
        // peer should notice immediately instead of waiting for its own deadline.
        linger lg{1, 0};
        setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    if (c.registered) epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
    close(c.fd);
    c.core.collect(report_, outcome, detail);
    conns_.erase(c.key);  // destroys c
}

void EpollEngine::run_timers() {
    const auto now = Clock::now();
    while (!timers_.empty() && timers_.top().when <= now) {
        const Timer t = timers_.top();
        timers_.pop();
        auto it = conns_.find(t.key);
        if (it == conns_.end()) continue;  // connection already gone
        Conn& c = *it->second;
        if (t.kind == TimerKind::kDeadline) {
            finalize(c, Outcome::kHang,
                     "hang: not finished within " + format_seconds(cfg_.timeout_sec) + " (" +
                         c.core.progress() + ")");
        } else if (t.kind == TimerKind::kResumeRead) {
            if (read_pause_held(cfg_.read_pause)) {
                if (!c.read_pause_marked && socket_readable(c.fd)) {
                    c.read_pause_marked = true;
                    read_pause_mark(cfg_.read_pause, ".queued");
                }
                timers_.push({now + std::chrono::milliseconds(10), c.key, TimerKind::kResumeRead});
                continue;
            }
            c.read_paused = false;
            update_interest(c);
        } else {
            c.paused = false;
            if (do_write(c)) after_io(c);
        }
    }
}

void EpollEngine::abort_all(const std::string& why) {
    std::vector<uint64_t> keys;
    for (auto& [key, c] : conns_) keys.push_back(key);
    for (uint64_t key : keys) {
        Conn& c = *conns_.at(key);
        finalize(c, Outcome::kHang, "hang: " + why + " (" + c.core.progress() + ")");
    }
}

int EpollEngine::wait_timeout_ms() const {
    if (timers_.empty()) return kMaxWaitMs;
    const auto delta = timers_.top().when - Clock::now();
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(delta).count();
    return static_cast<int>(std::clamp<int64_t>(ms, 0, kMaxWaitMs));
}

void EpollEngine::poll_once() {
    epoll_event events[256];
    const int n = epoll_wait(ep_, events, 256, wait_timeout_ms());
    if (n < 0 && errno != EINTR) {
        setup_failure(errno_string("epoll_wait", errno));
        abort_all("epoll_wait failed");
        fatal_ = true;
        return;
    }
    for (int i = 0; i < n; ++i) {
        const uint64_t key = events[i].data.u64;
        if (key == kListenKey) {
            accept_ready();
            continue;
        }
        auto it = conns_.find(key);
        if (it == conns_.end()) continue;  // finalized earlier in this batch
        handle(*it->second, events[i].events);
    }
    run_timers();
}

Report EpollEngine::run_client(const SockAddr& dst) {
    const double start = monotonic_seconds();
    const uint64_t parallel = cfg_.parallel == 0 ? cfg_.connections : cfg_.parallel;
    peer_ = dst.to_string();
    uint64_t next_id = 0;
    bool stop_opening = false;
    for (;;) {
        const int stops = g_stop_requests.load();
        if (stops > handled_stop_requests_) {
            handled_stop_requests_ = stops;
            stop_opening = true;
            if (stops >= 2) abort_all("aborted by second stop signal");
        }
        while (!stop_opening && next_id < cfg_.connections && conns_.size() < parallel) {
            open_client(static_cast<uint32_t>(next_id++), dst);
        }
        if (fatal_ || (conns_.empty() && (stop_opening || next_id >= cfg_.connections))) break;
        poll_once();
    }
    report_.elapsed_sec = monotonic_seconds() - start;
    return std::move(report_);
}

Report EpollEngine::run_server(int listen_fd) {
    const double start = monotonic_seconds();
    listen_fd_ = listen_fd;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kListenKey;
    if (epoll_ctl(ep_, EPOLL_CTL_ADD, listen_fd_, &ev) != 0) {
        setup_failure(errno_string("epoll_ctl(listen)", errno));
        stop_listening();
    }
    for (;;) {
        const int stops = g_stop_requests.load();
        if (stops > handled_stop_requests_) {
            handled_stop_requests_ = stops;
            stop_listening();
            if (stops >= 2) abort_all("aborted by second stop signal");
        }
        if (fatal_ || (listen_fd_ < 0 && conns_.empty())) break;
        poll_once();
    }
    report_.elapsed_sec = monotonic_seconds() - start;
    return std::move(report_);
}

}  // namespace

Report run_client_epoll(const Config& cfg, const SockAddr& dst) {
    EpollEngine engine(cfg);
    return engine.run_client(dst);
}

Report run_server_epoll(const Config& cfg, int listen_fd) {
    EpollEngine engine(cfg);
    return engine.run_server(listen_fd);
}

}  // namespace sockaccel::streamcheck
