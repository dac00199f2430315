// SPDX-License-Identifier: Apache-2.0
//
// Local-peer detection (SOCKACCEL_GATE_LOCAL_PEER in abi.h): only
// connections with both ends on this host, and both inserted by us, stay in
// the sockhash. A "remote host" here is a network namespace of the test's own
// whose server runs outside the attached cgroup, reached over veth; the
// "containers" are namespaces on a bridge, both inside the cgroup.
#include <catch2/catch.hpp>

#include "harness.h"
#include "netns_lab.h"

using namespace sockaccel;
using namespace sockaccel::test;
using nlohmann::json;

namespace {

std::vector<std::string> pair_args(const std::string& addr, const std::string& server_cg,
                                   const std::string& client_cg, const std::string& server_ns,
                                   const std::string& client_ns, int connections) {
    std::vector<std::string> a = {"pair", "--addr", addr, "--connections",
                                  std::to_string(connections), "--min-bytes", "1",
                                  "--max-bytes", "262144", "--timeout", "60"};
    if (!server_cg.empty()) a.insert(a.end(), {"--server-cgroup", server_cg});
    if (!client_cg.empty()) a.insert(a.end(), {"--client-cgroup", client_cg});
    if (!server_ns.empty()) a.insert(a.end(), {"--server-netns", server_ns});
    if (!client_ns.empty()) a.insert(a.end(), {"--client-netns", client_ns});
    return a;
}

}  // namespace

TEST_CASE("local peers: a connection to a remote host over veth is not accelerated and leaves "
          "no entry") {
    const auto addr = GENERATE(as<std::string>{}, "198.18.1.2", "fd00:5a:1::2");
    TestCgroup cg("remote");
    TestPinDir pins("remote");
    NetnsLab lab("remote");
    const auto client_ns = lab.add("client");
    const auto remote_ns = lab.add("remote");
    lab.link("client", "198.18.1.1/24", "fd00:5a:1::1/64", "remote", "198.18.1.2/24",
             "fd00:5a:1::2/64");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());
    REQUIRE(ctl.connected());

    // The client is ours (in the cgroup); the server is on the other "host",
    // which runs no sockaccel.
    const int kConnections = 16;
    auto report =
        run_streamcheck(pair_args(addr, "", cg.path(), remote_ns, client_ns, kConnections));
    INFO("address " << addr);
    check_integrity(report);
    auto c = read_pinned_counters(pins.path());
    INFO(counters_to_json(c).dump());
    // Each client was inserted at connect, as it cannot know yet, and left at
    // its first received segment because no local peer claimed it.
    CHECK(c[SOCKACCEL_CNT_SOCKETS_ADDED] == kConnections);
    CHECK(c[SOCKACCEL_CNT_UNCLAIMED_REMOVED] == kConnections);
    CHECK(c[SOCKACCEL_CNT_REDIRECT_MSGS] == 0);
    // At most the first send of each ran the verdict.
    CHECK(c[SOCKACCEL_CNT_PASS_MSGS] <= kConnections);
    CHECK(result(ctl.request("status"))["map"]["entries"] == 0);
    CHECK(daemon.stop() == 0);
}

TEST_CASE("local peers: a remote client that only receives leaves at its first segment") {
    TestCgroup cg("recvonly");
    TestPinDir pins("recvonly");
    NetnsLab lab("recvonly");
    const auto client_ns = lab.add("client");
    const auto remote_ns = lab.add("remote");
    lab.link("client", "198.18.3.1/24", "", "remote", "198.18.3.2/24", "");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());

    // --late-half-close: the client sends nothing until the server's whole
    // stream has arrived, so its first segment is data, not an ACK of ours.
    auto args = pair_args("198.18.3.2", "", cg.path(), remote_ns, client_ns, 4);
    args.push_back("--late-half-close");
    check_integrity(run_streamcheck(args));
    auto c = read_pinned_counters(pins.path());
    INFO(counters_to_json(c).dump());
    CHECK(c[SOCKACCEL_CNT_UNCLAIMED_REMOVED] == 4);
    CHECK(pinned_entries(pins.path()) == 0);
    CHECK(daemon.stop() == 0);
}

TEST_CASE("local peers: two namespaces on a bridge, like containers, are accelerated") {
    const auto addr = GENERATE(as<std::string>{}, "198.18.2.2", "fd00:5a:2::2");
    TestCgroup cg("bridge");
    TestPinDir pins("bridge");
    NetnsLab lab("bridge");
    lab.add("br");
    const auto a = lab.add("a");
    const auto b = lab.add("b");
    lab.bridge("br", {"a", "b"}, {"198.18.2.1/24", "198.18.2.2/24"},
               {"fd00:5a:2::1/64", "fd00:5a:2::2/64"});
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());

    const int kConnections = 16;
    // --late-half-close: see daemon_test.cpp's pair_args(); a client that
    // sent and half-closed before the accept would see no redirect at all.
    auto args = pair_args(addr, cg.path(), cg.path(), b, a, kConnections);
    args.push_back("--late-half-close");
    auto report = run_streamcheck(args);
    INFO("address " << addr);
    check_integrity(report);
    auto c = read_pinned_counters(pins.path());
    INFO(counters_to_json(c).dump());
    CHECK(c[SOCKACCEL_CNT_SOCKETS_ADDED] == 2 * kConnections);
    CHECK(c[SOCKACCEL_CNT_UNCLAIMED_REMOVED] == 0);
    CHECK(c[SOCKACCEL_CNT_PEER_NOT_LOCAL] == 0);
    CHECK(c[SOCKACCEL_CNT_REDIRECT_MSGS] > 0);
    // Every send found its peer: the only sends that took TCP are those
    // after the peer's half-close (its FIN takes it out of the map, see
    // the half-close gate), as on loopback.
    CHECK(c[SOCKACCEL_CNT_REDIRECT_MISSES] == 0);
    CHECK(c[SOCKACCEL_CNT_TCP_PATH_SOCKETS] == c[SOCKACCEL_CNT_GATE_CLOSED_SENDS]);
    CHECK(c[SOCKACCEL_CNT_REDIRECT_BYTES] + c[SOCKACCEL_CNT_PASS_BYTES] >=
          report["bytes_sent"].get<std::uint64_t>());
    CHECK(pinned_entries(pins.path()) == 0);
    CHECK(daemon.stop() == 0);
}
