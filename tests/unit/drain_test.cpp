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

// `drain`: the socket's drain state, as status bits from its gate word.
sockaccel_drain_record rec(std::uint16_t lport, std::uint16_t rport, std::uint64_t cookie,
                           std::uint32_t drain, bool empty) {
    sockaccel_drain_record r;
    std::memset(&r, 0, sizeof(r));
    r.key = key(lport, rport);
    r.cookie = cookie;
    r.status = drain | (empty ? SOCKACCEL_DRAIN_EMPTY : 0);
    return r;
}

constexpr std::uint32_t kClaimed = SOCKACCEL_DRAIN_CLAIMED;
constexpr std::uint32_t kQuiet = SOCKACCEL_DRAIN_CLAIMED | SOCKACCEL_DRAIN_QUIESCED;
const auto t0 = std::chrono::steady_clock::time_point{} + 1h;

// The sockhash holds nothing outside the scan (a complete walk).
const PeerLookup nowhere = [](const sockaccel_key&) {
    return Result<std::optional<std::uint64_t>>(std::nullopt);
};

}  // namespace

TEST_CASE("a quiet, empty pair is deleted together") {
    AbsenceClock absent;
    auto plan = plan_deletions({rec(1, 2, 10, kQuiet, true), rec(2, 1, 11, kQuiet, true)}, absent,
                               t0, 200ms, false, nowhere);
    CHECK(plan == std::vector<std::uint64_t>{10, 11});
}

TEST_CASE("unread redirected data keeps a socket, not its empty peer") {
    AbsenceClock absent;
    auto plan = plan_deletions({rec(1, 2, 10, kQuiet, false), rec(2, 1, 11, kQuiet, true)}, absent,
                               t0, 200ms, false, nowhere);
    CHECK(plan == std::vector<std::uint64_t>{11});
}

TEST_CASE("a socket whose peer may still be redirecting to it stays") {
    AbsenceClock absent;
    // 11 is claimed but not yet seen quiet: a redirect it decided before the
    // claim may still be landing in 10. And 11 itself must be quiet to go,
    // so that 10 may later treat its absence as silence.
    auto plan = plan_deletions({rec(1, 2, 10, kQuiet, true), rec(2, 1, 11, kClaimed, true)}, absent,
                               t0, 200ms, false, nowhere);
    CHECK(plan.empty());
}

TEST_CASE("a socket not quiet itself stays, even if empty") {
    AbsenceClock absent;
    auto plan = plan_deletions({rec(1, 2, 10, kClaimed, true), rec(2, 1, 11, kClaimed, true)},
                               absent, t0, 200ms, false, nowhere);
    CHECK(plan.empty());
}

TEST_CASE("sockets not claimed by the drain are never touched") {
    AbsenceClock absent;
    auto plan = plan_deletions({rec(1, 2, 10, 0, true), rec(2, 1, 11, 0, true)}, absent, t0, 200ms,
                               true, nowhere);
    CHECK(plan.empty());
}

TEST_CASE("a missing peer counts as gone only after the grace period") {
    AbsenceClock absent;
    std::vector<sockaccel_drain_record> scan = {rec(1, 2, 10, kQuiet, true)};
    CHECK(plan_deletions(scan, absent, t0, 200ms, false, nowhere).empty());
    CHECK(plan_deletions(scan, absent, t0 + 100ms, 200ms, false, nowhere).empty());
    CHECK(plan_deletions(scan, absent, t0 + 200ms, 200ms, false, nowhere) == std::vector<std::uint64_t>{10});

    SECTION("a peer that shows up restarts the clock") {
        AbsenceClock a2;
        plan_deletions(scan, a2, t0, 200ms, false, nowhere);
        plan_deletions({rec(1, 2, 10, kQuiet, true), rec(2, 1, 11, kClaimed, true)}, a2,
                       t0 + 100ms, 200ms, false, nowhere);
        CHECK(plan_deletions(scan, a2, t0 + 250ms, 200ms, false, nowhere).empty());
    }
}

TEST_CASE("a foreign socket cannot redirect, so it counts as quiet") {
    AbsenceClock absent;
    auto foreign = rec(2, 1, 11, 0, true);
    foreign.status |= SOCKACCEL_DRAIN_FOREIGN;
    auto plan = plan_deletions({rec(1, 2, 10, kQuiet, true), foreign}, absent, t0, 200ms, false, nowhere);
    CHECK(plan == std::vector<std::uint64_t>{10, 11});
}

TEST_CASE("force chooses every claimed socket, unread data or not") {
    AbsenceClock absent;
    auto plan = plan_deletions({rec(1, 2, 10, kClaimed, false), rec(2, 1, 11, kQuiet, true),
                                rec(3, 4, 12, 0, false)},
                               absent, t0, 200ms, true, nowhere);
    CHECK(plan == std::vector<std::uint64_t>{10, 11});
}

TEST_CASE("a peer the walk did not reach but the map holds keeps its socket") {
    // An incomplete backend (iter/task_file, iter/tcp) missed the peer; it
    // may still redirect into 10, however long it stays unseen.
    AbsenceClock absent;
    std::vector<sockaccel_key> asked;
    const PeerLookup in_map = [&](const sockaccel_key& k) {
        asked.push_back(k);
        return Result<std::optional<std::uint64_t>>(std::optional<std::uint64_t>(11));
    };
    std::vector<sockaccel_drain_record> scan = {rec(1, 2, 10, kQuiet, true)};
    CHECK(plan_deletions(scan, absent, t0, 200ms, false, in_map).empty());
    CHECK(plan_deletions(scan, absent, t0 + 10s, 200ms, false, in_map).empty());
    REQUIRE(asked.size() == 2);
    CHECK(std::memcmp(&asked[0], &scan[0].key, sizeof(sockaccel_key)) != 0);
    CHECK(asked[0].local_port == 2);
    CHECK(asked[0].remote_port == 1);

    SECTION("once the map no longer holds it, the grace period starts") {
        CHECK(plan_deletions(scan, absent, t0 + 11s, 200ms, false, nowhere).empty());
        CHECK(plan_deletions(scan, absent, t0 + 11s + 200ms, 200ms, false, nowhere) ==
              std::vector<std::uint64_t>{10});
    }
}

TEST_CASE("a failed lookup counts as a peer still present") {
    AbsenceClock absent;
    const PeerLookup failing = [](const sockaccel_key&) -> Result<std::optional<std::uint64_t>> {
        return sys_error(EIO, "look up sockhash");
    };
    std::vector<sockaccel_drain_record> scan = {rec(1, 2, 10, kQuiet, true)};
    CHECK(plan_deletions(scan, absent, t0, 200ms, false, failing).empty());
    CHECK(plan_deletions(scan, absent, t0 + 1s, 200ms, false, failing).empty());
}

TEST_CASE("only a socket that could go makes the planner look its peer up") {
    AbsenceClock absent;
    int lookups = 0;
    const PeerLookup counting = [&](const sockaccel_key&) {
        ++lookups;
        return Result<std::optional<std::uint64_t>>(std::nullopt);
    };
    // Not quiet, not empty, not claimed: none can go, so none is looked up.
    plan_deletions({rec(1, 2, 10, kClaimed, true), rec(3, 4, 12, kQuiet, false),
                    rec(5, 6, 14, 0, true)},
                   absent, t0, 200ms, false, counting);
    CHECK(lookups == 0);
    // The clock of a missing peer runs meanwhile: once 12 is empty, its
    // peer's grace period has already passed.
    CHECK(plan_deletions({rec(3, 4, 12, kQuiet, true)}, absent, t0 + 200ms, 200ms, false,
                         counting) == std::vector<std::uint64_t>{12});
    CHECK(lookups == 1);
}
