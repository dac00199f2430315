// SPDX-License-Identifier: Apache-2.0
//
// Tier 2: opens the embedded BPF object without loading it (no privilege)
// and checks that every map matches the ABI structs the daemon uses, so a
// layout change on one side only cannot build a working binary.
#define CATCH_CONFIG_MAIN
#include <linux/bpf.h>

#include <catch2/catch.hpp>
#include <map>

#include "dataplane.h"

using namespace sockaccel;

TEST_CASE("embedded maps match the ABI header") {
    auto maps = DataPlane::embedded_maps();
    REQUIRE(maps);
    std::map<std::string, MapLayout> by_name;
    for (const auto& m : *maps) by_name[m.name] = m;

    REQUIRE(by_name.count("sock_hash"));
    CHECK(by_name["sock_hash"].type == BPF_MAP_TYPE_SOCKHASH);
    CHECK(by_name["sock_hash"].key_size == sizeof(sockaccel_key));
    CHECK(by_name["sock_hash"].value_size == 8);  // socket cookie (kernel-facts fact 8)

    REQUIRE(by_name.count("sk_state"));
    CHECK(by_name["sk_state"].type == BPF_MAP_TYPE_SK_STORAGE);
    CHECK(by_name["sk_state"].value_size == sizeof(sockaccel_sk_state));

    REQUIRE(by_name.count("config"));
    CHECK(by_name["config"].type == BPF_MAP_TYPE_ARRAY);
    CHECK(by_name["config"].key_size == 4);
    CHECK(by_name["config"].value_size == sizeof(sockaccel_config));
    CHECK(by_name["config"].max_entries == 1);

    REQUIRE(by_name.count("counters"));
    CHECK(by_name["counters"].type == BPF_MAP_TYPE_PERCPU_ARRAY);
    CHECK(by_name["counters"].value_size == 8);
    CHECK(by_name["counters"].max_entries == SOCKACCEL_CNT__MAX);
}
