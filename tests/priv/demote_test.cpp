// SPDX-License-Identifier: Apache-2.0
//
// Demotion (SOCKACCEL_CFG_DEMOTE, docs/architecture.md "Demotion"): a
// connection that runs slower redirected than on TCP goes back to TCP for
// good, and its two sockets leave the sockhash through the lossless drain.
// Each case drives one real loopback connection step by step (HeldPair) and
// checks every byte, in order, before and after the switch.
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "harness.h"
#include "held_pair.h"

using namespace sockaccel;
using namespace sockaccel::test;
using nlohmann::json;

namespace {

std::uint64_t delta(const CounterValues& after, const CounterValues& before, int counter) {
    return after[counter] - before[counter];
}

// The harness's config (a 1 s stop timeout) with these redirect settings.
std::string config_with(const json& redirect) {
    return json{{"drain", {{"stop_timeout_sec", 1}}}, {"redirect", redirect}}.dump();
}

// Waits (bounded, about 10 s) until `status` says `removed` demoted
// sockets have left the sockhash. The drain retries on a timer; this only
// bounds the wait.
json wait_demoted(ControlClient& ctl, std::uint64_t removed) {
    json status;
    for (int i = 0; i < 200; ++i) {
        status = result(ctl.request("status"));
        if (status["demotion"]["removed"].get<std::uint64_t>() >= removed) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return status;
}

// Whether `connections` lists a socket (or its peer) demoted for `reason`.
// A walk that cannot read a socket's flags (state "unknown") cannot say,
// which counts as listed.
bool listed_demoted(ControlClient& ctl, const std::string& reason) {
    const auto listed = result(ctl.request("connections"));
    UNSCOPED_INFO(listed.dump());
    for (const auto& c : listed["connections"])
        if (c["demoted"] == reason || c["peer_demoted"] == reason || c["state"] == "unknown")
            return true;
    return false;
}

// The pair was demoted: every byte so far arrives in order (redirected
// ones first, then the ones TCP carried), both sockets leave the sockhash
// while the connection stays open, and what is sent from then on takes
// plain TCP, in order, with no counter of the data plane moving.
void check_demoted_pair(ControlClient& ctl, const TestPinDir& pins, HeldPair& pair) {
    CHECK(pair.read_all().rfind("ok read", 0) == 0);
    auto status = wait_demoted(ctl, 2);
    CHECK(status["demotion"]["removed"] == 2);
    CHECK(status["demotion"]["demoting"] == 0);
    CHECK(wait_entries(ctl, 0)["map"]["entries"] == 0);
    const auto before = read_pinned_counters(pins.path());
    CHECK(pair.writes(64 * 1024, 64).rfind("ok sent", 0) == 0);
    CHECK(pair.read_all().rfind("ok read", 0) == 0);
    const auto after = read_pinned_counters(pins.path());
    // Out of the sockhash, sk_msg no longer runs for them at all.
    CHECK(delta(after, before, SOCKACCEL_CNT_PASS_MSGS) == 0);
    CHECK(delta(after, before, SOCKACCEL_CNT_REDIRECT_MSGS) == 0);
    CHECK(pair.close().rfind("ok", 0) == 0);
}

}  // namespace

TEST_CASE("demote: a stream of small writes into unread data goes back to TCP, every byte in "
          "order, and leaves the map",
          "[demote][drain]") {
    TestCgroup cg("demsmall");
    TestPinDir pins("demsmall");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());
    REQUIRE(result(ctl.request("status"))["features"]["demotion"] == true);
    REQUIRE(result(ctl.request("status"))["demotion"]["enabled"] == true);

    HeldPair pair(cg.path(), "127.0.0.1");
    wait_entries(ctl, 2, /*at_least=*/true);
    const auto before = read_pinned_counters(pins.path());
    // 1,024 writes of 64 B that the server does not read: every one after
    // the first finds the previous one unread, as in a sender that outruns
    // its reader on one core.
    REQUIRE(pair.writes(64 * 1024, 64).rfind("ok sent", 0) == 0);
    const auto after = read_pinned_counters(pins.path());
    CHECK(delta(after, before, SOCKACCEL_CNT_DEMOTE_SMALL_WRITES) == 1);
    // The first window was redirected, the rest took TCP.
    CHECK(delta(after, before, SOCKACCEL_CNT_REDIRECT_MSGS) == SOCKACCEL_DEMOTE_WINDOW);
    CHECK(delta(after, before, SOCKACCEL_CNT_PASS_MSGS) == 1024 - SOCKACCEL_DEMOTE_WINDOW);
    CHECK(delta(after, before, SOCKACCEL_CNT_DEMOTE_DEFERRED) == 0);
    // Its reader has not read the redirected bytes, so the pair waits in
    // the sockhash, listed with the reason.
    CHECK(listed_demoted(ctl, "small_writes"));
    CHECK(result(ctl.request("status"))["demotion"]["pairs"] == 1);
    check_demoted_pair(ctl, pins, pair);
    const auto metrics = result(ctl.request("stats"))["counters"];
    CHECK(metrics["demoted_small_writes"] == 1);
}

TEST_CASE("demote: request/response traffic of the same size and count is not demoted",
          "[demote]") {
    TestCgroup cg("demrr");
    TestPinDir pins("demrr");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());
    HeldPair pair(cg.path(), "127.0.0.1");
    wait_entries(ctl, 2, /*at_least=*/true);
    const auto before = read_pinned_counters(pins.path());
    // Each side reads the other's message before it answers, so no write
    // ever finds unread data: TCP would not have coalesced anything.
    REQUIRE(pair.round_trips(1024, 64) == "ok rr 1024");
    const auto after = read_pinned_counters(pins.path());
    CHECK(delta(after, before, SOCKACCEL_CNT_REDIRECT_MSGS) == 2 * 1024);
    CHECK(delta(after, before, SOCKACCEL_CNT_PASS_MSGS) == 0);
    for (int c : {SOCKACCEL_CNT_DEMOTE_SMALL_WRITES, SOCKACCEL_CNT_DEMOTE_BACKPRESSURE,
                  SOCKACCEL_CNT_DEMOTE_READER, SOCKACCEL_CNT_DEMOTE_DEFERRED})
        CHECK(delta(after, before, c) == 0);
    CHECK(result(ctl.request("status"))["map"]["entries"] == 2);
    CHECK(pair.close().rfind("ok", 0) == 0);
}

TEST_CASE("demote: a sender held by back-pressure that cannot resume is demoted",
          "[demote][drain]") {
    if (!kernel_features().backpressure()) {
        // Without psock->msg_tot_len (Debian 12's 6.1) back-pressure never holds.
        SUCCEED("no back-pressure on this kernel");
        return;
    }
    TestCgroup cg("dembp");
    TestPinDir pins("dembp");
    DaemonProcess daemon(daemon_args(
        cg, pins, {}, config_with({{"max_unread_bytes", 65536}, {"demote_held_sends", 16}})));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());
    HeldPair pair(cg.path(), "127.0.0.1");
    wait_entries(ctl, 2, /*at_least=*/true);
    const auto before = read_pinned_counters(pins.path());
    // One 64 KiB write fills the limit, so the next sends take TCP; the
    // server reads nothing, so the sender cannot resume.
    REQUIRE(pair.writes(64 * 1024, 64 * 1024).rfind("ok sent", 0) == 0);
    REQUIRE(pair.writes(32 * 1024, 1024).rfind("ok sent", 0) == 0);
    const auto after = read_pinned_counters(pins.path());
    CHECK(delta(after, before, SOCKACCEL_CNT_BACKPRESSURE_HOLDS) == 1);
    CHECK(delta(after, before, SOCKACCEL_CNT_DEMOTE_BACKPRESSURE) == 1);
    CHECK(delta(after, before, SOCKACCEL_CNT_DEMOTE_SMALL_WRITES) == 0);
    CHECK(listed_demoted(ctl, "backpressure"));
    check_demoted_pair(ctl, pins, pair);
}

TEST_CASE("demote: a sender held for a reader that turned blocking is demoted, and the pair "
          "leaves the map",
          "[demote][drain]") {
    TestCgroup cg("demrd");
    TestPinDir pins("demrd");
    DaemonProcess daemon(daemon_args(cg, pins, {}, config_with({{"demote_held_sends", 16}})));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());
    HeldPair pair(cg.path(), "127.0.0.1");
    wait_entries(ctl, 2, /*at_least=*/true);
    // Some bytes redirected first, so the server socket cannot simply
    // leave at its next segment: only the drain can take it out.
    REQUIRE(pair.writes(4096, 4096).rfind("ok sent", 0) == 0);
    REQUIRE(pair.server_blocking(true) == "ok server blocking");
    const auto before = read_pinned_counters(pins.path());
    REQUIRE(pair.writes(32 * 1024, 1024).rfind("ok sent", 0) == 0);
    const auto after = read_pinned_counters(pins.path());
    CHECK(delta(after, before, SOCKACCEL_CNT_READER_HOLDS) == 1);
    CHECK(delta(after, before, SOCKACCEL_CNT_DEMOTE_READER) == 1);
    CHECK(delta(after, before, SOCKACCEL_CNT_REDIRECT_MSGS) == 0);
    CHECK(listed_demoted(ctl, "reader"));
    // The blocking reader reads through plain tcp_recvmsg() once the pair
    // is out of the sockhash: the known limit of a reader that turns
    // blocking after data was redirected into it is gone with demotion.
    check_demoted_pair(ctl, pins, pair);
}

TEST_CASE("demote: redirect.demote false keeps a small-write stream redirected", "[demote]") {
    TestCgroup cg("demoff");
    TestPinDir pins("demoff");
    DaemonProcess daemon(daemon_args(cg, pins, {}, config_with({{"demote", false}})));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());
    CHECK(result(ctl.request("status"))["demotion"]["enabled"] == false);
    HeldPair pair(cg.path(), "127.0.0.1");
    wait_entries(ctl, 2, /*at_least=*/true);
    const auto before = read_pinned_counters(pins.path());
    REQUIRE(pair.writes(64 * 1024, 64).rfind("ok sent", 0) == 0);
    CHECK(pair.read_all().rfind("ok read", 0) == 0);
    const auto after = read_pinned_counters(pins.path());
    CHECK(delta(after, before, SOCKACCEL_CNT_DEMOTE_SMALL_WRITES) == 0);
    CHECK(delta(after, before, SOCKACCEL_CNT_REDIRECT_MSGS) == 1024);
    CHECK(result(ctl.request("status"))["map"]["entries"] == 2);
    CHECK(pair.close().rfind("ok", 0) == 0);
}
