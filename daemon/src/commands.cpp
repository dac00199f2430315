// SPDX-License-Identifier: Apache-2.0
//
// The control commands (docs/protocol.md has every request and result).
// Argument validation is strict and happens before anything changes, so a
// bad request gets invalid_argument and changes nothing.
#include <arpa/inet.h>
#include <unistd.h>

#include <cstring>
#include <set>

#include <spdlog/spdlog.h>

#include "daemon.h"
#include "request_args.h"
#include "sockaccel/key.h"

namespace sockaccel {

namespace asio = boost::asio;
using asio::awaitable;
using nlohmann::json;

namespace {

proto::Error invalid(std::string message) {
    return {std::string(proto::errc::kInvalidArgument), std::move(message)};
}

proto::Error kernel_error(const SysError& e) {
    return {std::string(proto::errc::kKernelError), e.message()};
}

std::string addr_string(std::uint16_t family, const __u32 ip[4]) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (family == SOCKACCEL_AF_INET)
        ::inet_ntop(AF_INET, ip, buf, sizeof(buf));
    else
        ::inet_ntop(AF_INET6, ip, buf, sizeof(buf));
    return buf;
}

// The state of a socket a walk reached (docs/protocol.md, connections).
std::string state_name(const sockaccel_drain_record& r) {
    if (r.status & SOCKACCEL_DRAIN_QUIESCED) return "quiesced";
    if (r.status & SOCKACCEL_DRAIN_CLAIMED) return "draining";
    if (r.status & SOCKACCEL_DRAIN_FLAGS_UNKNOWN) return "unknown";
    // Demoted: on TCP for good, out of the sockhash once drained.
    if (r.sk_flags & SOCKACCEL_SK_DEMOTED) return "demoted";
    if (r.sk_flags & SOCKACCEL_SK_TCP_PATH) return "tcp_path";
    // A hold has one of two reasons: the peer's reader (it cannot see
    // redirected data now), or back-pressure (it has too much unread).
    if (r.sk_flags & SOCKACCEL_SK_HOLD_READER) return "held_reader";
    if (r.sk_flags & SOCKACCEL_SK_HELD_BACK) return "held_back";
    return "active";
}

// Why a socket was demoted (docs/protocol.md, connections), or null.
json demote_reason(const sockaccel_drain_record& r) {
    if (r.status & SOCKACCEL_DRAIN_FLAGS_UNKNOWN) return nullptr;
    if (r.sk_flags & SOCKACCEL_SK_DEMOTED_SMALL_WRITES) return "small_writes";
    if (r.sk_flags & SOCKACCEL_SK_DEMOTED_BACKPRESSURE) return "backpressure";
    if (r.sk_flags & SOCKACCEL_SK_DEMOTED_READER) return "reader";
    return nullptr;
}

std::string key_bytes(const sockaccel_key& k) {
    return std::string(reinterpret_cast<const char*>(&k), sizeof(k));
}

}  // namespace

awaitable<proto::Response> Daemon::handle(const proto::Request& request, const PeerCred&) {
    const std::string& cmd = request.cmd;
    const json& args = request.args;
    Reply reply;
    // Every argument of every command is checked before anything runs
    // (request_args.h), so a bad request changes nothing.
    if (auto valid = validate_request(request); !valid)
        co_return proto::Response::failure(request.id, valid.error().code,
                                           valid.error().message);
    if (cmd == "ping") {
        reply = json::object();
    } else if (cmd == "version") {
        reply = json{{"version", std::string(proto::kSoftwareVersion)},
                     {"protocol", proto::kProtocolVersion},
                     {"abi", SOCKACCEL_ABI_VERSION}};
    } else if (cmd == "status") {
        reply = cmd_status();
    } else if (cmd == "stats") {
        reply = cmd_stats();
    } else if (cmd == "connections") {
        reply = cmd_connections(args);
    } else if (cmd == "flush-map") {
        reply = co_await cmd_flush(args);
    } else if (cmd == "detach" || cmd == "attach") {
        reply = cmd_attach(cmd == "attach");
    } else if (cmd == "reload") {
        reply = cmd_reload();
    } else if (cmd == proto::cmd::kPolicyShow) {
        reply = cmd_policy_show();
    } else if (cmd == proto::cmd::kPolicySet) {
        reply = co_await cmd_policy_set(args);
    } else {
        reply = tl::unexpected(proto::Error{std::string(proto::errc::kUnknownCommand),
                                            "command \"" + cmd + "\" is not available in this "
                                            "version of sockacceld"});
    }
    if (!reply) co_return proto::Response::failure(request.id, reply.error().code,
                                                   reply.error().message);
    co_return proto::Response::success(request.id, std::move(*reply));
}

json Daemon::drain_json() const {
    const auto& last = drain_->last();
    const auto walk = dataplane_->drain_walk();
    return {{"active", drain_->background_active()},
            {"pending", last.pending},
            {"unreached", last.unreached},
            {"pending_bytes", last.pending_bytes},
            {"pending_bytes_exact", last.pending_bytes_exact},
            {"flushed_total", drain_->flushed_total()},
            {"backend", to_string(walk.backend)},
            {"iterator", iterator_name(walk.backend)},
            {"complete", walk.complete},
            {"cannot_see", walk.complete ? json(nullptr) : json(walk.cannot_see)}};
}

nlohmann::json Daemon::status_features(const DataPlaneFeatures& loaded) const {
    // What the kernel loads, plus what the daemon loaded with it.
    auto out = features_to_json(features_);
    out["drain_backend"] = to_string(loaded.drain_backend);
    out["entry_counter"] = to_string(loaded.entry_counter);
    out["backpressure"] = loaded.backpressure_program;
    out["reader_checks"] = loaded.reader_check_program ? "every_send" : "accepted_side_only";
    out["demotion"] = loaded.demotion_program;
    return out;
}

Daemon::Reply Daemon::cmd_status() {
    const auto& info = dataplane_->info();
    auto counters = dataplane_->read_counters();
    if (!counters) return tl::unexpected(kernel_error(counters.error()));
    auto entries = dataplane_->count_entries();
    if (!entries) return tl::unexpected(kernel_error(entries.error()));
    auto kcfg = dataplane_->config();
    if (!kcfg) return tl::unexpected(kernel_error(kcfg.error()));
    const auto flags = &kcfg->flags;
    // State an upgrade retired is removed here once its sockets have all
    // closed: the kernel has no event for that, and status is where an
    // operator looks, so no timer polls for it.
    auto retired = dataplane_->collect_retired();
    if (!retired) return tl::unexpected(kernel_error(retired.error()));
    json retired_json = json::array();
    for (const auto& r : *retired)
        retired_json.push_back({{"dir", r.dir},
                                {"abi_version", r.abi_version ? json(*r.abi_version) : json(nullptr)},
                                {"sockets", r.sockets ? json(*r.sockets) : json(nullptr)}});
    const auto& f = dataplane_->features();
    const double uptime =
        std::chrono::duration<double>(Clock::now() - started_at_).count();
    return json{
        {"version", std::string(proto::kSoftwareVersion)},
        {"pid", ::getpid()},
        {"uptime_sec", uptime},
        {"kernel", kernel_release()},
        {"attach",
         {{"attached", dataplane_->sockops_attached()},
          {"cgroup", info.cgroup_path},
          {"pin_dir", info.pin_dir},
          {"adopted", info.adopted},
          {"sockops_prog_id", info.sockops_prog_id},
          {"sk_msg_prog_id", info.sk_msg_prog_id},
          {"sockops_link_id", info.sockops_link_id},
          {"sock_hash_map_id", info.sock_hash_map_id}}},
        {"mode",
         {{"insert", (*flags & SOCKACCEL_CFG_INSERT) != 0},
          {"redirect", (*flags & SOCKACCEL_CFG_REDIRECT) != 0},
          {"max_unread_bytes", kcfg->max_unread_bytes}}},
        {"map", {{"entries", *entries}, {"capacity", info.capacity}}},
        {"retired", std::move(retired_json)},
        {"counters", counters_to_json(*counters)},
        {"drain", drain_json()},
        {"demotion", demotion_json()},
        {"features", status_features(f)},
        {"kernel_issues", json::array({eagain_issue_json(kernel_selftest_ ? kernel_selftest_->detected : std::nullopt)})},
        {"config", config_to_json(config_)},
        {"policy", *cmd_policy_show()},
    };
}

Daemon::Reply Daemon::cmd_stats() {
    auto counters = dataplane_->read_counters();
    if (!counters) return tl::unexpected(kernel_error(counters.error()));
    auto entries = dataplane_->count_entries();
    if (!entries) return tl::unexpected(kernel_error(entries.error()));
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            Clock::now().time_since_epoch())
                            .count();
    return json{{"counters", counters_to_json(*counters)},
                {"map", {{"entries", *entries}, {"capacity", dataplane_->info().capacity}}},
                {"timestamp_ms", now_ms}};
}

Daemon::Reply Daemon::cmd_connections(const json& args) {
    auto parsed = validate_connections_args(args);
    if (!parsed) return tl::unexpected(parsed.error());
    const std::optional<std::uint16_t> port = parsed->port;
    const std::size_t max = parsed->limit;

    // The drain backend's walk in SCAN mode reads every socket's state
    // without claiming any. A walk that cannot see every socket
    // (drain_walk().complete) is completed from the map's keys: those
    // sockets are listed with state "unreached" and no byte counts.
    struct Item {
        sockaccel_key key;
        std::uint64_t cookie;
        std::string state;
        json unread;  // redirected bytes queued unread; null if the kernel does not say
        json demoted = nullptr;  // the reason, if the data plane demoted it
    };
    std::vector<Item> items;
    auto scan = dataplane_->drain_pass(SOCKACCEL_DRAIN_SCAN, {});
    if (!scan) return tl::unexpected(kernel_error(scan.error()));
    for (const auto& r : *scan)
        items.push_back({r.key, r.cookie, state_name(r),
                         (r.status & SOCKACCEL_DRAIN_BYTES_KNOWN) ? json(r.pending_bytes)
                                                                  : json(nullptr),
                         demote_reason(r)});
    if (!dataplane_->drain_walk().complete) {
        auto entries = dataplane_->count_entries();
        if (!entries) return tl::unexpected(kernel_error(entries.error()));
        if (*entries > items.size()) {
            auto listed = dataplane_->list_entries(dataplane_->info().capacity);
            if (!listed) return tl::unexpected(kernel_error(listed.error()));
            std::set<std::uint64_t> reached;
            for (const auto& it : items) reached.insert(it.cookie);
            for (const auto& e : *listed)
                if (!reached.count(e.cookie)) items.push_back({e.key, e.cookie, "unreached", nullptr});
        }
    }
    std::map<std::string, const Item*> by_key;
    for (const auto& it : items) by_key[key_bytes(it.key)] = &it;

    json list = json::array();
    std::set<std::string> shown;
    std::size_t total = 0;
    for (const auto& it : items) {
        const auto k = key_bytes(it.key);
        if (shown.count(k)) continue;  // listed as the peer of an earlier one
        if (port && it.key.local_port != *port && it.key.remote_port != *port) continue;
        sockaccel_key peer;
        std::memset(&peer, 0, sizeof(peer));
        sockaccel_key_peer(&peer, &it.key);
        auto p = by_key.find(key_bytes(peer));
        ++total;
        if (p != by_key.end()) {
            shown.insert(p->first);
            ++total;
        }
        if (list.size() >= max) continue;
        list.push_back({
            {"family", it.key.family == SOCKACCEL_AF_INET ? "ipv4" : "ipv6"},
            {"local_addr", addr_string(it.key.family, it.key.local_ip)},
            {"local_port", it.key.local_port},
            {"remote_addr", addr_string(it.key.family, it.key.remote_ip)},
            {"remote_port", it.key.remote_port},
            {"cookie", it.cookie},
            {"peer_cookie", p != by_key.end() ? json(p->second->cookie) : json(nullptr)},
            {"state", it.state},
            {"peer_state", p != by_key.end() ? json(p->second->state) : json(nullptr)},
            {"demoted", it.demoted},
            {"peer_demoted", p != by_key.end() ? p->second->demoted : json(nullptr)},
            {"unread_bytes", it.unread},
            {"peer_unread_bytes", p != by_key.end() ? p->second->unread : json(nullptr)},
        });
    }
    std::size_t shown_sockets = 0;
    for (const auto& e : list) shown_sockets += e["peer_cookie"].is_null() ? 1 : 2;
    return json{{"total", total},
                {"shown", shown_sockets},
                {"truncated", shown_sockets < total},
                {"connections", std::move(list)}};
}

awaitable<Daemon::Reply> Daemon::cmd_flush(const json& args) {
    auto parsed = validate_flush_args(args);
    if (!parsed) co_return tl::unexpected(parsed.error());
    const bool force = parsed->force;
    const auto t0 = Clock::now();
    auto drained = co_await drain_->run(DrainScheduler::Claim::all, force, parsed->wait);
    if (!drained) {
        spdlog::error("flush-map: {}", drained.error().message());
        co_return tl::unexpected(kernel_error(drained.error()));
    }
    const DrainReport& r = *drained;
    spdlog::info("flush-map: flushed {}, pending {} ({} unread bytes{}){}", r.flushed, r.pending,
                 r.pending_bytes,
                 r.unreached ? fmt::format("; {} the walk cannot reach", r.unreached) : std::string(),
                 force ? fmt::format(", dropped {} socket(s) with {} byte(s)", r.dropped_sockets,
                                     r.dropped_bytes)
                       : std::string());
    co_return json{
        {"flushed", r.flushed},
        {"pending", r.pending},
        {"unreached", r.unreached},
        {"pending_bytes", r.pending_bytes},
        {"pending_bytes_exact", r.pending_bytes_exact},
        {"dropped_sockets", r.dropped_sockets},
        {"dropped_bytes", r.dropped_bytes},
        {"background", r.pending > 0},
        {"elapsed_ms",
         std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count()},
    };
}

Daemon::Reply Daemon::cmd_attach(bool attach) {
    const bool was = dataplane_->sockops_attached();
    auto r = attach ? dataplane_->attach_sockops() : dataplane_->detach_sockops();
    if (!r) return tl::unexpected(kernel_error(r.error()));
    if (was != attach)
        spdlog::info("{}: new connections {} accelerated", attach ? "attach" : "detach",
                     attach ? "are" : "are no longer");
    return json{{"attached", dataplane_->sockops_attached()}, {"changed", was != attach}};
}

tl::expected<EncodedPolicy, std::string> Daemon::encode_for_kernel(const Policy& policy) const {
    auto ids = resolve_cgroups(policy, cgroup_root_);
    if (!ids) return tl::unexpected(ids.error());
    return encode_policy(policy, *ids);
}

Result<void> Daemon::apply_policy(const EncodedPolicy& next) {
    auto r = dataplane_->set_policy(next);
    if (r) {
        watch_policy_cgroups(next);
        return r;
    }
    // Put the running policy back, so the kernel is not left with a mix.
    if (auto old = encode_for_kernel(config_.policy); old)
        if (auto back = dataplane_->set_policy(*old); !back)
            spdlog::error("policy: restoring the previous policy failed too: {}",
                          back.error().message());
    return r;
}

void Daemon::watch_policy_cgroups(const EncodedPolicy& applied) {
    for (const auto& path : applied.pending_cgroups)
        if (std::find(pending_cgroups_.begin(), pending_cgroups_.end(), path) ==
            pending_cgroups_.end())
            spdlog::info("policy: cgroup {} does not exist yet; it is matched once it appears",
                         path);
    pending_cgroups_ = applied.pending_cgroups;
    if (auto r = cgroup_watch_->watch(applied.cgroup_paths); !r)
        spdlog::warn("policy: {}; cgroups re-created later (a restarted service) are not "
                     "followed until the next policy-set or reload",
                     r.error().message());
}

void Daemon::policy_cgroups_changed() {
    if (!dataplane_) return;
    auto encoded = encode_for_kernel(config_.policy);
    if (!encoded) {
        // A parent cgroup went away: its children are gone too, and their
        // old ids match nothing. Keep the policy in force.
        spdlog::warn("policy: after a cgroup change: {}", encoded.error());
        return;
    }
    const auto before = pending_cgroups_;
    if (auto r = apply_policy(*encoded); !r) {
        spdlog::error("policy: writing the policy after a cgroup change failed: {}",
                      r.error().message());
        return;
    }
    for (const auto& path : before)
        if (std::find(pending_cgroups_.begin(), pending_cgroups_.end(), path) ==
            pending_cgroups_.end())
            spdlog::info("policy: cgroup {} appeared; its new connections are accelerated", path);
}

Daemon::Reply Daemon::cmd_policy_show() const {
    const bool host = config_.policy.effective_scope() == proto::Scope::host;
    std::string accelerates;
    if (host)
        accelerates = config_.policy.empty() ? "all local connections"
                                             : "local connections the policy allows";
    else
        accelerates = config_.policy.include.cgroups.empty()
                          ? "nothing (opt-in scope, no cgroup included)"
                          : "local connections of the included cgroups the policy allows";
    json shown{{"policy", policy_to_json(config_.policy)},
               {"source", policy_source_},
               {"scope", to_string(config_.policy.effective_scope())},
               {"pending_cgroups", pending_cgroups_},
               {"accelerates", accelerates}};
    if (host)
        shown["warning"] =
            "host scope: programs that splice or tee from a TCP socket, use urgent data, or rely "
            "on FIONREAD, TCP_INFO byte counts or a reset when closing with unread data get "
            "different answers than on TCP (docs/compatibility.md)";
    return shown;
}

awaitable<Daemon::Reply> Daemon::cmd_policy_set(const json& args) {
    auto parsed = validate_policy_set_args(args);
    if (!parsed) co_return tl::unexpected(parsed.error());
    // A policy without a scope keeps the one in force.
    if (!parsed->policy.scope) parsed->policy.scope = config_.policy.effective_scope();
    auto encoded = encode_for_kernel(parsed->policy);
    if (!encoded)
        co_return tl::unexpected(invalid("policy-set: " + encoded.error() +
                                         "; the policy in force is unchanged"));
    const bool changed = parsed->policy != config_.policy;
    if (auto r = apply_policy(*encoded); !r) co_return tl::unexpected(kernel_error(r.error()));
    config_.policy = std::move(parsed->policy);
    policy_source_ = "runtime";
    spdlog::info("policy-set: {} (until the next reload or restart)",
                 policy_to_json(config_.policy).dump());
    json result{{"policy", policy_to_json(config_.policy)}, {"changed", changed}};
    if (parsed->apply_existing) {
        auto drained =
            co_await drain_->run(DrainScheduler::Claim::outside_policy, /*force=*/false, parsed->wait);
        if (!drained) {
            // The policy itself is in force; only moving the live
            // connections failed, and the reply says so.
            spdlog::error("policy-set --apply-existing: {}", drained.error().message());
            co_return tl::unexpected(kernel_error(SysError{
                drained.error().code,
                "the policy is in force for new connections, but moving existing ones failed: " +
                    drained.error().context}));
        }
        const DrainReport& r = *drained;
        spdlog::info("policy-set --apply-existing: moved {} socket(s) to TCP, {} pending",
                     r.flushed, r.pending);
        result["apply_existing"] = {{"flushed", r.flushed},
                                    {"pending", r.pending},
                                    {"unreached", r.unreached},
                                    {"pending_bytes", r.pending_bytes},
                                    {"pending_bytes_exact", r.pending_bytes_exact},
                                    {"background", r.pending > 0}};
    }
    co_return result;
}

Daemon::Reply Daemon::cmd_reload() {
    Config next;
    try {
        next = load_config();
    } catch (const StartupError& e) {
        return tl::unexpected(invalid(std::string(e.what()) +
                                      "; the running configuration is unchanged"));
    }
    json applied = json::array(), restart = json::array();
    auto check = [&](bool changed, const char* key, bool live) {
        if (changed) (live ? applied : restart).push_back(key);
    };
    check(next.log_level != config_.log_level, "log_level", true);
    check(next.control.admin_group != config_.control.admin_group, "control.admin_group", true);
    check(next.control.max_clients != config_.control.max_clients, "control.max_clients", true);
    check(next.control.idle_timeout_sec != config_.control.idle_timeout_sec,
          "control.idle_timeout_sec", true);
    check(next.drain.stop_timeout_sec != config_.drain.stop_timeout_sec, "drain.stop_timeout_sec",
          true);
    check(next.drain.backend != config_.drain.backend, "drain.backend", false);
    const auto limit = max_unread_bytes(next.redirect);
    check(next.redirect.max_unread_bytes != config_.redirect.max_unread_bytes,
          "redirect.max_unread_bytes", true);
    check(next.redirect.demote != config_.redirect.demote, "redirect.demote", true);
    check(next.redirect.demote_small_write_bytes != config_.redirect.demote_small_write_bytes,
          "redirect.demote_small_write_bytes", true);
    check(next.redirect.demote_held_sends != config_.redirect.demote_held_sends,
          "redirect.demote_held_sends", true);
    const bool demote_changed = demote_settings(next.redirect) != demote_settings(config_.redirect);
    check(next.cgroup != config_.cgroup, "cgroup", false);
    // The file's policy replaces one set at run time (policy-set), even if
    // the file did not change: the file is what a reload re-reads. It is
    // written again in any case, so cgroups re-created since (new ids) are
    // looked up anew.
    check(next.policy != config_.policy, "policy", true);
    std::optional<EncodedPolicy> policy;
    {
        auto encoded = encode_for_kernel(next.policy);
        if (!encoded)
            return tl::unexpected(invalid(config_path_ + ": policy: " + encoded.error() +
                                          "; the running configuration is unchanged"));
        policy = std::move(*encoded);
    }
    check(next.pin_dir != config_.pin_dir, "pin_dir", false);
    check(next.map_size != config_.map_size, "map_size", false);
    check(next.control.socket != config_.control.socket, "control.socket", false);
    check(next.control.group != config_.control.group, "control.group", false);
    check(next.metrics.listen != config_.metrics.listen, "metrics.listen", false);

    // The settings that live in the kernel go first: if writing them fails,
    // nothing has changed (apply_policy() restores the old policy itself).
    // The limit is compared with what the kernel has, not with the old
    // config, so "auto" follows a changed tcp_rmem too.
    auto in_kernel = dataplane_->max_unread_bytes();
    if (!in_kernel) return tl::unexpected(kernel_error(in_kernel.error()));
    if (policy)
        if (auto r = apply_policy(*policy); !r) return tl::unexpected(kernel_error(r.error()));
    if (limit != *in_kernel || demote_changed) {
        if (auto r = dataplane_->set_redirect(limit, demote_settings(next.redirect)); !r) {
            // Put the running policy back, so the reload changes nothing.
            if (auto old = encode_for_kernel(config_.policy); policy && old)
                if (auto back = apply_policy(*old); !back)
                    spdlog::error("reload: restoring the previous policy failed: {}",
                                  back.error().message());
            return tl::unexpected(kernel_error(r.error()));
        }
        // "auto" both times, but tcp_rmem changed: applied all the same.
        if (limit != *in_kernel &&
            next.redirect.max_unread_bytes == config_.redirect.max_unread_bytes)
            applied.push_back("redirect.max_unread_bytes");
    }
    // Keys that need a restart keep their running values, so status shows
    // the configuration actually in effect.
    config_.log_level = next.log_level;
    config_.control.admin_group = next.control.admin_group;
    config_.control.max_clients = next.control.max_clients;
    config_.control.idle_timeout_sec = next.control.idle_timeout_sec;
    config_.drain.stop_timeout_sec = next.drain.stop_timeout_sec;
    config_.redirect = next.redirect;
    config_.policy = std::move(next.policy);
    policy_source_ = "config";
    spdlog::set_level(spdlog::level::from_str(config_.log_level));
    control_->update(config_.control);
    spdlog::info("reloaded {}{}", config_path_,
                 restart.empty() ? std::string()
                                 : "; needs a restart to change: " + restart.dump());
    return json{{"reloaded", true}, {"applied", applied}, {"restart_required", restart}};
}

}  // namespace sockaccel
