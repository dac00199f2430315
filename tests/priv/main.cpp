// SPDX-License-Identifier: Apache-2.0
//
// Privileged tests need to load BPF programs. Privilege is detected by
// trying (creating a tiny BPF map), never by uid or kernel version. Without
// it the binary exits 77, which CTest reports as skipped — except in CI
// (the CI variable is set), where a privileged test that cannot run is a
// failure.
//
// SOCKACCEL_TEST_DRAIN_BACKEND=<backend> runs the tests with every daemon
// forced onto that drain backend (CTest's priv[<backend>] variants of the
// [drain] tests). On a kernel that refuses the backend's iterator the tests
// cannot run as written, and what the kernel does instead is the
// documented fallback: a daemon forced onto it refuses to start, in one
// line, leaving nothing attached. That is what the run checks then, once,
// in place of the selected tests.
#define CATCH_CONFIG_RUNNER
#include <bpf/bpf.h>
#include <unistd.h>

#include <linux/bpf.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "harness.h"

namespace {

using namespace sockaccel;
using namespace sockaccel::test;

// A daemon forced onto a backend the kernel refuses exits 1 with one line
// naming it, and attaches nothing. Returns the exit code for main().
int check_refused_backend(DrainBackend backend) {
    TestCgroup cg("refused");
    TestPinDir pins("refused");
    auto argv = daemon_args(cg, pins);
    argv.insert(argv.begin(), daemon_binary());
    auto r = run(argv, std::chrono::seconds(30));
    const std::string want = "drain.backend \"" + std::string(to_string(backend)) +
                             "\": this kernel refuses " + std::string(iterator_name(backend));
    const bool one_line = std::count(r.err.begin(), r.err.end(), '\n') == 1;
    const bool ok = r.exit_code == 1 && r.err.find(want) != std::string::npos && one_line &&
                    cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 0 && !pins.has("sock_hash");
    std::fprintf(stderr,
                 "this kernel refuses %s programs, so the %s drain backend cannot run these "
                 "tests; checked instead that a daemon forced onto it fails the start with one "
                 "line and attaches nothing: %s\n  exit code %d, stderr: %s",
                 std::string(iterator_name(backend)).c_str(), std::string(to_string(backend)).c_str(),
                 ok ? "yes" : "NO", r.exit_code, r.err.c_str());
    return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "sa_probe", 4, 4, 1, nullptr);
    if (fd < 0) {
        const bool ci = std::getenv("CI") && *std::getenv("CI");
        std::fprintf(stderr, "privileged tests cannot run: creating a BPF map failed: %s%s\n",
                     std::strerror(errno), ci ? " (CI is set, so this is a failure)" : "");
        return ci ? 1 : 77;
    }
    ::close(fd);
    // For scripts (tests/vm/guest-init): the drain backend this kernel gives a
    // daemon by default, found by the same probe the daemon runs.
    if (argc == 2 && std::strcmp(argv[1], "--print-default-drain-backend") == 0) {
        auto candidates = drain_candidates(kernel_features(), std::nullopt);
        if (!candidates) {
            std::fprintf(stderr, "%s\n", candidates.error().c_str());
            return 1;
        }
        std::printf("%s\n", std::string(to_string(candidates->front())).c_str());
        return 0;
    }
    if (auto backend = forced_drain_backend(); backend && !kernel_allows(kernel_features(), *backend)) {
        // Listing (CTest's discovery) still lists; a run checks the fallback.
        for (int i = 1; i < argc; ++i)
            if (std::strncmp(argv[i], "--list", 6) == 0) return Catch::Session().run(argc, argv);
        return check_refused_backend(*backend);
    }
    return Catch::Session().run(argc, argv);
}
