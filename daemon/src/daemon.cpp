// SPDX-License-Identifier: Apache-2.0
#include "daemon.h"

#include <csignal>

#include <spdlog/spdlog.h>

namespace sockaccel {

Daemon::Daemon(Config config, std::string config_path)
    : config_(std::move(config)),
      config_path_(std::move(config_path)),
      signals_(io_, SIGTERM, SIGINT, SIGHUP) {}

Daemon::~Daemon() = default;

void Daemon::start() {
    started_at_ = std::chrono::steady_clock::now();
    DataPlane::check_privilege();

    auto root = find_cgroup2_mount();
    if (!root)
        throw StartupError("no cgroup v2 filesystem is mounted (" + root.error().message() +
                           "); sockacceld attaches to a cgroup v2 hierarchy");
    auto cgroup = resolve_cgroup(config_.cgroup, *root);
    if (!cgroup) throw StartupError(cgroup.error().message());

    auto mounted = prepare_pin_dir(config_.pin_dir);
    if (!mounted) {
        const int err = mounted.error().errno_value();
        if (err == EPERM || err == EACCES)
            throw StartupError(mounted.error().message() +
                               " (sockacceld must run as root or with CAP_SYS_ADMIN to use bpffs)");
        throw StartupError(mounted.error().message());
    }
    if (*mounted) spdlog::info("mounted bpffs on /sys/fs/bpf");

    auto lock = lock_directory(config_.pin_dir);
    if (!lock) {
        if (lock.error().errno_value() == EWOULDBLOCK)
            throw StartupError("another sockacceld is already running with pin directory " +
                               config_.pin_dir);
        throw StartupError(lock.error().message());
    }
    pin_lock_ = std::move(*lock);

    dataplane_ = DataPlane::start({*cgroup, config_.pin_dir, config_.map_size});
    const auto& info = dataplane_->info();
    auto entries = dataplane_->count_entries();
    spdlog::info("attached to cgroup {} (sockops prog {}, link {}; sk_msg prog {}); sockhash {} "
                 "capacity {}{}",
                 info.cgroup_path, info.sockops_prog_id, info.sockops_link_id, info.sk_msg_prog_id,
                 info.sock_hash_map_id, info.capacity,
                 info.adopted ? fmt::format(", adopted {} socket(s) from {}",
                                            entries ? *entries : 0, info.pin_dir)
                              : std::string());
    if (info.adopted && info.capacity != config_.map_size)
        spdlog::warn("map_size {} differs from the adopted sockhash's capacity {}; keeping {} "
                     "(resizing would need a new map), ignoring",
                     config_.map_size, info.capacity, info.capacity);
}

int Daemon::run() {
    wait_for_signal();
    io_.run();
    return exit_code_;
}

void Daemon::wait_for_signal() {
    signals_.async_wait([this](const boost::system::error_code& ec, int signo) {
        if (ec) return;
        if (signo == SIGHUP) {
            spdlog::info("SIGHUP: reload is not implemented yet, ignoring");
            wait_for_signal();
            return;
        }
        spdlog::info("received {}, stopping", signo == SIGTERM ? "SIGTERM" : "SIGINT");
        shutdown();
    });
}

void Daemon::shutdown() {
    auto outcome = dataplane_->stop();
    if (!outcome) {
        // Nothing was freed: whatever could not be undone stays pinned.
        spdlog::error("stop: {}; leaving pinned state in {}", outcome.error().message(),
                      config_.pin_dir);
        exit_code_ = 1;
    } else if (outcome->left_pinned) {
        spdlog::warn("{} socket(s) are still in the sockhash and may hold unread redirected data; "
                     "they now use TCP for new sends, and the maps stay pinned in {} so no data "
                     "is freed. The next start adopts them.",
                     outcome->sockets_left, config_.pin_dir);
    } else {
        spdlog::info("detached and unpinned; sockhash was empty");
    }
    signals_.cancel();
    io_.stop();
}

}  // namespace sockaccel
