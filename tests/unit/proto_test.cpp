// SPDX-License-Identifier: Apache-2.0
//
// Unit tests for the wire protocol library (proto/).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "sockaccel/proto/protocol.h"

namespace proto = sockaccel::proto;
using nlohmann::json;
using proto::Id;

namespace {

// Parses `line`, which must be rejected, and returns the error.
proto::RequestError reject(std::string_view line) {
    auto r = proto::parse_request(line);
    INFO("line: " << line);
    REQUIRE_FALSE(r.has_value());
    return r.error();
}

proto::Error reject_response(std::string_view line) {
    auto r = proto::parse_response(line);
    INFO("line: " << line);
    REQUIRE_FALSE(r.has_value());
    return r.error();
}

// Drains every complete line from the framer.
std::vector<std::string> drain(proto::LineFramer& framer) {
    std::vector<std::string> out;
    while (auto line = framer.next_line()) {
        out.push_back(*line);
    }
    return out;
}

// Serialized text without its final newline.
std::string body(const std::string& serialized) {
    REQUIRE_FALSE(serialized.empty());
    REQUIRE(serialized.back() == '\n');
    return serialized.substr(0, serialized.size() - 1);
}

}  // namespace

TEST_CASE("proto: constants", "[proto]") {
    CHECK(proto::kProtocolVersion == 1);
    CHECK(proto::kMaxLineBytes == 65536);
    CHECK(proto::kMaxIdBytes == 256);
    CHECK_FALSE(proto::kSoftwareVersion.empty());
    CHECK(std::count(proto::kSoftwareVersion.begin(), proto::kSoftwareVersion.end(), '.') >= 2);
}

TEST_CASE("proto: error codes are snake_case and distinct", "[proto]") {
    namespace errc = proto::errc;
    const std::vector<std::string_view> codes{
        errc::kParseError,
        errc::kInvalidRequest,
        errc::kUnsupportedVersion,
        errc::kUnknownCommand,
        errc::kInvalidArgument,
        errc::kPermissionDenied,
        errc::kLineTooLong,
        errc::kTooManyConnections,
        errc::kBusy,
        errc::kInternalError,
        errc::kTimeout,
        errc::kKernelError,
        errc::kNotAttached,
    };
    CHECK(std::set<std::string_view>(codes.begin(), codes.end()).size() == codes.size());
    for (auto code : codes) {
        INFO(code);
        CHECK_FALSE(code.empty());
        CHECK(std::all_of(code.begin(), code.end(),
                          [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; }));
    }
    CHECK(errc::kParseError == "parse_error");
    CHECK(errc::kKernelError == "kernel_error");
    CHECK(errc::kNotAttached == "not_attached");
}

TEST_CASE("proto: command table", "[proto]") {
    for (auto name : {"status", "stats", "connections", "version", "ping", "policy-show"}) {
        INFO(name);
        CHECK(proto::is_known_command(name));
        CHECK_FALSE(proto::is_mutating_command(name));
    }
    for (auto name : {"flush-map", "detach", "attach", "reload", "policy-set"}) {
        INFO(name);
        CHECK(proto::is_known_command(name));
        CHECK(proto::is_mutating_command(name));
    }
    for (auto name : {"", "STATUS", "status ", "flush_map", "shutdown"}) {
        INFO(name);
        CHECK_FALSE(proto::is_known_command(name));
        CHECK_FALSE(proto::is_mutating_command(name));
        CHECK(proto::find_command(name) == nullptr);
    }

    const auto all = proto::commands();
    CHECK(all.size() == 11);
    std::set<std::string_view> names;
    for (const auto& info : all) {
        names.insert(info.name);
        CHECK_FALSE(info.summary.empty());
        REQUIRE(proto::find_command(info.name) == &info);
        CHECK(proto::is_mutating_command(info.name) == info.mutating);
    }
    CHECK(names.size() == all.size());
    CHECK(proto::find_command(proto::cmd::kFlushMap)->mutating);
}

TEST_CASE("proto: id conversions", "[proto]") {
    CHECK(proto::id_to_json(Id{std::int64_t{7}}) == json(7));
    CHECK(proto::id_to_json(Id{std::string("a")}) == json("a"));
    CHECK(proto::id_to_json(std::optional<Id>{}) == json(nullptr));

    CHECK(proto::id_from_json(json(-3)) == std::optional<Id>(Id{std::int64_t{-3}}));
    CHECK(proto::id_from_json(json("x")) == std::optional<Id>(Id{std::string("x")}));
    CHECK(proto::id_from_json(json(std::numeric_limits<std::int64_t>::max())) ==
          std::optional<Id>(Id{std::numeric_limits<std::int64_t>::max()}));
    CHECK(proto::id_from_json(json(std::numeric_limits<std::int64_t>::min())) ==
          std::optional<Id>(Id{std::numeric_limits<std::int64_t>::min()}));
    CHECK_FALSE(proto::id_from_json(json(std::uint64_t{1} << 63)));
    CHECK_FALSE(proto::id_from_json(json(1.5)));
    CHECK_FALSE(proto::id_from_json(json(true)));
    CHECK_FALSE(proto::id_from_json(json(nullptr)));
    CHECK_FALSE(proto::id_from_json(json::object()));
    CHECK_FALSE(proto::id_from_json(json::array()));
    CHECK(proto::id_from_json(json(std::string(256, 'a'))));
    CHECK_FALSE(proto::id_from_json(json(std::string(257, 'a'))));

    CHECK(proto::id_to_string(Id{std::int64_t{42}}) == "42");
    CHECK(proto::id_to_string(Id{std::string("42")}) == "\"42\"");
    CHECK(proto::id_to_string(std::optional<Id>{}) == "null");
}

TEST_CASE("proto: request round trip", "[proto]") {
    SECTION("integer id") {
        proto::Request req{Id{std::int64_t{-12345678901234}}, "flush-map",
                           json{{"map", "sockmap"}}};
        const std::string line = proto::serialize(req);
        auto back = proto::parse_request(body(line));
        REQUIRE(back.has_value());
        CHECK(back->id == req.id);
        CHECK(back->cmd == "flush-map");
        CHECK(back->args == req.args);
    }
    SECTION("string id") {
        proto::Request req{Id{std::string("req-\xC3\xA9-1")}, "status"};
        const std::string line = proto::serialize(req);
        CHECK(body(line) == R"({"v":1,"id":"req-é-1","cmd":"status","args":{}})");
        auto back = proto::parse_request(body(line));
        REQUIRE(back.has_value());
        CHECK(back->id == req.id);
        CHECK(back->cmd == "status");
        CHECK(back->args == json::object());
    }
    SECTION("args default to an empty object") {
        auto r = proto::parse_request(R"({"v":1,"id":1,"cmd":"ping"})");
        REQUIRE(r.has_value());
        CHECK(r->args.is_object());
        CHECK(r->args.empty());
        CHECK(std::holds_alternative<std::int64_t>(r->id));
    }
    SECTION("whitespace, key order and trailing CR are accepted") {
        auto r = proto::parse_request(
            " { \"cmd\" : \"stats\", \"args\":{\"a\":[1]}, \"id\":\"x\", \"v\":1 } \r");
        REQUIRE(r.has_value());
        CHECK(r->id == Id{std::string("x")});
        CHECK(r->args == json{{"a", {1}}});
    }
    SECTION("extreme integer ids") {
        for (auto value : {std::numeric_limits<std::int64_t>::min(), std::int64_t{0},
                           std::numeric_limits<std::int64_t>::max()}) {
            auto r =
                proto::parse_request(body(proto::serialize(proto::Request{Id{value}, "ping"})));
            REQUIRE(r.has_value());
            CHECK(r->id == Id{value});
        }
    }
    SECTION("every command in the table parses") {
        for (const auto& info : proto::commands()) {
            auto r = proto::parse_request(body(
                proto::serialize(proto::Request{Id{std::int64_t{1}}, std::string(info.name)})));
            REQUIRE(r.has_value());
            CHECK(r->cmd == info.name);
        }
    }
}

TEST_CASE("proto: request rejections", "[proto]") {
    using namespace proto::errc;

    SECTION("not JSON") {
        auto e = reject("hello");
        CHECK(e.error.code == kParseError);
        CHECK_FALSE(e.id);
        CHECK_FALSE(e.error.message.empty());
        CHECK(reject("").error.code == kParseError);
        CHECK(reject("   ").error.code == kParseError);
        CHECK(reject(R"({"v":1,"id":1,"cmd":"ping"} trailing)").error.code == kParseError);
        CHECK(reject(R"({"v":1,"id":1,"cmd":"ping")").error.code == kParseError);
    }
    SECTION("JSON that is not an object") {
        for (auto line : {R"([{"v":1,"id":1,"cmd":"ping"}])", "42", "\"str\"", "null", "true"}) {
            auto e = reject(line);
            CHECK(e.error.code == kParseError);
            CHECK_FALSE(e.id);
        }
    }
    SECTION("binary garbage") {
        const std::string garbage("\x00\x01\xff\xfe{\x80\"v\x00", 9);
        auto e = reject(garbage);
        CHECK(e.error.code == kParseError);
        CHECK_FALSE(e.id);
        const std::string nul_inside("{\"v\":1,\"id\":1,\"cmd\":\"ping\"}\0", 28);
        CHECK(reject(nul_inside).error.code == kParseError);
    }
    SECTION("invalid UTF-8") {
        // Overlong encoding, lone continuation byte, truncated sequence, surrogate.
        for (std::string bad : {"\xC0\xAF", "\x80", "\xE2\x82", "\xED\xA0\x80", "\xFF"}) {
            const std::string line = R"({"v":1,"id":"a)" + bad + R"(","cmd":"ping"})";
            auto e = reject(line);
            CHECK(e.error.code == kParseError);
            CHECK(
                reject(R"({"v":1,"id":1,"cmd":"ping","args":{"k":")" + bad + R"("}})").error.code ==
                kParseError);
        }
    }
    SECTION("version") {
        auto missing = reject(R"({"id":5,"cmd":"ping"})");
        CHECK(missing.error.code == kInvalidRequest);
        CHECK(missing.id == std::optional<Id>(Id{std::int64_t{5}}));

        auto v2 = reject(R"({"v":2,"id":"abc","cmd":"ping"})");
        CHECK(v2.error.code == kUnsupportedVersion);
        CHECK(v2.id == std::optional<Id>(Id{std::string("abc")}));

        // A future version may change the envelope; still report the version.
        CHECK(reject(R"({"v":2,"id":1,"cmd":"ping","extra":1})").error.code == kUnsupportedVersion);
        CHECK(reject(R"({"v":0,"id":1,"cmd":"ping"})").error.code == kUnsupportedVersion);
        CHECK(reject(R"({"v":-1,"id":1,"cmd":"ping"})").error.code == kUnsupportedVersion);
        // 2^64 + 1 would wrap to 1 through a careless conversion (it parses as
        // a float, so it is not an integer at all); 2^64 - 1 must not wrap either.
        CHECK(reject(R"({"v":18446744073709551617,"id":1,"cmd":"ping"})").error.code ==
              kInvalidRequest);
        CHECK(reject(R"({"v":18446744073709551615,"id":1,"cmd":"ping"})").error.code ==
              kUnsupportedVersion);

        for (auto line : {R"({"v":"1","id":1,"cmd":"ping"})", R"({"v":1.0,"id":1,"cmd":"ping"})",
                          R"({"v":true,"id":1,"cmd":"ping"})", R"({"v":null,"id":1,"cmd":"ping"})",
                          R"({"v":[1],"id":1,"cmd":"ping"})"}) {
            auto e = reject(line);
            CHECK(e.error.code == kInvalidRequest);
            CHECK(e.id == std::optional<Id>(Id{std::int64_t{1}}));
        }
    }
    SECTION("id") {
        auto missing = reject(R"({"v":1,"cmd":"ping"})");
        CHECK(missing.error.code == kInvalidRequest);
        CHECK_FALSE(missing.id);

        for (auto line : {R"({"v":1,"id":1.5,"cmd":"ping"})", R"({"v":1,"id":1.0,"cmd":"ping"})",
                          R"({"v":1,"id":true,"cmd":"ping"})", R"({"v":1,"id":{},"cmd":"ping"})",
                          R"({"v":1,"id":[1],"cmd":"ping"})", R"({"v":1,"id":null,"cmd":"ping"})",
                          R"({"v":1,"id":9223372036854775808,"cmd":"ping"})"}) {
            auto e = reject(line);
            CHECK(e.error.code == kInvalidRequest);
            CHECK_FALSE(e.id);
        }

        const std::string max_id(proto::kMaxIdBytes, 'i');
        CHECK(proto::parse_request(R"({"v":1,"id":")" + max_id + R"(","cmd":"ping"})").has_value());
        auto long_id = reject(R"({"v":1,"id":")" + max_id + R"(i","cmd":"ping"})");
        CHECK(long_id.error.code == kInvalidRequest);
        CHECK_FALSE(long_id.id);
    }
    SECTION("cmd") {
        auto missing = reject(R"({"v":1,"id":3})");
        CHECK(missing.error.code == kInvalidRequest);
        CHECK(missing.id == std::optional<Id>(Id{std::int64_t{3}}));

        for (auto line : {R"({"v":1,"id":3,"cmd":7})", R"({"v":1,"id":3,"cmd":null})",
                          R"({"v":1,"id":3,"cmd":["ping"]})"}) {
            auto e = reject(line);
            CHECK(e.error.code == kInvalidRequest);
            CHECK(e.id == std::optional<Id>(Id{std::int64_t{3}}));
        }
    }
    SECTION("args") {
        for (auto line : {R"({"v":1,"id":"q","cmd":"ping","args":[]})",
                          R"({"v":1,"id":"q","cmd":"ping","args":null})",
                          R"({"v":1,"id":"q","cmd":"ping","args":"x"})",
                          R"({"v":1,"id":"q","cmd":"ping","args":1})"}) {
            auto e = reject(line);
            CHECK(e.error.code == kInvalidRequest);
            CHECK(e.id == std::optional<Id>(Id{std::string("q")}));
        }
    }
    SECTION("unknown top-level key") {
        auto e = reject(R"({"v":1,"id":9,"cmd":"ping","args":{},"extra":true})");
        CHECK(e.error.code == kInvalidRequest);
        CHECK(e.id == std::optional<Id>(Id{std::int64_t{9}}));
    }
    SECTION("unknown command keeps the id") {
        auto e = reject(R"({"v":1,"id":"abc","cmd":"shutdown"})");
        CHECK(e.error.code == kUnknownCommand);
        CHECK(e.id == std::optional<Id>(Id{std::string("abc")}));
        CHECK(e.error.message.find("shutdown") != std::string::npos);

        auto empty = reject(R"({"v":1,"id":4,"cmd":""})");
        CHECK(empty.error.code == kUnknownCommand);
        CHECK(empty.id == std::optional<Id>(Id{std::int64_t{4}}));

        // A huge command name is not echoed back in full.
        auto huge = reject(R"({"v":1,"id":4,"cmd":")" + std::string(5000, 'x') + R"("})");
        CHECK(huge.error.code == kUnknownCommand);
        CHECK(huge.error.message.size() < 200);
    }
    SECTION("line too long") {
        // Exactly at the limit is fine (padding with whitespace after the object).
        std::string at_limit = R"({"v":1,"id":1,"cmd":"ping"})";
        at_limit.resize(proto::kMaxLineBytes, ' ');
        CHECK(proto::parse_request(at_limit).has_value());

        std::string over = at_limit + " ";
        auto e = reject(over);
        CHECK(e.error.code == kLineTooLong);
        CHECK_FALSE(e.id);

        auto huge = reject(std::string(10 * proto::kMaxLineBytes, 'x'));
        CHECK(huge.error.code == kLineTooLong);
    }
    SECTION("nesting depth is capped") {
        // Envelope (1) + args (2) + n arrays.
        const auto nested = [](std::size_t n) {
            return R"({"v":1,"id":1,"cmd":"ping","args":{"a":)" + std::string(n, '[') +
                   std::string(n, ']') + "}}";
        };
        CHECK(proto::parse_request(nested(proto::kMaxJsonDepth - 2)).has_value());
        auto e = reject(nested(proto::kMaxJsonDepth - 1));
        CHECK(e.error.code == kInvalidRequest);
        CHECK(e.id == std::optional<Id>(Id{std::int64_t{1}}));

        // A whole line of brackets must neither crash nor be accepted.
        const std::size_t depth = proto::kMaxLineBytes / 2 - 64;
        const std::string line = nested(depth);
        REQUIRE(line.size() <= proto::kMaxLineBytes);
        CHECK(reject(line).error.code == kInvalidRequest);
        CHECK(reject(std::string(proto::kMaxLineBytes, '[')).error.code == kParseError);
        CHECK(reject(std::string(proto::kMaxLineBytes, '{')).error.code == kParseError);
    }
    SECTION("error converts into a response carrying the id") {
        auto e = reject(R"({"v":1,"id":77,"cmd":"nope"})");
        const proto::Response resp = proto::to_response(e);
        CHECK_FALSE(resp.ok);
        CHECK(resp.id == std::optional<Id>(Id{std::int64_t{77}}));
        CHECK(resp.error.code == kUnknownCommand);
    }
}

TEST_CASE("proto: response round trip", "[proto]") {
    SECTION("success with integer id") {
        const auto resp =
            proto::Response::success(Id{std::int64_t{5}}, json{{"attached", true}, {"n", 3}});
        const std::string line = proto::serialize(resp);
        CHECK(body(line) == R"({"v":1,"id":5,"ok":true,"result":{"attached":true,"n":3}})");
        auto back = proto::parse_response(body(line));
        REQUIRE(back.has_value());
        CHECK(back->ok);
        CHECK(back->id == resp.id);
        CHECK(back->result == resp.result);
    }
    SECTION("success with string id and null result") {
        const auto resp = proto::Response::success(Id{std::string("s")}, nullptr);
        CHECK(resp.result == json::object());
        const std::string line = proto::serialize(resp);
        CHECK(body(line) == R"({"v":1,"id":"s","ok":true,"result":{}})");
        auto back = proto::parse_response(body(line));
        REQUIRE(back.has_value());
        CHECK(back->id == std::optional<Id>(Id{std::string("s")}));
        CHECK(back->result == json::object());
    }
    SECTION("failure with null id") {
        const auto resp = proto::Response::failure(
            std::nullopt, std::string(proto::errc::kParseError), "bad\nline");
        const std::string line = proto::serialize(resp);
        CHECK(
            body(line) ==
            R"({"v":1,"id":null,"ok":false,"error":{"code":"parse_error","message":"bad\nline"}})");
        auto back = proto::parse_response(body(line));
        REQUIRE(back.has_value());
        CHECK_FALSE(back->ok);
        CHECK_FALSE(back->id);
        CHECK(back->error.code == "parse_error");
        CHECK(back->error.message == "bad\nline");
    }
    SECTION("failure with string id") {
        const auto resp = proto::Response::failure(Id{std::string("x")}, "busy", "try later");
        auto back = proto::parse_response(body(proto::serialize(resp)));
        REQUIRE(back.has_value());
        CHECK(back->id == resp.id);
        CHECK(back->error.code == "busy");
        CHECK(back->error.message == "try later");
    }
}

TEST_CASE("proto: serialize framing and invalid UTF-8", "[proto]") {
    const std::string invalid = "ab\xFF\xC0 \n\r\x01";
    const std::vector<std::string> lines{
        proto::serialize(
            proto::Request{Id{std::string(invalid)}, invalid, json{{invalid, invalid}}}),
        proto::serialize(proto::Response::success(Id{std::int64_t{1}},
                                                  json{{"path", invalid}, {"list", {invalid}}})),
        proto::serialize(
            proto::Response::failure(Id{std::string("x\ny")}, "kernel_error", invalid)),
    };
    for (const auto& line : lines) {
        INFO(line);
        REQUIRE(line.size() >= 2);
        CHECK(line.back() == '\n');
        CHECK(std::count(line.begin(), line.end(), '\n') == 1);
        CHECK(line.find('\r') == std::string::npos);
        // Invalid bytes became U+FFFD, so the output is valid JSON again.
        CHECK(json::accept(line));
    }
    auto resp = proto::parse_response(body(lines[1]));
    REQUIRE(resp.has_value());
    CHECK(resp->result["path"].get<std::string>().find("\xEF\xBF\xBD") != std::string::npos);
}

TEST_CASE("proto: response rejections", "[proto]") {
    using namespace proto::errc;
    CHECK(reject_response("nope").code == kParseError);
    CHECK(reject_response("[]").code == kParseError);
    CHECK(reject_response(std::string("{\"v\":1,\"id\":1,\"ok\":true,\"result\":{\"a\":\"\xFF\"}}"))
              .code == kParseError);
    CHECK(reject_response(std::string(proto::kMaxLineBytes + 1, ' ')).code == kLineTooLong);
    CHECK(
        reject_response(std::string("{\"v\":1,\"id\":1,\"ok\":true,\"result\":{}}\0x", 38)).code ==
        kParseError);
    CHECK(reject_response(R"({"v":1,"id":1,"ok":true,"result":{"a":)" + std::string(5000, '[') +
                          std::string(5000, ']') + "}}")
              .code == kParseError);

    CHECK(reject_response(R"({"v":2,"id":1,"ok":true,"result":{}})").code == kUnsupportedVersion);
    for (auto line : {
             R"({"id":1,"ok":true,"result":{}})",                               // v missing
             R"({"v":"1","id":1,"ok":true,"result":{}})",                       // v not integer
             R"({"v":1,"ok":true,"result":{}})",                                // id missing
             R"({"v":1,"id":1.5,"ok":true,"result":{}})",                       // id float
             R"({"v":1,"id":false,"ok":true,"result":{}})",                     // id bool
             R"({"v":1,"id":1,"result":{}})",                                   // ok missing
             R"({"v":1,"id":1,"ok":1,"result":{}})",                            // ok not bool
             R"({"v":1,"id":1,"ok":true})",                                     // result missing
             R"({"v":1,"id":1,"ok":true,"result":[]})",                         // result not object
             R"({"v":1,"id":1,"ok":true,"result":null})",                       // result null
             R"({"v":1,"id":1,"ok":true,"result":{},"error":{}})",              // both
             R"({"v":1,"id":1,"ok":true,"result":{},"x":0})",                   // unknown key
             R"({"v":1,"id":1,"ok":false})",                                    // error missing
             R"({"v":1,"id":1,"ok":false,"result":{}})",                        // result on failure
             R"({"v":1,"id":1,"ok":false,"error":"busy"})",                     // error not object
             R"({"v":1,"id":1,"ok":false,"error":{"message":"m"}})",            // code missing
             R"({"v":1,"id":1,"ok":false,"error":{"code":"","message":"m"}})",  // code empty
             R"({"v":1,"id":1,"ok":false,"error":{"code":3,"message":"m"}})",   // code type
             R"({"v":1,"id":1,"ok":false,"error":{"code":"busy"}})",            // no message
             R"({"v":1,"id":1,"ok":false,"error":{"code":"busy","message":1}})",  // message type
             R"({"v":1,"id":1,"ok":false,"error":{"code":"busy","message":"m","x":1}})",
         }) {
        auto e = reject_response(line);
        CHECK(e.code == kParseError);
        CHECK_FALSE(e.message.empty());
    }
}

TEST_CASE("proto: LineFramer", "[proto]") {
    proto::LineFramer framer;

    SECTION("several lines in one chunk") {
        framer.append("a\nbb\nccc\n");
        CHECK(drain(framer) == std::vector<std::string>{"a", "bb", "ccc"});
        CHECK_FALSE(framer.has_partial_line());
        CHECK(framer.buffered_bytes() == 0);
        CHECK_FALSE(framer.next_line());
    }
    SECTION("a line split across chunks") {
        framer.append(R"({"v":1,)");
        CHECK_FALSE(framer.next_line());
        CHECK(framer.has_partial_line());
        framer.append(R"("id":1,"cmd")");
        CHECK_FALSE(framer.next_line());
        framer.append(":\"ping\"}\n{\"v\"");
        auto lines = drain(framer);
        REQUIRE(lines.size() == 1);
        CHECK(proto::parse_request(lines[0]).has_value());
        CHECK(framer.has_partial_line());
        CHECK(framer.buffered_bytes() == 4);
    }
    SECTION("byte by byte") {
        const std::string stream = "one\r\ntwo\n\nthree\n";
        std::vector<std::string> lines;
        for (char c : stream) {
            framer.append(std::string_view(&c, 1));
            for (auto& l : drain(framer)) {
                lines.push_back(l);
            }
        }
        CHECK(lines == std::vector<std::string>{"one", "two", "three"});
    }
    SECTION("CRLF is stripped, only one CR, only at the end") {
        framer.append("a\r\nb\r\r\nc\rd\n");
        CHECK(drain(framer) == std::vector<std::string>{"a", "b\r", "c\rd"});
    }
    SECTION("CR and LF in different chunks") {
        framer.append("x\r");
        CHECK_FALSE(framer.next_line());
        framer.append("\n");
        CHECK(drain(framer) == std::vector<std::string>{"x"});
    }
    SECTION("empty lines are skipped") {
        framer.append("\n\n\r\na\n\n\r\n");
        CHECK(drain(framer) == std::vector<std::string>{"a"});
        CHECK(framer.buffered_bytes() == 0);
        CHECK_FALSE(framer.has_partial_line());
    }
    SECTION("empty append is a no-op") {
        framer.append("");
        CHECK_FALSE(framer.next_line());
        CHECK_FALSE(framer.overflowed());
    }
    SECTION("binary bytes pass through") {
        const std::string bin("\x00\xff\x01", 3);
        framer.append(bin + "\n");
        CHECK(drain(framer) == std::vector<std::string>{bin});
    }
    SECTION("a line of exactly kMaxLineBytes is accepted, with or without CR") {
        const std::string max(proto::kMaxLineBytes, 'm');
        framer.append(max);
        CHECK_FALSE(framer.overflowed());
        framer.append("\r");
        CHECK_FALSE(framer.overflowed());
        framer.append("\n" + max + "\n");
        CHECK_FALSE(framer.overflowed());
        auto lines = drain(framer);
        REQUIRE(lines.size() == 2);
        CHECK(lines[0] == max);
        CHECK(lines[1] == max);
    }
    SECTION("overflow of a partial line is detected without a newline") {
        framer.append("ok\n");
        framer.append(std::string(proto::kMaxLineBytes, 'x'));
        CHECK_FALSE(framer.overflowed());
        framer.append("y");
        CHECK(framer.overflowed());
        // Lines completed before the overflow are still delivered, the rest is gone.
        CHECK(drain(framer) == std::vector<std::string>{"ok"});
        CHECK(framer.buffered_bytes() == 0);
        framer.append("more\n");
        CHECK_FALSE(framer.next_line());
        CHECK(framer.overflowed());
        CHECK(framer.buffered_bytes() == 0);
    }
    SECTION("CR at the limit is followed by something else than LF") {
        framer.append(std::string(proto::kMaxLineBytes, 'x') + "\r");
        CHECK_FALSE(framer.overflowed());
        framer.append("z");
        CHECK(framer.overflowed());
    }
    SECTION("an over-long complete line in a single chunk") {
        framer.append("a\n" + std::string(proto::kMaxLineBytes + 1, 'x') + "\nb\n");
        CHECK(framer.overflowed());
        CHECK(drain(framer) == std::vector<std::string>{"a"});
    }
    SECTION("buffer stays bounded when a peer never sends a newline") {
        const std::string chunk(4096, 'g');
        std::size_t max_buffered = 0;
        for (int i = 0; i < 1000; ++i) {
            framer.append(chunk);
            max_buffered = std::max(max_buffered, framer.buffered_bytes());
        }
        CHECK(framer.overflowed());
        CHECK(max_buffered <= proto::kMaxLineBytes + 1);
        CHECK(framer.buffered_bytes() == 0);
    }
    SECTION("one huge chunk is never copied in full") {
        framer.append(std::string(16 * proto::kMaxLineBytes, 'h'));
        CHECK(framer.overflowed());
        CHECK(framer.buffered_bytes() == 0);
    }
}
