// SPDX-License-Identifier: Apache-2.0
#include "notify.h"

#include <time.h>

#include <algorithm>
#include <system_error>

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include "sockaccel/proto/units.h"

namespace sockaccel {

namespace {

std::string count(std::optional<std::uint64_t> n, const char* one, const char* many) {
    if (!n) return std::string("? ") + many;
    return std::to_string(*n) + " " + (*n == 1 ? one : many);
}

// CLOCK_MONOTONIC in microseconds, what systemd compares MONOTONIC_USEC=
// with (it is the clock of its reload request).
std::uint64_t monotonic_usec() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000u +
           static_cast<std::uint64_t>(ts.tv_nsec) / 1000u;
}

}  // namespace

std::string status_text(const StatusSnapshot& s) {
    std::string out = s.attached ? "accelerating " + count(s.sockets, "socket", "sockets")
                                 : "detached, " + count(s.sockets, "socket", "sockets") + " in map";
    out += ", ";
    out += s.redirected_bytes ? proto::human_bytes(*s.redirected_bytes) : std::string("?");
    out += " redirected, ";
    out += s.drain_active ? "drain: " + std::to_string(s.drain_pending) + " pending"
                          : std::string("drain idle");
    return out;
}

std::string stopping_status_text(std::optional<std::uint64_t> sockets, std::uint32_t timeout_sec) {
    return "stopping: draining " + count(sockets, "socket", "sockets") + " (at most " +
           std::to_string(timeout_sec) + " s)";
}

std::string sanitize_status(std::string_view text) {
    std::string out(text);
    for (char& c : out)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
    return out;
}

Result<std::optional<std::chrono::microseconds>> SystemdNotifier::watchdog_period() {
    std::uint64_t usec = 0;
    // unset_environment = 0: a later sd_notify() still needs $NOTIFY_SOCKET,
    // and nothing this daemon starts would use the watchdog variables.
    const int r = ::sd_watchdog_enabled(0, &usec);
    if (r < 0) return sys_error(r, "WATCHDOG_USEC/WATCHDOG_PID");
    if (r == 0 || usec == 0) return std::optional<std::chrono::microseconds>();
    // Half the interval, as sd_watchdog_enabled(3) recommends, so one late
    // tick does not already trip it. At least 1 ms: a nonsensically small
    // interval must not turn the timer into a busy loop.
    const auto half = std::chrono::microseconds(std::max<std::uint64_t>(usec / 2, 1000));
    return std::optional<std::chrono::microseconds>(half);
}

void SystemdNotifier::ready(std::string_view status) {
    send("READY=1\nSTATUS=" + sanitize_status(status));
}

void SystemdNotifier::reloading(std::string_view status) {
    // MONOTONIC_USEC lets a systemd with Type=notify-reload (253 and later)
    // match this to its reload request; older ones ignore it.
    send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonic_usec()) +
         "\nSTATUS=" + sanitize_status(status));
}

void SystemdNotifier::stopping(std::string_view status) {
    send("STOPPING=1\nSTATUS=" + sanitize_status(status));
}

void SystemdNotifier::status(std::string_view status) {
    send("STATUS=" + sanitize_status(status));
}

void SystemdNotifier::watchdog(std::optional<std::string_view> status) {
    send(status ? "WATCHDOG=1\nSTATUS=" + sanitize_status(*status) : std::string("WATCHDOG=1"));
}

void SystemdNotifier::send(const std::string& message) {
    const int r = ::sd_notify(0, message.c_str());
    if (r >= 0) {  // 0: no $NOTIFY_SOCKET, nothing to tell
        failing_ = false;
        return;
    }
    const auto what = std::generic_category().message(-r);
    if (!failing_)
        spdlog::warn("sd_notify: {}; the service manager misses status updates, ignoring", what);
    else
        spdlog::debug("sd_notify: {}", what);
    failing_ = true;
}

}  // namespace sockaccel
