// SPDX-License-Identifier: Apache-2.0
//
// How sockaccel spells quantities to people, in the daemon's STATUS= line
// and in sockaccelctl's tables alike, so the two never disagree. Pure.
#pragma once

#include <cstdint>
#include <string>

namespace sockaccel::proto {

// Byte count with binary prefixes: below 1024 an exact integer ("0 B",
// "1023 B"); from there one decimal, rounded half up, in the largest unit that
// keeps the number below 1024 after rounding ("1.0 KiB", "1.5 MiB",
// "1.0 MiB" for 1048575 rather than "1024.0 KiB"), up to EiB.
std::string human_bytes(std::uint64_t bytes);

}  // namespace sockaccel::proto
