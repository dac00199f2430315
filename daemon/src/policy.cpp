// SPDX-License-Identifier: Apache-2.0
#include "policy.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

namespace sockaccel {

static_assert(proto::kMaxPolicyCidrs <= SOCKACCEL_POLICY_MAX_CIDRS);
static_assert(proto::kMaxPolicyCgroups <= SOCKACCEL_POLICY_MAX_CGROUPS);

EncodedPolicy encode_policy(const Policy& p, const CgroupIds& ids) {
    EncodedPolicy e;
    auto set_ports = [&](const std::vector<PortRange>& ranges, std::uint32_t set) {
        for (const auto& r : ranges)
            for (std::uint32_t port = r.first; port <= r.last; ++port)
                e.port_words[SOCKACCEL_POLICY_PORT_WORD(set, port)] |= 1ULL << (port % 64);
    };
    set_ports(p.include.ports, SOCKACCEL_POLICY_PORTS_INCLUDE);
    set_ports(p.exclude.ports, SOCKACCEL_POLICY_PORTS_EXCLUDE);
    auto add_cidrs = [&](const std::vector<Cidr>& cidrs, std::uint32_t verdict) {
        for (const auto& c : cidrs) {
            sockaccel_cidr_key k{};
            k.prefixlen = c.prefix_len;
            std::memcpy(k.addr, c.addr.data(), 16);
            e.cidrs.emplace_back(k, verdict);
        }
    };
    add_cidrs(p.include.cidrs, SOCKACCEL_POLICY_MATCH_INCLUDE);
    add_cidrs(p.exclude.cidrs, SOCKACCEL_POLICY_MATCH_EXCLUDE);
    for (auto id : ids.include) e.cgroups.emplace_back(id, SOCKACCEL_POLICY_MATCH_INCLUDE);
    for (auto id : ids.exclude) e.cgroups.emplace_back(id, SOCKACCEL_POLICY_MATCH_EXCLUDE);
    e.cgroup_paths = p.include.cgroups;
    e.cgroup_paths.insert(e.cgroup_paths.end(), p.exclude.cgroups.begin(), p.exclude.cgroups.end());
    e.pending_cgroups = ids.pending;

    if (!p.include.ports.empty()) e.flags |= SOCKACCEL_POLICY_INCLUDE_PORTS;
    if (!p.exclude.ports.empty()) e.flags |= SOCKACCEL_POLICY_EXCLUDE_PORTS;
    if (!p.include.cidrs.empty()) e.flags |= SOCKACCEL_POLICY_INCLUDE_CIDRS;
    if (!p.exclude.cidrs.empty()) e.flags |= SOCKACCEL_POLICY_EXCLUDE_CIDRS;
    // Opt-in scope: a socket must match an include cgroup, so with none
    // listed nothing is inserted (the flag with an empty map).
    if (!p.include.cgroups.empty() || p.effective_scope() == proto::Scope::opt_in)
        e.flags |= SOCKACCEL_POLICY_INCLUDE_CGROUPS | SOCKACCEL_POLICY_CGROUPS;
    if (!e.cgroups.empty()) e.flags |= SOCKACCEL_POLICY_CGROUPS;
    return e;
}

tl::expected<CgroupIds, std::string> resolve_cgroups(const Policy& p, const std::string& root) {
    CgroupIds ids;
    auto resolve = [&](const std::vector<std::string>& paths, std::vector<std::uint64_t>& out)
        -> tl::expected<void, std::string> {
        for (const auto& path : paths) {
            const std::string full = path == "/" ? root : root + path;
            struct stat st {};
            if (::stat(full.c_str(), &st) != 0) {
                const int err = errno;
                const std::string parent = full.substr(0, full.rfind('/'));
                struct stat pst {};
                if (err == ENOENT && ::stat(parent.c_str(), &pst) == 0 && S_ISDIR(pst.st_mode)) {
                    ids.pending.push_back(path);
                    continue;
                }
                return tl::unexpected("cgroup \"" + path + "\"" + ": " + std::strerror(err) +
                                      " (looked for " + full + ")");
            }
            if (!S_ISDIR(st.st_mode))
                return tl::unexpected("cgroup \"" + path + "\"" + ": not a cgroup directory");
            out.push_back(st.st_ino);  // a cgroup v2 directory's inode is its id
        }
        return {};
    };
    if (auto r = resolve(p.include.cgroups, ids.include); !r) return tl::unexpected(r.error());
    if (auto r = resolve(p.exclude.cgroups, ids.exclude); !r) return tl::unexpected(r.error());
    return ids;
}

}  // namespace sockaccel
