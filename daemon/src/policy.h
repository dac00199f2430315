// SPDX-License-Identifier: Apache-2.0
//
// The acceleration policy (proto/include/sockaccel/proto/policy.h has the
// format and its meaning) as the kernel takes it: bitmap words for ports,
// LPM-trie entries for CIDRs, a hash of cgroup ids, and the summary flags
// of sockaccel_config.policy (bpf/include/sockaccel/abi.h).
//
// encode_policy() is pure; resolve_cgroups() reads the filesystem (the id
// of a cgroup v2 directory is its inode number).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <tl/expected.hpp>

#include "sockaccel/abi.h"
#include "sockaccel/proto/policy.h"

namespace sockaccel {

using proto::Cidr;
using proto::Policy;
using proto::PolicyRules;
using proto::PortRange;
using proto::cidr_to_string;
using proto::parse_cidr;
using proto::parse_policy;
using proto::parse_port_range;
using proto::policy_to_json;

struct EncodedPolicy {
    std::array<std::uint64_t, 2 * SOCKACCEL_POLICY_PORT_WORDS> port_words{};
    std::vector<std::pair<sockaccel_cidr_key, std::uint32_t>> cidrs;
    std::vector<std::pair<std::uint64_t, std::uint32_t>> cgroups;  // cgroup id -> verdict
    std::uint32_t flags = 0;                                       // enum sockaccel_policy_flag
    // Not for the kernel: every cgroup path the policy names (to watch),
    // and those that do not exist yet (CgroupIds::pending).
    std::vector<std::string> cgroup_paths;
    std::vector<std::string> pending_cgroups;
};

// Cgroup ids for include and exclude paths, in order, skipping the
// pending ones: paths that do not exist yet but whose parent does (a
// service that is not running), listed in `pending`. They match nothing
// until they appear (cgroup_watch.h).
struct CgroupIds {
    std::vector<std::uint64_t> include;
    std::vector<std::uint64_t> exclude;
    std::vector<std::string> pending;
};

// Pure. `ids` must match `policy`'s cgroup lists.
EncodedPolicy encode_policy(const Policy& policy, const CgroupIds& ids);

// The id of each cgroup directory below `cgroup_root`. A missing directory
// whose parent is missing too is an error naming it.
tl::expected<CgroupIds, std::string> resolve_cgroups(const Policy& policy,
                                                     const std::string& cgroup_root);

}  // namespace sockaccel
