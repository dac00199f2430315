// SPDX-License-Identifier: Apache-2.0
#include "drain.h"

#include <cstring>
#include <unordered_map>

#include "sockaccel/key.h"

namespace sockaccel {
namespace {

std::vector<std::uint8_t> key_bytes(const sockaccel_key& k) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(&k);
    return {p, p + sizeof(k)};
}

bool claimed(const sockaccel_drain_record& r) {
    return (r.status & SOCKACCEL_DRAIN_FOREIGN) || (r.sk_flags & SOCKACCEL_SK_DRAINING);
}

// A socket without our storage cannot redirect at all (the verdict needs
// the storage to redirect), so it is as good as quiesced.
bool quiesced(const sockaccel_drain_record& r) {
    return (r.status & SOCKACCEL_DRAIN_FOREIGN) || (r.sk_flags & SOCKACCEL_SK_QUIESCED);
}

}  // namespace

std::vector<std::uint64_t> plan_deletions(const std::vector<sockaccel_drain_record>& scan,
                                          AbsenceClock& absent,
                                          std::chrono::steady_clock::time_point now,
                                          std::chrono::milliseconds grace, bool force) {
    std::map<std::vector<std::uint8_t>, const sockaccel_drain_record*> by_key;
    for (const auto& r : scan) by_key[key_bytes(r.key)] = &r;

    std::vector<std::uint64_t> out;
    AbsenceClock still_absent;
    for (const auto& r : scan) {
        if (!claimed(r)) continue;
        if (force) {
            out.push_back(r.cookie);
            continue;
        }
        sockaccel_key peer;
        std::memset(&peer, 0, sizeof(peer));
        sockaccel_key_peer(&peer, &r.key);
        const auto peer_bytes = key_bytes(peer);
        bool peer_silent;
        if (auto it = by_key.find(peer_bytes); it != by_key.end()) {
            peer_silent = quiesced(*it->second);
        } else {
            auto [pos, inserted] = absent.try_emplace(peer_bytes, now);
            still_absent.insert(*pos);
            peer_silent = now - pos->second >= grace;
        }
        if (quiesced(r) && (r.status & SOCKACCEL_DRAIN_EMPTY) && peer_silent)
            out.push_back(r.cookie);
    }
    // Forget peers that came back or whose socket is gone.
    absent.swap(still_absent);
    return out;
}

Result<DrainReport> Drain::claim(bool outside_policy_only) {
    auto scan = dataplane_.drain_pass(
        outside_policy_only ? SOCKACCEL_DRAIN_CLAIM_POLICY : SOCKACCEL_DRAIN_CLAIM, {});
    if (!scan) return tl::unexpected(scan.error());
    DrainReport report;
    for (const auto& r : *scan) {
        if (!claimed(r)) continue;
        ++report.pending;
        report.pending_bytes += r.pending_bytes;
    }
    last_ = report;
    return report;
}

Result<DrainReport> Drain::pass(bool force) {
    auto scan = dataplane_.drain_pass(SOCKACCEL_DRAIN_SCAN, {});
    if (!scan) return tl::unexpected(scan.error());
    auto plan = plan_deletions(*scan, absent_, std::chrono::steady_clock::now(), kAbsentGrace,
                               force);
    DrainReport report;
    std::vector<sockaccel_drain_record> after = *scan;
    if (!plan.empty()) {
        auto del = dataplane_.drain_pass(
            force ? SOCKACCEL_DRAIN_FORCE_DELETE : SOCKACCEL_DRAIN_DELETE, plan);
        if (!del) return tl::unexpected(del.error());
        after = std::move(*del);
    }
    for (const auto& r : after) {
        if (r.status & SOCKACCEL_DRAIN_DELETED) {
            ++report.flushed;
            if (!(r.status & SOCKACCEL_DRAIN_EMPTY)) {
                ++report.dropped_sockets;
                report.dropped_bytes += r.pending_bytes;
            }
            continue;
        }
        if (!claimed(r)) continue;
        ++report.pending;
        report.pending_bytes += r.pending_bytes;
        if (!(r.status & SOCKACCEL_DRAIN_BYTES_KNOWN) && !(r.status & SOCKACCEL_DRAIN_EMPTY))
            report.pending_bytes_exact = false;
    }
    last_ = report;
    return report;
}

}  // namespace sockaccel
