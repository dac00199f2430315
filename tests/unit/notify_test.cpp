// SPDX-License-Identifier: Apache-2.0
//
// The pure parts of the systemd integration: the STATUS= text, the
// $JOURNAL_STREAM parser and the log-target decision; plus what
// SystemdNotifier sends and how it reads the watchdog variables (through
// libsystemd, against a datagram socket of the test's own).
#include <sys/socket.h>
#include <sys/un.h>
#include <poll.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <string>

#include "logging.h"
#include "notify.h"
#include "sockaccel/proto/units.h"

using namespace sockaccel;

namespace {

// Sets (or, with nullptr, unsets) an environment variable for one scope.
class ScopedEnv {
public:
    ScopedEnv(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        if (value)
            ::setenv(name, value, 1);
        else
            ::unsetenv(name);
    }
    ~ScopedEnv() {
        if (old_)
            ::setenv(name_, old_->c_str(), 1);
        else
            ::unsetenv(name_);
    }

private:
    const char* name_;
    std::optional<std::string> old_;
};

// A bound AF_UNIX datagram socket in a fresh temporary directory: what
// systemd listens on as $NOTIFY_SOCKET.
class DatagramSink {
public:
    DatagramSink() {
        char tmpl[] = "/tmp/sockaccel_notify_XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        dir_ = tmpl;
        path_ = dir_ + "/notify";
        fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd_ >= 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    }
    ~DatagramSink() {
        ::close(fd_);
        ::unlink(path_.c_str());
        ::rmdir(dir_.c_str());
    }
    const std::string& path() const { return path_; }
    // The next datagram, or nullopt after 1 s.
    std::optional<std::string> receive() {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 1000) <= 0) return std::nullopt;
        char buf[4096];
        ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
        if (n < 0) return std::nullopt;
        return std::string(buf, static_cast<std::size_t>(n));
    }

private:
    std::string dir_, path_;
    int fd_ = -1;
};

}  // namespace

TEST_CASE("STATUS= byte counts use binary prefixes with one decimal") {
    CHECK(proto::human_bytes(0) == "0 B");
    CHECK(proto::human_bytes(1023) == "1023 B");
    CHECK(proto::human_bytes(1024) == "1.0 KiB");
    CHECK(proto::human_bytes(1536) == "1.5 KiB");
    CHECK(proto::human_bytes(1048575) == "1.0 MiB");  // not "1024.0 KiB"
    CHECK(proto::human_bytes(8308850) == "7.9 MiB");
    CHECK(proto::human_bytes(5ull << 30) == "5.0 GiB");
    CHECK(proto::human_bytes(std::numeric_limits<std::uint64_t>::max()) == "16.0 EiB");
}

TEST_CASE("status_text summarises the running state in one line") {
    StatusSnapshot s;
    s.sockets = 100;
    s.redirected_bytes = 8308850;
    CHECK(status_text(s) == "accelerating 100 sockets, 7.9 MiB redirected, drain idle");

    s.sockets = 1;
    s.redirected_bytes = 0;
    CHECK(status_text(s) == "accelerating 1 socket, 0 B redirected, drain idle");

    s.attached = false;
    s.sockets = 3;
    s.drain_active = true;
    s.drain_pending = 2;
    CHECK(status_text(s) == "detached, 3 sockets in map, 0 B redirected, drain: 2 pending");

    SECTION("numbers that could not be read show as ?") {
        StatusSnapshot unknown;
        unknown.sockets.reset();
        unknown.redirected_bytes.reset();
        CHECK(status_text(unknown) == "accelerating ? sockets, ? redirected, drain idle");
    }
}

TEST_CASE("stopping_status_text says what the stop waits for") {
    CHECK(stopping_status_text(4, 10) == "stopping: draining 4 sockets (at most 10 s)");
    CHECK(stopping_status_text(1, 0) == "stopping: draining 1 socket (at most 0 s)");
    CHECK(stopping_status_text(std::nullopt, 3) ==
          "stopping: draining ? sockets (at most 3 s)");
}

TEST_CASE("sanitize_status keeps a status to one assignment") {
    CHECK(sanitize_status("plain text, 7.9 MiB") == "plain text, 7.9 MiB");
    CHECK(sanitize_status("a\nREADY=1\tb\r") == "a READY=1 b ");
    CHECK(sanitize_status(std::string("nul\0x", 5)) == "nul x");
    CHECK(sanitize_status("") == "");
}

TEST_CASE("parse_journal_stream reads DEV:INO in decimal, strictly") {
    auto id = parse_journal_stream("8:1234567");
    REQUIRE(id);
    CHECK(id->dev == 8);
    CHECK(id->ino == 1234567);
    auto big = parse_journal_stream("18446744073709551615:18446744073709551615");
    REQUIRE(big);
    CHECK(big->dev == std::numeric_limits<std::uint64_t>::max());

    for (const char* bad : {"", ":", "8:", ":5", "8", "8:5:1", " 8:5", "8:5 ", "+8:5", "-8:5",
                            "0x8:5", "8;5", "18446744073709551616:1", "8:1a", "a:b"}) {
        INFO("JOURNAL_STREAM=\"" << bad << "\"");
        CHECK_FALSE(parse_journal_stream(bad));
    }
}

TEST_CASE("the log target: explicit choices stand, auto follows JOURNAL_STREAM") {
    const StreamId err{8, 42};
    CHECK(resolve_log_target(LogTarget::console, "8:42", err) == LogTarget::console);
    CHECK(resolve_log_target(LogTarget::journal, nullptr, std::nullopt) == LogTarget::journal);
    CHECK(resolve_log_target(LogTarget::automatic, "8:42", err) == LogTarget::journal);
    // stderr redirected elsewhere while the variable was inherited
    CHECK(resolve_log_target(LogTarget::automatic, "8:43", err) == LogTarget::console);
    CHECK(resolve_log_target(LogTarget::automatic, "9:42", err) == LogTarget::console);
    CHECK(resolve_log_target(LogTarget::automatic, nullptr, err) == LogTarget::console);
    CHECK(resolve_log_target(LogTarget::automatic, "8:42", std::nullopt) == LogTarget::console);
    CHECK(resolve_log_target(LogTarget::automatic, "garbage", err) == LogTarget::console);
}

TEST_CASE("log target names") {
    CHECK(parse_log_target("auto") == LogTarget::automatic);
    CHECK(parse_log_target("console") == LogTarget::console);
    CHECK(parse_log_target("journal") == LogTarget::journal);
    CHECK_FALSE(parse_log_target("syslog"));
    CHECK_FALSE(parse_log_target("Journal"));
    for (auto t : {LogTarget::automatic, LogTarget::console, LogTarget::journal})
        CHECK(parse_log_target(log_target_name(t)) == t);
}

TEST_CASE("the watchdog period is half of WATCHDOG_USEC, for this process only") {
    const std::string self = std::to_string(::getpid());
    SECTION("not set: no watchdog") {
        ScopedEnv usec("WATCHDOG_USEC", nullptr), pid("WATCHDOG_PID", nullptr);
        auto p = SystemdNotifier::watchdog_period();
        REQUIRE(p);
        CHECK_FALSE(*p);
    }
    SECTION("set for this pid") {
        ScopedEnv usec("WATCHDOG_USEC", "400000"), pid("WATCHDOG_PID", self.c_str());
        auto p = SystemdNotifier::watchdog_period();
        REQUIRE(p);
        REQUIRE(*p);
        CHECK(**p == std::chrono::milliseconds(200));
    }
    SECTION("set without a pid") {
        ScopedEnv usec("WATCHDOG_USEC", "30000000"), pid("WATCHDOG_PID", nullptr);
        auto p = SystemdNotifier::watchdog_period();
        REQUIRE(p);
        REQUIRE(*p);
        CHECK(**p == std::chrono::seconds(15));
    }
    SECTION("meant for another process") {
        const std::string other = std::to_string(::getpid() + 1);
        ScopedEnv usec("WATCHDOG_USEC", "400000"), pid("WATCHDOG_PID", other.c_str());
        auto p = SystemdNotifier::watchdog_period();
        REQUIRE(p);
        CHECK_FALSE(*p);
    }
    SECTION("a tiny interval does not make a busy loop") {
        ScopedEnv usec("WATCHDOG_USEC", "1"), pid("WATCHDOG_PID", self.c_str());
        auto p = SystemdNotifier::watchdog_period();
        REQUIRE(p);
        REQUIRE(*p);
        CHECK(**p == std::chrono::milliseconds(1));
    }
    SECTION("garbage is an error, not a crash") {
        ScopedEnv usec("WATCHDOG_USEC", "soon"), pid("WATCHDOG_PID", self.c_str());
        auto p = SystemdNotifier::watchdog_period();
        REQUIRE_FALSE(p);
        CHECK(p.error().message().find("WATCHDOG_USEC") != std::string::npos);
    }
}

TEST_CASE("SystemdNotifier sends one datagram per call to NOTIFY_SOCKET") {
    DatagramSink sink;
    ScopedEnv notify("NOTIFY_SOCKET", sink.path().c_str());
    SystemdNotifier n;

    n.ready("accelerating 0 sockets");
    CHECK(sink.receive() == "READY=1\nSTATUS=accelerating 0 sockets");
    n.status("two\nlines");
    CHECK(sink.receive() == "STATUS=two lines");
    n.stopping("stopping");
    CHECK(sink.receive() == "STOPPING=1\nSTATUS=stopping");
    n.watchdog(std::nullopt);
    CHECK(sink.receive() == "WATCHDOG=1");
    n.watchdog("x");
    CHECK(sink.receive() == "WATCHDOG=1\nSTATUS=x");
    n.reloading("reloading /etc/x.json");
    auto r = sink.receive();
    REQUIRE(r);
    CHECK(r->rfind("RELOADING=1\nMONOTONIC_USEC=", 0) == 0);
    CHECK(r->find("\nSTATUS=reloading /etc/x.json") != std::string::npos);
}

TEST_CASE("SystemdNotifier without a reachable NOTIFY_SOCKET is harmless") {
    SystemdNotifier n;
    {
        ScopedEnv notify("NOTIFY_SOCKET", nullptr);
        n.ready("no supervisor");  // sd_notify returns 0: nothing to do
    }
    {
        ScopedEnv notify("NOTIFY_SOCKET", "/nonexistent/sockaccel/notify");
        n.status("nobody listens");  // fails; logged, not thrown
        n.watchdog(std::nullopt);
    }
    {
        ScopedEnv notify("NOTIFY_SOCKET", "relative-is-invalid");
        n.status("invalid");
    }
    SUCCEED();
}
