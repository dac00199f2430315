// SPDX-License-Identifier: Apache-2.0
//
// sockacceld: parses the command line and config, sets up logging, and runs
// the Daemon. Start-up failures arrive here as one StartupError and are
// printed once, as one line, with exit code 1.
#include <cstdarg>
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>
#include <bpf/libbpf.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "config.h"
#include "daemon.h"
#include "error.h"

namespace {

// libbpf's messages go into spdlog. The verifier log that libbpf prints
// between BEGIN/END PROG LOAD LOG markers at warning level is long and only
// useful when debugging, so it goes to debug.
int libbpf_print(enum libbpf_print_level level, const char* fmt, va_list args) {
    static bool in_verifier_log = false;
    char buf[4096];
    int n = std::vsnprintf(buf, sizeof(buf), fmt, args);
    std::string line(buf, n > 0 ? std::min<std::size_t>(n, sizeof(buf) - 1) : 0);
    while (!line.empty() && line.back() == '\n') line.pop_back();
    if (line.find("-- BEGIN PROG LOAD LOG --") != std::string::npos) in_verifier_log = true;
    const bool verifier = in_verifier_log;
    if (line.find("-- END PROG LOAD LOG --") != std::string::npos) in_verifier_log = false;
    if (verifier || level == LIBBPF_DEBUG)
        spdlog::debug("libbpf: {}", line);
    else if (level == LIBBPF_INFO)
        spdlog::info("libbpf: {}", line);
    else
        spdlog::warn("libbpf: {}", line);
    return n;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace sockaccel;

    CLI::App app{"sockacceld: same-host TCP acceleration with sockops and sk_msg"};
    app.set_version_flag("--version", std::string("sockacceld ") + SOCKACCEL_VERSION_STRING);
    std::string config_path = kDefaultConfigPath;
    std::string cgroup, pin_dir, socket_path, log_level;
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
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // --help and --version exit 0; usage errors exit 2 with one line.
        return app.exit(e) == 0 ? 0 : 2;
    }

    spdlog::set_default_logger(spdlog::stderr_color_mt("sockacceld"));
    spdlog::set_pattern("%^%l%$: %v");

    auto loaded = load_config_file(config_path, /*missing_ok=*/config_opt->count() == 0);
    if (!loaded) {
        spdlog::error("{}", loaded.error());
        return 1;
    }
    Config config = std::move(*loaded);
    if (cgroup_opt->count()) config.cgroup = cgroup;
    if (pin_opt->count()) {
        if (pin_dir.empty() || pin_dir.front() != '/') {
            spdlog::error("--pin-dir must be an absolute path");
            return 2;
        }
        config.pin_dir = pin_dir;
    }
    if (socket_opt->count()) config.control.socket = socket_path;
    if (size_opt->count()) config.map_size = map_size;
    if (level_opt->count()) config.log_level = log_level;
    spdlog::set_level(spdlog::level::from_str(config.log_level));
    libbpf_set_print(libbpf_print);

    try {
        Daemon daemon(std::move(config), config_path);
        daemon.start();
        return daemon.run();
    } catch (const StartupError& e) {
        spdlog::error("{}", e.what());
        return 1;
    }
}
