// SPDX-License-Identifier: Apache-2.0
//
// Daemon: sockacceld's run-time core. It owns the one io_context, on which
// everything runs: signals, the control socket and timers. There are no
// other threads and no polling loops.
//
// start() performs the whole start-up (cgroup and bpffs discovery, the
// pin-directory lock, loading and attaching BPF) and throws StartupError on
// any failure. run() blocks until SIGTERM/SIGINT, then stops in order
// (DataPlane::stop) and returns the process exit code.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "config.h"
#include "dataplane.h"
#include "system.h"

namespace sockaccel {

class Daemon {
public:
    // `config_path` is re-read on reload; `config` is the config in effect
    // (file plus command-line overrides).
    Daemon(Config config, std::string config_path);
    ~Daemon();

    void start();  // throws StartupError
    int run();     // returns the exit code

    const Config& config() const { return config_; }
    DataPlane& dataplane() { return *dataplane_; }

private:
    void wait_for_signal();
    void shutdown();

    Config config_;
    std::string config_path_;
    boost::asio::io_context io_;
    boost::asio::signal_set signals_;
    UniqueFd pin_lock_;
    std::unique_ptr<DataPlane> dataplane_;
    std::chrono::steady_clock::time_point started_at_;
    int exit_code_ = 0;
};

}  // namespace sockaccel
