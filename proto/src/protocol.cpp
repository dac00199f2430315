// SPDX-License-Identifier: Apache-2.0
#include "sockaccel/proto/protocol.h"

#include <exception>
#include <limits>
#include <utility>

namespace sockaccel::proto {
namespace {

using json = nlohmann::json;

// Replace invalid UTF-8 instead of throwing: results may carry strings from
// the kernel or the file system that were never validated.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

Error make_error(std::string_view code, std::string message) {
    return Error{std::string(code), std::move(message)};
}

tl::unexpected<RequestError> request_error(std::optional<Id> id, std::string_view code,
                                           std::string message) {
    return tl::unexpected(RequestError{std::move(id), make_error(code, std::move(message))});
}

std::string too_long_message(std::size_t size) {
    return "line of " + std::to_string(size) + " bytes exceeds the limit of " +
           std::to_string(kMaxLineBytes) + " bytes";
}

struct ParsedLine {
    std::optional<json> object;  // nullopt: not JSON / not UTF-8 / not an object
    bool too_deep = false;       // object is usable but lost its too-deep parts
};

// Parses `line` into a JSON object. Garbage is expected input here, so the
// non-throwing overload of parse() is used (failure shows as is_discarded()).
ParsedLine parse_object(std::string_view line) {
    ParsedLine out;
    // nlohmann's lexer takes a raw NUL for end of input, so "{...}\0junk"
    // would parse. A raw NUL is never valid JSON: reject it up front.
    if (line.find('\0') != std::string_view::npos) {
        return out;
    }
    // Parsing is iterative, but copying, comparing and dumping json values
    // recurse; cap nesting so a 64 KiB line of "[[[[..." cannot exhaust the
    // stack later. Containers beyond the cap are dropped (bounded memory) and
    // the line is rejected afterwards, once the id has been recovered.
    // `depth` is the number of containers enclosing the one being opened.
    const json::parser_callback_t limit_depth = [&out](int depth, json::parse_event_t event,
                                                       json& /*parsed*/) {
        if ((event == json::parse_event_t::object_start ||
             event == json::parse_event_t::array_start) &&
            depth >= static_cast<int>(kMaxJsonDepth)) {
            out.too_deep = true;
            return false;
        }
        return true;
    };
    json j = json::parse(line.begin(), line.end(), limit_depth, /*allow_exceptions=*/false);
    if (!j.is_discarded() && j.is_object()) {
        out.object = std::move(j);
    }
    return out;
}

std::string too_deep_message() {
    return "JSON nesting is deeper than " + std::to_string(kMaxJsonDepth) + " levels";
}

enum class VersionCheck { kOk, kMissingOrNotInteger, kUnsupported };

VersionCheck check_version(const json& obj) {
    const auto it = obj.find("v");
    if (it == obj.end() || !it->is_number_integer()) {
        return VersionCheck::kMissingOrNotInteger;
    }
    // Compare in the type nlohmann chose: a huge unsigned value must not
    // wrap around to 1 through a signed conversion.
    if (it->is_number_unsigned()) {
        return it->get<std::uint64_t>() == static_cast<std::uint64_t>(kProtocolVersion)
                   ? VersionCheck::kOk
                   : VersionCheck::kUnsupported;
    }
    return it->get<std::int64_t>() == kProtocolVersion ? VersionCheck::kOk
                                                       : VersionCheck::kUnsupported;
}

std::string unsupported_version_message(const json& v) {
    return "unsupported protocol version " + v.dump() + " (this side speaks " +
           std::to_string(kProtocolVersion) + ")";
}

tl::expected<Request, RequestError> parse_request_unchecked(std::string_view line) {
    if (line.size() > kMaxLineBytes) {
        return request_error(std::nullopt, errc::kLineTooLong, too_long_message(line.size()));
    }
    const ParsedLine parsed = parse_object(line);
    if (!parsed.object) {
        return request_error(std::nullopt, errc::kParseError,
                             "request is not a valid UTF-8 JSON object");
    }
    const json& obj = *parsed.object;

    // Recover the id first so every later error can be matched by the client.
    const auto id_it = obj.find("id");
    const std::optional<Id> id = id_it == obj.end() ? std::nullopt : id_from_json(*id_it);

    if (parsed.too_deep) {
        return request_error(id, errc::kInvalidRequest, too_deep_message());
    }

    switch (check_version(obj)) {
        case VersionCheck::kOk:
            break;
        case VersionCheck::kMissingOrNotInteger:
            return request_error(
                id, errc::kInvalidRequest,
                "\"v\" must be present and be the integer " + std::to_string(kProtocolVersion));
        case VersionCheck::kUnsupported:
            // Checked before the other fields: a future version may have a
            // different envelope, and "wrong version" is the useful answer.
            return request_error(id, errc::kUnsupportedVersion,
                                 unsupported_version_message(obj.at("v")));
    }

    if (id_it == obj.end()) {
        return request_error(std::nullopt, errc::kInvalidRequest, "\"id\" is missing");
    }
    if (!id) {
        return request_error(std::nullopt, errc::kInvalidRequest,
                             "\"id\" must be an int64 or a string of at most " +
                                 std::to_string(kMaxIdBytes) + " bytes");
    }

    for (const auto& item : obj.items()) {
        const std::string& key = item.key();
        if (key != "v" && key != "id" && key != "cmd" && key != "args") {
            // Not echoing the key: it could be up to a whole line long.
            return request_error(id, errc::kInvalidRequest,
                                 "unknown top-level key (allowed: v, id, cmd, args)");
        }
    }

    const auto cmd_it = obj.find("cmd");
    if (cmd_it == obj.end() || !cmd_it->is_string()) {
        return request_error(id, errc::kInvalidRequest, "\"cmd\" must be present and a string");
    }

    Request request{*id, cmd_it->get<std::string>(), json::object()};

    if (const auto args_it = obj.find("args"); args_it != obj.end()) {
        if (!args_it->is_object()) {
            return request_error(id, errc::kInvalidRequest, "\"args\" must be an object");
        }
        request.args = *args_it;
    }

    if (!is_known_command(request.cmd)) {
        std::string message = "unknown command";
        // Quote short names only, to keep the error response small.
        if (request.cmd.size() <= 64) {
            message += " " + dump(json(request.cmd));
        }
        return request_error(id, errc::kUnknownCommand, std::move(message));
    }
    return request;
}

tl::expected<Response, Error> parse_response_unchecked(std::string_view line) {
    if (line.size() > kMaxLineBytes) {
        return tl::unexpected(make_error(errc::kLineTooLong, too_long_message(line.size())));
    }
    const ParsedLine parsed = parse_object(line);
    if (!parsed.object) {
        return tl::unexpected(
            make_error(errc::kParseError, "response is not a valid UTF-8 JSON object"));
    }
    const json& obj = *parsed.object;
    const auto bad = [](std::string message) {
        return tl::unexpected(make_error(errc::kParseError, "malformed response: " + message));
    };
    if (parsed.too_deep) {
        return bad(too_deep_message());
    }

    switch (check_version(obj)) {
        case VersionCheck::kOk:
            break;
        case VersionCheck::kMissingOrNotInteger:
            return bad("\"v\" must be present and an integer");
        case VersionCheck::kUnsupported:
            return tl::unexpected(
                make_error(errc::kUnsupportedVersion, unsupported_version_message(obj.at("v"))));
    }

    Response response;
    const auto id_it = obj.find("id");
    if (id_it == obj.end()) {
        return bad("\"id\" is missing");
    }
    if (!id_it->is_null()) {
        response.id = id_from_json(*id_it);
        if (!response.id) {
            return bad("\"id\" must be null, an int64 or a short string");
        }
    }

    const auto ok_it = obj.find("ok");
    if (ok_it == obj.end() || !ok_it->is_boolean()) {
        return bad("\"ok\" must be present and a boolean");
    }
    response.ok = ok_it->get<bool>();

    // Exactly one of "result" / "error", matching "ok".
    const char* const payload_key = response.ok ? "result" : "error";
    for (const auto& item : obj.items()) {
        const std::string& key = item.key();
        if (key != "v" && key != "id" && key != "ok" && key != payload_key) {
            return bad("unexpected key (allowed: v, id, ok, " + std::string(payload_key) + ")");
        }
    }

    const auto payload_it = obj.find(payload_key);
    if (response.ok) {
        if (payload_it == obj.end() || !payload_it->is_object()) {
            return bad("\"result\" must be present and an object");
        }
        response.result = *payload_it;
        return response;
    }

    if (payload_it == obj.end() || !payload_it->is_object()) {
        return bad("\"error\" must be present and an object");
    }
    const json& err = *payload_it;
    const auto code_it = err.find("code");
    const auto message_it = err.find("message");
    if (code_it == err.end() || !code_it->is_string() ||
        code_it->get_ref<const std::string&>().empty()) {
        return bad("\"error.code\" must be a non-empty string");
    }
    if (message_it == err.end() || !message_it->is_string()) {
        return bad("\"error.message\" must be a string");
    }
    if (err.size() != 2) {
        return bad("\"error\" may only contain code and message");
    }
    response.error = Error{code_it->get<std::string>(), message_it->get<std::string>()};
    return response;
}

}  // namespace

// --- Ids ---------------------------------------------------------------------

nlohmann::json id_to_json(const Id& id) {
    return std::visit([](const auto& value) { return json(value); }, id);
}

nlohmann::json id_to_json(const std::optional<Id>& id) {
    return id ? id_to_json(*id) : json(nullptr);
}

std::optional<Id> id_from_json(const nlohmann::json& j) {
    if (j.is_number_unsigned()) {
        // nlohmann stores every non-negative integer as unsigned.
        const auto value = j.get<std::uint64_t>();
        if (value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
            return std::nullopt;
        }
        return Id{static_cast<std::int64_t>(value)};
    }
    if (j.is_number_integer()) {
        return Id{j.get<std::int64_t>()};
    }
    if (j.is_string()) {
        const auto& s = j.get_ref<const std::string&>();
        if (s.size() > kMaxIdBytes) {
            return std::nullopt;
        }
        return Id{s};
    }
    return std::nullopt;
}

std::string id_to_string(const Id& id) { return dump(id_to_json(id)); }

std::string id_to_string(const std::optional<Id>& id) {
    return id ? id_to_string(*id) : std::string("null");
}

// --- Responses ---------------------------------------------------------------

Response Response::success(std::optional<Id> id, nlohmann::json result) {
    Response r;
    r.id = std::move(id);
    r.ok = true;
    r.result = result.is_null() ? json::object() : std::move(result);
    return r;
}

Response Response::failure(std::optional<Id> id, std::string code, std::string message) {
    Response r;
    r.id = std::move(id);
    r.ok = false;
    r.error = Error{std::move(code), std::move(message)};
    return r;
}

// --- Parsing -----------------------------------------------------------------

tl::expected<Request, RequestError> parse_request(std::string_view line) {
    // parse_request_unchecked() only throws on library misuse (a bug here);
    // turn that into an answer instead of tearing down the daemon.
    try {
        return parse_request_unchecked(line);
    } catch (const std::exception& e) {
        return request_error(std::nullopt, errc::kInternalError,
                             std::string("failed to parse request: ") + e.what());
    }
}

tl::expected<Response, Error> parse_response(std::string_view line) {
    try {
        return parse_response_unchecked(line);
    } catch (const std::exception& e) {
        return tl::unexpected(
            make_error(errc::kInternalError, std::string("failed to parse response: ") + e.what()));
    }
}

// --- Serialization -------------------------------------------------------------

// The envelope is assembled by hand rather than through a json object so the
// keys come out in the documented order ("v" first, which reads better in nc
// or a log) and the caller's args/result are not copied.

std::string serialize(const Request& request) {
    std::string out = "{\"v\":" + std::to_string(kProtocolVersion);
    out += ",\"id\":" + dump(id_to_json(request.id));
    out += ",\"cmd\":" + dump(json(request.cmd));
    out += ",\"args\":" + (request.args.is_null() ? std::string("{}") : dump(request.args));
    out += "}\n";
    return out;
}

std::string serialize(const Response& response) {
    std::string out = "{\"v\":" + std::to_string(kProtocolVersion);
    out += ",\"id\":" + dump(id_to_json(response.id));
    if (response.ok) {
        out += ",\"ok\":true,\"result\":";
        out += response.result.is_null() ? std::string("{}") : dump(response.result);
    } else {
        out += ",\"ok\":false,\"error\":";
        out += dump(json{{"code", response.error.code}, {"message", response.error.message}});
    }
    out += "}\n";
    return out;
}

}  // namespace sockaccel::proto
