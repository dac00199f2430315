// SPDX-License-Identifier: Apache-2.0
#include "system.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>

#include <fstream>
#include <sstream>

namespace sockaccel {
namespace {

// /proc/mounts escapes space, tab, newline and backslash as \ooo.
std::string unescape_mount_field(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size()) {
            auto oct = s.substr(i + 1, 3);
            if (oct.size() == 3 && oct.find_first_not_of("01234567") == std::string_view::npos) {
                out.push_back(static_cast<char>((oct[0] - '0') * 64 + (oct[1] - '0') * 8 +
                                                (oct[2] - '0')));
                i += 3;
                continue;
            }
        }
        out.push_back(s[i]);
    }
    return out;
}

Result<long> fs_magic(const std::string& path) {
    struct statfs st {};
    if (::statfs(path.c_str(), &st) != 0) return errno_error("statfs " + path);
    return static_cast<long>(st.f_type);
}

std::string parent_of(const std::string& path) {
    auto pos = path.find_last_of('/');
    if (pos == std::string::npos || pos == 0) return "/";
    return path.substr(0, pos);
}

}  // namespace

Result<std::string> find_cgroup2_mount(std::string_view text) {
    std::istringstream in{std::string(text)};
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string dev, mnt, type;
        if (!(fields >> dev >> mnt >> type)) continue;
        if (type == "cgroup2") return unescape_mount_field(mnt);
    }
    return sys_error(ENOENT, "no cgroup2 filesystem in /proc/self/mounts");
}

Result<std::string> find_cgroup2_mount() {
    std::ifstream in("/proc/self/mounts");
    if (!in) return errno_error("read /proc/self/mounts");
    std::ostringstream text;
    text << in.rdbuf();
    return find_cgroup2_mount(text.str());
}

Result<std::string> resolve_cgroup(const std::string& configured, const std::string& root) {
    std::string path = configured.empty()        ? root
                       : configured.front() == '/' ? configured
                                                   : root + "/" + configured;
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return errno_error("cgroup " + path);
    if (!S_ISDIR(st.st_mode)) return sys_error(ENOTDIR, "cgroup " + path);
    auto magic = fs_magic(path);
    if (!magic) return tl::unexpected(magic.error());
    if (*magic != CGROUP2_SUPER_MAGIC)
        return sys_error(EINVAL, "cgroup " + path + " is not on a cgroup v2 filesystem");
    return path;
}

Result<bool> prepare_pin_dir(const std::string& pin_dir) {
    bool mounted = false;
    const std::string parent = parent_of(pin_dir);
    // bpffs is often not mounted on a fresh boot without systemd; only the
    // conventional location is mounted automatically.
    if (parent == "/sys/fs/bpf") {
        auto magic = fs_magic(parent);
        if (!magic) return tl::unexpected(magic.error());
        if (*magic != BPF_FS_MAGIC) {
            if (::mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700") != 0)
                return errno_error("mount bpffs on /sys/fs/bpf");
            mounted = true;
        }
    }
    if (::mkdir(pin_dir.c_str(), 0700) != 0 && errno != EEXIST)
        return errno_error("create pin directory " + pin_dir);
    auto magic = fs_magic(pin_dir);
    if (!magic) return tl::unexpected(magic.error());
    if (*magic != BPF_FS_MAGIC)
        return sys_error(EINVAL, "pin directory " + pin_dir + " is not on a bpf filesystem");
    return mounted;
}

Result<UniqueFd> lock_directory(const std::string& dir) {
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return errno_error("open " + dir);
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) return errno_error("lock " + dir);
    return fd;
}

std::string kernel_release() {
    struct utsname u {};
    if (::uname(&u) != 0) return "unknown";
    return u.release;
}

std::optional<std::uint64_t> tcp_rmem_max() {
    std::ifstream in("/proc/sys/net/ipv4/tcp_rmem");
    std::uint64_t min = 0, def = 0, max = 0;
    if (!(in >> min >> def >> max) || max == 0) return std::nullopt;
    return max;
}

bool path_exists(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
}

}  // namespace sockaccel
