// SPDX-License-Identifier: Apache-2.0
#include "daemon.h"

#include "metrics.h"

#include <csignal>
#include <cstdlib>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

namespace sockaccel {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;

std::uint64_t Daemon::max_unread_bytes(const RedirectConfig& redirect) {
    if (redirect.max_unread_bytes) return *redirect.max_unread_bytes;
    // Debian's default tcp_rmem max, should /proc not say.
    constexpr std::uint64_t kFallback = 6u << 20;
    return tcp_rmem_max().value_or(kFallback);
}

DemoteSettings Daemon::demote_settings(const RedirectConfig& redirect) const {
    return {redirect.demote && !demote_events_failed_, redirect.demote_small_write_bytes,
            redirect.demote_held_sends};
}

nlohmann::json Daemon::demotion_json() const {
    const auto& r = config_.redirect;
    return {{"enabled", demote_settings(r).enabled && dataplane_->features().demotion_program},
            {"small_write_bytes", r.demote_small_write_bytes},
            {"held_sends", r.demote_held_sends},
            {"pairs", drain_->demoted_pairs()},
            {"removed", drain_->demoted_removed()},
            {"demoting", drain_->demoting()}};
}

// The control server's handler: the daemon's own handle(), plus the
// notifications that belong to a command. Kept out of commands.cpp so the
// commands stay about the data plane; the supervisor hears the same thing
// whether a change came from a signal or from sockaccelctl.
class Daemon::NotifyingHandler final : public CommandHandler {
public:
    explicit NotifyingHandler(Daemon& daemon) : daemon_(daemon) {}

    awaitable<proto::Response> handle(const proto::Request& request,
                                      const PeerCred& peer) override {
        const bool reload = request.cmd == "reload";
        const bool changes_state = reload || request.cmd == "flush-map" ||
                                   request.cmd == "detach" || request.cmd == "attach";
        if (!changes_state) co_return co_await daemon_.handle(request, peer);
        if (reload) daemon_.notify_reloading();
        std::optional<proto::Response> response;
        try {
            response = co_await daemon_.handle(request, peer);
        } catch (...) {
            // The control server turns this into internal_error; systemd
            // must still leave "reloading".
            after(reload);
            throw;
        }
        after(reload);
        co_return std::move(*response);
    }

private:
    void after(bool reload) {
        if (reload)
            daemon_.notify_reloaded();
        else
            daemon_.notify_status();
    }

    Daemon& daemon_;
};

Daemon::Daemon(std::string config_path, bool config_path_explicit, ConfigOverrides overrides)
    : config_path_(std::move(config_path)),
      config_path_explicit_(config_path_explicit),
      overrides_(std::move(overrides)),
      signals_(io_, SIGTERM, SIGINT, SIGHUP),
      watchdog_timer_(io_),
      notifying_handler_(std::make_unique<NotifyingHandler>(*this)) {}

Daemon::~Daemon() = default;

Config Daemon::load_config() const {
    auto loaded = load_config_file(config_path_, /*missing_ok=*/!config_path_explicit_);
    if (!loaded) throw StartupError(loaded.error());
    Config config = std::move(*loaded);
    apply_overrides(config, overrides_);
    return config;
}

void Daemon::start() {
    started_at_ = Clock::now();
    config_ = load_config();
    spdlog::set_level(spdlog::level::from_str(config_.log_level));
    DataPlane::check_privilege();
    probe_features();
    // Independent of the data plane (a private map in a child process), so
    // it runs before anything is locked, opened or attached: the child then
    // inherits none of those descriptors.
    run_kernel_selftest();

    auto root = find_cgroup2_mount();
    if (!root)
        throw StartupError("no cgroup v2 filesystem is mounted (" + root.error().message() +
                           "); sockacceld attaches to a cgroup v2 hierarchy");
    auto cgroup = resolve_cgroup(config_.cgroup, *root);
    if (!cgroup) throw StartupError(cgroup.error().message());
    cgroup_root_ = *root;
    auto policy = encode_for_kernel(config_.policy);
    if (!policy) throw StartupError(config_path_ + ": policy: " + policy.error());

    auto mounted = prepare_pin_dir(config_.pin_dir);
    if (!mounted) throw StartupError(mounted.error().message());
    if (*mounted) spdlog::info("mounted bpffs on /sys/fs/bpf");

    auto lock = lock_directory(config_.pin_dir);
    if (!lock) {
        if (lock.error().errno_value() == EWOULDBLOCK)
            throw StartupError("another sockacceld is already running with pin directory " +
                               config_.pin_dir);
        throw StartupError(lock.error().message());
    }
    pin_lock_ = std::move(*lock);

    // The control socket first: a conflict there must stop the start
    // before anything is attached. If the data plane then fails, the
    // server's destructor removes the socket file again.
    control_ = std::make_unique<ControlServer>(io_, config_.control, *notifying_handler_);
    if (auto r = control_->listen(); !r) throw StartupError(r.error().message());
    if (!config_.metrics.listen.empty()) {
        // Validated with the config; bound before anything is attached.
        metrics_ = std::make_unique<MetricsServer>(
            io_, *parse_listen_address(config_.metrics.listen), [this] { return metrics_text(); });
        if (auto r = metrics_->listen(); !r) throw StartupError(r.error().message());
    }

    cgroup_watch_ =
        std::make_unique<CgroupWatch>(io_, cgroup_root_, [this] { policy_cgroups_changed(); });
    watch_policy_cgroups(*policy);
    dataplane_ = DataPlane::start({*cgroup, config_.pin_dir, config_.map_size,
                                   max_unread_bytes(config_.redirect), features_,
                                   drain_backends_, std::move(*policy),
                                   demote_settings(config_.redirect)});
    drain_ = std::make_unique<DrainScheduler>(io_, *dataplane_, [this] { notify_status(); });
    if (dataplane_->features().demotion_program) {
        demote_events_ = std::make_unique<RingBufferReader>(
            io_, "demote events", [this](const void* data, std::size_t size) {
                if (size < sizeof(sockaccel_demote_event)) return;
                drain_->demote(static_cast<const sockaccel_demote_event*>(data)->key);
            });
        // Without it, a demoted pair would stay in the sockhash on TCP
        // (it is marked before the record is sent): slower, never unsafe.
        // So demotion is turned off instead.
        if (auto r = demote_events_->start(dataplane_->demote_events_fd()); !r) {
            spdlog::warn("{}; demotion is off", r.error().message());
            demote_events_failed_ = true;
            demote_events_.reset();
            if (auto off = dataplane_->set_redirect(max_unread_bytes(config_.redirect),
                                                    demote_settings(config_.redirect));
                !off)
                spdlog::warn("turning demotion off: {}", off.error().message());
        }
    }
    reader_events_ = std::make_unique<ReaderEventLog>(io_, cgroup_root_);
    if (auto r = reader_events_->start(dataplane_->reader_events_fd()); !r)
        spdlog::warn("{}; reader checks are counted but not logged", r.error().message());
    control_->start();
    if (metrics_) {
        metrics_->start();
        spdlog::info("metrics: http://{}/metrics",
                     config_.metrics.listen);
    }

    log_missing_features();
    log_kernel_selftest();
    const auto& info = dataplane_->info();
    auto entries = dataplane_->count_entries();
    spdlog::info("attached to cgroup {} (sockops prog {}, link {}; sk_msg prog {}); sockhash {} "
                 "capacity {}{}; control socket {}{}",
                 info.cgroup_path, info.sockops_prog_id, info.sockops_link_id, info.sk_msg_prog_id,
                 info.sock_hash_map_id, info.capacity,
                 info.adopted ? fmt::format(", adopted {} socket(s) from {}",
                                            entries ? *entries : 0, info.pin_dir)
                              : std::string(),
                 control_->path(), control_->activated() ? " (socket-activated)" : "");
    if (info.adopted && info.capacity != config_.map_size)
        spdlog::warn("map_size {} differs from the adopted sockhash's capacity {}; keeping {} "
                     "(resizing would need a new map), ignoring",
                     config_.map_size, info.capacity, info.capacity);
    const auto walk = dataplane_->drain_walk();
    spdlog::info("drain backend: {} ({}){}; entries counted by {}", to_string(walk.backend),
                 iterator_name(walk.backend),
                 walk.complete ? std::string()
                               : fmt::format("; it cannot see {}, which a drain leaves in place "
                                             "and reports as pending",
                                             walk.cannot_see),
                 to_string(dataplane_->features().entry_counter));
    if (features_.backpressure())
        spdlog::info("back-pressure: a sender is held on TCP while its reader has more than {} "
                     "unread bytes{}",
                     max_unread_bytes(config_.redirect),
                     max_unread_bytes(config_.redirect) == 0 ? " (0: off)" : "");
    if (const auto d = demote_settings(config_.redirect);
        d.enabled && dataplane_->features().demotion_program)
        spdlog::info("demotion: back to TCP for good: streams of writes under {} B into unread "
                     "data{}, and senders held on TCP for {} sends in a row{}",
                     d.small_write_bytes, d.small_write_bytes == 0 ? " (0: off)" : "",
                     d.held_sends, d.held_sends == 0 ? " (0: off)" : "");
    // A previous run may have stopped mid-drain: its claimed sockets never
    // redirect again, so finish removing them.
    if (info.adopted) drain_->ensure_background();

    // Last: everything above is done, so "started" is true from here on
    // (units ordered after this one may connect and find it working).
    notifier_.ready(status_summary());
    start_watchdog();
}

void Daemon::probe_features() {
    auto probed = probe_kernel_features();
    if (!probed) throw StartupError("probe kernel features: " + probed.error().message());
    features_ = *probed;
    if (const char* off = std::getenv("SOCKACCEL_FEATURES_OFF")) {
        if (auto masked = mask_features(features_, off); !masked) throw StartupError(masked.error());
        features_off_ = off;
    }
    if (auto missing = missing_required(features_)) throw StartupError(*missing);
    auto backends = drain_candidates(features_, config_.drain.backend);
    if (!backends) throw StartupError(backends.error());
    drain_backends_ = std::move(*backends);
    spdlog::debug("kernel features: {}", features_to_json(features_).dump());
}

void Daemon::log_missing_features() const {
    // Only once the start has succeeded: a failed start prints its one
    // error line and nothing else (kernel 6.1 lacks msg_tot_len, so these
    // warnings are routine there).
    if (!features_off_.empty())
        spdlog::warn("SOCKACCEL_FEATURES_OFF={}: running as if the kernel lacked them",
                     features_off_);
    for (auto b : kDrainBackends)
        if (!kernel_allows(features_, b))
            spdlog::info("the kernel refuses {} programs: no {} drain backend", iterator_name(b),
                         to_string(b));
    if (!features_.map_iterator)
        spdlog::info("the kernel refuses iter/bpf_map programs: counting the sockhash walks it");
    if (!features_.psock_msg_tot_len)
        spdlog::warn("kernel feature missing: psock->msg_tot_len (unread byte counts and "
                     "back-pressure): a reader that stops lets its sender queue without bound");
    if (!features_.sk_msg_kernel_reads)
        spdlog::warn("kernel feature missing: kernel reads in sk_msg programs (back-pressure, "
                     "demotion); loading the basic redirect program");
}

void Daemon::run_kernel_selftest() {
    kernel_selftest_ = probe_blocking_read_eagain();
}

void Daemon::log_kernel_selftest() const {
    if (!kernel_selftest_) {
        spdlog::warn("{}; the blocking-read EAGAIN issue is reported as unknown, ignoring",
                     kernel_selftest_.error().message());
        return;
    }
    const auto& probe = *kernel_selftest_;
    const char* verdict = !probe.detected  ? "unknown"
                          : *probe.detected ? "detected"
                                            : "not detected";
    spdlog::info("kernel self-test: blocking-read EAGAIN issue {} ({}) in {:.1f} ms", verdict,
                 probe.details, probe.elapsed_ms);
    if (probe.detected.value_or(false))
        spdlog::warn("this kernel's tcp_bpf_recvmsg() returns EAGAIN from a blocking recv()/read() "
                     "on an accelerated socket when the wait is woken without data: programs "
                     "doing blocking reads after a half-close (shutdown(SHUT_WR)) or while "
                     "receiving signals may see EAGAIN; programs using epoll or non-blocking "
                     "sockets are unaffected (docs/operations.md#known-kernel-issues)");
}

int Daemon::run() {
    // Nothing in the loop is meant to throw (errors are values); should
    // something all the same, say so and fail instead of stopping silently.
    asio::co_spawn(io_, signal_loop(), [this](std::exception_ptr e) {
        if (!e) return;
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            spdlog::critical("internal error in the event loop: {}", ex.what());
        }
        exit_code_ = 1;
        io_.stop();
    });
    io_.run();
    return exit_code_;
}

awaitable<void> Daemon::signal_loop() {
    for (;;) {
        boost::system::error_code ec;
        int signo = co_await signals_.async_wait(asio::redirect_error(use_awaitable, ec));
        if (ec) co_return;
        if (signo == SIGHUP) {
            notify_reloading();
            auto r = cmd_reload();
            if (!r) spdlog::error("SIGHUP: {}", r.error().message);
            notify_reloaded();
            continue;
        }
        spdlog::info("received {}, stopping", signo == SIGTERM ? "SIGTERM" : "SIGINT");
        co_await shutdown();
        co_return;
    }
}

awaitable<void> Daemon::shutdown() {
    stopping_ = true;
    drain_->stop();
    {
        // First, so the supervisor knows the stop has begun and does not
        // take a long drain for a hang (it still waits its stop timeout).
        auto entries = dataplane_->count_entries();
        notifier_.stopping(stopping_status_text(
            entries ? std::optional<std::uint64_t>(*entries) : std::nullopt,
            config_.drain.stop_timeout_sec));
    }
    control_->stop();
    if (metrics_) metrics_->stop();

    // Stop inserting and redirecting, then detach: new connections take
    // TCP, and every socket's next send takes TCP for good.
    if (auto r = dataplane_->set_flags(0); !r)
        spdlog::error("stop: {}; continuing", r.error().message());
    (void)dataplane_->detach_sockops();

    // A failed drain leaves its sockets in the map, which the step below
    // then keeps pinned: an error here costs acceleration, never data.
    const auto wait = std::chrono::seconds(config_.drain.stop_timeout_sec);
    if (auto report = co_await drain_->run(DrainScheduler::Claim::all, /*force=*/false, wait);
        !report)
        spdlog::error("stop: drain: {}; what it did not remove stays pinned",
                      report.error().message());
    else
        spdlog::info("stop: drained {} socket(s); {} pending ({} unread bytes{})",
                     report->flushed, report->pending, report->pending_bytes,
                     report->unreached ? fmt::format("; {} the walk cannot reach", report->unreached)
                                       : std::string());

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
    watchdog_timer_.cancel();
    io_.stop();
}

std::string Daemon::metrics_text() const {
    MetricsSnapshot s;
    s.version = std::string(proto::kSoftwareVersion);
    s.abi = SOCKACCEL_ABI_VERSION;
    s.kernel = kernel_release();
    if (auto c = dataplane_->read_counters()) s.counters = *c;
    if (auto e = dataplane_->count_entries()) s.map_entries = *e;
    s.map_capacity = dataplane_->info().capacity;
    s.attached = dataplane_->sockops_attached();
    s.drain_active = drain_->background_active();
    s.drain_pending_sockets = drain_->last().pending;
    s.drain_pending_bytes = drain_->last().pending_bytes;
    s.drain_flushed_total = drain_->flushed_total();
    s.drain_unreached_sockets = drain_->last().unreached;
    s.demoted_removed = drain_->demoted_removed();
    s.demoting = drain_->demoting();
    s.drain_backend = std::string(to_string(dataplane_->drain_walk().backend));
    const auto& p = config_.policy;
    for (const auto* r : {&p.include, &p.exclude})
        s.policy_rules += r->ports.size() + r->cidrs.size() + r->cgroups.size();
    return render_metrics(s);
}

std::string Daemon::status_summary() const {
    if (!dataplane_) return "starting";
    StatusSnapshot s;
    s.attached = dataplane_->sockops_attached();
    if (auto entries = dataplane_->count_entries()) s.sockets = *entries;
    if (auto counters = dataplane_->read_counters())
        s.redirected_bytes = (*counters)[SOCKACCEL_CNT_REDIRECT_BYTES];
    s.drain_active = drain_ && drain_->background_active();
    s.drain_pending = drain_ ? drain_->last().pending : 0;
    return status_text(s);
}

void Daemon::notify_status() {
    // Once stopping, STATUS= says so, and nothing overwrites it.
    if (stopping_) return;
    notifier_.status(status_summary());
}

void Daemon::notify_reloading() { notifier_.reloading("reloading " + config_path_); }

void Daemon::notify_reloaded() { notifier_.ready(status_summary()); }

void Daemon::start_watchdog() {
    auto period = SystemdNotifier::watchdog_period();
    if (!period) {
        spdlog::warn("{}; not sending watchdog pings, ignoring", period.error().message());
        return;
    }
    if (!*period) return;  // no watchdog: no timer at all
    spdlog::info("systemd watchdog: pinging every {} ms",
                 std::chrono::duration_cast<std::chrono::milliseconds>(**period).count());
    asio::co_spawn(io_, watchdog_loop(**period), asio::detached);
}

awaitable<void> Daemon::watchdog_loop(std::chrono::microseconds period) {
    // On the io_context, like everything else: if the loop is stuck (a
    // handler that never returns), the pings stop and systemd acts. A thread
    // of its own would keep pinging for a dead daemon.
    for (;;) {
        if (stopping_)
            notifier_.watchdog(std::nullopt);  // keep the "stopping" status
        else
            notifier_.watchdog(status_summary());
        watchdog_timer_.expires_after(period);
        boost::system::error_code ec;
        co_await watchdog_timer_.async_wait(asio::redirect_error(use_awaitable, ec));
        if (ec) co_return;  // cancelled at the end of the stop sequence
    }
}

}  // namespace sockaccel
