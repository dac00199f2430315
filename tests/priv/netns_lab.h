// SPDX-License-Identifier: Apache-2.0
//
// Network namespaces a test creates for itself, as stand-ins for other
// hosts and for containers: veth pairs between them, and a bridge in a
// namespace of its own. Addresses come from 198.18.0.0/15 (RFC 2544,
// benchmarking) and fd00:5a::/48, and exist only inside these namespaces.
// Everything is removed on destruction (deleting a namespace deletes its
// interfaces), so a failing assertion cleans up too.
#pragma once

#include <string>
#include <vector>

namespace sockaccel::test {

class NetnsLab {
public:
    // `tag` makes the names unique to the test (plus the pid).
    explicit NetnsLab(const std::string& tag);
    ~NetnsLab();
    NetnsLab(const NetnsLab&) = delete;
    NetnsLab& operator=(const NetnsLab&) = delete;

    // Creates namespace `name` (loopback up) and returns its path
    // (/run/netns/<prefix>_<name>), for streamcheck's --*-netns.
    std::string add(const std::string& name);
    // A veth pair between namespaces a and b with the given "addr/len"
    // addresses (IPv4 and optionally IPv6 on each end).
    void link(const std::string& a, const std::string& a_addr4, const std::string& a_addr6,
              const std::string& b, const std::string& b_addr4, const std::string& b_addr6);
    // A bridge in namespace `bridge_ns` with a veth port to each namespace
    // in `members`, which get addresses `addrs4[i]` and `addrs6[i]`: the
    // usual container setup.
    void bridge(const std::string& bridge_ns, const std::vector<std::string>& members,
                const std::vector<std::string>& addrs4, const std::vector<std::string>& addrs6);
    std::string path(const std::string& name) const;

private:
    std::string full(const std::string& name) const;
    void ip(const std::vector<std::string>& args);
    std::string prefix_;
    std::vector<std::string> created_;
    int veths_ = 0;
};

}  // namespace sockaccel::test
