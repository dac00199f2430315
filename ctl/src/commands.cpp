// SPDX-License-Identifier: Apache-2.0
#include "commands.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <iostream>

#include "client.h"
#include "format.h"
#include "render.h"
#include "sockaccel/proto/protocol.h"

namespace sockaccel::ctl {
namespace {

using nlohmann::json;

std::string dump_compact(const json& value) {
    return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

void print_stdout(std::string_view text) {
    std::cout << text;
    std::cout.flush();
}

int report_transport_error(const TransportError& err) {
    std::cerr << "sockaccelctl: " << err.message << '\n';
    return kExitUnreachable;
}

int report_daemon_error(const GlobalOptions& options, const proto::Error& err) {
    if (options.json) {
        print_stdout(dump_compact(json{{"code", err.code}, {"message", err.message}}) + "\n");
    } else {
        std::cerr << "sockaccelctl: " << render_error(err.code, err.message) << '\n';
    }
    return kExitDaemonError;
}

// Written by the signal handler, read by poll(): the self-pipe trick lets
// watch mode sleep and wait for the daemon while still reacting to Ctrl-C at
// once, without races between checking a flag and blocking.
int g_signal_pipe_write = -1;

extern "C" void on_stop_signal(int) {
    int saved = errno;
    if (g_signal_pipe_write >= 0) {
        char byte = 1;
        // Nothing useful to do if the pipe is full: a byte is already there.
        [[maybe_unused]] ssize_t n = ::write(g_signal_pipe_write, &byte, 1);
    }
    errno = saved;
}

// Returns the read end of a pipe that becomes readable on SIGINT/SIGTERM,
// or -1 if it cannot be set up (then the signals keep their default action,
// which also ends the program).
int install_stop_signals() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
    g_signal_pipe_write = fds[1];
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: blocking calls should return EINTR
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
    return fds[0];
}

// Sleeps until `until`; false if a stop signal arrived first (or was already
// pending). poll() with no descriptors is a plain sleep.
bool sleep_until(std::chrono::steady_clock::time_point until, int stop_fd) {
    for (;;) {
        auto left = until - std::chrono::steady_clock::now();
        long long ms =
            std::max<long long>(0, std::chrono::ceil<std::chrono::milliseconds>(left).count());
        pollfd p{stop_fd, POLLIN, 0};
        int n =
            ::poll(&p, stop_fd >= 0 ? 1 : 0, static_cast<int>(std::min<long long>(ms, 1 << 30)));
        if (n > 0) return false;
        if (n == 0 && (ms == 0 || std::chrono::steady_clock::now() >= until)) return true;
        // EINTR (the handler's byte is then seen next round) or an early wake-up.
    }
}

}  // namespace

int run_command(const GlobalOptions& options, std::string_view cmd, json args,
                const Renderer& render) {
    Client client(options.socket_path);
    auto response = client.call(cmd, std::move(args), options.timeout);
    if (!response) return report_transport_error(response.error());
    if (!response->ok) return report_daemon_error(options, response->error);
    if (options.json) {
        print_stdout(dump_compact(response->result) + "\n");
    } else {
        print_stdout(render(response->result));
    }
    return kExitOk;
}

int run_stats_watch(const GlobalOptions& options, std::chrono::milliseconds interval) {
    const int stop_fd = install_stop_signals();
    const bool tty = ::isatty(STDOUT_FILENO) == 1;

    Client client(options.socket_path);
    client.set_cancel_fd(stop_fd);

    json previous;
    bool have_previous = false;
    bool first_block = true;
    auto next_sample = std::chrono::steady_clock::now();

    for (;;) {
        auto response = client.call(proto::cmd::kStats, json::object(), options.timeout);
        if (!response && response.error().kind == TransportErrorKind::kClosed) {
            // The daemon may close a kept-alive connection (idle timeout) just
            // as the next request goes out. stats is read-only, so asking
            // once more on a fresh connection is safe; a daemon that is
            // really gone fails again.
            response = client.call(proto::cmd::kStats, json::object(), options.timeout);
        }
        if (!response) {
            if (response.error().kind == TransportErrorKind::kCancelled) return kExitOk;
            return report_transport_error(response.error());
        }
        if (!response->ok) return report_daemon_error(options, response->error);

        json& result = response->result;
        json rates = have_previous ? compute_rates(previous, result) : json::object();

        if (options.json) {
            json line = result;
            line["rates"] = rates;
            print_stdout(dump_compact(line) + "\n");
        } else {
            std::string block;
            if (tty) {
                // Home + clear: redraw in place like watch(1).
                block = "\x1b[H\x1b[2J";
                block += "sockacceld counters, every " + format_timeout(interval) +
                         " (Ctrl-C to stop)\n\n";
            } else if (!first_block) {
                block = "\n";
            }
            block += render_stats(result, &rates);
            print_stdout(block);
        }
        first_block = false;
        previous = std::move(result);
        have_previous = true;

        // A fixed schedule keeps the interval steady; after a slow sample,
        // carry on from now instead of firing a burst to catch up.
        next_sample += interval;
        auto now = std::chrono::steady_clock::now();
        if (next_sample < now) next_sample = now;
        if (!sleep_until(next_sample, stop_fd)) return kExitOk;
    }
}

}  // namespace sockaccel::ctl
