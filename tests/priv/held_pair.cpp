// SPDX-License-Identifier: Apache-2.0
#include "held_pair.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "harness.h"

namespace sockaccel::test {
namespace {

std::uint8_t pattern(std::uint64_t i) { return static_cast<std::uint8_t>((i * 131 + (i >> 9)) & 0xff); }

// What the surviving side of a half-closed-by-the-peer connection sees: first reading (EOF or
// an error, never silence for `limit_ms`), then writing (an error once the peer's RST is in).
std::string probe(int fd, int limit_ms) {
    std::string out = "ok read ";
    std::uint64_t got = 0;
    std::vector<std::uint8_t> buf(65536);
    for (;;) {
        pollfd pf{fd, POLLIN, 0};
        const int n = ::poll(&pf, 1, limit_ms);
        if (n == 0) {
            out += "hang";
            break;
        }
        ssize_t r = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
        if (r > 0) {
            got += static_cast<std::uint64_t>(r);
            continue;
        }
        if (r == 0) {
            out += "eof";
            break;
        }
        if (errno == EAGAIN || errno == EINTR) continue;
        out += std::string("error ") + ::strerrorname_np(errno);
        break;
    }
    out += " after " + std::to_string(got) + " bytes; write ";
    int sends = 0;
    for (;;) {
        ssize_t w = ::send(fd, buf.data(), 1000, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            out += std::string("error ") + ::strerrorname_np(errno);
            break;
        }
        ++sends;
        // The reset answering this send (or a full buffer draining) wakes the poll.
        pollfd pf{fd, POLLOUT, 0};
        if (::poll(&pf, 1, limit_ms) == 0 || sends > 200) {
            out += "hang";
            break;
        }
        if ((pf.revents & (POLLERR | POLLHUP)) == 0) {
            // Writable and no error yet: give the reset a moment to come back, bounded.
            pollfd pe{fd, 0, 0};
            ::poll(&pe, 1, 20);
        }
    }
    return out + " after " + std::to_string(sends) + " sends";
}

// One byte and room for one descriptor: the message hide/unhide pass the
// server socket in.
struct FdMessage {
    char byte = 'f';
    iovec iov{&byte, 1};
    alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    FdMessage() {
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl;
        msg.msg_controllen = sizeof(ctrl);
    }
};

// Sends `fd` over `via` in an SCM_RIGHTS message; returns false on failure.
bool send_fd(int via, int fd) {
    FdMessage m;
    cmsghdr* c = CMSG_FIRSTHDR(&m.msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
    return ::sendmsg(via, &m.msg, 0) == 1;
}

int recv_fd(int via) {
    FdMessage m;
    if (::recvmsg(via, &m.msg, MSG_CMSG_CLOEXEC) != 1) return -1;
    cmsghdr* c = CMSG_FIRSTHDR(&m.msg);
    if (!c || c->cmsg_type != SCM_RIGHTS) return -1;
    int fd;
    std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
    return fd;
}

[[noreturn]] void child_main(const std::string& cgroup, const std::string& addr,
                             const std::string& netns, int in, int out) {
    auto reply = [&](const std::string& s) {
        std::string line = s + "\n";
        (void)!::write(out, line.data(), line.size());
    };
    {
        std::ofstream procs(cgroup + "/cgroup.procs");
        procs << ::getpid();
    }
    if (!netns.empty()) {
        const int ns = ::open(netns.c_str(), O_RDONLY | O_CLOEXEC);
        if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) {
            reply("fail setns " + netns);
            ::_exit(1);
        }
        ::close(ns);
    }
    const bool v6 = addr.find(':') != std::string::npos;
    sockaddr_storage ss{};
    socklen_t len;
    if (v6) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        ::inet_pton(AF_INET6, addr.c_str(), &a->sin6_addr);
        len = sizeof(*a);
    } else {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        ::inet_pton(AF_INET, addr.c_str(), &a->sin_addr);
        len = sizeof(*a);
    }
    int lst = ::socket(ss.ss_family, SOCK_STREAM, 0);
    if (lst < 0 || ::bind(lst, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(lst, 1) != 0) {
        reply("fail listen");
        ::_exit(1);
    }
    ::getsockname(lst, reinterpret_cast<sockaddr*>(&ss), &len);
    // Both ends non-blocking from the start, as sockaccel's reader check
    // wants (a blocking socket stays on TCP).
    int cli = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (::connect(cli, reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS) {
        reply("fail connect");
        ::_exit(1);
    }
    pollfd connected{cli, POLLOUT, 0};
    int soerr = 0;
    socklen_t soerr_len = sizeof soerr;
    if (::poll(&connected, 1, 10000) != 1 ||
        ::getsockopt(cli, SOL_SOCKET, SO_ERROR, &soerr, &soerr_len) != 0 || soerr != 0) {
        reply("fail connect");
        ::_exit(1);
    }
    int srv = ::accept4(lst, nullptr, nullptr, SOCK_NONBLOCK);
    ::close(lst);
    reply("ok connected");

    std::uint64_t sent = 0, received = 0, server_sent = 0;
    int hiding[2] = {-1, -1};
    std::string cmd;
    char c;
    while (::read(in, &c, 1) == 1) {
        if (c != '\n') {
            cmd.push_back(c);
            continue;
        }
        if (cmd.rfind("send ", 0) == 0) {
            std::size_t n = std::stoull(cmd.substr(5));
            std::vector<std::uint8_t> buf(n);
            for (std::size_t i = 0; i < n; ++i) buf[i] = pattern(sent + i);
            if (!write_all_nonblocking(cli, buf.data(), n)) {
                reply(std::string("fail send: ") + std::strerror(errno));
            } else {
                sent += n;
                reply("ok sent " + std::to_string(sent));
            }
        } else if (cmd.rfind("writes ", 0) == 0) {
            // "writes N SIZE": N more bytes of the stream in writes of SIZE bytes each.
            std::size_t n = 0, size = 1;
            std::sscanf(cmd.c_str() + 7, "%zu %zu", &n, &size);
            std::vector<std::uint8_t> buf(std::max<std::size_t>(size, 1));
            bool ok = true;
            for (std::size_t done = 0; ok && done < n;) {
                const std::size_t len = std::min(buf.size(), n - done);
                for (std::size_t i = 0; i < len; ++i) buf[i] = pattern(sent + done + i);
                ok = write_all_nonblocking(cli, buf.data(), len);
                done += len;
            }
            if (ok) sent += n;
            reply(ok ? "ok sent " + std::to_string(sent)
                     : std::string("fail writes: ") + std::strerror(errno));
        } else if (cmd.rfind("rr ", 0) == 0) {
            // "rr N SIZE": N round trips of SIZE bytes: the client writes, the server reads
            // and checks, answers as much, and the client reads and checks.
            std::size_t n = 0, size = 1;
            std::sscanf(cmd.c_str() + 3, "%zu %zu", &n, &size);
            std::vector<std::uint8_t> buf(size), got(size);
            std::string verdict;
            for (std::size_t r = 0; verdict.empty() && r < n; ++r) {
                for (std::size_t i = 0; i < size; ++i) buf[i] = pattern(sent + i);
                if (!write_all_nonblocking(cli, buf.data(), size) ||
                    !read_exact_nonblocking(srv, got.data(), size) || got != buf) {
                    verdict = "fail request " + std::to_string(r);
                    break;
                }
                sent += size;
                received += size;
                for (std::size_t i = 0; i < size; ++i) buf[i] = pattern(server_sent + i + 7);
                if (!write_all_nonblocking(srv, buf.data(), size) ||
                    !read_exact_nonblocking(cli, got.data(), size) || got != buf)
                    verdict = "fail response " + std::to_string(r);
                server_sent += size;
            }
            reply(verdict.empty() ? "ok rr " + std::to_string(n) : verdict);
        } else if (cmd.rfind("fill ", 0) == 0) {
            // "fill N MS": send up to N more bytes until the socket stays unwritable for
            // MS ms; reports how many were accepted.
            std::size_t n = 0;
            int ms = 0;
            std::sscanf(cmd.c_str() + 5, "%zu %d", &n, &ms);
            std::vector<std::uint8_t> buf(1 << 16);
            std::size_t done = 0;
            bool blocked = false, failed = false;
            while (done < n && !blocked && !failed) {
                const std::size_t len = std::min(buf.size(), n - done);
                for (std::size_t i = 0; i < len; ++i) buf[i] = pattern(sent + done + i);
                ssize_t w = ::send(cli, buf.data(), len, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w > 0) {
                    done += static_cast<std::size_t>(w);
                } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
                    pollfd pf{cli, POLLOUT, 0};
                    blocked = ::poll(&pf, 1, ms) == 0;
                } else {
                    failed = true;
                }
            }
            sent += done;
            reply(failed ? std::string("fail fill: ") + std::strerror(errno)
                         : "ok filled " + std::to_string(done) + (blocked ? " blocked" : ""));
        } else if (cmd == "read") {
            std::vector<std::uint8_t> buf(sent - received);
            if (!read_exact_nonblocking(srv, buf.data(), buf.size())) {
                reply("fail read: got fewer than " + std::to_string(buf.size()) + " bytes");
            } else {
                std::string verdict = "ok read " + std::to_string(sent);
                for (std::size_t i = 0; i < buf.size(); ++i) {
                    if (buf[i] != pattern(received + i)) {
                        verdict = "fail mismatch at offset " + std::to_string(received + i);
                        break;
                    }
                }
                received = sent;
                reply(verdict);
            }
        } else if (cmd == "sblocking" || cmd == "snonblocking") {
            const bool blocking = cmd == "sblocking";
            const int fl = ::fcntl(srv, F_GETFL);
            if (fl < 0 ||
                ::fcntl(srv, F_SETFL, blocking ? (fl & ~O_NONBLOCK) : (fl | O_NONBLOCK)) != 0)
                reply(std::string("fail fcntl: ") + std::strerror(errno));
            else
                reply(blocking ? "ok server blocking" : "ok server nonblocking");
        } else if (cmd.rfind("ssend ", 0) == 0) {
            std::size_t n = std::stoull(cmd.substr(6));
            std::vector<std::uint8_t> buf(n);
            for (std::size_t i = 0; i < n; ++i) buf[i] = pattern(server_sent + i + 7);
            if (!write_all_nonblocking(srv, buf.data(), n)) {
                reply(std::string("fail ssend: ") + std::strerror(errno));
            } else {
                server_sent += n;
                reply("ok server sent " + std::to_string(server_sent));
            }
        } else if (cmd == "sclose" || cmd == "sabort" || cmd == "cclose" || cmd == "cabort") {
            const bool server = cmd[0] == 's';
            int& fd = server ? srv : cli;
            if (cmd.find("abort") != std::string::npos) {
                linger lg{1, 0};
                ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            }
            ::close(fd);
            fd = -1;
            reply(server ? "ok closed server" : "ok closed client");
        } else if (cmd.rfind("cprobe ", 0) == 0) {
            reply(probe(cli, std::stoi(cmd.substr(7))));
        } else if (cmd.rfind("sprobe ", 0) == 0) {
            reply(probe(srv, std::stoi(cmd.substr(7))));
        } else if (cmd == "hide") {
            if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, hiding) != 0 ||
                !send_fd(hiding[0], srv)) {
                reply(std::string("fail hide: ") + std::strerror(errno));
            } else {
                ::close(srv);
                srv = -1;
                reply("ok hidden");
            }
        } else if (cmd == "unhide") {
            srv = recv_fd(hiding[1]);
            ::close(hiding[0]);
            ::close(hiding[1]);
            reply(srv >= 0 ? "ok unhidden" : std::string("fail unhide: ") + std::strerror(errno));
        } else if (cmd == "close") {
            ::close(cli);
            ::close(srv);
            reply("ok closed");
            ::_exit(0);
        } else {
            reply("fail unknown command");
        }
        cmd.clear();
    }
    ::_exit(0);
}

}  // namespace

HeldPair::HeldPair(const std::string& cgroup, const std::string& addr, const std::string& netns) {
    int down[2], up[2];
    if (::pipe2(down, O_CLOEXEC) != 0 || ::pipe2(up, O_CLOEXEC) != 0)
        throw std::runtime_error("pipe");
    pid_ = ::fork();
    if (pid_ == 0) {
        ::close(down[1]);
        ::close(up[0]);
        child_main(cgroup, addr, netns, down[0], up[1]);
    }
    ::close(down[0]);
    ::close(up[1]);
    to_child_ = down[1];
    from_child_ = up[0];
    auto hello = command("");
    if (hello.rfind("ok", 0) != 0) throw std::runtime_error("HeldPair: " + hello);
}

std::string HeldPair::command(const std::string& cmd) {
    if (!cmd.empty()) {
        std::string line = cmd + "\n";
        if (::write(to_child_, line.data(), line.size()) < 0) return "fail child gone";
    }
    std::string answer;
    char c;
    pollfd pf{from_child_, POLLIN, 0};
    while (::poll(&pf, 1, 30000) > 0 && ::read(from_child_, &c, 1) == 1 && c != '\n')
        answer.push_back(c);
    return answer.empty() ? "fail no answer" : answer;
}

std::string HeldPair::send(std::size_t n) { return command("send " + std::to_string(n)); }

std::string HeldPair::fill(std::size_t n, int blocked_ms) {
    return command("fill " + std::to_string(n) + " " + std::to_string(blocked_ms));
}
std::string HeldPair::read_all() { return command("read"); }
std::string HeldPair::writes(std::size_t n, std::size_t size) {
    return command("writes " + std::to_string(n) + " " + std::to_string(size));
}
std::string HeldPair::round_trips(std::size_t n, std::size_t size) {
    return command("rr " + std::to_string(n) + " " + std::to_string(size));
}
std::string HeldPair::server_send(std::size_t n) { return command("ssend " + std::to_string(n)); }
std::string HeldPair::server_blocking(bool blocking) {
    return command(blocking ? "sblocking" : "snonblocking");
}
std::string HeldPair::close_server(bool abort) { return command(abort ? "sabort" : "sclose"); }
std::string HeldPair::close_client(bool abort) { return command(abort ? "cabort" : "cclose"); }
std::string HeldPair::probe_client(int limit_ms) {
    return command("cprobe " + std::to_string(limit_ms));
}
std::string HeldPair::probe_server(int limit_ms) {
    return command("sprobe " + std::to_string(limit_ms));
}

std::string HeldPair::hide_server() { return command("hide"); }
std::string HeldPair::unhide_server() { return command("unhide"); }

std::string HeldPair::close() {
    auto r = command("close");
    int status;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return r;
}

HeldPair::~HeldPair() {
    if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        int status;
        ::waitpid(pid_, &status, 0);
    }
    ::close(to_child_);
    ::close(from_child_);
}

}  // namespace sockaccel::test
