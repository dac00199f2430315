// SPDX-License-Identifier: Apache-2.0
//
// Operator policy (daemon/src/policy.h): each kind of rule is honoured, and
// not applied beyond its scope; policy-set changes it at run time, with
// --apply-existing moving existing connections to TCP without losing a
// byte; bad input changes nothing.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "harness.h"
#include "held_pair.h"
#include "netns_lab.h"

using namespace sockaccel;
using namespace sockaccel::test;
using nlohmann::json;

namespace {

struct Outcome {
    std::uint64_t added = 0;
    std::uint64_t skipped = 0;
    std::uint64_t redirected_msgs = 0;
};

// One run of `connections` connections; what the counters say about it.
Outcome traffic(const TestPinDir& pins, const std::string& addr, int port,
                const std::string& server_cg, const std::string& client_cg,
                const std::string& server_ns = "", const std::string& client_ns = "",
                int connections = 4) {
    std::vector<std::string> a = {"pair",      "--addr",       addr,
                                  "--port",    std::to_string(port),
                                  "--connections", std::to_string(connections),
                                  "--min-bytes", "1", "--max-bytes", "65536",
                                  // The client stays until the server's stream arrived, so
                                  // that stream is redirected even when the client's own first
                                  // send came before the accept (held on TCP: sockaccel checks
                                  // a reader once it has a file).
                                  "--late-half-close",
                                  "--server-cgroup", server_cg, "--client-cgroup", client_cg};
    if (!server_ns.empty()) a.insert(a.end(), {"--server-netns", server_ns});
    if (!client_ns.empty()) a.insert(a.end(), {"--client-netns", client_ns});
    const auto before = read_pinned_counters(pins.path());
    check_integrity(run_streamcheck(a));
    const auto after = read_pinned_counters(pins.path());
    return {after[SOCKACCEL_CNT_SOCKETS_ADDED] - before[SOCKACCEL_CNT_SOCKETS_ADDED],
            after[SOCKACCEL_CNT_POLICY_SKIPPED] - before[SOCKACCEL_CNT_POLICY_SKIPPED],
            after[SOCKACCEL_CNT_REDIRECT_MSGS] - before[SOCKACCEL_CNT_REDIRECT_MSGS]};
}

json set_policy(ControlClient& ctl, const json& policy, bool apply_existing = false) {
    json args{{"policy", policy}};
    if (apply_existing) args["apply_existing"] = true;
    return ctl.request("policy-set", args);
}

constexpr int kPortIn = 24801;   // a port the rules name
constexpr int kPortOut = 24802;  // one they do not

}  // namespace

TEST_CASE("policy: port rules") {
    TestCgroup cg("polport");
    TestPinDir pins("polport");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());
    REQUIRE(ctl.connected());

    SECTION("exclude: the port is not accelerated, others are") {
        result(set_policy(ctl, {{"exclude", {{"ports", {std::to_string(kPortIn)}}}}}));
        auto in = traffic(pins, "127.0.0.1", kPortIn, cg.path(), cg.path());
        CHECK(in.added == 0);
        CHECK(in.skipped == 8);
        CHECK(in.redirected_msgs == 0);
        auto out = traffic(pins, "127.0.0.1", kPortOut, cg.path(), cg.path());
        CHECK(out.added == 8);
        CHECK(out.skipped == 0);
        CHECK(out.redirected_msgs > 0);
    }
    SECTION("include: only the range is accelerated") {
        result(set_policy(ctl, {{"include",
                                 {{"ports", {std::to_string(kPortIn - 1) + "-" +
                                             std::to_string(kPortIn)}}}}}));
        auto in = traffic(pins, "127.0.0.1", kPortIn, cg.path(), cg.path());
        CHECK(in.added == 8);
        CHECK(in.redirected_msgs > 0);
        auto out = traffic(pins, "127.0.0.1", kPortOut, cg.path(), cg.path());
        CHECK(out.added == 0);
        CHECK(out.skipped == 8);
    }
    CHECK(daemon.stop() == 0);
}

TEST_CASE("policy: CIDR rules, IPv4 and IPv6, longest prefix deciding") {
    TestCgroup cg("polcidr");
    TestPinDir pins("polcidr");
    NetnsLab lab("polcidr");
    lab.add("br");
    const auto a = lab.add("a");
    const auto b = lab.add("b");
    lab.bridge("br", {"a", "b"}, {"198.18.4.1/24", "198.18.4.2/24"},
               {"fd00:5a:4::1/64", "fd00:5a:4::2/64"});
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());
    REQUIRE(ctl.connected());

    SECTION("include the containers' network: it is accelerated, loopback is not") {
        result(set_policy(ctl, {{"include", {{"cidrs", {"198.18.4.0/24", "fd00:5a:4::/64"}}}}}));
        for (const char* addr : {"198.18.4.2", "fd00:5a:4::2"}) {
            INFO(addr);
            auto in = traffic(pins, addr, kPortIn, cg.path(), cg.path(), b, a);
            CHECK(in.added == 8);
            CHECK(in.redirected_msgs > 0);
        }
        auto lo = traffic(pins, "127.0.0.1", kPortIn, cg.path(), cg.path());
        CHECK(lo.added == 0);
        CHECK(lo.skipped == 8);
    }
    SECTION("exclude one host inside an included network") {
        result(set_policy(ctl, {{"include", {{"cidrs", {"198.18.0.0/15", "127.0.0.0/8"}}}},
                                {"exclude", {{"cidrs", {"198.18.4.2/32", "fd00:5a:4::2/128"}}}}}));
        for (const char* addr : {"198.18.4.2", "fd00:5a:4::2"}) {
            INFO(addr);
            auto ex = traffic(pins, addr, kPortIn, cg.path(), cg.path(), b, a);
            CHECK(ex.added == 0);
            CHECK(ex.skipped == 8);
        }
        // Not beyond its scope: loopback is still included.
        auto lo = traffic(pins, "127.0.0.1", kPortIn, cg.path(), cg.path());
        CHECK(lo.added == 8);
        CHECK(lo.redirected_msgs > 0);
    }
    CHECK(daemon.stop() == 0);
}

TEST_CASE("policy: cgroup rules scope acceleration to a slice") {
    TestCgroup cg("polcg");
    TestPinDir pins("polcg");
    ChildCgroup app(cg.path(), "app.slice");
    ChildCgroup batch(cg.path(), "batch.slice");
    ChildCgroup batch_job(batch.path(), "job");  // a descendant: covered by its ancestor's rule
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());
    REQUIRE(ctl.connected());

    SECTION("exclude a slice and what is below it") {
        result(set_policy(ctl, {{"exclude", {{"cgroups", {batch.rule()}}}}}));
        auto ex = traffic(pins, "127.0.0.1", kPortIn, batch_job.path(), batch_job.path());
        CHECK(ex.added == 0);
        CHECK(ex.skipped == 8);
        auto other = traffic(pins, "127.0.0.1", kPortIn, app.path(), app.path());
        CHECK(other.added == 8);
        CHECK(other.redirected_msgs > 0);
    }
    SECTION("include one slice: only connections with both ends in it") {
        result(set_policy(ctl, {{"include", {{"cgroups", {app.rule()}}}}}));
        auto in = traffic(pins, "127.0.0.1", kPortIn, app.path(), app.path());
        CHECK(in.added == 8);
        CHECK(in.redirected_msgs > 0);
        // One end outside the slice: that end is skipped, so its peer is
        // not inserted either (it has no local peer in the map).
        auto half = traffic(pins, "127.0.0.1", kPortIn, app.path(), batch.path());
        CHECK(half.redirected_msgs == 0);
        CHECK(half.skipped == 4);
    }
    CHECK(daemon.stop() == 0);
}

TEST_CASE("policy: bad input is refused and the policy in force is unchanged") {
    TestCgroup cg("polbad");
    TestPinDir pins("polbad");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());
    REQUIRE(ctl.connected());

    const json good = {{"exclude", {{"ports", {"22", "6379"}}}}};
    result(set_policy(ctl, good));
    const auto shown = result(ctl.request("policy-show"));
    CHECK(shown["source"] == "runtime");

    const std::vector<std::pair<json, std::string>> bad = {
        {{{"exclude", {{"ports", {"0"}}}}}, "policy.exclude.ports[0]"},
        {{{"exclude", {{"ports", {"70000"}}}}}, "policy.exclude.ports[0]"},
        {{{"exclude", {{"ports", {"90-80"}}}}}, "reversed"},
        {{{"include", {{"cidrs", {"10.0.0.1/8"}}}}}, "host bits"},
        {{{"include", {{"cidrs", {"10.0.0.0/33"}}}}}, "prefix length"},
        {{{"include", {{"cidrs", {"not-an-address"}}}}}, "not an IPv4 or IPv6 address"},
        {{{"include", {{"cidrs", {"fd00::/8"}}}}, {"exclude", {{"cidrs", {"fd00::/8"}}}}},
         "both included and excluded"},
        {{{"include", {{"cgroups", {"relative/path"}}}}}, "absolute path"},
        {{{"include", {{"cgroups", {"/no/such/cgroup/here"}}}}}, "No such file or directory"},
        {{{"include", {{"hosts", json::array()}}}}, "unknown key"},
        {{{"allow", json::object()}}, "unknown key"},
        {json::array(), "must be an object"},
        {{{"include", {{"ports", "80"}}}}, "must be an array"},
    };
    for (const auto& [policy, why] : bad) {
        INFO(policy.dump());
        auto r = set_policy(ctl, policy);
        CHECK(r["ok"] == false);
        CHECK(r["error"]["code"] == "invalid_argument");
        CHECK(r["error"]["message"].get<std::string>().find(why) != std::string::npos);
    }
    // Missing policy, wrong types of the other arguments.
    CHECK(ctl.request("policy-set", json::object())["error"]["code"] == "invalid_argument");
    CHECK(ctl.request("policy-set", {{"policy", good}, {"apply_existing", "yes"}})["error"]["code"] ==
          "invalid_argument");
    CHECK(result(ctl.request("policy-show")) == shown);

    // And a config file with a bad policy: reload refuses it, nothing changes.
    pins.write_config(R"({"drain": {"stop_timeout_sec": 1},
                          "policy": {"include": {"cidrs": ["300.1.1.1/8"]}}})");
    auto reload = ctl.request("reload");
    CHECK(reload["error"]["code"] == "invalid_argument");
    CHECK(result(ctl.request("policy-show")) == shown);
    // A good file replaces the run-time policy.
    pins.write_config(
        R"({"drain": {"stop_timeout_sec": 1}, "policy": {"exclude": {"ports": [443]}}})");
    auto reloaded = result(ctl.request("reload"));
    CHECK(reloaded["applied"] == json::array({"policy"}));
    auto now = result(ctl.request("policy-show"));
    CHECK(now["source"] == "config");
    CHECK(now["policy"]["exclude"]["ports"] == json::array({"443"}));
    CHECK(daemon.stop() == 0);
}

TEST_CASE("policy: --apply-existing moves connections the new policy excludes to TCP, "
          "losing nothing",
          "[drain]") {
    TestCgroup cg("polapply");
    TestPinDir pins("polapply");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());
    REQUIRE(ctl.connected());

    // Two held connections with redirected data not yet read: one on
    // loopback IPv4, one on IPv6.
    HeldPair v4(cg.path(), "127.0.0.1");
    HeldPair v6(cg.path(), "::1");
    REQUIRE(v4.send(150000) == "ok sent 150000");
    REQUIRE(v6.send(150000) == "ok sent 150000");
    // Both servers are inserted when they process the handshake's last ACK,
    // which under load can trail the clients' connect().
    REQUIRE(wait_entries(ctl, 4, /*at_least=*/true)["map"]["entries"] == 4);

    // Exclude IPv4 loopback and apply it to existing connections: the v4
    // pair is claimed; its receiver still holds unread data, so it is
    // pending, not freed.
    auto r = result(set_policy(ctl, {{"exclude", {{"cidrs", {"127.0.0.0/8"}}}}}, true));
    INFO(r.dump());
    CHECK(r["apply_existing"]["pending"] == 1);
    CHECK(r["apply_existing"]["pending_bytes"] ==
          (kernel_features().psock_msg_tot_len ? 150000 : 0));
    // Later sends take TCP; the receiver reads the redirected bytes, then
    // the TCP ones, in order.
    REQUIRE(v4.send(50000) == "ok sent 200000");
    CHECK(v4.read_all() == "ok read 200000");
    CHECK(wait_entries(ctl, 2)["map"]["entries"] == 2);
    // The v6 pair was not in scope: still accelerated.
    const auto before = read_pinned_counters(pins.path());
    REQUIRE(v6.send(50000) == "ok sent 200000");
    CHECK(read_pinned_counters(pins.path())[SOCKACCEL_CNT_REDIRECT_BYTES] ==
          before[SOCKACCEL_CNT_REDIRECT_BYTES] + 50000);
    CHECK(v6.read_all() == "ok read 200000");
    CHECK(v4.close() == "ok closed");
    CHECK(v6.close() == "ok closed");
    CHECK(daemon.stop() == 0);
}

TEST_CASE("policy: sockaccelctl policy show and set") {
    TestCgroup cg("polctl");
    TestPinDir pins("polctl");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    auto ctl = [&](std::vector<std::string> args) {
        args.insert(args.begin(), {ctl_binary(), "--socket", pins.socket()});
        return run(args, std::chrono::seconds(30));
    };

    auto shown = ctl({"policy", "show"});
    CHECK(shown.exit_code == 0);
    CHECK(shown.out.find("none: every local connection may be accelerated") != std::string::npos);

    auto set = ctl({"policy", "set", "--exclude-port", "6379", "--exclude-port", "8000-8100",
                    "--include-cidr", "127.0.0.0/8", "--include-cidr", "::1"});
    INFO(set.out << set.err);
    CHECK(set.exit_code == 0);
    CHECK(set.out.find("policy set for new connections") != std::string::npos);
    auto json_show = ctl({"--json", "policy", "show"});
    REQUIRE(json_show.exit_code == 0);
    auto p = json::parse(json_show.out);
    CHECK(p["source"] == "runtime");
    CHECK(p["policy"]["exclude"]["ports"] == json::array({"6379", "8000-8100"}));
    CHECK(p["policy"]["include"]["cidrs"] == json::array({"127.0.0.0/8", "::1/128"}));

    // Bad arguments are usage errors (exit 2) that never reach the daemon.
    for (const auto& bad : std::vector<std::vector<std::string>>{
             {"policy", "set", "--exclude-port", "0"},
             {"policy", "set", "--include-cidr", "10.1.2.3/8"},
             {"policy", "set", "--include-cgroup", "relative"},
             {"policy", "set"},
             {"policy", "set", "--clear", "--exclude-port", "22"},
             {"policy", "set", "--file", "/nonexistent/policy.json"},
             {"policy", "frobnicate"}}) {
        auto r = ctl(bad);
        INFO(r.err);
        CHECK(r.exit_code == 2);
    }
    // A cgroup that does not exist is the daemon's to find: refused (exit 1),
    // nothing changed.
    auto missing = ctl({"policy", "set", "--exclude-cgroup", "/no/such/cgroup"});
    CHECK(missing.exit_code == 1);
    CHECK(missing.err.find("No such file or directory") != std::string::npos);
    CHECK(json::parse(ctl({"--json", "policy", "show"}).out) == p);

    // From a file (a whole config file is accepted), then cleared.
    const std::string file = pins.write_config(R"({"policy": {"exclude": {"ports": [22]}}})");
    CHECK(ctl({"policy", "set", "--file", file}).exit_code == 0);
    CHECK(json::parse(ctl({"--json", "policy", "show"}).out)["policy"]["exclude"]["ports"] ==
          json::array({"22"}));
    CHECK(ctl({"policy", "set", "--clear"}).exit_code == 0);
    CHECK(ctl({"policy", "show"}).out.find("none:") != std::string::npos);
    CHECK(daemon.stop() == 0);
}
