// SPDX-License-Identifier: Apache-2.0
#include "sockaccel/proto/policy.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>

namespace sockaccel::proto {
namespace {

using nlohmann::json;

constexpr std::array<std::uint8_t, 12> kV4MappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

std::optional<std::uint32_t> parse_uint(std::string_view text, std::uint32_t max) {
    if (text.empty() || text.size() > 10) return std::nullopt;
    std::uint32_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size() || v > max) return std::nullopt;
    return v;
}

bool is_v4_mapped(const Cidr& c) {
    return c.prefix_len >= 96 && std::equal(kV4MappedPrefix.begin(), kV4MappedPrefix.end(), c.addr.begin());
}

// Entries quoted in errors are cut, so a huge value cannot make a huge line.
std::string quote_cut(std::string_view text) {
    constexpr std::size_t kMax = 64;
    return "\"" + std::string(text.substr(0, kMax)) + (text.size() > kMax ? "...\"" : "\"");
}

class RulesParser {
public:
    explicit RulesParser(std::string where) : where_(std::move(where)) {}

    tl::expected<PolicyRules, std::string> parse(const json& j) {
        if (!j.is_object()) return fail(where_, "must be an object");
        for (const auto& [key, value] : j.items()) {
            if (key != "ports" && key != "cidrs" && key != "cgroups")
                return fail(where_, "unknown key " + quote_cut(key) + " (known: ports, cidrs, cgroups)");
            if (!value.is_array()) return fail(where_ + "." + key, "must be an array");
        }
        PolicyRules rules;
        if (auto e = each(j, "ports", kMaxPolicyPortRanges, rules.ports, parse_port_entry)) return *e;
        if (auto e = each(j, "cidrs", kMaxPolicyCidrs, rules.cidrs, parse_cidr_entry)) return *e;
        if (auto e = each(j, "cgroups", kMaxPolicyCgroups, rules.cgroups, parse_cgroup_entry))
            return *e;
        return rules;
    }

private:
    // One entry of a list: its value, or the message after "<where>[i]: ".
    template <typename T>
    using Entry = tl::expected<T, std::string>;

    static Entry<PortRange> parse_port_entry(const json& e) {
        std::string text;
        if (e.is_number_integer())
            text = e.is_number_unsigned() ? std::to_string(e.get<std::uint64_t>())
                                          : std::to_string(e.get<std::int64_t>());
        else if (e.is_string())
            text = e.get<std::string>();
        else
            return tl::unexpected(std::string("must be a port number or a string like \"8000-8100\""));
        auto range = parse_port_range(text);
        if (!range) return tl::unexpected(quote_cut(text) + ": " + range.error());
        return *range;
    }

    static Entry<Cidr> parse_cidr_entry(const json& e) {
        if (!e.is_string()) return tl::unexpected(std::string("must be a string like \"10.0.0.0/8\""));
        const auto text = e.get<std::string>();
        auto cidr = parse_cidr(text);
        if (!cidr) return tl::unexpected(quote_cut(text) + ": " + cidr.error());
        return *cidr;
    }

    static Entry<std::string> parse_cgroup_entry(const json& e) {
        if (!e.is_string()) return tl::unexpected(std::string("must be a string (a cgroup path)"));
        auto path = e.get<std::string>();
        if (path.empty() || path.front() != '/' || path.find('\0') != std::string::npos ||
            path.find("/../") != std::string::npos || path.ends_with("/..") || path.size() > 4096)
            return tl::unexpected(quote_cut(path) +
                                  ": must be an absolute path below the cgroup v2 root, "
                                  "like \"/system.slice/nginx.service\"");
        while (path.size() > 1 && path.back() == '/') path.pop_back();
        return path;
    }

    // Parses the list `key` of `j` (if present) into `out`, entry by entry;
    // the first error, naming the entry.
    template <typename T, typename Parse>
    std::optional<tl::unexpected<std::string>> each(const json& j, const char* key,
                                                    std::size_t max, std::vector<T>& out,
                                                    Parse parse) const {
        auto it = j.find(key);
        if (it == j.end()) return std::nullopt;
        const std::string list = where_ + "." + key;
        if (it->size() > max) return fail(list, "at most " + std::to_string(max) + " entries");
        for (std::size_t i = 0; i < it->size(); ++i) {
            auto value = parse((*it)[i]);
            if (!value) return fail(list + "[" + std::to_string(i) + "]", value.error());
            out.push_back(std::move(*value));
        }
        return std::nullopt;
    }

    static tl::unexpected<std::string> fail(const std::string& name, const std::string& what) {
        return tl::unexpected(name + ": " + what);
    }
    std::string where_;
};

}  // namespace

tl::expected<PortRange, std::string> parse_port_range(std::string_view text) {
    const auto dash = text.find('-');
    const auto first = parse_uint(text.substr(0, dash), 65535);
    const auto last = dash == std::string_view::npos ? first : parse_uint(text.substr(dash + 1), 65535);
    if (!first || !last) return tl::unexpected(std::string("must be a port (1-65535) or a range like 8000-8100"));
    if (*first == 0 || *last == 0) return tl::unexpected(std::string("port 0 is not a port"));
    if (*first > *last) return tl::unexpected(std::string("the range is reversed"));
    return PortRange{static_cast<std::uint16_t>(*first), static_cast<std::uint16_t>(*last)};
}

tl::expected<Cidr, std::string> parse_cidr(std::string_view text) {
    const auto slash = text.find('/');
    const std::string addr(text.substr(0, slash));
    Cidr c;
    int max_len = 0;
    in_addr a4{};
    in6_addr a6{};
    if (::inet_pton(AF_INET, addr.c_str(), &a4) == 1) {
        std::copy(kV4MappedPrefix.begin(), kV4MappedPrefix.end(), c.addr.begin());
        std::memcpy(&c.addr[12], &a4, 4);
        max_len = 32;
    } else if (::inet_pton(AF_INET6, addr.c_str(), &a6) == 1) {
        std::memcpy(c.addr.data(), &a6, 16);
        max_len = 128;
        if (std::equal(kV4MappedPrefix.begin(), kV4MappedPrefix.end(), c.addr.begin()))
            return tl::unexpected(std::string("write IPv4-mapped addresses as IPv4"));
    } else {
        return tl::unexpected(std::string("not an IPv4 or IPv6 address"));
    }
    int len = max_len;
    if (slash != std::string_view::npos) {
        const auto l = parse_uint(text.substr(slash + 1), 128);
        if (!l || static_cast<int>(*l) > max_len)
            return tl::unexpected("the prefix length must be 0-" + std::to_string(max_len));
        len = static_cast<int>(*l);
    }
    const int total = len + (max_len == 32 ? 96 : 0);
    // Host bits set is almost always a typo ("10.1.2.3/8"): refuse it rather
    // than guess which network was meant.
    for (int bit = total; bit < 128; ++bit)
        if (c.addr[bit / 8] & (0x80 >> (bit % 8)))
            return tl::unexpected(std::string("has host bits set beyond the prefix length"));
    c.prefix_len = static_cast<std::uint8_t>(total);
    return c;
}

std::string cidr_to_string(const Cidr& c) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (is_v4_mapped(c)) {
        ::inet_ntop(AF_INET, &c.addr[12], buf, sizeof buf);
        return std::string(buf) + "/" + std::to_string(c.prefix_len - 96);
    }
    ::inet_ntop(AF_INET6, c.addr.data(), buf, sizeof buf);
    return std::string(buf) + "/" + std::to_string(c.prefix_len);
}

tl::expected<Policy, std::string> parse_policy(const json& j, std::string_view where) {
    const std::string w(where);
    if (!j.is_object()) return tl::unexpected(w + ": must be an object");
    for (const auto& [key, value] : j.items())
        if (key != "include" && key != "exclude" && key != "scope")
            return tl::unexpected(w + ": unknown key " + quote_cut(key) +
                                  " (known: scope, include, exclude)");
    Policy p;
    if (auto it = j.find("scope"); it != j.end()) {
        if (!it->is_string()) return tl::unexpected(w + ".scope: must be a string");
        auto scope = parse_scope(it->get<std::string>());
        if (!scope) return tl::unexpected(w + ".scope: " + scope.error());
        p.scope = *scope;
    }
    if (auto it = j.find("include"); it != j.end()) {
        auto r = RulesParser(w + ".include").parse(*it);
        if (!r) return tl::unexpected(r.error());
        p.include = std::move(*r);
    }
    if (auto it = j.find("exclude"); it != j.end()) {
        auto r = RulesParser(w + ".exclude").parse(*it);
        if (!r) return tl::unexpected(r.error());
        p.exclude = std::move(*r);
    }
    // One prefix or cgroup can hold one verdict in its map.
    for (const auto& c : p.exclude.cidrs)
        if (std::find(p.include.cidrs.begin(), p.include.cidrs.end(), c) != p.include.cidrs.end())
            return tl::unexpected(w + ": " + cidr_to_string(c) + " is both included and excluded");
    for (const auto& c : p.exclude.cgroups)
        if (std::find(p.include.cgroups.begin(), p.include.cgroups.end(), c) != p.include.cgroups.end())
            return tl::unexpected(w + ": cgroup " + quote_cut(c) + " is both included and excluded");
    if (p.include.cidrs.size() + p.exclude.cidrs.size() > kMaxPolicyCidrs)
        return tl::unexpected(w + ": at most " + std::to_string(kMaxPolicyCidrs) + " CIDRs in all");
    if (p.include.cgroups.size() + p.exclude.cgroups.size() > kMaxPolicyCgroups)
        return tl::unexpected(w + ": at most " + std::to_string(kMaxPolicyCgroups) + " cgroups in all");
    if (const auto size = policy_to_json(p).dump().size(); size > kMaxPolicyJsonBytes)
        return tl::unexpected(w + ": too large (" + std::to_string(size) + " bytes as JSON; at most " +
                              std::to_string(kMaxPolicyJsonBytes) + ")");
    return p;
}

json policy_to_json(const Policy& p) {
    auto rules = [](const PolicyRules& r) {
        json ports = json::array(), cidrs = json::array(), cgroups = json::array();
        for (const auto& pr : r.ports)
            ports.push_back(pr.first == pr.last ? std::to_string(pr.first)
                                                : std::to_string(pr.first) + "-" + std::to_string(pr.last));
        for (const auto& c : r.cidrs) cidrs.push_back(cidr_to_string(c));
        for (const auto& c : r.cgroups) cgroups.push_back(c);
        return json{{"ports", ports}, {"cidrs", cidrs}, {"cgroups", cgroups}};
    };
    return json{{"scope", to_string(p.effective_scope())},
                {"include", rules(p.include)},
                {"exclude", rules(p.exclude)}};
}

std::string_view to_string(Scope scope) { return scope == Scope::host ? "host" : "opt-in"; }

tl::expected<Scope, std::string> parse_scope(std::string_view text) {
    if (text == "opt-in") return Scope::opt_in;
    if (text == "host") return Scope::host;
    return tl::unexpected(quote_cut(std::string(text)) + ": must be \"opt-in\" or \"host\"");
}

tl::expected<std::string, std::string> unit_cgroup(std::string_view unit) {
    std::string name(unit);
    const auto bad = [&](const std::string& why) {
        return tl::unexpected("unit " + quote_cut(name) + ": " + why);
    };
    if (name.empty()) return bad("must not be empty");
    if (name.find('.') == std::string::npos) name += ".service";
    const auto dot = name.rfind('.');
    if (name.substr(dot) != ".service" && name.substr(dot) != ".scope")
        return bad("must be a .service or .scope unit (give other cgroups with --include-cgroup)");
    if (dot == 0 || name.size() > 255) return bad("is not a unit name");
    for (char c : name.substr(0, dot))
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == ':' || c == '-' || c == '_' ||
              c == '.' || c == '\\' || c == '@'))
            return bad("is not a unit name (allowed: letters, digits, \":-_.\\@\")");
    return "/system.slice/" + name;
}

}  // namespace sockaccel::proto
