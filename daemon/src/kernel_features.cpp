// SPDX-License-Identifier: Apache-2.0
#include "kernel_features.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string_view>

#include <spdlog/spdlog.h>

namespace sockaccel {
namespace {

// libbpf's probes answer 1 (supported), 0 (not) or a negative errno (the
// probe itself failed, e.g. no privilege); only 1 counts.
bool yes(int probe) { return probe == 1; }

struct BtfDeleter {
    void operator()(btf* b) const { btf__free(b); }
};
using BtfPtr = std::unique_ptr<btf, BtfDeleter>;

const btf_type* find_type(const btf* b, const char* name, __u32 kind) {
    const __s32 id = btf__find_by_name_kind(b, name, kind);
    return id > 0 ? btf__type_by_id(b, static_cast<__u32>(id)) : nullptr;
}

bool has_member(const btf* b, const char* type, const char* member) {
    const btf_type* t = find_type(b, type, BTF_KIND_STRUCT);
    if (!t) return false;
    const btf_member* m = btf_members(t);
    for (__u16 i = 0; i < btf_vlen(t); ++i, ++m)
        if (std::string_view(btf__name_by_offset(b, m->name_off)) == member) return true;
    return false;
}

bool has_enumerator(const btf* b, const char* type, const char* name) {
    const btf_type* t = find_type(b, type, BTF_KIND_ENUM);
    if (!t) return false;
    const struct btf_enum* e = btf_enum(t);
    for (__u16 i = 0; i < btf_vlen(t); ++i, ++e)
        if (std::string_view(btf__name_by_offset(b, e->name_off)) == name) return true;
    return false;
}

// Does the kernel load a BPF_TRACE_ITER program for `target` (the
// bpf_iter_<target> function in its BTF)? The smallest such program,
// "return 0", is enough: a security policy that refuses a program type
// refuses it at load, before the verifier looks at a single instruction
// (EPERM, "processed 0 insns"). Whether our real program then passes the
// verifier is decided by loading it (DataPlane).
bool iterator_loads(const btf* b, const char* target) {
    const __s32 id = btf__find_by_name_kind(b, (std::string("bpf_iter_") + target).c_str(),
                                            BTF_KIND_FUNC);
    if (id <= 0) return false;
    const bpf_insn insns[] = {
        {BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0},  // r0 = 0
        {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
    };
    LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_TRACE_ITER,
                .attach_btf_id = static_cast<__u32>(id));
    const int fd = bpf_prog_load(BPF_PROG_TYPE_TRACING, "sa_iter_probe", "GPL", insns,
                                 sizeof(insns) / sizeof(insns[0]), &opts);
    if (fd < 0) {
        spdlog::debug("the kernel refuses iter/{} programs: {}", target, std::strerror(errno));
        return false;
    }
    ::close(fd);
    return true;
}

}  // namespace

Result<KernelFeatures> probe_kernel_features() {
    KernelFeatures f;
    f.sockhash = yes(libbpf_probe_bpf_map_type(BPF_MAP_TYPE_SOCKHASH, nullptr));
    f.sk_msg = yes(libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SK_MSG, nullptr));
    f.sockops = yes(libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SOCK_OPS, nullptr));
    f.sk_storage_in_sk_msg =
        yes(libbpf_probe_bpf_map_type(BPF_MAP_TYPE_SK_STORAGE, nullptr)) &&
        yes(libbpf_probe_bpf_helper(BPF_PROG_TYPE_SK_MSG, BPF_FUNC_sk_storage_get, nullptr));
    f.sk_msg_kernel_reads =
        yes(libbpf_probe_bpf_helper(BPF_PROG_TYPE_SK_MSG, BPF_FUNC_probe_read_kernel, nullptr)) &&
        yes(libbpf_probe_bpf_helper(BPF_PROG_TYPE_SK_MSG, BPF_FUNC_skc_to_tcp_sock, nullptr));

    // The rest is in the kernel's BTF, which CO-RE needs anyway.
    BtfPtr vmlinux(btf__load_vmlinux_btf());
    if (!vmlinux) {
        spdlog::warn("kernel BTF unavailable ({}); optional features are off",
                     std::strerror(errno));
        return f;
    }
    const btf* b = vmlinux.get();
    f.cgroup_bpf_link = has_enumerator(b, "bpf_link_type", "BPF_LINK_TYPE_CGROUP");
    f.sockmap_iterator = iterator_loads(b, "sockmap");
    f.task_file_iterator = iterator_loads(b, "task_file");
    f.tcp_iterator = iterator_loads(b, "tcp");
    f.map_iterator = iterator_loads(b, "bpf_map");
    f.psock_msg_tot_len = has_member(b, "sk_psock", "msg_tot_len");
    return f;
}

namespace {

// The features SOCKACCEL_FEATURES_OFF may turn off: the optional ones.
constexpr std::pair<std::string_view, bool KernelFeatures::*> kMaskable[] = {
    {"sockmap_iterator", &KernelFeatures::sockmap_iterator},
    {"task_file_iterator", &KernelFeatures::task_file_iterator},
    {"tcp_iterator", &KernelFeatures::tcp_iterator},
    {"map_iterator", &KernelFeatures::map_iterator},
    {"psock_msg_tot_len", &KernelFeatures::psock_msg_tot_len},
    {"sk_msg_kernel_reads", &KernelFeatures::sk_msg_kernel_reads},
};

}  // namespace

tl::expected<void, std::string> mask_features(KernelFeatures& f, std::string_view names) {
    KernelFeatures masked = f;
    for (std::size_t start = 0; !names.empty();) {
        const auto comma = names.find(',', start);
        const auto name = names.substr(start, comma == std::string_view::npos ? comma : comma - start);
        bool KernelFeatures::*member = nullptr;
        for (const auto& [known, m] : kMaskable)
            if (name == known) member = m;
        if (!member) {
            std::string list;
            for (const auto& [known, m] : kMaskable) list += (list.empty() ? "" : ", ") + std::string(known);
            return tl::unexpected("SOCKACCEL_FEATURES_OFF: unknown feature \"" +
                                  std::string(name.substr(0, 64)) + "\" (known: " + list + ")");
        }
        masked.*member = false;
        if (comma == std::string_view::npos) break;
        start = comma + 1;
    }
    f = masked;
    return {};
}

std::optional<std::string> missing_required(const KernelFeatures& f) {
    auto missing = [](const char* what, const char* why) {
        return std::string("this kernel has no ") + what + " (" + why +
               "); sockaccel cannot run here";
    };
    if (!f.sockhash) return missing("BPF sockhash map", "CONFIG_BPF_STREAM_PARSER");
    if (!f.sk_msg) return missing("sk_msg programs", "CONFIG_NET_SOCK_MSG");
    if (!f.sockops) return missing("sockops programs", "CONFIG_CGROUP_BPF");
    if (!f.cgroup_bpf_link) return missing("cgroup bpf_link", "Linux 5.7 or later");
    if (!f.sk_storage_in_sk_msg)
        return missing("socket storage in sk_msg programs",
                       "it holds the mark that keeps bytes in order");
    return std::nullopt;
}

nlohmann::json features_to_json(const KernelFeatures& f) {
    return {
        {"sockhash", f.sockhash},
        {"sk_msg", f.sk_msg},
        {"sockops", f.sockops},
        {"cgroup_bpf_link", f.cgroup_bpf_link},
        {"sk_storage_in_sk_msg", f.sk_storage_in_sk_msg},
        {"sockmap_iterator", f.sockmap_iterator},
        {"task_file_iterator", f.task_file_iterator},
        {"tcp_iterator", f.tcp_iterator},
        {"map_iterator", f.map_iterator},
        {"psock_msg_tot_len", f.psock_msg_tot_len},
        {"sk_msg_kernel_reads", f.sk_msg_kernel_reads},
        {"backpressure", f.backpressure()},
    };
}

}  // namespace sockaccel
