// SPDX-License-Identifier: Apache-2.0
//
// The data-plane counters (enum sockaccel_counter in bpf/include/sockaccel/abi.h):
// their stable names, as used by the protocol and metrics, and summing the
// per-CPU values the kernel hands back. Pure code.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>

#include <nlohmann/json.hpp>

#include "sockaccel/abi.h"

namespace sockaccel {

using CounterValues = std::array<std::uint64_t, SOCKACCEL_CNT__MAX>;

// Name of each counter, indexed by enum sockaccel_counter.
std::string_view counter_name(std::size_t index);

// Sums one counter over CPUs. `per_cpu` holds one value per possible CPU,
// each in a slot of `stride` bytes (8 for __u64; the kernel rounds per-CPU
// values up to 8 bytes). Wraps modulo 2^64 like the kernel counters.
std::uint64_t sum_per_cpu(std::span<const std::uint8_t> per_cpu, std::size_t ncpus,
                          std::size_t stride = 8);

// {"sockets_added": n, ...} plus "add_failed" (the sum of its reasons).
nlohmann::json counters_to_json(const CounterValues& values);

}  // namespace sockaccel
