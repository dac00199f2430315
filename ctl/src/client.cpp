// SPDX-License-Identifier: Apache-2.0
#include "client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

namespace sockaccel::ctl {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

// Why connect() failed, phrased for someone wondering whether the daemon runs.
std::string describe_connect_error(int err, const std::string& path) {
    switch (err) {
        case ENOENT:
        case ENOTDIR:
            return "not running (no such socket)";
        case ECONNREFUSED: {
            // connect() on a regular file is refused too; say so instead of
            // blaming the daemon.
            struct stat st {};
            if (::stat(path.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode)) return "not a socket";
            return "not running (connection refused)";
        }
        case EACCES:
        case EPERM:
            return "permission denied";
        default:
            return errno_text(err);
    }
}

}  // namespace

std::string format_timeout(std::chrono::milliseconds timeout) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%gs", static_cast<double>(timeout.count()) / 1000.0);
    return buf;
}

Client::Client(std::string socket_path) : socket_path_(std::move(socket_path)) {}

Client::~Client() { close(); }

void Client::close() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    framer_ = proto::LineFramer{};
}

TransportError Client::error(TransportErrorKind kind, std::string message) {
    // Whatever went wrong, the stream is no longer in a known state.
    close();
    return TransportError{kind, std::move(message)};
}

bool Client::cancel_requested() const {
    if (cancel_fd_ < 0) return false;
    pollfd p{cancel_fd_, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
}

bool Client::connection_is_stale() const {
    pollfd p{fd_, POLLIN, 0};
    // Any event between requests (HUP, error, or readable: EOF after the
    // daemon closed an idle connection, or unsolicited bytes) means the
    // connection cannot carry the next request reliably: start over.
    return ::poll(&p, 1, 0) > 0;
}

bool Client::wait_for(short events, Clock::time_point deadline, bool* cancelled) {
    *cancelled = false;
    for (;;) {
        if (cancel_requested()) {
            *cancelled = true;
            return false;
        }
        auto now = Clock::now();
        if (now >= deadline) return false;
        auto remaining = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
        std::array<pollfd, 2> fds{pollfd{fd_, events, 0}, pollfd{cancel_fd_, POLLIN, 0}};
        nfds_t nfds = cancel_fd_ >= 0 ? 2 : 1;
        int timeout_ms = static_cast<int>(std::min<long long>(remaining, 1 << 30));
        int n = ::poll(fds.data(), nfds, timeout_ms);
        if (n < 0) {
            if (errno == EINTR) continue;  // a signal: re-check cancellation
            return false;
        }
        if (nfds == 2 && fds[1].revents != 0) {
            *cancelled = true;
            return false;
        }
        // Any event on the socket (including HUP/ERR) means the next
        // send/recv will tell what happened.
        if (fds[0].revents != 0) return true;
    }
}

tl::expected<void, TransportError> Client::connect_socket(Clock::time_point deadline,
                                                          std::chrono::milliseconds timeout) {
    const std::string prefix = "cannot reach sockacceld at " + socket_path_ + ": ";
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket_path_.empty()) {
        return tl::unexpected(error(TransportErrorKind::kUnreachable,
                                    "cannot reach sockacceld: the socket path is empty"));
    }
    if (socket_path_.size() >= sizeof(addr.sun_path)) {
        return tl::unexpected(error(TransportErrorKind::kUnreachable,
                                    prefix + "socket path longer than " +
                                        std::to_string(sizeof(addr.sun_path) - 1) + " bytes"));
    }
    std::memcpy(addr.sun_path, socket_path_.data(), socket_path_.size());

    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
        int err = errno;
        return tl::unexpected(error(TransportErrorKind::kUnreachable, prefix + errno_text(err)));
    }

    for (;;) {
        // connect() on a Unix socket blocks while the daemon's listen backlog
        // is full, bounded by SO_SNDTIMEO (then EAGAIN); a signal
        // interrupts it with EINTR.
        auto remaining = std::chrono::ceil<std::chrono::microseconds>(deadline - Clock::now());
        if (remaining.count() <= 0) remaining = std::chrono::microseconds(1);
        timeval tv{};
        tv.tv_sec = static_cast<time_t>(remaining.count() / 1000000);
        tv.tv_usec = static_cast<suseconds_t>(remaining.count() % 1000000);
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);

        if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) break;
        int err = errno;
        if (err == EINTR) {
            if (cancel_requested()) {
                return tl::unexpected(error(TransportErrorKind::kCancelled, "interrupted"));
            }
            if (Clock::now() < deadline) continue;
            err = EAGAIN;
        }
        if (err == EAGAIN || err == EWOULDBLOCK || err == EINPROGRESS) {
            return tl::unexpected(
                error(TransportErrorKind::kTimeout,
                      prefix + "timed out after " + format_timeout(timeout) +
                          " connecting (the daemon is not accepting connections)"));
        }
        return tl::unexpected(error(TransportErrorKind::kUnreachable,
                                    prefix + describe_connect_error(err, socket_path_)));
    }
    timeval zero{};
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &zero, sizeof zero);
    framer_ = proto::LineFramer{};
    return {};
}

tl::expected<proto::Response, TransportError> Client::call(std::string_view cmd,
                                                           nlohmann::json args,
                                                           std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    const std::string at = "sockacceld at " + socket_path_;

    if (fd_ >= 0 && connection_is_stale()) close();
    if (fd_ < 0) {
        if (auto r = connect_socket(deadline, timeout); !r) return tl::unexpected(r.error());
    }

    const std::int64_t id = next_id_++;
    proto::Request request{id, std::string(cmd), std::move(args)};
    const std::string line = proto::serialize(request);

    bool cancelled = false;
    std::size_t sent = 0;
    while (sent < line.size()) {
        if (!wait_for(POLLOUT, deadline, &cancelled)) {
            if (cancelled)
                return tl::unexpected(error(TransportErrorKind::kCancelled, "interrupted"));
            return tl::unexpected(error(
                TransportErrorKind::kTimeout,
                "timed out after " + format_timeout(timeout) + " sending a request to " + at));
        }
        ssize_t n =
            ::send(fd_, line.data() + sent, line.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0) {
            sent += static_cast<std::size_t>(n);
            continue;
        }
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) continue;
        if (err == EPIPE || err == ECONNRESET) {
            // The daemon may have refused us with an error line (e.g.
            // too_many_connections) and closed; that line is still readable.
            break;
        }
        return tl::unexpected(error(TransportErrorKind::kClosed,
                                    "cannot send a request to " + at + ": " + errno_text(err)));
    }

    std::array<char, 16384> buf;
    for (;;) {
        if (auto next = framer_.next_line()) {
            auto response = proto::parse_response(*next);
            if (!response) {
                return tl::unexpected(
                    error(TransportErrorKind::kMalformed,
                          "malformed response from " + at + ": " + response.error().message));
            }
            if (!response->id) {
                if (response->ok) {
                    return tl::unexpected(error(
                        TransportErrorKind::kMalformed,
                        "malformed response from " + at + ": success response without an id"));
                }
                // The daemon could not tie the error to our request, so the
                // connection is no longer in step; start afresh next time.
                close();
            } else if (*response->id != proto::Id{id}) {
                return tl::unexpected(error(TransportErrorKind::kMalformed,
                                            "malformed response from " + at + ": response id " +
                                                proto::id_to_string(response->id) +
                                                " does not match request id " +
                                                std::to_string(id)));
            }
            return std::move(*response);
        }
        if (framer_.overflowed()) {
            return tl::unexpected(error(TransportErrorKind::kMalformed,
                                        "malformed response from " + at + ": line longer than " +
                                            std::to_string(proto::kMaxLineBytes) + " bytes"));
        }
        if (!wait_for(POLLIN, deadline, &cancelled)) {
            if (cancelled)
                return tl::unexpected(error(TransportErrorKind::kCancelled, "interrupted"));
            return tl::unexpected(error(
                TransportErrorKind::kTimeout,
                "no response from " + at + " within " + format_timeout(timeout) + " (timed out)"));
        }
        ssize_t n = ::recv(fd_, buf.data(), buf.size(), MSG_DONTWAIT);
        if (n > 0) {
            framer_.append(std::string_view(buf.data(), static_cast<std::size_t>(n)));
            continue;
        }
        int err = n == 0 ? 0 : errno;
        if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)) continue;
        if (n == 0 || err == ECONNRESET) {
            std::string how =
                framer_.has_partial_line() ? " in the middle of a response" : " without a response";
            return tl::unexpected(
                error(TransportErrorKind::kClosed, at + " closed the connection" + how));
        }
        return tl::unexpected(error(TransportErrorKind::kClosed, "cannot read the response from " +
                                                                     at + ": " + errno_text(err)));
    }
}

}  // namespace sockaccel::ctl
