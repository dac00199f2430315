// SPDX-License-Identifier: Apache-2.0
//
// The kernel feature probe against the real kernel, and the fallbacks an
// older kernel gets, exercised here by turning features off
// (SOCKACCEL_FEATURES_OFF): the data plane must still be lossless.
#include <linux/bpf.h>

#include <catch2/catch.hpp>

#include "harness.h"
#include "held_pair.h"

using namespace sockaccel;
using namespace sockaccel::test;
using nlohmann::json;

namespace {

}  // namespace

TEST_CASE("features: status reports what the running kernel supports", "[drain]") {
    TestCgroup cg("features");
    TestPinDir pins("features");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());
    const auto f = result(ctl.request("status"))["features"];
    INFO(f.dump());
    // Required: the daemon would not have started without them.
    for (const char* key : {"sockhash", "sk_msg", "sockops", "cgroup_bpf_link", "sk_storage_in_sk_msg"})
        CHECK(f[key] == true);
    // Optional: what the kernel offers is what was loaded.
    CHECK(f["drain_backend"] == to_string(expected_drain_backend()));
    CHECK(f["backpressure"] == (f["psock_msg_tot_len"] == true && f["sk_msg_kernel_reads"] == true));
    // What the status says is what the kernel has (Debian 12's 6.1 lacks
    // psock->msg_tot_len, so back-pressure; this project's 6.18 refuses
    // iter/sockmap programs).
    const auto& k = kernel_features();
    CHECK(f["sockmap_iterator"] == k.sockmap_iterator);
    CHECK(f["task_file_iterator"] == k.task_file_iterator);
    CHECK(f["tcp_iterator"] == k.tcp_iterator);
    CHECK(f["map_iterator"] == k.map_iterator);
    CHECK(f["psock_msg_tot_len"] == k.psock_msg_tot_len);
    CHECK(f["sk_msg_kernel_reads"] == k.sk_msg_kernel_reads);
    CHECK(daemon.stop() == 0);
}

TEST_CASE("features: without optional kernel features the data plane stays lossless", "[drain]") {
    // Each case turns features off as if the kernel lacked them; the daemon
    // must pick the fallback (another drain backend, another way to count,
    // no back-pressure) and stay lossless, flush-map included.
    const char* cases[] = {
        "sk_msg_kernel_reads",
        "psock_msg_tot_len",
        "map_iterator",
        "sockmap_iterator",
        "sockmap_iterator,task_file_iterator",
        "sockmap_iterator,map_iterator,psock_msg_tot_len,sk_msg_kernel_reads",
    };
    int round = 0;
    for (const char* off : cases) {
        INFO("SOCKACCEL_FEATURES_OFF=" << off);
        KernelFeatures masked = kernel_features();
        REQUIRE(mask_features(masked, off));
        auto backends = drain_candidates(masked, forced_drain_backend());
        TestCgroup cg("featoff");
        TestPinDir pins("featoff");
        if (!backends) {
            // Forced onto a backend this case turns off: the start fails
            // with the forced backend's one line (drain_test.cpp).
            FeaturesOff fo(off);
            auto argv = daemon_args(cg, pins);
            argv.insert(argv.begin(), daemon_binary());
            auto r = run(argv, std::chrono::seconds(30));
            CHECK(r.exit_code == 1);
            CHECK(r.err.find(backends.error()) != std::string::npos);
            continue;
        }
        std::unique_ptr<DaemonProcess> daemon;
        {
            FeaturesOff fo(off);
            daemon = std::make_unique<DaemonProcess>(daemon_args(cg, pins));
        }
        REQUIRE(daemon->ready());
        ControlClient ctl(pins.socket());
        auto status = result(ctl.request("status"));
        // Turning a feature off can only take away what the kernel has.
        CHECK(status["features"]["drain_backend"] == to_string(backends->front()));
        CHECK(status["features"]["entry_counter"] ==
              (masked.map_iterator ? "map_iterator"
               : backends->front() == DrainBackend::sockhash ? "sockhash_iterator"
                                                              : "key_walk"));
        CHECK(status["features"]["backpressure"] == masked.backpressure());
        // Demotion needs the full program's kernel reads; without them it is off.
        CHECK(status["features"]["demotion"] == masked.sk_msg_kernel_reads);
        CHECK(status["demotion"]["enabled"] == masked.sk_msg_kernel_reads);

        auto report = run_streamcheck(
            {"pair", "--addr", round % 2 ? "::1" : "127.0.0.1", "--server-cgroup", cg.path(),
             "--client-cgroup", cg.path(), "--connections", "24", "--parallel", "8",
             "--read-pause-dir", "both", "--read-pause-after", "32768", "--read-pause-ms", "50",
             "--timeout", "60", "--late-half-close"});
        check_integrity(report);
        const auto counters = result(ctl.request("stats"))["counters"];
        CHECK(counters["redirect_bytes"].get<std::uint64_t>() > 0);
        CHECK(counters["storage_missing"] == 0);
        if (!masked.backpressure()) CHECK(counters["backpressure_holds"] == 0);

        // Every fallback still drains losslessly, and counts right.
        HeldPair p(cg.path(), "127.0.0.1");
        REQUIRE(p.send(4000) == "ok sent 4000");
        CHECK(result(ctl.request("status"))["map"]["entries"] == 2);
        auto flush = result(ctl.request("flush-map", {{"wait_ms", 200}}));
        if (masked.sk_msg_kernel_reads) {
            CHECK(flush["flushed"] == 1);
            CHECK(flush["pending"] == 1);
        } else {
            // The basic verdict cannot check the accepted side's reader
            // itself, so the first send into it, and every later one, took
            // TCP: nothing is pending.
            CHECK(flush["flushed"] == 2);
            CHECK(flush["pending"] == 0);
        }
        CHECK(flush["dropped_sockets"] == 0);
        CHECK(p.read_all() == "ok read 4000");
        CHECK(wait_entries(ctl, 0)["map"]["entries"] == 0);
        CHECK(p.close() == "ok closed");
        CHECK(daemon->stop() == 0);
        ++round;
    }
}

TEST_CASE("features: an unknown name in SOCKACCEL_FEATURES_OFF fails the start with one line") {
    TestCgroup cg("featbad");
    TestPinDir pins("featbad");
    ProcessResult r;
    {
        FeaturesOff off("sockhash");
        auto argv = daemon_args(cg, pins);
        argv.insert(argv.begin(), daemon_binary());
        r = run(argv, std::chrono::seconds(30));
    }
    INFO(r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("unknown feature \"sockhash\"") != std::string::npos);
    CHECK(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 0);
    CHECK_FALSE(pins.has("sock_hash"));
}
