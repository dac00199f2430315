// SPDX-License-Identifier: Apache-2.0
#include "control_server.h"

#include "request_args.h"

#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>

#include <spdlog/spdlog.h>

namespace sockaccel {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using Socket = asio::local::stream_protocol::socket;

struct ControlServer::Session {
    explicit Session(Socket s) : socket(std::move(s)), timer(socket.get_executor()) {}
    Socket socket;
    asio::steady_timer timer;
    std::chrono::steady_clock::time_point deadline;
    PeerCred peer;
    bool closed = false;

    void close() {
        closed = true;
        boost::system::error_code ec;
        socket.shutdown(Socket::shutdown_both, ec);
        socket.close(ec);
        timer.cancel();
    }
};

namespace {

std::string parent_dir(const std::string& path) {
    auto pos = path.find_last_of('/');
    return pos == 0 || pos == std::string::npos ? "/" : path.substr(0, pos);
}

PeerCred peer_of(int fd) {
    PeerCred p;
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
        p.pid = cred.pid;
        p.uid = cred.uid;
        p.gid = cred.gid;
    }
    // Supplementary groups, so "member of the admin group" means what
    // `id` shows, not only the primary group.
    std::array<gid_t, 256> groups{};
    len = sizeof(groups);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0)
        p.groups.assign(groups.begin(), groups.begin() + len / sizeof(gid_t));
    return p;
}

// One error line written without waiting: used for connections we refuse
// before a session exists. A full socket buffer just loses the courtesy.
void refuse(Socket& s, std::string_view code, const std::string& message) {
    auto line = proto::serialize(proto::Response::failure(std::nullopt, std::string(code), message));
    boost::system::error_code ec;
    s.non_blocking(true, ec);
    s.write_some(asio::buffer(line), ec);
    s.close(ec);
}

}  // namespace

ControlServer::ControlServer(asio::io_context& io, ControlConfig config, CommandHandler& handler)
    : io_(io), config_(std::move(config)), handler_(handler), acceptor_(io) {
    resolve_admin_group();
}

ControlServer::~ControlServer() { stop(); }

void ControlServer::resolve_admin_group() {
    admin_gid_.reset();
    if (config_.admin_group.empty()) return;
    if (const group* g = ::getgrnam(config_.admin_group.c_str())) admin_gid_ = g->gr_gid;
    else
        spdlog::warn("admin group '{}' does not exist; only root may run mutating commands, "
                     "ignoring",
                     config_.admin_group);
}

bool ControlServer::is_admin(const PeerCred& peer) const {
    if (peer.uid == 0) return true;
    if (!admin_gid_) return false;
    return peer.gid == *admin_gid_ ||
           std::find(peer.groups.begin(), peer.groups.end(), *admin_gid_) != peer.groups.end();
}

void ControlServer::update(const ControlConfig& config) {
    // The socket path and owner group are fixed while the socket exists.
    config_.admin_group = config.admin_group;
    config_.max_clients = config.max_clients;
    config_.idle_timeout_sec = config.idle_timeout_sec;
    resolve_admin_group();
}

Result<void> ControlServer::listen() {
    using proto_t = asio::local::stream_protocol;
    // Socket activation: systemd passes the listening socket as fd 3.
    const int n = sd_listen_fds(1);
    if (n < 0) return sys_error(-n, "read socket-activation fds");
    if (n >= 1) {
        const int fd = SD_LISTEN_FDS_START;
        if (sd_is_socket_unix(fd, SOCK_STREAM, 1, nullptr, 0) <= 0)
            return sys_error(EINVAL, "socket-activation fd 3 is not a listening Unix stream socket");
        boost::system::error_code ec;
        acceptor_.assign(proto_t(), fd, ec);
        if (ec) return sys_error(ec.value(), "adopt socket-activation fd");
        activated_ = true;
        return {};
    }

    const std::string& path = config_.socket;
    const std::string dir = parent_dir(path);
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
        return errno_error("create control socket directory " + dir);
    struct stat st {};
    if (::lstat(dir.c_str(), &st) != 0) return errno_error("stat " + dir);
    if (!S_ISDIR(st.st_mode))
        return sys_error(ENOTDIR, "control socket directory " + dir + " is not a directory");
    // Anyone able to write the directory could replace the socket.
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))
        return sys_error(EPERM, "control socket directory " + dir +
                                    " is writable by group or others; refusing to use it");
    if (st.st_uid != 0 && st.st_uid != ::geteuid())
        return sys_error(EPERM, "control socket directory " + dir + " is owned by uid " +
                                    std::to_string(st.st_uid) + "; refusing to use it");

    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return sys_error(EEXIST, "control socket path " + path + " exists and is not a socket");
        // Stale (nobody accepting) or live (another daemon)?
        Socket probe(io_);
        boost::system::error_code ec;
        probe.connect(proto_t::endpoint(path), ec);
        if (!ec)
            return sys_error(EADDRINUSE, "another process is serving the control socket " + path);
        ::unlink(path.c_str());
    }

    boost::system::error_code ec;
    acceptor_.open(proto_t(), ec);
    if (ec) return sys_error(ec.value(), "create control socket");
    // Mode 0660 from the start: no window in which others can connect.
    const mode_t old_umask = ::umask(0117);
    acceptor_.bind(proto_t::endpoint(path), ec);
    ::umask(old_umask);
    if (ec) return sys_error(ec.value(), "bind control socket " + path);
    created_file_ = true;
    gid_t gid = 0;
    if (!config_.group.empty()) {
        if (const group* g = ::getgrnam(config_.group.c_str()))
            gid = g->gr_gid;
        else
            spdlog::warn("control socket group '{}' does not exist; the socket stays root:root "
                         "0660, ignoring",
                         config_.group);
    }
    if (::chown(path.c_str(), 0, gid) != 0 && ::geteuid() == 0)
        return errno_error("chown control socket " + path);
    if (::chmod(path.c_str(), 0660) != 0) return errno_error("chmod control socket " + path);
    acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return sys_error(ec.value(), "listen on control socket " + path);
    return {};
}

void ControlServer::start() { asio::co_spawn(io_, accept_loop(), asio::detached); }

void ControlServer::stop() {
    if (stopped_) return;
    stopped_ = true;
    boost::system::error_code ec;
    acceptor_.close(ec);
    for (auto& weak : sessions_)
        if (auto s = weak.lock()) s->close();
    sessions_.clear();
    if (created_file_) ::unlink(config_.socket.c_str());
}

awaitable<void> ControlServer::accept_loop() {
    while (!stopped_) {
        boost::system::error_code ec;
        Socket socket = co_await acceptor_.async_accept(asio::redirect_error(use_awaitable, ec));
        if (ec) {
            if (stopped_ || ec == asio::error::operation_aborted) co_return;
            // EMFILE and friends: keep serving the connections we have.
            spdlog::warn("control socket: accept: {}, ignoring", ec.message());
            continue;
        }
        sessions_.erase(std::remove_if(sessions_.begin(), sessions_.end(),
                                       [](const auto& w) { return w.expired(); }),
                        sessions_.end());
        if (sessions_.size() >= config_.max_clients) {
            refuse(socket, proto::errc::kTooManyConnections,
                   "too many control connections (max " + std::to_string(config_.max_clients) +
                       ")");
            continue;
        }
        auto session = std::make_shared<Session>(std::move(socket));
        session->peer = peer_of(session->socket.native_handle());
        sessions_.push_back(session);
        asio::co_spawn(io_, serve(session), asio::detached);
        asio::co_spawn(io_, watchdog(session), asio::detached);
    }
}

// Closes the session once its deadline passes without activity. The
// deadline moves forward on every read and write; the timer just sleeps
// until it, so nothing polls.
awaitable<void> ControlServer::watchdog(std::shared_ptr<Session> s) {
    while (!s->closed) {
        if (std::chrono::steady_clock::now() >= s->deadline) {
            spdlog::debug("control: closing idle connection (pid {}, uid {})", s->peer.pid,
                          s->peer.uid);
            s->close();
            co_return;
        }
        s->timer.expires_at(s->deadline);
        boost::system::error_code ec;
        co_await s->timer.async_wait(asio::redirect_error(use_awaitable, ec));
    }
}

awaitable<void> ControlServer::serve(std::shared_ptr<Session> s) {
    const auto idle = [this] { return std::chrono::seconds(config_.idle_timeout_sec); };
    s->deadline = std::chrono::steady_clock::now() + idle();
    proto::LineFramer framer;
    std::array<char, 8192> buf;
    try {
        for (;;) {
            while (auto line = framer.next_line()) {
                // A request being worked on (flush-map may wait for
                // seconds) is not idleness; the clock restarts once the
                // answer is written.
                s->deadline = std::chrono::steady_clock::time_point::max();
                proto::Response response = co_await dispatch(*line, s->peer);
                auto out = proto::serialize(response);
                s->deadline = std::chrono::steady_clock::now() + idle();
                co_await asio::async_write(s->socket, asio::buffer(out), use_awaitable);
                s->deadline = std::chrono::steady_clock::now() + idle();
            }
            if (framer.overflowed()) {
                auto out = proto::serialize(proto::Response::failure(
                    std::nullopt, std::string(proto::errc::kLineTooLong),
                    "request line longer than " + std::to_string(proto::kMaxLineBytes) +
                        " bytes; closing the connection"));
                co_await asio::async_write(s->socket, asio::buffer(out), use_awaitable);
                break;
            }
            std::size_t n = co_await s->socket.async_read_some(asio::buffer(buf), use_awaitable);
            framer.append(std::string_view(buf.data(), n));
            s->deadline = std::chrono::steady_clock::now() + idle();
        }
    } catch (const boost::system::system_error& e) {
        // EOF, reset, or closed by the watchdog: the client is gone.
        spdlog::debug("control: connection from pid {} ended: {}", s->peer.pid, e.what());
    } catch (const std::exception& e) {
        // A handler bug must not take the daemon down with it.
        spdlog::error("control: request from pid {} failed: {}; closing the connection",
                      s->peer.pid, e.what());
    }
    s->close();
}

awaitable<proto::Response> ControlServer::dispatch(const std::string& line, const PeerCred& peer) {
    // Parsing and the permission decision are pure code shared with the
    // fuzz target (request_args.h).
    auto request = admit_request(line, is_admin(peer), config_.admin_group);
    if (!request) co_return std::move(request.error());
    if (needs_admin(request->cmd))
        spdlog::info("control: {} requested by uid {} pid {}", request->cmd, peer.uid, peer.pid);
    try {
        co_return co_await handler_.handle(*request, peer);
    } catch (const std::exception& e) {
        spdlog::error("control: {} failed: {}", request->cmd, e.what());
        co_return proto::Response::failure(request->id, std::string(proto::errc::kInternalError), e.what());
    }
}

}  // namespace sockaccel
