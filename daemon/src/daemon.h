// SPDX-License-Identifier: Apache-2.0
//
// Daemon: sockacceld's run-time core. It owns the one io_context, on which
// everything runs: signals, the control socket, the drain and its timers.
// There are no other threads and no polling loops (the drain retries on a
// timer only while sockets are pending, because the kernel has no event for
// "a receive queue became empty").
//
// start() performs the whole start-up (the kernel self-test, cgroup and
// bpffs discovery, the pin-directory lock, loading and attaching BPF, the
// control socket) and throws StartupError on any failure; a failed
// self-test is not one (it is logged, and reported as unknown). run()
// blocks until SIGTERM/SIGINT, then stops in order and returns the process
// exit code:
//   stop accepting commands -> stop inserting and redirecting -> detach ->
//   drain (bounded by drain.stop_timeout_sec) -> unpin, or leave pinned
//   what could not drain.
//
// The service manager hears about all of it through sd_notify (notify.h
// lists what is sent when): READY=1 as the last step of start(), STATUS=
// after every state change, RELOADING=1/READY=1 around a reload,
// STOPPING=1 first thing in the stop sequence, and, when systemd's watchdog
// is enabled, WATCHDOG=1 from a timer on the io_context itself, so a stuck
// event loop stops the pings.
#pragma once

#include <utility>  // must precede awaitable.hpp with Boost 1.74 on g++ 12

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "cgroup_watch.h"
#include "config.h"
#include "control_server.h"
#include "metrics_server.h"
#include "dataplane.h"
#include "drain_scheduler.h"
#include "kernel_selftest.h"
#include "notify.h"
#include "reader_events.h"
#include "ring_buffer.h"
#include "system.h"

namespace sockaccel {

class Daemon : public CommandHandler {
public:
    // `config_path` is re-read on reload, with `overrides` applied again.
    Daemon(std::string config_path, bool config_path_explicit, ConfigOverrides overrides);
    ~Daemon() override;

    void start();  // throws StartupError
    int run();     // returns the exit code

    boost::asio::awaitable<proto::Response> handle(const proto::Request& request,
                                                   const PeerCred& peer) override;

private:
    using Clock = std::chrono::steady_clock;

    Config load_config() const;  // throws StartupError
    // The EAGAIN self-test: run once early in start(); its verdict is
    // logged only once start-up has succeeded, so a failed start still
    // prints one line.
    void run_kernel_selftest();
    void log_kernel_selftest() const;
    boost::asio::awaitable<void> signal_loop();
    boost::asio::awaitable<void> shutdown();

    // Notifications (notify.h). The one-line summary of the running state
    // for STATUS=; never fails (unreadable numbers show as "?").
    std::string status_summary() const;
    // The Prometheus exposition of the current state (metrics.h).
    std::string metrics_text() const;
    void notify_status();
    // RELOADING=1 before a reload (SIGHUP or the reload command), READY=1
    // with a fresh status after it, whether it succeeded or not.
    void notify_reloading();
    void notify_reloaded();
    // Starts the watchdog timer if the service manager asked for one.
    void start_watchdog();
    boost::asio::awaitable<void> watchdog_loop(std::chrono::microseconds period);
    // Wraps handle() for the control server: state-changing commands are
    // followed by a STATUS= update, and reload by RELOADING=1/READY=1.
    class NotifyingHandler;

    // Command handlers; each returns the protocol `result` or an error.
    using Reply = tl::expected<nlohmann::json, proto::Error>;
    Reply cmd_status();
    Reply cmd_stats();
    Reply cmd_connections(const nlohmann::json& args);
    boost::asio::awaitable<Reply> cmd_flush(const nlohmann::json& args);
    Reply cmd_attach(bool attach);
    Reply cmd_reload();
    Reply cmd_policy_show() const;
    boost::asio::awaitable<Reply> cmd_policy_set(const nlohmann::json& args);
    // The policy as the kernel takes it: cgroup paths resolved below the
    // cgroup v2 root. The error names the missing cgroup.
    tl::expected<EncodedPolicy, std::string> encode_for_kernel(const Policy& policy) const;
    // Writes `policy` to the kernel, restoring the running one on failure;
    // then watches its cgroups.
    [[nodiscard]] Result<void> apply_policy(const EncodedPolicy& next);
    // A cgroup the policy names appeared or went away: write the policy
    // again with the cgroups' current ids.
    void policy_cgroups_changed();
    void watch_policy_cgroups(const EncodedPolicy& applied);
    // Runs the kernel feature probe and picks the drain backends to try;
    // throws StartupError without a required mechanism.
    void probe_features();
    // Warnings for optional features the kernel lacks; after a successful start.
    void log_missing_features() const;
    nlohmann::json status_features(const DataPlaneFeatures& loaded) const;
    // The back-pressure limit in bytes that `redirect` asks for ("auto"
    // resolved against this host's TCP receive buffer limit).
    static std::uint64_t max_unread_bytes(const RedirectConfig& redirect);
    // What the kernel is to apply: off without the demote_events reader,
    // which is what takes demoted pairs out of the sockhash.
    DemoteSettings demote_settings(const RedirectConfig& redirect) const;
    nlohmann::json demotion_json() const;
    nlohmann::json drain_json() const;

    std::string config_path_;
    bool config_path_explicit_;
    ConfigOverrides overrides_;
    Config config_;

    std::string features_off_;  // SOCKACCEL_FEATURES_OFF, for the start-up log
    std::string cgroup_root_;             // the cgroup v2 mount (policy cgroup paths)
    const char* policy_source_ = "config";  // or "runtime" after policy-set
    boost::asio::io_context io_;
    boost::asio::signal_set signals_;
    SystemdNotifier notifier_;
    boost::asio::steady_timer watchdog_timer_;
    // Before control_, which holds a reference to it.
    std::unique_ptr<CommandHandler> notifying_handler_;
    UniqueFd pin_lock_;
    std::unique_ptr<DataPlane> dataplane_;
    std::unique_ptr<DrainScheduler> drain_;
    std::unique_ptr<ControlServer> control_;
    std::unique_ptr<MetricsServer> metrics_;  // only with metrics.listen
    std::unique_ptr<CgroupWatch> cgroup_watch_;
    std::unique_ptr<ReaderEventLog> reader_events_;
    std::unique_ptr<RingBufferReader> demote_events_;  // with features().demotion_program
    bool demote_events_failed_ = false;
    std::vector<std::string> pending_cgroups_;  // of the policy in force
    Clock::time_point started_at_;
    // The EAGAIN self-test's outcome, reported in status kernel_issues (an
    // error there is reported as "unknown").
    Result<KernelIssueProbe> kernel_selftest_;
    KernelFeatures features_;  // probed at start
    std::vector<DrainBackend> drain_backends_;  // to try, best first
    bool stopping_ = false;
    int exit_code_ = 0;
};

}  // namespace sockaccel
