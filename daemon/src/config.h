// SPDX-License-Identifier: Apache-2.0
//
// sockacceld's configuration: the JSON file (default
// /etc/sockaccel/sockacceld.json, see docs/operations.md and
// sockacceld.json(5)) with command-line overrides on top.
//
// Every key is optional; a missing file means all defaults. Parsing is
// strict: an unknown key, a wrong type or an out-of-range value is an error
// naming the key, and nothing of the bad file is applied. Pure code, no I/O
// apart from reading the file; safe to call from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>
#include <tl/expected.hpp>

#include "drain_backend.h"
#include "policy.h"

namespace sockaccel {

inline constexpr const char* kDefaultConfigPath = "/etc/sockaccel/sockacceld.json";
inline constexpr const char* kDefaultPinDir = "/sys/fs/bpf/sockaccel";
inline constexpr const char* kDefaultControlSocket = "/run/sockaccel/sockacceld.sock";
inline constexpr std::uint32_t kDefaultMapSize = 65536;
inline constexpr std::uint32_t kMaxMapSize = 1u << 24;
inline constexpr std::uint64_t kMinMaxUnreadBytes = 64u << 10;
inline constexpr std::uint64_t kMaxMaxUnreadBytes = 1ull << 34;
inline constexpr std::uint32_t kDefaultDemoteSmallWriteBytes = 8192;
inline constexpr std::uint32_t kMaxDemoteSmallWriteBytes = 1u << 20;
inline constexpr std::uint32_t kDefaultDemoteHeldSends = 4096;
inline constexpr std::uint32_t kMaxDemoteHeldSends = 1u << 30;

struct ControlConfig {
    std::string socket = kDefaultControlSocket;  // Unix socket path
    std::string group = "sockaccel";             // group owning the socket (0660)
    std::string admin_group = "sockaccel";       // members may run mutating commands
    std::uint32_t max_clients = 64;              // concurrent connections; excess refused
    std::uint32_t idle_timeout_sec = 30;         // close a silent connection after this
};

struct DrainConfig {
    // SIGTERM waits at most this long for sockets to drain; what is left
    // stays pinned so no unread data is freed.
    std::uint32_t stop_timeout_sec = 10;
    // The iterator the drain walks with (drain_backend.h); nullopt =
    // "auto", the first one the kernel loads. Forcing one the kernel
    // refuses fails the start. Restart to change.
    std::optional<DrainBackend> backend;
};

struct RedirectConfig {
    // Back-pressure: a sender whose peer has more unread redirected bytes
    // than this sends through TCP (which blocks it) until the peer catches
    // up. 0 = no limit. nullopt = "auto": the host's largest TCP receive
    // buffer (net.ipv4.tcp_rmem max), so a reader that stops holds about
    // what TCP would have let it hold. Applied live by reload.
    std::optional<std::uint64_t> max_unread_bytes;
    // Demotion: a connection that runs slower redirected than on TCP goes
    // back to TCP for good, losslessly (docs/architecture.md,
    // "Demotion"). Applied live by reload.
    bool demote = true;
    // A redirected write smaller than this into a peer that has not read
    // the previous one is a small write; a stream of them is demoted.
    // 0 = never for this reason.
    std::uint32_t demote_small_write_bytes = kDefaultDemoteSmallWriteBytes;
    // A sender held on TCP (back-pressure, or its peer's reader) for this
    // many sends in a row is demoted. 0 = never for this reason.
    std::uint32_t demote_held_sends = kDefaultDemoteHeldSends;
};

struct MetricsConfig {
    // "" = no endpoint; otherwise "HOST:PORT" or "[IPv6]:PORT" for the
    // Prometheus endpoint (metrics_server.h). Restart to change.
    std::string listen;
};

struct Config {
    std::string cgroup;  // cgroup v2 directory to attach to; "" = the cgroup v2 root
    std::string pin_dir = kDefaultPinDir;
    std::uint32_t map_size = kDefaultMapSize;
    std::string log_level = "info";  // trace, debug, info, warn, error, critical, off
    ControlConfig control;
    DrainConfig drain;
    RedirectConfig redirect;
    Policy policy;  // which connections may be accelerated (policy.h); live on reload
    MetricsConfig metrics;
};

// Command-line settings that override the file, kept so a reload re-reads
// the file and applies them again.
struct ConfigOverrides {
    std::optional<std::string> cgroup;
    std::optional<std::string> pin_dir;
    std::optional<std::string> socket;
    std::optional<std::uint32_t> map_size;
    std::optional<std::string> log_level;
    // --drain-backend: a backend name; "auto" is std::nullopt inside.
    std::optional<std::optional<DrainBackend>> drain_backend;
    // --scope: replaces policy.scope of the file (also at reload).
    std::optional<proto::Scope> scope;
};

void apply_overrides(Config& config, const ConfigOverrides& overrides);

// Parses a config document. `source` names it in error messages (a path).
// Errors are one line: "<source>: key \"control.group\": must be a string".
tl::expected<Config, std::string> parse_config(std::string_view text, std::string_view source);

// Reads and parses a file. A missing file gives the defaults when
// `missing_ok` (the default path); an explicitly named file must exist.
tl::expected<Config, std::string> load_config_file(const std::string& path, bool missing_ok);

// The config in effect, as reported by `status`.
nlohmann::json config_to_json(const Config& config);

// True if `level` is one of the names log_level accepts.
bool is_valid_log_level(std::string_view level);

}  // namespace sockaccel
