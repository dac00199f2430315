// SPDX-License-Identifier: Apache-2.0
//
// DrainScheduler: when the drain (drain.h) runs. A command (flush-map,
// policy-set --apply-existing) or the stop sequence runs a drain for a
// bounded time; whatever is still pending afterwards is finished by one
// background coroutine, on a timer, because the kernel has no event for "a
// receive queue became empty". It also keeps the totals `status` reports.
//
// Errors are values: run() returns the first kernel error as a Result and
// leaves the data plane as it was at that moment (claimed sockets stay
// claimed, which only ever means "takes TCP"), so every caller, the stop
// sequence included, logs it once and goes on. The background drain logs
// its own errors (as warnings, retrying), having no caller to report to.
//
// Threading: everything on the daemon's io_context; not thread-safe.
#pragma once

#include <utility>  // must precede awaitable.hpp with Boost 1.74 on g++ 12

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>

#include "drain.h"

namespace sockaccel {

class DrainScheduler {
public:
    enum class Claim {
        none,            // drain what earlier claims left (adopted state)
        all,             // every socket now in the sockhash
        outside_policy,  // the sockets the current policy would not insert
    };

    // `on_change` runs when the background drain starts or ends (the
    // daemon's STATUS= update).
    DrainScheduler(boost::asio::io_context& io, DataPlane& dataplane,
                   std::function<void()> on_change);

    // Claims and drains until nothing is pending or `wait` has passed; with
    // `force`, then drops what the walk reached and is still left. Unless
    // stopped, what is still pending is finished in the background.
    [[nodiscard]] boost::asio::awaitable<Result<DrainReport>> run(Claim claim, bool force,
                                                                  std::chrono::milliseconds wait);

    // Starts the background drain if it is not running and not stopped.
    void ensure_background();

    // The data plane demoted the socket keyed `key` (a demote_events
    // record): it and its peer leave the sockhash through the background
    // drain. Ignored once stopped (the stop sequence drains everything).
    void demote(const sockaccel_key& key);

    // No background passes from now on (the stop sequence); run() still
    // works.
    void stop() { stopped_ = true; }

    bool background_active() const { return background_running_; }
    // The last pass's view: what is pending now.
    const DrainReport& last() const { return drain_.last(); }
    std::uint64_t flushed_total() const { return flushed_total_; }
    // Demotion: pairs requested, sockets removed so far, and sockets
    // requested and still in the sockhash.
    std::uint64_t demoted_pairs() const { return demoted_pairs_; }
    std::uint64_t demoted_removed() const { return demoted_removed_; }
    std::size_t demoting() const { return drain_.demoting(); }

private:
    boost::asio::awaitable<void> background();
    // The pause before the next background pass. Short while sockets are
    // progressing; when every pending socket is one no walk reaches (the
    // backend cannot see it), each fruitless pass doubles it up to a few
    // seconds, so a host with many such sockets does not spend its time
    // looking for them. While demoted sockets wait, it starts short and
    // doubles up to the usual step: a demoted pair pays for the sockhash
    // until it is out, and its reader usually empties it at once.
    std::chrono::milliseconds background_step(const DrainReport& pass);

    void absorb_background(const DrainReport& pass);

    boost::asio::io_context& io_;
    DataPlane& dataplane_;
    Drain drain_;
    std::function<void()> on_change_;
    std::uint64_t flushed_total_ = 0;
    std::uint64_t demoted_pairs_ = 0;
    std::uint64_t demoted_removed_ = 0;
    std::chrono::milliseconds unreached_step_{0};
    std::chrono::milliseconds demote_step_{0};
    bool background_running_ = false;
    bool stopped_ = false;
};

}  // namespace sockaccel
