// SPDX-License-Identifier: Apache-2.0
//
// The kernel feature probe against the real kernel, and the fallbacks an
// older kernel gets, exercised here by turning features off
// (SOCKACCEL_FEATURES_OFF): the data plane must still be lossless.
#include <linux/bpf.h>
#include <stdlib.h>

#include <catch2/catch.hpp>

#include "harness.h"

using namespace sockaccel;
using namespace sockaccel::test;
using nlohmann::json;

namespace {

// Sets SOCKACCEL_FEATURES_OFF for the daemons started while it lives.
class FeaturesOff {
public:
    explicit FeaturesOff(const std::string& names) { ::setenv("SOCKACCEL_FEATURES_OFF", names.c_str(), 1); }
    ~FeaturesOff() { ::unsetenv("SOCKACCEL_FEATURES_OFF"); }
    FeaturesOff(const FeaturesOff&) = delete;
    FeaturesOff& operator=(const FeaturesOff&) = delete;
};

}  // namespace

TEST_CASE("features: status reports what the running kernel supports") {
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
    CHECK(f["drain_iterator"] == f["sockmap_iterator"]);
    CHECK(f["backpressure"] == (f["psock_msg_tot_len"] == true && f["sk_msg_kernel_reads"] == true));
    // What the status says is what the kernel has (6.18 has all of them;
    // Debian 12's 6.1 lacks psock->msg_tot_len, so back-pressure).
    const auto& k = kernel_features();
    CHECK(f["sockmap_iterator"] == k.sockmap_iterator);
    CHECK(f["psock_msg_tot_len"] == k.psock_msg_tot_len);
    CHECK(f["sk_msg_kernel_reads"] == k.sk_msg_kernel_reads);
    CHECK(daemon.stop() == 0);
}

TEST_CASE("features: without optional kernel features the data plane stays lossless") {
    struct Case {
        const char* off;
        bool iterator, backpressure;
    };
    const Case cases[] = {
        {"sk_msg_kernel_reads", true, false},
        {"psock_msg_tot_len", true, false},
        {"sockmap_iterator", false, true},
        {"sockmap_iterator,psock_msg_tot_len,sk_msg_kernel_reads", false, false},
    };
    int round = 0;
    for (const auto& c : cases) {
        INFO("SOCKACCEL_FEATURES_OFF=" << c.off);
        TestCgroup cg("featoff");
        TestPinDir pins("featoff");
        std::unique_ptr<DaemonProcess> daemon;
        {
            FeaturesOff off(c.off);
            daemon = std::make_unique<DaemonProcess>(daemon_args(cg, pins));
        }
        REQUIRE(daemon->ready());
        ControlClient ctl(pins.socket());
        auto status = result(ctl.request("status"));
        // Turning a feature off can only take away what the kernel has.
        CHECK(status["features"]["drain_iterator"] == (c.iterator && kernel_features().sockmap_iterator));
        CHECK(status["features"]["backpressure"] ==
              (c.backpressure && kernel_features().backpressure()));

        auto report = run_streamcheck(
            {"pair", "--addr", round % 2 ? "::1" : "127.0.0.1", "--server-cgroup", cg.path(),
             "--client-cgroup", cg.path(), "--connections", "24", "--parallel", "8",
             "--read-pause-dir", "both", "--read-pause-after", "32768", "--read-pause-ms", "50",
             "--timeout", "60"});
        check_integrity(report);
        const auto counters = result(ctl.request("stats"))["counters"];
        CHECK(counters["redirect_bytes"].get<std::uint64_t>() > 0);
        CHECK(counters["storage_missing"] == 0);
        if (!c.backpressure) CHECK(counters["backpressure_holds"] == 0);

        auto flush = ctl.request("flush-map");
        if (c.iterator) {
            CHECK(flush["ok"] == true);
        } else {
            CHECK(flush["ok"] == false);
            CHECK(flush["error"]["code"] == "kernel_error");
        }
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
