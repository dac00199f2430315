// SPDX-License-Identifier: Apache-2.0
//
// Drain backends: the BPF iterator the lossless drain walks the sockets
// with (docs/architecture.md, "Drain backends"). Every drain (flush-map,
// the stop, adoption of pinned state, policy-set --apply-existing) and every
// per-socket read (connections) goes through the one backend DataPlane
// loaded; callers ask DataPlane::drain_walk() what it can see and never
// decide for themselves.
//
// The kernel only lets iterator programs delete from a sockhash outside a
// socket's own events, and a security policy may refuse any iterator type,
// so there are three, tried in this order:
//   - sockhash:  iter/sockmap, exactly the map's entries;
//   - task_file: iter/task_file, every socket in some task's file table, in
//                every network namespace;
//   - tcp:       iter/tcp, every TCP socket of the daemon's own network
//                namespace, each visit under the socket lock.
// A kernel that loads none of them is refused at start (kernel_features.h).
//
// Pure code; no I/O.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <tl/expected.hpp>

#include "kernel_features.h"

namespace sockaccel {

enum class DrainBackend { sockhash, task_file, tcp };

inline constexpr DrainBackend kDrainBackends[] = {DrainBackend::sockhash, DrainBackend::task_file,
                                                  DrainBackend::tcp};

// "sockhash", "task_file", "tcp": the names of config key drain.backend,
// status and the docs.
std::string_view to_string(DrainBackend backend);
// The inverse; nullopt for any other name ("auto" included).
std::optional<DrainBackend> parse_drain_backend(std::string_view name);

// What a backend's walk can and cannot see.
struct DrainWalk {
    DrainBackend backend = DrainBackend::sockhash;
    // Every socket in the sockhash is visited. Otherwise sockets no walk
    // reaches stay in the map, are reported as pending and are retried in
    // the background; they are never deleted unvisited.
    bool complete = true;
    std::string_view cannot_see;  // "" when complete
};
DrainWalk drain_walk(DrainBackend backend);

// The iterator program type a backend needs ("iter/task_file"), and
// whether the kernel loads it.
std::string_view iterator_name(DrainBackend backend);
bool kernel_allows(const KernelFeatures& features, DrainBackend backend);

// The backends to try loading, best first: `forced` alone (the config's
// drain.backend), or every backend the kernel allows. The error is the one
// line a start fails with: a forced backend the kernel refuses, or none at
// all.
tl::expected<std::vector<DrainBackend>, std::string> drain_candidates(
    const KernelFeatures& features, std::optional<DrainBackend> forced);

}  // namespace sockaccel
