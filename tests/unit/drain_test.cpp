// SPDX-License-Identifier: Apache-2.0
// plan_deletions(): the rules that decide when a socket may leave the
// sockhash without losing a byte (daemon/src/drain.h).
#include <catch2/catch.hpp>
#include <cstring>

#include "drain.h"
#include "sockaccel/key.h"

using namespace sockaccel;
using namespace std::chrono_literals;

namespace {

sockaccel_key key(std::uint16_t lport, std::uint16_t rport) {
    sockaccel_key k;
    std::memset(&k, 0, sizeof(k));
    k.family = SOCKACCEL_AF_INET;
    k.local_ip[0] = 0x0100007f;
    k.remote_ip[0] = 0x0100007f;
    k.local_port = lport;
    k.remote_port = rport;
    k.netns = 42;
    return k;
}

sockaccel_drain_record rec(std::uint16_t lport, std::uint16_t rport, std::uint64_t cookie,
                           std::uint32_t sk_flags, bool empty) {
    sockaccel_drain_record r;
    std::memset(&r, 0, sizeof(r));
    r.key = key(lport, rport);
    r.cookie = cookie;
    r.sk_flags = sk_flags;
    r.status = empty ? SOCKACCEL_DRAIN_EMPTY : 0;
    return r;
}

constexpr std::uint32_t kClaimed = SOCKACCEL_SK_DRAINING;
constexpr std::uint32_t kQuiet = SOCKACCEL_SK_DRAINING | SOCKACCEL_SK_QUIESCED;
const auto t0 = std::chrono::steady_clock::time_point{} + 1h;

}  // namespace

TEST_CASE("a quiet, empty pair is deleted together") {
    AbsenceClock absent;
    auto plan = plan_deletions({rec(1, 2, 10, kQuiet, true), rec(2, 1, 11, kQuiet, true)}, absent,
                               t0, 200ms, false);
    CHECK(plan == std::vector<std::uint64_t>{10, 11});
}

TEST_CASE("unread redirected data keeps a socket, not its empty peer") {
    AbsenceClock absent;
    auto plan = plan_deletions({rec(1, 2, 10, kQuiet, false), rec(2, 1, 11, kQuiet, true)}, absent,
                               t0, 200ms, false);
    CHECK(plan == std::vector<std::uint64_t>{11});
}

TEST_CASE("a socket whose peer may still be redirecting to it stays") {
    AbsenceClock absent;
    // 11 is claimed but not yet seen quiet: a redirect it decided before the
    // claim may still be landing in 10. And 11 itself must be quiet to go,
    // so that 10 may later treat its absence as silence.
    auto plan = plan_deletions({rec(1, 2, 10, kQuiet, true), rec(2, 1, 11, kClaimed, true)}, absent,
                               t0, 200ms, false);
    CHECK(plan.empty());
}

TEST_CASE("a socket not quiet itself stays, even if empty") {
    AbsenceClock absent;
    auto plan = plan_deletions({rec(1, 2, 10, kClaimed, true), rec(2, 1, 11, kClaimed, true)},
                               absent, t0, 200ms, false);
    CHECK(plan.empty());
}

TEST_CASE("sockets not claimed by the drain are never touched") {
    AbsenceClock absent;
    auto plan = plan_deletions({rec(1, 2, 10, 0, true), rec(2, 1, 11, 0, true)}, absent, t0, 200ms,
                               true);
    CHECK(plan.empty());
}

TEST_CASE("a missing peer counts as gone only after the grace period") {
    AbsenceClock absent;
    std::vector<sockaccel_drain_record> scan = {rec(1, 2, 10, kQuiet, true)};
    CHECK(plan_deletions(scan, absent, t0, 200ms, false).empty());
    CHECK(plan_deletions(scan, absent, t0 + 100ms, 200ms, false).empty());
    CHECK(plan_deletions(scan, absent, t0 + 200ms, 200ms, false) == std::vector<std::uint64_t>{10});

    SECTION("a peer that shows up restarts the clock") {
        AbsenceClock a2;
        plan_deletions(scan, a2, t0, 200ms, false);
        plan_deletions({rec(1, 2, 10, kQuiet, true), rec(2, 1, 11, kClaimed, true)}, a2,
                       t0 + 100ms, 200ms, false);
        CHECK(plan_deletions(scan, a2, t0 + 250ms, 200ms, false).empty());
    }
}

TEST_CASE("a foreign socket cannot redirect, so it counts as quiet") {
    AbsenceClock absent;
    auto foreign = rec(2, 1, 11, 0, true);
    foreign.status |= SOCKACCEL_DRAIN_FOREIGN;
    auto plan = plan_deletions({rec(1, 2, 10, kQuiet, true), foreign}, absent, t0, 200ms, false);
    CHECK(plan == std::vector<std::uint64_t>{10, 11});
}

TEST_CASE("force chooses every claimed socket, unread data or not") {
    AbsenceClock absent;
    auto plan = plan_deletions({rec(1, 2, 10, kClaimed, false), rec(2, 1, 11, kQuiet, true),
                                rec(3, 4, 12, 0, false)},
                               absent, t0, 200ms, true);
    CHECK(plan == std::vector<std::uint64_t>{10, 11});
}
