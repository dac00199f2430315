// SPDX-License-Identifier: Apache-2.0
//
// Unit tests for sockaccelctl's pure output code (ctl/src/format.h and
// ctl/src/render.h; library sockaccel_ctl_core).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "format.h"
#include "render.h"

namespace ctl = sockaccel::ctl;
using nlohmann::json;

namespace {

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = kKiB * 1024;
constexpr std::uint64_t kGiB = kMiB * 1024;
constexpr std::uint64_t kTiB = kGiB * 1024;

bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start < text.size()) {
        std::size_t nl = text.find('\n', start);
        if (nl == std::string::npos) nl = text.size();
        out.push_back(text.substr(start, nl - start));
        start = nl + 1;
    }
    return out;
}

// The status result from the protocol documentation.
json sample_status() {
    return json::parse(R"({
        "version":"0.1.0","pid":123,"uptime_sec":12.5,"kernel":"6.18.44",
        "attach":{"attached":true,"cgroup":"/sys/fs/cgroup","pin_dir":"/sys/fs/bpf/sockaccel",
                  "adopted":false,"sockops_prog_id":10,"sk_msg_prog_id":11,
                  "sockops_link_id":5,"sock_hash_map_id":7},
        "mode":{"insert":true,"redirect":false},
        "map":{"entries":10,"capacity":65536},
        "counters":{"sockets_added":1234,"add_failed":3,"add_failed_map_full":1,
                    "add_failed_other":2,"add_skipped_disabled":0,"add_skipped_data_sent":0,
                    "redirect_msgs":56789,"redirect_bytes":1572864,"redirect_misses":2,
                    "tcp_path_sockets":1,"pass_msgs":100,"pass_bytes":4096,"storage_missing":0},
        "drain":{"active":false,"pending":0,"unreached":0,"pending_bytes":0,
                 "pending_bytes_exact":true,"flushed_total":0,"backend":"sockhash",
                 "iterator":"iter/sockmap","complete":true,"cannot_see":null},
        "features":{"send_tracking":false,"sockmap_iterator":true,"drain_backend":"sockhash"},
        "kernel_issues":[{"id":"eagain_blocking_read","summary":"reads may see EAGAIN"}],
        "config":{"log_level":"info","cgroup":"","control":{"max_clients":64}},
        "something_new":{"a":[1,2,3]}
    })");
}

}  // namespace

// ---------------------------------------------------------------------------
// format.h
// ---------------------------------------------------------------------------

TEST_CASE("human_bytes: exact bytes below 1 KiB", "[ctl][format]") {
    CHECK(ctl::human_bytes(0) == "0 B");
    CHECK(ctl::human_bytes(1) == "1 B");
    CHECK(ctl::human_bytes(1023) == "1023 B");
}

TEST_CASE("human_bytes: one decimal from KiB up", "[ctl][format]") {
    CHECK(ctl::human_bytes(kKiB) == "1.0 KiB");
    CHECK(ctl::human_bytes(1536) == "1.5 KiB");
    CHECK(ctl::human_bytes(4096) == "4.0 KiB");
    CHECK(ctl::human_bytes(10 * kKiB + 512) == "10.5 KiB");
    CHECK(ctl::human_bytes(kMiB + kMiB / 2) == "1.5 MiB");
    CHECK(ctl::human_bytes(2 * kGiB) == "2.0 GiB");
    CHECK(ctl::human_bytes(3 * kTiB) == "3.0 TiB");
    CHECK(ctl::human_bytes(kTiB * 1024) == "1.0 PiB");
    CHECK(ctl::human_bytes(kTiB * 1024 * 1024) == "1.0 EiB");
    CHECK(ctl::human_bytes(std::numeric_limits<std::uint64_t>::max()) == "16.0 EiB");
}

TEST_CASE("human_bytes: rounds half up", "[ctl][format]") {
    // 1075 B = 1.0498 KiB, 1076 B = 1.0508 KiB.
    CHECK(ctl::human_bytes(1075) == "1.0 KiB");
    CHECK(ctl::human_bytes(1076) == "1.1 KiB");
    // 1.05 KiB exactly is 1075.2 B; 1.95 KiB = 1996.8 B.
    CHECK(ctl::human_bytes(1997) == "2.0 KiB");
}

TEST_CASE("human_bytes: never shows 1024.0 of a unit", "[ctl][format]") {
    CHECK(ctl::human_bytes(kMiB - 1) == "1.0 MiB");
    CHECK(ctl::human_bytes(kMiB - 51) == "1.0 MiB");  // 1023.9502 KiB rounds up
    CHECK(ctl::human_bytes(kMiB - 52) == "1023.9 KiB");
    CHECK(ctl::human_bytes(kGiB - 1) == "1.0 GiB");
    CHECK(ctl::human_bytes(kMiB) == "1.0 MiB");
}

TEST_CASE("human_rate: bytes", "[ctl][format]") {
    CHECK(ctl::human_rate(0, ctl::RateUnit::kBytes) == "0 B/s");
    CHECK(ctl::human_rate(512.4, ctl::RateUnit::kBytes) == "512 B/s");
    CHECK(ctl::human_rate(1536, ctl::RateUnit::kBytes) == "1.5 KiB/s");
    CHECK(ctl::human_rate(20e6, ctl::RateUnit::kBytes) == "19.1 MiB/s");
    CHECK(ctl::human_rate(1e30, ctl::RateUnit::kBytes) == "16.0 EiB/s");
}

TEST_CASE("human_rate: counts", "[ctl][format]") {
    CHECK(ctl::human_rate(0, ctl::RateUnit::kCount) == "0.0/s");
    CHECK(ctl::human_rate(0.5, ctl::RateUnit::kCount) == "0.5/s");
    CHECK(ctl::human_rate(9.94, ctl::RateUnit::kCount) == "9.9/s");
    CHECK(ctl::human_rate(9.96, ctl::RateUnit::kCount) == "10/s");
    CHECK(ctl::human_rate(12.4, ctl::RateUnit::kCount) == "12/s");
    CHECK(ctl::human_rate(1234567.6, ctl::RateUnit::kCount) == "1,234,568/s");
}

TEST_CASE("human_rate: unknown rates", "[ctl][format]") {
    for (auto unit : {ctl::RateUnit::kBytes, ctl::RateUnit::kCount}) {
        CHECK(ctl::human_rate(-1, unit) == "-");
        CHECK(ctl::human_rate(std::nan(""), unit) == "-");
        CHECK(ctl::human_rate(std::numeric_limits<double>::infinity(), unit) == "-");
    }
}

TEST_CASE("thousands", "[ctl][format]") {
    CHECK(ctl::thousands(0) == "0");
    CHECK(ctl::thousands(7) == "7");
    CHECK(ctl::thousands(999) == "999");
    CHECK(ctl::thousands(1000) == "1,000");
    CHECK(ctl::thousands(65536) == "65,536");
    CHECK(ctl::thousands(100000) == "100,000");
    CHECK(ctl::thousands(1234567) == "1,234,567");
    CHECK(ctl::thousands(std::numeric_limits<std::uint64_t>::max()) ==
          "18,446,744,073,709,551,615");
}

TEST_CASE("format_duration", "[ctl][format]") {
    CHECK(ctl::format_duration(0) == "0s");
    CHECK(ctl::format_duration(12.5) == "12s");
    CHECK(ctl::format_duration(59.999) == "59s");
    CHECK(ctl::format_duration(60) == "1m 00s");
    CHECK(ctl::format_duration(184) == "3m 04s");
    CHECK(ctl::format_duration(3599) == "59m 59s");
    CHECK(ctl::format_duration(3600) == "1h 00m");
    CHECK(ctl::format_duration(2 * 3600 + 60 + 59) == "2h 01m");
    CHECK(ctl::format_duration(86399) == "23h 59m");
    CHECK(ctl::format_duration(86400) == "1d 00h");
    CHECK(ctl::format_duration(3 * 86400 + 4 * 3600 + 59) == "3d 04h");
    CHECK(ctl::format_duration(400 * 86400.0) == "400d 00h");
}

TEST_CASE("format_duration: nonsense input", "[ctl][format]") {
    CHECK(ctl::format_duration(-5) == "0s");
    CHECK(ctl::format_duration(std::nan("")) == "0s");
    CHECK_FALSE(ctl::format_duration(1e300).empty());
}

TEST_CASE("format_endpoint", "[ctl][format]") {
    CHECK(ctl::format_endpoint("127.0.0.1", 8080) == "127.0.0.1:8080");
    CHECK(ctl::format_endpoint("::1", 8080) == "[::1]:8080");
    CHECK(ctl::format_endpoint("fe80::1%eth0", 22) == "[fe80::1%eth0]:22");
    CHECK(ctl::format_endpoint("::ffff:10.0.0.1", 443) == "[::ffff:10.0.0.1]:443");
    CHECK(ctl::format_endpoint("[::1]", 80) == "[::1]:80");
    CHECK(ctl::format_endpoint("", 0) == "*:0");
}

TEST_CASE("display_width counts code points", "[ctl][format]") {
    CHECK(ctl::display_width("") == 0);
    CHECK(ctl::display_width("abc") == 3);
    CHECK(ctl::display_width("⇄") == 1);  // 3 bytes
    CHECK(ctl::display_width("→") == 1);
    CHECK(ctl::display_width("a—b") == 3);
    CHECK(ctl::display_width("é") == 1);
}

TEST_CASE("render_table aligns columns", "[ctl][format]") {
    std::string out = ctl::render_table({{"a", "1"}, {"long", "22"}}, {"NAME", "N"});
    CHECK(out ==
          "NAME  N\n"
          "a     1\n"
          "long  22\n");
}

TEST_CASE("render_table aligns by code points, not bytes", "[ctl][format]") {
    std::string out = ctl::render_table({{"x", "⇄", "y"}, {"x", "→", "y"}}, {"L", "⇄/→", "R"});
    CHECK(out ==
          "L  ⇄/→  R\n"
          "x  ⇄    y\n"
          "x  →    y\n");
}

TEST_CASE("render_table right alignment", "[ctl][format]") {
    std::string out = ctl::render_table({{"a", "1"}, {"bb", "1,000"}}, {"K", "V"},
                                        {ctl::Align::kLeft, ctl::Align::kRight});
    CHECK(out ==
          "K       V\n"
          "a       1\n"
          "bb  1,000\n");
}

TEST_CASE("render_table edge cases", "[ctl][format]") {
    CHECK(ctl::render_table({}) == "");
    CHECK(ctl::render_table({}, {"A", "B"}) == "A  B\n");
    // Ragged rows: missing cells are empty, and no line has trailing spaces.
    std::string out = ctl::render_table({{"a", "b", "c"}, {"dddd"}});
    CHECK(out ==
          "a     b  c\n"
          "dddd\n");
    for (const std::string& line : lines_of(out)) CHECK(line.back() != ' ');
}

TEST_CASE("render_fields right-aligns labels", "[ctl][format]") {
    std::string out = ctl::render_fields({{"Map", "10"}, {"Attached", "yes"}});
    CHECK(out ==
          "     Map: 10\n"
          "Attached: yes\n");
}

TEST_CASE("render_fields continues multi-line values", "[ctl][format]") {
    std::string out = ctl::render_fields({{"A", "one\ntwo"}, {"Long", "\nx=1\ny=2"}});
    CHECK(out ==
          "   A: one\n"
          "      two\n"
          "Long:\n"
          "      x=1\n"
          "      y=2\n");
    CHECK(ctl::render_fields({}) == "");
    CHECK(ctl::render_fields({{"Empty", ""}}) == "Empty:\n");
}

TEST_CASE("count_noun and fixed", "[ctl][format]") {
    CHECK(ctl::count_noun(0, "socket") == "0 sockets");
    CHECK(ctl::count_noun(1, "socket") == "1 socket");
    CHECK(ctl::count_noun(1500, "socket") == "1,500 sockets");
    CHECK(ctl::fixed(0.04, 1) == "0.0");
    CHECK(ctl::fixed(2.25, 2) == "2.25");
}

// ---------------------------------------------------------------------------
// render.h: accessors
// ---------------------------------------------------------------------------

TEST_CASE("accessors tolerate wrong shapes", "[ctl][render]") {
    json j = json::parse(R"({"u":5,"neg":-1,"f":3.0,"frac":1.5,"s":"x","b":true,"o":{"k":1},
                             "big":18446744073709551615})");
    CHECK(ctl::get_u64(j, "u") == 5u);
    CHECK(ctl::get_u64(j, "big") == std::numeric_limits<std::uint64_t>::max());
    CHECK(ctl::get_u64(j, "f") == 3u);
    CHECK_FALSE(ctl::get_u64(j, "neg"));
    CHECK_FALSE(ctl::get_u64(j, "frac"));
    CHECK_FALSE(ctl::get_u64(j, "s"));
    CHECK_FALSE(ctl::get_u64(j, "missing"));
    CHECK(ctl::get_double(j, "frac") == 1.5);
    CHECK_FALSE(ctl::get_double(j, "s"));
    CHECK(ctl::get_bool(j, "b") == true);
    CHECK_FALSE(ctl::get_bool(j, "u"));
    CHECK(ctl::get_string(j, "s") == "x");
    CHECK_FALSE(ctl::get_string(j, "u"));
    CHECK(ctl::get_object(j, "o").at("k") == 1);
    CHECK(ctl::get_object(j, "s").empty());
    // Not an object at all.
    for (const json& odd : {json(nullptr), json(3), json("x"), json::array({1})}) {
        CHECK_FALSE(ctl::get_u64(odd, "u"));
        CHECK_FALSE(ctl::get_string(odd, "s"));
        CHECK(ctl::get_object(odd, "o").is_object());
    }
}

// ---------------------------------------------------------------------------
// render.h: command results
// ---------------------------------------------------------------------------

TEST_CASE("render ping and version", "[ctl][render]") {
    CHECK(ctl::render_ping(json::object()) == "pong\n");
    CHECK(
        ctl::render_version(json::parse(R"({"version":"0.1.0","protocol":1,"abi":1})"), "0.1.0") ==
        "sockacceld 0.1.0 (protocol 1, ABI 1); sockaccelctl 0.1.0\n");
    CHECK(ctl::render_version(json::object(), "0.2.0") == "sockacceld ?; sockaccelctl 0.2.0\n");
}

TEST_CASE("render_status: full result", "[ctl][render]") {
    std::string out = ctl::render_status(sample_status());
    auto lines = lines_of(out);
    REQUIRE_FALSE(lines.empty());
    CHECK(lines[0] == "sockacceld 0.1.0 — running, pid 123, up 12s (kernel 6.18.44)");
    CHECK(contains(out, "     Attached: yes (cgroup /sys/fs/cgroup)\n"));
    CHECK(contains(out, "      Pin dir: /sys/fs/bpf/sockaccel\n"));
    CHECK(contains(out, "Programs: sockops id 10, sk_msg id 11, link id 5\n"));
    CHECK(contains(out, "Mode: insert on, redirect off\n"));
    CHECK(contains(out, "Map: 10 / 65,536 entries (0.0%), map id 7\n"));
    CHECK(contains(out, "Sockets: 1,234 added; 3 add failed (1 map full, 2 other)\n"));
    CHECK(contains(out, "Redirected: 56,789 msgs, 1.5 MiB\n"));
    CHECK(contains(out, "Misses: 2 redirect misses, 1 socket on the TCP path\n"));
    CHECK(contains(out, "Drain: idle; backend sockhash (iter/sockmap)\n"));
    CHECK(contains(out, "Features: sockmap_iterator; unavailable: send_tracking\n"));
    CHECK(contains(out, "Kernel issues: eagain_blocking_read: reads may see EAGAIN\n"));
    // Config: label alone, then key=value lines in the value column,
    // nested keys dotted, empty strings visible.
    CHECK(contains(out,
                   "       Config:\n"
                   "               cgroup=\"\"\n"
                   "               control.max_clients=64\n"
                   "               log_level=info\n"));
    // Unknown keys are ignored.
    CHECK_FALSE(contains(out, "something_new"));
    // Every row's colon lines up with the widest label ("Kernel issues").
    for (std::size_t i = 1; i < lines.size(); ++i) {
        if (lines[i].find(':') != std::string::npos && lines[i].substr(0, 2) != "  ") {
            CHECK(lines[i].find(':') == std::string("Kernel issues").size());
        }
    }
}

TEST_CASE("render_status: draining, adopted, detached details", "[ctl][render]") {
    json s = sample_status();
    s["attach"]["adopted"] = true;
    s["drain"] = json::parse(
        R"({"active":true,"pending":2,"pending_bytes":4096,"pending_bytes_exact":false})");
    s["kernel_issues"] = json::array();
    s["uptime_sec"] = 2 * 3600 + 65;
    std::string out = ctl::render_status(s);
    CHECK(contains(out, "up 2h 01m"));
    CHECK(contains(out, "yes (cgroup /sys/fs/cgroup, adopted from a previous run)"));
    CHECK(contains(out, "Drain: draining: 2 sockets, at least 4.0 KiB pending\n"));
    CHECK(contains(out, "Kernel issues: none\n"));
    s["drain"] = json::parse(
        R"({"active":true,"pending":3,"unreached":1,"pending_bytes":0,"pending_bytes_exact":false,
            "backend":"task_file","iterator":"iter/task_file","complete":false,
            "cannot_see":"sockets held in no process's file table"})");
    CHECK(contains(ctl::render_status(s),
                   "Drain: draining: 3 sockets, at least 0 B pending, 1 the walk cannot reach; "
                   "backend task_file (iter/task_file), cannot see sockets held in no process's "
                   "file table\n"));

    s["attach"] = json::parse(R"({"attached":false,"pin_dir":"/p"})");
    out = ctl::render_status(s);
    CHECK(contains(out, "Attached: no\n"));
    CHECK_FALSE(contains(out, "Programs:"));
}

TEST_CASE("render_status: missing and mistyped keys do not throw", "[ctl][render]") {
    CHECK(ctl::render_status(json::object()) == "sockacceld ? — running\n");
    for (const json& odd :
         {json(nullptr), json(5), json::array({1, 2}), json("x"),
          json::parse(R"({"version":5,"pid":"x","attach":[],"counters":{"sockets_added":-1},
                           "map":{"entries":"x"},"kernel_issues":{"a":1},"features":[1],
                           "config":3,"drain":{"active":"yes"},"mode":{"insert":1}})"),
          json::parse(R"({"kernel_issues":[1,null,{"id":"x"},{"summary":"y"}],
                           "config":{"a":{"b":{"c":[1]}},"n":null}})")}) {
        CHECK_NOTHROW(ctl::render_status(odd));
    }
    std::string out = ctl::render_status(json::parse(
        R"({"kernel_issues":[1,{"id":"x"},{"summary":"y"}],"config":{"a":{"b":[1]},"n":null}})"));
    CHECK(contains(out, "Kernel issues: x\n"));
    CHECK(contains(out, "?: y\n"));
    CHECK(contains(out, "a.b=[1]\n"));
    CHECK(contains(out, "n=null\n"));
}

TEST_CASE("render_stats: table with human byte units", "[ctl][render]") {
    json r = json::parse(R"({"counters":{"sockets_added":65536,"redirect_bytes":1572864,
                                          "pass_bytes":10,"brand_new_counter":5,"odd":"x"},
                             "map":{"entries":10,"capacity":65536},"timestamp_ms":1000})");
    std::string out = ctl::render_stats(r);
    auto lines = lines_of(out);
    REQUIRE(lines.size() == 7);
    CHECK(lines[0] == "COUNTER              VALUE");
    CHECK(lines[1] == "map_entries             10");
    CHECK(lines[2] == "map_capacity        65,536");
    CHECK(lines[3] == "sockets_added       65,536");
    CHECK(lines[4] == "redirect_bytes     1.5 MiB");
    CHECK(lines[5] == "pass_bytes            10 B");
    // Unknown numeric counters are shown after the known ones.
    CHECK(lines[6] == "brand_new_counter        5");
    CHECK(ctl::render_stats(json::object()) == "no counters reported\n");
    CHECK_NOTHROW(ctl::render_stats(json(42)));
}

TEST_CASE("compute_rates", "[ctl][render]") {
    json a = json::parse(R"({"counters":{"redirect_msgs":100,"redirect_bytes":1000,
                             "pass_msgs":5,"pass_bytes":50,"sockets_added":10},
                             "timestamp_ms":1000})");
    json b = json::parse(R"({"counters":{"redirect_msgs":300,"redirect_bytes":3048,
                             "pass_msgs":4,"sockets_added":11},
                             "timestamp_ms":3000})");
    json rates = ctl::compute_rates(a, b);
    CHECK(rates.at("interval_ms") == 2000);
    CHECK(rates.at("redirect_msgs_per_sec").get<double>() == Approx(100.0));
    CHECK(rates.at("redirect_bytes_per_sec").get<double>() == Approx(1024.0));
    CHECK(rates.at("sockets_added_per_sec").get<double>() == Approx(0.5));
    // Went backwards (reset) or missing: no rate rather than a wrong one.
    CHECK_FALSE(rates.contains("pass_msgs_per_sec"));
    CHECK_FALSE(rates.contains("pass_bytes_per_sec"));

    // No usable interval.
    CHECK(ctl::compute_rates(a, a).empty());
    CHECK(ctl::compute_rates(b, a).empty());
    CHECK(ctl::compute_rates(json::object(), b).empty());
    CHECK(ctl::compute_rates(json(1), json("x")).empty());
}

TEST_CASE("render_stats with rates adds a RATE column", "[ctl][render]") {
    json r = json::parse(R"({"counters":{"redirect_msgs":300,"redirect_bytes":3048,
                             "redirect_misses":1,"pass_msgs":1},"timestamp_ms":3000})");
    json rates = json::parse(R"({"interval_ms":2000,"redirect_msgs_per_sec":100.0,
                                 "redirect_bytes_per_sec":2048.0})");
    auto lines = lines_of(ctl::render_stats(r, &rates));
    REQUIRE(lines.size() == 5);
    CHECK(lines[0] == "COUNTER            VALUE       RATE");
    CHECK(lines[1] == "redirect_msgs        300      100/s");
    CHECK(lines[2] == "redirect_bytes   3.0 KiB  2.0 KiB/s");
    CHECK(lines[3] == "redirect_misses        1");             // never has a rate
    CHECK(lines[4] == "pass_msgs              1          -");  // rate unknown

    json none = json::object();
    CHECK(contains(ctl::render_stats(r, &none), "RATE"));
}

TEST_CASE("render_connections", "[ctl][render]") {
    json r = json::parse(R"({"total":5,"shown":2,"truncated":true,"connections":[
        {"family":"ipv4","local_addr":"127.0.0.1","local_port":40000,"remote_addr":"127.0.0.1",
         "remote_port":8080,"cookie":123,"peer_cookie":124,"state":"active",
         "peer_state":"held_reader"},
        {"family":"ipv6","local_addr":"::1","local_port":5000,"remote_addr":"::1",
         "remote_port":443,"cookie":98765,"peer_cookie":null,"state":"tcp_path"}]})");
    std::string out = ctl::render_connections(r);
    CHECK(out ==
          "LOCAL            ⇄/→  REMOTE          COOKIE  PEER-COOKIE  STATE     PEER-STATE\n"
          "127.0.0.1:40000  ⇄    127.0.0.1:8080  123     124          active    held_reader\n"
          "[::1]:5000       →    [::1]:443       98765   -            tcp_path  -\n"
          "2 of 5 sockets shown, truncated\n");
}

TEST_CASE("render_connections: empty and odd input", "[ctl][render]") {
    CHECK(ctl::render_connections(
              json::parse(R"({"total":0,"shown":0,"truncated":false,"connections":[]})")) ==
          "0 of 0 sockets shown\n");
    CHECK(ctl::render_connections(json::object()) == "0 of 0 sockets shown\n");
    std::string out = ctl::render_connections(
        json::parse(R"({"connections":[1,null,{"local_port":"x","remote_port":99999}]})"));
    CHECK(contains(out, "?:0    →    ?:65535  ?       -            ?      -\n"));
    CHECK(contains(out, "1 of 1 socket shown\n"));
}

TEST_CASE("render_policy_set", "[ctl][render]") {
    CHECK(ctl::render_policy_set(json::parse(R"({"changed":false})")) ==
          "policy unchanged (new connections)\n");
    CHECK(ctl::render_policy_set(json::parse(
              R"({"changed":true,"apply_existing":{"flushed":3,"pending":1}})")) ==
          "policy set for new connections (until the next reload or restart)\n"
          "existing connections now outside the policy: 3 moved to TCP, 1 pending (unread "
          "data; finishing in the background)\n");
    // A mistyped member renders as unknown instead of throwing.
    std::string out;
    CHECK_NOTHROW(out = ctl::render_policy_set(
                      json::parse(R"({"apply_existing":{"flushed":"x","pending":[1]}})")));
    CHECK(contains(out, "? moved to TCP\n"));
}

TEST_CASE("render_flush", "[ctl][render]") {
    json r = json::parse(R"({"flushed":12,"pending":2,"pending_bytes":4096,
        "pending_bytes_exact":true,"dropped_sockets":0,"dropped_bytes":0,
        "background":true,"elapsed_ms":3})");
    CHECK(ctl::render_flush(r, false) ==
          "flushed 12 sockets; 2 pending (4.0 KiB unread), draining in the background\n");

    r["pending"] = 0;
    r["pending_bytes"] = 0;
    r["background"] = false;
    CHECK(ctl::render_flush(r, false) == "flushed 12 sockets; none pending\n");
    CHECK(ctl::render_flush(r, true) == "flushed 12 sockets; none pending\ndropped 0 sockets\n");

    json forced = json::parse(R"({"flushed":1,"pending":0,"pending_bytes":0,
        "dropped_sockets":2,"dropped_bytes":4096,"background":false})");
    CHECK(ctl::render_flush(forced, true) ==
          "flushed 1 socket; none pending\n"
          "dropped 2 sockets holding 4.0 KiB of unread data\n");

    json inexact =
        json::parse(R"({"flushed":3,"pending":1,"pending_bytes":100,"pending_bytes_exact":false})");
    CHECK(ctl::render_flush(inexact, false) ==
          "flushed 3 sockets; 1 pending (at least 100 B unread)\n");
    json blind = json::parse(R"({"flushed":0,"pending":2,"unreached":1,"pending_bytes":0,
        "pending_bytes_exact":false,"background":true})");
    CHECK(ctl::render_flush(blind, false) ==
          "flushed 0 sockets; 2 pending (at least 0 B unread, 1 the walk cannot reach), draining "
          "in the background\n");
    CHECK_NOTHROW(ctl::render_flush(json(nullptr), true));
}

TEST_CASE("render_attach", "[ctl][render]") {
    CHECK(ctl::render_attach(json::parse(R"({"attached":false,"changed":true})"), false) ==
          "detached: new connections are no longer accelerated\n");
    CHECK(ctl::render_attach(json::parse(R"({"attached":false,"changed":false})"), false) ==
          "already detached\n");
    CHECK(ctl::render_attach(json::parse(R"({"attached":true,"changed":true})"), true) ==
          "attached: new connections are accelerated\n");
    CHECK(ctl::render_attach(json::parse(R"({"attached":true,"changed":false})"), true) ==
          "already attached\n");
    CHECK(ctl::render_attach(json::parse(R"({"attached":true,"changed":false})"), false) ==
          "still attached\n");
    CHECK_NOTHROW(ctl::render_attach(json(3), true));
}

TEST_CASE("render_reload", "[ctl][render]") {
    json r = json::parse(
        R"({"reloaded":true,"applied":["log_level","drain.stop_timeout_sec"],
            "restart_required":["cgroup","pin_dir"]})");
    CHECK(ctl::render_reload(r) ==
          "reloaded configuration\n"
          "  applied: log_level\n"
          "  applied: drain.stop_timeout_sec\n"
          "warning: restart sockacceld to apply: cgroup, pin_dir\n");
    CHECK(ctl::render_reload(json::parse(R"({"reloaded":true,"applied":[],
                                             "restart_required":[]})")) ==
          "reloaded configuration (no changes)\n");
    CHECK(ctl::render_reload(json::parse(R"({"applied":"x","restart_required":[1,"a"]})")) ==
          "reloaded configuration\nwarning: restart sockacceld to apply: a\n");
}

TEST_CASE("render_error", "[ctl][render]") {
    CHECK(ctl::render_error("permission_denied",
                            "permission denied: flush-map needs root or membership in group "
                            "sockaccel") ==
          "permission denied: flush-map needs root or membership in group sockaccel "
          "(permission_denied)");
}
