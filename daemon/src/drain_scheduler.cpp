// SPDX-License-Identifier: Apache-2.0
#include "drain_scheduler.h"

#include <malloc.h>

#include <algorithm>
#include <cstring>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "sockaccel/key.h"

namespace sockaccel {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using Clock = std::chrono::steady_clock;

namespace {
// Between drain passes while a command waits, and in the background. Short
// while someone waits for an answer; relaxed when nobody does.
constexpr std::chrono::milliseconds kDrainStep{20};
constexpr std::chrono::milliseconds kBackgroundStep{250};
constexpr std::chrono::milliseconds kUnreachedStepMax{8000};

awaitable<void> sleep_for(asio::steady_timer& timer, Clock::duration d) {
    timer.expires_after(d);
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(use_awaitable, ec));
}
}  // namespace

DrainScheduler::DrainScheduler(asio::io_context& io, DataPlane& dataplane,
                               std::function<void()> on_change)
    : io_(io), dataplane_(dataplane), drain_(dataplane), on_change_(std::move(on_change)) {}

awaitable<Result<DrainReport>> DrainScheduler::run(Claim claim, bool force,
                                                   std::chrono::milliseconds wait) {
    DrainReport total;
    const auto deadline = Clock::now() + wait;
    asio::steady_timer timer(io_);
    // Whatever was flushed before an error still counts.
    auto fail = [&](const SysError& e) {
        flushed_total_ += total.flushed;
        demoted_removed_ += total.demoted;
        if (total.pending > 0 || drain_.pending()) ensure_background();
        return tl::unexpected(e);
    };
    // Each pass's cost, for --log-level debug: a flush of many sockets is
    // several walks, and which one is slow tells what to look at.
    auto since = [t = Clock::now()]() mutable {
        const auto now = Clock::now();
        const auto ms = std::chrono::duration<double, std::milli>(now - t).count();
        t = now;
        return ms;
    };
    if (claim != Claim::none) {
        auto r = drain_.claim(claim == Claim::outside_policy);
        if (!r) co_return fail(r.error());
        spdlog::debug("drain: claim, {} pending, {:.1f} ms", r->pending, since());
    }
    // Removals add up over the passes; what is pending is the last pass's.
    auto absorb = [&total](const DrainReport& r) {
        total.flushed += r.flushed;
        total.pending = r.pending;
        total.unreached = r.unreached;
        total.pending_bytes = r.pending_bytes;
        total.pending_bytes_exact = r.pending_bytes_exact;
        total.dropped_sockets += r.dropped_sockets;
        total.dropped_bytes += r.dropped_bytes;
        total.demoted += r.demoted;
    };
    for (;;) {
        auto r = drain_.pass(false);
        if (!r) co_return fail(r.error());
        absorb(*r);
        spdlog::debug("drain: pass removed {}, {} pending, {:.1f} ms", r->flushed, r->pending,
                      since());
        // Only unreached sockets left: no pass within `wait` can finish
        // them (the walk cannot see them), so waiting is pointless.
        if (r->pending == 0 || r->pending == r->unreached || Clock::now() >= deadline) break;
        // QUIESCED needs a pass after the claim, so a flush always takes at
        // least two passes; this timer is what separates them.
        co_await sleep_for(timer, std::min<Clock::duration>(kDrainStep, deadline - Clock::now()));
    }
    if (force && total.pending > total.unreached) {
        auto r = drain_.pass(true);
        if (!r) co_return fail(r.error());
        absorb(*r);
        if (total.dropped_sockets > 0)
            spdlog::warn("flush-map --force dropped {} socket(s) holding {} unread byte(s)",
                         total.dropped_sockets, total.dropped_bytes);
    }
    flushed_total_ += total.flushed;
    demoted_removed_ += total.demoted;
    if (total.pending > 0 || drain_.has_requests()) ensure_background();
    // A walk of many sockets leaves megabytes of freed records in malloc's
    // arenas (about 20 MiB after 100,000 sockets), which glibc keeps: give
    // them back, as a long-running daemon should.
    ::malloc_trim(0);
    co_return total;
}

void DrainScheduler::demote(const sockaccel_key& key) {
    if (stopped_) return;
    sockaccel_key peer;
    std::memset(&peer, 0, sizeof(peer));
    sockaccel_key_peer(&peer, &key);
    bool any = false;
    for (const auto& k : {key, peer}) {
        auto cookie = dataplane_.lookup(k);
        if (!cookie) {
            spdlog::warn("demotion: {}; the socket stays on TCP in the sockhash",
                         cookie.error().message());
            continue;
        }
        // Not in the map: closed already, or its peer was never inserted.
        if (!cookie->has_value()) continue;
        drain_.request({k, **cookie});
        any = true;
    }
    if (!any) return;
    ++demoted_pairs_;
    demote_step_ = std::chrono::milliseconds(0);
    ensure_background();
}

void DrainScheduler::absorb_background(const DrainReport& pass) {
    flushed_total_ += pass.flushed;
    demoted_removed_ += pass.demoted;
    if (pass.flushed > pass.demoted)
        spdlog::info("drain: removed {} socket(s); {} pending", pass.flushed - pass.demoted,
                     pass.pending);
    if (pass.demoted)
        spdlog::debug("demotion: {} socket(s) back on plain TCP; {} demoting", pass.demoted,
                      drain_.demoting());
}

void DrainScheduler::ensure_background() {
    if (background_running_ || stopped_) return;
    background_running_ = true;
    unreached_step_ = std::chrono::milliseconds(0);
    asio::co_spawn(io_, background(), asio::detached);
    if (on_change_) on_change_();
}

std::chrono::milliseconds DrainScheduler::background_step(const DrainReport& pass) {
    if (pass.flushed > 0 || pass.pending != pass.unreached) {
        unreached_step_ = std::chrono::milliseconds(0);
        if (drain_.demoting() == 0) return kBackgroundStep;
        demote_step_ = std::min(kBackgroundStep, std::max(kDrainStep, demote_step_ * 2));
        return demote_step_;
    }
    unreached_step_ = std::min(kUnreachedStepMax, std::max(kBackgroundStep, unreached_step_ * 2));
    return unreached_step_;
}

awaitable<void> DrainScheduler::background() {
    asio::steady_timer timer(io_);
    auto step = kBackgroundStep;
    while (!stopped_) {
        auto r = drain_.pass(false);
        if (!r) {
            spdlog::warn("background drain: {}; retrying", r.error().message());
        } else {
            absorb_background(*r);
            // Demotions requested during the pass are claimed by the next.
            if (r->pending == 0 && !drain_.has_requests()) break;
            step = background_step(*r);
        }
        co_await sleep_for(timer, step);
    }
    background_running_ = false;
    if (on_change_) on_change_();
}

}  // namespace sockaccel
