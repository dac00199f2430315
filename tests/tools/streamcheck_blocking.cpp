// SPDX-License-Identifier: Apache-2.0
//
// --io blocking: one reader thread and one writer thread per connection doing plain blocking
// read()/send(). This is the mode in which the sockmap quirk of a blocking read() returning
// EAGAIN shows up, so reads go through read() exactly like a naive application would.
//
// Deadlines cannot use SO_RCVTIMEO (its EAGAIN would be indistinguishable from the quirk), so a
// watchdog thread shuts overdue sockets down, which wakes both blocked threads.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <thread>
#include <unordered_map>

#include "streamcheck_engine.hpp"

namespace sockaccel::streamcheck {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr size_t kReadBuffer = 64 * 1024;
// Threads that have not returned this long after their deadline (after shutdown() should
// have woken them) are given up on so that the tool always terminates.
constexpr auto kAbandonGrace = 10s;

class Watchdog {
public:
    using HungFlag = std::shared_ptr<std::atomic<bool>>;

    ~Watchdog() { stop(); }

    void start() {
        thread_ = std::thread([this] { loop(); });
    }

    void stop() {
        {
            std::lock_guard lock(mu_);
            stopping_ = true;
        }
        cv_.notify_all();
        if (thread_.joinable()) thread_.join();
    }

    uint64_t add(int fd, Clock::time_point deadline, HungFlag hung) {
        std::lock_guard lock(mu_);
        const uint64_t id = next_id_++;
        entries_.emplace(id, Entry{fd, deadline, std::move(hung), false});
        if (abort_all_) fire(entries_.at(id));
        return id;
    }

    // After this returns the watchdog will not touch the fd again, so it may be closed.
    void remove(uint64_t id) {
        std::lock_guard lock(mu_);
        entries_.erase(id);
    }

private:
    struct Entry {
        int fd;
        Clock::time_point deadline;
        HungFlag hung;
        bool fired;
    };

    static void fire(Entry& e) {
        if (e.fired) return;
        e.fired = true;
        e.hung->store(true);
        // Wakes a reader blocked in read() (returns 0) and a writer blocked in send() (EPIPE).
        ::shutdown(e.fd, SHUT_RDWR);
    }

    void loop() {
        std::unique_lock lock(mu_);
        while (!stopping_) {
            cv_.wait_for(lock, 20ms);
            if (g_stop_requests.load() >= 2) abort_all_ = true;
            const auto now = Clock::now();
            for (auto& [id, e] : entries_) {
                if (abort_all_ || now >= e.deadline) fire(e);
            }
        }
    }

    std::mutex mu_;
    std::condition_variable cv_;
    std::map<uint64_t, Entry> entries_;
    uint64_t next_id_ = 0;
    bool stopping_ = false;
    bool abort_all_ = false;
    std::thread thread_;
};

struct Shared {
    explicit Shared(const Config& c) : cfg(c) {}

    Config cfg;
    Clock::duration timeout{};
    std::mutex mu;
    std::condition_variable cv;
    uint64_t active = 0;
    std::vector<uint64_t> finished;  // thread ids ready to be joined
    Report report;
    ConnIdRegistry registry;
    Watchdog watchdog;
    Clock::time_point latest_deadline{};
};

void interruptible_sleep(std::chrono::milliseconds d, const std::atomic<bool>& hung) {
    const auto until = Clock::now() + d;
    while (!hung.load()) {
        const auto left = until - Clock::now();
        if (left <= Clock::duration::zero()) return;
        std::this_thread::sleep_for(std::min<Clock::duration>(left, 20ms));
    }
}

void writer_loop(int fd, StreamSender* sender, const std::atomic<bool>* hung,
                 const std::atomic<bool>* wait_eof, std::string* error) {
    std::vector<uint8_t> scratch;
    while (!sender->done()) {
        if (hung->load()) return;
        const auto msg = sender->current_message(scratch);
        const ssize_t w = send(fd, msg.data(), msg.size(), MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
            *error = errno_string("send", errno);
            return;
        }
        const auto pause = sender->advance(static_cast<size_t>(w));
        if (pause.count() > 0) interruptible_sleep(pause, *hung);
    }
    // --late-half-close: first the peer's EOF (the reader sets the flag to false then).
    while (wait_eof != nullptr && wait_eof->load() && !hung->load())
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    // Half-close; the read side stays open until the peer's EOF.
    if (shutdown(fd, SHUT_WR) != 0) *error = errno_string("shutdown(SHUT_WR)", errno);
}

struct ConnResult {
    Outcome outcome = Outcome::kCompleted;
    std::string detail;
    uint64_t eagain = 0;
    uint64_t read_pauses = 0;
};

// Runs both directions of an established blocking socket until EOF + all sent, error or hang.
ConnResult run_connection(Shared& sh, int fd, ConnCore& core, Clock::time_point deadline) {
    ConnResult res;
    auto hung = std::make_shared<std::atomic<bool>>(false);
    const uint64_t watch_id = sh.watchdog.add(fd, deadline, hung);

    std::optional<std::thread> writer;
    std::string write_error;
    std::string read_error;
    bool shut_wr = false;
    std::atomic<bool> wait_eof{sh.cfg.late_half_close && core.is_client()};
    auto start_writer_if_ready = [&] {
        if (writer || shut_wr) return;
        if (core.send_state() == SendState::kActive) {
            writer.emplace(writer_loop, fd, &core.sender(), hung.get(), &wait_eof, &write_error);
        } else if (core.send_state() == SendState::kNone) {
            // Server with a bad/missing request: nothing to send, let the client see EOF.
            shut_wr = true;
            shutdown(fd, SHUT_WR);
        }
    };
    start_writer_if_ready();

    std::vector<uint8_t> buf(kReadBuffer);
    uint32_t eagain_streak = 0;
    bool read_pause_taken = false;
    const ReadPauseParams& rp = sh.cfg.read_pause;
    for (;;) {
        const ssize_t r = read(fd, buf.data(), buf.size());
        if (r > 0) {
            eagain_streak = 0;
            core.on_data(buf.data(), static_cast<size_t>(r));
            start_writer_if_ready();
            if (!read_pause_taken && rp.due(core.is_client(), core.verifier().received())) {
                read_pause_taken = true;
                ++res.read_pauses;
                read_pause_begin(rp, core.label());
                interruptible_sleep(std::chrono::milliseconds(rp.ms), *hung);
                bool marked = false;
                while (!hung->load() && read_pause_held(rp)) {
                    if (!marked && socket_readable(fd)) {
                        marked = true;
                        read_pause_mark(rp, ".queued");
                    }
                    std::this_thread::sleep_for(10ms);
                }
            }
            continue;
        }
        if (r == 0) {
            // After a watchdog shutdown the "EOF" is our own doing, not the peer's.
            if (!hung->load()) core.on_eof();
            wait_eof = false;
            break;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            // A blocking read must never return EAGAIN; sockmap has been seen doing it. Count it
            // and retry, as an application would have to.
            ++res.eagain;
            if (hung->load()) break;
            if (++eagain_streak > 100) std::this_thread::sleep_for(1ms);
            continue;
        }
        read_error = errno_string("read", errno);
        wait_eof = false;
        // Make sure a writer blocked on a full send buffer does not keep us waiting.
        shutdown(fd, SHUT_RDWR);
        break;
    }
    start_writer_if_ready();  // server whose request ended before a valid header
    if (writer) writer->join();
    sh.watchdog.remove(watch_id);

    if (hung->load()) {
        res.outcome = Outcome::kHang;
        res.detail = (g_stop_requests.load() >= 2
                          ? std::string("hang: aborted by second stop signal")
                          : "hang: not finished within " + format_seconds(sh.cfg.timeout_sec)) +
                     " (" + core.progress() + ")";
    } else if (!read_error.empty() || !write_error.empty()) {
        res.outcome = Outcome::kError;
        res.detail = !read_error.empty() ? read_error : write_error;
    }
    return res;
}

// Nonblocking connect bounded by the deadline, then back to blocking mode.
std::optional<ConnResult> connect_until(int fd, const SockAddr& dst, Clock::time_point deadline) {
    ConnResult res;
    res.outcome = Outcome::kError;
    const int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    if (connect(fd, reinterpret_cast<const sockaddr*>(&dst.ss), dst.len) != 0) {
        if (errno != EINPROGRESS) {
            res.detail = errno_string(("connect " + dst.to_string()).c_str(), errno);
            return res;
        }
        for (;;) {
            if (g_stop_requests.load() >= 2 || Clock::now() >= deadline) {
                res.outcome = Outcome::kHang;
                res.detail = "hang: connect to " + dst.to_string() + " did not complete";
                return res;
            }
            pollfd pfd{fd, POLLOUT, 0};
            const int n = poll(&pfd, 1, 100);
            if (n < 0 && errno != EINTR) {
                res.detail = errno_string("poll", errno);
                return res;
            }
            if (n > 0) break;
        }
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            res.detail = errno_string(("connect " + dst.to_string()).c_str(), err);
            return res;
        }
    }
    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    return std::nullopt;
}

void conn_done(Shared& sh, uint64_t thread_id, const ConnCore& core, const ConnResult& res) {
    std::lock_guard lock(sh.mu);
    core.collect(sh.report, res.outcome, res.detail);
    sh.report.eagain_on_blocking_read += res.eagain;
    sh.report.read_pauses += res.read_pauses;
    --sh.active;
    sh.finished.push_back(thread_id);
    sh.cv.notify_all();
}

void client_conn(Shared* sh, uint32_t conn_id, SockAddr dst) {
    ConnCore core = ConnCore::client(sh->cfg, conn_id);
    const auto deadline = Clock::now() + sh->timeout;
    ConnResult res;
    const int fd = socket(dst.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        res.outcome = Outcome::kError;
        res.detail = errno_string("socket", errno);
    } else {
        if (auto failed = connect_until(fd, dst, deadline)) {
            res = *failed;
        } else {
            res = run_connection(*sh, fd, core, deadline);
        }
        close(fd);
    }
    conn_done(*sh, conn_id, core, res);
}

void server_conn(Shared* sh, uint64_t index, int fd) {
    ConnCore core = ConnCore::server(sh->cfg, index, &sh->registry);
    const auto deadline = Clock::now() + sh->timeout;
    const ConnResult res = run_connection(*sh, fd, core, deadline);
    close(fd);
    conn_done(*sh, index, core, res);
}

class ThreadPoolOwner {
public:
    explicit ThreadPoolOwner(const Config& cfg) : sh_(std::make_unique<Shared>(cfg)) {
        sh_->timeout = std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(cfg.timeout_sec));
        sh_->watchdog.start();
    }

    ~ThreadPoolOwner() {
        // Every remaining thread has at least reported completion (or was detached when
        // abandoned), so these joins are immediate.
        for (auto& [id, t] : threads_) {
            if (t.joinable()) t.join();
        }
    }

    Shared& shared() { return *sh_; }

    void spawn(uint64_t id, std::thread t) { threads_.emplace(id, std::move(t)); }

    // Joins threads that have reported completion. Caller must not hold sh.mu.
    void reap() {
        std::vector<uint64_t> done;
        {
            std::lock_guard lock(sh_->mu);
            done.swap(sh_->finished);
        }
        for (uint64_t id : done) {
            auto it = threads_.find(id);
            if (it == threads_.end()) continue;
            it->second.join();
            threads_.erase(it);
        }
    }

    // Waits until at most `limit` connections are active; false if a stop was requested.
    bool wait_active_below(uint64_t limit) {
        for (;;) {
            reap();
            std::unique_lock lock(sh_->mu);
            if (sh_->active < limit) return true;
            if (g_stop_requests.load() > 0) return false;
            sh_->cv.wait_for(lock, 100ms);
        }
    }

    // Waits for every connection thread; gives up on threads stuck well past their deadline.
    Report finish(double start) {
        Clock::time_point second_stop{};
        for (;;) {
            reap();
            std::unique_lock lock(sh_->mu);
            if (sh_->active == 0) break;
            if (g_stop_requests.load() >= 2 && second_stop == Clock::time_point{}) {
                second_stop = Clock::now();
            }
            const auto give_up = std::max(sh_->latest_deadline, second_stop) + kAbandonGrace;
            if (Clock::now() >= give_up) {
                Report& r = sh_->report;
                r.abandoned_threads = sh_->active;
                r.hangs += sh_->active;
                r.add_failure({monotonic_seconds(),
                               std::to_string(sh_->active) +
                                   " connection thread(s) stuck after shutdown(); abandoned"});
                r.elapsed_sec = monotonic_seconds() - start;
                Report copy = r;
                lock.unlock();
                // The stuck threads still reference the shared state: leak it and let the
                // caller leave via _exit().
                for (auto& [id, t] : threads_) t.detach();
                (void)sh_.release();
                return copy;
            }
            sh_->cv.wait_for(lock, 100ms);
        }
        // The last threads may have reported between the reap above and the check.
        reap();
        sh_->watchdog.stop();
        sh_->report.elapsed_sec = monotonic_seconds() - start;
        return std::move(sh_->report);
    }

    void note_deadline(Clock::time_point deadline) {
        std::lock_guard lock(sh_->mu);
        sh_->latest_deadline = std::max(sh_->latest_deadline, deadline);
    }

private:
    std::unique_ptr<Shared> sh_;
    std::unordered_map<uint64_t, std::thread> threads_;
};

}  // namespace

Report run_client_blocking(const Config& cfg, const SockAddr& dst) {
    const double start = monotonic_seconds();
    ThreadPoolOwner pool(cfg);
    Shared& sh = pool.shared();
    const uint64_t parallel = cfg.parallel == 0 ? cfg.connections : cfg.parallel;
    for (uint64_t id = 0; id < cfg.connections; ++id) {
        if (!pool.wait_active_below(parallel)) break;
        pool.note_deadline(Clock::now() + sh.timeout);
        {
            std::lock_guard lock(sh.mu);
            ++sh.active;
        }
        pool.spawn(id, std::thread(client_conn, &sh, static_cast<uint32_t>(id), dst));
    }
    return pool.finish(start);
}

Report run_server_blocking(const Config& cfg, int listen_fd) {
    const double start = monotonic_seconds();
    ThreadPoolOwner pool(cfg);
    Shared& sh = pool.shared();
    uint64_t accepted = 0;
    while (g_stop_requests.load() == 0 && (cfg.connections == 0 || accepted < cfg.connections)) {
        pool.reap();
        pollfd pfd{listen_fd, POLLIN, 0};
        const int n = poll(&pfd, 1, 100);
        if (n <= 0) continue;  // timeout or EINTR: re-check the stop flag
        // Accepted sockets do not inherit O_NONBLOCK from the listener: they are blocking.
        const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                errno == ECONNABORTED) {
                continue;
            }
            std::lock_guard lock(sh.mu);
            ++sh.report.errors;
            sh.report.add_failure({monotonic_seconds(), errno_string("accept", errno)});
            break;
        }
        pool.note_deadline(Clock::now() + sh.timeout);
        {
            std::lock_guard lock(sh.mu);
            ++sh.active;
        }
        const uint64_t index = accepted++;
        pool.spawn(index, std::thread(server_conn, &sh, index, fd));
    }
    close(listen_fd);
    return pool.finish(start);
}

}  // namespace sockaccel::streamcheck
