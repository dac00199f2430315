// SPDX-License-Identifier: Apache-2.0
//
// Human-readable rendering of each command's `result` object (the schemas are
// documented at each function). Pure: JSON in, text out.
//
// The result comes from another process, so it is treated as untrusted input:
// every function accepts any JSON value without throwing (short of
// std::bad_alloc). Unknown keys are ignored, missing or mistyped keys leave
// their part of the output out (or show "?"), so a newer or older daemon still
// gets as much output as can be made sense of.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace sockaccel::ctl {

// --- Safe accessors: nullopt when `obj` is not an object, `key` is missing,
// or the value has another type. -------------------------------------------

// Unsigned integers; a non-negative integral float (e.g. 3.0) is accepted too.
std::optional<std::uint64_t> get_u64(const nlohmann::json& obj, std::string_view key);
// Any JSON number.
std::optional<double> get_double(const nlohmann::json& obj, std::string_view key);
std::optional<bool> get_bool(const nlohmann::json& obj, std::string_view key);
std::optional<std::string> get_string(const nlohmann::json& obj, std::string_view key);
// The member if it is an object, else an empty object (so lookups chain).
const nlohmann::json& get_object(const nlohmann::json& obj, std::string_view key);

// --- Renderers. Each returns complete "\n"-terminated lines. ---------------

// ping: {} -> "pong".
std::string render_ping(const nlohmann::json& result);

// version: {"version":"0.1.0","protocol":1,"abi":1} ->
// "sockacceld 0.1.0 (protocol 1, ABI 1); sockaccelctl <ctl_version>".
std::string render_version(const nlohmann::json& result, std::string_view ctl_version);

// status: {"version","pid","uptime_sec","kernel","attach":{...},"mode":{...},
// "map":{...},"counters":{...},"drain":{...},"features":{...},
// "kernel_issues":[...],"config":{...}} -> a header line and a
// systemctl-like block (see the implementation for the rows).
std::string render_status(const nlohmann::json& result);

// stats: {"counters":{...},"map":{"entries","capacity"},"timestamp_ms"} ->
// a COUNTER/VALUE table, byte counters in human units. With `rates` (the
// object made by compute_rates()), counters that have a rate get a third
// RATE column.
std::string render_stats(const nlohmann::json& result, const nlohmann::json* rates = nullptr);

// Rates between two stats results, from their counters and timestamp_ms:
// {"interval_ms":n,"redirect_msgs_per_sec":x,"redirect_bytes_per_sec":x,
//  "pass_msgs_per_sec":x,"pass_bytes_per_sec":x,"sockets_added_per_sec":x}.
// A counter that is missing or went backwards (the counters were reset) has
// no entry; without a usable interval (missing timestamps, or not
// increasing) the result is {}.
nlohmann::json compute_rates(const nlohmann::json& previous, const nlohmann::json& current);

// connections: {"total","shown","truncated","connections":[{...}]} -> an
// aligned LOCAL ⇄/→ REMOTE COOKIE PEER-COOKIE STATE table and a footer
// "k of n sockets shown[, truncated]".
std::string render_connections(const nlohmann::json& result);

// flush-map: {"flushed","pending","pending_bytes","pending_bytes_exact",
// "dropped_sockets","dropped_bytes","background","elapsed_ms"}. `force`
// says whether --force was given (adds the "dropped ..." line).
std::string render_flush(const nlohmann::json& result, bool force);

// attach / detach: {"attached":bool,"changed":bool}. `attach` says which
// command was run.
std::string render_attach(const nlohmann::json& result, bool attach);

// reload: {"reloaded":true,"applied":[...],"restart_required":[...]}.
std::string render_reload(const nlohmann::json& result);

// policy-show: {"policy":{...},"source":"config"|"runtime",...}; one line
// per kind that has rules.
std::string render_policy(const nlohmann::json& result);
// policy-set: {"policy":{...},"changed":bool,"apply_existing":{...}?}.
std::string render_policy_set(const nlohmann::json& result);

// "<message> (<code>)" for an error response, as printed after
// "sockaccelctl: ".
std::string render_error(std::string_view code, std::string_view message);

}  // namespace sockaccel::ctl
