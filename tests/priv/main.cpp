// SPDX-License-Identifier: Apache-2.0
//
// Privileged tests need to load BPF programs. Privilege is detected by
// trying (creating a tiny BPF map), never by uid or kernel version. Without
// it the binary exits 77, which CTest reports as skipped — except in CI
// (the CI variable is set), where a privileged test that cannot run is a
// failure.
#define CATCH_CONFIG_RUNNER
#include <bpf/bpf.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
    int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "sa_probe", 4, 4, 1, nullptr);
    if (fd < 0) {
        const bool ci = std::getenv("CI") && *std::getenv("CI");
        std::fprintf(stderr, "privileged tests cannot run: creating a BPF map failed: %s%s\n",
                     std::strerror(errno), ci ? " (CI is set, so this is a failure)" : "");
        return ci ? 1 : 77;
    }
    ::close(fd);
    return Catch::Session().run(argc, argv);
}
