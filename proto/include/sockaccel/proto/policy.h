// SPDX-License-Identifier: Apache-2.0
//
// The acceleration policy as it travels: in the config file ("policy"), in
// policy-set requests and policy-show results (docs/protocol.md). Shared by
// sockacceld and sockaccelctl, so both validate it the same way and the CLI
// can refuse a bad argument before it reaches the daemon.
//
//   "policy": {
//     "scope": "opt-in",
//     "include": {"ports": ["80", "8000-8100"], "cidrs": ["10.0.0.0/8"],
//                 "cgroups": ["/system.slice/nginx.service"]},
//     "exclude": {"ports": ["22"], "cidrs": ["10.1.0.0/16"], "cgroups": []}
//   }
//
// Meaning (enforced in the kernel by sockops at insert time; see
// daemon/src/policy.h and bpf/include/sockaccel/abi.h): a socket is
// accelerated when nothing excludes it and, for each kind with include
// entries, it matches one of them.
//
// The scope says where acceleration may apply at all. "opt-in", the
// default: only sockets of the cgroups in include.cgroups (a service, a
// container) and below, so with none listed nothing is accelerated. Not
// every program reads a socket in a way that sees redirected data (splice,
// urgent data; docs/compatibility.md), and no detection protects the first
// connection of every program, so acceleration is something a service is
// given, not something the host gets by default. "host": every local
// connection the rules allow, an explicit choice whose risks status shows. Ports and CIDRs look at both ends of the
// connection (local or remote port; local or remote address, the longest
// matching prefix deciding), so both sockets of a connection agree. Cgroups
// look at the socket's own cgroup and its ancestors, the nearest entry
// deciding.
//
// Pure: no I/O. Errors are one line naming the offending entry, e.g.
// `policy.exclude.cidrs[2]: "10.0.0.0/33": the prefix length must be 0-32`.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <tl/expected.hpp>

namespace sockaccel::proto {

struct PortRange {
    std::uint16_t first = 0;
    std::uint16_t last = 0;
    bool operator==(const PortRange&) const = default;
};

struct Cidr {
    // 16 bytes, IPv4 stored IPv4-mapped (::ffff:a.b.c.d).
    std::array<std::uint8_t, 16> addr{};
    std::uint8_t prefix_len = 0;  // in the 128-bit form (IPv4: 96 + len)
    bool operator==(const Cidr&) const = default;
};

struct PolicyRules {
    std::vector<PortRange> ports;
    std::vector<Cidr> cidrs;
    std::vector<std::string> cgroups;  // paths below the cgroup v2 root
    bool empty() const { return ports.empty() && cidrs.empty() && cgroups.empty(); }
    bool operator==(const PolicyRules&) const = default;
};

enum class Scope { opt_in, host };

struct Policy {
    PolicyRules include;
    PolicyRules exclude;
    // nullopt: not given. A policy-set keeps the scope in force; a config
    // file means opt_in (the daemon fills it in, see effective_scope()).
    std::optional<Scope> scope;
    Scope effective_scope() const { return scope.value_or(Scope::opt_in); }
    bool empty() const { return include.empty() && exclude.empty(); }
    bool operator==(const Policy&) const = default;
};

std::string_view to_string(Scope scope);  // "opt-in", "host"
tl::expected<Scope, std::string> parse_scope(std::string_view text);

// The cgroup of a systemd system service, for --include-unit: "nginx" or
// "nginx.service" is "/system.slice/nginx.service" (a unit with its own
// Slice= is given by its cgroup path instead). Refuses names systemd would
// not accept as a unit name.
tl::expected<std::string, std::string> unit_cgroup(std::string_view unit);

// Limits, so one policy always fits the daemon's BPF maps.
inline constexpr std::size_t kMaxPolicyPortRanges = 1024;
inline constexpr std::size_t kMaxPolicyCidrs = 1024;    // include and exclude together
inline constexpr std::size_t kMaxPolicyCgroups = 1024;  // include and exclude together
// The canonical JSON of a policy: status carries it twice (config and
// policy) and every response must fit one protocol line (kMaxLineBytes).
inline constexpr std::size_t kMaxPolicyJsonBytes = 16384;

// Parses a "policy" object. `where` prefixes error messages ("policy").
// "scope" is optional (see Policy::scope).
// Strict: unknown keys, wrong types, malformed entries, a CIDR with host
// bits set, and a CIDR or cgroup listed both as include and exclude are
// errors.
tl::expected<Policy, std::string> parse_policy(const nlohmann::json& j, std::string_view where);
// The canonical JSON form (the effective scope, ports "80" / "80-90", CIDRs
// "10.0.0.0/8" and "fd00::/8", cgroups without trailing slashes);
// parse_policy() of it gives the same Policy back, scope set.
nlohmann::json policy_to_json(const Policy& policy);

// "80", "8000-8100"; 1-65535, first <= last.
tl::expected<PortRange, std::string> parse_port_range(std::string_view text);
// "10.0.0.0/8", "fd00::/8", "127.0.0.1" (a host: /32 or /128).
tl::expected<Cidr, std::string> parse_cidr(std::string_view text);
std::string cidr_to_string(const Cidr& cidr);

}  // namespace sockaccel::proto
