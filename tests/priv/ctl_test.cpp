// SPDX-License-Identifier: Apache-2.0
//
// The real sockaccelctl binary against the real daemon: every command, the
// output modes, the exit codes, and the permission checks from a non-root
// uid (nobody).
#include <linux/bpf.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>

#include "harness.h"
#include "held_pair.h"

using namespace sockaccel;
using namespace sockaccel::test;
using nlohmann::json;

namespace {

constexpr uid_t kNobody = 65534;

ProcessResult ctl(const std::string& socket, std::vector<std::string> args,
                  uid_t as_uid = static_cast<uid_t>(-1)) {
    std::vector<std::string> argv = {ctl_binary(), "--socket", socket};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, std::chrono::seconds(60), as_uid);
}

json ctl_json(const std::string& socket, std::vector<std::string> args) {
    args.insert(args.begin(), "--json");
    auto r = ctl(socket, args);
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    auto j = json::parse(r.out, nullptr, false);
    REQUIRE(j.is_object());
    return j;
}

// The socket group is nogroup (gid 65534) so that nobody can connect at
// all; admin rights are a separate question.
std::string config_for_nobody(bool nobody_is_admin) {
    return std::string(R"({"drain":{"stop_timeout_sec":1},"control":{"group":"nogroup","admin_group":")") +
           (nobody_is_admin ? "nogroup" : "sockaccel-no-such-group") + "\"}}";
}

}  // namespace

TEST_CASE("sockaccelctl runs every command, as tables and as exact JSON", "[drain]") {
    TestCgroup cg("ctl");
    TestPinDir pins("ctl");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    const auto sock = pins.socket();
    HeldPair pair(cg.path(), "127.0.0.1");
    REQUIRE(pair.send(4096) == "ok sent 4096");

    auto ping = ctl(sock, {"ping"});
    CHECK(ping.exit_code == 0);
    CHECK(ping.out == "pong\n");

    auto version = ctl(sock, {"version"});
    CHECK(version.exit_code == 0);
    CHECK(version.out.find("protocol 1") != std::string::npos);

    auto status = ctl(sock, {"status"});
    INFO(status.out << status.err);
    CHECK(status.exit_code == 0);
    CHECK(status.out.find(cg.path()) != std::string::npos);
    CHECK(status.out.find(pins.path()) != std::string::npos);
    auto sj = ctl_json(sock, {"status"});
    CHECK(sj["map"]["entries"] == 2);
    CHECK(sj["attach"]["attached"] == true);
    CHECK(sj["counters"]["redirect_bytes"] == 4096);

    auto stats = ctl(sock, {"stats"});
    CHECK(stats.exit_code == 0);
    CHECK(stats.out.find("redirect_bytes") != std::string::npos);
    CHECK(ctl_json(sock, {"stats"})["counters"]["redirect_bytes"] == 4096);

    auto conns = ctl(sock, {"connections"});
    INFO(conns.out);
    CHECK(conns.exit_code == 0);
    CHECK(conns.out.find("127.0.0.1:") != std::string::npos);
    CHECK(conns.out.find("\u21c4") != std::string::npos);  // ⇄: a pair shown together
    auto cj = ctl_json(sock, {"connections", "--limit", "5"});
    CHECK(cj["total"] == 2);
    CHECK(ctl_json(sock, {"connections", "--port", "1"})["connections"].empty());

    auto flush = ctl(sock, {"flush-map", "--wait", "0.3"});
    INFO(flush.out << flush.err);
    CHECK(flush.exit_code == 0);
    CHECK(flush.out.find("flushed 1") != std::string::npos);
    CHECK(flush.out.find("1 pending") != std::string::npos);
    REQUIRE(pair.read_all() == "ok read 4096");

    auto detach = ctl(sock, {"detach"});
    CHECK(detach.exit_code == 0);
    CHECK(detach.out.find("detached") != std::string::npos);
    CHECK(ctl_json(sock, {"attach"})["attached"] == true);
    auto reload = ctl(sock, {"reload"});
    CHECK(reload.exit_code == 0);
    CHECK(reload.out.find("reloaded") != std::string::npos);

    SECTION("stats --watch redraws rates until interrupted") {
        std::vector<std::string> argv = {ctl_binary(), "--socket", sock, "--json", "stats",
                                         "--watch", "0.2"};
        auto r = run_until_signal(argv, std::chrono::milliseconds(1500), SIGINT);
        INFO(r.out << r.err);
        CHECK(r.exit_code == 0);
        auto first_line = r.out.substr(0, r.out.find('\n'));
        CHECK(json::parse(first_line, nullptr, false).is_object());
        CHECK(r.out.find("\"rates\"") != std::string::npos);
    }
    SECTION("SOCKACCEL_SOCKET names the socket") {
        ::setenv("SOCKACCEL_SOCKET", sock.c_str(), 1);
        auto r = run({ctl_binary(), "ping"}, std::chrono::seconds(30));
        ::unsetenv("SOCKACCEL_SOCKET");
        CHECK(r.exit_code == 0);
        CHECK(r.out == "pong\n");
    }
    REQUIRE(pair.close() == "ok closed");
    CHECK(daemon.stop() == 0);
}

TEST_CASE("sockaccelctl exit codes: usage 2, daemon error 1, unreachable 3") {
    TestCgroup cg("ctlexit");
    TestPinDir pins("ctlexit");

    SECTION("no daemon: the message names the path and the reason") {
        auto r = ctl(pins.socket(), {"status"});
        CHECK(r.exit_code == 3);
        CHECK(r.err.find(pins.socket()) != std::string::npos);
        CHECK(r.err.find("not running") != std::string::npos);
    }
    SECTION("usage errors") {
        CHECK(ctl(pins.socket(), {"launch-missiles"}).exit_code == 2);
        CHECK(ctl(pins.socket(), {"connections", "--limit", "x"}).exit_code == 2);
        CHECK(ctl(pins.socket(), {}).exit_code == 2);
        auto help = ctl(pins.socket(), {"flush-map", "--help"});
        CHECK(help.exit_code == 0);
        CHECK(help.out.find("--force") != std::string::npos);
    }
    SECTION("the daemon answers with an error") {
        DaemonProcess daemon(daemon_args(cg, pins));
        REQUIRE(daemon.ready());
        pins.write_config(R"({"map_size": "big"})");
        auto r = ctl(pins.socket(), {"reload"});
        CHECK(r.exit_code == 1);
        CHECK(r.err.find("map_size") != std::string::npos);
        CHECK(r.err.find("invalid_argument") != std::string::npos);
        auto j = ctl(pins.socket(), {"--json", "reload"});
        CHECK(j.exit_code == 1);
        CHECK(json::parse(j.out, nullptr, false)["code"] == "invalid_argument");
        CHECK(daemon.stop() == 0);
    }
}

TEST_CASE("permissions: read-only for anyone who can connect, mutating for admins only") {
    TestCgroup cg("perm");
    TestPinDir pins("perm");
    // nobody needs to reach the socket's directory.
    REQUIRE(::chmod(pins.socket().substr(0, pins.socket().rfind('/')).c_str(), 0755) == 0);

    SECTION("a socket nobody may not open: permission denied, exit 3") {
        DaemonProcess daemon(daemon_args(cg, pins));  // group sockaccel (absent): root:root 0660
        REQUIRE(daemon.ready());
        auto r = ctl(pins.socket(), {"status"}, kNobody);
        CHECK(r.exit_code == 3);
        CHECK(r.err.find("permission denied") != std::string::npos);
        CHECK(daemon.stop() == 0);
    }
    SECTION("nobody in the socket group but not an admin") {
        DaemonProcess daemon(daemon_args(cg, pins, {}, config_for_nobody(false)));
        REQUIRE(daemon.ready());
        for (const char* cmd : {"status", "stats", "connections", "version", "ping"}) {
            auto r = ctl(pins.socket(), {cmd}, kNobody);
            INFO(cmd << ": " << r.err);
            CHECK(r.exit_code == 0);
        }
        for (const char* cmd : {"flush-map", "detach", "attach", "reload"}) {
            auto r = ctl(pins.socket(), {cmd}, kNobody);
            INFO(cmd << ": " << r.err);
            CHECK(r.exit_code == 1);
            CHECK(r.err.find("permission_denied") != std::string::npos);
        }
        // Nothing changed, and the refusals were not logged as requests.
        CHECK(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 1);
        CHECK(daemon.stop() == 0);
        CHECK(daemon.log().find("detach requested") == std::string::npos);
    }
    SECTION("nobody as a member of the admin group") {
        DaemonProcess daemon(daemon_args(cg, pins, {}, config_for_nobody(true)));
        REQUIRE(daemon.ready());
        auto r = ctl(pins.socket(), {"detach"}, kNobody);
        INFO(r.err);
        CHECK(r.exit_code == 0);
        CHECK(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 0);
        CHECK(daemon.stop() == 0);
        // Every mutating command is logged with the peer's uid and pid.
        CHECK(daemon.log().find("detach requested by uid 65534 pid") != std::string::npos);
    }
}
