// SPDX-License-Identifier: Apache-2.0
//
// Stream integrity under faults: every case runs real traffic (sockaccel-streamcheck pair, both
// ends in the test cgroup, message sizes 1 B..256 KiB, random lifetimes, half-close at the end)
// while a fault is injected, and checks that nothing is lost, duplicated, reordered or corrupted
// and that no connection hangs. Each case runs several rounds with fresh random seeds (the seed
// is in the report that INFO prints on failure, so a failing round can be replayed with --seed).
//
// No verdict depends on timing: faults are issued in a do-while loop around a running traffic
// run, so at least one lands while it runs whatever the machine's speed, and waits are bounded
// loops on observable state. Run with the tag: priv_tests "[integrity]".
#include <linux/bpf.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <functional>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

#include "harness.h"
#include "held_pair.h"

using namespace sockaccel;
using namespace sockaccel::test;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// Sums of every streamcheck report of this process, printed once at exit so a whole
// "[integrity]" run can be summarised (connections, bytes, and the anomaly counters).
struct Totals {
    std::uint64_t runs = 0, connections = 0, completed = 0, bytes_sent = 0, bytes_received = 0,
                  lost = 0, duplicated = 0, reordered = 0, corrupted = 0, hangs = 0, errors = 0,
                  read_pauses = 0;

    void add(const json& r) {
        auto get = [&](const char* k) { return r.value(k, std::uint64_t{0}); };
        ++runs;
        connections += get("connections");
        completed += get("completed");
        bytes_sent += get("bytes_sent");
        bytes_received += get("bytes_received");
        lost += get("lost");
        duplicated += get("duplicated");
        reordered += get("reordered");
        corrupted += get("corrupted");
        hangs += get("hangs");
        errors += get("errors");
        read_pauses += get("read_pauses");
    }

    ~Totals() {
        if (runs == 0) return;
        std::fprintf(stderr,
                     "integrity totals: %llu streamcheck runs, %llu connections (%llu completed), "
                     "%llu bytes sent, %llu received, lost %llu, duplicated %llu, reordered %llu, "
                     "corrupted %llu, hangs %llu, errors %llu, read pauses %llu\n",
                     (unsigned long long)runs, (unsigned long long)connections,
                     (unsigned long long)completed, (unsigned long long)bytes_sent,
                     (unsigned long long)bytes_received, (unsigned long long)lost,
                     (unsigned long long)duplicated, (unsigned long long)reordered,
                     (unsigned long long)corrupted, (unsigned long long)hangs,
                     (unsigned long long)errors, (unsigned long long)read_pauses);
    }
};
Totals g_totals;

std::string fresh_seed() {
    static std::mt19937_64 rng{std::random_device{}()};
    return std::to_string(rng() >> 1);
}

const char* const kAddrs[] = {"127.0.0.1", "::1", "::ffff:127.0.0.1"};
// Round 1 uses blocking reads/writes (a thread per direction), the others epoll.
const char* const kIo[] = {"epoll", "blocking", "epoll"};

// `pair` between two processes of the test cgroup with a fresh seed, plus `extra`.
std::vector<std::string> pair_args(const TestCgroup& cg, int round,
                                   std::vector<std::string> extra) {
    std::vector<std::string> a = {"pair",
                                  "--addr",
                                  kAddrs[round % 3],
                                  "--seed",
                                  fresh_seed(),
                                  "--server-cgroup",
                                  cg.path(),
                                  "--client-cgroup",
                                  cg.path(),
                                  "--timeout",
                                  "60"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
}

json run_traffic(const std::vector<std::string>& args) {
    auto report = run_streamcheck(args);
    g_totals.add(report);
    return report;
}

std::future<json> start_traffic(const std::vector<std::string>& args) {
    return std::async(std::launch::async, [args] { return run_traffic(args); });
}

bool running(std::future<json>& traffic, std::chrono::milliseconds wait = 20ms) {
    return traffic.wait_for(wait) != std::future_status::ready;
}

std::uint64_t counter(ControlClient& ctl, const char* name) {
    return result(ctl.request("stats"))["counters"][name].get<std::uint64_t>();
}

// Processes that keep every CPU busy for as long as this object lives; killed (and reaped)
// on every path out of the test, and by the kernel if the test process dies first.
class BusyLoad {
public:
    explicit BusyLoad(int n) {
        const pid_t parent = ::getpid();
        for (int i = 0; i < n; ++i) {
            pid_t pid = ::fork();
            if (pid == 0) {
                ::prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (::getppid() != parent) ::_exit(0);
                for (;;) asm volatile("" ::: "memory");  // spin
            }
            if (pid > 0) pids_.push_back(pid);
        }
    }
    ~BusyLoad() {
        for (pid_t p : pids_) ::kill(p, SIGKILL);
        for (pid_t p : pids_) {
            int status = 0;
            while (::waitpid(p, &status, 0) < 0 && errno == EINTR) {
            }
        }
    }
    BusyLoad(const BusyLoad&) = delete;
    BusyLoad& operator=(const BusyLoad&) = delete;
    std::size_t size() const { return pids_.size(); }

private:
    std::vector<pid_t> pids_;
};

std::string slurp(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

// The hold file of a test's held pauses, in the pin dir's private run directory.
std::string hold_path(const TestPinDir& pins) {
    return std::filesystem::path(pins.socket()).parent_path().string() + "/read-pause";
}

// Traffic whose client stops reading each reply after 64 KiB and stays paused until released:
// `connections` connections, one at a time. While each pause holds and the paused socket has
// unread data, on_pause() runs; then the pause is released and the data must arrive. The
// paused data is redirected: the server replies after the request's header, when both
// sockets are in the map, and the client half-closes only after the whole reply
// (--late-half-close; a client that half-closed first would leave the map at its FIN by the
// half-close gate, and the reply would take TCP). Each connection starts only after the
// previous pause was released, i.e. after whatever on_pause() did. Returns the report;
// `handled` counts pauses.
json run_held_pauses(const TestCgroup& cg, const TestPinDir& pins, int round, int connections,
                     const std::function<void(const std::string&)>& on_pause, int& handled) {
    const auto hold = hold_path(pins);
    auto traffic = start_traffic(pair_args(
        cg, round,
        {"--connections", std::to_string(connections), "--parallel", "1", "--min-bytes",
         "1048576", "--max-bytes", "4194304", "--read-pause-dir", "s2c", "--read-pause-after",
         "65536", "--read-pause-ms", "50", "--read-pause-file", hold, "--late-half-close"}));
    // Destroyed before `traffic` (whose destructor waits for the run): if on_pause() throws,
    // the pause is released so the run can end instead of waiting for its deadline.
    struct Release {
        std::string hold;
        ~Release() {
            std::error_code ec;
            std::filesystem::remove(hold, ec);
        }
    } release{hold};
    handled = 0;
    do {
        const auto h = slurp(hold);
        if (h.empty() || slurp(hold + ".queued") != h) continue;
        on_pause(h);
        ++handled;
        std::filesystem::remove(hold + ".queued");
        std::filesystem::remove(hold);
    } while (running(traffic, 5ms));
    return traffic.get();
}

// N from the daemon's "adopted N socket(s)" start-up line, or -1.
long adopted_sockets(const std::string& log) {
    static const std::regex re("adopted ([0-9]+) socket");
    std::smatch m;
    return std::regex_search(log, m, re) ? std::stol(m[1]) : -1;
}

}  // namespace

TEST_CASE("integrity: a connect storm that sends at once under CPU saturation", "[integrity][drain]") {
    TestCgroup cg("storm");
    TestPinDir pins("storm");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    {
        BusyLoad load(2);  // as many spinners as this machine kind has CPUs
        REQUIRE(load.size() == 2);
        // The client sends its header as soon as connect() completes (epoll: on the first
        // EPOLLOUT; blocking: right after connect), racing the peer's insertion.
        for (int round = 0; round < 3; ++round) {
            auto report = run_traffic(pair_args(cg, round,
                                                {"--io", kIo[round], "--connections", "600",
                                                 "--parallel", "200", "--max-bytes", "65536"}));
            INFO("round " << round << " (" << kAddrs[round % 3] << ", " << kIo[round] << ")");
            check_integrity(report);
        }
    }
    // Connected only now: the storm can outlast the daemon's idle timeout
    // for control clients (30 s) in a slow guest, which closes an idle one.
    ControlClient ctl(pins.socket());
    auto c = result(ctl.request("stats"))["counters"];
    INFO("counters " << c.dump() << "; redirect_misses " << c["redirect_misses"]
                     << ", tcp_path_sockets " << c["tcp_path_sockets"]);
    std::fprintf(stderr, "integrity storm: redirect_misses %llu, tcp_path_sockets %llu, %s\n",
                 (unsigned long long)c["redirect_misses"].get<std::uint64_t>(),
                 (unsigned long long)c["tcp_path_sockets"].get<std::uint64_t>(), c.dump().c_str());
    // Requests are redirected (both sockets are in the map before the first send). A reply
    // that starts after its client's half-close takes TCP (the half-close gate,
    // gate_closed_sends); a longer one has begun before and is redirected too.
    CHECK(c["redirect_msgs"].get<std::uint64_t>() > 0);
    CHECK(c["sockets_added"].get<std::uint64_t>() > 0);
    CHECK(c["storage_missing"] == 0);
    CHECK(wait_entries(ctl, 0)["map"]["entries"] == 0);
    CHECK(daemon.stop() == 0);
}

TEST_CASE("integrity: flush-map repeated during long-lived connections", "[integrity][drain]") {
    TestCgroup cg("iflush");
    TestPinDir pins("iflush");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());

    std::uint64_t flushes = 0, flushed = 0, max_pending = 0;
    for (int round = 0; round < 3; ++round) {
        auto traffic = start_traffic(pair_args(
            cg, round,
            {"--io", kIo[round], "--connections", "32", "--parallel", "16", "--max-bytes", "4194304",
             "--max-pause-ms", "20"}));
        do {
            auto r = result(ctl.request("flush-map", {{"wait_ms", 50}}));
            flushed += r["flushed"].get<std::uint64_t>();
            max_pending = std::max(max_pending, r["pending"].get<std::uint64_t>());
            ++flushes;
        } while (running(traffic));
        auto report = traffic.get();
        INFO("round " << round << ", flushes so far " << flushes);
        check_integrity(report);
    }
    INFO("flushes " << flushes << ", sockets flushed " << flushed << ", max pending "
                    << max_pending);
    std::fprintf(stderr, "integrity flush: %llu flushes, %llu sockets flushed, max pending %llu\n",
                 (unsigned long long)flushes, (unsigned long long)flushed,
                 (unsigned long long)max_pending);
    CHECK(flushes >= 3);
    CHECK(flushed > 0);
    CHECK(counter(ctl, "redirect_bytes") > 0);
    auto s = wait_entries(ctl, 0);
    CHECK(s["map"]["entries"] == 0);
    CHECK(daemon.stop() == 0);
}

TEST_CASE("integrity: detach and attach alternating during traffic", "[integrity][drain]") {
    TestCgroup cg("toggle");
    TestPinDir pins("toggle");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());

    int toggles = 0;
    for (int round = 0; round < 3; ++round) {
        auto traffic = start_traffic(pair_args(
            cg, round,
            {"--io", kIo[round], "--connections", "64", "--parallel", "16", "--max-bytes", "2097152",
             "--max-pause-ms", "5"}));
        bool attached = true;
        do {
            auto r = result(ctl.request(attached ? "detach" : "attach"));
            attached = !attached;
            CHECK(r["attached"] == attached);
            CHECK(r["changed"] == true);
            ++toggles;
        } while (running(traffic));
        if (!attached) CHECK(result(ctl.request("attach"))["attached"] == true);
        auto report = traffic.get();
        INFO("round " << round << ", toggles so far " << toggles);
        check_integrity(report);
    }
    auto c = result(ctl.request("stats"))["counters"];
    INFO("toggles " << toggles << "; counters " << c.dump());
    std::fprintf(stderr, "integrity detach/attach: %d toggles, sockets_added %llu\n", toggles,
                 (unsigned long long)c["sockets_added"].get<std::uint64_t>());
    CHECK(toggles >= 3);
    CHECK(c["sockets_added"].get<std::uint64_t>() > 0);
    CHECK(result(ctl.request("status"))["attach"]["attached"] == true);
    CHECK(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 1);
    CHECK(wait_entries(ctl, 0)["map"]["entries"] == 0);
    CHECK(daemon.stop() == 0);
    CHECK(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 0);
    CHECK_FALSE(pins.exists());
}

namespace {

// Stops the daemon with `sig` again and again while traffic runs, and at
// held receiver pauses (unread redirected data waiting), starting a new one
// on the same pin directory each time. SIGTERM must leave either nothing or
// pinned state with the sockops program detached; SIGKILL must undo
// nothing, so the pinned link keeps accelerating without a daemon. Every
// new daemon adopts what was left; every byte still arrives.
void restart_during_traffic(int sig, const std::string& tag) {
    TestCgroup cg(tag);
    TestPinDir pins(tag);
    const auto args = daemon_args(cg, pins, {}, R"({"drain":{"stop_timeout_sec":1}})");
    auto daemon = std::make_unique<DaemonProcess>(args);
    REQUIRE(daemon->ready());
    const bool kill = sig == SIGKILL;

    auto stop_checked = [&](bool held) {
        CHECK(daemon->stop(sig) == (kill ? -SIGKILL : 0));
        INFO(daemon->log());
        CHECK(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == (kill ? 1u : 0u));
        // Unread data at a held pause cannot drain within stop_timeout_sec,
        // so the state stays pinned; after a SIGKILL it always does.
        if (kill || held) CHECK(pins.has("sock_hash"));
    };
    auto start_adopting = [&] {
        daemon = std::make_unique<DaemonProcess>(args);
        REQUIRE(daemon->ready());
        return daemon->log().find("adopted") != std::string::npos;
    };

    int restarts = 0, adoptions = 0, held_restarts = 0;
    for (int round = 0; round < 3; ++round) {
        auto traffic = start_traffic(pair_args(
            cg, round,
            {"--io", kIo[round], "--connections", "48", "--parallel", "12", "--max-bytes", "4194304",
             "--max-pause-ms", "20"}));
        do {
            stop_checked(false);
            const bool adopted = start_adopting();
            INFO(daemon->log());
            if (kill) CHECK(adopted);
            adoptions += adopted;
            ++restarts;
        } while (running(traffic));
        INFO("round " << round << ", restarts so far " << restarts << " (adopting " << adoptions
                      << ")");
        check_integrity(traffic.get());

        int held = 0;
        auto held_report = run_held_pauses(
            cg, pins, round, 2,
            [&](const std::string& pause) {
                INFO("pause " << pause);
                stop_checked(true);
                start_adopting();
                INFO(daemon->log());
                // The paused receiver at least (its peer may have sent all and closed).
                CHECK(adopted_sockets(daemon->log()) >= 1);
                ++held_restarts;
            },
            held);
        INFO("round " << round << " (restarts at held pauses)");
        check_integrity(held_report);
        CHECK(held == 2);
    }
    std::fprintf(stderr,
                 "integrity %s: %d restarts under traffic (%d adopted pinned state), %d at held "
                 "pauses (all adopted)\n",
                 kill ? "SIGKILL" : "SIGTERM", restarts, adoptions, held_restarts);
    CHECK(restarts >= 3);
    CHECK(held_restarts == 6);
    // All traffic is over, so the map is empty: a clean stop leaves nothing behind.
    CHECK(daemon->stop(SIGTERM) == 0);
    INFO(daemon->log());
    CHECK(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 0);
    CHECK_FALSE(pins.exists());
}

}  // namespace

TEST_CASE("integrity: SIGTERM and restart of the daemon during traffic", "[integrity][drain]") {
    restart_during_traffic(SIGTERM, "restart");
}

TEST_CASE("integrity: SIGKILL and restart of the daemon during traffic", "[integrity][drain]") {
    restart_during_traffic(SIGKILL, "kill");
}

TEST_CASE("integrity: a receiver that stops reading for a while and then resumes", "[integrity][drain]") {
    TestCgroup cg("pause");
    TestPinDir pins("pause");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());
    std::uint64_t held_pauses = 0, pending_bytes = 0, send_eagain = 0;
    for (int round = 0; round < 3; ++round) {
        // (a) One connection at a time; its client stops reading the reply after 64 KiB and
        // stays paused until the test removes the hold file. Once the paused socket has
        // unread data (redirected, see run_held_pauses()), a flush must keep it (pending)
        // rather than drop it; then the pause ends and every byte must still arrive, the
        // redirected ones first and the later TCP ones after.
        constexpr int kHeld = 3;
        int handled = 0;
        auto report = run_held_pauses(
            cg, pins, round, kHeld,
            [&](const std::string& pause) {
                auto r = result(ctl.request("flush-map", {{"wait_ms", 100}}));
                INFO("round " << round << ", pause " << pause << " flush " << r.dump());
                CHECK(r["pending"].get<std::uint64_t>() >= 1);
                if (kernel_features().psock_msg_tot_len)  // counts need it (not in 6.1)
                    CHECK(r["pending_bytes"].get<std::uint64_t>() > 0);
                CHECK(r["dropped_sockets"] == 0);
                pending_bytes += r["pending_bytes"].get<std::uint64_t>();
            },
            handled);
        INFO("round " << round << " (held pauses)");
        check_integrity(report);
        CHECK(report["read_pauses"] == kHeld);  // every reply is longer than 64 KiB + 256 KiB
        CHECK(handled == kHeld);                // each one held until its flush was done
        held_pauses += static_cast<std::uint64_t>(handled);
        send_eagain += report["send_eagain"].get<std::uint64_t>();

        // (b) Many connections whose receivers, in both directions, pause for 300 ms after
        // 32 KiB, while flushes run; every stream is longer, so every receiver pauses once.
        constexpr int kTimed = 16;
        auto traffic = start_traffic(pair_args(
            cg, round + 1,
            {"--connections", std::to_string(kTimed), "--parallel", "8", "--min-bytes", "65536",
             "--max-bytes", "2097152", "--read-pause-dir", "both", "--read-pause-after",
             "32768", "--read-pause-ms", "300"}));
        int flushes = 0;
        do {
            result(ctl.request("flush-map", {{"wait_ms", 50}}));
            ++flushes;
        } while (running(traffic, 50ms));
        report = traffic.get();
        INFO("round " << round << " (timed pauses, " << flushes << " flushes)");
        check_integrity(report);
        CHECK(report["read_pauses"] == 2 * kTimed);
        send_eagain += report["send_eagain"].get<std::uint64_t>();
    }
    // Informative here; the back-pressure case below checks that senders block.
    INFO("held pauses " << held_pauses << ", unread bytes kept by their flushes "
                        << pending_bytes << ", sender EAGAINs " << send_eagain);
    std::fprintf(stderr,
                 "integrity pause: %llu held pauses flushed with pending data (%llu unread bytes "
                 "kept), sender EAGAINs %llu\n",
                 (unsigned long long)held_pauses, (unsigned long long)pending_bytes,
                 (unsigned long long)send_eagain);
    CHECK(held_pauses == 9);
    CHECK(wait_entries(ctl, 0)["map"]["entries"] == 0);
    CHECK(daemon.stop() == 0);
}

TEST_CASE("integrity: back-pressure holds a sender whose receiver stops reading", "[integrity][drain]") {
    TestCgroup cg("backpressure");
    TestPinDir pins("backpressure");
    constexpr std::uint64_t kLimit = 1 << 20;
    DaemonProcess daemon(daemon_args(
        cg, pins, {},
        R"({"drain": {"stop_timeout_sec": 1}, "redirect": {"max_unread_bytes": 1048576}})"));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());
    std::uint64_t max_unread = 0, max_accepted = 0;

    if (!kernel_features().backpressure()) {
        // Without psock->msg_tot_len (6.1) there is no back-pressure, and
        // status says so; the queued data is still all delivered in order.
        CHECK(result(ctl.request("status"))["features"]["backpressure"] == false);
        HeldPair pair(cg.path(), "127.0.0.1");
        const auto filled = pair.fill(16u << 20, 500);
        REQUIRE(filled.rfind("ok filled ", 0) == 0);
        CHECK(pair.read_all() == "ok read " + std::to_string(std::stoull(filled.substr(10))));
        CHECK(pair.close() == "ok closed");
        CHECK(daemon.stop() == 0);
        return;
    }

    // (a) A receiver that reads nothing while its peer tries to send 64 MiB. Without
    // back-pressure all 64 MiB would queue in its redirect queue; with it, the sender is
    // switched to TCP once the queue passes the limit, and TCP's window then blocks it.
    // Once the receiver has read everything, the sender redirects again.
    for (const char* addr : {"127.0.0.1", "::1"}) {
        INFO(addr);
        HeldPair pair(cg.path(), addr);
        REQUIRE(wait_entries(ctl, 2, /*at_least=*/true)["map"]["entries"] == 2);
        const auto holds_before = counter(ctl, "backpressure_holds");
        const auto filled = pair.fill(64u << 20, 500);
        INFO("fill: " << filled);
        REQUIRE(filled.rfind("ok filled ", 0) == 0);
        REQUIRE(filled.find(" blocked") != std::string::npos);
        const std::uint64_t accepted = std::stoull(filled.substr(10));
        CHECK(accepted < (16u << 20));
        CHECK(counter(ctl, "backpressure_holds") == holds_before + 1);
        // The receiver's unread redirected bytes: the limit, plus at most the one 64 KiB
        // send that found it exceeded; the rest waits in TCP.
        const auto conns = result(ctl.request("connections"))["connections"];
        INFO("connections " << conns.dump());
        REQUIRE(conns.size() == 1);
        std::uint64_t unread = 0;
        for (const char* side : {"unread_bytes", "peer_unread_bytes"})
            if (conns[0][side].is_number())
                unread = std::max(unread, conns[0][side].get<std::uint64_t>());
        CHECK(unread >= kLimit);
        CHECK(unread <= kLimit + (64u << 10));
        max_unread = std::max(max_unread, unread);
        max_accepted = std::max(max_accepted, accepted);

        CHECK(pair.read_all() == "ok read " + std::to_string(accepted));
        // Caught up: sending redirects again. (The first send after the fill may still take
        // TCP without running the program: when a TCP push fails with EAGAIN, the kernel
        // keeps that verdict for the socket's next send, tcp_bpf_send_verdict().)
        const auto resumes = counter(ctl, "backpressure_resumes");
        const auto redirected = counter(ctl, "redirect_bytes");
        for (int i = 1; i <= 2; ++i) {
            REQUIRE(pair.send(100000).rfind("ok", 0) == 0);
            CHECK(pair.read_all() == "ok read " + std::to_string(accepted + i * 100000));
        }
        CHECK(counter(ctl, "backpressure_resumes") == resumes + 1);
        CHECK(counter(ctl, "redirect_bytes") - redirected >= 100000);
        CHECK(pair.close() == "ok closed");
        CHECK(wait_entries(ctl, 0)["map"]["entries"] == 0);
    }

    // (b) Holds and resumes under traffic: with the smallest limit, receivers in both
    // directions pause for 200 ms; senders are held back to TCP and return to redirecting
    // once their peer has read everything. Every byte must arrive once and in order.
    pins.write_config(
        R"({"drain": {"stop_timeout_sec": 1}, "redirect": {"max_unread_bytes": 65536}})");
    auto reloaded = result(ctl.request("reload"));
    REQUIRE(reloaded["applied"] == json::array({"redirect.max_unread_bytes"}));
    const auto holds0 = counter(ctl, "backpressure_holds");
    const auto resumes0 = counter(ctl, "backpressure_resumes");
    for (int round = 0; round < 3; ++round) {
        auto report = run_traffic(pair_args(
            cg, round,
            {"--connections", "16", "--parallel", "8", "--min-bytes", "262144", "--max-bytes",
             "4194304", "--read-pause-dir", "both", "--read-pause-after", "32768",
             "--read-pause-ms", "200"}));
        INFO("round " << round);
        check_integrity(report);
    }
    const auto holds = counter(ctl, "backpressure_holds") - holds0;
    const auto resumes = counter(ctl, "backpressure_resumes") - resumes0;
    // Holds are certain with this limit and these pauses. Resumes are not asserted here:
    // one needs a send after the reader has caught up, which depends on timing (part (a)
    // checks the resume deterministically).
    CHECK(holds > 0);
    std::fprintf(stderr,
                 "integrity back-pressure: a stopped receiver held %llu unread bytes at most "
                 "(limit %llu); its sender was blocked after %llu of 64 MiB; under pauses "
                 "%llu holds, %llu resumes\n",
                 (unsigned long long)max_unread, (unsigned long long)kLimit,
                 (unsigned long long)max_accepted, (unsigned long long)holds,
                 (unsigned long long)resumes);
    CHECK(wait_entries(ctl, 0)["map"]["entries"] == 0);
    CHECK(daemon.stop() == 0);
}

TEST_CASE("integrity: the peer closes while redirected data is unread", "[integrity][drain]") {
    TestCgroup cg("peerclose");
    TestPinDir pins("peerclose");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());

    struct Round {
        const char* addr;
        bool server_closes;     // else the client closes
        bool abort;             // SO_LINGER 0: the close resets the connection
        std::size_t to_closer;  // redirected bytes the closing side never reads
        std::size_t to_prober;  // redirected bytes the surviving side reads before EOF/error
    };
    const Round rounds[] = {{"127.0.0.1", true, false, 200000, 0},
                            {"::1", false, false, 300000, 5000},
                            {"127.0.0.1", true, false, 1, 70000},
                            {"::1", true, false, 4194304, 0},
                            {"127.0.0.1", true, true, 100000, 70000},
                            {"::1", false, true, 1, 1}};
    int n = 0;
    for (const auto& rd : rounds) {
        INFO("round " << n++ << ": " << rd.addr << ", " << (rd.server_closes ? "server" : "client")
                      << (rd.abort ? " aborts" : " closes") << " with " << rd.to_closer
                      << " unread bytes, the other side has " << rd.to_prober);
        HeldPair pair(cg.path(), rd.addr);
        REQUIRE(wait_entries(ctl, 2, /*at_least=*/true)["map"]["entries"] == 2);
        const auto redirected = counter(ctl, "redirect_bytes");
        if (rd.server_closes) {
            REQUIRE(pair.send(rd.to_closer).rfind("ok", 0) == 0);
            if (rd.to_prober) REQUIRE(pair.server_send(rd.to_prober).rfind("ok", 0) == 0);
        } else {
            REQUIRE(pair.server_send(rd.to_closer).rfind("ok", 0) == 0);
            if (rd.to_prober) REQUIRE(pair.send(rd.to_prober).rfind("ok", 0) == 0);
        }
        // The bytes really sit in the redirect queues (not in TCP).
        CHECK(counter(ctl, "redirect_bytes") - redirected == rd.to_closer + rd.to_prober);

        auto closed = rd.server_closes ? pair.close_server(rd.abort) : pair.close_client(rd.abort);
        CHECK(closed.rfind("ok", 0) == 0);
        // The closed socket leaves the map at once; only the survivor may remain.
        CHECK(result(ctl.request("status"))["map"]["entries"].get<std::uint64_t>() <= 1);

        const auto seen = rd.server_closes ? pair.probe_client() : pair.probe_server();
        INFO("the surviving side saw: " << seen);
        CHECK(seen.rfind("ok read ", 0) == 0);
        CHECK(seen.find("hang") == std::string::npos);
        // Whatever was sent to the survivor before the close is still delivered.
        CHECK(seen.find("after " + std::to_string(rd.to_prober) + " bytes") != std::string::npos);
        CHECK(seen.find("write error") != std::string::npos);
        // The survivor (reset, but its fd still open) may stay until its application closes
        // it; then nothing is left.
        const auto survivor = result(ctl.request("status"))["map"]["entries"];
        CHECK(pair.close() == "ok closed");
        CHECK(wait_entries(ctl, 0)["map"]["entries"] == 0);
        std::fprintf(stderr, "integrity peer close: %s %s%s with %zu unread, peer had %zu: %s (map entries "
                     "before the survivor closed: %s)\n",
                     rd.addr, rd.server_closes ? "server" : "client",
                     rd.abort ? " aborts" : " closes", rd.to_closer, rd.to_prober, seen.c_str(),
                     survivor.dump().c_str());
    }
    CHECK(result(ctl.request("stats"))["counters"]["storage_missing"] == 0);
    CHECK(daemon.stop() == 0);
}

TEST_CASE("integrity: a map smaller than the number of connections", "[integrity][drain]") {
    TestCgroup cg("small");
    TestPinDir pins("small");
    DaemonProcess daemon(daemon_args(cg, pins, {"--map-size", "16"}));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());
    REQUIRE(result(ctl.request("status"))["map"]["capacity"] == 16);

    for (int round = 0; round < 3; ++round) {
        const auto full_before = counter(ctl, "add_failed_map_full");
        // All 100 connections are opened before the first one can finish, so 200 sockets
        // compete for 16 slots.
        auto report = run_traffic(
            pair_args(cg, round, {"--connections", "100", "--parallel", "100"}));
        auto c = result(ctl.request("stats"))["counters"];
        INFO("round " << round << "; counters " << c.dump());
        check_integrity(report);
        CHECK(c["add_failed_map_full"].get<std::uint64_t>() > full_before);
        std::fprintf(stderr, "integrity small map: round %d, add_failed_map_full %llu (+%llu)\n",
                     round, (unsigned long long)c["add_failed_map_full"].get<std::uint64_t>(),
                     (unsigned long long)(c["add_failed_map_full"].get<std::uint64_t>() -
                                          full_before));
        CHECK(c["sockets_added"].get<std::uint64_t>() > 0);
    }
    CHECK(wait_entries(ctl, 0)["map"]["entries"] == 0);
    CHECK(daemon.stop() == 0);
}
