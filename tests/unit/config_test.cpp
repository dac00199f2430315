// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>
#include <fstream>
#include <unistd.h>

#include "config.h"

using sockaccel::Config;
using sockaccel::parse_config;

namespace {
std::string error_of(const char* text) {
    auto r = parse_config(text, "test.json");
    REQUIRE_FALSE(r.has_value());
    return r.error();
}
}  // namespace

TEST_CASE("an empty object gives the defaults") {
    auto r = parse_config("{}", "x");
    REQUIRE(r);
    CHECK(r->pin_dir == "/sys/fs/bpf/sockaccel");
    CHECK(r->cgroup.empty());
    CHECK(r->map_size == 65536);
    CHECK(r->log_level == "info");
    CHECK(r->control.socket == "/run/sockaccel/sockacceld.sock");
    CHECK(r->control.group == "sockaccel");
    CHECK(r->drain.stop_timeout_sec == 10);
    CHECK_FALSE(r->redirect.max_unread_bytes.has_value());  // "auto"
}

TEST_CASE("every key can be set") {
    auto r = parse_config(R"({"cgroup":"/sys/fs/cgroup/x","pin_dir":"/sys/fs/bpf/y",
        "map_size":1024,"log_level":"debug",
        "control":{"socket":"/run/s.sock","group":"g","admin_group":"a","max_clients":3,
                   "idle_timeout_sec":7},
        "drain":{"stop_timeout_sec":0}, "redirect":{"max_unread_bytes":65536}})",
                          "x");
    REQUIRE(r);
    CHECK(r->cgroup == "/sys/fs/cgroup/x");
    CHECK(r->pin_dir == "/sys/fs/bpf/y");
    CHECK(r->map_size == 1024);
    CHECK(r->log_level == "debug");
    CHECK(r->control.socket == "/run/s.sock");
    CHECK(r->control.group == "g");
    CHECK(r->control.admin_group == "a");
    CHECK(r->control.max_clients == 3);
    CHECK(r->control.idle_timeout_sec == 7);
    CHECK(r->drain.stop_timeout_sec == 0);
    CHECK(r->redirect.max_unread_bytes == 65536u);
}

TEST_CASE("redirect.max_unread_bytes takes auto, 0 (no limit) or a size") {
    auto limit = [](const char* value) {
        auto r = parse_config(std::string(R"({"redirect":{"max_unread_bytes":)") + value + "}}",
                              "x");
        REQUIRE(r);
        return r->redirect.max_unread_bytes;
    };
    CHECK_FALSE(limit("\"auto\"").has_value());
    CHECK(limit("0") == 0u);
    CHECK(limit("17179869184") == 17179869184u);
    const std::string range =
        "test.json: key \"redirect.max_unread_bytes\": must be 0 or an integer between 65536 and "
        "17179869184";
    CHECK(error_of(R"({"redirect":{"max_unread_bytes":65535}})") == range);
    CHECK(error_of(R"({"redirect":{"max_unread_bytes":17179869185}})") == range);
    CHECK(error_of(R"({"redirect":{"max_unread_bytes":-1}})") == range);
    CHECK(error_of(R"({"redirect":{"max_unread_bytes":1.5}})") == range);
    CHECK(error_of(R"({"redirect":{"max_unread_bytes":"4M"}})") ==
          "test.json: key \"redirect.max_unread_bytes\": must be \"auto\" or an integer");
    CHECK(error_of(R"({"redirect":{"limit":1}})") == "test.json: unknown key \"redirect.limit\"");
    CHECK(error_of(R"({"redirect":4})") == "test.json: key \"redirect\": must be an object");
}

TEST_CASE("bad config input names the key and the problem") {
    CHECK(error_of("") == "test.json: not valid JSON");
    CHECK(error_of("{") == "test.json: not valid JSON");
    CHECK(error_of("{\"map_size\": 1,}") == "test.json: not valid JSON");
    CHECK(error_of("[]") == "test.json: the top level must be a JSON object");
    CHECK(error_of("42") == "test.json: the top level must be a JSON object");
    CHECK(error_of("\"x\"") == "test.json: the top level must be a JSON object");
    CHECK(error_of("{\"pin_dri\": \"/x\"}") == "test.json: unknown key \"pin_dri\"");
    CHECK(error_of("{\"control\": {\"sockt\": \"/x\"}}") ==
          "test.json: unknown key \"control.sockt\"");
    CHECK(error_of("{\"drain\": {\"x\": 1}}") == "test.json: unknown key \"drain.x\"");
    CHECK(error_of("{\"map_size\": \"10\"}") ==
          "test.json: key \"map_size\": must be an integer between 1 and 16777216");
    CHECK(error_of("{\"map_size\": 0}") ==
          "test.json: key \"map_size\": must be an integer between 1 and 16777216");
    CHECK(error_of("{\"map_size\": -5}") ==
          "test.json: key \"map_size\": must be an integer between 1 and 16777216");
    CHECK(error_of("{\"map_size\": 1.5}") ==
          "test.json: key \"map_size\": must be an integer between 1 and 16777216");
    CHECK(error_of("{\"map_size\": 99999999999999999999}") ==
          "test.json: key \"map_size\": must be an integer between 1 and 16777216");
    CHECK(error_of("{\"map_size\": 16777217}") ==
          "test.json: key \"map_size\": must be an integer between 1 and 16777216");
    CHECK(error_of("{\"map_size\": null}") ==
          "test.json: key \"map_size\": must be an integer between 1 and 16777216");
    CHECK(error_of("{\"pin_dir\": 5}") == "test.json: key \"pin_dir\": must be a string");
    CHECK(error_of("{\"pin_dir\": \"\"}") == "test.json: key \"pin_dir\": must not be empty");
    CHECK(error_of("{\"pin_dir\": \"rel/dir\"}") ==
          "test.json: key \"pin_dir\": must be an absolute path");
    CHECK(error_of("{\"cgroup\": true}") == "test.json: key \"cgroup\": must be a string");
    CHECK(error_of("{\"log_level\": \"loud\"}") ==
          "test.json: key \"log_level\": must be one of trace, debug, info, warn, error, "
          "critical, off");
    CHECK(error_of("{\"control\": 3}") == "test.json: key \"control\": must be an object");
    CHECK(error_of("{\"control\": {\"socket\": \"x.sock\"}}") ==
          "test.json: key \"control.socket\": must be an absolute path");
    CHECK(error_of(("{\"control\": {\"socket\": \"/" + std::string(200, 'a') + "\"}}").c_str()) ==
          "test.json: key \"control.socket\": must be at most 107 bytes long");
    CHECK(error_of("{\"control\": {\"max_clients\": 0}}") ==
          "test.json: key \"control.max_clients\": must be an integer between 1 and 65536");
    CHECK(error_of("{\"drain\": {\"stop_timeout_sec\": 3601}}") ==
          "test.json: key \"drain.stop_timeout_sec\": must be an integer between 0 and 3600");
    CHECK(error_of("{\"pin_dir\": \"/a\\u0000b\"}") ==
          "test.json: key \"pin_dir\": must not contain NUL");
    CHECK(error_of("{\"pin_dir\": \"\xff\xfe\"}") == "test.json: not valid JSON");
    CHECK(error_of("\xef\xbb\xbf{\"x\":1}") == "test.json: unknown key \"x\"");  // BOM accepted
}

TEST_CASE("several errors give one line, in a fixed key order") {
    CHECK(error_of("{\"map_size\": \"a\", \"pin_dir\": 3}") ==
          "test.json: key \"pin_dir\": must be a string");
}

TEST_CASE("config files: a missing default is fine, a missing named file is not") {
    auto missing = sockaccel::load_config_file("/nonexistent/sockacceld.json", true);
    REQUIRE(missing);
    CHECK(missing->map_size == sockaccel::kDefaultMapSize);
    auto named = sockaccel::load_config_file("/nonexistent/sockacceld.json", false);
    REQUIRE_FALSE(named);
    CHECK(named.error() == "/nonexistent/sockacceld.json: cannot read: No such file or directory");

    char path[] = "/tmp/sockaccel-config-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    ::close(fd);
    std::ofstream(path) << "{\"map_size\": 7}";
    auto good = sockaccel::load_config_file(path, false);
    REQUIRE(good);
    CHECK(good->map_size == 7);
    std::ofstream(path) << "{\"map_size\": ";
    CHECK_FALSE(sockaccel::load_config_file(path, false));
    ::unlink(path);
}

TEST_CASE("config_to_json round-trips through the parser") {
    auto r = parse_config(R"({"map_size": 12, "control": {"group": "ops"}})", "x");
    REQUIRE(r);
    auto again = parse_config(sockaccel::config_to_json(*r).dump(), "x");
    REQUIRE(again);
    CHECK(again->map_size == 12);
    CHECK(again->control.group == "ops");
    CHECK_FALSE(again->redirect.max_unread_bytes.has_value());
    r->redirect.max_unread_bytes = 0;
    again = parse_config(sockaccel::config_to_json(*r).dump(), "x");
    REQUIRE(again);
    CHECK(again->redirect.max_unread_bytes == 0u);
}

TEST_CASE("redirect.demote is on by default; its thresholds take 0 (off) or a bounded size") {
    auto d = parse_config("{}", "x");
    REQUIRE(d);
    CHECK(d->redirect.demote);
    CHECK(d->redirect.demote_small_write_bytes == 8192);
    CHECK(d->redirect.demote_held_sends == 4096);
    auto r = parse_config(
        R"({"redirect":{"demote":false,"demote_small_write_bytes":0,"demote_held_sends":16}})",
        "x");
    REQUIRE(r);
    CHECK_FALSE(r->redirect.demote);
    CHECK(r->redirect.demote_small_write_bytes == 0);
    CHECK(r->redirect.demote_held_sends == 16);
    CHECK(error_of(R"({"redirect":{"demote":1}})") ==
          "test.json: key \"redirect.demote\": must be true or false");
    CHECK(error_of(R"({"redirect":{"demote_small_write_bytes":1048577}})") ==
          "test.json: key \"redirect.demote_small_write_bytes\": must be 0 or an integer between "
          "1 and 1048576");
    CHECK(error_of(R"({"redirect":{"demote_held_sends":-1}})") ==
          "test.json: key \"redirect.demote_held_sends\": must be 0 or an integer between 1 and "
          "1073741824");
}
