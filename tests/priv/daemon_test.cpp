// SPDX-License-Identifier: Apache-2.0
//
// sockacceld against the real kernel: real binary, real sockets, each test
// in its own cgroup and pin directory.
#include <linux/bpf.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <thread>

#include "harness.h"
#include "held_pair.h"

using namespace sockaccel;
using namespace sockaccel::test;

namespace {

// --late-half-close: a client may send its whole stream and half-close
// before the server accepts. Its sends then take TCP (the accepted side's
// reader is not checked yet) and its FIN takes it out of the map, so the
// connection sees no redirect at all. Waiting for the server's stream first
// makes every connection's server-to-client direction a redirect, whatever
// the scheduling: the tests below count on some redirects.
std::vector<std::string> pair_args(const std::string& addr, const std::string& server_cg,
                                   const std::string& client_cg, int connections) {
    std::vector<std::string> a = {"pair",      "--addr",    addr,
                                  "--connections", std::to_string(connections),
                                  "--min-bytes", "1",       "--max-bytes",
                                  "1048576",   "--timeout", "60",
                                  "--late-half-close"};
    if (!server_cg.empty()) a.insert(a.end(), {"--server-cgroup", server_cg});
    if (!client_cg.empty()) a.insert(a.end(), {"--client-cgroup", client_cg});
    return a;
}

}  // namespace

TEST_CASE("loopback traffic in the cgroup is redirected, every byte in order") {
    const auto addr = GENERATE(as<std::string>{}, "127.0.0.1", "::1", "::ffff:127.0.0.1");
    TestCgroup cg("redirect");
    TestPinDir pins("redirect");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    CHECK(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 1);

    const int kConnections = 24;
    auto report = run_streamcheck(pair_args(addr, cg.path(), cg.path(), kConnections));
    INFO("address " << addr);
    check_integrity(report);

    auto c = read_pinned_counters(pins.path());
    INFO(counters_to_json(c).dump());
    CHECK(c[SOCKACCEL_CNT_SOCKETS_ADDED] == 2 * kConnections);
    CHECK(c[SOCKACCEL_CNT_ADD_FAILED_FULL] + c[SOCKACCEL_CNT_ADD_FAILED_OTHER] == 0);
    CHECK(c[SOCKACCEL_CNT_REDIRECT_MSGS] > 0);
    // Redirected bytes are everything the two directions sent, unless a
    // send raced the peer's insertion and took TCP (counted as a miss).
    CHECK(c[SOCKACCEL_CNT_REDIRECT_BYTES] + c[SOCKACCEL_CNT_PASS_BYTES] >=
          report["bytes_sent"].get<std::uint64_t>());
    CHECK(c[SOCKACCEL_CNT_STORAGE_MISSING] == 0);
    // Closed sockets leave the map by themselves.
    CHECK(pinned_entries(pins.path()) == 0);
    CHECK(daemon.stop() == 0);
}

TEST_CASE("a connection from a process outside the cgroup is not accelerated") {
    TestCgroup cg("outside");
    TestPinDir pins("outside");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());

    // The server lives in the cgroup; the client stays in the test's own
    // cgroup, which has no program attached.
    const int kConnections = 8;
    auto report = run_streamcheck(pair_args("127.0.0.1", cg.path(), "", kConnections));
    check_integrity(report);
    auto c = read_pinned_counters(pins.path());
    INFO(counters_to_json(c).dump());
    // The server's peer is not a socket we track, so the server is not
    // inserted either (local-peer detection): nothing enters the map.
    CHECK(c[SOCKACCEL_CNT_SOCKETS_ADDED] == 0);
    CHECK(c[SOCKACCEL_CNT_PEER_NOT_LOCAL] == kConnections);
    CHECK(c[SOCKACCEL_CNT_REDIRECT_MSGS] == 0);
    CHECK(c[SOCKACCEL_CNT_PASS_MSGS] == 0);  // sk_msg never ran

    // And a process in neither: nothing is inserted at all.
    auto before = read_pinned_counters(pins.path());
    check_integrity(run_streamcheck(pair_args("127.0.0.1", "", "", 4)));
    auto after = read_pinned_counters(pins.path());
    CHECK(after[SOCKACCEL_CNT_SOCKETS_ADDED] == before[SOCKACCEL_CNT_SOCKETS_ADDED]);
    CHECK(daemon.stop() == 0);
}

TEST_CASE("after a clean stop nothing is attached or pinned, and new connections are plain TCP", "[drain]") {
    TestCgroup cg("stop");
    TestPinDir pins("stop");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    check_integrity(run_streamcheck(pair_args("127.0.0.1", cg.path(), cg.path(), 8)));

    REQUIRE(daemon.stop(SIGTERM) == 0);
    CHECK(daemon.log().find("detached and unpinned") != std::string::npos);
    CHECK_FALSE(pins.exists());
    CHECK(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 0);
    // Still works, through TCP: nothing is left to redirect it.
    check_integrity(run_streamcheck(pair_args("127.0.0.1", cg.path(), cg.path(), 4)));

    SECTION("SIGINT stops the same way") {
        DaemonProcess again(daemon_args(cg, pins));
        REQUIRE(again.ready());
        CHECK(again.stop(SIGINT) == 0);
        CHECK_FALSE(pins.exists());
        CHECK(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 0);
    }
}

TEST_CASE("stop with unread redirected data keeps the map pinned and loses nothing", "[drain]") {
    const auto addr = GENERATE(as<std::string>{}, "127.0.0.1", "::1");
    TestCgroup cg("unread");
    TestPinDir pins("unread");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());

    HeldPair pair(cg.path(), addr);
    REQUIRE(pair.send(200000) == "ok sent 200000");  // redirected, not read yet
    auto c = read_pinned_counters(pins.path());
    CHECK(c[SOCKACCEL_CNT_REDIRECT_BYTES] == 200000);
    REQUIRE(pinned_entries(pins.path()) == 2);

    // kernel-facts fact 1: deleting the receiver, or freeing the map,
    // would free the 200,000 unread bytes. Stop drains what it safely can
    // (the sender: nothing unread, nothing in flight) and keeps the rest.
    REQUIRE(daemon.stop(SIGTERM) == 0);
    INFO(daemon.log());
    CHECK(daemon.log().find("1 socket(s) are still in the sockhash") != std::string::npos);
    // The exact count needs psock->msg_tot_len (not in 6.1).
    CHECK(daemon.log().find(kernel_features().psock_msg_tot_len ? "1 pending (200000 unread bytes)"
                                                                : "1 pending (") != std::string::npos);
    CHECK(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 0);  // detached all the same
    CHECK(pins.has("sock_hash"));
    CHECK_FALSE(pins.has("sockops_link"));
    CHECK(pinned_entries(pins.path()) == 1);

    // After stop the sender falls back to TCP; the receiver reads the
    // redirected bytes first, then the TCP bytes: all of them, in order.
    REQUIRE(pair.send(100000) == "ok sent 300000");
    CHECK(pair.read_all() == "ok read 300000");
    CHECK(read_pinned_counters(pins.path())[SOCKACCEL_CNT_REDIRECT_BYTES] == 200000);

    SECTION("the next start adopts the pinned state; counters continue") {
        DaemonProcess next(daemon_args(cg, pins));
        REQUIRE(next.ready());
        CHECK(next.log().find("adopted 1 socket(s)") != std::string::npos);
        auto adopted = read_pinned_counters(pins.path());
        CHECK(adopted[SOCKACCEL_CNT_REDIRECT_BYTES] >= 200000);
        // New connections are accelerated again.
        check_integrity(run_streamcheck(pair_args("127.0.0.1", cg.path(), cg.path(), 4)));
        CHECK(read_pinned_counters(pins.path())[SOCKACCEL_CNT_REDIRECT_BYTES] > 200000);
        REQUIRE(pair.close() == "ok closed");
        CHECK(next.stop() == 0);
        CHECK_FALSE(pins.exists());
    }
    SECTION("the next start finishes the drain once the data is read") {
        DaemonProcess next(daemon_args(cg, pins));
        REQUIRE(next.ready());
        ControlClient ctl(pins.socket());
        // Already read above: the adopted, claimed receiver is now empty.
        auto status = wait_entries(ctl, 0);
        INFO(status.dump());
        CHECK(status["map"]["entries"] == 0);
        REQUIRE(pair.close() == "ok closed");
        CHECK(next.stop() == 0);
    }
    SECTION("once the sockets close, the map empties by itself") {
        REQUIRE(pair.close() == "ok closed");
        CHECK(pinned_entries(pins.path()) == 0);
    }
}

TEST_CASE("a second instance on the same pin directory refuses to start") {
    TestCgroup cg("second");
    TestPinDir pins("second");
    DaemonProcess first(daemon_args(cg, pins));
    REQUIRE(first.ready());
    std::vector<std::string> argv = {daemon_binary()};
    for (auto& a : daemon_args(cg, pins)) argv.push_back(a);
    auto second = run(argv, std::chrono::seconds(30));
    CHECK(second.exit_code == 1);
    CHECK(second.err == "error: another sockacceld is already running with pin directory " +
                            pins.path() + "\n");
    CHECK(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 1);  // the first one is untouched
    CHECK(first.stop() == 0);
}

TEST_CASE("start-up errors are one clear line and exit code 1") {
    TestCgroup cg("errors");
    TestPinDir pins("errors");

    SECTION("not root") {
        std::vector<std::string> argv = {daemon_binary()};
        for (auto& a : daemon_args(cg, pins)) argv.push_back(a);
        auto r = run(argv, std::chrono::seconds(30), /*as_uid=*/65534);
        CHECK(r.exit_code == 1);
        CHECK(r.err.find("permission denied") != std::string::npos);
        CHECK(r.err.find("root") != std::string::npos);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    }
    SECTION("a bad config file: one line naming the key, exit 1, nothing attached") {
        for (const auto& [text, expect] : std::vector<std::pair<std::string, std::string>>{
                 {R"({"map_sise": 5})", "unknown key \"map_sise\""},
                 {R"({"map_size": "5"})", "key \"map_size\": must be an integer"},
                 {R"({"control": {"socket": 7}})", "key \"control.socket\": must be a string"},
                 {"{ not json", "not valid JSON"}}) {
            const auto config = pins.write_config(text);
            auto r = run({daemon_binary(), "--config", config, "--cgroup", cg.path(),
                          "--pin-dir", pins.path(), "--socket", pins.socket()},
                         std::chrono::seconds(30));
            INFO(text << " -> " << r.err);
            CHECK(r.exit_code == 1);
            CHECK(r.err.find(expect) != std::string::npos);
            CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
            CHECK_FALSE(pins.exists());
        }
        auto missing = run({daemon_binary(), "--config", "/nonexistent/sockacceld.json"},
                           std::chrono::seconds(30));
        CHECK(missing.exit_code == 1);
        CHECK(missing.err == "error: /nonexistent/sockacceld.json: cannot read: No such file or "
                             "directory\n");
    }
    SECTION("bad command-line arguments are usage errors (exit 2)") {
        CHECK(run({daemon_binary(), "--map-size", "0"}, std::chrono::seconds(30)).exit_code == 2);
        CHECK(run({daemon_binary(), "--log-level", "loud"}, std::chrono::seconds(30)).exit_code ==
              2);
        CHECK(run({daemon_binary(), "--pin-dir", "relative"}, std::chrono::seconds(30))
                  .exit_code == 2);
        CHECK(run({daemon_binary(), "--bogus"}, std::chrono::seconds(30)).exit_code == 2);
        auto help = run({daemon_binary(), "--help"}, std::chrono::seconds(30));
        CHECK(help.exit_code == 0);
        CHECK(help.out.find("--pin-dir") != std::string::npos);
        auto version = run({daemon_binary(), "--version"}, std::chrono::seconds(30));
        CHECK(version.exit_code == 0);
        CHECK(version.out.find("sockacceld 0.1.0") != std::string::npos);
    }
    SECTION("a cgroup that does not exist") {
        std::vector<std::string> argv = {daemon_binary(), "--config", SOCKACCEL_TEST_EMPTY_CONFIG,
                                         "--cgroup", cg.path() + "/missing", "--pin-dir",
                                         pins.path()};
        auto r = run(argv, std::chrono::seconds(30));
        CHECK(r.exit_code == 1);
        CHECK(r.err == "error: cgroup " + cg.path() + "/missing: No such file or directory\n");
    }
    SECTION("no cgroup v2 mounted") {
        // In a private mount namespace without the cgroup2 mount.
        pid_t pid = ::fork();
        if (pid == 0) {
            if (::unshare(CLONE_NEWNS) != 0 ||
                ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
                ::umount2(cgroup_root().c_str(), MNT_DETACH) != 0)
                ::_exit(100);
            std::vector<std::string> argv = {daemon_binary(), "--config",
                                             SOCKACCEL_TEST_EMPTY_CONFIG, "--pin-dir",
                                             pins.path()};
            auto r = run(argv, std::chrono::seconds(30));
            bool ok = r.exit_code == 1 && r.err.find("no cgroup v2 filesystem is mounted") !=
                                              std::string::npos;
            ::_exit(ok ? 0 : 101);
        }
        int status = 0;
        ::waitpid(pid, &status, 0);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
    }
    CHECK(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 0);
}

TEST_CASE("connections beyond the map's capacity work unaccelerated and are counted") {
    TestCgroup cg("full");
    TestPinDir pins("full");
    DaemonProcess daemon(daemon_args(cg, pins, {"--map-size", "8"}));
    REQUIRE(daemon.ready());
    auto report = run_streamcheck(pair_args("127.0.0.1", cg.path(), cg.path(), 16));
    check_integrity(report);
    auto c = read_pinned_counters(pins.path());
    INFO(counters_to_json(c).dump());
    CHECK(c[SOCKACCEL_CNT_ADD_FAILED_FULL] > 0);
    // Every socket is counted once: inserted, refused by the full map, or
    // (a server whose client could not be inserted) not inserted because
    // its peer is not in the map.
    CHECK(c[SOCKACCEL_CNT_SOCKETS_ADDED] + c[SOCKACCEL_CNT_ADD_FAILED_FULL] +
              c[SOCKACCEL_CNT_PEER_NOT_LOCAL] ==
          32);
    // Nothing is left behind once the connections have closed.
    ControlClient ctl(pins.socket());
    REQUIRE(ctl.connected());
    CHECK(wait_entries(ctl, 0)["map"]["entries"] == 0);
    CHECK(daemon.stop() == 0);
}
