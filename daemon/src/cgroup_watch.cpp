// SPDX-License-Identifier: Apache-2.0
#include "cgroup_watch.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include <spdlog/spdlog.h>

namespace sockaccel {

CgroupWatch::CgroupWatch(boost::asio::io_context& io, std::string cgroup_root,
                         std::function<void()> on_change)
    : fd_(io), root_(std::move(cgroup_root)), on_change_(std::move(on_change)), buffer_(16384) {}

CgroupWatch::~CgroupWatch() {
    boost::system::error_code ignored;
    fd_.close(ignored);
}

Result<void> CgroupWatch::watch(const std::vector<std::string>& cgroups) {
    if (!fd_.is_open()) {
        const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (fd < 0) return errno_error("inotify_init1 (policy cgroup watch)");
        fd_.assign(fd);
        read_events();
    }
    for (int wd : watches_) ::inotify_rm_watch(fd_.native_handle(), wd);
    watches_.clear();
    std::set<std::string> parents;
    for (const auto& path : cgroups) {
        if (path == "/") continue;
        parents.insert(root_ + path.substr(0, path.rfind('/')));
    }
    for (const auto& dir : parents) {
        const int wd = ::inotify_add_watch(fd_.native_handle(), dir.c_str(),
                                           IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |
                                               IN_ONLYDIR);
        // A parent that does not exist cannot be watched; resolve_cgroups()
        // refuses such a policy in the first place, so this is a parent
        // removed since: its cgroups are gone, and stay matched by nothing.
        if (wd < 0) {
            spdlog::warn("policy: cannot watch {} for cgroups appearing: {}", dir,
                         std::strerror(errno));
            continue;
        }
        watches_.push_back(wd);
    }
    return {};
}

void CgroupWatch::read_events() {
    fd_.async_read_some(boost::asio::buffer(buffer_), [this](boost::system::error_code ec,
                                                              std::size_t n) {
        if (ec == boost::asio::error::operation_aborted) return;
        if (ec) {
            spdlog::error("policy: cgroup watch stopped: {}", ec.message());
            return;
        }
        // Any event under a watched parent may be one of ours; resolving
        // again is cheap, so the names are not matched here. IN_IGNORED
        // (a watch removed) and overflows need no more than that either.
        bool relevant = false;
        for (std::size_t off = 0; off + sizeof(inotify_event) <= n;) {
            const auto* ev = reinterpret_cast<const inotify_event*>(buffer_.data() + off);
            if (ev->mask & (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_Q_OVERFLOW))
                relevant = true;
            off += sizeof(inotify_event) + ev->len;
        }
        if (relevant) on_change_();
        read_events();
    });
}

}  // namespace sockaccel
