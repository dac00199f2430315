// SPDX-License-Identifier: Apache-2.0
#include "policy.h"

#include <catch2/catch.hpp>

#include "config.h"

using namespace sockaccel;
using nlohmann::json;

TEST_CASE("policy: port ranges") {
    CHECK(parse_port_range("80").value() == PortRange{80, 80});
    CHECK(parse_port_range("8000-8100").value() == PortRange{8000, 8100});
    CHECK(parse_port_range("1-65535").value() == PortRange{1, 65535});
    for (const char* bad : {"", "0", "65536", "-", "80-", "-80", "90-80", "8a", " 80", "80 ",
                            "1-2-3", "+80", "99999999999"}) {
        INFO(bad);
        CHECK_FALSE(parse_port_range(bad));
    }
}

TEST_CASE("policy: CIDRs") {
    auto v4 = parse_cidr("10.0.0.0/8").value();
    CHECK(v4.prefix_len == 96 + 8);
    CHECK(cidr_to_string(v4) == "10.0.0.0/8");
    CHECK(cidr_to_string(parse_cidr("192.168.1.7").value()) == "192.168.1.7/32");
    CHECK(cidr_to_string(parse_cidr("fd00::/8").value()) == "fd00::/8");
    CHECK(cidr_to_string(parse_cidr("::1").value()) == "::1/128");
    CHECK(cidr_to_string(parse_cidr("0.0.0.0/0").value()) == "0.0.0.0/0");
    CHECK(parse_cidr("::/0").value().prefix_len == 0);
    CHECK(parse_cidr("10.1.2.3/8").error().find("host bits") != std::string::npos);
    CHECK(parse_cidr("10.0.0.0/33").error().find("0-32") != std::string::npos);
    CHECK(parse_cidr("fd00::/129").error().find("0-128") != std::string::npos);
    CHECK(parse_cidr("::ffff:10.0.0.0/104").error().find("as IPv4") != std::string::npos);
    for (const char* bad : {"", "/8", "10.0.0.0/", "10.0.0.0/x", "host.example", "10.0.0/8",
                            "1.2.3.4/-1", "fd00::/ 8"}) {
        INFO(bad);
        CHECK_FALSE(parse_cidr(bad));
    }
}

TEST_CASE("policy: parse, canonical JSON and round trip") {
    const json in = {{"include", {{"ports", {80, "8000-8100"}}, {"cidrs", {"10.0.0.0/8"}}}},
                     {"exclude", {{"cidrs", {"10.1.0.0/16", "fd00:1::/32"}},
                                  {"cgroups", {"/system.slice/batch.slice/"}}}}};
    auto p = parse_policy(in, "policy").value();
    CHECK(p.include.ports.size() == 2);
    CHECK(p.exclude.cgroups == std::vector<std::string>{"/system.slice/batch.slice"});
    const json out = policy_to_json(p);
    CHECK(out["include"]["ports"] == json::array({"80", "8000-8100"}));
    CHECK(out["exclude"]["cidrs"] == json::array({"10.1.0.0/16", "fd00:1::/32"}));
    // The canonical form names the effective scope.
    CHECK(out["scope"] == "opt-in");
    p.scope = proto::Scope::opt_in;
    CHECK(parse_policy(out, "policy").value() == p);
    CHECK(parse_policy(json::object(), "policy").value().empty());
}

TEST_CASE("policy: errors name the entry") {
    auto err = [](const json& j) { return parse_policy(j, "policy").error(); };
    CHECK(err({{"include", {{"ports", {80, "x"}}}}}).rfind("policy.include.ports[1]: \"x\"", 0) ==
          0);
    CHECK(err({{"exclude", {{"cidrs", {1}}}}}).rfind("policy.exclude.cidrs[0]: must be", 0) == 0);
    CHECK(err({{"include", {{"cgroups", {"a/b"}}}}}).find("absolute path") != std::string::npos);
    CHECK(err({{"include", {{"cgroups", {"/a/../b"}}}}}).find("absolute path") != std::string::npos);
    CHECK(err({{"include", {{"cidrs", {"10.0.0.0/8"}}}}, {"exclude", {{"cidrs", {"10.0.0.0/8"}}}}})
              .find("both included and excluded") != std::string::npos);
    CHECK(err({{"deny", json::object()}}).find("unknown key \"deny\"") != std::string::npos);
    CHECK(err(json::array()) == "policy: must be an object");
    // A long bad value is cut in the message.
    CHECK(err({{"include", {{"cidrs", {std::string(5000, 'a')}}}}}).size() < 200);
    // Too many entries.
    json many = json::array();
    for (int i = 0; i < 1025; ++i) many.push_back("10.0.0.0/8");
    CHECK(err({{"include", {{"cidrs", many}}}}).find("at most 1024") != std::string::npos);
}

TEST_CASE("policy: encoding for the kernel") {
    auto p = parse_policy({{"include", {{"ports", {"63-65"}}}},
                           {"exclude", {{"ports", {22}}, {"cidrs", {"10.0.0.0/8"}},
                                        {"cgroups", {"/a"}}}}},
                          "policy")
                 .value();
    p.scope = proto::Scope::host;
    auto e = encode_policy(p, CgroupIds{{}, {4242}, {}});
    auto bit = [&](int set, int port) {
        return (e.port_words[SOCKACCEL_POLICY_PORT_WORD(set, port)] >> (port % 64)) & 1;
    };
    CHECK(bit(SOCKACCEL_POLICY_PORTS_INCLUDE, 63) == 1);
    CHECK(bit(SOCKACCEL_POLICY_PORTS_INCLUDE, 64) == 1);  // across a word boundary
    CHECK(bit(SOCKACCEL_POLICY_PORTS_INCLUDE, 65) == 1);
    CHECK(bit(SOCKACCEL_POLICY_PORTS_INCLUDE, 66) == 0);
    CHECK(bit(SOCKACCEL_POLICY_PORTS_EXCLUDE, 22) == 1);
    CHECK(bit(SOCKACCEL_POLICY_PORTS_INCLUDE, 22) == 0);
    REQUIRE(e.cidrs.size() == 1);
    CHECK(e.cidrs[0].first.prefixlen == 104);
    CHECK(e.cidrs[0].second == SOCKACCEL_POLICY_MATCH_EXCLUDE);
    CHECK(e.cgroups == std::vector<std::pair<std::uint64_t, std::uint32_t>>{
                           {4242, SOCKACCEL_POLICY_MATCH_EXCLUDE}});
    CHECK(e.flags == (SOCKACCEL_POLICY_INCLUDE_PORTS | SOCKACCEL_POLICY_EXCLUDE_PORTS |
                      SOCKACCEL_POLICY_EXCLUDE_CIDRS | SOCKACCEL_POLICY_CGROUPS));
    Policy host;
    host.scope = proto::Scope::host;
    CHECK(encode_policy(host, {}).flags == 0);
}

TEST_CASE("policy: the scope") {
    // Opt-in, the default: a socket must match an include cgroup, so with
    // none listed nothing is inserted.
    CHECK(encode_policy(Policy{}, {}).flags ==
          (SOCKACCEL_POLICY_INCLUDE_CGROUPS | SOCKACCEL_POLICY_CGROUPS));
    auto p = parse_policy({{"scope", "opt-in"}, {"include", {{"cgroups", {"/system.slice/a"}}}}},
                          "policy")
                 .value();
    CHECK(p.scope == proto::Scope::opt_in);
    auto e = encode_policy(p, CgroupIds{{7}, {}, {}});
    CHECK(e.flags == (SOCKACCEL_POLICY_INCLUDE_CGROUPS | SOCKACCEL_POLICY_CGROUPS));
    CHECK(e.cgroup_paths == std::vector<std::string>{"/system.slice/a"});
    CHECK(parse_policy({{"scope", "host"}}, "policy").value().scope == proto::Scope::host);
    CHECK_FALSE(parse_policy(json::object(), "policy").value().scope);
    CHECK(parse_policy({{"scope", "all"}}, "policy").error() ==
          "policy.scope: \"all\": must be \"opt-in\" or \"host\"");
    CHECK(parse_policy({{"scope", 1}}, "policy").error() == "policy.scope: must be a string");
    // The config file's default, and --scope on top.
    auto cfg = parse_config("{}", "f.json").value();
    apply_overrides(cfg, {});
    CHECK(cfg.policy.scope == proto::Scope::opt_in);
    ConfigOverrides o;
    o.scope = proto::Scope::host;
    apply_overrides(cfg, o);
    CHECK(config_to_json(cfg)["policy"]["scope"] == "host");
}

TEST_CASE("policy: a systemd unit names its cgroup") {
    CHECK(proto::unit_cgroup("nginx").value() == "/system.slice/nginx.service");
    CHECK(proto::unit_cgroup("nginx.service").value() == "/system.slice/nginx.service");
    CHECK(proto::unit_cgroup("getty@tty1.service").value() == "/system.slice/getty@tty1.service");
    CHECK(proto::unit_cgroup("x.scope").value() == "/system.slice/x.scope");
    CHECK(proto::unit_cgroup("").error() == "unit \"\": must not be empty");
    for (const char* bad : {"a.socket", "../x.service", "a/b.service", ".service", "a b"}) {
        INFO(bad);
        CHECK_FALSE(proto::unit_cgroup(bad));
    }
}

TEST_CASE("policy: in the config file") {
    auto cfg = parse_config(R"({"policy": {"exclude": {"ports": ["22"]}}})", "f.json").value();
    CHECK(cfg.policy.exclude.ports == std::vector<PortRange>{{22, 22}});
    auto bad = parse_config(R"({"policy": {"exclude": {"ports": ["0"]}}})", "f.json");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().rfind("f.json: policy.exclude.ports[0]: \"0\": port 0", 0) == 0);
    CHECK(config_to_json(cfg)["policy"]["exclude"]["ports"] == json::array({"22"}));
}

TEST_CASE("policy: the whole policy has a size cap, so responses fit a protocol line") {
    json cgroups = json::array();
    for (int i = 0; i < 200; ++i) cgroups.push_back("/" + std::string(100, 'a') + std::to_string(i));
    auto r = parse_policy({{"exclude", {{"cgroups", cgroups}}}}, "policy");
    REQUIRE_FALSE(r);
    CHECK(r.error().find("too large") != std::string::npos);
}
