// SPDX-License-Identifier: Apache-2.0
#include "drain.h"

#include <cstring>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "sockaccel/key.h"

namespace sockaccel {
namespace {

std::vector<std::uint8_t> key_bytes(const sockaccel_key& k) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(&k);
    return {p, p + sizeof(k)};
}

std::string_view key_view(const sockaccel_key& k) {
    return {reinterpret_cast<const char*>(&k), sizeof(k)};
}

bool claimed(const sockaccel_drain_record& r) {
    return (r.status & SOCKACCEL_DRAIN_FOREIGN) || (r.status & SOCKACCEL_DRAIN_CLAIMED);
}

// A socket without our storage cannot redirect at all (the verdict needs
// the storage to redirect), so it is as good as quiesced.
bool quiesced(const sockaccel_drain_record& r) {
    return (r.status & SOCKACCEL_DRAIN_FOREIGN) || (r.status & SOCKACCEL_DRAIN_QUIESCED);
}

}  // namespace

std::vector<std::uint64_t> plan_deletions(const std::vector<sockaccel_drain_record>& scan,
                                          AbsenceClock& absent,
                                          std::chrono::steady_clock::time_point now,
                                          std::chrono::milliseconds grace, bool force,
                                          const PeerLookup& lookup) {
    // Views of the records' own key bytes: no copy per socket, which at
    // 100,000 sockets is a good part of a pass.
    std::unordered_map<std::string_view, const sockaccel_drain_record*> by_key;
    by_key.reserve(scan.size());
    for (const auto& r : scan) by_key[key_view(r.key)] = &r;

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
        const bool candidate = quiesced(r) && (r.status & SOCKACCEL_DRAIN_EMPTY);
        bool peer_silent = false;
        if (auto it = by_key.find(key_view(peer)); it != by_key.end()) {
            peer_silent = quiesced(*it->second);
        } else if (!candidate) {
            // Missing from the walk; its clock starts now, so a socket that
            // empties later need not wait the grace period again. Whether
            // it is really gone is asked only if r could otherwise go.
            still_absent.insert(*absent.try_emplace(key_bytes(peer), now).first);
        } else if (auto found = lookup(peer); !found || found->has_value()) {
            // In the map, but not in this walk: a socket the backend cannot
            // see, or one inserted after the walk passed its place. Either
            // may still redirect into r.
            peer_silent = false;
        } else {
            auto pos = absent.try_emplace(key_bytes(peer), now).first;
            still_absent.insert(*pos);
            peer_silent = now - pos->second >= grace;
        }
        if (candidate && peer_silent) out.push_back(r.cookie);
    }
    // Forget peers that came back or whose socket is gone.
    absent.swap(still_absent);
    return out;
}

Result<void> Drain::note_unreached(const std::vector<sockaccel_drain_record>& reached,
                                   std::uint32_t claim) {
    // The count is cheap (no walk with the map iterator); the listing is
    // one bpf() call per entry, so it runs only when the count says some
    // socket was missed. A socket inserted after the walk passed is listed
    // too: claiming it as well is harmless.
    auto entries = dataplane_.count_entries();
    if (!entries) return tl::unexpected(entries.error());
    if (*entries <= reached.size()) return {};
    auto listed = dataplane_.list_entries(dataplane_.info().capacity);
    if (!listed) return tl::unexpected(listed.error());
    std::unordered_set<std::uint64_t> seen;
    for (const auto& r : reached) seen.insert(r.cookie);
    for (const auto& e : *listed) {
        if (seen.count(e.cookie)) continue;
        auto [it, fresh] = unreached_.try_emplace(e.cookie, Unreached{e.key, claim});
        if (!fresh && claim == SOCKACCEL_DRAIN_LIST_CLAIM) it->second.claim = claim;
    }
    return {};
}

Result<DrainReport> Drain::claim(bool outside_policy_only) {
    auto scan = dataplane_.drain_pass(
        outside_policy_only ? SOCKACCEL_DRAIN_CLAIM_POLICY : SOCKACCEL_DRAIN_CLAIM, {});
    if (!scan) return tl::unexpected(scan.error());
    if (!dataplane_.drain_walk().complete)
        if (auto r = note_unreached(*scan, outside_policy_only ? SOCKACCEL_DRAIN_LIST_CLAIM_POLICY
                                                               : SOCKACCEL_DRAIN_LIST_CLAIM);
            !r)
            return tl::unexpected(r.error());
    DrainReport report;
    for (const auto& r : *scan) {
        if (!claimed(r)) continue;
        ++report.pending;
        report.pending_bytes += r.pending_bytes;
    }
    report.unreached = unreached_.size();
    report.pending += report.unreached;
    report.pending_bytes_exact = report.unreached == 0;
    last_ = report;
    return report;
}

void Drain::request(const SocketEntry& socket) {
    requested_.emplace(socket.cookie, socket.key);
    demoting_.emplace(socket.cookie, socket.key);
}

Result<DrainReport> Drain::pass(bool force) {
    std::vector<std::pair<std::uint64_t, std::uint32_t>> listed;
    for (const auto& [cookie, u] : unreached_) listed.emplace_back(cookie, u.claim);
    for (const auto& [cookie, key] : requested_)
        if (!unreached_.count(cookie)) listed.emplace_back(cookie, SOCKACCEL_DRAIN_LIST_CLAIM);
    auto scan = dataplane_.drain_pass(listed.empty() ? SOCKACCEL_DRAIN_SCAN
                                                     : SOCKACCEL_DRAIN_CLAIM_LISTED,
                                      {}, listed);
    if (!scan) return tl::unexpected(scan.error());

    // Unreached targets this walk reached are now claimed (or, for a policy
    // claim, left alone because the policy allows them), and are judged like
    // any other socket from here on. Those still unreached are kept only
    // while the sockhash still holds them.
    std::unordered_set<std::uint64_t> seen;
    if (!unreached_.empty() || !requested_.empty() || !demoting_.empty())
        for (const auto& r : *scan) seen.insert(r.cookie);
    // Still in the sockhash under the same key, as this cookie?
    auto still_there = [this](std::uint64_t cookie, const sockaccel_key& key) {
        auto found = dataplane_.lookup(key);
        return !found || (found->has_value() && **found == cookie);
    };
    // Requested sockets this walk did not reach wait like the unreached
    // sockets of a claim; those no longer in the map are gone (closed).
    for (const auto& [cookie, key] : requested_)
        if (!seen.count(cookie) && still_there(cookie, key))
            unreached_.try_emplace(cookie, Unreached{key, SOCKACCEL_DRAIN_LIST_CLAIM});
    requested_.clear();
    for (auto it = demoting_.begin(); it != demoting_.end();)
        it = seen.count(it->first) || still_there(it->first, it->second) ? std::next(it)
                                                                         : demoting_.erase(it);
    if (!unreached_.empty()) {
        for (auto it = unreached_.begin(); it != unreached_.end();) {
            const bool keep = !seen.count(it->first) && still_there(it->first, it->second.key);
            it = keep ? std::next(it) : unreached_.erase(it);
        }
    }

    auto plan = plan_deletions(*scan, absent_, std::chrono::steady_clock::now(), kAbsentGrace,
                               force, [this](const sockaccel_key& k) { return dataplane_.lookup(k); });
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
            if (demoting_.erase(r.cookie)) ++report.demoted;
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
    report.unreached = unreached_.size();
    report.pending += report.unreached;
    if (report.unreached > 0) report.pending_bytes_exact = false;
    last_ = report;
    return report;
}

}  // namespace sockaccel
