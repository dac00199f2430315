// SPDX-License-Identifier: Apache-2.0
//
// sockacceld under a stand-in for systemd: the test plays the service
// manager. It binds the $NOTIFY_SOCKET datagram socket itself and sets the
// watchdog variables, and, for the log tests, puts its own socket where
// journald's would be (/run/systemd/journal/socket, in a private mount
// namespace of the daemon's), so every sd_notify() and sd_journal_send() is
// seen as the real systemd would see it, with the sender's pid.
//
// The daemon is started by a fork+exec of this file's own (not
// DaemonProcess): WATCHDOG_PID and JOURNAL_STREAM must describe the daemon
// process itself, which only the child knows before exec, and readiness is
// READY=1 here, not a log line (which may be going to the journal).
#include <fcntl.h>
#include <linux/bpf.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "held_pair.h"

using namespace sockaccel;
using namespace sockaccel::test;

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// One datagram as the service manager receives it.
struct Datagram {
    std::string text;
    pid_t pid = 0;  // sender, from SCM_CREDENTIALS
    Clock::time_point at;
};

// True if `text` has `line` as one of its "\n"-separated lines.
bool has_line(const std::string& text, const std::string& line) {
    std::size_t start = 0;
    while (start <= text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        if (text.compare(start, end - start, line) == 0) return true;
        start = end + 1;
    }
    return false;
}

// The value of `KEY=` in a notification, or nullopt.
std::optional<std::string> field(const std::string& text, const std::string& key) {
    const std::string prefix = key + "=";
    std::size_t start = 0;
    while (start < text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        if (text.compare(start, prefix.size(), prefix) == 0)
            return text.substr(start + prefix.size(), end - start - prefix.size());
        start = end + 1;
    }
    return std::nullopt;
}

// A journal entry in the native protocol: "KEY=value\n", or for values with
// a newline "KEY\n" + 64-bit little-endian length + value + "\n".
std::map<std::string, std::string> parse_journal_entry(const std::string& d) {
    std::map<std::string, std::string> fields;
    std::size_t i = 0;
    while (i < d.size()) {
        const auto nl = d.find('\n', i);
        if (nl == std::string::npos) break;
        const std::string line = d.substr(i, nl - i);
        const auto eq = line.find('=');
        if (eq != std::string::npos) {
            fields[line.substr(0, eq)] = line.substr(eq + 1);
            i = nl + 1;
            continue;
        }
        if (nl + 9 > d.size()) break;
        std::uint64_t len = 0;
        std::memcpy(&len, d.data() + nl + 1, sizeof(len));  // x86-64: little-endian
        if (nl + 9 + len > d.size()) break;
        fields[line] = d.substr(nl + 9, len);
        i = nl + 9 + len + 1;
    }
    return fields;
}

class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/sockaccel_sd_XXXXXX";
        if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
        path_ = tmpl;
        ::chmod(path_.c_str(), 0755);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// A bound AF_UNIX datagram socket that receives the sender's credentials:
// $NOTIFY_SOCKET, or the journal's socket.
class DatagramSocket {
public:
    explicit DatagramSocket(const std::string& path) : path_(path) {
        fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd_ < 0) throw std::runtime_error("socket");
        int one = 1;
        ::setsockopt(fd_, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one));
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
            throw std::runtime_error("bind " + path + ": " + std::strerror(errno));
        ::chmod(path.c_str(), 0666);
    }
    ~DatagramSocket() { ::close(fd_); }
    int fd() const { return fd_; }
    const std::string& path() const { return path_; }

    // One datagram if one is queued. A journal entry too large for a
    // datagram arrives as a memfd (SCM_RIGHTS); it is read from there.
    std::optional<Datagram> read_one() {
        std::vector<char> buf(256 * 1024);
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int) * 4)];
        iovec iov{buf.data(), buf.size()};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof(control);
        ssize_t n = ::recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0) return std::nullopt;
        Datagram d;
        d.at = Clock::now();
        d.text.assign(buf.data(), static_cast<std::size_t>(n));
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET) continue;
            if (c->cmsg_type == SCM_CREDENTIALS) {
                ucred cred{};
                std::memcpy(&cred, CMSG_DATA(c), sizeof(cred));
                d.pid = cred.pid;
            } else if (c->cmsg_type == SCM_RIGHTS) {
                int fd = -1;
                std::memcpy(&fd, CMSG_DATA(c), sizeof(fd));
                char chunk[65536];
                ssize_t r;
                off_t off = 0;
                while ((r = ::pread(fd, chunk, sizeof(chunk), off)) > 0) {
                    d.text.append(chunk, static_cast<std::size_t>(r));
                    off += r;
                }
                ::close(fd);
            }
        }
        return d;
    }

private:
    std::string path_;
    int fd_ = -1;
};

// How to start the daemon.
struct Launch {
    std::vector<std::string> args;
    const DatagramSocket* notify = nullptr;  // sets NOTIFY_SOCKET
    std::string watchdog_usec;               // sets WATCHDOG_USEC if not empty
    enum class WatchdogPid { self, other, unset } watchdog_pid = WatchdogPid::self;
    enum class JournalStream { unset, stderr_id, other } journal_stream = JournalStream::unset;
    // If not empty: bind-mounted over /run in a private mount namespace.
    std::string run_dir;
    std::vector<std::pair<std::string, std::string>> env;
};

// The daemon as the service manager sees it: its notifications, its journal
// entries (if a journal socket is given) and its stderr.
class Supervised {
public:
    Supervised(const Launch& launch, DatagramSocket* journal = nullptr)
        : notify_(launch.notify), journal_(journal) {
        int err[2];
        if (::pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
        pid_ = ::fork();
        if (pid_ < 0) throw std::runtime_error("fork");
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGTERM);
            ::dup2(err[1], STDOUT_FILENO);
            ::dup2(err[1], STDERR_FILENO);
            ::unsetenv("NOTIFY_SOCKET");
            ::unsetenv("WATCHDOG_USEC");
            ::unsetenv("WATCHDOG_PID");
            ::unsetenv("JOURNAL_STREAM");
            if (launch.notify) ::setenv("NOTIFY_SOCKET", launch.notify->path().c_str(), 1);
            if (!launch.watchdog_usec.empty()) {
                ::setenv("WATCHDOG_USEC", launch.watchdog_usec.c_str(), 1);
                if (launch.watchdog_pid == Launch::WatchdogPid::self)
                    ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
                else if (launch.watchdog_pid == Launch::WatchdogPid::other)
                    ::setenv("WATCHDOG_PID", "1", 1);
            }
            if (launch.journal_stream != Launch::JournalStream::unset) {
                struct stat st {};
                ::fstat(STDERR_FILENO, &st);
                const auto ino = launch.journal_stream == Launch::JournalStream::stderr_id
                                     ? st.st_ino
                                     : st.st_ino + 1;
                ::setenv("JOURNAL_STREAM",
                         (std::to_string(st.st_dev) + ":" + std::to_string(ino)).c_str(), 1);
            }
            for (const auto& [k, v] : launch.env) ::setenv(k.c_str(), v.c_str(), 1);
            if (!launch.run_dir.empty()) {
                if (::unshare(CLONE_NEWNS) != 0 ||
                    ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
                    ::mount(launch.run_dir.c_str(), "/run", nullptr, MS_BIND, nullptr) != 0)
                    ::_exit(120);
            }
            std::vector<std::string> args = launch.args;
            args.insert(args.begin(), daemon_binary());
            std::vector<char*> argv;
            for (auto& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        ::close(err[1]);
        err_fd_ = err[0];
        ::fcntl(err_fd_, F_SETFL, O_NONBLOCK);
    }

    ~Supervised() {
        if (!exit_code_) stop(SIGTERM, std::chrono::seconds(15));
        if (err_fd_ >= 0) ::close(err_fd_);
    }

    Supervised(const Supervised&) = delete;
    Supervised& operator=(const Supervised&) = delete;

    pid_t pid() const { return pid_; }
    const std::vector<Datagram>& notes() const { return notes_; }
    const std::vector<Datagram>& journal() const { return journal_entries_; }
    const std::string& err() const { return err_; }
    std::optional<int> exit_code() const { return exit_code_; }

    // Collects notifications, journal entries and stderr until `done()` or
    // `timeout`; returns done().
    bool wait(const std::function<bool()>& done, milliseconds timeout) {
        const auto deadline = Clock::now() + timeout;
        for (;;) {
            if (done()) return true;
            const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
            if (left.count() <= 0) return false;
            pump(std::min<milliseconds>(left, milliseconds(50)));
        }
    }

    // Collects for exactly `d`.
    void collect_for(milliseconds d) {
        wait([] { return false; }, d);
    }

    // Index of the first notification from `from` on with the line `line`.
    std::optional<std::size_t> find_note(const std::string& line, std::size_t from = 0) const {
        for (std::size_t i = from; i < notes_.size(); ++i)
            if (has_line(notes_[i].text, line)) return i;
        return std::nullopt;
    }

    // Waits for a notification with `line` at index `from` or later.
    std::optional<std::size_t> wait_note(const std::string& line, std::size_t from = 0,
                                         milliseconds timeout = milliseconds(30000)) {
        wait([&] { return find_note(line, from).has_value() || exit_code_.has_value(); },
             timeout);
        return find_note(line, from);
    }

    // Waits for a STATUS= containing `text` at index `from` or later.
    std::optional<std::size_t> wait_status(const std::string& text, std::size_t from = 0,
                                           milliseconds timeout = milliseconds(10000)) {
        auto find = [&]() -> std::optional<std::size_t> {
            for (std::size_t i = from; i < notes_.size(); ++i) {
                auto s = field(notes_[i].text, "STATUS");
                if (s && s->find(text) != std::string::npos) return i;
            }
            return std::nullopt;
        };
        wait([&] { return find().has_value(); }, timeout);
        return find();
    }

    // Sends `sig` and waits (collecting) for the exit; SIGKILL after
    // `timeout`. Returns the exit code, or -signal.
    int stop(int sig, std::chrono::seconds timeout = std::chrono::seconds(30)) {
        if (exit_code_) return *exit_code_;
        ::kill(pid_, sig);
        if (!wait([&] { return exit_code_.has_value(); }, timeout)) {
            ::kill(pid_, SIGKILL);
            wait([&] { return exit_code_.has_value(); }, milliseconds(5000));
        }
        // Whatever was sent before the exit is queued by now.
        pump(milliseconds(0));
        return exit_code_.value_or(-SIGKILL);
    }

private:
    void pump(milliseconds timeout) {
        std::vector<pollfd> fds;
        if (notify_) fds.push_back({notify_->fd(), POLLIN, 0});
        if (journal_) fds.push_back({journal_->fd(), POLLIN, 0});
        if (err_fd_ >= 0) fds.push_back({err_fd_, POLLIN, 0});
        ::poll(fds.data(), fds.size(), static_cast<int>(timeout.count()));
        if (notify_)
            while (auto d = const_cast<DatagramSocket*>(notify_)->read_one())
                notes_.push_back(std::move(*d));
        if (journal_)
            while (auto d = journal_->read_one()) journal_entries_.push_back(std::move(*d));
        if (err_fd_ >= 0) {
            char buf[4096];
            ssize_t n;
            while ((n = ::read(err_fd_, buf, sizeof(buf))) > 0)
                err_.append(buf, static_cast<std::size_t>(n));
            if (n == 0) {
                ::close(err_fd_);
                err_fd_ = -1;
            }
        }
        if (!exit_code_) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_)
                exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
        }
    }

    const DatagramSocket* notify_;
    DatagramSocket* journal_;
    pid_t pid_ = -1;
    int err_fd_ = -1;
    std::vector<Datagram> notes_;
    std::vector<Datagram> journal_entries_;
    std::string err_;
    std::optional<int> exit_code_;
};

// Every notification came from the daemon's own pid (NotifyAccess=main).
void check_senders(const Supervised& d) {
    for (const auto& n : d.notes()) {
        INFO(n.text);
        CHECK(n.pid == d.pid());
    }
}

std::size_t count_from(const Supervised& d, const std::string& line, std::size_t from) {
    std::size_t n = 0;
    for (std::size_t i = from; i < d.notes().size(); ++i)
        if (has_line(d.notes()[i].text, line)) ++n;
    return n;
}

// The journal entries of `d` whose MESSAGE starts with `prefix`.
std::vector<std::map<std::string, std::string>> entries(const Supervised& d,
                                                        const std::string& prefix) {
    std::vector<std::map<std::string, std::string>> out;
    for (const auto& j : d.journal()) {
        auto f = parse_journal_entry(j.text);
        if (f["MESSAGE"].rfind(prefix, 0) == 0) out.push_back(std::move(f));
    }
    return out;
}

// A /run replacement with a journal socket in it: what the daemon's mount
// namespace sees at /run/systemd/journal/socket.
struct FakeJournal {
    explicit FakeJournal(const TempDir& dir)
        : run_dir(dir.path() + "/run"),
          socket((std::filesystem::create_directories(run_dir + "/systemd/journal"),
                  run_dir + "/systemd/journal/socket")) {}
    std::string run_dir;
    DatagramSocket socket;
};

}  // namespace

TEST_CASE("systemd: READY=1 once attached and listening, then WATCHDOG=1 with STATUS=") {
    TestCgroup cg("sd_ready");
    TestPinDir pins("sd_ready");
    TempDir tmp;
    DatagramSocket notify(tmp.path() + "/notify");
    Launch launch;
    launch.args = daemon_args(cg, pins);
    launch.notify = &notify;
    launch.watchdog_usec = "400000";
    Supervised daemon(launch);

    auto ready = daemon.wait_note("READY=1");
    INFO(daemon.err());
    REQUIRE(ready);
    // At READY=1 the work is done: sockops is attached and the control
    // socket answers (checked right after receiving it, with nothing else
    // waited for).
    CHECK(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 1);
    {
        ControlClient ctl(pins.socket());
        REQUIRE(ctl.connected());
        CHECK(result(ctl.request("status"))["attach"]["attached"] == true);
    }
    const auto& r = daemon.notes()[*ready];
    CHECK(field(r.text, "STATUS") == "accelerating 0 sockets, 0 B redirected, drain idle");
    // Nothing claimed readiness before.
    for (std::size_t i = 0; i < *ready; ++i) CHECK_FALSE(has_line(daemon.notes()[i].text, "READY=1"));

    // WATCHDOG_USEC=400000: a ping every 200 ms, each with a fresh status.
    const auto ready_at = r.at;
    daemon.collect_for(milliseconds(1000));
    std::size_t pings = 0, with_status = 0;
    for (const auto& n : daemon.notes()) {
        if (n.at - ready_at > milliseconds(1000) || !has_line(n.text, "WATCHDOG=1")) continue;
        ++pings;
        if (field(n.text, "STATUS")) ++with_status;
    }
    CHECK(pings >= 3);
    CHECK(with_status == pings);
    CHECK(daemon.err().find("info: systemd watchdog: pinging every 200 ms") != std::string::npos);

    CHECK(daemon.stop(SIGTERM) == 0);
    check_senders(daemon);
}

TEST_CASE("systemd: without the watchdog, STATUS= follows detach, attach and flush-map only", "[drain]") {
    TestCgroup cg("sd_status");
    TestPinDir pins("sd_status");
    TempDir tmp;
    DatagramSocket notify(tmp.path() + "/notify");
    Launch launch;
    launch.args = daemon_args(cg, pins);
    launch.notify = &notify;
    // The watchdog is meant for another process (WATCHDOG_PID): no timer.
    launch.watchdog_usec = "400000";
    launch.watchdog_pid = Launch::WatchdogPid::other;
    Supervised daemon(launch);
    REQUIRE(daemon.wait_note("READY=1"));

    // No state change, no timer: nothing more is sent.
    const auto after_ready = daemon.notes().size();
    daemon.collect_for(milliseconds(1000));
    CHECK(daemon.notes().size() == after_ready);
    CHECK(daemon.err().find("watchdog") == std::string::npos);

    ControlClient ctl(pins.socket());
    REQUIRE(ctl.connected());
    HeldPair pair(cg.path(), "127.0.0.1");
    REQUIRE(pair.send(1000) == "ok sent 1000");

    auto mark = daemon.notes().size();
    CHECK(result(ctl.request("detach"))["changed"] == true);
    CHECK(daemon.wait_status("detached, 2 sockets in map, 1000 B redirected, drain idle", mark));

    mark = daemon.notes().size();
    CHECK(result(ctl.request("attach"))["changed"] == true);
    CHECK(daemon.wait_status("accelerating 2 sockets, 1000 B redirected, drain idle", mark));

    // A flush that leaves the unread receiver pending starts the background
    // drain (status says so); once the data is read, the drain ends and the
    // status says that too, without anyone asking.
    REQUIRE(pair.send(200000) == "ok sent 201000");
    mark = daemon.notes().size();
    auto f = result(ctl.request("flush-map", {{"wait_ms", 300}}));
    CHECK(f["pending"] == 1);
    CHECK(daemon.wait_status("drain: 1 pending", mark));
    mark = daemon.notes().size();
    CHECK(pair.read_all() == "ok read 201000");
    CHECK(daemon.wait_status("accelerating 0 sockets, 196.3 KiB redirected, drain idle", mark));
    CHECK(count_from(daemon, "WATCHDOG=1", 0) == 0);

    CHECK(pair.close() == "ok closed");
    CHECK(daemon.stop(SIGTERM) == 0);
    check_senders(daemon);
}

TEST_CASE("systemd: a reload sends RELOADING=1, then READY=1, also when it fails") {
    TestCgroup cg("sd_reload");
    TestPinDir pins("sd_reload");
    TempDir tmp;
    DatagramSocket notify(tmp.path() + "/notify");
    Launch launch;
    launch.args = daemon_args(cg, pins);
    launch.notify = &notify;
    Supervised daemon(launch);
    REQUIRE(daemon.wait_note("READY=1"));

    // RELOADING=1 (with MONOTONIC_USEC= for notify-reload) and then READY=1
    // with a status, in that order, starting at `mark`.
    auto check_reload_pair = [&](std::size_t mark) {
        auto reloading = daemon.wait_note("RELOADING=1", mark);
        REQUIRE(reloading);
        const auto& t = daemon.notes()[*reloading].text;
        CHECK(field(t, "MONOTONIC_USEC").has_value());
        CHECK(field(t, "STATUS").value_or("").rfind("reloading ", 0) == 0);
        auto ready = daemon.wait_note("READY=1", *reloading + 1);
        REQUIRE(ready);
        CHECK(field(daemon.notes()[*ready].text, "STATUS") ==
              "accelerating 0 sockets, 0 B redirected, drain idle");
        CHECK_FALSE(daemon.find_note("READY=1", mark).value() < *reloading);
    };

    SECTION("SIGHUP") {
        auto mark = daemon.notes().size();
        ::kill(daemon.pid(), SIGHUP);
        check_reload_pair(mark);
        daemon.wait([&] { return daemon.err().find("info: reloaded ") != std::string::npos; },
                     milliseconds(5000));

        // A broken file: the reload fails, the old config stays, and the
        // service is ready again all the same.
        pins.write_config(R"({"log_level": "loud"})");
        mark = daemon.notes().size();
        ::kill(daemon.pid(), SIGHUP);
        check_reload_pair(mark);
        CHECK(daemon.wait(
            [&] {
                return daemon.err().find("error: SIGHUP: ") != std::string::npos &&
                       daemon.err().find("the running configuration is unchanged") !=
                           std::string::npos;
            },
            milliseconds(5000)));
    }
    SECTION("the reload command") {
        ControlClient ctl(pins.socket());
        REQUIRE(ctl.connected());
        auto mark = daemon.notes().size();
        CHECK(result(ctl.request("reload"))["reloaded"] == true);
        check_reload_pair(mark);

        pins.write_config("[1]");
        mark = daemon.notes().size();
        auto bad = ctl.request("reload");
        CHECK(bad["ok"] == false);
        CHECK(bad["error"]["code"] == "invalid_argument");
        check_reload_pair(mark);
    }
    CHECK(daemon.stop(SIGTERM) == 0);
    check_senders(daemon);
}

TEST_CASE("systemd: SIGTERM sends STOPPING=1 first, and the watchdog pings through the drain", "[drain]") {
    TestCgroup cg("sd_stop");
    TestPinDir pins("sd_stop");
    TempDir tmp;
    DatagramSocket notify(tmp.path() + "/notify");
    Launch launch;
    launch.args = daemon_args(cg, pins);  // drain.stop_timeout_sec 1
    launch.notify = &notify;
    launch.watchdog_usec = "400000";
    Supervised daemon(launch);
    REQUIRE(daemon.wait_note("READY=1"));

    // Unread redirected data keeps the drain busy for its full second.
    HeldPair pair(cg.path(), "127.0.0.1");
    REQUIRE(pair.send(50000) == "ok sent 50000");

    const auto mark = daemon.notes().size();
    const int code = daemon.stop(SIGTERM);
    INFO(daemon.err());
    CHECK(code == 0);
    auto stopping = daemon.find_note("STOPPING=1", mark);
    REQUIRE(stopping);
    CHECK(field(daemon.notes()[*stopping].text, "STATUS") ==
          "stopping: draining 2 sockets (at most 1 s)");
    // Sent by the daemon itself, so before it exited; and before its stop
    // sequence logged anything beyond the signal.
    CHECK(daemon.notes()[*stopping].pid == daemon.pid());
    // The drain runs on the io_context, so the pings go on meanwhile; and
    // nothing overwrites the stopping status or claims readiness.
    CHECK(count_from(daemon, "WATCHDOG=1", *stopping) >= 3);
    for (std::size_t i = *stopping + 1; i < daemon.notes().size(); ++i) {
        INFO(daemon.notes()[i].text);
        CHECK(daemon.notes()[i].text == "WATCHDOG=1");
    }
    CHECK(daemon.err().find("still in the sockhash") != std::string::npos);
    CHECK(pair.read_all() == "ok read 50000");
    check_senders(daemon);
}

TEST_CASE("systemd: log targets") {
    TestCgroup cg("sd_log");
    TestPinDir pins("sd_log");
    TempDir tmp;
    DatagramSocket notify(tmp.path() + "/notify");
    FakeJournal journal(tmp);
    Launch launch;
    launch.args = daemon_args(cg, pins);
    launch.notify = &notify;
    launch.run_dir = journal.run_dir;

    // Console lines and journal entries of one run.
    auto console_only = [](Supervised& d) {
        INFO(d.err());
        CHECK(d.err().find("info: attached to cgroup ") != std::string::npos);
        CHECK(d.err().find("info: received SIGTERM, stopping") != std::string::npos);
        CHECK(d.journal().empty());
    };
    auto journal_only = [&](Supervised& d) {
        INFO(d.err());
        CHECK(d.err().empty());
        auto attached = entries(d, "attached to cgroup ");
        REQUIRE(attached.size() == 1);
        CHECK(attached[0]["PRIORITY"] == "6");
        CHECK(attached[0]["SYSLOG_IDENTIFIER"] == "sockacceld");
        auto stop = entries(d, "received SIGTERM, stopping");
        REQUIRE(stop.size() == 1);
        CHECK(stop[0]["PRIORITY"] == "6");
        for (const auto& j : d.journal()) CHECK(j.pid == d.pid());
    };

    // Start, wait for READY=1, stop, and check where the lines went.
    auto start_stop = [&](const std::function<void(Supervised&)>& check) {
        Supervised d(launch, &journal.socket);
        REQUIRE(d.wait_note("READY=1"));
        CHECK(d.stop(SIGTERM) == 0);
        check(d);
    };

    SECTION("console when asked, even with JOURNAL_STREAM matching stderr") {
        launch.args.insert(launch.args.end(), {"--log-target", "console"});
        launch.journal_stream = Launch::JournalStream::stderr_id;
        start_stop(console_only);
    }
    SECTION("auto: console when JOURNAL_STREAM is not stderr") {
        launch.journal_stream = Launch::JournalStream::other;
        start_stop(console_only);
    }
    SECTION("auto: the journal when JOURNAL_STREAM is stderr") {
        launch.journal_stream = Launch::JournalStream::stderr_id;
        start_stop(journal_only);
    }
    SECTION("journal when asked: every level with its priority, libbpf's lines too") {
        launch.args.insert(launch.args.end(),
                           {"--log-target", "journal", "--log-level", "debug"});
        // A warning at start.
        launch.env.push_back({"SOCKACCEL_FEATURES_OFF", "sk_msg_kernel_reads"});
        Supervised d(launch, &journal.socket);
        REQUIRE(d.wait_note("READY=1"));
        // An error: a reload of a broken file.
        pins.write_config(R"({"log_level": "loud"})");
        ::kill(d.pid(), SIGHUP);
        REQUIRE(d.wait_note("READY=1", d.find_note("READY=1").value() + 1));
        CHECK(d.stop(SIGTERM) == 0);
        journal_only(d);

        auto warning = entries(d, "SOCKACCEL_FEATURES_OFF=sk_msg_kernel_reads: ");
        REQUIRE(warning.size() == 1);
        CHECK(warning[0]["PRIORITY"] == "4");
        auto error = entries(d, "SIGHUP: ");
        REQUIRE(error.size() == 1);
        CHECK(error[0]["PRIORITY"] == "3");
        CHECK(error[0]["MESSAGE"].find("the running configuration is unchanged") !=
              std::string::npos);
        auto debug = entries(d, "kernel features: ");
        REQUIRE(debug.size() == 1);
        CHECK(debug[0]["PRIORITY"] == "7");
        // libbpf's own messages, routed through spdlog, follow the target.
        auto libbpf = entries(d, "libbpf: ");
        CHECK_FALSE(libbpf.empty());
        for (auto& e : libbpf) CHECK(e["PRIORITY"] == "7");
    }
    SECTION("journal when asked but journald is not there: the lines go to stderr") {
        // An empty /run: no journal socket.
        const std::string empty_run = tmp.path() + "/empty_run";
        std::filesystem::create_directories(empty_run);
        launch.run_dir = empty_run;
        launch.args.insert(launch.args.end(), {"--log-target", "journal"});
        start_stop([&](Supervised& d) {
            console_only(d);
            CHECK(d.err().find("LOG ERROR") == std::string::npos);
        });
    }
}
