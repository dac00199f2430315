// SPDX-License-Identifier: Apache-2.0
//
// ReaderEventLog: logs, once per cgroup and reason, that the reader checks
// kept a socket of that cgroup on TCP (struct sockaccel_reader_event, from
// the reader_events ring buffer). Inside the opt-in scope this is how an
// operator learns that an included service reads in a way sockaccel does
// not accelerate (blocking sockets, SO_RCVLOWAT), and can take it out of
// the scope. The kernel side already reports each pair only once
// (reader_seen), so this runs rarely; the ring buffer's descriptor is
// waited on by the daemon's io_context.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <utility>

#include <boost/asio/io_context.hpp>

#include "error.h"
#include "ring_buffer.h"

namespace sockaccel {

class ReaderEventLog {
public:
    // `map_fd`: the reader_events ring buffer; `cgroup_root`: the cgroup v2
    // mount, to name a cgroup by its path.
    ReaderEventLog(boost::asio::io_context& io, std::string cgroup_root);

    [[nodiscard]] Result<void> start(int map_fd) { return reader_.start(map_fd); }

private:
    void on_event(const void* data, std::size_t size);
    std::string cgroup_path(std::uint64_t id) const;

    RingBufferReader reader_;
    std::string root_;
    std::set<std::pair<std::uint64_t, std::uint32_t>> logged_;
};

}  // namespace sockaccel
