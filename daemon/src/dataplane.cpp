// SPDX-License-Identifier: Apache-2.0
#include "dataplane.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <vector>

#include <spdlog/spdlog.h>

#include "sockaccel.skel.h"

namespace sockaccel {
namespace {

// Pin names under the pin directory. bpffs refuses names with a dot.
constexpr const char* kPinSockHash = "sock_hash";
constexpr const char* kPinSkState = "sk_state";
constexpr const char* kPinConfig = "config";
constexpr const char* kPinCounters = "counters";
constexpr const char* kPinSockopsLink = "sockops_link";

// While probing optional mechanisms a refusal is expected, so libbpf's
// complaints about it are debug output, not warnings.
bool g_probing = false;

int libbpf_print(enum libbpf_print_level level, const char* fmt, va_list args) {
    // The verifier log arrives at warning level between these markers; it
    // is long and only useful when debugging (--log-level debug).
    static bool in_verifier_log = false;
    char buf[4096];
    int n = std::vsnprintf(buf, sizeof(buf), fmt, args);
    std::string line(buf, n > 0 ? std::min<std::size_t>(static_cast<std::size_t>(n), sizeof(buf) - 1) : 0);
    while (!line.empty() && line.back() == '\n') line.pop_back();
    if (line.find("-- BEGIN PROG LOAD LOG --") != std::string::npos) in_verifier_log = true;
    const bool verifier = in_verifier_log;
    if (line.find("-- END PROG LOAD LOG --") != std::string::npos) in_verifier_log = false;
    if (verifier || g_probing || level == LIBBPF_DEBUG)
        spdlog::debug("{}", line);
    else if (level == LIBBPF_INFO)
        spdlog::info("{}", line);
    else
        spdlog::warn("{}", line);
    return n;
}

std::string errstr(int err) { return std::generic_category().message(err < 0 ? -err : err); }

// One line naming what the operator can do about a refused bpf() call.
[[noreturn]] void throw_bpf_error(const std::string& what, int err) {
    if (err < 0) err = -err;
    if (err == EPERM || err == EACCES)
        throw StartupError(what + ": permission denied; sockacceld needs root, or CAP_BPF, "
                                  "CAP_NET_ADMIN, CAP_PERFMON and CAP_SYS_RESOURCE");
    if (err == ENOSYS)
        throw StartupError(what + ": this kernel does not support BPF (bpf() returned ENOSYS)");
    throw StartupError(what + ": " + errstr(err));
}

std::uint32_t prog_id(int fd) {
    bpf_prog_info info{};
    __u32 len = sizeof(info);
    return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.id : 0;
}

std::uint32_t map_id(int fd) {
    bpf_map_info info{};
    __u32 len = sizeof(info);
    return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.id : 0;
}

struct LinkInfo {
    std::uint32_t id = 0;
    std::uint64_t cgroup_id = 0;
};

LinkInfo link_info(int fd) {
    bpf_link_info info{};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) return {};
    return {info.id, info.type == BPF_LINK_TYPE_CGROUP ? info.cgroup.cgroup_id : 0};
}

// The cgroup v2 id is the kernfs inode number of the cgroup directory.
std::uint64_t cgroup_id(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

Result<std::uint64_t> count_keys(int map_fd) {
    sockaccel_key key{}, next{};
    std::uint64_t n = 0;
    const void* prev = nullptr;
    while (bpf_map_get_next_key(map_fd, prev, &next) == 0) {
        ++n;
        key = next;
        prev = &key;
    }
    if (errno != ENOENT) return errno_error("walk sockhash");
    return n;
}

// Reads the ABI version a pinned config map carries; nullopt if unreadable.
std::optional<std::uint32_t> pinned_abi_version(const std::string& config_pin) {
    UniqueFd fd(bpf_obj_get(config_pin.c_str()));
    if (!fd) return std::nullopt;
    bpf_map_info info{};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0 ||
        info.value_size != sizeof(sockaccel_config) || info.type != BPF_MAP_TYPE_ARRAY)
        return std::nullopt;
    __u32 zero = 0;
    sockaccel_config cfg{};
    if (bpf_map_lookup_elem(fd.get(), &zero, &cfg) != 0) return std::nullopt;
    return cfg.abi_version;
}

}  // namespace

void DataPlane::route_libbpf_logs() { libbpf_set_print(libbpf_print); }

void DataPlane::check_privilege() {
    UniqueFd fd(bpf_map_create(BPF_MAP_TYPE_ARRAY, "sa_probe", 4, 4, 1, nullptr));
    if (!fd) throw_bpf_error("create a BPF map", errno);
}

Result<std::vector<MapLayout>> DataPlane::embedded_maps() {
    struct ::sockaccel_bpf* skel = sockaccel_bpf__open();
    if (!skel) return errno_error("open BPF skeleton");
    std::vector<MapLayout> out;
    bpf_map* map;
    bpf_object__for_each_map(map, skel->obj) {
        out.push_back({bpf_map__name(map), static_cast<std::uint32_t>(bpf_map__type(map)),
                       bpf_map__key_size(map), bpf_map__value_size(map),
                       bpf_map__max_entries(map)});
    }
    sockaccel_bpf__destroy(skel);
    return out;
}

std::string DataPlane::pin_path(const char* name) const { return info_.pin_dir + "/" + name; }

std::unique_ptr<DataPlane> DataPlane::start(const DataPlaneOptions& options) {
    std::unique_ptr<DataPlane> dp(new DataPlane());
    dp->info_.cgroup_path = options.cgroup_path;
    dp->info_.pin_dir = options.pin_dir;
    dp->open_and_load(options);
    dp->attach(options);
    return dp;
}

void DataPlane::open_and_load(const DataPlaneOptions& options) {
    // The drain iterator is optional: a kernel (or sandbox) that refuses it
    // still gets a working, lossless data plane without it, where sockets
    // leave the map only when they close. Found by trying, never by version.
    int last_err = 0;
    for (const bool drain_iterator : {true, false}) {
        g_probing = drain_iterator;
        if (skel_) sockaccel_bpf__destroy(skel_);
        skel_ = sockaccel_bpf__open();
        if (!skel_) throw_bpf_error("open BPF skeleton", errno);
        if (int err = bpf_map__set_max_entries(skel_->maps.sock_hash, options.map_size))
            throw_bpf_error("set sockhash capacity", err);
        if (int err = bpf_map__set_max_entries(skel_->maps.drain_delete, options.map_size))
            throw_bpf_error("set drain map capacity", err);
        bpf_program__set_autoload(skel_->progs.sockaccel_drain, drain_iterator);
        adopt_or_reset_pins();
        last_err = sockaccel_bpf__load(skel_);
        if (last_err == 0) {
            features_.drain_iterator = drain_iterator;
            break;
        }
        last_err = -last_err;
        spdlog::debug("loading with drain iterator={} failed: {}", drain_iterator,
                      errstr(last_err));
        // No fallback helps when BPF itself is missing. (EPERM is worth the
        // retry: check_privilege() passed, so a refusal here is about the
        // iterator program type, as this VM refuses fentry.)
        if (last_err == ENOSYS) break;
    }
    g_probing = false;
    if (last_err != 0) {
        if (last_err == EPERM || last_err == EACCES || last_err == ENOSYS)
            throw_bpf_error("load BPF programs", last_err);
        throw StartupError("load BPF programs: " + errstr(last_err) +
                           " (the kernel verifier or loader refused them; run with "
                           "--log-level debug for the verifier log)");
    }

    if (!info_.adopted) {
        for (const auto& p : map_pins())
            if (int err = bpf_map__pin(p.map, pin_path(p.name).c_str()))
                throw_bpf_error("pin map at " + pin_path(p.name), err);
    }
    info_.capacity = bpf_map__max_entries(skel_->maps.sock_hash);
    info_.sock_hash_map_id = map_id(bpf_map__fd(skel_->maps.sock_hash));
    info_.sockops_prog_id = prog_id(bpf_program__fd(skel_->progs.sockaccel_sockops));
    info_.sk_msg_prog_id = prog_id(bpf_program__fd(skel_->progs.sockaccel_redirect));
}

std::vector<DataPlane::MapPin> DataPlane::map_pins() const {
    return {
        {skel_->maps.sock_hash, kPinSockHash},
        {skel_->maps.sk_state, kPinSkState},
        {skel_->maps.config, kPinConfig},
        {skel_->maps.counters, kPinCounters},
    };
}

void DataPlane::adopt_or_reset_pins() {
    const auto pins = map_pins();
    info_.adopted = false;
    // Adopt the state a previous run pinned, if it speaks our ABI: its
    // sockets keep being accelerated and its counters continue.
    bool any_pinned = false;
    for (const auto& p : pins) any_pinned = any_pinned || path_exists(pin_path(p.name));
    if (!any_pinned) return;
    auto version = pinned_abi_version(pin_path(kPinConfig));
    bool all_pinned = true;
    for (const auto& p : pins) all_pinned = all_pinned && path_exists(pin_path(p.name));
    if (version && *version == SOCKACCEL_ABI_VERSION && all_pinned) {
        for (const auto& p : pins) {
            UniqueFd fd(bpf_obj_get(pin_path(p.name).c_str()));
            if (!fd) throw_bpf_error("open pinned map " + pin_path(p.name), errno);
            // reuse_fd copies the pinned map's definition, so a changed
            // map_size does not resize (that would need a new map).
            if (int err = bpf_map__reuse_fd(p.map, fd.get()))
                throw_bpf_error("adopt pinned map " + pin_path(p.name), err);
        }
        info_.adopted = true;
        return;
    }
    // Foreign or partial state. Replacing it frees the sockets' unread data
    // unless the old sockhash is empty (fact 1), so only then.
    std::uint64_t left = 0;
    UniqueFd old(bpf_obj_get(pin_path(kPinSockHash).c_str()));
    if (old) {
        auto n = count_keys(old.get());
        left = n ? *n : 1;
    }
    if (left > 0)
        throw StartupError(
            "pinned state in " + info_.pin_dir + " is from an incompatible version (ABI " +
            (version ? std::to_string(*version) : std::string("unknown")) + ", expected " +
            std::to_string(SOCKACCEL_ABI_VERSION) + ") and still holds " + std::to_string(left) +
            " socket(s); replacing it could lose their unread data. Stop the applications "
            "using them or start with another --pin-dir");
    for (const char* name : {kPinSockopsLink, kPinSockHash, kPinSkState, kPinConfig, kPinCounters})
        ::unlink(pin_path(name).c_str());
}

void DataPlane::attach(const DataPlaneOptions& options) {
    const int map_fd = bpf_map__fd(skel_->maps.sock_hash);
    const int msg_fd = bpf_program__fd(skel_->progs.sockaccel_redirect);
    const int ops_fd = bpf_program__fd(skel_->progs.sockaccel_sockops);

    // sk_msg first: a socket takes its programs from the map when it is
    // inserted (fact 5), so the verdict must be in place before sockops
    // inserts anything. On adoption this replaces the old program for new
    // sockets; existing ones keep theirs, which share these maps.
    if (bpf_prog_attach(msg_fd, map_fd, BPF_SK_MSG_VERDICT, 0) != 0)
        throw_bpf_error("attach sk_msg program to the sockhash", errno);

    // Redirect and insert from now on. The ABI version marks the state as
    // ours for the next start.
    sockaccel_config cfg{};
    cfg.abi_version = SOCKACCEL_ABI_VERSION;
    cfg.flags = SOCKACCEL_CFG_INSERT | SOCKACCEL_CFG_REDIRECT;
    cfg.max_unread_bytes = options.max_unread_bytes;
    __u32 zero = 0;
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.config), &zero, &cfg, BPF_ANY) != 0)
        throw_bpf_error("write config map", errno);

    const std::string link_pin = pin_path(kPinSockopsLink);
    UniqueFd old_link(path_exists(link_pin) ? bpf_obj_get(link_pin.c_str()) : -1);
    if (old_link && link_info(old_link.get()).cgroup_id == cgroup_id(options.cgroup_path)) {
        // Same cgroup: swap the program in place, with no moment where new
        // connections go unseen.
        if (bpf_link_update(old_link.get(), ops_fd, nullptr) != 0)
            throw_bpf_error("update pinned sockops link " + link_pin, errno);
        link_fd_ = std::move(old_link);
    } else {
        auto link = create_sockops_link();
        if (!link) throw_bpf_error(link.error().context, link.error().errno_value());
        if (old_link) {
            // Pinned on another cgroup by a previous run: the new link is in
            // place, so dropping the old one leaves no gap.
            ::unlink(link_pin.c_str());
            old_link.reset();
        }
        if (bpf_obj_pin(link->get(), link_pin.c_str()) != 0)
            throw_bpf_error("pin sockops link at " + link_pin, errno);
        link_fd_ = std::move(*link);
    }
    info_.sockops_link_id = link_info(link_fd_.get()).id;
}

Result<UniqueFd> DataPlane::create_sockops_link() {
    UniqueFd cg(::open(info_.cgroup_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!cg) return errno_error("open cgroup " + info_.cgroup_path);
    UniqueFd link(bpf_link_create(bpf_program__fd(skel_->progs.sockaccel_sockops), cg.get(),
                                  BPF_CGROUP_SOCK_OPS, nullptr));
    if (!link) return errno_error("attach sockops program to cgroup " + info_.cgroup_path);
    return link;
}

Result<void> DataPlane::detach_sockops() {
    if (!link_fd_) return {};
    ::unlink(pin_path(kPinSockopsLink).c_str());
    link_fd_.reset();
    info_.sockops_link_id = 0;
    return {};
}

Result<void> DataPlane::attach_sockops() {
    if (link_fd_) return {};
    auto link = create_sockops_link();
    if (!link) return tl::unexpected(link.error());
    if (bpf_obj_pin(link->get(), pin_path(kPinSockopsLink).c_str()) != 0)
        return errno_error("pin sockops link at " + pin_path(kPinSockopsLink));
    link_fd_ = std::move(*link);
    info_.sockops_link_id = link_info(link_fd_.get()).id;
    return {};
}

DataPlane::~DataPlane() {
    // Only file descriptors are released here. Pins keep maps and links
    // alive, so nothing is detached and no socket's data is freed.
    link_fd_.reset();
    if (drain_link_) bpf_link__destroy(drain_link_);
    if (skel_) sockaccel_bpf__destroy(skel_);
}

Result<std::uint32_t> DataPlane::flags() const {
    __u32 zero = 0;
    sockaccel_config cfg{};
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.config), &zero, &cfg) != 0)
        return errno_error("read config map");
    return cfg.flags;
}

Result<void> DataPlane::update_config(const std::function<void(sockaccel_config&)>& change) {
    // Read-modify-write: only the daemon's io_context thread writes the map.
    __u32 zero = 0;
    sockaccel_config cfg{};
    const int fd = bpf_map__fd(skel_->maps.config);
    if (bpf_map_lookup_elem(fd, &zero, &cfg) != 0) return errno_error("read config map");
    cfg.abi_version = SOCKACCEL_ABI_VERSION;
    change(cfg);
    if (bpf_map_update_elem(fd, &zero, &cfg, BPF_ANY) != 0) return errno_error("write config map");
    return {};
}

Result<void> DataPlane::set_flags(std::uint32_t flags) {
    return update_config([flags](sockaccel_config& cfg) { cfg.flags = flags; });
}

Result<void> DataPlane::set_max_unread_bytes(std::uint64_t limit) {
    return update_config([limit](sockaccel_config& cfg) { cfg.max_unread_bytes = limit; });
}

Result<CounterValues> DataPlane::read_counters() const {
    const int ncpus = libbpf_num_possible_cpus();
    if (ncpus <= 0) return sys_error(ncpus, "count possible CPUs");
    std::vector<std::uint8_t> buf(static_cast<std::size_t>(ncpus) * 8);
    CounterValues out{};
    const int fd = bpf_map__fd(skel_->maps.counters);
    for (__u32 i = 0; i < SOCKACCEL_CNT__MAX; ++i) {
        if (bpf_map_lookup_elem(fd, &i, buf.data()) != 0) return errno_error("read counters");
        out[i] = sum_per_cpu(buf, static_cast<std::size_t>(ncpus));
    }
    return out;
}

Result<std::uint64_t> DataPlane::count_entries() const {
    return count_keys(bpf_map__fd(skel_->maps.sock_hash));
}

Result<std::vector<SocketEntry>> DataPlane::list_entries(std::size_t limit) const {
    const int fd = bpf_map__fd(skel_->maps.sock_hash);
    std::vector<SocketEntry> out;
    sockaccel_key key{}, next{};
    const void* prev = nullptr;
    while (out.size() < limit && bpf_map_get_next_key(fd, prev, &next) == 0) {
        key = next;
        prev = &key;
        std::uint64_t cookie = 0;
        // The socket may close between the two calls; skip it then.
        if (bpf_map_lookup_elem(fd, &key, &cookie) == 0) out.push_back({key, cookie});
    }
    return out;
}

Result<std::vector<sockaccel_drain_record>> DataPlane::drain_pass(
    std::uint32_t mode, const std::vector<std::uint64_t>& delete_cookies) {
    if (!features_.drain_iterator) return sys_error(ENOTSUP, "drain iterator");
    if (!drain_link_) {
        // Attached once: an iterator link is a template, each bpf_iter_create
        // below is one independent walk of the sockhash.
        union bpf_iter_link_info linfo {};
        linfo.map.map_fd = static_cast<__u32>(bpf_map__fd(skel_->maps.sock_hash));
        LIBBPF_OPTS(bpf_iter_attach_opts, opts, .link_info = &linfo,
                    .link_info_len = sizeof(linfo));
        drain_link_ = bpf_program__attach_iter(skel_->progs.sockaccel_drain, &opts);
        if (!drain_link_) {
            int err = errno;
            return sys_error(err, "attach drain iterator");
        }
    }
    __u32 zero = 0;
    sockaccel_drain_ctl ctl{};
    ctl.mode = mode;
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.drain_ctl), &zero, &ctl, BPF_ANY) != 0)
        return errno_error("write drain control");
    const int del_fd = bpf_map__fd(skel_->maps.drain_delete);
    const __u8 one = 1;
    for (auto cookie : delete_cookies)
        if (bpf_map_update_elem(del_fd, &cookie, &one, BPF_ANY) != 0)
            return errno_error("fill drain delete set");

    std::vector<sockaccel_drain_record> out;
    UniqueFd iter(bpf_iter_create(bpf_link__fd(drain_link_)));
    if (!iter) return errno_error("create drain iterator");
    std::vector<char> buf;
    char chunk[16384];
    for (;;) {
        ssize_t n = ::read(iter.get(), chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int err = errno;
            for (auto cookie : delete_cookies) bpf_map_delete_elem(del_fd, &cookie);
            return sys_error(err, "read drain iterator");
        }
        if (n == 0) break;
        buf.insert(buf.end(), chunk, chunk + n);
    }
    for (auto cookie : delete_cookies) bpf_map_delete_elem(del_fd, &cookie);
    const std::size_t count = buf.size() / sizeof(sockaccel_drain_record);
    out.resize(count);
    if (count) std::memcpy(out.data(), buf.data(), count * sizeof(sockaccel_drain_record));
    return out;
}

Result<StopOutcome> DataPlane::stop() {
    stopped_ = true;
    StopOutcome outcome;

    // 1. Stop inserting and redirecting. Every socket that sends from now on
    //    takes TCP for good (ordering rule), so no new data is redirected.
    if (auto r = set_flags(0); !r) return tl::unexpected(r.error());

    // 2. Detach sockops: new connections are not accelerated.
    (void)detach_sockops();

    // 3. Remove the maps only if no socket is left in the sockhash. A socket
    //    still there may hold unread redirected data, which deleting it or
    //    freeing the map would destroy (fact 1); then everything stays
    //    pinned and the next start adopts it.
    auto left = count_entries();
    if (!left) return tl::unexpected(left.error());
    outcome.sockets_left = *left;
    if (*left > 0) {
        outcome.left_pinned = true;
        return outcome;
    }
    bpf_prog_detach2(bpf_program__fd(skel_->progs.sockaccel_redirect),
                     bpf_map__fd(skel_->maps.sock_hash), BPF_SK_MSG_VERDICT);
    for (const char* name : {kPinSockHash, kPinSkState, kPinConfig, kPinCounters})
        ::unlink(pin_path(name).c_str());
    ::rmdir(info_.pin_dir.c_str());
    return outcome;
}

}  // namespace sockaccel
