// SPDX-License-Identifier: Apache-2.0
#include "reader_events.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

#include <spdlog/spdlog.h>

#include "sockaccel/abi.h"

namespace sockaccel {

namespace {

const char* reason_text(std::uint32_t reason) {
    switch (reason) {
        case SOCKACCEL_CNT_READER_BLOCKING:
            return "a blocking socket (a blocking read of an accelerated socket can fail with "
                   "EAGAIN, and MSG_WAITALL can return early)";
        case SOCKACCEL_CNT_READER_LOWAT:
            return "SO_RCVLOWAT above 1 (redirected data ignores the low-water mark)";
        default:
            return "a connecting socket without a file to check";
    }
}

}  // namespace

ReaderEventLog::ReaderEventLog(boost::asio::io_context& io, std::string cgroup_root)
    : reader_(io, "reader events",
              [this](const void* data, std::size_t size) { on_event(data, size); }),
      root_(std::move(cgroup_root)) {}

void ReaderEventLog::on_event(const void* data, std::size_t size) {
    if (size < sizeof(sockaccel_reader_event)) return;
    const auto* ev = static_cast<const sockaccel_reader_event*>(data);
    if (!logged_.insert({ev->cgroup_id, ev->reason}).second) return;
    spdlog::warn(
        "reader check: cgroup {} has {}; its connections stay on TCP (first seen on port {} to "
        "{}; counter {}). If its program is meant to be accelerated, it must use non-blocking "
        "sockets; otherwise take it out of the scope",
        cgroup_path(ev->cgroup_id), reason_text(ev->reason), ev->local_port, ev->remote_port,
        ev->reason == SOCKACCEL_CNT_READER_BLOCKING ? "reader_blocking"
        : ev->reason == SOCKACCEL_CNT_READER_LOWAT  ? "reader_lowat"
                                                    : "reader_unknown");
}

// The path of the cgroup with this id (its directory's inode), found by a
// walk of the cgroup v2 tree; runs once per cgroup and reason.
std::string ReaderEventLog::cgroup_path(std::uint64_t id) const {
    std::error_code ec;
    struct stat st {};
    if (::stat(root_.c_str(), &st) == 0 && st.st_ino == id) return "/";
    for (std::filesystem::recursive_directory_iterator it(
             root_, std::filesystem::directory_options::skip_permission_denied, ec),
         end;
         !ec && it != end; it.increment(ec)) {
        if (!it->is_directory(ec)) continue;
        if (::stat(it->path().c_str(), &st) == 0 && st.st_ino == id)
            return it->path().string().substr(root_.size());
    }
    return "id " + std::to_string(id) + " (gone)";
}

}  // namespace sockaccel
