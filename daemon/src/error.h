// SPDX-License-Identifier: Apache-2.0
//
// The daemon's two error tiers (docs/architecture.md, "Errors"):
//
//  - StartupError: a fatal problem while starting (bad config, no cgroup v2,
//    BPF refused). Thrown, caught only in main(), printed once as one line,
//    exit code 1.
//  - Result<T>: every operation that touches the OS or the kernel at run time
//    returns a value or a SysError (an errno-based std::error_code plus what
//    was being done). Callers decide whether it is fatal; nothing logs on the
//    way up, the handler logs once.
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include <tl/expected.hpp>

namespace sockaccel {

class StartupError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct SysError {
    std::error_code code;
    std::string context;  // what failed, e.g. "pin map sock_hash at /sys/fs/bpf/x"

    // "context: strerror" — the form every log line and response uses.
    std::string message() const { return context + ": " + code.message(); }
    int errno_value() const { return code.value(); }
};

template <typename T>
using Result = tl::expected<T, SysError>;

// Builds the error side from an errno value (positive or negative, the way
// libbpf returns them).
inline tl::unexpected<SysError> sys_error(int err, std::string context) {
    if (err < 0) err = -err;
    if (err == 0) err = EIO;
    return tl::unexpected(SysError{std::error_code(err, std::generic_category()),
                                   std::move(context)});
}

// Same, from the current errno.
inline tl::unexpected<SysError> errno_error(std::string context) {
    return sys_error(errno, std::move(context));
}

}  // namespace sockaccel
