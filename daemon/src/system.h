// SPDX-License-Identifier: Apache-2.0
//
// Thin, testable wrappers over the OS facts the daemon depends on: where
// cgroup v2 and bpffs are mounted, the pin-directory lock, and file
// descriptors. Every function returns a Result and never logs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <unistd.h>

#include "error.h"

namespace sockaccel {

// Owns one file descriptor; closes it on destruction. Move-only.
class UniqueFd {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept {
        if (this != &o) reset(std::exchange(o.fd_, -1));
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    int release() { return std::exchange(fd_, -1); }
    void reset(int fd = -1) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

// Mount point of the first cgroup2 filesystem listed in `mounts_text` (the
// contents of /proc/self/mounts), with octal escapes (\040) decoded.
// ENOENT if there is none.
[[nodiscard]] Result<std::string> find_cgroup2_mount(std::string_view mounts_text);

// Reads /proc/self/mounts and calls the above.
[[nodiscard]] Result<std::string> find_cgroup2_mount();

// Resolves the configured cgroup ("" = root, relative = under root, absolute
// as is) and checks that it is a directory on cgroup v2.
[[nodiscard]] Result<std::string> resolve_cgroup(const std::string& configured, const std::string& root);

// Makes sure `pin_dir` can be used: mounts bpffs on /sys/fs/bpf when the
// parent of pin_dir is /sys/fs/bpf and nothing is mounted there, then
// creates pin_dir (mode 0700) and checks it is on bpffs. Returns true if
// this call mounted bpffs.
[[nodiscard]] Result<bool> prepare_pin_dir(const std::string& pin_dir);

// Takes an exclusive, non-blocking flock() on the directory. The lock dies
// with the process, so a crashed daemon never blocks its successor. EWOULDBLOCK
// means another process holds it.
[[nodiscard]] Result<UniqueFd> lock_directory(const std::string& dir);

// uname -r.
std::string kernel_release();

// The largest TCP receive buffer of this network namespace (the third field
// of /proc/sys/net/ipv4/tcp_rmem); nullopt if unreadable.
std::optional<std::uint64_t> tcp_rmem_max();

// True when the path exists (any type).
bool path_exists(const std::string& path);

}  // namespace sockaccel
