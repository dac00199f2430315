// SPDX-License-Identifier: Apache-2.0
//
// The daemon's state in the Prometheus text exposition format (version
// 0.0.4), for the optional HTTP endpoint (metrics_server.h, config key
// metrics.listen). Names follow Prometheus conventions: a `sockaccel_`
// prefix, base units, `_total` on counters.
//
// The text is written by prometheus-cpp's TextSerializer (Debian's
// prometheus-cpp-dev, core library only): we describe metric families, it
// handles the format, escaping included. Its registry and pull server are
// not used: the values live in BPF maps and are read at scrape time, and
// the HTTP side runs on the daemon's own io_context. Pure: the daemon
// gathers the numbers into a MetricsSnapshot.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "counters.h"

namespace sockaccel {

struct MetricsSnapshot {
    std::string version;  // software version
    int abi = 0;          // SOCKACCEL_ABI_VERSION
    std::string kernel;   // uname -r
    // Unreadable values are left out of the output rather than shown as 0.
    std::optional<CounterValues> counters;
    std::optional<std::uint64_t> map_entries;
    std::uint64_t map_capacity = 0;
    bool attached = false;     // sockops attached: new connections are accelerated
    bool drain_active = false; // a background drain is running
    std::uint64_t drain_pending_sockets = 0;
    std::uint64_t drain_pending_bytes = 0;
    std::uint64_t drain_flushed_total = 0;
    std::uint64_t drain_unreached_sockets = 0;  // pending sockets no walk reaches
    std::string drain_backend;                  // drain_backend.h name
    std::uint64_t policy_rules = 0;
    std::uint64_t demoted_removed = 0;  // demoted sockets taken out of the sockhash
    std::uint64_t demoting = 0;         // demoted sockets still in it
};

// The exposition text, ending in "\n".
std::string render_metrics(const MetricsSnapshot& snapshot);

}  // namespace sockaccel
