// SPDX-License-Identifier: Apache-2.0
//
// RingBufferReader: hands every record of a BPF ring buffer map to a
// callback, on the daemon's io_context. libbpf's ring_buffer has an epoll
// descriptor that becomes readable when records arrive; the io_context
// waits on it, so there is no thread and no polling.
//
// Not thread-safe; the callback runs on the io_context thread, once per
// record, with the record's bytes (valid only during the call).
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include "error.h"

struct ring_buffer;

namespace sockaccel {

class RingBufferReader {
public:
    using Handler = std::function<void(const void* data, std::size_t size)>;

    // `name` is the map's name, for messages.
    RingBufferReader(boost::asio::io_context& io, std::string name, Handler handler);
    ~RingBufferReader();
    RingBufferReader(const RingBufferReader&) = delete;
    RingBufferReader& operator=(const RingBufferReader&) = delete;

    // Starts waiting for records of the ring buffer map `map_fd`.
    [[nodiscard]] Result<void> start(int map_fd);

private:
    static int on_record(void* self, void* data, std::size_t size);
    void wait();

    boost::asio::posix::stream_descriptor fd_;
    std::string name_;
    Handler handler_;
    ring_buffer* rb_ = nullptr;
};

}  // namespace sockaccel
