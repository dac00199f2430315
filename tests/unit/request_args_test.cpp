// SPDX-License-Identifier: Apache-2.0
//
// Unit tests for per-command argument validation, the permission decision and
// the pure dispatch path (daemon/src/request_args.h).
#include <catch2/catch.hpp>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>

#include "request_args.h"
#include "sockaccel/proto/protocol.h"

namespace proto = sockaccel::proto;
using nlohmann::json;
using sockaccel::ConnectionsArgs;
using sockaccel::FlushArgs;
using sockaccel::NoArgs;
using sockaccel::ValidatedRequest;
using sockaccel::validate_request;

namespace {

proto::Request req(std::string cmd, json args = json::object()) {
    return proto::Request{std::int64_t{1}, std::move(cmd), std::move(args)};
}

ValidatedRequest accept(const std::string& cmd, json args = json::object()) {
    INFO(cmd << " " << args.dump());
    auto r = validate_request(req(cmd, std::move(args)));
    REQUIRE(r.has_value());
    return *r;
}

proto::Error reject(const std::string& cmd, json args) {
    INFO(cmd << " " << args.dump());
    auto r = validate_request(req(cmd, std::move(args)));
    REQUIRE_FALSE(r.has_value());
    return r.error();
}

// The error for `cmd` with `args`, which must be invalid_argument.
std::string invalid_message(const std::string& cmd, json args) {
    auto e = reject(cmd, std::move(args));
    CHECK(e.code == "invalid_argument");
    return e.message;
}

constexpr const char* kNoArgCommands[] = {"ping",   "version", "status", "stats",
                                          "detach", "attach",  "reload"};

}  // namespace

TEST_CASE("commands without arguments accept {} and reject every key") {
    for (const char* cmd : kNoArgCommands) {
        INFO(cmd);
        CHECK(std::holds_alternative<NoArgs>(accept(cmd)));
        CHECK(invalid_message(cmd, {{"x", 1}}) ==
              std::string(cmd) + ": unknown argument \"x\"");
        CHECK(invalid_message(cmd, {{"force", true}}) ==
              std::string(cmd) + ": unknown argument \"force\"");
        // Any value type, including null and nested values.
        CHECK(invalid_message(cmd, {{"", nullptr}}) == std::string(cmd) + ": unknown argument \"\"");
        CHECK(invalid_message(cmd, {{"a", {{"b", json::array()}}}}) ==
              std::string(cmd) + ": unknown argument \"a\"");
    }
}

TEST_CASE("connections: port and limit") {
    auto plain = std::get<ConnectionsArgs>(accept("connections"));
    CHECK_FALSE(plain.port);
    CHECK(plain.limit == sockaccel::kDefaultListLimit);

    auto both = std::get<ConnectionsArgs>(accept("connections", {{"port", 8080}, {"limit", 5}}));
    REQUIRE(both.port);
    CHECK(*both.port == 8080);
    CHECK(both.limit == 5);

    CHECK(std::get<ConnectionsArgs>(accept("connections", {{"port", 1}})).port == 1);
    CHECK(std::get<ConnectionsArgs>(accept("connections", {{"port", 65535}})).port == 65535);
    CHECK(std::get<ConnectionsArgs>(accept("connections", {{"limit", 1}})).limit == 1);
    CHECK(std::get<ConnectionsArgs>(accept("connections", {{"limit", 200}})).limit == 200);
    CHECK(sockaccel::kMaxListLimit == 200);

    const std::string port_msg = "connections: \"port\" must be an integer between 1 and 65535";
    const std::string limit_msg = "connections: \"limit\" must be an integer between 1 and 200";
    for (const json& bad : {json(0), json(-1), json(65536), json("80"), json(80.0), json(80.5),
                            json(true), json(nullptr), json::array({80}), json::object(),
                            json(std::numeric_limits<std::int64_t>::min()),
                            json(std::numeric_limits<std::uint64_t>::max()),
                            // Huge unsigned values must not wrap into range.
                            json(std::uint64_t{18446744073709486160ULL})}) {
        INFO(bad.dump());
        CHECK(invalid_message("connections", {{"port", bad}}) == port_msg);
    }
    for (const json& bad : {json(0), json(-5), json(201), json(100000), json("10"), json(1.0),
                            json(false), json(nullptr),
                            json(std::numeric_limits<std::uint64_t>::max())}) {
        INFO(bad.dump());
        CHECK(invalid_message("connections", {{"limit", bad}}) == limit_msg);
    }
    CHECK(invalid_message("connections", {{"bogus", 1}}) ==
          "connections: unknown argument \"bogus\"");
    // Unknown keys are reported before bad values.
    CHECK(invalid_message("connections", {{"port", "x"}, {"zzz", 1}}) ==
          "connections: unknown argument \"zzz\"");
    // With two bad values, the first in order (port, limit) is reported.
    CHECK(invalid_message("connections", {{"port", 0}, {"limit", 0}}) == port_msg);
}

TEST_CASE("flush-map: force and wait_ms") {
    auto plain = std::get<FlushArgs>(accept("flush-map"));
    CHECK_FALSE(plain.force);
    CHECK(plain.wait == std::chrono::milliseconds(sockaccel::kDefaultFlushWaitMs));
    CHECK(plain.wait == std::chrono::milliseconds(2000));

    auto both = std::get<FlushArgs>(accept("flush-map", {{"force", true}, {"wait_ms", 100}}));
    CHECK(both.force);
    CHECK(both.wait == std::chrono::milliseconds(100));
    CHECK_FALSE(std::get<FlushArgs>(accept("flush-map", {{"force", false}})).force);
    CHECK(std::get<FlushArgs>(accept("flush-map", {{"wait_ms", 0}})).wait.count() == 0);
    CHECK(std::get<FlushArgs>(accept("flush-map", {{"wait_ms", 600000}})).wait.count() == 600000);

    const std::string wait_msg = "flush-map: \"wait_ms\" must be an integer between 0 and 600000";
    for (const json& bad : {json(-1), json(600001), json("100"), json(1.5), json(true),
                            json(nullptr), json::array(),
                            json(std::numeric_limits<std::int64_t>::min()),
                            json(std::numeric_limits<std::uint64_t>::max())}) {
        INFO(bad.dump());
        CHECK(invalid_message("flush-map", {{"wait_ms", bad}}) == wait_msg);
    }
    for (const json& bad : {json("yes"), json(1), json(0), json(nullptr), json::object()}) {
        INFO(bad.dump());
        CHECK(invalid_message("flush-map", {{"force", bad}}) ==
              "flush-map: \"force\" must be a boolean");
    }
    CHECK(invalid_message("flush-map", {{"now", true}}) == "flush-map: unknown argument \"now\"");
    // wait_ms is checked before force.
    CHECK(invalid_message("flush-map", {{"force", "yes"}, {"wait_ms", -1}}) == wait_msg);
}

TEST_CASE("a long unknown argument name is not echoed") {
    const std::string k64(64, 'k');
    CHECK(invalid_message("ping", {{k64, 1}}) == "ping: unknown argument \"" + k64 + "\"");
    const std::string k65(65, 'k');
    CHECK(invalid_message("ping", {{k65, 1}}) == "ping: unknown argument (a name of 65 bytes)");
    CHECK(invalid_message("connections", {{std::string(60000, 'x'), 1}}) ==
          "connections: unknown argument (a name of 60000 bytes)");
}

TEST_CASE("every protocol command is validated") {
    for (const auto& info : proto::commands()) {
        auto r = validate_request(req(std::string(info.name)));
        INFO(info.name);
        // With no arguments, a command either runs or misses a required one;
        // none is left unimplemented.
        if (!r) CHECK(r.error().code == "invalid_argument");
    }
    auto e = reject("launch", json::object());
    CHECK(e.code == "unknown_command");
    CHECK(e.message == "command \"launch\" is not available in this version of sockacceld");
}

TEST_CASE("policy-set arguments") {
    auto ok = validate_request(req("policy-set", {{"policy", {{"exclude", {{"ports", {22}}}}}},
                                                  {"apply_existing", true},
                                                  {"wait_ms", 500}}));
    REQUIRE(ok);
    const auto& a = std::get<sockaccel::PolicySetArgs>(*ok);
    CHECK(a.apply_existing);
    CHECK(a.wait == std::chrono::milliseconds(500));
    CHECK(a.policy.exclude.ports.size() == 1);
    CHECK(invalid_message("policy-set", json::object()) == "policy-set: \"policy\" is required");
    CHECK(invalid_message("policy-set", {{"policy", {{"include", {{"ports", {"x"}}}}}}}) ==
          "policy-set: policy.include.ports[0]: \"x\": must be a port (1-65535) or a range like "
          "8000-8100");
    CHECK(invalid_message("policy-set", {{"policy", json::object()}, {"apply_existing", 1}}) ==
          "policy-set: \"apply_existing\" must be a boolean");
    CHECK(invalid_message("policy-set", {{"policy", json::object()}, {"wait_ms", 600001}})
              .find("wait_ms") != std::string::npos);
    CHECK(invalid_message("policy-set", {{"policy", json::object()}, {"extra", 1}}) ==
          "policy-set: unknown argument \"extra\"");
    CHECK(validate_request(req("policy-show")));
    CHECK(invalid_message("policy-show", {{"x", 1}}) == "policy-show: unknown argument \"x\"");
}

TEST_CASE("needs_admin is the protocol's mutating flag") {
    for (const auto& info : proto::commands()) {
        INFO(info.name);
        CHECK(sockaccel::needs_admin(info.name) == info.mutating);
    }
    CHECK(sockaccel::needs_admin("flush-map"));
    CHECK(sockaccel::needs_admin("attach"));
    CHECK(sockaccel::needs_admin("detach"));
    CHECK(sockaccel::needs_admin("reload"));
    CHECK_FALSE(sockaccel::needs_admin("status"));
    CHECK_FALSE(sockaccel::needs_admin("ping"));
    CHECK_FALSE(sockaccel::needs_admin("no-such-command"));
    CHECK(sockaccel::permission_denied_message("reload", "sockaccel") ==
          "reload needs root or membership in group sockaccel");
    CHECK(sockaccel::permission_denied_message("reload", "") ==
          "reload needs root or membership in group (none configured)");
}

TEST_CASE("dispatch_line: parse, permission, validation, run") {
    int runs = 0;
    const sockaccel::RequestRunner run = [&](const proto::Request& r, const ValidatedRequest& v) {
        ++runs;
        if (r.id == proto::Id{std::string("boom")}) throw std::runtime_error("kaput");
        json result = {{"cmd", r.cmd}};
        if (auto* c = std::get_if<ConnectionsArgs>(&v)) result["limit"] = c->limit;
        return proto::Response::success(r.id, result);
    };
    auto dispatch = [&](std::string_view line, bool admin) {
        return sockaccel::dispatch_line(line, admin, "sockaccel", run);
    };

    auto ok = dispatch(R"({"v":1,"id":3,"cmd":"connections","args":{"limit":7}})", false);
    CHECK(ok.ok);
    CHECK(ok.id == proto::Id{std::int64_t{3}});
    CHECK(ok.result == json{{"cmd", "connections"}, {"limit", 7}});
    CHECK(runs == 1);

    auto parse = dispatch("{not json", true);
    CHECK_FALSE(parse.ok);
    CHECK(parse.error.code == "parse_error");
    CHECK_FALSE(parse.id);

    auto unknown = dispatch(R"({"v":1,"id":"abc","cmd":"launch"})", true);
    CHECK(unknown.error.code == "unknown_command");
    CHECK(unknown.id == proto::Id{std::string("abc")});

    auto denied = dispatch(R"({"v":1,"id":4,"cmd":"flush-map","args":{"force":"yes"}})", false);
    CHECK(denied.error.code == "permission_denied");  // before argument validation
    CHECK(denied.error.message == "flush-map needs root or membership in group sockaccel");
    CHECK(denied.id == proto::Id{std::int64_t{4}});

    auto bad = dispatch(R"({"v":1,"id":5,"cmd":"flush-map","args":{"force":"yes"}})", true);
    CHECK(bad.error.code == "invalid_argument");
    CHECK(bad.error.message == "flush-map: \"force\" must be a boolean");
    CHECK(bad.id == proto::Id{std::int64_t{5}});

    auto na = dispatch(R"({"v":1,"id":6,"cmd":"launch"})", false);
    CHECK(na.error.code == "unknown_command");
    CHECK(runs == 1);  // nothing ran for any of the failures

    auto admin_ok = dispatch(R"({"v":1,"id":8,"cmd":"reload"})", true);
    CHECK(admin_ok.ok);
    CHECK(runs == 2);

    auto boom = dispatch(R"({"v":1,"id":"boom","cmd":"ping"})", false);
    CHECK_FALSE(boom.ok);
    CHECK(boom.error.code == "internal_error");
    CHECK(boom.error.message == "kaput");
    CHECK(boom.id == proto::Id{std::string("boom")});

    // admit_request alone: parse + permission, nothing else.
    auto admitted = sockaccel::admit_request(R"({"v":1,"id":9,"cmd":"attach","args":{"x":1}})",
                                             true, "");
    REQUIRE(admitted);
    CHECK(admitted->cmd == "attach");
    auto refused = sockaccel::admit_request(R"({"v":1,"id":9,"cmd":"attach"})", false, "");
    REQUIRE_FALSE(refused);
    CHECK(refused.error().error.message ==
          "attach needs root or membership in group (none configured)");
}
