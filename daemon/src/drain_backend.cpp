// SPDX-License-Identifier: Apache-2.0
#include "drain_backend.h"

namespace sockaccel {

std::string_view to_string(DrainBackend backend) {
    switch (backend) {
        case DrainBackend::sockhash: return "sockhash";
        case DrainBackend::task_file: return "task_file";
        case DrainBackend::tcp: return "tcp";
    }
    return "unknown";
}

std::optional<DrainBackend> parse_drain_backend(std::string_view name) {
    for (auto b : kDrainBackends)
        if (to_string(b) == name) return b;
    return std::nullopt;
}

DrainWalk drain_walk(DrainBackend backend) {
    switch (backend) {
        case DrainBackend::sockhash: return {backend, true, ""};
        case DrainBackend::task_file:
            // A socket is reached through a file descriptor; io_uring's
            // registered files and descriptors in flight in SCM_RIGHTS
            // messages hold sockets in no file table.
            return {backend, false,
                    "sockets held in no process's file table (io_uring fixed files, descriptors "
                    "in flight in SCM_RIGHTS messages)"};
        case DrainBackend::tcp:
            // The kernel walks the network namespace of the process that
            // creates the iterator, and the unit forbids setns().
            return {backend, false, "sockets in other network namespaces (containers)"};
    }
    return {backend, false, "unknown"};
}

std::string_view iterator_name(DrainBackend backend) {
    switch (backend) {
        case DrainBackend::sockhash: return "iter/sockmap";
        case DrainBackend::task_file: return "iter/task_file";
        case DrainBackend::tcp: return "iter/tcp";
    }
    return "unknown";
}

bool kernel_allows(const KernelFeatures& f, DrainBackend backend) {
    switch (backend) {
        case DrainBackend::sockhash: return f.sockmap_iterator;
        case DrainBackend::task_file: return f.task_file_iterator;
        case DrainBackend::tcp: return f.tcp_iterator;
    }
    return false;
}

tl::expected<std::vector<DrainBackend>, std::string> drain_candidates(
    const KernelFeatures& features, std::optional<DrainBackend> forced) {
    if (forced) {
        if (!kernel_allows(features, *forced))
            return tl::unexpected("drain.backend \"" + std::string(to_string(*forced)) +
                                  "\": this kernel refuses " + std::string(iterator_name(*forced)) +
                                  " programs; use \"auto\" to take the first backend it allows");
        return std::vector<DrainBackend>{*forced};
    }
    std::vector<DrainBackend> out;
    for (auto b : kDrainBackends)
        if (kernel_allows(features, b)) out.push_back(b);
    if (out.empty())
        return tl::unexpected(std::string(
            "this kernel loads none of the BPF iterators sockaccel drains the sockhash with "
            "(iter/sockmap, iter/task_file, iter/tcp): without one, flush-map and a lossless "
            "stop are impossible; sockaccel cannot run here"));
    return out;
}

}  // namespace sockaccel
