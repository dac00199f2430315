// SPDX-License-Identifier: Apache-2.0
//
// CgroupWatch: tells the daemon when a cgroup the policy names appears or
// goes away, so the policy's cgroup ids stay current.
//
// The kernel matches cgroups by id (a cgroup v2 directory's inode), and a
// service's cgroup is a new directory, with a new id, each time systemd
// starts the service. So an opt-in for nginx.service must follow it across
// restarts, and may name a service that is not running yet. The watch
// covers the parent directory of every cgroup the policy names (inotify:
// mkdir and rmdir of a cgroup are ordinary directory events) and calls
// `on_change` on the daemon's io_context after any of them; the daemon
// then resolves and writes the policy again. Connections made before that
// stay on TCP, which is always safe.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include "error.h"
#include "policy.h"

namespace sockaccel {

class CgroupWatch {
public:
    CgroupWatch(boost::asio::io_context& io, std::string cgroup_root, std::function<void()> on_change);
    ~CgroupWatch();
    CgroupWatch(const CgroupWatch&) = delete;
    CgroupWatch& operator=(const CgroupWatch&) = delete;

    // Watches the parents of these cgroup paths (below the cgroup v2 root),
    // replacing earlier watches. Starts the inotify instance on first use.
    [[nodiscard]] Result<void> watch(const std::vector<std::string>& cgroups);

private:
    void read_events();

    boost::asio::posix::stream_descriptor fd_;
    std::string root_;
    std::function<void()> on_change_;
    std::vector<int> watches_;
    std::vector<char> buffer_;
};

}  // namespace sockaccel
