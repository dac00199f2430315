// SPDX-License-Identifier: Apache-2.0
//
// The daemon's state in the Prometheus text exposition format (version
// 0.0.4), for the optional HTTP endpoint (metrics_server.h, config key
// metrics.listen). Names follow Prometheus conventions: a `sockaccel_`
// prefix, base units, `_total` on counters.
//
// Debian 12 packages no C++ Prometheus client library, so this small writer
// is ours; it covers exactly what the format needs here: HELP and TYPE
// lines, counters and gauges, and escaped label values. Pure: the daemon
// gathers the numbers into a MetricsSnapshot.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

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
    std::uint64_t policy_rules = 0;
};

// The exposition text, ending in "\n".
std::string render_metrics(const MetricsSnapshot& snapshot);

// A label value escaped for the exposition format: backslash, double quote
// and newline become \\, \" and \n.
std::string escape_label_value(std::string_view value);

}  // namespace sockaccel
