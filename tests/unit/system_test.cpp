// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include "system.h"

using sockaccel::find_cgroup2_mount;

TEST_CASE("cgroup v2 is found in a hybrid layout") {
    const char* mounts =
        "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0\n"
        "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n"
        "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";
    auto r = find_cgroup2_mount(mounts);
    REQUIRE(r);
    CHECK(*r == "/sys/fs/cgroup/unified");
}

TEST_CASE("cgroup v2 is found in a unified layout, first mount wins") {
    auto r = find_cgroup2_mount(
        "proc /proc proc rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n"
        "cgroup2 /other cgroup2 rw 0 0\n");
    REQUIRE(r);
    CHECK(*r == "/sys/fs/cgroup");
}

TEST_CASE("escaped mount points are decoded") {
    auto r = find_cgroup2_mount("none /mnt/my\\040cgroups cgroup2 rw 0 0\n");
    REQUIRE(r);
    CHECK(*r == "/mnt/my cgroups");
}

TEST_CASE("no cgroup v2 is ENOENT") {
    auto r = find_cgroup2_mount("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\ngarbage\n\n");
    REQUIRE_FALSE(r);
    CHECK(r.error().errno_value() == ENOENT);
}
