// SPDX-License-Identifier: Apache-2.0
#include <array>

#include "sockaccel/proto/protocol.h"

namespace sockaccel::proto {
namespace {

// The single source of truth for command names and their privilege class.
// The order is the order shown by `sockaccelctl --help`.
constexpr std::array kCommands{
    CommandInfo{cmd::kStatus, false, "Show daemon and attachment state"},
    CommandInfo{cmd::kStats, false, "Show acceleration counters"},
    CommandInfo{cmd::kConnections, false, "List accelerated connections"},
    CommandInfo{cmd::kVersion, false, "Show daemon and protocol versions"},
    CommandInfo{cmd::kPing, false, "Check that the daemon answers"},
    CommandInfo{cmd::kPolicyShow, false, "Show the acceleration policy"},
    CommandInfo{cmd::kAttach, true, "Attach the sockops program (new connections are accelerated)"},
    CommandInfo{cmd::kDetach, true, "Detach the sockops program (new connections stay on TCP)"},
    CommandInfo{cmd::kReload, true, "Reload configuration"},
    CommandInfo{cmd::kFlushMap, true, "Move accelerated connections to TCP, losing nothing"},
    CommandInfo{cmd::kPolicySet, true, "Change the acceleration policy"},
};

}  // namespace

std::span<const CommandInfo> commands() noexcept { return kCommands; }

const CommandInfo* find_command(std::string_view name) noexcept {
    // Linear scan: a dozen entries, looked up once per request.
    for (const CommandInfo& info : kCommands) {
        if (info.name == name) {
            return &info;
        }
    }
    return nullptr;
}

bool is_known_command(std::string_view name) noexcept { return find_command(name) != nullptr; }

bool is_mutating_command(std::string_view name) noexcept {
    const CommandInfo* info = find_command(name);
    return info != nullptr && info->mutating;
}

}  // namespace sockaccel::proto
