// SPDX-License-Identifier: Apache-2.0
#include "metrics.h"

#include <catch2/catch.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "config.h"
#include "metrics_server.h"

using namespace sockaccel;

namespace {

MetricsSnapshot sample() {
    MetricsSnapshot s;
    s.version = "0.1.0";
    s.abi = 3;
    s.kernel = "6.18.44";
    CounterValues c{};
    for (std::size_t i = 0; i < c.size(); ++i) c[i] = 1000 + i;
    s.counters = c;
    s.map_entries = 7;
    s.map_capacity = 65536;
    s.attached = true;
    s.drain_pending_sockets = 2;
    s.drain_pending_bytes = 150000;
    s.drain_flushed_total = 9;
    s.drain_unreached_sockets = 2;
    s.drain_backend = "task_file";
    return s;
}

}  // namespace

TEST_CASE("metrics: every sample has HELP and TYPE, and the text format's syntax") {
    const std::string text = render_metrics(sample());
    REQUIRE(text.back() == '\n');
    const std::regex sample_line(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-z_]+="([^"\\]|\\.)*"(,[a-z_]+="([^"\\]|\\.)*")*\})? [0-9]+$)");
    std::set<std::string> helped, typed, seen, series;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        INFO(line);
        if (line.rfind("# HELP ", 0) == 0) {
            helped.insert(line.substr(7, line.find(' ', 7) - 7));
        } else if (line.rfind("# TYPE ", 0) == 0) {
            const auto name = line.substr(7, line.find(' ', 7) - 7);
            const auto type = line.substr(line.rfind(' ') + 1);
            CHECK((type == "counter" || type == "gauge"));
            if (type == "counter") CHECK(name.ends_with("_total"));
            typed.insert(name);
        } else {
            std::smatch m;
            REQUIRE(std::regex_match(line, m, sample_line));
            CHECK(m[1].str().rfind("sockaccel_", 0) == 0);
            seen.insert(m[1].str());
            CHECK(series.insert(m[1].str() + m[2].str()).second);  // each series once
        }
    }
    CHECK(seen == helped);
    CHECK(seen == typed);
    // Every data-plane counter is exported: the three demotion reasons as
    // one family with a reason label.
    CHECK(seen.size() == 13 + SOCKACCEL_CNT__MAX - 2);
    CHECK(series.size() == 13 + SOCKACCEL_CNT__MAX);
    CHECK(text.find("sockaccel_demoted_sockets_total{reason=\"reader\"} 1027\n") !=
          std::string::npos);
    CHECK(text.find("sockaccel_redirected_bytes_total 1006\n") != std::string::npos);
    CHECK(text.find("sockaccel_map_entries 7\n") != std::string::npos);
    CHECK(text.find("sockaccel_drain_pending_bytes 150000\n") != std::string::npos);
    CHECK(text.find("sockaccel_drain_backend_info{backend=\"task_file\"} 1\n") != std::string::npos);
    CHECK(text.find("sockaccel_drain_unreached_sockets 2\n") != std::string::npos);
    CHECK(text.find("sockaccel_build_info{version=\"0.1.0\",abi=\"3\",kernel=\"6.18.44\"} 1\n") !=
          std::string::npos);
}

TEST_CASE("metrics: unreadable values are left out, not shown as 0") {
    auto s = sample();
    s.counters.reset();
    s.map_entries.reset();
    const auto text = render_metrics(s);
    CHECK(text.find("sockaccel_redirected_bytes_total") == std::string::npos);
    CHECK(text.find("sockaccel_map_entries") == std::string::npos);
    CHECK(text.find("sockaccel_map_capacity 65536") != std::string::npos);
}

TEST_CASE("metrics: large counters are exact up to 2^53 (Prometheus values are float64)") {
    auto s = sample();
    (*s.counters)[SOCKACCEL_CNT_REDIRECT_BYTES] = 123456789012345;  // a month at ~50 MB/s
    CHECK(render_metrics(s).find("sockaccel_redirected_bytes_total 123456789012345\n") !=
          std::string::npos);
}

TEST_CASE("metrics: label values are escaped") {
    auto s = sample();
    s.kernel = "6.1\"evil\n\\x";
    CHECK(render_metrics(s).find(R"(kernel="6.1\"evil\n\\x"})") != std::string::npos);
}

TEST_CASE("metrics: listen addresses") {
    auto v4 = parse_listen_address("127.0.0.1:9477");
    REQUIRE(v4);
    CHECK(v4->port() == 9477);
    CHECK(v4->address().to_string() == "127.0.0.1");
    auto v6 = parse_listen_address("[::1]:9477");
    REQUIRE(v6);
    CHECK(v6->address().is_v6());
    for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
                            "localhost:9477", "::1:9477", "[::1]", "[::1]9477", "1.2.3.4:12x",
                            "[fe80::1%eth0:9477"}) {
        INFO(bad);
        CHECK_FALSE(parse_listen_address(bad));
    }
    CHECK(parse_config(R"({"metrics": {"listen": "127.0.0.1:9477"}})", "f").value().metrics.listen ==
          "127.0.0.1:9477");
    CHECK(parse_config(R"({"metrics": {"listen": ""}})", "f").value().metrics.listen.empty());
    auto bad = parse_config(R"({"metrics": {"listen": "localhost:80"}})", "f");
    REQUIRE_FALSE(bad);
    CHECK(bad.error() == "f: key \"metrics.listen\": \"localhost\" is not a numeric IP address");
    CHECK_FALSE(parse_config(R"({"metrics": {"port": 1}})", "f"));
}
