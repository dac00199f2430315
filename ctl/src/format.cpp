// SPDX-License-Identifier: Apache-2.0
#include "format.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>

namespace sockaccel::ctl {
namespace {

// Largest double below 2^64, so casts to uint64 stay defined.
constexpr double kMaxU64AsDouble = 18446744073709549568.0;

std::uint64_t clamp_to_u64(double value) {
    if (!(value > 0)) return 0;  // also NaN
    if (value >= kMaxU64AsDouble) return std::numeric_limits<std::uint64_t>::max();
    return static_cast<std::uint64_t>(value);
}

std::string pad(std::string_view text, std::size_t width, Align align) {
    std::size_t w = display_width(text);
    std::string fill(w < width ? width - w : 0, ' ');
    return align == Align::kRight ? fill + std::string(text) : std::string(text) + fill;
}

void rtrim_spaces(std::string& line) {
    while (!line.empty() && line.back() == ' ') line.pop_back();
}

}  // namespace

std::string human_rate(double per_sec, RateUnit unit) {
    if (!std::isfinite(per_sec) || per_sec < 0) return "-";
    switch (unit) {
        case RateUnit::kBytes:
            return human_bytes(clamp_to_u64(std::round(per_sec))) + "/s";
        case RateUnit::kCount:
            // Slow rates need the decimal ("0.5/s" is not "0/s"); fast ones
            // read better as whole numbers.
            if (per_sec < 9.95) return fixed(per_sec, 1) + "/s";
            return thousands(clamp_to_u64(std::round(per_sec))) + "/s";
    }
    return "-";
}

std::string thousands(std::uint64_t value) {
    std::string digits = std::to_string(value);
    std::string out;
    out.reserve(digits.size() + digits.size() / 3);
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
        out.push_back(digits[i]);
    }
    return out;
}

std::string format_duration(double seconds) {
    std::uint64_t s = clamp_to_u64(std::floor(seconds));
    char buf[64];
    if (s < 60) {
        std::snprintf(buf, sizeof buf, "%llus", static_cast<unsigned long long>(s));
    } else if (s < 3600) {
        std::snprintf(buf, sizeof buf, "%llum %02llus", static_cast<unsigned long long>(s / 60),
                      static_cast<unsigned long long>(s % 60));
    } else if (s < 86400) {
        std::snprintf(buf, sizeof buf, "%lluh %02llum", static_cast<unsigned long long>(s / 3600),
                      static_cast<unsigned long long>(s % 3600 / 60));
    } else {
        std::snprintf(buf, sizeof buf, "%llud %02lluh", static_cast<unsigned long long>(s / 86400),
                      static_cast<unsigned long long>(s % 86400 / 3600));
    }
    return buf;
}

std::string format_endpoint(std::string_view addr, std::uint32_t port) {
    std::string host = addr.empty() ? std::string("*") : std::string(addr);
    // Only bare IPv6 literals need brackets to keep the port separable.
    if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";
    return host + ":" + std::to_string(port);
}

std::size_t display_width(std::string_view text) {
    return static_cast<std::size_t>(std::count_if(text.begin(), text.end(), [](char c) {
        return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    }));
}

std::string render_table(const std::vector<TableRow>& rows, const TableRow& header,
                         const std::vector<Align>& align) {
    std::size_t ncols = header.size();
    for (const TableRow& row : rows) ncols = std::max(ncols, row.size());
    if (ncols == 0) return "";

    std::vector<std::size_t> widths(ncols, 0);
    auto measure = [&](const TableRow& row) {
        for (std::size_t c = 0; c < row.size(); ++c) {
            widths[c] = std::max(widths[c], display_width(row[c]));
        }
    };
    measure(header);
    for (const TableRow& row : rows) measure(row);

    auto line = [&](const TableRow& row) {
        std::string out;
        for (std::size_t c = 0; c < ncols; ++c) {
            if (c > 0) out += "  ";
            Align a = c < align.size() ? align[c] : Align::kLeft;
            out +=
                pad(c < row.size() ? std::string_view(row[c]) : std::string_view(), widths[c], a);
        }
        // Left-aligned last cells and missing cells only add padding.
        rtrim_spaces(out);
        out += '\n';
        return out;
    };

    std::string out;
    if (!header.empty()) out += line(header);
    for (const TableRow& row : rows) out += line(row);
    return out;
}

std::string render_fields(const std::vector<std::pair<std::string, std::string>>& fields) {
    std::size_t width = 0;
    for (const auto& [label, value] : fields) width = std::max(width, display_width(label));
    const std::string indent(width + 2, ' ');

    std::string out;
    for (const auto& [label, value] : fields) {
        std::string first = pad(label, width, Align::kRight) + ":";
        std::size_t start = 0;
        bool first_line = true;
        do {
            std::size_t nl = value.find('\n', start);
            std::string_view piece = std::string_view(value).substr(
                start, nl == std::string::npos ? std::string::npos : nl - start);
            std::string text =
                first_line ? first + " " + std::string(piece) : indent + std::string(piece);
            rtrim_spaces(text);
            out += text;
            out += '\n';
            first_line = false;
            start = nl == std::string::npos ? value.size() + 1 : nl + 1;
        } while (start <= value.size());
    }
    return out;
}

std::string count_noun(std::uint64_t count, std::string_view noun) {
    std::string out = thousands(count) + " " + std::string(noun);
    if (count != 1) out += 's';
    return out;
}

std::string fixed(double value, int decimals) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
    return buf;
}

}  // namespace sockaccel::ctl
