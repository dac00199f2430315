// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>
#include <cstring>
#include <set>
#include <vector>

#include "counters.h"

using namespace sockaccel;

TEST_CASE("per-CPU values are summed over CPUs") {
    std::vector<std::uint8_t> buf(4 * 8);
    const std::uint64_t v[4] = {1, 20, 300, 4000};
    std::memcpy(buf.data(), v, sizeof(v));
    CHECK(sum_per_cpu(buf, 4) == 4321);
    CHECK(sum_per_cpu(buf, 2) == 21);
    CHECK(sum_per_cpu(buf, 9) == 4321);  // never reads past the buffer
    CHECK(sum_per_cpu({}, 4) == 0);
}

TEST_CASE("sums wrap like the kernel's u64 counters") {
    std::vector<std::uint8_t> buf(2 * 8);
    const std::uint64_t v[2] = {~0ull, 2};
    std::memcpy(buf.data(), v, sizeof(v));
    CHECK(sum_per_cpu(buf, 2) == 1);
}

TEST_CASE("every counter has a unique name, and JSON carries them all") {
    std::set<std::string_view> names;
    for (std::size_t i = 0; i < SOCKACCEL_CNT__MAX; ++i) names.insert(counter_name(i));
    CHECK(names.size() == SOCKACCEL_CNT__MAX);
    CHECK(counter_name(SOCKACCEL_CNT__MAX) == "unknown");

    CounterValues values{};
    values[SOCKACCEL_CNT_REDIRECT_BYTES] = 42;
    values[SOCKACCEL_CNT_ADD_FAILED_FULL] = 2;
    values[SOCKACCEL_CNT_ADD_FAILED_OTHER] = 3;
    auto j = counters_to_json(values);
    CHECK(j["redirect_bytes"] == 42);
    CHECK(j["add_failed"] == 5);
    CHECK(j["add_failed_map_full"] == 2);
    CHECK(j.size() == SOCKACCEL_CNT__MAX + 1);
}
