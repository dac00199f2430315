// SPDX-License-Identifier: Apache-2.0
//
// Drain backends against the real kernel (daemon/src/drain_backend.h): the
// one in use is the one the kernel allows, a forced one the kernel refuses
// fails the start in one line, and a socket the backend's walk cannot reach
// is never deleted blind: it stays, is reported as pending, and is drained
// once a walk reaches it. Run once per backend (CTest's priv[<backend>]
// variants), so each walk's blind spot is checked on every kernel.
#include <linux/bpf.h>

#include <algorithm>

#include <catch2/catch.hpp>

#include "harness.h"
#include "held_pair.h"
#include "netns_lab.h"

using namespace sockaccel;
using namespace sockaccel::test;
using nlohmann::json;

namespace {

ProcessResult start_and_fail(const std::vector<std::string>& extra) {
    TestCgroup cg("drainbad");
    TestPinDir pins("drainbad");
    auto argv = daemon_args(cg, pins, extra);
    argv.insert(argv.begin(), daemon_binary());
    auto r = run(argv, std::chrono::seconds(30));
    CHECK(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 0);
    CHECK_FALSE(pins.has("sock_hash"));
    return r;
}

}  // namespace

TEST_CASE("drain: the backend in use is the first the kernel allows, or the forced one",
          "[drain]") {
    TestCgroup cg("drainwhich");
    TestPinDir pins("drainwhich");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());
    const auto s = result(ctl.request("status"));
    INFO(s["drain"].dump() << s["features"].dump());
    const auto backend = expected_drain_backend();
    const auto walk = drain_walk(backend);
    CHECK(s["drain"]["backend"] == to_string(backend));
    CHECK(s["drain"]["iterator"] == iterator_name(backend));
    CHECK(s["drain"]["complete"] == walk.complete);
    CHECK(s["drain"]["cannot_see"] == (walk.complete ? json(nullptr) : json(walk.cannot_see)));
    CHECK(s["features"]["drain_backend"] == to_string(backend));
    // What the kernel loads, per iterator type, is what status says.
    const auto& k = kernel_features();
    CHECK(s["features"]["sockmap_iterator"] == k.sockmap_iterator);
    CHECK(s["features"]["task_file_iterator"] == k.task_file_iterator);
    CHECK(s["features"]["tcp_iterator"] == k.tcp_iterator);
    CHECK(s["features"]["map_iterator"] == k.map_iterator);
    CHECK(s["features"]["entry_counter"] == (k.map_iterator ? "map_iterator"
                                             : backend == DrainBackend::sockhash
                                                 ? "sockhash_iterator"
                                                 : "key_walk"));
    CHECK(daemon.stop() == 0);
}

TEST_CASE("drain: a backend the kernel refuses, or none at all, fails the start in one line",
          "[drain]") {
    for (auto b : kDrainBackends) {
        if (kernel_allows(kernel_features(), b)) continue;
        INFO(to_string(b));
        auto r = start_and_fail({"--drain-backend", std::string(to_string(b))});
        INFO(r.err);
        CHECK(r.exit_code == 1);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
        CHECK(r.err.find("this kernel refuses " + std::string(iterator_name(b))) !=
              std::string::npos);
    }
    // A kernel whose policy refuses every iterator the drain can use.
    {
        FeaturesOff off("sockmap_iterator,task_file_iterator,tcp_iterator");
        auto r = start_and_fail({"--drain-backend", "auto"});
        INFO(r.err);
        CHECK(r.exit_code == 1);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
        CHECK(r.err.find("loads none of the BPF iterators") != std::string::npos);
    }
    // A name that is no backend is a usage error.
    TestCgroup cg("drainname");
    TestPinDir pins("drainname");
    auto argv = daemon_args(cg, pins);
    argv.insert(argv.begin(), daemon_binary());
    argv.insert(argv.end(), {"--drain-backend", "sockmap"});
    CHECK(run(argv, std::chrono::seconds(30)).exit_code == 2);
}

TEST_CASE("drain: a socket the walk cannot reach stays, is reported pending, and drains once reached",
          "[drain]") {
    TestCgroup cg("drainblind");
    TestPinDir pins("drainblind");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());
    const auto backend = expected_drain_backend();
    const bool exact = kernel_features().psock_msg_tot_len;

    SECTION("a socket held in no file table (its descriptor in flight in SCM_RIGHTS)") {
        HeldPair p(cg.path(), "127.0.0.1");
        REQUIRE(p.send(5000) == "ok sent 5000");  // redirected into the server, unread
        REQUIRE(p.hide_server() == "ok hidden");
        auto r = result(ctl.request("flush-map", {{"wait_ms", 300}}));
        INFO(r.dump());
        CHECK(r["dropped_sockets"] == 0);
        if (backend == DrainBackend::task_file) {
            // The walk misses the server, so the client cannot know that its
            // peer is silent: both stay, and nothing is deleted blind.
            CHECK(r["flushed"] == 0);
            CHECK(r["pending"] == 2);
            CHECK(r["unreached"] == 1);
            CHECK(r["pending_bytes_exact"] == false);
            // connections lists both, the server from the map's keys.
            auto c = result(ctl.request("connections"));
            INFO(c.dump());
            CHECK(c["total"] == 2);
            REQUIRE(c["connections"].size() == 1);
            CHECK(c["connections"][0]["peer_cookie"].is_number());
        } else {
            // Every other walk sees it: the client goes, the server waits
            // for its reader.
            CHECK(r["flushed"] == 1);
            CHECK(r["pending"] == 1);
            CHECK(r["unreached"] == 0);
            CHECK(r["pending_bytes"] == (exact ? 5000 : 0));
        }
        CHECK(result(ctl.request("status"))["drain"]["active"] == true);
        // Back in a file table: the background drain reaches it, and every
        // byte is still there, in order, with what follows over TCP.
        REQUIRE(p.unhide_server() == "ok unhidden");
        REQUIRE(p.send(3000) == "ok sent 8000");
        CHECK(p.read_all() == "ok read 8000");
        auto done = wait_entries(ctl, 0);
        CHECK(done["map"]["entries"] == 0);
        REQUIRE(p.send(100) == "ok sent 8100");
        CHECK(p.read_all() == "ok read 8100");
        CHECK(p.close() == "ok closed");
    }
    SECTION("a connection in another network namespace") {
        NetnsLab lab("drainns");
        const auto ns = lab.add("box");
        HeldPair q(cg.path(), "127.0.0.1", ns);
        REQUIRE(q.send(7000) == "ok sent 7000");
        auto r = result(ctl.request("flush-map", {{"wait_ms", 300}}));
        INFO(r.dump());
        CHECK(r["dropped_sockets"] == 0);
        if (backend == DrainBackend::tcp) {
            // iter/tcp walks the daemon's own namespace only.
            CHECK(r["flushed"] == 0);
            CHECK(r["pending"] == 2);
            CHECK(r["unreached"] == 2);
            CHECK(result(ctl.request("status"))["map"]["entries"] == 2);
            // Still accelerated and intact; it leaves the map when it closes.
            REQUIRE(q.send(1000) == "ok sent 8000");
            CHECK(q.read_all() == "ok read 8000");
            CHECK(q.close() == "ok closed");
        } else {
            CHECK(r["flushed"] == 1);
            CHECK(r["pending"] == 1);
            CHECK(r["unreached"] == 0);
            REQUIRE(q.send(1000) == "ok sent 8000");
            CHECK(q.read_all() == "ok read 8000");
            CHECK(wait_entries(ctl, 0)["map"]["entries"] == 0);
            CHECK(q.close() == "ok closed");
        }
        auto done = wait_entries(ctl, 0);
        CHECK(done["map"]["entries"] == 0);
    }
    CHECK(daemon.stop() == 0);
}
