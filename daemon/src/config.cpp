// SPDX-License-Identifier: Apache-2.0
#include "config.h"

#include "metrics_server.h"

#include <array>
#include <fstream>
#include <sstream>

namespace sockaccel {
namespace {

using nlohmann::json;

// Collects the first error; parsing stops reporting after it so the one line
// the operator sees is the first thing wrong in the file.
class Parser {
public:
    explicit Parser(std::string_view source) : source_(source) {}

    bool failed() const { return !error_.empty(); }
    const std::string& error() const { return error_; }

    void fail(std::string_view key, std::string_view what) {
        if (failed()) return;
        error_ = std::string(source_) + ": key \"" + std::string(key) + "\": " + std::string(what);
    }

    // Rejects keys of `obj` not in `known`.
    template <std::size_t N>
    void check_keys(const json& obj, std::string_view prefix,
                    const std::array<std::string_view, N>& known) {
        for (const auto& [k, v] : obj.items()) {
            bool ok = false;
            for (auto name : known) ok = ok || name == k;
            if (!ok) {
                if (failed()) return;
                error_ = std::string(source_) + ": unknown key \"" + join(prefix, k) + "\"";
                return;
            }
        }
    }

    void string(const json& obj, std::string_view prefix, std::string_view key, std::string& out,
                bool allow_empty) {
        auto it = obj.find(std::string(key));
        if (it == obj.end()) return;
        if (!it->is_string()) return fail(join(prefix, key), "must be a string");
        auto value = it->get<std::string>();
        if (!allow_empty && value.empty()) return fail(join(prefix, key), "must not be empty");
        if (value.find('\0') != std::string::npos)
            return fail(join(prefix, key), "must not contain NUL");
        out = std::move(value);
    }

    // `zero_ok`: 0 is accepted too, below `min` (it means "off").
    template <typename T>
    void integer(const json& obj, std::string_view prefix, std::string_view key, T& out,
                 std::uint64_t min, std::uint64_t max, bool zero_ok = false) {
        auto it = obj.find(std::string(key));
        if (it == obj.end()) return;
        auto name = join(prefix, key);
        const std::string range = (zero_ok ? "0 or " : "") + std::string("an integer between ") +
                                  std::to_string(min) + " and " + std::to_string(max);
        if (!it->is_number_integer()) return fail(name, "must be " + range);
        if (zero_ok && it->get<std::int64_t>() == 0) {
            out = 0;
            return;
        }
        if (it->is_number_unsigned() ? (it->get<std::uint64_t>() < min ||
                                        it->get<std::uint64_t>() > max)
                                     : (it->get<std::int64_t>() < static_cast<std::int64_t>(min) ||
                                        it->get<std::int64_t>() > static_cast<std::int64_t>(max)))
            return fail(name, "must be " + range);
        out = static_cast<T>(it->get<std::int64_t>());
    }

    void boolean(const json& obj, std::string_view prefix, std::string_view key, bool& out) {
        auto it = obj.find(std::string(key));
        if (it == obj.end()) return;
        if (!it->is_boolean()) return fail(join(prefix, key), "must be true or false");
        out = it->get<bool>();
    }

    const json* object(const json& obj, std::string_view key) {
        auto it = obj.find(std::string(key));
        if (it == obj.end()) return nullptr;
        if (!it->is_object()) {
            fail(key, "must be an object");
            return nullptr;
        }
        return &*it;
    }

private:
    static std::string join(std::string_view prefix, std::string_view key) {
        return prefix.empty() ? std::string(key) : std::string(prefix) + "." + std::string(key);
    }

    std::string_view source_;
    std::string error_;
};

bool is_absolute_path(const std::string& p) { return !p.empty() && p.front() == '/'; }

}  // namespace

bool is_valid_log_level(std::string_view level) {
    for (auto name : {"trace", "debug", "info", "warn", "error", "critical", "off"})
        if (level == name) return true;
    return false;
}

tl::expected<Config, std::string> parse_config(std::string_view text, std::string_view source) {
    // Non-throwing parse: a config file is input, and input never crashes us.
    json doc = json::parse(text, nullptr, /*allow_exceptions=*/false, /*ignore_comments=*/false);
    if (doc.is_discarded())
        return tl::unexpected(std::string(source) + ": not valid JSON");
    if (!doc.is_object())
        return tl::unexpected(std::string(source) + ": the top level must be a JSON object");

    Config cfg;
    Parser p(source);
    p.check_keys(doc, "",
                 std::array<std::string_view, 9>{"cgroup", "pin_dir", "map_size", "log_level",
                                                 "control", "drain", "redirect", "policy",
                                                 "metrics"});
    p.string(doc, "", "cgroup", cfg.cgroup, /*allow_empty=*/true);
    p.string(doc, "", "pin_dir", cfg.pin_dir, false);
    if (!p.failed() && !is_absolute_path(cfg.pin_dir)) p.fail("pin_dir", "must be an absolute path");
    p.integer(doc, "", "map_size", cfg.map_size, 1, kMaxMapSize);
    p.string(doc, "", "log_level", cfg.log_level, false);
    if (!p.failed() && !is_valid_log_level(cfg.log_level))
        p.fail("log_level", "must be one of trace, debug, info, warn, error, critical, off");

    if (const json* control = p.object(doc, "control")) {
        p.check_keys(*control, "control",
                     std::array<std::string_view, 5>{"socket", "group", "admin_group",
                                                     "max_clients", "idle_timeout_sec"});
        p.string(*control, "control", "socket", cfg.control.socket, false);
        if (!p.failed() && !is_absolute_path(cfg.control.socket))
            p.fail("control.socket", "must be an absolute path");
        // sun_path holds 108 bytes including the terminating NUL.
        if (!p.failed() && cfg.control.socket.size() > 107)
            p.fail("control.socket", "must be at most 107 bytes long");
        p.string(*control, "control", "group", cfg.control.group, true);
        p.string(*control, "control", "admin_group", cfg.control.admin_group, true);
        p.integer(*control, "control", "max_clients", cfg.control.max_clients, 1, 65536);
        p.integer(*control, "control", "idle_timeout_sec", cfg.control.idle_timeout_sec, 1, 86400);
    }
    if (const json* drain = p.object(doc, "drain")) {
        p.check_keys(*drain, "drain",
                     std::array<std::string_view, 2>{"stop_timeout_sec", "backend"});
        p.integer(*drain, "drain", "stop_timeout_sec", cfg.drain.stop_timeout_sec, 0, 3600);
        std::string backend = "auto";
        p.string(*drain, "drain", "backend", backend, false);
        cfg.drain.backend = parse_drain_backend(backend);
        if (!p.failed() && backend != "auto" && !cfg.drain.backend)
            p.fail("drain.backend", "must be one of auto, sockhash, task_file, tcp");
    }
    if (const json* redirect = p.object(doc, "redirect")) {
        p.check_keys(*redirect, "redirect",
                     std::array<std::string_view, 4>{"max_unread_bytes", "demote",
                                                     "demote_small_write_bytes",
                                                     "demote_held_sends"});
        p.boolean(*redirect, "redirect", "demote", cfg.redirect.demote);
        p.integer(*redirect, "redirect", "demote_small_write_bytes",
                  cfg.redirect.demote_small_write_bytes, 1, kMaxDemoteSmallWriteBytes,
                  /*zero_ok=*/true);
        p.integer(*redirect, "redirect", "demote_held_sends", cfg.redirect.demote_held_sends, 1,
                  kMaxDemoteHeldSends, /*zero_ok=*/true);
        auto it = redirect->find("max_unread_bytes");
        if (it != redirect->end() && !(it->is_string() && *it == "auto")) {
            if (it->is_string())
                p.fail("redirect.max_unread_bytes", "must be \"auto\" or an integer");
            std::uint64_t limit = 0;
            p.integer(*redirect, "redirect", "max_unread_bytes", limit, kMinMaxUnreadBytes,
                      kMaxMaxUnreadBytes, /*zero_ok=*/true);
            cfg.redirect.max_unread_bytes = limit;
        }
    }
    if (const json* metrics = p.object(doc, "metrics")) {
        p.check_keys(*metrics, "metrics", std::array<std::string_view, 1>{"listen"});
        p.string(*metrics, "metrics", "listen", cfg.metrics.listen, /*allow_empty=*/true);
        if (!p.failed() && !cfg.metrics.listen.empty())
            if (auto ep = parse_listen_address(cfg.metrics.listen); !ep)
                p.fail("metrics.listen", ep.error());
    }
    if (auto it = doc.find("policy"); it != doc.end() && !p.failed()) {
        auto policy = parse_policy(*it, "policy");
        if (!policy) return tl::unexpected(std::string(source) + ": " + policy.error());
        cfg.policy = std::move(*policy);
    }
    if (p.failed()) return tl::unexpected(p.error());
    return cfg;
}

tl::expected<Config, std::string> load_config_file(const std::string& path, bool missing_ok) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        int err = errno;
        if (err == ENOENT && missing_ok) return Config{};
        return tl::unexpected(path + ": cannot read: " + std::generic_category().message(err));
    }
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) return tl::unexpected(path + ": read error");
    return parse_config(text.str(), path);
}

void apply_overrides(Config& config, const ConfigOverrides& o) {
    if (o.cgroup) config.cgroup = *o.cgroup;
    if (o.pin_dir) config.pin_dir = *o.pin_dir;
    if (o.socket) config.control.socket = *o.socket;
    if (o.map_size) config.map_size = *o.map_size;
    if (o.log_level) config.log_level = *o.log_level;
    if (o.drain_backend) config.drain.backend = *o.drain_backend;
    if (o.scope) config.policy.scope = *o.scope;
    config.policy.scope = config.policy.effective_scope();
}

nlohmann::json config_to_json(const Config& c) {
    return {
        {"cgroup", c.cgroup},
        {"pin_dir", c.pin_dir},
        {"map_size", c.map_size},
        {"log_level", c.log_level},
        {"control",
         {{"socket", c.control.socket},
          {"group", c.control.group},
          {"admin_group", c.control.admin_group},
          {"max_clients", c.control.max_clients},
          {"idle_timeout_sec", c.control.idle_timeout_sec}}},
        {"drain",
         {{"stop_timeout_sec", c.drain.stop_timeout_sec},
          {"backend", c.drain.backend ? std::string(to_string(*c.drain.backend)) : "auto"}}},
        {"redirect",
         {{"max_unread_bytes", c.redirect.max_unread_bytes ? json(*c.redirect.max_unread_bytes)
                                                           : json("auto")},
          {"demote", c.redirect.demote},
          {"demote_small_write_bytes", c.redirect.demote_small_write_bytes},
          {"demote_held_sends", c.redirect.demote_held_sends}}},
        {"policy", policy_to_json(c.policy)},
        {"metrics", {{"listen", c.metrics.listen}}},
    };
}

}  // namespace sockaccel
