// SPDX-License-Identifier: Apache-2.0
//
// The kernel feature probe: what the running kernel supports, found by
// asking it (libbpf's program/map/helper probes, which load tiny programs,
// and the kernel's own BTF), never by its version number. Debian 12's 6.1
// and this machine's 6.18 differ exactly in the optional items below.
//
// The daemon probes once at start, refuses to start without a required
// mechanism (one line naming it), picks a fallback for each optional one,
// and reports the result in `status.features`.
//
// Needs BPF privilege (the helper probes load programs). Not thread-safe
// only in that libbpf's probes are not; call it from one thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <tl/expected.hpp>

#include <nlohmann/json.hpp>

#include "error.h"

namespace sockaccel {

struct KernelFeatures {
    // Required: without any of these sockaccel cannot accelerate safely.
    bool sockhash = false;              // BPF_MAP_TYPE_SOCKHASH
    bool sk_msg = false;                // BPF_PROG_TYPE_SK_MSG
    bool sockops = false;               // BPF_PROG_TYPE_SOCK_OPS
    bool cgroup_bpf_link = false;       // BPF_LINK_TYPE_CGROUP (pinned, updatable attach)
    bool sk_storage_in_sk_msg = false;  // socket storage from sk_msg: the ordering rule

    // The BPF iterators the lossless drain can walk with (drain_backend.h;
    // drain_candidates() refuses a kernel without any). Each is true when the kernel *loads* a
    // program of that type: a security policy may refuse a type its BTF
    // names (this project's own 6.18 machines refuse iter/sockmap).
    bool sockmap_iterator = false;    // iter/sockmap
    bool task_file_iterator = false;  // iter/task_file
    bool tcp_iterator = false;        // iter/tcp
    // Optional: iter/bpf_map, which counts the sockhash's entries without a
    // walk. Without it the count walks the map.
    bool map_iterator = false;

    // Optional, each with a fallback:
    // psock->msg_tot_len: exact unread byte counts (pending bytes, the
    // connections list) and the back-pressure limit. Without it pending
    // bytes are unknown and there is no back-pressure.
    bool psock_msg_tot_len = false;
    // bpf_probe_read_kernel and bpf_skc_to_tcp_sock in sk_msg: the
    // back-pressure program. Without them (or without msg_tot_len) the basic
    // redirect program loads.
    bool sk_msg_kernel_reads = false;

    // Back-pressure works: both of the above.
    bool backpressure() const { return psock_msg_tot_len && sk_msg_kernel_reads; }
};

// Probes the running kernel. Fails only if the probing itself cannot run
// (no BTF at /sys/kernel/btf/vmlinux counts as "no optional feature", and
// with it, no iterator: they attach by BTF id).
[[nodiscard]] Result<KernelFeatures> probe_kernel_features();

// One line naming the first missing required mechanism, or nullopt.
std::optional<std::string> missing_required(const KernelFeatures& features);

// Turns features off, as if the kernel lacked them: `names` is a
// comma-separated list of the iterators (sockmap_iterator,
// task_file_iterator, tcp_iterator, map_iterator), psock_msg_tot_len and
// sk_msg_kernel_reads (from SOCKACCEL_FEATURES_OFF). It exercises the
// fallbacks of other kernels on this one. An unknown name is an error
// naming it, and nothing is changed.
tl::expected<void, std::string> mask_features(KernelFeatures& features, std::string_view names);

// `status.features`: every item above, plus "backpressure".
nlohmann::json features_to_json(const KernelFeatures& features);

}  // namespace sockaccel
