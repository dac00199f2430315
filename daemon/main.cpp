// SPDX-License-Identifier: Apache-2.0
//
// sockacceld: parses the command line and config, sets up logging, and runs
// the Daemon. Start-up failures arrive here as one StartupError and are
// printed once, as one line, with exit code 1. Logging goes to the console
// or, under systemd, to the journal (logging.h; --log-target).
#include <csignal>
#include <string>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "config.h"
#include "daemon.h"
#include "dataplane.h"
#include "error.h"
#include "logging.h"
#include "sockaccel/proto/protocol.h"


int main(int argc, char** argv) {
    using namespace sockaccel;

    CLI::App app{"sockacceld: same-host TCP acceleration with sockops and sk_msg"};
    app.set_version_flag("--version", "sockacceld " + std::string(proto::kSoftwareVersion));
    std::string config_path = kDefaultConfigPath;
    std::string cgroup, pin_dir, socket_path, log_level, log_target = "auto", drain_backend, scope;
    std::uint32_t map_size = 0;
    auto* config_opt = app.add_option("--config", config_path, "Config file (JSON)");
    auto* cgroup_opt =
        app.add_option("--cgroup", cgroup, "cgroup v2 directory to accelerate (default: the root)");
    auto* pin_opt = app.add_option("--pin-dir", pin_dir, "Pin directory on bpffs");
    auto* socket_opt = app.add_option("--socket", socket_path, "Control socket path");
    auto* size_opt = app.add_option("--map-size", map_size, "Sockhash capacity (sockets)")
                         ->check(CLI::Range(1u, kMaxMapSize));
    auto* level_opt = app.add_option("--log-level", log_level,
                                     "trace, debug, info, warn, error, critical or off")
                          ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error",
                                                 "critical", "off"}));
    auto* backend_opt =
        app.add_option("--drain-backend", drain_backend,
                       "BPF iterator the lossless drain walks with: auto (the first the kernel "
                       "loads), sockhash, task_file or tcp")
            ->check(CLI::IsMember({"auto", "sockhash", "task_file", "tcp"}));
    auto* scope_opt =
        app.add_option("--scope", scope,
                       "Where acceleration applies: opt-in (only the policy's include cgroups; "
                       "the default) or host (every local connection the policy allows)")
            ->check(CLI::IsMember({"opt-in", "host"}));
    app.add_option("--log-target", log_target,
                   "auto (the journal when stderr is connected to it, as systemd sets up; "
                   "otherwise the console), console (stderr) or journal")
        ->check(CLI::IsMember({"auto", "console", "journal"}));
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // --help and --version exit 0; usage errors exit 2 with one line.
        return app.exit(e) == 0 ? 0 : 2;
    }

    // A closed stdout/stderr (a pipe whose reader went away) must not kill
    // the daemon mid-stop: writes then fail with EPIPE instead, and the
    // ordered shutdown still runs.
    std::signal(SIGPIPE, SIG_IGN);
    // Before anything logs; libbpf's messages follow too, as they are
    // routed into spdlog's default logger (route_libbpf_logs below).
    install_logger(parse_log_target(log_target).value_or(LogTarget::automatic));

    ConfigOverrides overrides;
    if (cgroup_opt->count()) overrides.cgroup = cgroup;
    if (pin_opt->count()) {
        if (pin_dir.empty() || pin_dir.front() != '/') {
            spdlog::error("--pin-dir must be an absolute path");
            return 2;
        }
        overrides.pin_dir = pin_dir;
    }
    if (socket_opt->count()) {
        if (socket_path.empty() || socket_path.front() != '/' || socket_path.size() > 107) {
            spdlog::error("--socket must be an absolute path of at most 107 bytes");
            return 2;
        }
        overrides.socket = socket_path;
    }
    if (size_opt->count()) overrides.map_size = map_size;
    if (level_opt->count()) overrides.log_level = log_level;
    if (backend_opt->count()) overrides.drain_backend = parse_drain_backend(drain_backend);
    if (scope_opt->count()) overrides.scope = proto::parse_scope(scope).value();
    DataPlane::route_libbpf_logs();

    try {
        Daemon daemon(config_path, config_opt->count() > 0, overrides);
        daemon.start();
        return daemon.run();
    } catch (const StartupError& e) {
        spdlog::error("{}", e.what());
        return 1;
    }
}
