// SPDX-License-Identifier: Apache-2.0
//
// Running sockaccelctl's subcommands: send the request, print the result,
// and turn the outcome into the documented exit status. main.cpp only parses
// the command line and calls in here.
#pragma once

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace sockaccel::ctl {

// Exit statuses (documented in `sockaccelctl --help` and the man page).
inline constexpr int kExitOk = 0;
inline constexpr int kExitDaemonError = 1;  // the daemon answered ok:false
inline constexpr int kExitUsage = 2;        // bad command line
inline constexpr int kExitUnreachable = 3;  // no usable response from the daemon

inline constexpr const char* kDefaultSocketPath = "/run/sockaccel/sockacceld.sock";
inline constexpr const char* kSocketEnvVar = "SOCKACCEL_SOCKET";

struct GlobalOptions {
    std::string socket_path = kDefaultSocketPath;
    bool json = false;  // print the result object as compact JSON
    std::chrono::milliseconds timeout{10000};
};

// Turns a successful result into text for people.
using Renderer = std::function<std::string(const nlohmann::json& result)>;

// Sends `cmd` with `args`, prints the result (rendered, or as JSON with
// --json) to stdout or the error to stderr (stdout as JSON with --json), and
// returns the exit status.
int run_command(const GlobalOptions& options, std::string_view cmd, nlohmann::json args,
                const Renderer& render);

// `stats --watch`: samples stats every `interval` and prints them with rates
// until SIGINT/SIGTERM (kExitOk) or the daemon goes away (kExitUnreachable)
// or answers with an error (kExitDaemonError).
int run_stats_watch(const GlobalOptions& options, std::chrono::milliseconds interval);

}  // namespace sockaccel::ctl
