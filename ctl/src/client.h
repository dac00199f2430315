// SPDX-License-Identifier: Apache-2.0
//
// The sockaccelctl side of the control protocol: a blocking client for
// sockacceld's Unix socket that sends one request at a time and waits for
// its response.
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <tl/expected.hpp>

#include "sockaccel/proto/protocol.h"

namespace sockaccel::ctl {

// Why no response could be obtained. All of these mean exit status 3, except
// kCancelled (the user pressed Ctrl-C while waiting).
enum class TransportErrorKind {
    kUnreachable,  // connect() failed: no socket, refused, permission, ...
    kTimeout,      // connecting or waiting for the response took too long
    kClosed,       // the daemon closed the connection without answering
    kMalformed,    // the response is not a valid protocol response
    kCancelled,    // the cancel fd became readable (see Client::set_cancel_fd)
};

struct TransportError {
    TransportErrorKind kind;
    // A complete sentence naming the socket path and the reason, without the
    // "sockaccelctl: " prefix, e.g. "cannot reach sockacceld at
    // /run/sockaccel/sockacceld.sock: not running (connection refused)".
    std::string message;
};

// Contract:
// - call() connects lazily, keeps the connection for later calls, and
//   reconnects when the daemon has closed an idle connection in between (the
//   daemon drops silent clients after control.idle_timeout_sec).
// - Each call has its own deadline covering connect, send and receive.
// - A response is returned whether ok is true or false; only failures to get
//   a well-formed response for this request are TransportErrors. After a
//   TransportError the connection is closed; the next call reconnects.
// - Request ids are 1, 2, 3, ... per Client. A response must echo the id,
//   except that an error response may carry a null id (the daemon sends
//   those for lines it could not read and when refusing a connection).
// - Responses longer than proto::kMaxLineBytes are rejected as kMalformed.
// - Never raises SIGPIPE. Not thread-safe.
class Client {
public:
    explicit Client(std::string socket_path);
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    const std::string& socket_path() const noexcept { return socket_path_; }

    // While waiting, also watch `fd` (e.g. the read end of a self-pipe that a
    // SIGINT handler writes to): once it is readable, the call gives up with
    // kCancelled. -1 disables this.
    void set_cancel_fd(int fd) noexcept { cancel_fd_ = fd; }

    tl::expected<proto::Response, TransportError> call(std::string_view cmd, nlohmann::json args,
                                                       std::chrono::milliseconds timeout);

    void close() noexcept;

private:
    using Clock = std::chrono::steady_clock;

    tl::expected<void, TransportError> connect_socket(Clock::time_point deadline,
                                                      std::chrono::milliseconds timeout);
    // Waits for `events` on fd_ until `deadline`. Returns false on timeout or
    // cancellation, setting *cancelled accordingly.
    bool wait_for(short events, Clock::time_point deadline, bool* cancelled);
    bool cancel_requested() const;
    bool connection_is_stale() const;

    TransportError error(TransportErrorKind kind, std::string message);

    std::string socket_path_;
    int fd_ = -1;
    int cancel_fd_ = -1;
    std::int64_t next_id_ = 1;
    proto::LineFramer framer_;
};

// "10s", "0.5s": a timeout for messages.
std::string format_timeout(std::chrono::milliseconds timeout);

}  // namespace sockaccel::ctl
