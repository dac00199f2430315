// SPDX-License-Identifier: Apache-2.0
//
// Telling the service manager what the daemon is doing (sd_notify(3)).
//
// What is sent when (docs/operations.md, "Supervisors"):
//   start done    READY=1 + STATUS=   programs attached, control socket listening
//   watchdog      WATCHDOG=1 + STATUS= every half WATCHDOG_USEC, from the io_context
//   state change  STATUS=             flush-map, detach/attach, background drain start/end
//   reload        RELOADING=1 + MONOTONIC_USEC= + STATUS=, then READY=1 + STATUS=
//                 (READY=1 also when the reload failed: the old config stays)
//   SIGTERM/INT   STOPPING=1 + STATUS= at the start of the stop sequence
//
// Without $NOTIFY_SOCKET every send is a no-op (sd_notify returns 0), so the
// daemon behaves the same outside systemd. The status text is built by pure
// functions (unit-tested in tests/unit/notify_test.cpp); the daemon gathers
// the numbers.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "error.h"

namespace sockaccel {

// What the one-line STATUS= summary says. Optional numbers are shown as "?"
// when they could not be read (a kernel error must not stop the
// notifications).
struct StatusSnapshot {
    bool attached = true;  // sockops attached: new connections are accelerated
    std::optional<std::uint64_t> sockets;           // entries in the sockhash
    std::optional<std::uint64_t> redirected_bytes;  // counter redirect_bytes
    bool drain_active = false;                      // a background drain runs
    std::uint64_t drain_pending = 0;                // claimed sockets left
};

// "accelerating 100 sockets, 7.9 MiB redirected, drain idle"
// "detached, 3 sockets in map, 1.2 GiB redirected, draining 2 pending"
// Pure; one line, no newline.
std::string status_text(const StatusSnapshot& s);

// Status while the stop sequence runs: "stopping: draining 4 sockets (at
// most 10 s)", or without a drain "stopping". Pure.
std::string stopping_status_text(std::optional<std::uint64_t> sockets, std::uint32_t timeout_sec);

// Makes `text` safe as the value of one sd_notify assignment: newlines
// would start another assignment, so control characters become spaces.
// Pure.
std::string sanitize_status(std::string_view text);

// The sending side. Every method is one sd_notify() datagram; a failed send
// is logged (the first of a run of failures as a warning, the rest at
// debug, so a broken socket does not flood the log with one line per
// watchdog tick) and otherwise ignored: the daemon's work never depends on
// the supervisor hearing it.
class SystemdNotifier {
public:
    // The watchdog ping period: half of $WATCHDOG_USEC when
    // sd_watchdog_enabled() says the watchdog is meant for this process
    // ($WATCHDOG_PID unset or equal to getpid()); nullopt when it is not
    // enabled. An unparsable variable is an error.
    [[nodiscard]] static Result<std::optional<std::chrono::microseconds>> watchdog_period();

    void ready(std::string_view status);
    void reloading(std::string_view status);
    void stopping(std::string_view status);
    void status(std::string_view status);
    // WATCHDOG=1, with a fresh STATUS= when `status` is given.
    void watchdog(std::optional<std::string_view> status);

private:
    void send(const std::string& message);
    bool failing_ = false;
};

}  // namespace sockaccel
