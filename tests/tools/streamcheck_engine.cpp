// SPDX-License-Identifier: Apache-2.0
#include "streamcheck_engine.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace sockaccel::streamcheck {

std::atomic<int> g_stop_requests{0};

namespace {

void on_stop_signal(int) { g_stop_requests.fetch_add(1, std::memory_order_relaxed); }

}  // namespace

const char* io_mode_name(IoMode io) { return io == IoMode::kEpoll ? "epoll" : "blocking"; }

std::string errno_string(const char* what, int err) {
    return std::string(what) + ": " + std::strerror(err);
}

std::string format_seconds(double sec) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g s", sec);
    return buf;
}

void install_signal_handlers() {
    // No SA_RESTART: a blocked epoll_wait()/poll() should return EINTR and notice the request.
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    // A peer reset must surface as EPIPE in our counters, not kill the process (MSG_NOSIGNAL is
    // used as well; this covers shutdown() and anything else).
    signal(SIGPIPE, SIG_IGN);
}

// Read pauses -------------------------------------------------------------------------------

void read_pause_begin(const ReadPauseParams& p, const std::string& label) {
    if (p.hold_file.empty()) return;
    const int fd = open(p.hold_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return;
    const std::string line = std::to_string(getpid()) + " " + label + "\n";
    (void)!write(fd, line.data(), line.size());
    close(fd);
}

bool read_pause_held(const ReadPauseParams& p) {
    return !p.hold_file.empty() && access(p.hold_file.c_str(), F_OK) == 0;
}

void read_pause_mark(const ReadPauseParams& p, const char* suffix) {
    if (p.hold_file.empty()) return;
    const int in = open(p.hold_file.c_str(), O_RDONLY | O_CLOEXEC);
    if (in < 0) return;  // no pause in progress
    char buf[4096];
    const ssize_t n = read(in, buf, sizeof buf);
    close(in);
    if (n <= 0) return;
    // Write then rename, so a reader never sees a partial copy.
    const std::string target = p.hold_file + suffix;
    const std::string tmp = target + "." + std::to_string(getpid());
    const int out = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) return;
    (void)!write(out, buf, static_cast<size_t>(n));
    close(out);
    if (rename(tmp.c_str(), target.c_str()) != 0) unlink(tmp.c_str());
}

bool socket_readable(int fd) {
    pollfd pfd{fd, POLLIN, 0};
    return poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR)) != 0;
}

// Report ---------------------------------------------------------------------------------------

void Report::add_failure(Failure f) {
    if (failures.size() >= kMaxReportFailures && f.when >= failures.back().when) return;
    auto pos = std::upper_bound(failures.begin(), failures.end(), f.when,
                                [](double t, const Failure& x) { return t < x.when; });
    failures.insert(pos, std::move(f));
    if (failures.size() > kMaxReportFailures) failures.pop_back();
}

void Report::add_failures(const std::vector<Failure>& fs) {
    for (const auto& f : fs) add_failure(f);
}

void Report::merge(const Report& o) {
    connections += o.connections;
    completed += o.completed;
    bytes_sent += o.bytes_sent;
    bytes_received += o.bytes_received;
    bytes_expected += o.bytes_expected;
    lost += o.lost;
    duplicated += o.duplicated;
    reordered += o.reordered;
    corrupted += o.corrupted;
    hangs += o.hangs;
    errors += o.errors;
    eagain_on_blocking_read += o.eagain_on_blocking_read;
    read_pauses += o.read_pauses;
    send_eagain += o.send_eagain;
    abandoned_threads += o.abandoned_threads;
    elapsed_sec = std::max(elapsed_sec, o.elapsed_sec);
    add_failures(o.failures);
}

bool Report::ok() const {
    return lost == 0 && duplicated == 0 && reordered == 0 && corrupted == 0 && hangs == 0 &&
           errors == 0;
}

void Report::append_json(nlohmann::ordered_json& j, bool with_times) const {
    j["connections"] = connections;
    j["completed"] = completed;
    j["bytes_sent"] = bytes_sent;
    j["bytes_received"] = bytes_received;
    j["bytes_expected"] = bytes_expected;
    j["lost"] = lost;
    j["duplicated"] = duplicated;
    j["reordered"] = reordered;
    j["corrupted"] = corrupted;
    j["hangs"] = hangs;
    j["errors"] = errors;
    j["eagain_on_blocking_read"] = eagain_on_blocking_read;
    j["read_pauses"] = read_pauses;
    j["send_eagain"] = send_eagain;
    if (abandoned_threads > 0) j["abandoned_threads"] = abandoned_threads;
    if (!failures.empty()) {
        j["first_failure"] = failures.front().what;
        auto arr = nlohmann::ordered_json::array();
        for (const auto& f : failures) {
            if (with_times) {
                arr.push_back({{"t", f.when}, {"what", f.what}});
            } else {
                arr.push_back(f.what);
            }
        }
        j["failures"] = std::move(arr);
    }
    j["elapsed_sec"] = elapsed_sec;
}

Report Report::from_json(const nlohmann::json& j) {
    Report r;
    auto get = [&](const char* key) { return j.value(key, uint64_t{0}); };
    r.connections = get("connections");
    r.completed = get("completed");
    r.bytes_sent = get("bytes_sent");
    r.bytes_received = get("bytes_received");
    r.bytes_expected = get("bytes_expected");
    r.lost = get("lost");
    r.duplicated = get("duplicated");
    r.reordered = get("reordered");
    r.corrupted = get("corrupted");
    r.hangs = get("hangs");
    r.errors = get("errors");
    r.eagain_on_blocking_read = get("eagain_on_blocking_read");
    r.read_pauses = get("read_pauses");
    r.send_eagain = get("send_eagain");
    r.abandoned_threads = get("abandoned_threads");
    r.elapsed_sec = j.value("elapsed_sec", 0.0);
    if (auto it = j.find("failures"); it != j.end() && it->is_array()) {
        for (const auto& f : *it) {
            if (f.is_object()) {
                r.add_failure({f.value("t", 0.0), f.value("what", std::string())});
            } else if (f.is_string()) {
                r.add_failure({0.0, f.get<std::string>()});
            }
        }
    }
    return r;
}

// ConnIdRegistry -----------------------------------------------------------------------------

bool ConnIdRegistry::claim(uint64_t seed, uint32_t id) {
    std::lock_guard lock(mu_);
    return seen_.emplace(seed, id).second;
}

// ConnCore -------------------------------------------------------------------------------------

ConnCore::ConnCore(const Config& cfg, bool is_client, StreamVerifier verifier)
    : cfg_(&cfg), is_client_(is_client), verifier_(std::move(verifier)) {}

ConnCore ConnCore::client(const Config& cfg, uint32_t conn_id) {
    const ConnPlan plan = plan_connection(cfg.seed, conn_id, cfg.sizes);
    ExpectedStream expect;
    expect.direction = Direction::kServerToClient;
    expect.conn_id = conn_id;
    expect.payload_len = plan.s2c_len;
    expect.seed = cfg.seed;
    expect.run_seed = cfg.seed;
    expect.run_connections = cfg.connections;
    ConnCore core(cfg, true, StreamVerifier(std::move(expect)));
    core.conn_id_ = conn_id;
    core.expected_in_ = plan.s2c_len;
    StreamHeader header;
    header.conn_id = conn_id;
    header.direction = Direction::kClientToServer;
    header.payload_len = plan.c2s_len;
    header.reply_len = plan.s2c_len;
    header.seed = cfg.seed;
    core.sender_.emplace(header, cfg.sender, &cfg.fault);
    core.send_state_ = SendState::kActive;
    return core;
}

ConnCore ConnCore::server(const Config& cfg, uint64_t accept_index, ConnIdRegistry* registry) {
    ExpectedStream expect;
    expect.direction = Direction::kClientToServer;
    if (cfg.seed_given) {
        expect.seed = cfg.seed;
        expect.run_seed = cfg.seed;
        expect.run_connections = cfg.connections;
    }
    expect.name = "accepted #" + std::to_string(accept_index);
    ConnCore core(cfg, false, StreamVerifier(std::move(expect)));
    core.accept_index_ = accept_index;
    // Only a server bound to one client run (--seed, always the case in pair) can tell a
    // repeated conn id from a legitimately repeated run.
    core.registry_ = cfg.seed_given ? registry : nullptr;
    return core;
}

void ConnCore::on_data(const uint8_t* data, size_t n) {
    verifier_.feed(data, n);
    maybe_start_reply();
}

void ConnCore::on_eof() {
    verifier_.finish();
    maybe_start_reply();
    if (send_state_ == SendState::kAwaitingHeader) send_state_ = SendState::kNone;
}

void ConnCore::maybe_start_reply() {
    if (send_state_ != SendState::kAwaitingHeader) return;
    switch (verifier_.header_state()) {
        case StreamVerifier::HeaderState::kPending:
            return;
        case StreamVerifier::HeaderState::kInvalid:
            send_state_ = SendState::kNone;
            return;
        case StreamVerifier::HeaderState::kValid:
            break;
    }
    const StreamHeader& req = verifier_.header();
    conn_id_ = req.conn_id;
    expected_in_ = req.payload_len;
    if (registry_ != nullptr && !registry_->claim(req.seed, req.conn_id)) {
        ++extra_errors_;
        extra_failures_.push_back(
            {monotonic_seconds(), label() + ": conn id " + std::to_string(req.conn_id) +
                                      " arrived on a second connection (cross-talk?)"});
    }
    StreamHeader reply;
    reply.conn_id = req.conn_id;
    reply.direction = Direction::kServerToClient;
    reply.payload_len = req.reply_len;
    reply.seed = req.seed;
    sender_.emplace(reply, cfg_->sender, &cfg_->fault);
    send_state_ = SendState::kActive;
}

std::string ConnCore::label() const {
    if (is_client_) return "conn " + std::to_string(conn_id_);
    if (verifier_.header_state() == StreamVerifier::HeaderState::kValid) {
        return "conn " + std::to_string(conn_id_) + " (accepted #" + std::to_string(accept_index_) +
               ")";
    }
    return "accepted #" + std::to_string(accept_index_);
}

std::string ConnCore::progress() const {
    const char* out_dir = is_client_ ? "c2s" : "s2c";
    const char* in_dir = is_client_ ? "s2c" : "c2s";
    std::string s = std::string(out_dir) + " sent ";
    if (sender_) {
        s += std::to_string(sender_->payload_sent()) + "/" +
             std::to_string(sender_->payload_len()) + " payload bytes";
    } else {
        s += send_state_ == SendState::kNone ? "nothing (no valid request)"
                                             : "nothing yet (request header incomplete)";
    }
    s += ", " + std::string(in_dir) + " received " + std::to_string(verifier_.received());
    if (is_client_ || verifier_.header_state() == StreamVerifier::HeaderState::kValid) {
        s += "/" + std::to_string(expected_in_);
    }
    s += verifier_.finished() ? " (EOF seen)" : " (no EOF)";
    return s;
}

void ConnCore::collect(Report& r, Outcome outcome, const std::string& detail) const {
    ++r.connections;
    switch (outcome) {
        case Outcome::kCompleted:
            ++r.completed;
            break;
        case Outcome::kError:
            ++r.errors;
            r.add_failure({monotonic_seconds(), label() + ": " + detail});
            break;
        case Outcome::kHang:
            ++r.hangs;
            r.add_failure({monotonic_seconds(), label() + ": " + detail});
            break;
    }
    if (sender_) r.bytes_sent += sender_->payload_sent();
    r.bytes_received += verifier_.received();
    r.bytes_expected += expected_in_;
    const StreamStats& st = verifier_.stats();
    r.lost += st.lost;
    r.duplicated += st.duplicated;
    r.reordered += st.reordered;
    r.corrupted += st.corrupted;
    r.errors += extra_errors_;
    r.add_failures(st.failures);
    r.add_failures(extra_failures_);
}

// Sockets --------------------------------------------------------------------------------------

void SockAddr::set_port(uint16_t port) {
    if (ss.ss_family == AF_INET) {
        reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(port);
    } else {
        reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(port);
    }
}

std::string SockAddr::to_string() const {
    char host[NI_MAXHOST];
    char serv[NI_MAXSERV];
    if (getnameinfo(reinterpret_cast<const sockaddr*>(&ss), len, host, sizeof host, serv,
                    sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        return "?";
    }
    return ss.ss_family == AF_INET6 ? "[" + std::string(host) + "]:" + serv
                                    : std::string(host) + ":" + serv;
}

std::optional<std::string> resolve_numeric(const std::string& addr, uint16_t port, SockAddr& out) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    const std::string service = std::to_string(port);
    const int rc = getaddrinfo(addr.c_str(), service.c_str(), &hints, &res);
    if (rc != 0) return "invalid address '" + addr + "': " + gai_strerror(rc);
    std::memcpy(&out.ss, res->ai_addr, res->ai_addrlen);
    out.len = res->ai_addrlen;
    freeaddrinfo(res);
    return std::nullopt;
}

int make_listener(const SockAddr& addr, std::string& error) {
    const int fd = socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error = errno_string("socket", errno);
        return -1;
    }
    const int one = 1;
    const int zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    // Dual stack, so "::" also serves ::ffff:127.0.0.1 (v4-mapped) clients.
    if (addr.family() == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) != 0) {
        error = errno_string("setsockopt(IPV6_V6ONLY=0)", errno);
        close(fd);
        return -1;
    }
    if (bind(fd, reinterpret_cast<const sockaddr*>(&addr.ss), addr.len) != 0) {
        error = errno_string(("bind " + addr.to_string()).c_str(), errno);
        close(fd);
        return -1;
    }
    if (listen(fd, SOMAXCONN) != 0) {
        error = errno_string("listen", errno);
        close(fd);
        return -1;
    }
    return fd;
}

uint16_t local_port(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
    if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

}  // namespace sockaccel::streamcheck
