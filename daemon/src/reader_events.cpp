// SPDX-License-Identifier: Apache-2.0
#include "reader_events.h"

#include <sys/stat.h>
#include <unistd.h>

#include <bpf/libbpf.h>

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
    : fd_(io), root_(std::move(cgroup_root)) {}

ReaderEventLog::~ReaderEventLog() {
    // The descriptor belongs to the ring buffer (its epoll fd).
    if (fd_.is_open()) fd_.release();
    if (rb_) ring_buffer__free(rb_);
}

Result<void> ReaderEventLog::start(int map_fd) {
    rb_ = ring_buffer__new(map_fd, &ReaderEventLog::on_event, this, nullptr);
    if (!rb_) return errno_error("open the reader_events ring buffer");
    fd_.assign(ring_buffer__epoll_fd(rb_));
    wait();
    return {};
}

void ReaderEventLog::wait() {
    fd_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                   [this](boost::system::error_code ec) {
                       if (ec == boost::asio::error::operation_aborted) return;
                       if (ec) {
                           spdlog::error("reader events: {}", ec.message());
                           return;
                       }
                       if (ring_buffer__consume(rb_) < 0)
                           spdlog::warn("reader events: reading the ring buffer failed");
                       wait();
                   });
}

int ReaderEventLog::on_event(void* self, void* data, std::size_t size) {
    auto* log = static_cast<ReaderEventLog*>(self);
    if (size < sizeof(sockaccel_reader_event)) return 0;
    const auto* ev = static_cast<const sockaccel_reader_event*>(data);
    if (!log->logged_.insert({ev->cgroup_id, ev->reason}).second) return 0;
    spdlog::warn(
        "reader check: cgroup {} has {}; its connections stay on TCP (first seen on port {} to "
        "{}; counter {}). If its program is meant to be accelerated, it must use non-blocking "
        "sockets; otherwise take it out of the scope",
        log->cgroup_path(ev->cgroup_id), reason_text(ev->reason), ev->local_port, ev->remote_port,
        ev->reason == SOCKACCEL_CNT_READER_BLOCKING ? "reader_blocking"
        : ev->reason == SOCKACCEL_CNT_READER_LOWAT  ? "reader_lowat"
                                                    : "reader_unknown");
    return 0;
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
