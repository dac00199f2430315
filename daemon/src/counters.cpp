// SPDX-License-Identifier: Apache-2.0
#include "counters.h"

#include <cstring>

#include "sockaccel/proto/protocol.h"

namespace sockaccel {
namespace {

// The protocol owns the names; the ABI owns the indexes. Same length, same
// order, or this does not build.
constexpr const auto& kNames = proto::kCounterNames;
static_assert(kNames.size() == SOCKACCEL_CNT__MAX);

}  // namespace

std::string_view counter_name(std::size_t index) {
    return index < kNames.size() ? kNames[index] : std::string_view("unknown");
}

std::uint64_t sum_per_cpu(std::span<const std::uint8_t> per_cpu, std::size_t ncpus,
                          std::size_t stride) {
    std::uint64_t total = 0;
    for (std::size_t cpu = 0; cpu < ncpus && (cpu + 1) * stride <= per_cpu.size(); ++cpu) {
        std::uint64_t v;
        std::memcpy(&v, per_cpu.data() + cpu * stride, sizeof(v));
        total += v;
    }
    return total;
}

nlohmann::json counters_to_json(const CounterValues& values) {
    nlohmann::json out = nlohmann::json::object();
    for (std::size_t i = 0; i < values.size(); ++i) out[std::string(kNames[i])] = values[i];
    out[std::string(proto::kCounterAddFailed)] =
        values[SOCKACCEL_CNT_ADD_FAILED_FULL] + values[SOCKACCEL_CNT_ADD_FAILED_OTHER];
    return out;
}

}  // namespace sockaccel
