// SPDX-License-Identifier: Apache-2.0
//
// DataPlane owns the BPF side of sockaccel: the skeleton (bpf/sockaccel.bpf.c),
// its maps, the sk_msg attachment on the sockhash and the sockops bpf_link on
// the cgroup, and their pins under the pin directory.
//
// Lifecycle and data safety (docs/architecture.md):
//  - start() adopts pinned state of the same ABI version (connections stay
//    accelerated and counters continue), or creates it fresh. Pinned state
//    of another ABI that still holds sockets is retired, never freed: its
//    flags are cleared through the config prefix every ABI shares, its
//    sockops link is detached, and its pins move to a retired_abi*
//    subdirectory until its sockets have closed. It throws StartupError on
//    any failure, after undoing what it did.
//  - stop() turns redirecting and inserting off, detaches the sockops link,
//    and removes everything only if the sockhash is empty. Sockets left in
//    the map may hold unread redirected data, which the kernel frees when the
//    map goes (kernel-facts fact 1), so then the maps stay pinned for the next
//    start to adopt.
//  - The destructor only closes file descriptors. Whatever is pinned stays:
//    a crash or an exception never detaches anything and never frees data.
//
// Threading: not thread-safe; the daemon uses it from its io_context thread.
// Errors: run-time operations return Result. Nothing here logs above debug,
// except the upgrade path, which has no caller to report to: retiring
// state (warn) and removing retired state (info).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "counters.h"
#include "drain_backend.h"
#include "error.h"
#include "kernel_features.h"
#include "sockaccel/abi.h"
#include "policy.h"
#include "system.h"

struct sockaccel_bpf;  // the generated skeleton (sockaccel.skel.h)
struct bpf_map;
struct bpf_link;
struct bpf_program;

namespace sockaccel {

struct BpfLinkDeleter {
    void operator()(struct ::bpf_link* link) const;
};
using BpfLinkPtr = std::unique_ptr<struct ::bpf_link, BpfLinkDeleter>;

// Demotion as the config map holds it (SOCKACCEL_CFG_DEMOTE and
// sockaccel_config.demote_*).
struct DemoteSettings {
    bool enabled = false;
    std::uint32_t small_write_bytes = 0;  // 0 = no small-write demotion
    std::uint32_t held_sends = 0;         // 0 = no demotion of held senders
    bool operator==(const DemoteSettings&) const = default;
};

struct DataPlaneOptions {
    std::string cgroup_path;  // resolved cgroup v2 directory
    std::string pin_dir;      // on bpffs, created by prepare_pin_dir()
    std::uint32_t map_size = 65536;
    std::uint64_t max_unread_bytes = 0;  // back-pressure limit, 0 = none
    KernelFeatures features;             // from probe_kernel_features()
    // The drain backends to try, best first (drain_candidates()); the first
    // whose programs load is used. Never empty.
    std::vector<DrainBackend> drain_backends;
    EncodedPolicy policy;                // in the maps before anything attaches
    DemoteSettings demote;               // applied where the program can (features)
};

// What `status` reports about the attachment.
struct AttachInfo {
    std::string cgroup_path;
    std::string pin_dir;
    std::uint32_t sockops_prog_id = 0;
    std::uint32_t sk_msg_prog_id = 0;
    std::uint32_t sockops_link_id = 0;
    std::uint32_t sock_hash_map_id = 0;
    std::uint32_t capacity = 0;
    bool adopted = false;  // pinned state of a previous run was reused
};

// How count_entries() counts the sockhash's entries, best first.
enum class EntryCounter {
    map_iterator,       // iter/bpf_map reads the kernel's own count: no walk
    sockhash_iterator,  // iter/sockmap writes each entry's cookie: one walk, few read()s
    key_walk,           // BPF_MAP_GET_NEXT_KEY: one bpf() call per entry
};
std::string_view to_string(EntryCounter counter);

// The mechanisms actually loaded.
struct DataPlaneFeatures {
    DrainBackend drain_backend = DrainBackend::sockhash;  // the walk every drain uses
    EntryCounter entry_counter = EntryCounter::key_walk;
    bool backpressure_program = false;  // sockaccel_redirect with psock->msg_tot_len
    // sockaccel_redirect, not _basic: a sender checks its peer's reader
    // itself on every send (_basic waits for the peer's own check).
    bool reader_check_program = false;
    // sockaccel_redirect as well: demotion needs its reads of the peer.
    bool demotion_program = false;
};

struct SocketEntry {
    struct sockaccel_key key;
    std::uint64_t cookie;  // socket cookie, as the sockhash returns it
};

struct StopOutcome {
    std::uint64_t sockets_left = 0;  // sockets still in the sockhash
    bool left_pinned = false;        // maps stay pinned because sockets_left > 0
};

// Pinned state of another ABI version that a start retired instead of
// freeing (docs/architecture.md, "Upgrades and incompatible state"). It
// stays pinned, so its sockets' unread data stays readable, until its
// sockhash is empty.
struct RetiredState {
    std::string dir;                           // <pin_dir>/retired_abi<N>_<unix seconds>
    std::optional<std::uint32_t> abi_version;  // from its config map; nullopt if unreadable
    std::optional<std::uint64_t> sockets;      // still in its sockhash; nullopt if unreadable
};

// A map as the embedded BPF object declares it, before any load.
struct MapLayout {
    std::string name;
    std::uint32_t type;
    std::uint32_t key_size;
    std::uint32_t value_size;
    std::uint32_t max_entries;
};

class DataPlane {
public:
    // Routes libbpf's messages into spdlog (once, at start).
    static void route_libbpf_logs();

    // Tries the smallest privileged BPF operation (creating a one-element
    // array map), so a missing privilege is reported as such before
    // anything else is touched. Throws StartupError.
    static void check_privilege();

    // Opens the embedded object without loading it (no privilege needed) and
    // lists its maps, so tests can check them against the ABI structs.
    [[nodiscard]] static Result<std::vector<MapLayout>> embedded_maps();

    // Loads, adopts or creates, attaches and pins. Throws StartupError with
    // one line for the operator.
    static std::unique_ptr<DataPlane> start(const DataPlaneOptions& options);

    ~DataPlane();
    DataPlane(const DataPlane&) = delete;
    DataPlane& operator=(const DataPlane&) = delete;

    const AttachInfo& info() const { return info_; }
    const DataPlaneFeatures& features() const { return features_; }
    // What the drain's walk can see: the one answer every caller uses.
    DrainWalk drain_walk() const { return sockaccel::drain_walk(features_.drain_backend); }

    // The config map as the kernel has it (what the programs act on).
    [[nodiscard]] Result<sockaccel_config> config() const;
    // Run-time behaviour: enum sockaccel_config_flag bits in the config map.
    [[nodiscard]] Result<std::uint32_t> flags() const;
    [[nodiscard]] Result<void> set_flags(std::uint32_t flags);
    // Back-pressure limit (sockaccel_config.max_unread_bytes) as the
    // kernel has it.
    [[nodiscard]] Result<std::uint64_t> max_unread_bytes() const;
    // The back-pressure limit and demotion, in one write, applied to the
    // next send of every socket. Enabling demotion is ignored where
    // features().demotion_program is false.
    [[nodiscard]] Result<void> set_redirect(std::uint64_t limit, const DemoteSettings& demote);

    // Replaces the policy (policy.h) for new connections: the new entries
    // are written, then the summary flags in the config map, then stale
    // entries removed. A connection established during the switch is judged
    // by entries of either policy. On error the maps may hold a mix; the
    // caller applies the old policy again.
    [[nodiscard]] Result<void> set_policy(const EncodedPolicy& policy);

    [[nodiscard]] Result<CounterValues> read_counters() const;

    // The reader_events ring buffer (struct sockaccel_reader_event).
    int reader_events_fd() const;
    // The demote_events ring buffer (struct sockaccel_demote_event). Pinned,
    // so the programs of adopted sockets and this daemon share it.
    int demote_events_fd() const;

    // Number of sockets in the sockhash, by features().entry_counter.
    [[nodiscard]] Result<std::uint64_t> count_entries() const;

    // Up to `limit` entries of the sockhash with their socket cookies (a
    // walk of the keys: one bpf() call per entry and two per listed one).
    [[nodiscard]] Result<std::vector<SocketEntry>> list_entries(std::size_t limit) const;

    // The cookie of the socket the sockhash holds under `key`, or nullopt
    // if it holds none.
    [[nodiscard]] Result<std::optional<std::uint64_t>> lookup(const sockaccel_key& key) const;

    // Runs the drain backend's walk once in `mode` (enum
    // sockaccel_drain_mode); for the DELETE modes, `delete_cookies` are the
    // sockets it may remove, and for CLAIM_LISTED, `claim_list` the sockets
    // it claims (cookie, enum sockaccel_drain_list). Returns one record per
    // socket the walk reached (the last visit if it saw one twice), plus a
    // record with only cookie, status and pending_bytes for a deletion
    // whose own record was lost (abi.h). Sockets the walk cannot reach
    // (drain_walk().cannot_see) have no record.
    [[nodiscard]] Result<std::vector<sockaccel_drain_record>> drain_pass(
        std::uint32_t mode, const std::vector<std::uint64_t>& delete_cookies,
        const std::vector<std::pair<std::uint64_t, std::uint32_t>>& claim_list = {});

    // Detaches / re-attaches the sockops program from the cgroup (and its
    // pin): new connections stop / resume being accelerated. Existing ones
    // are untouched. Idempotent.
    [[nodiscard]] Result<void> detach_sockops();
    [[nodiscard]] Result<void> attach_sockops();
    bool sockops_attached() const { return static_cast<bool>(link_fd_); }

    // Removes every retired directory whose sockhash is empty (its sockets
    // have all closed, so no unread data can be left) and returns the ones
    // that stay. Called at start, at stop and by status: the kernel has no
    // event for "this map became empty", and no timer is worth it.
    [[nodiscard]] Result<std::vector<RetiredState>> collect_retired();

    // Orderly shutdown, see the header comment. After it, only the
    // destructor may be called.
    [[nodiscard]] Result<StopOutcome> stop();

private:
    DataPlane() = default;

    struct MapPin {
        ::bpf_map* map;
        const char* name;
    };
    std::vector<MapPin> map_pins() const;
    void adopt_or_reset_pins();
    void retire_pins(std::uint32_t abi_version, std::optional<std::uint64_t> sockets);
    void open_and_load(const DataPlaneOptions& options);
    void attach(const DataPlaneOptions& options);
    [[nodiscard]] Result<UniqueFd> create_sockops_link();
    std::string pin_path(const char* name) const;
    [[nodiscard]] Result<void> update_config(const std::function<void(sockaccel_config&)>& change);
    void apply_demote(sockaccel_config& cfg, const DemoteSettings& demote) const;
    [[nodiscard]] Result<void> write_policy_entries(const EncodedPolicy& policy);
    // The iterator link of `prog`, attached on first use into `link` (a
    // link is a template; each bpf_iter_create() on it is one independent
    // walk). Iterators over a map's elements get the sockhash as their map.
    [[nodiscard]] Result<struct ::bpf_link*> iterator_link(struct ::bpf_program* prog,
                                                           BpfLinkPtr& link) const;
    // One complete walk of an iterator link: everything it wrote.
    [[nodiscard]] Result<std::vector<char>> read_iterator(struct ::bpf_link* link) const;
    // The programs of the drain backend and the entry counter in use.
    struct ::bpf_program* drain_program() const;
    struct ::bpf_program* count_program() const;

    struct ::sockaccel_bpf* skel_ = nullptr;
    struct ::bpf_program* verdict_ = nullptr;  // the sk_msg program in use
    UniqueFd link_fd_;
    // Attached lazily (the count link by the const count_entries()).
    mutable BpfLinkPtr drain_link_;
    mutable BpfLinkPtr count_link_;
    std::uint32_t drain_pass_number_ = 0;  // sockaccel_drain_ctl.pass of the last pass
    AttachInfo info_;
    DataPlaneFeatures features_;
    bool stopped_ = false;
};

}  // namespace sockaccel
