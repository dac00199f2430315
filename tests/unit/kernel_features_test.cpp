// SPDX-License-Identifier: Apache-2.0
//
// The pure parts of the kernel feature probe: which missing mechanism stops
// the start, the SOCKACCEL_FEATURES_OFF mask, and the status shape. The
// probe itself runs against the real kernel in tests/priv/features_test.cpp.
#include <catch2/catch.hpp>

#include "kernel_features.h"

using sockaccel::KernelFeatures;

namespace {

KernelFeatures all() {
    KernelFeatures f;
    f.sockhash = f.sk_msg = f.sockops = f.cgroup_bpf_link = f.sk_storage_in_sk_msg = true;
    f.sockmap_iterator = f.task_file_iterator = f.tcp_iterator = f.map_iterator = true;
    f.psock_msg_tot_len = f.sk_msg_kernel_reads = true;
    return f;
}

}  // namespace

TEST_CASE("a missing required mechanism names itself; optional ones never stop the start") {
    CHECK_FALSE(sockaccel::missing_required(all()).has_value());
    auto f = all();
    f.sockmap_iterator = f.task_file_iterator = f.tcp_iterator = f.map_iterator = false;
    f.psock_msg_tot_len = f.sk_msg_kernel_reads = false;
    // No iterator at all is refused too, by drain_candidates() (drain_backend_test.cpp).
    CHECK_FALSE(sockaccel::missing_required(f).has_value());

    const std::pair<bool KernelFeatures::*, const char*> required[] = {
        {&KernelFeatures::sockhash, "BPF sockhash map"},
        {&KernelFeatures::sk_msg, "sk_msg programs"},
        {&KernelFeatures::sockops, "sockops programs"},
        {&KernelFeatures::cgroup_bpf_link, "cgroup bpf_link"},
        {&KernelFeatures::sk_storage_in_sk_msg, "socket storage in sk_msg programs"},
    };
    for (const auto& [member, name] : required) {
        auto g = all();
        g.*member = false;
        auto missing = sockaccel::missing_required(g);
        INFO(name);
        REQUIRE(missing.has_value());
        CHECK(missing->find(name) != std::string::npos);
        CHECK(missing->find("cannot run here") != std::string::npos);
        CHECK(missing->find('\n') == std::string::npos);
    }
}

TEST_CASE("back-pressure needs both the unread count and kernel reads in sk_msg") {
    auto f = all();
    CHECK(f.backpressure());
    f.psock_msg_tot_len = false;
    CHECK_FALSE(f.backpressure());
    f = all();
    f.sk_msg_kernel_reads = false;
    CHECK_FALSE(f.backpressure());
}

TEST_CASE("SOCKACCEL_FEATURES_OFF turns optional features off, or fails and changes nothing") {
    auto f = all();
    REQUIRE(sockaccel::mask_features(f, ""));
    CHECK(f.sockmap_iterator);
    REQUIRE(sockaccel::mask_features(f, "sk_msg_kernel_reads,sockmap_iterator"));
    CHECK_FALSE(f.sk_msg_kernel_reads);
    CHECK_FALSE(f.sockmap_iterator);
    CHECK(f.psock_msg_tot_len);
    CHECK(f.sockhash);

    f = all();
    auto bad = sockaccel::mask_features(f, "psock_msg_tot_len,sockhash");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().find("unknown feature \"sockhash\"") != std::string::npos);
    CHECK(f.psock_msg_tot_len);  // unchanged: nothing applied
    CHECK_FALSE(sockaccel::mask_features(f, "sockmap_iterator,"));
    f = all();
    REQUIRE(sockaccel::mask_features(f, "task_file_iterator,tcp_iterator,map_iterator"));
    CHECK(f.sockmap_iterator);
    CHECK_FALSE(f.task_file_iterator);
    CHECK_FALSE(f.tcp_iterator);
    CHECK_FALSE(f.map_iterator);
    CHECK(sockaccel::mask_features(f, std::string(100000, 'x')).error().size() < 300);
}

TEST_CASE("status.features lists every probed mechanism") {
    auto j = sockaccel::features_to_json(all());
    for (const char* key : {"sockhash", "sk_msg", "sockops", "cgroup_bpf_link",
                            "sk_storage_in_sk_msg", "sockmap_iterator", "task_file_iterator",
                            "tcp_iterator", "map_iterator", "psock_msg_tot_len",
                            "sk_msg_kernel_reads", "backpressure"}) {
        INFO(key);
        CHECK(j[key] == true);
    }
    CHECK(j.size() == 12);
}
