// SPDX-License-Identifier: Apache-2.0
//
// The Prometheus endpoint (metrics.listen), read with a real HTTP client
// (curl), against the real daemon and real accelerated traffic.
#include <linux/bpf.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <regex>

#include "harness.h"

using namespace sockaccel;
using namespace sockaccel::test;
using nlohmann::json;

namespace {

// A free loopback port: bind to 0 and let the kernel choose.
int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    const int port = ntohs(a.sin_port);
    ::close(fd);
    return port;
}

ProcessResult curl(const std::string& url, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {"/usr/bin/curl", "-s", "-S", "--max-time", "10"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(url);
    return run(argv, std::chrono::seconds(30));
}

// The value of an unlabelled sample in an exposition text.
std::optional<std::uint64_t> sample(const std::string& text, const std::string& name) {
    std::smatch m;
    if (!std::regex_search(text, m, std::regex("\n" + name + " ([0-9]+)\n"))) return std::nullopt;
    return std::stoull(m[1].str());
}

}  // namespace

TEST_CASE("metrics: Prometheus text over HTTP matches the daemon's counters") {
    TestCgroup cg("metrics");
    TestPinDir pins("metrics");
    const int port = free_port();
    const std::string base = "http://127.0.0.1:" + std::to_string(port);
    DaemonProcess daemon(daemon_args(
        cg, pins, {},
        R"({"drain": {"stop_timeout_sec": 1}, "metrics": {"listen": "127.0.0.1:)" +
            std::to_string(port) + R"("}})"));
    REQUIRE(daemon.ready());

    check_integrity(run_streamcheck({"pair", "--addr", "127.0.0.1", "--connections", "8",
                                     "--max-bytes", "262144", "--server-cgroup", cg.path(),
                                     "--client-cgroup", cg.path()}));
    auto r = curl(base + "/metrics", {"-i"});
    REQUIRE(r.exit_code == 0);
    INFO(r.out);
    CHECK(r.out.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    CHECK(r.out.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n") !=
          std::string::npos);
    const auto c = read_pinned_counters(pins.path());
    CHECK(sample(r.out, "sockaccel_redirected_bytes_total") == c[SOCKACCEL_CNT_REDIRECT_BYTES]);
    CHECK(sample(r.out, "sockaccel_sockets_added_total") == c[SOCKACCEL_CNT_SOCKETS_ADDED]);
    CHECK(sample(r.out, "sockaccel_attached") == 1u);
    CHECK(sample(r.out, "sockaccel_map_capacity") == 65536u);
    CHECK(r.out.find("sockaccel_build_info{version=\"") != std::string::npos);

    CHECK(curl(base + "/", {"-o", "/dev/null", "-w", "%{http_code}"}).out == "404");
    CHECK(curl(base + "/metrics", {"-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"}).out ==
          "405");
    // Garbage and a request that never ends cost the daemon nothing.
    auto junk = run({"/bin/sh", "-c",
                     "printf 'NOT HTTP\\r\\n\\r\\n' | timeout 5 /usr/bin/curl -s telnet://127.0.0.1:" +
                         std::to_string(port) + " >/dev/null; exit 0"},
                    std::chrono::seconds(30));
    CHECK(junk.exit_code == 0);
    CHECK(curl(base + "/metrics", {"-o", "/dev/null", "-w", "%{http_code}"}).out == "200");
    ControlClient ctl(pins.socket());
    REQUIRE(ctl.connected());
    CHECK(result(ctl.request("ping")).is_object());
    CHECK(daemon.stop() == 0);
}

TEST_CASE("metrics: off by default, and a bad or busy address fails the start with one line") {
    TestCgroup cg("metricsbad");
    TestPinDir pins("metricsbad");
    {
        DaemonProcess daemon(daemon_args(cg, pins));
        REQUIRE(daemon.ready());
        CHECK(daemon.log().find("metrics:") == std::string::npos);
        CHECK(daemon.stop() == 0);
    }
    auto start = [&](const std::string& listen) {
        const auto config = pins.write_config(R"({"metrics": {"listen": ")" + listen + R"("}})");
        return run({daemon_binary(), "--config", config, "--cgroup", cg.path(), "--pin-dir",
                    pins.path(), "--socket", pins.socket()},
                   std::chrono::seconds(30));
    };
    auto bad = start("0.0.0.0:http");
    CHECK(bad.exit_code == 1);
    CHECK(bad.err.find("key \"metrics.listen\": the port must be 1-65535") != std::string::npos);
    // A port in use.
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd, 1) == 0);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    auto busy = start("127.0.0.1:" + std::to_string(ntohs(a.sin_port)));
    ::close(fd);
    INFO(busy.err);
    CHECK(busy.exit_code == 1);
    CHECK(busy.err.find("listen on metrics endpoint 127.0.0.1:") != std::string::npos);
    CHECK(busy.err.find("Address already in use") != std::string::npos);
    // Nothing was attached by the failed starts.
    CHECK(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 0);
}
