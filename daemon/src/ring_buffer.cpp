// SPDX-License-Identifier: Apache-2.0
#include "ring_buffer.h"

#include <bpf/libbpf.h>

#include <cerrno>

#include <spdlog/spdlog.h>

namespace sockaccel {

RingBufferReader::RingBufferReader(boost::asio::io_context& io, std::string name,
                                   Handler handler)
    : fd_(io), name_(std::move(name)), handler_(std::move(handler)) {}

RingBufferReader::~RingBufferReader() {
    // The descriptor belongs to the ring buffer (its epoll fd).
    if (fd_.is_open()) fd_.release();
    if (rb_) ring_buffer__free(rb_);
}

Result<void> RingBufferReader::start(int map_fd) {
    rb_ = ring_buffer__new(map_fd, &RingBufferReader::on_record, this, nullptr);
    if (!rb_) return errno_error("open the " + name_ + " ring buffer");
    fd_.assign(ring_buffer__epoll_fd(rb_));
    wait();
    return {};
}

void RingBufferReader::wait() {
    fd_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                   [this](boost::system::error_code ec) {
                       if (ec == boost::asio::error::operation_aborted) return;
                       if (ec) {
                           spdlog::error("{}: {}", name_, ec.message());
                           return;
                       }
                       if (ring_buffer__consume(rb_) < 0)
                           spdlog::warn("{}: reading the ring buffer failed", name_);
                       wait();
                   });
}

int RingBufferReader::on_record(void* self, void* data, std::size_t size) {
    static_cast<RingBufferReader*>(self)->handler_(data, size);
    return 0;
}

}  // namespace sockaccel
