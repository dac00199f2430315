// SPDX-License-Identifier: Apache-2.0
//
// The lossless drain: the one mechanism behind flush-map, stop and program
// replacement (docs/architecture.md, "Draining without loss").
//
// claim() claims every socket in the sockhash: nothing redirects into it,
// and it redirects into nothing, any more. Each pass() then runs the drain backend's walk twice: SCAN
// reports the claimed sockets' state; plan_deletions() picks the sockets
// that can go without losing a byte, and a DELETE pass removes them inside
// the walk. A socket may go when
//   - it is QUIESCED: none of its own redirects is still in flight, so
//     its peer can rely on it being silent once it is gone; and
//   - nothing redirected to it is unread (EMPTY); and
//   - its peer cannot redirect to it any more: the peer is QUIESCED, or
//     is not in the sockhash and has stayed out for a grace period (never
//     inserted, closed, or already drained).
// All three are stable once true, so the plan cannot go stale between the
// passes; the DELETE pass re-checks emptiness anyway.
//
// A backend whose walk is not complete (drain_backend.h) misses some
// sockets. So a peer missing from a scan is looked up in the sockhash
// before it counts as gone, and the claim compares what its walk reached
// with the map: a socket no walk reached is a target all the same. It is
// reported as pending ("unreached"), claimed by a later pass that reaches
// it, and never deleted unvisited.
//
// Not thread-safe; runs on the daemon's io_context. Never logs.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <vector>

#include "dataplane.h"

namespace sockaccel {

// Where a drain stands, as flush-map and status report it.
struct DrainReport {
    std::uint64_t flushed = 0;        // sockets removed by this call (or session)
    std::uint64_t pending = 0;        // targets still in the sockhash, unreached included
    std::uint64_t unreached = 0;      // of those, the ones no walk has reached yet
    std::uint64_t pending_bytes = 0;  // unread redirected bytes of the reached ones
    bool pending_bytes_exact = true;  // false if the kernel cannot tell (6.1) or unreached > 0
    std::uint64_t dropped_sockets = 0;  // --force only: removed with unread data
    std::uint64_t dropped_bytes = 0;    // --force only: the bytes they held
    std::uint64_t demoted = 0;          // of `flushed`, sockets request()ed (demotions)
};

// Remembers since when a peer key has been missing from the sockhash.
using AbsenceClock = std::map<std::vector<std::uint8_t>, std::chrono::steady_clock::time_point>;

// Whether the sockhash holds a socket under a key: its cookie, nullopt if
// none. An error counts as "present" (the safe answer).
using PeerLookup = std::function<Result<std::optional<std::uint64_t>>(const sockaccel_key&)>;

// Pure decision step (unit-tested): which cookies of `scan` may be deleted
// now. A peer missing from `scan` is looked up with `lookup`: present, it
// is a socket the walk did not reach, hence not known to be silent;
// absent, it counts as gone once `grace` has passed since it was first
// found absent (`absent` keeps those times). With `force`, every claimed
// socket of `scan` is chosen.
std::vector<std::uint64_t> plan_deletions(const std::vector<sockaccel_drain_record>& scan,
                                          AbsenceClock& absent,
                                          std::chrono::steady_clock::time_point now,
                                          std::chrono::milliseconds grace, bool force,
                                          const PeerLookup& lookup);

class Drain {
public:
    // How long a missing peer must stay missing before it counts as gone.
    // Covers a peer whose insertion races the first scan of a new
    // connection (microseconds apart in practice).
    static constexpr std::chrono::milliseconds kAbsentGrace{200};

    explicit Drain(DataPlane& dataplane) : dataplane_(dataplane) {}

    // Claims every socket now in the sockhash (or, with
    // `outside_policy_only`, those the current policy would not insert):
    // from here on none of them redirects. Sockets inserted later are not
    // claimed.
    [[nodiscard]] Result<DrainReport> claim(bool outside_policy_only = false);

    // One pass: scan (claiming unreached targets the walk now reaches),
    // plan, delete. The report counts this pass's removals and what is
    // still pending afterwards.
    [[nodiscard]] Result<DrainReport> pass(bool force);

    // Demotion: the sockets of a pair the data plane demoted (the
    // demote_events ring buffer). The next pass claims them (the walk that
    // reaches them; one that cannot is like an unreached socket of a
    // claim), and they go like any claimed socket. Their removals are
    // counted in DrainReport::demoted.
    void request(const SocketEntry& socket);
    // Requested sockets the next pass has to claim.
    bool has_requests() const { return !requested_.empty(); }
    // Requested sockets claimed and not removed yet.
    std::size_t demoting() const { return demoting_.size(); }

    // Claimed sockets are still in the sockhash (known after a pass).
    bool pending() const { return last_.pending > 0; }
    const DrainReport& last() const { return last_; }

private:
    struct Unreached {
        sockaccel_key key;
        std::uint32_t claim;  // enum sockaccel_drain_list
    };
    // Adds every socket of the sockhash that `reached` lacks to unreached_.
    [[nodiscard]] Result<void> note_unreached(const std::vector<sockaccel_drain_record>& reached,
                                              std::uint32_t claim);

    DataPlane& dataplane_;
    AbsenceClock absent_;
    std::map<std::uint64_t, Unreached> unreached_;  // by cookie
    std::map<std::uint64_t, sockaccel_key> requested_;  // by cookie, until a pass claims them
    std::map<std::uint64_t, sockaccel_key> demoting_;   // by cookie, until removed or gone
    DrainReport last_;
};

}  // namespace sockaccel
