// SPDX-License-Identifier: Apache-2.0
//
// Per-command argument validation and the permission decision for control
// requests, as pure functions: no I/O, no logging, no Boost.Asio, no
// coroutines. The daemon (commands.cpp) uses validate_request() before it
// runs anything, so a bad request gets invalid_argument and changes nothing;
// the fuzzer (tests/fuzz/) drives dispatch_line() over arbitrary bytes
// without needing the coroutine code, which clang 14 cannot compile with
// Boost 1.74.
//
// Argument keys a command does not take are rejected, every value is type-
// and range-checked, and every error message fits comfortably in one
// response line (a long unknown key is not echoed).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <variant>

#include "sockaccel/proto/policy.h"
#include "sockaccel/proto/protocol.h"

namespace sockaccel {

// --- Limits ------------------------------------------------------------------

// connections: sockets listed when "limit" is absent, and the largest
// "limit". One response line is at most 64 KiB; a listed socket takes
// ~230 bytes.
inline constexpr std::size_t kDefaultListLimit = 100;
inline constexpr std::size_t kMaxListLimit = proto::kMaxListLimit;
// flush-map: "wait_ms" default and maximum.
inline constexpr std::int64_t kDefaultFlushWaitMs = 2000;
inline constexpr std::int64_t kMaxFlushWaitMs = proto::kMaxFlushWaitMs;
// Unknown argument names up to this many bytes are quoted in the error.
inline constexpr std::size_t kMaxQuotedArgBytes = 64;

// --- Validated arguments -----------------------------------------------------

// ping, version, status, stats, detach, attach, reload, policy-show: no
// arguments.
struct NoArgs {
    friend bool operator==(const NoArgs&, const NoArgs&) = default;
};

// connections {"port": 1..65535, "limit": 1..kMaxListLimit}
struct ConnectionsArgs {
    std::optional<std::uint16_t> port;  // only sockets with this local or remote port
    std::size_t limit = kDefaultListLimit;
    friend bool operator==(const ConnectionsArgs&, const ConnectionsArgs&) = default;
};

// flush-map {"force": bool, "wait_ms": 0..kMaxFlushWaitMs}
struct FlushArgs {
    bool force = false;
    std::chrono::milliseconds wait{kDefaultFlushWaitMs};
    friend bool operator==(const FlushArgs&, const FlushArgs&) = default;
};

// policy-set {"policy": {...} (required, policy.h), "apply_existing": bool,
//             "wait_ms": 0..kMaxFlushWaitMs (for apply_existing's drain)}
struct PolicySetArgs {
    proto::Policy policy;
    bool apply_existing = false;
    std::chrono::milliseconds wait{kDefaultFlushWaitMs};
    friend bool operator==(const PolicySetArgs&, const PolicySetArgs&) = default;
};

using ValidatedRequest = std::variant<NoArgs, ConnectionsArgs, FlushArgs, PolicySetArgs>;

// --- Validation --------------------------------------------------------------

// Checks request.args against request.cmd. Errors:
//   invalid_argument  an argument the command does not take
//                     ("<cmd>: unknown argument \"<key>\""), or a value of the
//                     wrong type or out of range ("<cmd>: \"<key>\" must be
//                     ..."). Keys are checked first (the first unknown one in
//                     JSON object order), then values in the order listed above
//                     for the command; the first failure is reported.
//   unknown_command   a command of the protocol this daemon does not
//                     implement, or one outside the
//                     protocol (parse_request() already rejects those):
//                     "command \"<cmd>\" is not available in this version of
//                     sockacceld".
// Never throws (short of std::bad_alloc).
tl::expected<ValidatedRequest, proto::Error> validate_request(const proto::Request& request);

// The same checks for one command's "args" object, for code that only has the
// arguments at hand. `args` must be an object (parse_request guarantees it).
tl::expected<ConnectionsArgs, proto::Error> validate_connections_args(const nlohmann::json& args);
tl::expected<FlushArgs, proto::Error> validate_flush_args(const nlohmann::json& args);
tl::expected<PolicySetArgs, proto::Error> validate_policy_set_args(const nlohmann::json& args);

// The unknown_command error for a command this daemon does not implement.
proto::Error not_available_error(std::string_view cmd);

// --- Permission --------------------------------------------------------------

// True if only an admin (uid 0 or a member of control.admin_group) may run
// `cmd`: the protocol's mutating commands. False for unknown commands.
bool needs_admin(std::string_view cmd) noexcept;

// "<cmd> needs root or membership in group <admin_group>" ("(none
// configured)" for an empty group).
std::string permission_denied_message(std::string_view cmd, std::string_view admin_group);

// --- Dispatch ----------------------------------------------------------------

// The parse and permission steps of serving one request line: parse_request(),
// then, for a command that needs_admin() and a peer that is not an admin,
// permission_denied. On failure the error response to send (with the
// request's id when it could be read).
tl::expected<proto::Request, proto::Response> admit_request(std::string_view line,
                                                            bool peer_is_admin,
                                                            std::string_view admin_group);

using RequestRunner =
    std::function<proto::Response(const proto::Request&, const ValidatedRequest&)>;

// Serves one request line without I/O: admit_request(), validate_request(),
// then run(). An exception from run() becomes internal_error with the id of
// the request. Always returns a response; serialize() of it is a valid
// response line for parse_response() as long as run()'s results fit in one.
proto::Response dispatch_line(std::string_view line, bool peer_is_admin,
                              std::string_view admin_group, const RequestRunner& run);

}  // namespace sockaccel
