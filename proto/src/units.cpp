// SPDX-License-Identifier: Apache-2.0
#include "sockaccel/proto/units.h"

#include <array>
#include <string_view>

namespace sockaccel::proto {

std::string human_bytes(std::uint64_t bytes) {
    static constexpr std::array<std::string_view, 7> kUnits = {"B",   "KiB", "MiB", "GiB",
                                                               "TiB", "PiB", "EiB"};
    if (bytes < 1024) return std::to_string(bytes) + " B";
    // Exact integer arithmetic: a double would misround near unit boundaries
    // for large values, and 2^64 * 10 does not fit in 64 bits.
    using U128 = unsigned __int128;
    std::size_t unit = 1;
    U128 divisor = 1024;
    while (unit + 1 < kUnits.size() && U128(bytes) >= divisor * 1024) {
        divisor *= 1024;
        ++unit;
    }
    U128 tenths = (U128(bytes) * 10 + divisor / 2) / divisor;
    // Rounding may reach 1024.0 of this unit (e.g. 1048575 B); say 1.0 of
    // the next one instead.
    if (tenths >= 10240 && unit + 1 < kUnits.size()) {
        divisor *= 1024;
        ++unit;
        tenths = (U128(bytes) * 10 + divisor / 2) / divisor;
    }
    const auto whole = static_cast<std::uint64_t>(tenths / 10);
    const auto frac = static_cast<unsigned>(tenths % 10);
    return std::to_string(whole) + "." + std::to_string(frac) + " " + std::string(kUnits[unit]);
}

}  // namespace sockaccel::proto
