// SPDX-License-Identifier: Apache-2.0
#include "request_args.h"

#include <exception>
#include <initializer_list>
#include <utility>

namespace sockaccel {

using nlohmann::json;

namespace {

proto::Error invalid(std::string message) {
    return {std::string(proto::errc::kInvalidArgument), std::move(message)};
}

// Rejects argument keys a command does not take.
std::optional<proto::Error> check_arg_keys(const json& args,
                                           std::initializer_list<std::string_view> known,
                                           std::string_view cmd) {
    if (!args.is_object()) return invalid(std::string(cmd) + ": arguments must be an object");
    for (const auto& item : args.items()) {
        const std::string& k = item.key();
        bool ok = false;
        for (std::string_view name : known) ok = ok || k == name;
        if (ok) continue;
        // A key can be almost a whole line long; echoing it could push the
        // error response past kMaxLineBytes.
        if (k.size() <= kMaxQuotedArgBytes)
            return invalid(std::string(cmd) + ": unknown argument \"" + k + "\"");
        return invalid(std::string(cmd) + ": unknown argument (a name of " +
                       std::to_string(k.size()) + " bytes)");
    }
    return std::nullopt;
}

// The integer args[key] if it is present and within [min, max]; nullopt if
// it is absent. Sets `error` (if not already set) when it is present but
// not such an integer.
std::optional<std::int64_t> int_arg(const json& args, const char* key, std::int64_t min,
                                    std::int64_t max, std::optional<proto::Error>& error,
                                    std::string_view cmd) {
    auto it = args.find(key);
    if (it == args.end()) return std::nullopt;
    bool in_range = false;
    std::int64_t value = 0;
    // Compare in the type nlohmann chose, so a huge unsigned value cannot
    // wrap into range through a signed conversion.
    if (it->is_number_unsigned()) {
        const auto u = it->get<std::uint64_t>();
        in_range = max >= 0 && u <= static_cast<std::uint64_t>(max) &&
                   (min <= 0 || u >= static_cast<std::uint64_t>(min));
        value = static_cast<std::int64_t>(u);  // only used when in range
    } else if (it->is_number_integer()) {
        value = it->get<std::int64_t>();
        in_range = value >= min && value <= max;
    }
    if (!in_range) {
        if (!error)
            error = invalid(std::string(cmd) + ": \"" + key + "\" must be an integer between " +
                            std::to_string(min) + " and " + std::to_string(max));
        return std::nullopt;
    }
    return value;
}

bool takes_no_args(std::string_view cmd) {
    return cmd == proto::cmd::kPing || cmd == proto::cmd::kVersion ||
           cmd == proto::cmd::kStatus || cmd == proto::cmd::kStats ||
           cmd == proto::cmd::kDetach || cmd == proto::cmd::kAttach ||
           cmd == proto::cmd::kReload || cmd == proto::cmd::kPolicyShow;
}

}  // namespace

tl::expected<ConnectionsArgs, proto::Error> validate_connections_args(const json& args) {
    constexpr std::string_view cmd = proto::cmd::kConnections;
    if (auto e = check_arg_keys(args, {"port", "limit"}, cmd)) return tl::unexpected(*e);
    std::optional<proto::Error> error;
    auto port = int_arg(args, "port", 1, 65535, error, cmd);
    auto limit = int_arg(args, "limit", 1, static_cast<std::int64_t>(kMaxListLimit), error, cmd);
    if (error) return tl::unexpected(*error);
    ConnectionsArgs out;
    if (port) out.port = static_cast<std::uint16_t>(*port);
    if (limit) out.limit = static_cast<std::size_t>(*limit);
    return out;
}

tl::expected<FlushArgs, proto::Error> validate_flush_args(const json& args) {
    constexpr std::string_view cmd = proto::cmd::kFlushMap;
    if (auto e = check_arg_keys(args, {"force", "wait_ms"}, cmd)) return tl::unexpected(*e);
    std::optional<proto::Error> error;
    auto wait_ms = int_arg(args, "wait_ms", 0, kMaxFlushWaitMs, error, cmd);
    if (error) return tl::unexpected(*error);
    FlushArgs out;
    if (auto it = args.find("force"); it != args.end()) {
        if (!it->is_boolean())
            return tl::unexpected(invalid(std::string(cmd) + ": \"force\" must be a boolean"));
        out.force = it->get<bool>();
    }
    if (wait_ms) out.wait = std::chrono::milliseconds(*wait_ms);
    return out;
}

tl::expected<PolicySetArgs, proto::Error> validate_policy_set_args(const json& args) {
    constexpr std::string_view cmd = proto::cmd::kPolicySet;
    if (auto e = check_arg_keys(args, {"policy", "apply_existing", "wait_ms"}, cmd))
        return tl::unexpected(*e);
    auto it = args.find("policy");
    if (it == args.end())
        return tl::unexpected(invalid(std::string(cmd) + ": \"policy\" is required"));
    auto policy = proto::parse_policy(*it, "policy");
    if (!policy) return tl::unexpected(invalid(std::string(cmd) + ": " + policy.error()));
    std::optional<proto::Error> error;
    auto wait_ms = int_arg(args, "wait_ms", 0, kMaxFlushWaitMs, error, cmd);
    if (error) return tl::unexpected(*error);
    PolicySetArgs out;
    out.policy = std::move(*policy);
    if (auto a = args.find("apply_existing"); a != args.end()) {
        if (!a->is_boolean())
            return tl::unexpected(
                invalid(std::string(cmd) + ": \"apply_existing\" must be a boolean"));
        out.apply_existing = a->get<bool>();
    }
    if (wait_ms) out.wait = std::chrono::milliseconds(*wait_ms);
    return out;
}

proto::Error not_available_error(std::string_view cmd) {
    std::string message = "command ";
    // parse_request() only passes protocol commands, all short; quote long
    // names anyway only up to a bound, for callers that skip it.
    if (cmd.size() <= kMaxQuotedArgBytes)
        message += "\"" + std::string(cmd) + "\"";
    else
        message += "(a name of " + std::to_string(cmd.size()) + " bytes)";
    message += " is not available in this version of sockacceld";
    return {std::string(proto::errc::kUnknownCommand), std::move(message)};
}

tl::expected<ValidatedRequest, proto::Error> validate_request(const proto::Request& request) {
    const std::string& cmd = request.cmd;
    if (takes_no_args(cmd)) {
        if (auto e = check_arg_keys(request.args, {}, cmd)) return tl::unexpected(*e);
        return ValidatedRequest{NoArgs{}};
    }
    if (cmd == proto::cmd::kConnections) {
        auto a = validate_connections_args(request.args);
        if (!a) return tl::unexpected(a.error());
        return ValidatedRequest{*a};
    }
    if (cmd == proto::cmd::kFlushMap) {
        auto a = validate_flush_args(request.args);
        if (!a) return tl::unexpected(a.error());
        return ValidatedRequest{*a};
    }
    if (cmd == proto::cmd::kPolicySet) {
        auto a = validate_policy_set_args(request.args);
        if (!a) return tl::unexpected(a.error());
        return ValidatedRequest{std::move(*a)};
    }
    return tl::unexpected(not_available_error(cmd));
}

bool needs_admin(std::string_view cmd) noexcept { return proto::is_mutating_command(cmd); }

std::string permission_denied_message(std::string_view cmd, std::string_view admin_group) {
    return std::string(cmd) + " needs root or membership in group " +
           (admin_group.empty() ? std::string("(none configured)") : std::string(admin_group));
}

tl::expected<proto::Request, proto::Response> admit_request(std::string_view line,
                                                            bool peer_is_admin,
                                                            std::string_view admin_group) {
    auto request = proto::parse_request(line);
    if (!request) return tl::unexpected(proto::to_response(request.error()));
    if (needs_admin(request->cmd) && !peer_is_admin)
        return tl::unexpected(proto::Response::failure(
            request->id, std::string(proto::errc::kPermissionDenied),
            permission_denied_message(request->cmd, admin_group)));
    return std::move(*request);
}

proto::Response dispatch_line(std::string_view line, bool peer_is_admin,
                              std::string_view admin_group, const RequestRunner& run) {
    auto request = admit_request(line, peer_is_admin, admin_group);
    if (!request) return std::move(request.error());
    auto validated = validate_request(*request);
    if (!validated)
        return proto::Response::failure(request->id, std::move(validated.error().code),
                                        std::move(validated.error().message));
    try {
        return run(*request, *validated);
    } catch (const std::exception& e) {
        return proto::Response::failure(request->id, std::string(proto::errc::kInternalError),
                                        e.what());
    }
}

}  // namespace sockaccel
