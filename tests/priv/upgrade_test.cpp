// SPDX-License-Identifier: Apache-2.0
//
// Upgrades: a daemon finding pinned state of another ABI version must replace
// it without losing a byte. State that still holds sockets is switched off
// (flags cleared through the config prefix every ABI shares), its sockops
// link detached, and its pins retired to a subdirectory until its sockets
// close; then new state is created. State whose config cannot be read is
// never touched. Real daemon, real sockets, real kernel.
//
// "Another ABI" is faked by rewriting abi_version in the pinned config of a
// daemon that was SIGKILLed with unread redirected data in its sockhash.
#include <linux/bpf.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <memory>
#include <thread>

#include "harness.h"
#include "held_pair.h"
#include "system.h"

using namespace sockaccel;
using namespace sockaccel::test;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr std::uint32_t kOtherAbi = SOCKACCEL_ABI_VERSION + 100;

sockaccel_config read_config(const std::string& pin) {
    UniqueFd fd(bpf_obj_get(pin.c_str()));
    if (!fd) throw std::runtime_error("open " + pin);
    sockaccel_config cfg{};
    __u32 zero = 0;
    if (bpf_map_lookup_elem(fd.get(), &zero, &cfg) != 0) throw std::runtime_error("read " + pin);
    return cfg;
}

// Makes the pinned state look like another version's: only abi_version
// changes; the flags (insert and redirect on) stay as the killed daemon left
// them.
void set_pinned_abi(const std::string& pin, std::uint32_t abi) {
    UniqueFd fd(bpf_obj_get(pin.c_str()));
    REQUIRE(fd);
    sockaccel_config cfg{};
    __u32 zero = 0;
    REQUIRE(bpf_map_lookup_elem(fd.get(), &zero, &cfg) == 0);
    cfg.abi_version = abi;
    REQUIRE(bpf_map_update_elem(fd.get(), &zero, &cfg, BPF_EXIST) == 0);
}

// Kernel id of a pinned object; 0 if it cannot be opened.
std::uint32_t pinned_id(const std::string& pin) {
    UniqueFd fd(bpf_obj_get(pin.c_str()));
    if (!fd) return 0;
    bpf_map_info info{};  // id comes first in every *_info struct
    __u32 len = sizeof(info);
    return bpf_obj_get_info_by_fd(fd.get(), &info, &len) == 0 ? info.id : 0;
}

bool has_retired_dir(const std::string& pin_dir) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(pin_dir, ec))
        if (e.path().filename().string().rfind("retired_abi", 0) == 0) return true;
    return false;
}

std::vector<std::string> dir_entries(const std::string& dir) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec))
        out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

// --late-half-close: see daemon_test.cpp's pair_args(); without it a client
// that sends and half-closes before the accept sees no redirect.
std::vector<std::string> streamcheck_args(const TestCgroup& cg, int connections) {
    return {"pair",           "--addr",        "127.0.0.1", "--connections",
            std::to_string(connections), "--min-bytes", "1", "--max-bytes", "1048576",
            "--server-cgroup", cg.path(), "--client-cgroup", cg.path(), "--timeout", "60",
            "--late-half-close"};
}

// Polls status (bounded) until no retired state is listed; each status
// request is what removes retired state whose sockets have closed.
json wait_retired_empty(ControlClient& ctl) {
    json status;
    for (int i = 0; i < 200; ++i) {
        status = result(ctl.request("status"));
        if (status["retired"].empty()) break;
        std::this_thread::sleep_for(25ms);
    }
    return status;
}

// A daemon with 200,000 redirected bytes unread in its sockhash, SIGKILLed
// so everything stays pinned and attached.
struct KilledWithUnreadData {
    TestCgroup& cg;
    TestPinDir& pins;
    std::unique_ptr<HeldPair> pair;
    std::uint32_t map_id = 0;
    std::vector<std::string> pinned;  // what the pin directory held after the kill

    KilledWithUnreadData(TestCgroup& c, TestPinDir& p) : cg(c), pins(p) {
        DaemonProcess old(daemon_args(cg, pins));
        REQUIRE(old.ready());
        pair = std::make_unique<HeldPair>(cg.path(), "127.0.0.1");
        REQUIRE(pair->send(200000) == "ok sent 200000");  // redirected, not read yet
        auto c0 = read_pinned_counters(pins.path());
        REQUIRE(c0[SOCKACCEL_CNT_REDIRECT_BYTES] == 200000);
        REQUIRE(pinned_entries(pins.path()) == 2);
        map_id = pinned_id(pins.path() + "/sock_hash");
        REQUIRE(old.stop(SIGKILL) == -SIGKILL);
        REQUIRE(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 1);
        REQUIRE(pins.has("sockops_link"));
        pinned = dir_entries(pins.path());
    }
};

}  // namespace

TEST_CASE("upgrade: pinned state of another ABI is retired, not freed, and no byte is lost",
          "[upgrade][drain]") {
    TestCgroup cg("upgrade");
    TestPinDir pins("upgrade");
    KilledWithUnreadData old(cg, pins);
    set_pinned_abi(pins.path() + "/config", kOtherAbi);

    const auto args = daemon_args(cg, pins);
    auto next = std::make_unique<DaemonProcess>(args);
    INFO(next->log());
    REQUIRE(next->ready());
    const std::string retired_prefix =
        pins.path() + "/retired_abi" + std::to_string(kOtherAbi) + "_";
    CHECK(next->log().find("pinned state of ABI " + std::to_string(kOtherAbi) +
                           " replaced; 2 socket(s) retired to " + retired_prefix) !=
          std::string::npos);
    // Only our link: the old one was detached.
    CHECK(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 1);

    ControlClient ctl(pins.socket());
    auto status = result(ctl.request("status"));
    INFO(status.dump());
    // Fresh state, not the old one adopted.
    CHECK(status["attach"]["adopted"] == false);
    CHECK(status["map"]["entries"] == 0);
    CHECK(status["attach"]["sock_hash_map_id"] != old.map_id);
    REQUIRE(status["retired"].size() == 1);
    const json retired = status["retired"][0];
    CHECK(retired["abi_version"] == kOtherAbi);
    CHECK(retired["sockets"] == 2);
    const std::string dir = retired["dir"];
    CHECK(dir.rfind(retired_prefix, 0) == 0);
    CHECK(pinned_id(dir + "/sock_hash") == old.map_id);
    // Every pin moved along except the link, which was detached.
    for (const auto& pin : old.pinned) {
        INFO(pin);
        CHECK(path_exists(dir + "/" + pin) == (pin != "sockops_link"));
    }
    CHECK(old.pinned.size() >= 5);
    // Switched off through the frozen prefix; the rest of its value is kept.
    const auto old_cfg = read_config(dir + "/config");
    CHECK(old_cfg.abi_version == kOtherAbi);
    CHECK(old_cfg.flags == 0);

    // The old sender's next send takes TCP for good (its redirect flag is
    // off); the receiver reads the 200,000 redirected bytes first, then the
    // TCP ones: all 300,000, in order.
    const auto before = read_pinned_counters(dir);
    REQUIRE(old.pair->send(100000) == "ok sent 300000");
    const auto after = read_pinned_counters(dir);
    CHECK(after[SOCKACCEL_CNT_REDIRECT_BYTES] == 200000);
    CHECK(after[SOCKACCEL_CNT_PASS_BYTES] == before[SOCKACCEL_CNT_PASS_BYTES] + 100000);
    CHECK(after[SOCKACCEL_CNT_TCP_PATH_SOCKETS] == before[SOCKACCEL_CNT_TCP_PATH_SOCKETS] + 1);
    CHECK(old.pair->read_all() == "ok read 300000");

    // New connections are accelerated by the new state, and the old state
    // sees none of them (its sockops program is detached).
    constexpr int kConnections = 8;
    check_integrity(run_streamcheck(streamcheck_args(cg, kConnections)));
    auto fresh = read_pinned_counters(pins.path());
    INFO(counters_to_json(fresh).dump());
    CHECK(fresh[SOCKACCEL_CNT_SOCKETS_ADDED] == 2 * kConnections);
    CHECK(fresh[SOCKACCEL_CNT_REDIRECT_BYTES] > 0);
    const auto old_after = read_pinned_counters(dir);
    CHECK(old_after[SOCKACCEL_CNT_SOCKETS_ADDED] == before[SOCKACCEL_CNT_SOCKETS_ADDED]);
    CHECK(old_after[SOCKACCEL_CNT_ADD_SKIPPED_DISABLED] ==
          before[SOCKACCEL_CNT_ADD_SKIPPED_DISABLED]);
    CHECK(pinned_entries(dir) == 2);

    SECTION("status removes the retired state once its sockets have closed") {
        REQUIRE(old.pair->close() == "ok closed");
        status = wait_retired_empty(ctl);
        CHECK(status["retired"] == json::array());
        CHECK_FALSE(path_exists(dir));
        CHECK_FALSE(has_retired_dir(pins.path()));
        CHECK(pins.has("sock_hash"));  // ours
        CHECK(next->stop() == 0);
        CHECK(next->log().find("removed retired state " + dir) != std::string::npos);
        CHECK_FALSE(pins.exists());
        CHECK(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 0);
    }
    SECTION("stop removes it if its sockets have closed") {
        REQUIRE(old.pair->close() == "ok closed");
        CHECK(next->stop() == 0);
        INFO(next->log());
        CHECK(next->log().find("removed retired state " + dir) != std::string::npos);
        CHECK_FALSE(pins.exists());
        CHECK(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 0);
    }
    SECTION("stop keeps it while its sockets are open; the next start removes it") {
        CHECK(next->stop() == 0);
        INFO(next->log());
        CHECK(next->log().find("retired state " + dir + " stays pinned until its 2 socket(s) "
                               "close") != std::string::npos);
        // Our own (empty) state is gone; the retired state and its data stay.
        CHECK_FALSE(pins.has("sock_hash"));
        CHECK_FALSE(pins.has("sockops_link"));
        CHECK(path_exists(dir + "/sock_hash"));
        CHECK(pinned_entries(dir) == 2);
        CHECK(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 0);
        REQUIRE(old.pair->send(1000) == "ok sent 301000");
        CHECK(old.pair->read_all() == "ok read 301000");

        REQUIRE(old.pair->close() == "ok closed");
        next = std::make_unique<DaemonProcess>(args);
        REQUIRE(next->ready());
        CHECK(next->log().find("removed retired state " + dir) != std::string::npos);
        CHECK_FALSE(path_exists(dir));
        CHECK_FALSE(has_retired_dir(pins.path()));
        ControlClient again(pins.socket());
        CHECK(result(again.request("status"))["retired"] == json::array());
        CHECK(next->stop() == 0);
        CHECK_FALSE(pins.exists());
    }
}

TEST_CASE("upgrade: incompatible state whose config cannot be read is refused and left untouched",
          "[upgrade][drain]") {
    const auto variant = GENERATE(as<std::string>{}, "missing", "too small", "not an array");
    INFO("config pin " << variant);
    TestCgroup cg("upgrade_refuse");
    TestPinDir pins("upgrade_refuse");
    KilledWithUnreadData old(cg, pins);

    const std::string config = pins.path() + "/config";
    REQUIRE(::unlink(config.c_str()) == 0);
    if (variant != "missing") {
        UniqueFd fake(variant == "too small"
                          ? bpf_map_create(BPF_MAP_TYPE_ARRAY, "sa_fake", 4, 4, 1, nullptr)
                          : bpf_map_create(BPF_MAP_TYPE_HASH, "sa_fake", 4,
                                           sizeof(sockaccel_config), 1, nullptr));
        REQUIRE(fake);
        REQUIRE(bpf_obj_pin(fake.get(), config.c_str()) == 0);
    }
    const auto entries = dir_entries(pins.path());
    const auto link_id = pinned_id(pins.path() + "/sockops_link");
    const auto config_id = pinned_id(config);

    std::vector<std::string> argv = {daemon_binary()};
    for (auto& a : daemon_args(cg, pins)) argv.push_back(a);
    auto r = run(argv, std::chrono::seconds(30));
    INFO(r.err);
    CHECK(r.exit_code == 1);
    // One line (after any warnings about the environment, e.g. missing groups).
    const auto error_at = r.err.find("error: ");
    REQUIRE(error_at != std::string::npos);
    const std::string error = r.err.substr(error_at);
    CHECK(error.rfind("error: pinned state in " + pins.path() +
                          " is from an incompatible version (ABI unknown",
                      0) == 0);
    CHECK(error.find("still holds 2 socket(s)") != std::string::npos);
    CHECK(std::count(error.begin(), error.end(), '\n') == 1);
    CHECK(error.back() == '\n');

    // Nothing changed: same pins, same objects, still attached and on.
    CHECK(dir_entries(pins.path()) == entries);
    CHECK(pinned_id(pins.path() + "/sock_hash") == old.map_id);
    CHECK(pinned_id(pins.path() + "/sockops_link") == link_id);
    CHECK(pinned_id(config) == config_id);
    CHECK(pinned_entries(pins.path()) == 2);
    CHECK(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 1);
    // Still redirecting (its flags were not cleared), and every byte arrives.
    REQUIRE(old.pair->send(100000) == "ok sent 300000");
    CHECK(read_pinned_counters(pins.path())[SOCKACCEL_CNT_REDIRECT_BYTES] == 300000);
    CHECK(old.pair->read_all() == "ok read 300000");
    CHECK(old.pair->close() == "ok closed");
}
