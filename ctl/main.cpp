// SPDX-License-Identifier: Apache-2.0
//
// sockaccelctl: command-line client for sockacceld. This file only parses the
// command line; src/commands.cpp does the work, src/render.cpp the output.
//
// Exit status: 0 success, 1 the daemon reported an error, 2 usage error,
// 3 the daemon could not be reached or gave no usable response.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>

#include "sockaccel/proto/policy.h"
#include "sockaccel/proto/protocol.h"
#include "src/commands.h"
#include "src/render.h"

namespace proto = sockaccel::proto;
namespace ctl = sockaccel::ctl;
using nlohmann::json;

namespace {

// Longest accepted timeout/interval/wait, so conversions to milliseconds
// cannot overflow: a day is more than anyone waits for a control command.
constexpr double kMaxSeconds = 86400.0;

// Interval of a bare `stats --watch`.
constexpr double kDefaultWatchSec = 1.0;

// Default timeout for flush-map, which may wait for sockets to drain.
constexpr double kFlushMapTimeoutSec = 60.0;

// Extra time the client allows beyond a flush-map --wait, for the daemon to
// finish up and answer after its wait ends.
constexpr double kFlushWaitSlackSec = 10.0;

std::chrono::milliseconds to_ms(double seconds) {
    return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(seconds * 1000.0)));
}

std::string summary(std::string_view cmd) {
    const proto::CommandInfo* info = proto::find_command(cmd);
    return info != nullptr ? std::string(info->summary) : std::string();
}

int run(int argc, char** argv) {
    CLI::App app{
        "Control sockacceld, the same-host TCP accelerator.\n\n"
        "Exit status: 0 success, 1 the daemon reported an error, 2 usage error,\n"
        "3 the daemon could not be reached or gave no usable response.",
        "sockaccelctl"};
    // Global options may also follow the subcommand ("sockaccelctl status --json").
    app.fallthrough();
    app.require_subcommand(0, 1);
    app.set_version_flag("--version", "sockaccelctl " + std::string(proto::kSoftwareVersion));

    ctl::GlobalOptions options;
    double timeout_sec = 10.0;
    app.add_option("--socket", options.socket_path, "Control socket of sockacceld")
        ->envname(ctl::kSocketEnvVar)
        ->capture_default_str()
        ->type_name("PATH");
    app.add_flag("--json", options.json, "Print the daemon's result as one line of JSON");
    CLI::Option* timeout_opt =
        app.add_option("--timeout", timeout_sec,
                       "Seconds to wait for the daemon (default 10; flush-map: 60)")
            ->check(CLI::Range(0.001, kMaxSeconds))
            ->type_name("SECONDS");

    auto* ping = app.add_subcommand("ping", summary(proto::cmd::kPing));
    auto* version = app.add_subcommand("version", summary(proto::cmd::kVersion));
    auto* status = app.add_subcommand("status", summary(proto::cmd::kStatus));

    auto* stats = app.add_subcommand("stats", summary(proto::cmd::kStats));
    double watch_sec = kDefaultWatchSec;
    CLI::Option* watch_opt =
        stats
            ->add_option("--watch,-w", watch_sec,
                         "Redraw every SECONDS (default 1) with per-second rates until Ctrl-C")
            ->expected(0, 1)
            ->check(CLI::Range(0.1, kMaxSeconds))
            ->type_name("[SECONDS]");

    auto* connections = app.add_subcommand("connections", summary(proto::cmd::kConnections));
    std::uint32_t port = 0;
    std::uint32_t limit = 0;
    CLI::Option* port_opt =
        connections->add_option("--port", port, "Only sockets with this local or remote port")
            ->check(CLI::Range(1, 65535))
            ->type_name("N");
    CLI::Option* limit_opt =
        connections->add_option("--limit", limit, "Show at most N entries (1-200; default 100)")
            ->check(CLI::Range(std::size_t{1}, proto::kMaxListLimit))
            ->type_name("N");

    auto* flush = app.add_subcommand("flush-map", summary(proto::cmd::kFlushMap));
    bool force = false;
    double wait_sec = 0;
    flush->add_flag("--force", force, "Also drop sockets that still hold unread data");
    CLI::Option* wait_opt =
        flush->add_option("--wait", wait_sec, "Wait up to SECONDS for pending sockets to drain")
            ->check(CLI::Range(0.0, proto::kMaxFlushWaitMs / 1000.0))
            ->type_name("SECONDS");

    auto* attach = app.add_subcommand("attach", summary(proto::cmd::kAttach));
    auto* detach = app.add_subcommand("detach", summary(proto::cmd::kDetach));
    auto* reload = app.add_subcommand("reload", summary(proto::cmd::kReload));

    auto* policy = app.add_subcommand("policy", "Show or change which connections are accelerated");
    auto* policy_show = policy->add_subcommand("show", summary(proto::cmd::kPolicyShow));
    auto* policy_set = policy->add_subcommand(
        "set",
        "Replace the policy for new connections, until the next reload or restart (rules "
        "from the flags, or a JSON policy object from --file)");
    std::map<std::string, std::vector<std::string>> rule_args;
    for (const char* side : {"include", "exclude"}) {
        for (const auto& [kind, what] : {std::pair{"port", "PORT[-PORT]"},
                                         std::pair{"cidr", "ADDR/LEN"},
                                         std::pair{"cgroup", "PATH"}}) {
            const std::string flag = std::string("--") + side + "-" + kind;
            policy_set
                ->add_option(flag, rule_args[flag],
                             std::string(side == std::string("include") ? "Accelerate only"
                                                                        : "Never accelerate") +
                                 " connections with this " + kind + " (repeatable)")
                ->type_name(what);
        }
    }
    for (const char* side : {"include", "exclude"}) {
        const std::string flag = std::string("--") + side + "-unit";
        policy_set
            ->add_option(flag, rule_args[flag],
                         std::string(side == std::string("include") ? "Accelerate" : "Never accelerate") +
                             " this systemd service: the cgroup /system.slice/UNIT, followed "
                             "across restarts (repeatable)")
            ->type_name("UNIT");
    }
    std::string policy_file, scope;
    CLI::Option* scope_opt =
        policy_set
            ->add_option("--scope", scope,
                         "opt-in: only the included cgroups and units; host: every local "
                         "connection the rules allow (default: the scope in force)")
            ->check(CLI::IsMember({"opt-in", "host"}));
    bool apply_existing = false, clear_policy = false;
    CLI::Option* policy_file_opt =
        policy_set->add_option("--file", policy_file, "A JSON policy object (- for stdin)")
            ->type_name("FILE");
    CLI::Option* clear_opt =
        policy_set->add_flag("--clear", clear_policy,
                             "No rules (in the opt-in scope: nothing is accelerated; in the host "
                             "scope: every local connection)");
    policy_set->add_flag("--apply-existing", apply_existing,
                         "Also move existing connections the new policy excludes to TCP, "
                         "losing nothing (like flush-map, for those only)");
    CLI::Option* policy_wait_opt =
        policy_set->add_option("--wait", wait_sec, "With --apply-existing: wait up to SECONDS for "
                                                   "them to drain")
            ->check(CLI::Range(0.0, proto::kMaxFlushWaitMs / 1000.0))
            ->type_name("SECONDS");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // --help and --version are "errors" with status 0; every real
        // parse error is a usage error, whatever CLI11's own code.
        int rc = app.exit(e);
        return rc == 0 ? ctl::kExitOk : ctl::kExitUsage;
    }

    options.timeout = to_ms(timeout_sec);

    if (*ping) {
        return ctl::run_command(options, proto::cmd::kPing, json::object(), ctl::render_ping);
    }
    if (*version) {
        return ctl::run_command(options, proto::cmd::kVersion, json::object(), [](const json& r) {
            return ctl::render_version(r, proto::kSoftwareVersion);
        });
    }
    if (*status) {
        return ctl::run_command(options, proto::cmd::kStatus, json::object(), ctl::render_status);
    }
    if (*stats) {
        if (watch_opt->count() > 0) {
            // A bare --watch leaves no result (and CLI11 then stores 0 in
            // watch_sec): use the documented default interval.
            const auto& given = watch_opt->results();
            if (given.empty() || given.front().empty()) watch_sec = kDefaultWatchSec;
            return ctl::run_stats_watch(options, to_ms(watch_sec));
        }
        return ctl::run_command(options, proto::cmd::kStats, json::object(),
                                [](const json& r) { return ctl::render_stats(r); });
    }
    if (*connections) {
        json args = json::object();
        if (port_opt->count() > 0) args["port"] = port;
        if (limit_opt->count() > 0) args["limit"] = limit;
        return ctl::run_command(options, proto::cmd::kConnections, std::move(args),
                                ctl::render_connections);
    }
    if (*flush) {
        json args = json::object();
        if (force) args["force"] = true;
        if (wait_opt->count() > 0) args["wait_ms"] = to_ms(wait_sec).count();
        if (timeout_opt->count() == 0) {
            // The daemon may legitimately take the whole --wait; do not give up first.
            double sec = kFlushMapTimeoutSec;
            if (wait_opt->count() > 0) sec = std::max(sec, wait_sec + kFlushWaitSlackSec);
            options.timeout = to_ms(sec);
        }
        return ctl::run_command(options, proto::cmd::kFlushMap, std::move(args),
                                [force](const json& r) { return ctl::render_flush(r, force); });
    }
    if (*attach) {
        return ctl::run_command(options, proto::cmd::kAttach, json::object(),
                                [](const json& r) { return ctl::render_attach(r, true); });
    }
    if (*detach) {
        return ctl::run_command(options, proto::cmd::kDetach, json::object(),
                                [](const json& r) { return ctl::render_attach(r, false); });
    }
    if (*reload) {
        return ctl::run_command(options, proto::cmd::kReload, json::object(), ctl::render_reload);
    }
    if (*policy_show) {
        return ctl::run_command(options, proto::cmd::kPolicyShow, json::object(),
                                ctl::render_policy);
    }
    if (*policy_set) {
        auto usage = [](const std::string& msg) {
            std::cerr << "sockaccelctl: policy set: " << msg << "\n";
            return ctl::kExitUsage;
        };
        std::size_t given_rules = 0;
        for (const auto& [flag, values] : rule_args) given_rules += values.size();
        const int sources = (given_rules > 0) + (policy_file_opt->count() > 0) + (clear_opt->count() > 0);
        if (sources > 1 || (sources == 0 && scope_opt->count() == 0))
            return usage("give rules (--include-*/--exclude-*), or --file, or --clear (one of them), "
                         "and/or --scope");
        if (policy_wait_opt->count() > 0 && !apply_existing)
            return usage("--wait goes with --apply-existing");
        json doc = json::object();
        if (policy_file_opt->count() > 0) {
            std::ostringstream text;
            if (policy_file == "-") {
                text << std::cin.rdbuf();
            } else {
                std::ifstream in(policy_file);
                if (!in) return usage("cannot read " + policy_file);
                text << in.rdbuf();
            }
            doc = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
            if (doc.is_discarded()) return usage(policy_file + ": not valid JSON");
            // The whole config file is accepted too: its "policy" member.
            if (doc.is_object() && doc.contains("policy")) doc = doc["policy"];
        } else {
            for (const auto& [flag, values] : rule_args) {
                if (values.empty()) continue;
                const auto dash = flag.find('-', 2);
                const std::string side = flag.substr(2, dash - 2);
                std::string kind = flag.substr(dash + 1) + "s";
                for (const auto& v : values) {
                    if (kind == "units") {
                        auto cgroup = proto::unit_cgroup(v);
                        if (!cgroup) return usage(cgroup.error());
                        doc[side]["cgroups"].push_back(*cgroup);
                    } else {
                        doc[side][kind].push_back(v);
                    }
                }
            }
        }
        // Checked here with the daemon's own rules (proto/), so a typo is a
        // usage error and never reaches the daemon.
        if (scope_opt->count() > 0) doc["scope"] = scope;
        auto parsed = proto::parse_policy(doc, "policy");
        if (!parsed) return usage(parsed.error());
        json sent = proto::policy_to_json(*parsed);
        // No scope given: the daemon keeps the one in force.
        if (!parsed->scope) sent.erase("scope");
        json args{{"policy", std::move(sent)}};
        if (apply_existing) args["apply_existing"] = true;
        if (policy_wait_opt->count() > 0) args["wait_ms"] = to_ms(wait_sec).count();
        if (apply_existing && timeout_opt->count() == 0) {
            double sec = kFlushMapTimeoutSec;
            if (policy_wait_opt->count() > 0) sec = std::max(sec, wait_sec + kFlushWaitSlackSec);
            options.timeout = to_ms(sec);
        }
        return ctl::run_command(options, proto::cmd::kPolicySet, std::move(args),
                                ctl::render_policy_set);
    }
    if (*policy) {
        std::cerr << "sockaccelctl: policy: show or set?\nRun with --help for more information.\n";
        return ctl::kExitUsage;
    }
    // Not require_subcommand(1): with it CLI11 reports a mistyped command
    // as "A subcommand is required" instead of naming the unexpected word.
    std::cerr << "sockaccelctl: a subcommand is required\nRun with --help for more information.\n";
    return ctl::kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        // Nothing should throw past the renderers; if something does, still
        // say what happened instead of aborting.
        std::cerr << "sockaccelctl: internal error: " << e.what() << '\n';
        return ctl::kExitUnreachable;
    }
}
