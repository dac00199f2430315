// SPDX-License-Identifier: Apache-2.0
#include "metrics.h"

#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>
#include <prometheus/metric_type.h>
#include <prometheus/text_serializer.h>

#include <array>
#include <utility>
#include <vector>

namespace sockaccel {
namespace {

// One Prometheus counter per data-plane counter, in enum order (the
// static_assert below keeps the table complete). Names are Prometheus-style
// (what is counted, in base units, `_total`), not the protocol's. Counters
// that are one quantity by reason share a name, with the reason as the
// `reason` label (the first entry's help text is the family's).
struct CounterMetric {
    const char* name;
    const char* help;
    const char* reason = nullptr;
};
constexpr std::array<CounterMetric, SOCKACCEL_CNT__MAX> kCounterMetrics = {{
    {"sockaccel_sockets_added_total", "Sockets inserted into the sockhash."},
    {"sockaccel_add_failed_map_full_total", "Inserts refused because the sockhash was full."},
    {"sockaccel_add_failed_other_total", "Inserts that failed for another reason."},
    {"sockaccel_add_skipped_disabled_total", "Sockets not inserted because inserting was off."},
    {"sockaccel_add_skipped_data_sent_total",
     "Sockets not inserted because data had already left through TCP (TCP Fast Open)."},
    {"sockaccel_redirected_messages_total",
     "Messages redirected straight into the peer socket's receive queue."},
    {"sockaccel_redirected_bytes_total",
     "Bytes redirected straight into the peer socket's receive queue."},
    {"sockaccel_redirect_misses_total", "Sends whose peer was not in the sockhash; they took TCP."},
    {"sockaccel_tcp_path_sockets_total", "Sockets switched to TCP for good."},
    {"sockaccel_passed_messages_total", "Messages of sockets in the sockhash that took TCP."},
    {"sockaccel_passed_bytes_total", "Bytes of sockets in the sockhash that took TCP."},
    {"sockaccel_storage_missing_total", "Sends from a socket without its state; should stay 0."},
    {"sockaccel_backpressure_holds_total",
     "Times a sender was held on TCP because its reader had too much unread."},
    {"sockaccel_backpressure_resumes_total", "Times a held sender went back to redirecting."},
    {"sockaccel_fin_removed_total", "Sockets that left the sockhash at their own FIN."},
    {"sockaccel_fin_kept_total",
     "Sockets kept at their FIN because their peer had redirected into them."},
    {"sockaccel_gate_closed_sends_total", "Sends whose peer was already closing; they took TCP."},
    {"sockaccel_peer_not_local_total",
     "Accepted sockets not inserted: their peer is remote or not accelerated."},
    {"sockaccel_unclaimed_removed_total",
     "Connecting sockets removed because no local peer claimed them."},
    {"sockaccel_policy_skipped_total", "Sockets the policy excluded."},
    {"sockaccel_reader_blocking_total",
     "Sockets kept on TCP because their reader is blocking (no O_NONBLOCK)."},
    {"sockaccel_reader_lowat_total", "Sockets kept on TCP because their SO_RCVLOWAT is above 1."},
    {"sockaccel_reader_unknown_total",
     "Connecting sockets kept on TCP because they had no file to check."},
    {"sockaccel_reader_holds_total",
     "Sends that took TCP because the peer's reader was not yet known compatible."},
    {"sockaccel_reader_resumes_total",
     "Times a sender held for its peer's reader went back to redirecting."},
    {"sockaccel_demoted_sockets_total",
     "Sockets whose connection ran slower redirected and went back to TCP for good, by reason.",
     "small_writes"},
    {"sockaccel_demoted_sockets_total", "", "backpressure"},
    {"sockaccel_demoted_sockets_total", "", "reader"},
    {"sockaccel_demotions_deferred_total",
     "Demotions put off because the daemon's event ring buffer was full."},
}};

prometheus::MetricFamily family(std::string name, std::string help, prometheus::MetricType type,
                                double value,
                                std::vector<prometheus::ClientMetric::Label> labels = {}) {
    prometheus::ClientMetric m;
    m.label = std::move(labels);
    if (type == prometheus::MetricType::Counter)
        m.counter.value = value;
    else
        m.gauge.value = value;
    return {std::move(name), std::move(help), type, {std::move(m)}};
}

prometheus::MetricFamily gauge(std::string name, std::string help, std::uint64_t v) {
    return family(std::move(name), std::move(help), prometheus::MetricType::Gauge,
                  static_cast<double>(v));
}

}  // namespace

std::string render_metrics(const MetricsSnapshot& s) {
    using prometheus::MetricType;
    std::vector<prometheus::MetricFamily> families;
    families.push_back(
        family("sockaccel_build_info", "Version of sockacceld, its BPF ABI and the kernel.",
               MetricType::Gauge, 1,
               {{"version", s.version}, {"abi", std::to_string(s.abi)}, {"kernel", s.kernel}}));
    families.push_back(
        gauge("sockaccel_attached", "1 if new connections are being accelerated.", s.attached));
    if (s.map_entries)
        families.push_back(
            gauge("sockaccel_map_entries", "Sockets in the sockhash.", *s.map_entries));
    families.push_back(
        gauge("sockaccel_map_capacity", "Capacity of the sockhash.", s.map_capacity));
    families.push_back(
        gauge("sockaccel_drain_active", "1 while a background drain runs.", s.drain_active));
    families.push_back(
        gauge("sockaccel_drain_pending_sockets",
              "Claimed sockets still waiting for their reader (unread redirected data).",
              s.drain_pending_sockets));
    families.push_back(gauge("sockaccel_drain_pending_bytes",
                             "Unread redirected bytes in pending sockets.", s.drain_pending_bytes));
    families.push_back(gauge("sockaccel_drain_unreached_sockets",
                             "Pending sockets the drain backend's walk cannot reach.",
                             s.drain_unreached_sockets));
    families.push_back(family("sockaccel_drain_backend_info",
                              "The BPF iterator the lossless drain walks with.", MetricType::Gauge,
                              1, {{"backend", s.drain_backend}}));
    families.push_back(family("sockaccel_drain_flushed_sockets_total",
                              "Sockets removed from the sockhash by drains of this daemon process.",
                              MetricType::Counter, static_cast<double>(s.drain_flushed_total)));
    families.push_back(gauge("sockaccel_policy_rules", "Rules in the acceleration policy in force.",
                             s.policy_rules));
    families.push_back(family("sockaccel_demoted_removed_sockets_total",
                              "Demoted sockets this daemon process took out of the sockhash.",
                              MetricType::Counter, static_cast<double>(s.demoted_removed)));
    families.push_back(gauge("sockaccel_demoting_sockets",
                             "Demoted sockets still in the sockhash, waiting for the drain.",
                             s.demoting));
    if (s.counters)
        for (std::size_t i = 0; i < kCounterMetrics.size(); ++i) {
            const auto& m = kCounterMetrics[i];
            auto f = family(m.name, m.help, MetricType::Counter,
                            static_cast<double>((*s.counters)[i]),
                            m.reason ? std::vector<prometheus::ClientMetric::Label>{{"reason", m.reason}}
                                     : std::vector<prometheus::ClientMetric::Label>{});
            // The next reason of the family before it: one family, one HELP.
            if (i > 0 && m.reason && families.back().name == m.name)
                families.back().metric.push_back(std::move(f.metric.front()));
            else
                families.push_back(std::move(f));
        }
    return prometheus::TextSerializer().Serialize(families);
}

}  // namespace sockaccel
