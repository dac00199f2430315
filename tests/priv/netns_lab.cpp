// SPDX-License-Identifier: Apache-2.0
#include "netns_lab.h"

#include <unistd.h>

#include <stdexcept>

#include "harness.h"

namespace sockaccel::test {

namespace {

// run() execs without a PATH search.
const std::string& ip_binary() {
    static const std::string path = [] {
        for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"})
            if (::access(p, X_OK) == 0) return std::string(p);
        throw std::runtime_error("ip (iproute2) not found");
    }();
    return path;
}

}  // namespace

NetnsLab::NetnsLab(const std::string& tag)
    : prefix_("sa_" + tag + "_" + std::to_string(::getpid())) {}

NetnsLab::~NetnsLab() {
    for (auto it = created_.rbegin(); it != created_.rend(); ++it)
        run({ip_binary(), "netns", "delete", *it}, std::chrono::seconds(30));
}

std::string NetnsLab::full(const std::string& name) const { return prefix_ + "_" + name; }

std::string NetnsLab::path(const std::string& name) const { return "/run/netns/" + full(name); }


void NetnsLab::ip(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {ip_binary()};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run(argv, std::chrono::seconds(30));
    if (r.exit_code != 0) {
        std::string cmd;
        for (const auto& a : argv) cmd += a + " ";
        throw std::runtime_error(cmd + "failed: " + r.err);
    }
}

std::string NetnsLab::add(const std::string& name) {
    ip({"netns", "add", full(name)});
    created_.push_back(full(name));
    ip({"-n", full(name), "link", "set", "lo", "up"});
    return path(name);
}

void NetnsLab::link(const std::string& a, const std::string& a_addr4, const std::string& a_addr6,
                    const std::string& b, const std::string& b_addr4, const std::string& b_addr6) {
    const std::string va = "va" + std::to_string(veths_), vb = "vb" + std::to_string(veths_);
    ++veths_;
    ip({"-n", full(a), "link", "add", va, "type", "veth", "peer", "name", vb, "netns", full(b)});
    for (const auto& [ns, dev, a4, a6] :
         {std::tuple{a, va, a_addr4, a_addr6}, std::tuple{b, vb, b_addr4, b_addr6}}) {
        ip({"-n", full(ns), "addr", "add", a4, "dev", dev});
        // nodad: the address is usable at once, not after duplicate detection.
        if (!a6.empty()) ip({"-n", full(ns), "addr", "add", a6, "dev", dev, "nodad"});
        ip({"-n", full(ns), "link", "set", dev, "up"});
    }
}

void NetnsLab::bridge(const std::string& bridge_ns, const std::vector<std::string>& members,
                      const std::vector<std::string>& addrs4,
                      const std::vector<std::string>& addrs6) {
    ip({"-n", full(bridge_ns), "link", "add", "br0", "type", "bridge"});
    ip({"-n", full(bridge_ns), "link", "set", "br0", "up"});
    for (std::size_t i = 0; i < members.size(); ++i) {
        const std::string port = "p" + std::to_string(i), eth = "eth0";
        ip({"-n", full(bridge_ns), "link", "add", port, "type", "veth", "peer", "name", eth,
            "netns", full(members[i])});
        ip({"-n", full(bridge_ns), "link", "set", port, "master", "br0"});
        ip({"-n", full(bridge_ns), "link", "set", port, "up"});
        ip({"-n", full(members[i]), "addr", "add", addrs4[i], "dev", eth});
        if (i < addrs6.size() && !addrs6[i].empty())
            ip({"-n", full(members[i]), "addr", "add", addrs6[i], "dev", eth, "nodad"});
        ip({"-n", full(members[i]), "link", "set", eth, "up"});
    }
}

}  // namespace sockaccel::test
