// SPDX-License-Identifier: Apache-2.0
#include "render.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "format.h"
#include "sockaccel/proto/protocol.h"

namespace sockaccel::ctl {

using nlohmann::json;

namespace {

// The data-plane counters in the order people read them: the protocol's
// order, with the add_failed total ahead of its reasons. Counters not listed
// here still appear in `stats`, after these, so a newer daemon's additions
// are not hidden.
const std::vector<std::string_view>& counter_order() {
    static const std::vector<std::string_view> order = [] {
        std::vector<std::string_view> v(proto::kCounterNames.begin(), proto::kCounterNames.end());
        v.insert(v.begin() + 1, proto::kCounterAddFailed);
        return v;
    }();
    return order;
}

// Counters for which watch mode computes a per-second rate.
constexpr std::array<std::string_view, 5> kRateCounters = {
    "redirect_msgs", "redirect_bytes", "pass_msgs", "pass_bytes", "sockets_added",
};

const json* find_member(const json& obj, std::string_view key) {
    if (!obj.is_object()) return nullptr;
    auto it = obj.find(std::string(key));
    return it == obj.end() ? nullptr : &*it;
}

// Compact JSON that cannot throw on odd strings (parsed input is valid UTF-8
// already, but this keeps the no-throw promise unconditional).
std::string dump_compact(const json& value) {
    return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string u64_or(const std::optional<std::uint64_t>& v, std::string_view fallback = "?") {
    return v ? thousands(*v) : std::string(fallback);
}

std::string join(const std::vector<std::string>& items, std::string_view sep) {
    std::string out;
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (i > 0) out += sep;
        out += items[i];
    }
    return out;
}

// Strings of a JSON array (other elements are skipped).
std::vector<std::string> string_items(const json& obj, std::string_view key) {
    std::vector<std::string> out;
    const json* arr = find_member(obj, key);
    if (arr == nullptr || !arr->is_array()) return out;
    for (const json& item : *arr) {
        if (item.is_string()) out.push_back(item.get<std::string>());
    }
    return out;
}

// "10 / 65,536 entries (0.0%)"; empty when neither number is present.
std::string map_usage(const json& map) {
    auto entries = get_u64(map, "entries");
    auto capacity = get_u64(map, "capacity");
    if (!entries && !capacity) return "";
    std::string out = u64_or(entries) + " / " + u64_or(capacity);
    out += " entries";
    if (entries && capacity && *capacity > 0) {
        out += " (" +
               fixed(100.0 * static_cast<double>(*entries) / static_cast<double>(*capacity), 1) +
               "%)";
    }
    return out;
}

std::string on_off(const std::optional<bool>& v) { return v ? (*v ? "on" : "off") : "?"; }

// "key=value" lines of a (nested) config object, nested keys joined by ".".
void flatten_config(const json& obj, const std::string& prefix, std::vector<std::string>& out,
                    std::size_t depth = 0) {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
        std::string key = prefix.empty() ? it.key() : prefix + "." + it.key();
        const json& value = it.value();
        // The protocol caps nesting at 64, so the depth check is belt and braces.
        if (value.is_object() && !value.empty() && depth < 16) {
            flatten_config(value, key, out, depth + 1);
        } else if (value.is_string() && !value.get_ref<const std::string&>().empty()) {
            // Raw, unquoted: paths and names read better that way. Empty
            // strings stay quoted so "unset" is visible.
            out.push_back(key + "=" + value.get<std::string>());
        } else {
            out.push_back(key + "=" + dump_compact(value));
        }
    }
}

std::string sockets_row(const json& counters) {
    std::string out = u64_or(get_u64(counters, "sockets_added")) + " added";
    auto failed = get_u64(counters, "add_failed");
    auto full = get_u64(counters, "add_failed_map_full");
    auto other = get_u64(counters, "add_failed_other");
    if (!failed && full && other) failed = *full + *other;
    if (failed) {
        out += "; " + thousands(*failed) + " add failed";
        if (*failed > 0 && (full || other)) {
            std::vector<std::string> reasons;
            if (full) reasons.push_back(thousands(*full) + " map full");
            if (other) reasons.push_back(thousands(*other) + " other");
            out += " (" + join(reasons, ", ") + ")";
        }
    }
    auto disabled = get_u64(counters, "add_skipped_disabled");
    auto data_sent = get_u64(counters, "add_skipped_data_sent");
    std::uint64_t skipped = disabled.value_or(0) + data_sent.value_or(0);
    if (skipped > 0) {
        std::vector<std::string> reasons;
        if (disabled.value_or(0) > 0) reasons.push_back(thousands(*disabled) + " insert disabled");
        if (data_sent.value_or(0) > 0) {
            reasons.push_back(thousands(*data_sent) + " data already sent");
        }
        out += "; " + thousands(skipped) + " skipped (" + join(reasons, ", ") + ")";
    }
    return out;
}

// "N msgs, X" for a msgs/bytes counter pair; empty when both are missing.
std::string msgs_bytes(const json& counters, std::string_view msgs_key,
                       std::string_view bytes_key) {
    auto msgs = get_u64(counters, msgs_key);
    auto bytes = get_u64(counters, bytes_key);
    if (!msgs && !bytes) return "";
    return u64_or(msgs) + " msgs, " + (bytes ? human_bytes(*bytes) : std::string("?"));
}

std::string pending_bytes_text(const json& obj) {
    auto bytes = get_u64(obj, "pending_bytes");
    if (!bytes) return "? bytes";
    // Without exact accounting the daemon reports what it could see, which
    // is a lower bound.
    bool exact = get_bool(obj, "pending_bytes_exact").value_or(true);
    return (exact ? "" : "at least ") + human_bytes(*bytes);
}

// ", 1 the walk cannot reach" when a drain backend missed sockets.
std::string unreached_text(const json& obj) {
    auto unreached = get_u64(obj, "unreached");
    if (!unreached || *unreached == 0) return "";
    return ", " + thousands(*unreached) + " the walk cannot reach";
}

std::string drain_row(const json& drain) {
    auto active = get_bool(drain, "active");
    auto pending = get_u64(drain, "pending");
    if (!active && !pending) return "";
    std::string out = !active.value_or(false) && pending.value_or(0) == 0
                          ? std::string("idle")
                          : "draining: " +
                                (pending ? count_noun(*pending, "socket") : std::string("? sockets")) +
                                ", " + pending_bytes_text(drain) + " pending" +
                                unreached_text(drain);
    // Which walk the drain uses, and what it cannot see (drain_backend.h).
    if (auto backend = get_string(drain, "backend")) {
        out += "; backend " + *backend;
        if (auto iterator = get_string(drain, "iterator")) out += " (" + *iterator + ")";
        if (auto blind = get_string(drain, "cannot_see")) out += ", cannot see " + *blind;
    }
    return out;
}

// State an upgrade retired (another ABI version's maps, kept pinned until
// their sockets close): one line each; empty when there is none, which is
// the normal case.
std::string retired_row(const json& result) {
    const json* retired = find_member(result, "retired");
    if (retired == nullptr || !retired->is_array()) return "";
    std::vector<std::string> lines;
    for (const json& r : *retired) {
        auto abi = get_u64(r, "abi_version");
        auto sockets = get_u64(r, "sockets");
        lines.push_back("ABI " + (abi ? std::to_string(*abi) : std::string("?")) + ", " +
                        (sockets ? count_noun(*sockets, "socket") : std::string("? sockets")) +
                        " until they close, in " + get_string(r, "dir").value_or("?"));
    }
    return join(lines, "\n");
}

std::string features_row(const json& features) {
    if (!features.is_object() || features.empty()) return "";
    std::vector<std::string> on;
    std::vector<std::string> off;
    for (auto it = features.begin(); it != features.end(); ++it) {
        if (!it.value().is_boolean()) continue;
        (it.value().get<bool>() ? on : off).push_back(it.key());
    }
    std::string out = on.empty() ? std::string("none") : join(on, ", ");
    if (!off.empty()) out += "; unavailable: " + join(off, ", ");
    return out;
}

std::string kernel_issues_row(const json& result) {
    const json* issues = find_member(result, "kernel_issues");
    if (issues == nullptr || !issues->is_array()) return "";
    std::vector<std::string> lines;
    for (const json& issue : *issues) {
        auto id = get_string(issue, "id");
        auto summary = get_string(issue, "summary");
        if (!id && !summary) continue;
        // The daemon lists every issue it tests for; show the ones found,
        // and say so when the test could not tell.
        const json* detected = find_member(issue, "detected");
        if (detected && detected->is_boolean() && !detected->get<bool>()) continue;
        std::string line = id.value_or("?");
        if (detected && detected->is_null()) line += " (not determined)";
        if (summary) line += ": " + *summary;
        lines.push_back(std::move(line));
    }
    return lines.empty() ? std::string("none") : join(lines, "\n");
}

}  // namespace

std::optional<std::uint64_t> get_u64(const json& obj, std::string_view key) {
    const json* v = find_member(obj, key);
    if (v == nullptr) return std::nullopt;
    if (v->is_number_unsigned()) return v->get<std::uint64_t>();
    if (v->is_number_integer()) {
        auto i = v->get<std::int64_t>();
        if (i >= 0) return static_cast<std::uint64_t>(i);
        return std::nullopt;
    }
    if (v->is_number_float()) {
        double d = v->get<double>();
        // Exclusive upper bound: 2^64 itself does not fit.
        if (d >= 0 && d < 18446744073709551616.0 && std::floor(d) == d) {
            return static_cast<std::uint64_t>(d);
        }
    }
    return std::nullopt;
}

std::optional<double> get_double(const json& obj, std::string_view key) {
    const json* v = find_member(obj, key);
    if (v == nullptr || !v->is_number()) return std::nullopt;
    return v->get<double>();
}

std::optional<bool> get_bool(const json& obj, std::string_view key) {
    const json* v = find_member(obj, key);
    if (v == nullptr || !v->is_boolean()) return std::nullopt;
    return v->get<bool>();
}

std::optional<std::string> get_string(const json& obj, std::string_view key) {
    const json* v = find_member(obj, key);
    if (v == nullptr || !v->is_string()) return std::nullopt;
    return v->get<std::string>();
}

const json& get_object(const json& obj, std::string_view key) {
    static const json kEmpty = json::object();
    const json* v = find_member(obj, key);
    return v != nullptr && v->is_object() ? *v : kEmpty;
}

std::string render_ping(const json&) { return "pong\n"; }

std::string render_version(const json& result, std::string_view ctl_version) {
    auto version = get_string(result, "version");
    auto protocol = get_u64(result, "protocol");
    auto abi = get_u64(result, "abi");
    std::string out = "sockacceld " + version.value_or("?");
    std::vector<std::string> parts;
    if (protocol) parts.push_back("protocol " + std::to_string(*protocol));
    if (abi) parts.push_back("ABI " + std::to_string(*abi));
    if (!parts.empty()) out += " (" + join(parts, ", ") + ")";
    out += "; sockaccelctl " + std::string(ctl_version) + "\n";
    return out;
}

std::string render_status(const json& result) {
    // Header: "sockacceld 0.1.0 — running, pid 123, up 12s (kernel 6.18.44)".
    std::string out = "sockacceld " + get_string(result, "version").value_or("?") + " — running";
    if (auto pid = get_u64(result, "pid")) out += ", pid " + std::to_string(*pid);
    if (auto up = get_double(result, "uptime_sec")) out += ", up " + format_duration(*up);
    if (auto kernel = get_string(result, "kernel")) out += " (kernel " + *kernel + ")";
    out += "\n";

    std::vector<std::pair<std::string, std::string>> fields;
    auto add = [&](std::string label, std::string value) {
        if (!value.empty()) fields.emplace_back(std::move(label), std::move(value));
    };

    const json& attach = get_object(result, "attach");
    if (auto attached = get_bool(attach, "attached")) {
        std::string value = *attached ? "yes" : "no";
        std::vector<std::string> details;
        if (*attached) {
            if (auto cgroup = get_string(attach, "cgroup")) details.push_back("cgroup " + *cgroup);
            if (get_bool(attach, "adopted").value_or(false)) {
                details.push_back("adopted from a previous run");
            }
        }
        if (!details.empty()) value += " (" + join(details, ", ") + ")";
        add("Attached", value);
    }
    add("Pin dir", get_string(attach, "pin_dir").value_or(""));
    {
        std::vector<std::string> progs;
        // Id 0 is never a valid BPF object id: it means "none".
        auto add_id = [&](std::string_view key, std::string_view name) {
            auto id = get_u64(attach, key);
            if (id && *id != 0) progs.push_back(std::string(name) + " id " + std::to_string(*id));
        };
        add_id("sockops_prog_id", "sockops");
        add_id("sk_msg_prog_id", "sk_msg");
        add_id("sockops_link_id", "link");
        add("Programs", join(progs, ", "));
    }

    const json& mode = get_object(result, "mode");
    if (find_member(mode, "insert") || find_member(mode, "redirect")) {
        add("Mode", "insert " + on_off(get_bool(mode, "insert")) + ", redirect " +
                        on_off(get_bool(mode, "redirect")));
    }

    {
        std::string map = map_usage(get_object(result, "map"));
        auto map_id = get_u64(attach, "sock_hash_map_id");
        if (!map.empty() && map_id && *map_id != 0) map += ", map id " + std::to_string(*map_id);
        add("Map", map);
    }

    const json& counters = get_object(result, "counters");
    if (!counters.empty()) {
        add("Sockets", sockets_row(counters));
        add("Redirected", msgs_bytes(counters, "redirect_msgs", "redirect_bytes"));
        std::string passed = msgs_bytes(counters, "pass_msgs", "pass_bytes");
        if (!passed.empty()) passed += " (not redirected)";
        add("Passed", passed);
        std::vector<std::string> misses;
        if (auto v = get_u64(counters, "redirect_misses")) {
            misses.push_back(thousands(*v) + (*v == 1 ? " redirect miss" : " redirect misses"));
        }
        if (auto v = get_u64(counters, "tcp_path_sockets")) {
            misses.push_back(count_noun(*v, "socket") + " on the TCP path");
        }
        if (auto v = get_u64(counters, "storage_missing"); v && *v > 0) {
            misses.push_back(thousands(*v) + " without socket storage");
        }
        add("Misses", join(misses, ", "));
        // Connections kept out: not local, or not in the policy.
        std::vector<std::string> out;
        if (auto v = get_u64(counters, "peer_not_local"); v && *v > 0)
            out.push_back(thousands(*v) + " with a remote or unaccelerated peer");
        if (auto v = get_u64(counters, "unclaimed_removed"); v && *v > 0)
            out.push_back(thousands(*v) + " unclaimed and removed");
        if (auto v = get_u64(counters, "policy_skipped"); v && *v > 0)
            out.push_back(thousands(*v) + " excluded by policy");
        if (!out.empty()) add("Not local", join(out, ", "));
    }
    {
        const json& policy = get_object(result, "policy");
        std::size_t rules = 0;
        for (const char* side : {"include", "exclude"})
            for (const char* kind : {"ports", "cidrs", "cgroups"})
                rules += string_items(get_object(get_object(policy, "policy"), side), kind).size();
        if (!policy.empty())
            add("Policy", rules == 0 ? std::string("none (every local connection)")
                                     : count_noun(rules, "rule") + " from " +
                                           get_string(policy, "source").value_or("?") +
                                           " (sockaccelctl policy show)");
    }

    add("Drain", drain_row(get_object(result, "drain")));
    add("Retired", retired_row(result));
    add("Features", features_row(get_object(result, "features")));
    add("Kernel issues", kernel_issues_row(result));

    const json& config = get_object(result, "config");
    if (!config.empty()) {
        std::vector<std::string> lines;
        flatten_config(config, "", lines);
        // Leading "\n": the label stands alone, key=value lines go below it.
        add("Config", "\n" + join(lines, "\n"));
    }

    return out + render_fields(fields);
}

std::string render_stats(const json& result, const json* rates) {
    const json& counters = get_object(result, "counters");
    std::vector<TableRow> rows;
    const bool with_rates = rates != nullptr;

    auto row_for = [&](const std::string& name) {
        auto value = get_u64(counters, name);
        if (!value) return;
        bool is_bytes = ends_with(name, "_bytes");
        TableRow row{name, is_bytes ? human_bytes(*value) : thousands(*value)};
        if (with_rates) {
            auto rate = get_double(*rates, name + "_per_sec");
            bool has_rate =
                std::find(kRateCounters.begin(), kRateCounters.end(), name) != kRateCounters.end();
            if (rate) {
                row.push_back(human_rate(*rate, is_bytes ? RateUnit::kBytes : RateUnit::kCount));
            } else {
                row.push_back(has_rate ? "-" : "");
            }
        }
        rows.push_back(std::move(row));
    };

    // The map's fill level first: it is what runs out. (status shows it as
    // a percentage.)
    const json& map = get_object(result, "map");
    for (std::string_view key : {"entries", "capacity"}) {
        if (auto v = get_u64(map, key)) {
            rows.push_back({"map_" + std::string(key), thousands(*v)});
            if (with_rates) rows.back().push_back("");
        }
    }
    const auto& order = counter_order();
    for (std::string_view name : order) row_for(std::string(name));
    for (auto it = counters.begin(); it != counters.end(); ++it) {
        if (std::find(order.begin(), order.end(), it.key()) == order.end()) {
            row_for(it.key());
        }
    }

    if (rows.empty()) return "no counters reported\n";
    TableRow header{"COUNTER", "VALUE"};
    std::vector<Align> align{Align::kLeft, Align::kRight, Align::kRight};
    if (with_rates) header.push_back("RATE");
    return render_table(rows, header, align);
}

json compute_rates(const json& previous, const json& current) {
    json rates = json::object();
    auto t0 = get_u64(previous, "timestamp_ms");
    auto t1 = get_u64(current, "timestamp_ms");
    if (!t0 || !t1 || *t1 <= *t0) return rates;
    std::uint64_t interval_ms = *t1 - *t0;
    rates["interval_ms"] = interval_ms;
    const json& c0 = get_object(previous, "counters");
    const json& c1 = get_object(current, "counters");
    for (std::string_view name : kRateCounters) {
        auto v0 = get_u64(c0, name);
        auto v1 = get_u64(c1, name);
        // A counter going backwards means a reset, not a negative rate.
        if (!v0 || !v1 || *v1 < *v0) continue;
        rates[std::string(name) + "_per_sec"] =
            static_cast<double>(*v1 - *v0) * 1000.0 / static_cast<double>(interval_ms);
    }
    return rates;
}

std::string render_connections(const json& result) {
    std::vector<TableRow> rows;
    const json* list = find_member(result, "connections");
    if (list != nullptr && list->is_array()) {
        for (const json& conn : *list) {
            if (!conn.is_object()) continue;
            auto port = [&](std::string_view key) {
                auto p = get_u64(conn, key);
                return static_cast<std::uint32_t>(std::min<std::uint64_t>(p.value_or(0), 65535));
            };
            auto cookie = get_u64(conn, "cookie");
            auto peer = get_u64(conn, "peer_cookie");
            rows.push_back({
                format_endpoint(get_string(conn, "local_addr").value_or("?"), port("local_port")),
                peer ? "⇄" : "→",
                format_endpoint(get_string(conn, "remote_addr").value_or("?"), port("remote_port")),
                cookie ? std::to_string(*cookie) : "?",
                peer ? std::to_string(*peer) : "-",
                get_string(conn, "state").value_or("?"),
                peer ? get_string(conn, "peer_state").value_or("?") : "-",
            });
        }
    }

    std::string out;
    if (!rows.empty()) {
        out = render_table(rows, {"LOCAL", "⇄/→", "REMOTE", "COOKIE", "PEER-COOKIE", "STATE", "PEER-STATE"});
    }
    std::uint64_t shown = get_u64(result, "shown").value_or(rows.size());
    std::uint64_t total = get_u64(result, "total").value_or(shown);
    out += thousands(shown) + " of " + count_noun(total, "socket") + " shown";
    if (get_bool(result, "truncated").value_or(false)) out += ", truncated";
    out += "\n";
    return out;
}

std::string render_flush(const json& result, bool force) {
    auto flushed = get_u64(result, "flushed");
    std::string out =
        "flushed " + (flushed ? count_noun(*flushed, "socket") : std::string("? sockets")) + "; ";
    auto pending = get_u64(result, "pending");
    if (pending && *pending == 0) {
        out += "none pending";
    } else {
        out += u64_or(pending) + " pending (" + pending_bytes_text(result) + " unread" +
               unreached_text(result) + ")";
        if (get_bool(result, "background").value_or(false)) out += ", draining in the background";
    }
    out += "\n";

    auto dropped = get_u64(result, "dropped_sockets");
    if (force || dropped.value_or(0) > 0) {
        if (dropped.value_or(0) == 0) {
            out += "dropped 0 sockets\n";
        } else {
            auto bytes = get_u64(result, "dropped_bytes");
            out += "dropped " + count_noun(*dropped, "socket") + " holding " +
                   (bytes ? human_bytes(*bytes) : std::string("?")) + " of unread data\n";
        }
    }
    return out;
}

std::string render_attach(const json& result, bool attach) {
    auto attached = get_bool(result, "attached");
    // A daemon that leaves "changed" out presumably changed something.
    bool changed = get_bool(result, "changed").value_or(true);
    if (attached && *attached != attach) {
        // Not what was asked for; say what the state is rather than guess.
        return std::string(*attached ? "still attached" : "still detached") + "\n";
    }
    if (attach) {
        return changed ? "attached: new connections are accelerated\n" : "already attached\n";
    }
    return changed ? "detached: new connections are no longer accelerated\n" : "already detached\n";
}

std::string render_reload(const json& result) {
    if (get_bool(result, "reloaded") == std::optional<bool>(false)) {
        return "configuration not reloaded\n";
    }
    std::vector<std::string> applied = string_items(result, "applied");
    std::vector<std::string> restart = string_items(result, "restart_required");
    std::string out = "reloaded configuration";
    if (applied.empty() && restart.empty()) out += " (no changes)";
    out += "\n";
    for (const std::string& key : applied) out += "  applied: " + key + "\n";
    if (!restart.empty()) {
        out += "warning: restart sockacceld to apply: " + join(restart, ", ") + "\n";
    }
    return out;
}

std::string render_policy(const json& result) {
    std::string out = "Policy from " + get_string(result, "source").value_or("?") + "\n";
    const json& policy = get_object(result, "policy");
    std::vector<std::pair<std::string, std::string>> fields;
    for (const char* side : {"include", "exclude"}) {
        const json& rules = get_object(policy, side);
        for (const char* kind : {"ports", "cidrs", "cgroups"}) {
            std::vector<std::string> items = string_items(rules, kind);
            if (!items.empty()) fields.emplace_back(std::string(side) + " " + kind, join(items, ", "));
        }
    }
    if (fields.empty()) return out + "  none: every local connection may be accelerated\n";
    return out + render_fields(fields);
}

std::string render_policy_set(const json& result) {
    std::string out = get_bool(result, "changed") == std::optional<bool>(false)
                          ? "policy unchanged (new connections)\n"
                          : "policy set for new connections (until the next reload or restart)\n";
    if (result.contains("apply_existing") && result["apply_existing"].is_object()) {
        // get_u64, not json::value(): a mistyped member must not throw
        // (render.h: rendering never throws).
        const json& a = result["apply_existing"];
        out += "existing connections now outside the policy: " + u64_or(get_u64(a, "flushed")) +
               " moved to TCP";
        if (get_u64(a, "pending").value_or(0) > 0)
            out += ", " + u64_or(get_u64(a, "pending")) +
                   " pending (unread data; finishing in the background)";
        out += "\n";
    }
    return out;
}

std::string render_error(std::string_view code, std::string_view message) {
    return std::string(message) + " (" + std::string(code) + ")";
}

}  // namespace sockaccel::ctl
