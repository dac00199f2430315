// SPDX-License-Identifier: Apache-2.0
//
// The lossless drain: the one mechanism behind flush-map, stop and program
// replacement (docs/architecture.md, "Draining without loss").
//
// claim() marks every socket in the sockhash DRAINING (it never redirects
// again). Each pass() then runs the sockaccel_drain iterator twice: SCAN
// reports the claimed sockets' state; plan_deletions() picks the sockets that can go without losing a
// byte, and a DELETE pass removes them inside the iteration. A socket may go
// when
//   - it is QUIESCED: none of its own redirects is still in flight, so
//     its peer can rely on it being silent once it is gone; and
//   - nothing redirected to it is unread (EMPTY); and
//   - its peer cannot redirect to it any more: the peer is QUIESCED, or
//     has been absent from the sockhash for a grace period (never inserted,
//     closed, or already drained).
// All three are stable once true, so the plan cannot go stale between the
// passes; the DELETE pass re-checks emptiness anyway.
//
// Not thread-safe; runs on the daemon's io_context. Never logs.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <vector>

#include "dataplane.h"

namespace sockaccel {

// Where a drain stands, as flush-map and status report it.
struct DrainReport {
    std::uint64_t flushed = 0;        // sockets removed by this call (or session)
    std::uint64_t pending = 0;        // claimed sockets still in the sockhash
    std::uint64_t pending_bytes = 0;  // their unread redirected bytes
    bool pending_bytes_exact = true;  // false if the kernel cannot tell (6.1)
    std::uint64_t dropped_sockets = 0;  // --force only: removed with unread data
    std::uint64_t dropped_bytes = 0;    // --force only: the bytes they held
};

// Remembers since when a peer key has been missing from the sockhash.
using AbsenceClock = std::map<std::vector<std::uint8_t>, std::chrono::steady_clock::time_point>;

// Pure decision step (unit-tested): which cookies of `scan` may be deleted
// now. `absent` is updated with first-seen-absent times of peer keys.
// With `force`, every claimed socket is chosen.
std::vector<std::uint64_t> plan_deletions(const std::vector<sockaccel_drain_record>& scan,
                                          AbsenceClock& absent,
                                          std::chrono::steady_clock::time_point now,
                                          std::chrono::milliseconds grace, bool force);

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
    Result<DrainReport> claim(bool outside_policy_only = false);

    // One pass: scan, plan, delete. The report counts this pass's removals
    // and what is still pending afterwards.
    Result<DrainReport> pass(bool force);

    // Claimed sockets are still in the sockhash (known after a pass).
    bool pending() const { return last_.pending > 0; }
    const DrainReport& last() const { return last_; }

private:
    DataPlane& dataplane_;
    AbsenceClock absent_;
    DrainReport last_;
};

}  // namespace sockaccel
