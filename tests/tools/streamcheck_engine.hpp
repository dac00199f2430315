// SPDX-License-Identifier: Apache-2.0
//
// Shared pieces of the two I/O engines of sockaccel-streamcheck: configuration, the report,
// and ConnCore, the socket-free state of one connection (its sender and verifier).
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "streamcheck_stream.hpp"

namespace sockaccel::streamcheck {

enum class IoMode { kEpoll, kBlocking };

// A receiver that stops reading for a while (--read-pause-*): once a connection's receiver has
// received `after_bytes` payload bytes it reads nothing for `ms` milliseconds, and, with a hold
// file, also until that file no longer exists. One pause per receiving stream. Lets tests put
// back-pressure on the sender and hold unread data in the receiver while they act.
struct ReadPauseParams {
    uint32_t ms = 0;
    uint64_t after_bytes = 0;
    // Created (a line appended: "<pid> <label>") when a pause begins; the pause lasts until it
    // is removed. While it exists, a sender that gets EAGAIN copies its content to
    // "<hold_file>.blocked" and a paused receiver with unread data to "<hold_file>.queued".
    std::string hold_file;
    bool c2s = true;  // the server's receivers pause
    bool s2c = true;  // the client's receivers pause

    bool enabled() const { return ms > 0 || !hold_file.empty(); }
    bool applies(bool is_client) const { return enabled() && (is_client ? s2c : c2s); }
    // True once `received` payload bytes should start the pause.
    bool due(bool is_client, uint64_t received) const {
        return applies(is_client) && received >= after_bytes;
    }
};

// Starts a pause: appends "<pid> <label>" to the hold file (if any).
void read_pause_begin(const ReadPauseParams& p, const std::string& label);
// True while the hold file exists.
bool read_pause_held(const ReadPauseParams& p);
// If the hold file exists, copies its content to "<hold_file><suffix>" (atomically), so a test
// can tell which pause an observation belongs to. Used with ".blocked" by a sender whose send
// returned EAGAIN, and with ".queued" by a paused receiver whose socket has unread data.
void read_pause_mark(const ReadPauseParams& p, const char* suffix);
// Non-consuming check for unread data (or EOF) on a socket.
bool socket_readable(int fd);

struct Config {
    std::string addr = "127.0.0.1";
    std::string listen_addr;  // pair: server bind address (default derived from addr)
    uint16_t port = 0;
    uint64_t connections = 0;  // client: connections to make; server: to accept (0 = no limit)
    uint64_t parallel = 0;     // client: max open at once (0 = all)
    IoMode io = IoMode::kEpoll;
    double timeout_sec = 60.0;
    uint64_t seed = 0;
    bool seed_given = false;  // server: only then are headers required to carry this seed
    SizeParams sizes;
    SenderParams sender;
    FaultSpec fault;
    ReadPauseParams read_pause;
    // Client: shut down the write side only once the server's whole stream (and its EOF)
    // arrived, so the server's reply starts while the client is still open.
    bool late_half_close = false;
    std::string cgroup;
    std::string server_cgroup;
    std::string client_cgroup;
    // Network namespaces (a /run/netns/NAME or /proc/PID/ns/net path) to
    // enter before creating sockets; empty = stay.
    std::string netns;
    std::string server_netns;
    std::string client_netns;
};

const char* io_mode_name(IoMode io);

// Counters of one side (client or server). Byte counters cover payload only (headers
// excluded) so that in a clean run bytes_received == bytes_expected.
struct Report {
    uint64_t connections = 0;  // client: started; server: accepted
    uint64_t completed = 0;    // ran to the end: everything sent, EOF read, no error, no hang
    uint64_t bytes_sent = 0;
    uint64_t bytes_received = 0;
    uint64_t bytes_expected = 0;
    uint64_t lost = 0;
    uint64_t duplicated = 0;
    uint64_t reordered = 0;
    uint64_t corrupted = 0;
    uint64_t hangs = 0;
    uint64_t errors = 0;
    uint64_t eagain_on_blocking_read = 0;
    uint64_t read_pauses = 0;  // --read-pause-*: pauses taken by this side's receivers
    uint64_t send_eagain = 0;  // epoll engine: sends that returned EAGAIN (back-pressure)
    // Blocking engine: threads that did not even react to shutdown() by the deadline. The
    // process must then leave with _exit() instead of waiting for them.
    uint64_t abandoned_threads = 0;
    double elapsed_sec = 0;
    std::vector<Failure> failures;  // earliest kMaxReportFailures, chronological

    static constexpr size_t kMaxReportFailures = 20;

    void add_failure(Failure f);
    void add_failures(const std::vector<Failure>& fs);
    void merge(const Report& other);  // sums counters, merges failures (elapsed: max)
    bool ok() const;
    int exit_code() const { return ok() ? 0 : 1; }
    // Appends the report fields to j. with_times adds failure timestamps (used on the pair
    // pipe so the parent can merge both sides chronologically).
    void append_json(nlohmann::ordered_json& j, bool with_times = false) const;
    static Report from_json(const nlohmann::json& j);
};

// Incremented by SIGTERM/SIGINT. First request: stop starting/accepting connections and let
// open ones finish (each still bounded by its deadline). Second: abort open ones as hangs.
extern std::atomic<int> g_stop_requests;
void install_signal_handlers();

// Server side: remembers (seed, conn id) pairs seen so a stream arriving twice (cross-talk, or
// a redirect into the wrong socket) is noticed even when each copy is intact on its own. The
// seed is part of the key because a standalone server may serve several client runs.
class ConnIdRegistry {
public:
    bool claim(uint64_t seed, uint32_t id);

private:
    std::mutex mu_;
    std::set<std::pair<uint64_t, uint32_t>> seen_;
};

enum class SendState {
    kAwaitingHeader,  // server: reply length not known until the request header arrives
    kActive,
    kNone,  // server: request header bad or missing, nothing will be sent
};

enum class Outcome { kCompleted, kError, kHang };

class ConnCore {
public:
    static ConnCore client(const Config& cfg, uint32_t conn_id);
    static ConnCore server(const Config& cfg, uint64_t accept_index, ConnIdRegistry* registry);

    // Received bytes / EOF of the incoming stream.
    void on_data(const uint8_t* data, size_t n);
    void on_eof();

    bool is_client() const { return is_client_; }
    SendState send_state() const { return send_state_; }
    StreamSender& sender() { return *sender_; }
    const StreamVerifier& verifier() const { return verifier_; }

    std::string label() const;     // "conn 3" or "accepted #7" before the header
    std::string progress() const;  // byte counts for hang / error messages

    // Adds this connection's outcome and counters to the report. detail describes an error or
    // hang (ignored for kCompleted).
    void collect(Report& report, Outcome outcome, const std::string& detail) const;

private:
    ConnCore(const Config& cfg, bool is_client, StreamVerifier verifier);
    void maybe_start_reply();

    const Config* cfg_;
    bool is_client_;
    uint32_t conn_id_ = 0;
    uint64_t accept_index_ = 0;
    ConnIdRegistry* registry_ = nullptr;
    uint64_t expected_in_ = 0;
    std::optional<StreamSender> sender_;
    StreamVerifier verifier_;
    SendState send_state_ = SendState::kAwaitingHeader;
    std::vector<Failure> extra_failures_;
    uint64_t extra_errors_ = 0;
};

// Socket helpers ------------------------------------------------------------------------------

struct SockAddr {
    sockaddr_storage ss{};
    socklen_t len = 0;
    int family() const { return ss.ss_family; }
    void set_port(uint16_t port);
    std::string to_string() const;
};

// Numeric address only (no DNS); returns an error message on failure.
std::optional<std::string> resolve_numeric(const std::string& addr, uint16_t port, SockAddr& out);

// Nonblocking listening socket; IPv6 sockets are dual-stack (IPV6_V6ONLY=0).
int make_listener(const SockAddr& addr, std::string& error);
uint16_t local_port(int fd);

// Engines ---------------------------------------------------------------------------------

// Both take ownership of the listening socket.
Report run_server_epoll(const Config& cfg, int listen_fd);
Report run_client_epoll(const Config& cfg, const SockAddr& dst);
Report run_server_blocking(const Config& cfg, int listen_fd);
Report run_client_blocking(const Config& cfg, const SockAddr& dst);

inline Report run_server(const Config& cfg, int listen_fd) {
    return cfg.io == IoMode::kEpoll ? run_server_epoll(cfg, listen_fd)
                                    : run_server_blocking(cfg, listen_fd);
}
inline Report run_client(const Config& cfg, const SockAddr& dst) {
    return cfg.io == IoMode::kEpoll ? run_client_epoll(cfg, dst) : run_client_blocking(cfg, dst);
}

std::string errno_string(const char* what, int err);
// "1.5 s" rather than std::to_string's "1.500000".
std::string format_seconds(double sec);

}  // namespace sockaccel::streamcheck
