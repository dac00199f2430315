// SPDX-License-Identifier: Apache-2.0
//
// Text building blocks for sockaccelctl's human-readable output: units,
// durations, endpoints and aligned tables.
//
// Everything here is pure (no I/O, no locale, no global state), never throws
// short of std::bad_alloc, and is unit-tested in tests/unit/ctl_format_test.cpp.
// Output is meant for people; scripts use `sockaccelctl --json`, so these
// formats may change between releases.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sockaccel/proto/units.h"

namespace sockaccel::ctl {

// Byte counts as the daemon's STATUS= line spells them too
// (sockaccel/proto/units.h).
using proto::human_bytes;

enum class RateUnit {
    kBytes,  // "512 B/s", "1.5 MiB/s" (human_bytes rules on the rounded value)
    kCount,  // "0.5/s", "9.9/s" below 10, then whole numbers "1,234/s"
};

// A per-second rate. Negative, NaN or infinite rates (e.g. a counter that
// went backwards because the daemon restarted) come out as "-".
std::string human_rate(double per_sec, RateUnit unit);

// Decimal with "," every three digits: 0 -> "0", 65536 -> "65,536".
std::string thousands(std::uint64_t value);

// Elapsed time, truncated to whole seconds and shown with its two most
// significant units: "12s", "3m 04s", "2h 01m", "3d 04h". Negative or NaN
// durations are shown as "0s".
std::string format_duration(double seconds);

// "127.0.0.1:8080"; an address containing ':' (IPv6) is bracketed:
// "[::1]:8080". An empty address is shown as "*".
std::string format_endpoint(std::string_view addr, std::uint32_t port);

// Number of terminal columns `text` occupies, counted as UTF-8 code points
// (continuation bytes are not counted), so "⇄" is 1 wide. Wide (CJK) and
// combining characters are not special-cased: sockaccelctl prints none.
std::size_t display_width(std::string_view text);

enum class Align { kLeft, kRight };

using TableRow = std::vector<std::string>;

// Renders rows as aligned columns separated by two spaces, one "\n"-ended
// line per row, with `header` (if non-empty) as the first line. Columns are
// as wide as their widest cell by display_width(). Rows may be ragged:
// missing cells are empty. `align` gives each column's alignment (left when
// absent). Left-aligned cells in the last column are not padded, so lines
// carry no trailing spaces. No rows and no header -> "".
std::string render_table(const std::vector<TableRow>& rows, const TableRow& header = {},
                         const std::vector<Align>& align = {});

// systemctl-style "label: value" block: labels right-aligned to the widest
// one, values starting in one column. A value containing "\n" continues on
// the following lines, indented to the value column. Each line ends in "\n".
std::string render_fields(const std::vector<std::pair<std::string, std::string>>& fields);

// "1 socket" / "2 sockets": `count` with thousands() and the noun, plus "s"
// unless count == 1.
std::string count_noun(std::uint64_t count, std::string_view noun);

// Fixed-point with `decimals` digits ("%.*f" in the C locale).
std::string fixed(double value, int decimals);

}  // namespace sockaccel::ctl
