// SPDX-License-Identifier: Apache-2.0
//
// ControlServer: the daemon's Unix-socket endpoint for sockaccelctl
// (docs/protocol.md). JSON lines in, JSON lines out, one response per
// request, in order.
//
// Robustness contract (every item is tested in tests/priv/control_test.cpp):
//  - Input never kills or stalls the daemon: every parse error is an error
//    response; an oversized line gets line_too_long and the connection is
//    closed; a connection idle (or stalled writing) longer than
//    control.idle_timeout_sec is closed.
//  - Memory per connection is bounded: at most one line (64 KiB) is buffered
//    in, and the next request is not read until the previous response has
//    been written, so a client that never reads stalls only itself.
//  - At most control.max_clients connections; the excess gets
//    too_many_connections and is closed.
//  - Mutating commands need uid 0 or membership (primary or supplementary,
//    from SO_PEERCRED/SO_PEERGROUPS) in control.admin_group.
//
// Threading: everything runs on the daemon's io_context. Errors: listen()
// returns a Result; nothing is thrown out of a session.
#pragma once

#include <sys/types.h>

#include <utility>  // must precede awaitable.hpp with Boost 1.74 on g++ 12

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config.h"
#include "error.h"
#include "sockaccel/proto/protocol.h"

namespace sockaccel {

// Who is on the other end of a control connection.
struct PeerCred {
    pid_t pid = 0;
    uid_t uid = static_cast<uid_t>(-1);
    gid_t gid = static_cast<gid_t>(-1);
    std::vector<gid_t> groups;  // supplementary groups (SO_PEERGROUPS)
};

// Implemented by the daemon: runs one validated, permitted request.
class CommandHandler {
public:
    virtual ~CommandHandler() = default;
    virtual boost::asio::awaitable<proto::Response> handle(const proto::Request& request,
                                                           const PeerCred& peer) = 0;
};

class ControlServer {
public:
    ControlServer(boost::asio::io_context& io, ControlConfig config, CommandHandler& handler);
    ~ControlServer();

    // Uses the socket passed by systemd socket activation if there is one,
    // otherwise creates config.socket: the directory with mode 0755 (and
    // refuses one that others can write to), a stale socket file replaced,
    // the socket with mode 0660 owned by root:config.group.
    [[nodiscard]] Result<void> listen();

    // Starts accepting (co_spawned on the io_context).
    void start();

    // Closes the listening socket and every connection; removes the socket
    // file if this server created it.
    void stop();

    // Applies the run-time-changeable parts of a reloaded config.
    void update(const ControlConfig& config);

    bool activated() const { return activated_; }
    const std::string& path() const { return config_.socket; }

    // uid 0, or a member of the admin group.
    bool is_admin(const PeerCred& peer) const;

private:
    struct Session;
    boost::asio::awaitable<void> accept_loop();
    boost::asio::awaitable<void> serve(std::shared_ptr<Session> session);
    boost::asio::awaitable<void> watchdog(std::shared_ptr<Session> session);
    boost::asio::awaitable<proto::Response> dispatch(const std::string& line, const PeerCred& peer);
    void resolve_admin_group();

    boost::asio::io_context& io_;
    ControlConfig config_;
    CommandHandler& handler_;
    boost::asio::local::stream_protocol::acceptor acceptor_;
    std::optional<gid_t> admin_gid_;
    bool activated_ = false;
    bool created_file_ = false;
    bool stopped_ = false;
    std::vector<std::weak_ptr<Session>> sessions_;
};

}  // namespace sockaccel
