// SPDX-License-Identifier: Apache-2.0
#include "kernel_features.h"

#include <bpf/btf.h>
#include <bpf/libbpf.h>

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
    f.sockmap_iterator = find_type(b, "bpf_iter__sockmap", BTF_KIND_STRUCT) != nullptr;
    f.psock_msg_tot_len = has_member(b, "sk_psock", "msg_tot_len");
    return f;
}

tl::expected<void, std::string> mask_features(KernelFeatures& f, std::string_view names) {
    KernelFeatures masked = f;
    for (std::size_t start = 0; !names.empty();) {
        const auto comma = names.find(',', start);
        const auto name = names.substr(start, comma == std::string_view::npos ? comma : comma - start);
        if (name == "sockmap_iterator")
            masked.sockmap_iterator = false;
        else if (name == "psock_msg_tot_len")
            masked.psock_msg_tot_len = false;
        else if (name == "sk_msg_kernel_reads")
            masked.sk_msg_kernel_reads = false;
        else
            return tl::unexpected("SOCKACCEL_FEATURES_OFF: unknown feature \"" +
                                  std::string(name.substr(0, 64)) +
                                  "\" (known: sockmap_iterator, psock_msg_tot_len, "
                                  "sk_msg_kernel_reads)");
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
        {"psock_msg_tot_len", f.psock_msg_tot_len},
        {"sk_msg_kernel_reads", f.sk_msg_kernel_reads},
        {"backpressure", f.backpressure()},
    };
}

}  // namespace sockaccel
