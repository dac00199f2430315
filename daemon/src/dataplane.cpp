// SPDX-License-Identifier: Apache-2.0
#include "dataplane.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <array>
#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>
#include <unordered_map>
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
constexpr const char* kPinRedirGate = "redir_gate";
constexpr const char* kPinDemoteEvents = "demote_events";
// Every map pin (map_pins() pairs them with the skeleton's maps).
constexpr std::array<const char*, 6> kMapPinNames = {
    kPinSockHash, kPinSkState, kPinConfig, kPinCounters, kPinRedirGate, kPinDemoteEvents};
constexpr const char* kPinSockopsLink = "sockops_link";
// Subdirectories of the pin directory holding retired state of another ABI
// version: retired_abi<N>_<unix seconds>.
constexpr const char* kRetiredPrefix = "retired_abi";

// While probing optional mechanisms a refusal is expected, so libbpf's
// complaints about it are debug output, not warnings.
bool g_probing = false;

int libbpf_print(enum libbpf_print_level level, const char* fmt, va_list args) {
    // The verifier log arrives at warning level between these markers; it
    // is long and only useful when debugging (--log-level debug).
    static bool in_verifier_log = false;
    // Sized to the message: the verifier log comes as one message, and its
    // end (the reason for a refusal) must not be cut off.
    va_list again;
    va_copy(again, args);
    const int n = std::vsnprintf(nullptr, 0, fmt, args);
    std::string line(n > 0 ? static_cast<std::size_t>(n) : 0, '\0');
    if (n > 0) std::vsnprintf(line.data(), line.size() + 1, fmt, again);
    va_end(again);
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
                                  "CAP_NET_ADMIN and CAP_PERFMON");
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

// Counts the keys of a map of any layout (the sockhash of another ABI
// version may have another key size), so the buffer comes from the map.
Result<std::uint64_t> count_any_keys(int map_fd) {
    bpf_map_info info{};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(map_fd, &info, &len) != 0) return errno_error("inspect map");
    std::vector<std::uint8_t> key(std::max<std::size_t>(info.key_size, 1)),
        next(std::max<std::size_t>(info.key_size, 1));
    std::uint64_t n = 0;
    const void* prev = nullptr;
    while (bpf_map_get_next_key(map_fd, prev, next.data()) == 0) {
        ++n;
        key.swap(next);
        prev = key.data();
    }
    if (errno != ENOENT) return errno_error("walk map");
    return n;
}

// The start of every ABI version's config value, frozen (abi.h): whatever a
// version appends, a daemon of any other version can read abi_version and
// switch the state off by clearing flags.
struct ConfigPrefix {
    __u32 abi_version;
    __u32 flags;
};
static_assert(offsetof(sockaccel_config, abi_version) == offsetof(ConfigPrefix, abi_version) &&
                  offsetof(sockaccel_config, flags) == offsetof(ConfigPrefix, flags),
              "sockaccel_config must start with the frozen prefix");

struct PinnedConfig {
    std::uint32_t abi_version = 0;
    std::uint32_t value_size = 0;
};

// Opens a pinned config map and checks the layout every ABI version shares:
// an array whose element 0 starts with ConfigPrefix. Fills `value` with the
// whole element 0.
Result<UniqueFd> open_config(const std::string& pin, std::vector<std::uint8_t>& value) {
    UniqueFd fd(bpf_obj_get(pin.c_str()));
    if (!fd) return errno_error("open " + pin);
    bpf_map_info info{};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) return errno_error("inspect " + pin);
    if (info.type != BPF_MAP_TYPE_ARRAY || info.value_size < sizeof(ConfigPrefix) ||
        info.max_entries < 1)
        return sys_error(EINVAL, pin + " is not a config map (unknown layout)");
    value.assign(info.value_size, 0);
    __u32 zero = 0;
    if (bpf_map_lookup_elem(fd.get(), &zero, value.data()) != 0) return errno_error("read " + pin);
    return fd;
}

// The ABI version and value size of a pinned config map of any version;
// nullopt if it is missing or of an unknown layout.
std::optional<PinnedConfig> read_pinned_config(const std::string& pin) {
    std::vector<std::uint8_t> value;
    if (!open_config(pin, value)) return std::nullopt;
    ConfigPrefix prefix{};
    std::memcpy(&prefix, value.data(), sizeof(prefix));
    return PinnedConfig{prefix.abi_version, static_cast<std::uint32_t>(value.size())};
}

// Clears every flag of a pinned config map of any ABI version, keeping the
// rest of its value (read-modify-write; its own daemon is gone, since we
// hold the pin directory's lock).
Result<void> quiesce_config(const std::string& pin) {
    std::vector<std::uint8_t> value;
    auto fd = open_config(pin, value);
    if (!fd) return tl::unexpected(fd.error());
    ConfigPrefix prefix{};
    std::memcpy(&prefix, value.data(), sizeof(prefix));
    prefix.flags = 0;
    std::memcpy(value.data(), &prefix, sizeof(prefix));
    __u32 zero = 0;
    if (bpf_map_update_elem(fd->get(), &zero, value.data(), BPF_EXIST) != 0)
        return errno_error("write " + pin);
    return {};
}

// Detaches a pinned link and removes its pin. Unlinking alone would leave
// the link attached while anyone else still holds a descriptor to it.
void detach_pinned_link(const std::string& pin) {
    if (!path_exists(pin)) return;
    UniqueFd fd(bpf_obj_get(pin.c_str()));
    if (fd && bpf_link_detach(fd.get()) != 0)
        spdlog::debug("detach link {}: {}", pin, errstr(errno));
    ::unlink(pin.c_str());
}

// Names of the entries of `dir` that are (want_dirs) or are not directories.
Result<std::vector<std::string>> list_dir(const std::string& dir, bool want_dirs) {
    DIR* d = ::opendir(dir.c_str());
    if (!d) return errno_error("read directory " + dir);
    std::vector<std::string> out;
    while (const dirent* e = ::readdir(d)) {
        const std::string name = e->d_name;
        if (name == "." || name == "..") continue;
        bool is_dir = e->d_type == DT_DIR;
        if (e->d_type == DT_UNKNOWN) {
            struct stat st {};
            is_dir = ::lstat((dir + "/" + name).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
        }
        if (is_dir == want_dirs) out.push_back(name);
    }
    ::closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

// Unpins everything in a retired directory and removes it. Only called once
// its sockhash is empty: the maps are then freed with no data in them.
Result<void> remove_retired_dir(const std::string& dir) {
    auto names = list_dir(dir, /*want_dirs=*/false);
    if (!names) return tl::unexpected(names.error());
    for (const auto& name : *names)
        if (::unlink((dir + "/" + name).c_str()) != 0 && errno != ENOENT)
            return errno_error("unpin " + dir + "/" + name);
    if (::rmdir(dir.c_str()) != 0) return errno_error("remove " + dir);
    return {};
}

}  // namespace

void BpfLinkDeleter::operator()(struct ::bpf_link* link) const { bpf_link__destroy(link); }

std::string_view to_string(EntryCounter counter) {
    switch (counter) {
        case EntryCounter::map_iterator: return "map_iterator";
        case EntryCounter::sockhash_iterator: return "sockhash_iterator";
        case EntryCounter::key_walk: return "key_walk";
    }
    return "unknown";
}

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
    // Pinned gate words may hold claims of an earlier run's passes; a start
    // of numbering that run is unlikely to have reached keeps them apart.
    dp->drain_pass_number_ = std::random_device{}();
    dp->info_.cgroup_path = options.cgroup_path;
    dp->info_.pin_dir = options.pin_dir;
    dp->open_and_load(options);
    dp->attach(options);
    // Our state is up; state an earlier upgrade retired goes now if its
    // sockets have all closed. A failure only delays that to the next
    // status or stop.
    if (auto r = dp->collect_retired(); !r)
        spdlog::debug("collect retired state: {}", r.error().message());
    return dp;
}

void DataPlane::open_and_load(const DataPlaneOptions& options) {
    // Mechanisms follow the feature probe (kernel_features.h), which says
    // which iterator types the kernel accepts at all; whether our programs
    // pass its verifier is only known by loading them. So each candidate
    // drain backend is tried in turn, with the best entry counter first:
    // the counter that needs no walk, if the kernel allows iter/bpf_map,
    // else the backend's own (only the sockhash iterator can count alone).
    struct Plan {
        DrainBackend backend;
        EntryCounter counter;
    };
    std::vector<Plan> plans;
    for (auto backend : options.drain_backends) {
        if (options.features.map_iterator) plans.push_back({backend, EntryCounter::map_iterator});
        plans.push_back({backend, backend == DrainBackend::sockhash
                                      ? EntryCounter::sockhash_iterator
                                      : EntryCounter::key_walk});
    }
    if (plans.empty()) throw StartupError("load BPF programs: no drain backend to load");
    // The full verdict needs kernel reads in sk_msg: the reader checks and
    // lifting holds. Back-pressure also needs psock->msg_tot_len, which the
    // program reads only where it exists (6.1 has none: no limit there).
    const bool kernel_reads = options.features.sk_msg_kernel_reads;
    int last_err = 0;
    std::string tried;
    for (const auto& plan : plans) {
        // A refusal is expected while better plans are left to try.
        g_probing = &plan != &plans.back();
        if (skel_) sockaccel_bpf__destroy(skel_);
        skel_ = sockaccel_bpf__open();
        if (!skel_) throw_bpf_error("open BPF skeleton", errno);
        if (int err = bpf_map__set_max_entries(skel_->maps.sock_hash, options.map_size))
            throw_bpf_error("set sockhash capacity", err);
        for (auto* sized : {skel_->maps.drain_delete, skel_->maps.drain_claim, skel_->maps.redir_gate})
            if (int err = bpf_map__set_max_entries(sized, options.map_size))
                throw_bpf_error(std::string("set capacity of map ") + bpf_map__name(sized), err);
        bpf_program__set_autoload(skel_->progs.sockaccel_drain, plan.backend == DrainBackend::sockhash);
        bpf_program__set_autoload(skel_->progs.sockaccel_drain_files,
                                  plan.backend == DrainBackend::task_file);
        bpf_program__set_autoload(skel_->progs.sockaccel_drain_tcp, plan.backend == DrainBackend::tcp);
        bpf_program__set_autoload(skel_->progs.sockaccel_count,
                                  plan.counter == EntryCounter::sockhash_iterator);
        bpf_program__set_autoload(skel_->progs.sockaccel_count_map,
                                  plan.counter == EntryCounter::map_iterator);
        bpf_program__set_autoload(skel_->progs.sockaccel_redirect, kernel_reads);
        bpf_program__set_autoload(skel_->progs.sockaccel_redirect_basic, !kernel_reads);
        adopt_or_reset_pins();
        last_err = sockaccel_bpf__load(skel_);
        if (last_err == 0) {
            features_.drain_backend = plan.backend;
            features_.entry_counter = plan.counter;
            break;
        }
        last_err = -last_err;
        tried += (tried.empty() ? "" : ", ") + std::string(to_string(plan.backend)) + "+" +
                 std::string(to_string(plan.counter));
        spdlog::debug("loading with drain backend {} and entry counter {} failed: {}",
                      to_string(plan.backend), to_string(plan.counter), errstr(last_err));
        // No fallback helps when BPF itself is missing.
        if (last_err == ENOSYS) break;
    }
    g_probing = false;
    if (last_err != 0) {
        if (last_err == ENOSYS) throw_bpf_error("load BPF programs", last_err);
        throw StartupError("load BPF programs: " + errstr(last_err) +
                           " with every drain backend the kernel allows (" + tried +
                           "; the kernel verifier or loader refused them; run with "
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
    verdict_ = kernel_reads ? skel_->progs.sockaccel_redirect : skel_->progs.sockaccel_redirect_basic;
    features_.backpressure_program = options.features.backpressure();
    features_.reader_check_program = kernel_reads;
    features_.demotion_program = kernel_reads;
    info_.sk_msg_prog_id = prog_id(bpf_program__fd(verdict_));
}

std::vector<DataPlane::MapPin> DataPlane::map_pins() const {
    return {
        {skel_->maps.sock_hash, kPinSockHash},
        {skel_->maps.sk_state, kPinSkState},
        {skel_->maps.config, kPinConfig},
        {skel_->maps.counters, kPinCounters},
        {skel_->maps.redir_gate, kPinRedirGate},
        {skel_->maps.demote_events, kPinDemoteEvents},
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
    const auto config = read_pinned_config(pin_path(kPinConfig));
    bool all_pinned = true;
    for (const auto& p : pins) all_pinned = all_pinned && path_exists(pin_path(p.name));
    if (config && config->abi_version == SOCKACCEL_ABI_VERSION &&
        config->value_size == sizeof(sockaccel_config) && all_pinned) {
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
    // Foreign or partial state. Unpinning it frees its sockhash, and with it
    // the unread data of every socket still in it (fact 1), so it is simply
    // removed only when that sockhash is empty (or absent).
    std::optional<std::uint64_t> left = 0;  // nullopt: present, but not countable
    if (UniqueFd old(bpf_obj_get(pin_path(kPinSockHash).c_str())); old) {
        auto n = count_any_keys(old.get());
        left = n ? std::optional<std::uint64_t>(*n) : std::nullopt;
    }
    if (left && *left == 0) {
        ::unlink(pin_path(kPinSockopsLink).c_str());
        for (const char* name : kMapPinNames) ::unlink(pin_path(name).c_str());
        return;
    }
    // Otherwise it is retired, which needs switching it off first through
    // the config prefix that every ABI version shares. Without a readable
    // config there is no safe way to stop its senders redirecting, so the
    // start is refused and nothing is touched.
    if (!config)
        throw StartupError(
            "pinned state in " + info_.pin_dir +
            " is from an incompatible version (ABI unknown: its config map is missing or of an "
            "unknown layout, expected ABI " + std::to_string(SOCKACCEL_ABI_VERSION) +
            ") and still holds " + (left ? std::to_string(*left) : std::string("an unknown number of")) +
            " socket(s); it cannot be switched off safely, and replacing it could lose their "
            "unread data. Stop the applications using them or start with another --pin-dir");
    retire_pins(config->abi_version, left);
}

void DataPlane::retire_pins(std::uint32_t abi_version, std::optional<std::uint64_t> sockets) {
    const std::string what =
        "pinned state of ABI " + std::to_string(abi_version) + " in " + info_.pin_dir;

    // 1. Switch it off. With REDIRECT clear, each of its senders takes TCP
    //    for good from its next send on; its receivers read the redirected
    //    bytes they hold before any TCP byte (fact 2), so nothing is
    //    reordered. With INSERT clear, nothing new enters its sockhash. Up
    //    to here nothing has changed, so a failure leaves it as it was.
    if (auto r = quiesce_config(pin_path(kPinConfig)); !r)
        throw StartupError("switch off " + what + ": " + r.error().message() +
                           "; it still holds sockets, so it was left unchanged");

    // 2. Detach its sockops program. attach() creates our own link later;
    //    connections established in between are not accelerated, which is
    //    all they lose.
    detach_pinned_link(pin_path(kPinSockopsLink));

    // 3. Move its pins aside instead of unpinning them. A pinned map is
    //    never freed, so the unread data stays readable; each socket leaves
    //    the old sockhash by itself when it closes (fact 6), and
    //    collect_retired() removes the directory once it is empty. bpffs
    //    renames within itself and refuses names with a dot.
    const std::string base = pin_path(kRetiredPrefix) + std::to_string(abi_version) + "_" +
                             std::to_string(static_cast<long long>(std::time(nullptr)));
    std::string dir = base;
    for (int i = 2; ::mkdir(dir.c_str(), 0700) != 0; ++i) {
        if (errno != EEXIST || i > 100)
            throw StartupError("create " + dir + ": " + errstr(errno) + "; " + what +
                               " is switched off but stays in place (nothing was freed)");
        dir = base + "_" + std::to_string(i);
    }
    // The sockhash first: it is what holds the data (the other maps are kept
    // alive by the programs attached to it anyway). Then every other pin,
    // including any a newer version added that this one does not know.
    std::vector<std::string> names = {kPinSockHash, kPinConfig, kPinSkState, kPinCounters};
    if (auto rest = list_dir(info_.pin_dir, /*want_dirs=*/false))
        for (const auto& name : *rest)
            if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
    for (const auto& name : names) {
        const std::string from = info_.pin_dir + "/" + name;
        if (!path_exists(from)) continue;
        if (::rename(from.c_str(), (dir + "/" + name).c_str()) != 0)
            throw StartupError("move " + from + " to " + dir + ": " + errstr(errno) + "; " + what +
                               " is switched off and stays pinned (nothing was freed)");
    }
    spdlog::warn("pinned state of ABI {} replaced; {} socket(s) retired to {} until they close",
                 abi_version, sockets ? std::to_string(*sockets) : std::string("an unknown number of"),
                 dir);
}

Result<std::vector<RetiredState>> DataPlane::collect_retired() {
    std::vector<RetiredState> out;
    if (!path_exists(info_.pin_dir)) return out;
    auto dirs = list_dir(info_.pin_dir, /*want_dirs=*/true);
    if (!dirs) return tl::unexpected(dirs.error());
    for (const auto& name : *dirs) {
        if (name.rfind(kRetiredPrefix, 0) != 0) continue;
        RetiredState r;
        r.dir = info_.pin_dir + "/" + name;
        if (auto cfg = read_pinned_config(r.dir + "/" + kPinConfig)) r.abi_version = cfg->abi_version;
        // A sockhash that cannot be read is kept: only a provably empty one
        // (or none at all) holds no data.
        if (UniqueFd hash(bpf_obj_get((r.dir + "/" + kPinSockHash).c_str())); hash) {
            if (auto n = count_any_keys(hash.get())) r.sockets = *n;
        } else if (errno == ENOENT) {
            r.sockets = 0;
        }
        if (r.sockets && *r.sockets == 0) {
            if (auto removed = remove_retired_dir(r.dir)) {
                spdlog::info("removed retired state {} (ABI {}): its sockets have all closed",
                             r.dir, r.abi_version ? std::to_string(*r.abi_version) : "unknown");
                continue;
            } else {
                spdlog::debug("keeping {}: {}", r.dir, removed.error().message());
            }
        }
        out.push_back(std::move(r));
    }
    return out;
}

void DataPlane::attach(const DataPlaneOptions& options) {
    const int map_fd = bpf_map__fd(skel_->maps.sock_hash);
    const int msg_fd = bpf_program__fd(verdict_);
    const int ops_fd = bpf_program__fd(skel_->progs.sockaccel_sockops);

    // sk_msg first: a socket takes its programs from the map when it is
    // inserted (fact 5), so the verdict must be in place before sockops
    // inserts anything. On adoption this replaces the old program for new
    // sockets; existing ones keep theirs, which share these maps.
    if (bpf_prog_attach(msg_fd, map_fd, BPF_SK_MSG_VERDICT, 0) != 0)
        throw_bpf_error("attach sk_msg program to the sockhash", errno);

    // The policy's entries before its flags, and both before sockops can
    // insert anything.
    if (auto r = write_policy_entries(options.policy); !r)
        throw StartupError("write policy maps: " + r.error().message());

    // Redirect and insert from now on. The ABI version marks the state as
    // ours for the next start.
    sockaccel_config cfg{};
    cfg.abi_version = SOCKACCEL_ABI_VERSION;
    cfg.flags = SOCKACCEL_CFG_INSERT | SOCKACCEL_CFG_REDIRECT;
    cfg.max_unread_bytes = options.max_unread_bytes;
    cfg.policy = options.policy.flags;
    apply_demote(cfg, options.demote);
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
    drain_link_.reset();
    count_link_.reset();
    if (skel_) sockaccel_bpf__destroy(skel_);
}

Result<sockaccel_config> DataPlane::config() const {
    __u32 zero = 0;
    sockaccel_config cfg{};
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.config), &zero, &cfg) != 0)
        return errno_error("read config map");
    return cfg;
}

Result<std::uint32_t> DataPlane::flags() const {
    return config().map([](const sockaccel_config& cfg) { return cfg.flags; });
}

Result<std::uint64_t> DataPlane::max_unread_bytes() const {
    return config().map([](const sockaccel_config& cfg) { return cfg.max_unread_bytes; });
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

Result<void> DataPlane::write_policy_entries(const EncodedPolicy& policy) {
    const int ports_fd = bpf_map__fd(skel_->maps.policy_ports);
    for (__u32 i = 0; i < policy.port_words.size(); ++i) {
        __u64 word = policy.port_words[i];
        if (bpf_map_update_elem(ports_fd, &i, &word, BPF_ANY) != 0)
            return errno_error("write policy_ports");
    }
    const int cidrs_fd = bpf_map__fd(skel_->maps.policy_cidrs);
    for (const auto& [key, verdict] : policy.cidrs) {
        __u32 v = verdict;
        if (bpf_map_update_elem(cidrs_fd, &key, &v, BPF_ANY) != 0)
            return errno_error("write policy_cidrs");
    }
    const int cgroups_fd = bpf_map__fd(skel_->maps.policy_cgroups);
    for (const auto& [id, verdict] : policy.cgroups) {
        __u64 k = id;
        __u32 v = verdict;
        if (bpf_map_update_elem(cgroups_fd, &k, &v, BPF_ANY) != 0)
            return errno_error("write policy_cgroups");
    }
    return {};
}

namespace {

// Deletes every key of `fd` for which `keep` is false. Keys are collected
// first: deleting while walking with get_next_key can restart the walk.
template <typename Key>
Result<void> delete_keys_except(int fd, const std::function<bool(const Key&)>& keep,
                                const char* what) {
    std::vector<Key> stale;
    Key key{}, next{};
    const void* prev = nullptr;
    while (bpf_map_get_next_key(fd, prev, &next) == 0) {
        if (!keep(next)) stale.push_back(next);
        key = next;
        prev = &key;
    }
    if (errno != ENOENT) return errno_error(std::string("walk ") + what);
    for (const auto& k : stale)
        if (bpf_map_delete_elem(fd, &k) != 0 && errno != ENOENT)
            return errno_error(std::string("delete from ") + what);
    return {};
}

}  // namespace

int DataPlane::reader_events_fd() const { return bpf_map__fd(skel_->maps.reader_events); }
int DataPlane::demote_events_fd() const { return bpf_map__fd(skel_->maps.demote_events); }

Result<void> DataPlane::set_policy(const EncodedPolicy& policy) {
    if (auto r = write_policy_entries(policy); !r) return r;
    if (auto r = update_config([&](sockaccel_config& cfg) { cfg.policy = policy.flags; }); !r)
        return r;
    auto keep_cidr = [&](const sockaccel_cidr_key& k) {
        for (const auto& [key, verdict] : policy.cidrs)
            if (std::memcmp(&key, &k, sizeof k) == 0) return true;
        return false;
    };
    if (auto r = delete_keys_except<sockaccel_cidr_key>(bpf_map__fd(skel_->maps.policy_cidrs),
                                                        keep_cidr, "policy_cidrs");
        !r)
        return r;
    auto keep_cgroup = [&](const __u64& id) {
        for (const auto& [key, verdict] : policy.cgroups)
            if (key == id) return true;
        return false;
    };
    return delete_keys_except<__u64>(bpf_map__fd(skel_->maps.policy_cgroups), keep_cgroup,
                                     "policy_cgroups");
}


void DataPlane::apply_demote(sockaccel_config& cfg, const DemoteSettings& demote) const {
    if (demote.enabled && features_.demotion_program)
        cfg.flags |= SOCKACCEL_CFG_DEMOTE;
    else
        cfg.flags &= ~static_cast<__u32>(SOCKACCEL_CFG_DEMOTE);
    cfg.demote_small_bytes = demote.small_write_bytes;
    cfg.demote_held_sends = demote.held_sends;
}

Result<void> DataPlane::set_redirect(std::uint64_t limit, const DemoteSettings& demote) {
    return update_config([&](sockaccel_config& cfg) {
        cfg.max_unread_bytes = limit;
        apply_demote(cfg, demote);
    });
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

struct ::bpf_program* DataPlane::drain_program() const {
    switch (features_.drain_backend) {
        case DrainBackend::sockhash: return skel_->progs.sockaccel_drain;
        case DrainBackend::task_file: return skel_->progs.sockaccel_drain_files;
        case DrainBackend::tcp: return skel_->progs.sockaccel_drain_tcp;
    }
    return nullptr;
}

struct ::bpf_program* DataPlane::count_program() const {
    switch (features_.entry_counter) {
        case EntryCounter::map_iterator: return skel_->progs.sockaccel_count_map;
        case EntryCounter::sockhash_iterator: return skel_->progs.sockaccel_count;
        case EntryCounter::key_walk: return nullptr;
    }
    return nullptr;
}

Result<struct ::bpf_link*> DataPlane::iterator_link(struct ::bpf_program* prog,
                                                    BpfLinkPtr& link) const {
    if (link) return link.get();
    // Only the element iterators take a map; the task, tcp and map
    // iterators walk what the kernel has.
    union bpf_iter_link_info linfo {};
    linfo.map.map_fd = static_cast<__u32>(bpf_map__fd(skel_->maps.sock_hash));
    LIBBPF_OPTS(bpf_iter_attach_opts, opts, .link_info = &linfo, .link_info_len = sizeof(linfo));
    const bool over_map = prog == skel_->progs.sockaccel_drain || prog == skel_->progs.sockaccel_count;
    link.reset(bpf_program__attach_iter(prog, over_map ? &opts : nullptr));
    if (!link) {
        int err = errno;
        return sys_error(err, std::string("attach iterator ") + bpf_program__name(prog));
    }
    return link.get();
}

Result<std::uint64_t> DataPlane::count_entries() const {
    auto* prog = count_program();
    if (!prog) return count_keys(bpf_map__fd(skel_->maps.sock_hash));
    auto link = iterator_link(prog, count_link_);
    if (!link) return tl::unexpected(link.error());
    auto buf = read_iterator(*link);
    if (!buf) return tl::unexpected(buf.error());
    if (features_.entry_counter == EntryCounter::map_iterator) {
        // One record per sockhash on the host; ours by its id.
        for (std::size_t off = 0; off + sizeof(sockaccel_map_count) <= buf->size();
             off += sizeof(sockaccel_map_count)) {
            sockaccel_map_count c;
            std::memcpy(&c, buf->data() + off, sizeof(c));
            if (c.map_id == info_.sock_hash_map_id) return c.count;
        }
        return sys_error(ENOENT, "count sockhash entries: the map iterator did not see map " +
                                     std::to_string(info_.sock_hash_map_id));
    }
    // Distinct cookies: the walk can visit an entry twice (abi.h).
    std::vector<std::uint64_t> cookies(buf->size() / sizeof(std::uint64_t));
    if (!cookies.empty())
        std::memcpy(cookies.data(), buf->data(), cookies.size() * sizeof(cookies[0]));
    std::sort(cookies.begin(), cookies.end());
    return static_cast<std::uint64_t>(std::unique(cookies.begin(), cookies.end()) -
                                      cookies.begin());
}

Result<std::optional<std::uint64_t>> DataPlane::lookup(const sockaccel_key& key) const {
    std::uint64_t cookie = 0;
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.sock_hash), &key, &cookie) == 0)
        return std::optional<std::uint64_t>(cookie);
    if (errno == ENOENT) return std::optional<std::uint64_t>();
    return errno_error("look up sockhash");
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

namespace {

// Writes keys[i] -> values[i] into a hash map in as few bpf() calls as the
// kernel takes (BPF_MAP_UPDATE_BATCH; one per key costs about 1.5 us, which
// at 100,000 sockets is most of a flush). On error, what was written
// stays: the caller empties the map.
template <typename K, typename V>
Result<void> put_all(int fd, const std::vector<K>& keys, const std::vector<V>& values,
                     const char* what) {
    std::size_t done = 0;
    while (done < keys.size()) {
        __u32 n = static_cast<__u32>(keys.size() - done);
        LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY);
        const int err = bpf_map_update_batch(fd, &keys[done], &values[done], &n, &opts);
        done += n;
        if (err != 0 && n == 0) return errno_error(what);
    }
    return {};
}

// Empties a hash map and returns what it held (BPF_MAP_LOOKUP_AND_DELETE_BATCH).
template <typename K, typename V>
Result<std::vector<std::pair<K, V>>> take_all(int fd, const char* what) {
    std::vector<std::pair<K, V>> out;
    // Room for any bucket: the kernel refuses a batch smaller than one
    // bucket's entries (ENOSPC).
    constexpr __u32 kChunk = 4096;
    std::vector<K> keys(kChunk);
    std::vector<V> values(kChunk);
    std::uint64_t token = 0;
    bool first = true;
    for (;;) {
        __u32 n = kChunk;
        LIBBPF_OPTS(bpf_map_batch_opts, opts);
        const int err = bpf_map_lookup_and_delete_batch(fd, first ? nullptr : &token, &token,
                                                        keys.data(), values.data(), &n, &opts);
        const int e = errno;
        first = false;
        for (__u32 i = 0; i < n; ++i) out.emplace_back(keys[i], values[i]);
        if (err == 0) continue;
        if (e == ENOENT) return out;  // the last batch, possibly partial
        return sys_error(e, what);
    }
}

}  // namespace

Result<std::vector<sockaccel_drain_record>> DataPlane::drain_pass(
    std::uint32_t mode, const std::vector<std::uint64_t>& delete_cookies,
    const std::vector<std::pair<std::uint64_t, std::uint32_t>>& claim_list) {
    auto link = iterator_link(drain_program(), drain_link_);
    if (!link) return tl::unexpected(link.error());
    __u32 zero = 0;
    sockaccel_drain_ctl ctl{};
    ctl.mode = mode;
    // A new number for every pass: a claim records its pass, and only a
    // later one may find the socket quiesced (abi.h).
    ctl.pass = ++drain_pass_number_;
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.drain_ctl), &zero, &ctl, BPF_ANY) != 0)
        return errno_error("write drain control");
    // Both sets are filled before the walk and emptied after it, on every
    // path: an entry left behind would act on a later pass that did not
    // list it. Emptying the delete set is also how its verdicts are read.
    const int claim_fd = bpf_map__fd(skel_->maps.drain_claim);
    const int del_fd = bpf_map__fd(skel_->maps.drain_delete);
    auto take_claims = [&] { return take_all<std::uint64_t, __u32>(claim_fd, "empty drain claim set"); };
    auto take_verdicts = [&] {
        return take_all<std::uint64_t, sockaccel_drain_verdict>(del_fd, "read drain delete set");
    };
    std::vector<std::uint64_t> claim_cookies;
    std::vector<__u32> claim_kinds;
    for (const auto& [cookie, kind] : claim_list) {
        claim_cookies.push_back(cookie);
        claim_kinds.push_back(kind);
    }
    Result<void> filled = put_all(claim_fd, claim_cookies, claim_kinds, "fill drain claim set");
    if (filled)
        filled = put_all(del_fd, delete_cookies,
                         std::vector<sockaccel_drain_verdict>(delete_cookies.size()),
                         "fill drain delete set");
    if (!filled) {
        (void)take_claims();
        (void)take_verdicts();
        return tl::unexpected(filled.error());
    }

    auto buf = read_iterator(*link);
    auto taken = take_verdicts();
    auto unlisted = take_claims();
    if (!buf) return tl::unexpected(buf.error());
    if (!taken) return tl::unexpected(taken.error());
    if (!unlisted) return tl::unexpected(unlisted.error());
    std::unordered_map<std::uint64_t, sockaccel_drain_verdict> deleted;
    for (const auto& [cookie, v] : *taken)
        if (v.status & SOCKACCEL_DRAIN_DELETED) deleted.emplace(cookie, v);

    // One record per socket: the walk can visit an entry twice (abi.h), and
    // the later visit is the newer state.
    const std::size_t count = buf->size() / sizeof(sockaccel_drain_record);
    std::vector<sockaccel_drain_record> out;
    out.reserve(count);
    std::unordered_map<std::uint64_t, std::size_t> at;
    for (std::size_t i = 0; i < count; ++i) {
        sockaccel_drain_record r;
        std::memcpy(&r, buf->data() + i * sizeof(r), sizeof(r));
        auto [it, fresh] = at.try_emplace(r.cookie, out.size());
        if (fresh)
            out.push_back(r);
        else
            out[it->second] = r;
    }
    // A deletion is known from drain_delete even if its record was lost.
    for (const auto& [cookie, v] : deleted) {
        auto it = at.find(cookie);
        if (it == at.end()) {
            sockaccel_drain_record r{};
            r.cookie = cookie;
            it = at.emplace(cookie, out.size()).first;
            out.push_back(r);
        }
        out[it->second].status = v.status;
        out[it->second].pending_bytes = v.pending_bytes;
    }
    return out;
}

Result<std::vector<char>> DataPlane::read_iterator(struct ::bpf_link* link) const {
    UniqueFd iter(bpf_iter_create(bpf_link__fd(link)));
    if (!iter) return errno_error("create iterator");
    std::vector<char> buf;
    char chunk[16384];
    for (;;) {
        const ssize_t n = ::read(iter.get(), chunk, sizeof(chunk));
        // EAGAIN: the kernel stops a read() after a million objects visited
        // without output (bpf_seq_read(), kernel/bpf/bpf_iter.c), as a walk
        // over every open file of a busy host does; the next read resumes.
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) return errno_error("read iterator");
        if (n == 0) return buf;
        buf.insert(buf.end(), chunk, chunk + n);
    }
}

Result<StopOutcome> DataPlane::stop() {
    stopped_ = true;
    StopOutcome outcome;

    // 1. Stop inserting and redirecting. Every socket that sends from now on
    //    takes TCP for good (ordering rule), so no new data is redirected.
    if (auto r = set_flags(0); !r) return tl::unexpected(r.error());

    // 2. Detach sockops: new connections are not accelerated.
    (void)detach_sockops();

    // Retired state of an upgrade goes too if its sockets have closed; the
    // rest stays pinned (and keeps the pin directory) until they do.
    auto retired = collect_retired();
    if (!retired)
        spdlog::debug("collect retired state: {}", retired.error().message());
    else
        for (const auto& r : *retired)
            spdlog::info("retired state {} stays pinned until its {} socket(s) close", r.dir,
                         r.sockets ? std::to_string(*r.sockets) : std::string("unknown number of"));

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
    bpf_prog_detach2(bpf_program__fd(verdict_),
                     bpf_map__fd(skel_->maps.sock_hash), BPF_SK_MSG_VERDICT);
    for (const char* name : kMapPinNames) ::unlink(pin_path(name).c_str());
    // Fails, and so keeps the directory, while retired state is left in it.
    ::rmdir(info_.pin_dir.c_str());
    return outcome;
}

}  // namespace sockaccel
