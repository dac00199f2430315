// SPDX-License-Identifier: Apache-2.0
//
// The control socket against the real daemon: every command, flush-map's
// data safety, and every bad-input path of the robustness contract
// (daemon/src/control_server.h).
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <fstream>
#include <future>
#include <thread>

#include "harness.h"
#include "held_pair.h"

using namespace sockaccel;
using namespace sockaccel::test;
using nlohmann::json;

namespace {

std::string error_code(const json& response) {
    INFO(response.dump());
    REQUIRE(response["ok"] == false);
    return response["error"]["code"].get<std::string>();
}

std::uint64_t rss_kib(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
    return 0;
}

// Many idle loopback connections, both ends in one child process inside the
// cgroup: enough sockets that one walk of the sockhash spans many read()s
// of the iterator (each a restart, see abi.h). verify() checks that every
// connection still carries a byte each way.
class ManyIdle {
public:
    ManyIdle(const std::string& cgroup, int connections) {
        int ready[2], go[2];
        REQUIRE(::pipe(ready) == 0);
        REQUIRE(::pipe(go) == 0);
        pid_ = ::fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            ::close(ready[0]);
            ::close(go[1]);
            _exit(child(cgroup, connections, ready[1], go[0]));
        }
        ::close(ready[1]);
        ::close(go[0]);
        go_ = go[1];
        char c = 0;
        ready_ = ::read(ready[0], &c, 1) == 1 && c == 'r';
        ::close(ready[0]);
    }
    ~ManyIdle() {
        if (go_ >= 0) ::close(go_);
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    bool ready() const { return ready_; }
    bool verify() {
        // A byte, not EOF: children forked later (HeldPair) inherit our end.
        const bool sent = ::write(go_, "g", 1) == 1;
        ::close(go_);
        go_ = -1;
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
        return sent && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }

private:
    static int child(const std::string& cgroup, int n, int ready_fd, int go_fd) {
        std::ofstream(cgroup + "/cgroup.procs") << ::getpid() << std::endl;
        // Both ends of every connection are ours. Root may raise the hard
        // limit (the 6.1 guest starts at 1024); without CAP_SYS_RESOURCE
        // the soft limit goes up to the hard one.
        rlimit lim{};
        ::getrlimit(RLIMIT_NOFILE, &lim);
        const rlim_t want = 2 * static_cast<rlim_t>(n) + 64;
        if (lim.rlim_cur < want) {
            rlimit more{want, std::max(want, lim.rlim_max)};
            if (::setrlimit(RLIMIT_NOFILE, &more) != 0) {
                lim.rlim_cur = lim.rlim_max;
                ::setrlimit(RLIMIT_NOFILE, &lim);
            }
        }
        const int l = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(l, 1024) != 0 ||
            ::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) != 0)
            return 2;
        std::vector<std::pair<int, int>> conns;
        for (int i = 0; i < n; ++i) {
            const int c = connect_nonblocking(l);
            if (c < 0) return 3;
            const int s = accept_nonblocking(l);
            if (s < 0) return 4;
            conns.emplace_back(c, s);
        }
        if (::write(ready_fd, "r", 1) != 1) return 5;
        char c;
        if (::read(go_fd, &c, 1) != 1) return 8;
        for (auto [cl, sv] : conns) {
            char in = 0;
            if (!write_all_nonblocking(cl, "q", 1) || !read_exact_nonblocking(sv, &in, 1) ||
                in != 'q')
                return 6;
            if (!write_all_nonblocking(sv, "a", 1) || !read_exact_nonblocking(cl, &in, 1) ||
                in != 'a')
                return 7;
        }
        return 0;
    }

    pid_t pid_ = -1;
    int go_ = -1;
    bool ready_ = false;
};

}  // namespace

TEST_CASE("every read-only command answers with its documented shape", "[drain]") {
    TestCgroup cg("cmds");
    TestPinDir pins("cmds");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());
    REQUIRE(ctl.connected());

    CHECK(result(ctl.request("ping")).empty());
    auto v = result(ctl.request("version"));
    CHECK(v["protocol"] == 1);
    CHECK(v["abi"] == SOCKACCEL_ABI_VERSION);

    auto s = result(ctl.request("status"));
    CHECK(s["pid"] == daemon.pid());
    CHECK(s["attach"]["attached"] == true);
    CHECK(s["attach"]["cgroup"] == cg.path());
    CHECK(s["attach"]["pin_dir"] == pins.path());
    CHECK(s["attach"]["sockops_prog_id"].get<int>() > 0);
    CHECK(s["map"]["capacity"] == 65536);
    CHECK(s["mode"]["insert"] == true);
    CHECK(s["mode"]["redirect"] == true);
    CHECK(s["counters"].contains("redirect_bytes"));
    CHECK(s["features"]["drain_backend"] == to_string(expected_drain_backend()));
    CHECK(s["drain"]["backend"] == to_string(expected_drain_backend()));
    CHECK(s["drain"]["unreached"] == 0);
    CHECK(s["config"]["pin_dir"] == pins.path());
    CHECK(s["kernel"].is_string());

    // Traffic shows up in stats and, while open, in connections.
    HeldPair pair(cg.path(), "127.0.0.1");
    REQUIRE(pair.send(1000) == "ok sent 1000");
    auto st = result(ctl.request("stats"));
    CHECK(st["counters"]["redirect_bytes"] == 1000);
    CHECK(st["map"]["entries"] == 2);
    CHECK(st["timestamp_ms"].is_number_integer());

    auto c = result(ctl.request("connections"));
    CHECK(c["total"] == 2);
    CHECK(c["shown"] == 2);
    REQUIRE(c["connections"].size() == 1);  // the pair, listed once
    CHECK(c["connections"][0]["peer_cookie"].is_number());
    CHECK(c["connections"][0]["local_addr"] == "127.0.0.1");
    auto port = c["connections"][0]["local_port"].get<int>();
    CHECK(result(ctl.request("connections", {{"port", port}}))["connections"].size() == 1);
    CHECK(result(ctl.request("connections", {{"port", 1}}))["connections"].empty());
    CHECK(result(ctl.request("connections", {{"limit", 1}}))["connections"].size() == 1);
    CHECK(error_code(ctl.request("connections", {{"limit", 0}})) == "invalid_argument");
    CHECK(error_code(ctl.request("connections", {{"port", "x"}})) == "invalid_argument");
    CHECK(error_code(ctl.request("connections", {{"bogus", 1}})) == "invalid_argument");
    CHECK(error_code(ctl.request("status", {{"x", 1}})) == "invalid_argument");
    REQUIRE(pair.read_all() == "ok read 1000");
    REQUIRE(pair.close() == "ok closed");
    CHECK(daemon.stop() == 0);
}

TEST_CASE("detach and attach stop and resume accelerating new connections") {
    TestCgroup cg("detach");
    TestPinDir pins("detach");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());

    HeldPair before(cg.path(), "127.0.0.1");  // accelerated, stays so
    auto d = result(ctl.request("detach"));
    CHECK(d["attached"] == false);
    CHECK(d["changed"] == true);
    CHECK(result(ctl.request("detach"))["changed"] == false);
    CHECK(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 0);
    CHECK_FALSE(pins.has("sockops_link"));
    CHECK(result(ctl.request("status"))["attach"]["attached"] == false);

    auto added = result(ctl.request("stats"))["counters"]["sockets_added"].get<int>();
    {
        HeldPair during(cg.path(), "127.0.0.1");
        REQUIRE(during.send(5000) == "ok sent 5000");
        CHECK(during.read_all() == "ok read 5000");
        CHECK(during.close() == "ok closed");
    }
    CHECK(result(ctl.request("stats"))["counters"]["sockets_added"] == added);
    // The connection from before the detach is still accelerated.
    REQUIRE(before.send(3000) == "ok sent 3000");
    CHECK(result(ctl.request("stats"))["counters"]["redirect_bytes"] == 3000);
    CHECK(before.read_all() == "ok read 3000");

    CHECK(result(ctl.request("attach"))["changed"] == true);
    CHECK(cg.attached_programs(BPF_CGROUP_SOCK_OPS) == 1);
    HeldPair after(cg.path(), "127.0.0.1");
    CHECK(result(ctl.request("stats"))["counters"]["sockets_added"] == added + 2);
    CHECK(after.close() == "ok closed");
    CHECK(before.close() == "ok closed");
    CHECK(daemon.stop() == 0);
}

TEST_CASE("flush-map empties the map without losing a byte", "[drain]") {
    TestCgroup cg("flush");
    TestPinDir pins("flush");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());

    SECTION("idle connections are flushed at once and keep working over TCP") {
        HeldPair a(cg.path(), "127.0.0.1");
        HeldPair b(cg.path(), "::1");
        REQUIRE(a.send(10000) == "ok sent 10000");
        REQUIRE(a.read_all() == "ok read 10000");
        auto r = result(ctl.request("flush-map"));
        CHECK(r["flushed"] == 4);
        CHECK(r["pending"] == 0);
        CHECK(r["dropped_sockets"] == 0);
        CHECK(result(ctl.request("status"))["map"]["entries"] == 0);
        REQUIRE(a.send(20000) == "ok sent 30000");
        CHECK(a.read_all() == "ok read 30000");
        REQUIRE(b.send(7) == "ok sent 7");
        CHECK(b.read_all() == "ok read 7");
        // New connections are accelerated as before.
        HeldPair c(cg.path(), "127.0.0.1");
        CHECK(result(ctl.request("status"))["map"]["entries"] == 2);
        CHECK(c.close() == "ok closed");
    }
    SECTION("unread redirected data stays until read, then drains in the background") {
        HeldPair p(cg.path(), "127.0.0.1");
        REQUIRE(p.send(200000) == "ok sent 200000");
        auto r = result(ctl.request("flush-map", {{"wait_ms", 300}}));
        CHECK(r["flushed"] == 1);  // the sender: nothing unread, nothing in flight
        CHECK(r["pending"] == 1);  // the receiver holds 200,000 unread bytes
        const bool exact = kernel_features().psock_msg_tot_len;  // not in 6.1
        CHECK(r["pending_bytes"] == (exact ? 200000 : 0));
        CHECK(r["pending_bytes_exact"] == exact);
        CHECK(r["background"] == true);
        auto s = result(ctl.request("status"));
        CHECK(s["drain"]["pending"] == 1);
        CHECK(s["drain"]["active"] == true);
        // The sender now uses TCP; the receiver reads everything in order.
        REQUIRE(p.send(50000) == "ok sent 250000");
        CHECK(p.read_all() == "ok read 250000");
        auto done = wait_entries(ctl, 0);
        CHECK(done["map"]["entries"] == 0);
        CHECK(done["drain"]["pending"] == 0);
        CHECK(p.close() == "ok closed");
    }
    SECTION("--force drops pending sockets and says exactly what it dropped") {
        HeldPair p(cg.path(), "127.0.0.1");
        REQUIRE(p.send(123456) == "ok sent 123456");
        auto r = result(ctl.request("flush-map", {{"force", true}, {"wait_ms", 100}}));
        CHECK(r["flushed"] == 2);
        CHECK(r["pending"] == 0);
        CHECK(r["dropped_sockets"] == 1);
        CHECK(r["dropped_bytes"] == (kernel_features().psock_msg_tot_len ? 123456 : 0));
        CHECK(result(ctl.request("status"))["map"]["entries"] == 0);
        CHECK(p.close() == "ok closed");
    }
    SECTION("thousands of sockets: counts and flush reports are exact") {
        // 6,000 sockets: 48 KB of cookies for the counting walk, 432 KB of
        // records per drain pass, so both span many iterator reads, each of
        // which restarts the current hash bucket and may repeat entries.
        ManyIdle idle(cg.path(), 3000);
        REQUIRE(idle.ready());
        HeldPair p(cg.path(), "127.0.0.1");
        REQUIRE(p.send(4321) == "ok sent 4321");
        for (int i = 0; i < 5; ++i)
            CHECK(result(ctl.request("status"))["map"]["entries"] == 6002);
        auto r = result(ctl.request("flush-map", {{"wait_ms", 300}}));
        CHECK(r["flushed"] == 6001);  // all but p's receiver, which has unread data
        CHECK(r["pending"] == 1);
        CHECK(r["dropped_sockets"] == 0);
        CHECK(result(ctl.request("status"))["map"]["entries"] == 1);
        CHECK(idle.verify());
        CHECK(p.read_all() == "ok read 4321");
        CHECK(wait_entries(ctl, 0)["map"]["entries"] == 0);
        CHECK(p.close() == "ok closed");
    }
    SECTION("thousands of sockets: --force reports exactly what it dropped") {
        ManyIdle idle(cg.path(), 3000);
        REQUIRE(idle.ready());
        HeldPair p(cg.path(), "127.0.0.1");
        HeldPair q(cg.path(), "::1");
        REQUIRE(p.send(1000) == "ok sent 1000");
        REQUIRE(q.send(2345) == "ok sent 2345");
        auto r = result(ctl.request("flush-map", {{"force", true}, {"wait_ms", 100}}));
        CHECK(r["flushed"] == 6004);
        CHECK(r["pending"] == 0);
        CHECK(r["dropped_sockets"] == 2);
        CHECK(r["dropped_bytes"] == (kernel_features().psock_msg_tot_len ? 3345 : 0));
        CHECK(result(ctl.request("status"))["map"]["entries"] == 0);
        CHECK(idle.verify());
        CHECK(p.close() == "ok closed");
        CHECK(q.close() == "ok closed");
    }
    SECTION("bad arguments change nothing") {
        HeldPair p(cg.path(), "127.0.0.1");
        CHECK(error_code(ctl.request("flush-map", {{"force", "yes"}})) == "invalid_argument");
        CHECK(error_code(ctl.request("flush-map", {{"wait_ms", -1}})) == "invalid_argument");
        CHECK(error_code(ctl.request("flush-map", {{"now", true}})) == "invalid_argument");
        CHECK(result(ctl.request("status"))["map"]["entries"] == 2);
        CHECK(p.close() == "ok closed");
    }
    CHECK(daemon.stop() == 0);
}

TEST_CASE("flush-map repeated during traffic loses, duplicates and reorders nothing", "[drain]") {
    TestCgroup cg("flushload");
    TestPinDir pins("flushload");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());

    // Several rounds; in each, at least one flush is issued while the
    // traffic runs (do-while), whatever the machine's speed. Nothing here
    // depends on timing for its verdict.
    int flushes = 0;
    std::uint64_t flushed = 0;
    for (int round = 0; round < 3; ++round) {
        auto traffic = std::async(std::launch::async, [&] {
            return run_streamcheck({"pair", "--addr", round % 2 ? "::1" : "127.0.0.1",
                                    "--connections", "96", "--parallel", "16", "--min-bytes",
                                    "262144", "--max-bytes", "2097152", "--max-msg", "65536",
                                    "--max-pause-ms", "3", "--server-cgroup", cg.path(),
                                    "--client-cgroup", cg.path(), "--timeout", "120"});
        });
        do {
            auto r = result(ctl.request("flush-map", {{"wait_ms", 50}}));
            flushed += r["flushed"].get<std::uint64_t>();
            ++flushes;
        } while (traffic.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready);
        INFO("round " << round);
        check_integrity(traffic.get());
    }
    INFO("flushes " << flushes << ", sockets flushed " << flushed);
    CHECK(flushes >= 3);
    CHECK(flushed > 0);
    auto c = result(ctl.request("stats"))["counters"];
    CHECK(c["redirect_bytes"].get<std::uint64_t>() > 0);
    CHECK(daemon.stop() == 0);
}

TEST_CASE("bad control input gets a clear error and never harms the daemon") {
    TestCgroup cg("badinput");
    TestPinDir pins("badinput");
    DaemonProcess daemon(daemon_args(
        cg, pins, {},
        R"({"drain":{"stop_timeout_sec":1},"control":{"idle_timeout_sec":1,"max_clients":8}})"));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());

    auto answer = [&](const std::string& raw) {
        ctl.send_raw(raw);
        auto line = ctl.read_line();
        auto j = json::parse(line, nullptr, false);
        INFO("sent " << raw << " got " << line);
        REQUIRE(j.is_object());
        return j;
    };
    CHECK(error_code(answer("{not json\n")) == "parse_error");
    CHECK(error_code(answer("[1,2]\n")) == "parse_error");
    CHECK(error_code(answer(std::string("\x00\x01\xff\xfe garbage\n", 13))) == "parse_error");
    CHECK(error_code(answer("{\"v\":1,\"id\":1}\n")) == "invalid_request");
    CHECK(error_code(answer("{\"v\":1,\"id\":1,\"cmd\":5}\n")) == "invalid_request");
    CHECK(error_code(answer("{\"v\":1,\"id\":[1],\"cmd\":\"ping\"}\n")) == "invalid_request");
    CHECK(error_code(answer("{\"v\":2,\"id\":1,\"cmd\":\"ping\"}\n")) == "unsupported_version");
    auto unknown = answer("{\"v\":1,\"id\":\"abc\",\"cmd\":\"launch\"}\n");
    CHECK(error_code(unknown) == "unknown_command");
    CHECK(unknown["id"] == "abc");
    CHECK(error_code(answer("{\"v\":1,\"id\":1,\"cmd\":\"ping\",\"args\":[]}\n")) ==
          "invalid_request");
    // The connection is still usable, and pipelined requests answer in order.
    ctl.send_raw("{\"v\":1,\"id\":7,\"cmd\":\"ping\"}\n{\"v\":1,\"id\":8,\"cmd\":\"version\"}\n");
    CHECK(json::parse(ctl.read_line())["id"] == 7);
    CHECK(json::parse(ctl.read_line())["id"] == 8);

    SECTION("an oversized line is answered with line_too_long, then closed") {
        ControlClient big(pins.socket());
        big.send_raw(std::string(70000, 'x'));
        auto j = json::parse(big.read_line(), nullptr, false);
        REQUIRE(j.is_object());
        CHECK(error_code(j) == "line_too_long");
        CHECK(big.closed_by_peer(std::chrono::seconds(5)));
    }
    SECTION("half a line and then silence is closed after the idle timeout") {
        ControlClient slow(pins.socket());
        slow.send_raw("{\"v\":1,\"id\":1,\"cm");
        CHECK(slow.closed_by_peer(std::chrono::seconds(5)));
    }
    SECTION("a client that disconnects mid-request does not matter") {
        for (int i = 0; i < 20; ++i) {
            ControlClient gone(pins.socket());
            gone.send_raw("{\"v\":1,\"id\":1,\"cmd\":\"sta");
        }
    }
    SECTION("connections beyond max_clients are refused with too_many_connections") {
        std::vector<std::unique_ptr<ControlClient>> many;
        for (int i = 0; i < 7; ++i) many.push_back(std::make_unique<ControlClient>(pins.socket()));
        for (auto& c : many) CHECK(result(c->request("ping")).empty());  // all accepted
        ControlClient extra(pins.socket());
        auto j = json::parse(extra.read_line(), nullptr, false);
        REQUIRE(j.is_object());
        CHECK(error_code(j) == "too_many_connections");
        CHECK(extra.closed_by_peer(std::chrono::seconds(5)));
        many.clear();
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        ControlClient again(pins.socket());
        CHECK(result(again.request("ping")).empty());
    }
    SECTION("thousands of connection attempts are capped and the daemon keeps serving") {
        std::vector<std::unique_ptr<ControlClient>> flood;
        for (int i = 0; i < 2000; ++i) flood.push_back(std::make_unique<ControlClient>(pins.socket()));
        flood.clear();
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        ControlClient after(pins.socket());
        CHECK(result(after.request("ping")).empty());
    }
    SECTION("a client that never reads its responses only stalls itself") {
        const auto rss_before = rss_kib(daemon.pid());
        ControlClient hog(pins.socket());
        std::string burst;
        for (int i = 0; i < 2000; ++i)
            burst += "{\"v\":1,\"id\":" + std::to_string(i) + ",\"cmd\":\"status\"}\n";
        std::thread writer([&] { hog.send_raw(burst); });
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        ControlClient other(pins.socket());
        CHECK(result(other.request("ping")).empty());
        // Buffering is bounded by the socket buffers, not by the backlog.
        CHECK(rss_kib(daemon.pid()) < rss_before + 16 * 1024);
        // The stalled connection is closed after the idle timeout (bounded
        // generously: under software emulation answering takes a while).
        CHECK(hog.closed_by_peer(std::chrono::seconds(60)));
        writer.join();
    }
    ControlClient last(pins.socket());
    CHECK(result(last.request("ping")).empty());
    CHECK(daemon.stop() == 0);
}

TEST_CASE("the control socket is 0660 in a safe directory, and a stale file is replaced") {
    TestCgroup cg("sock");
    TestPinDir pins("sock");
    {
        DaemonProcess daemon(daemon_args(cg, pins));
        REQUIRE(daemon.ready());
        struct stat st {};
        REQUIRE(::stat(pins.socket().c_str(), &st) == 0);
        CHECK(S_ISSOCK(st.st_mode));
        CHECK((st.st_mode & 0777) == 0660);
        CHECK(st.st_uid == 0);
        // SIGKILL leaves the socket file behind...
        CHECK(daemon.stop(SIGKILL) == -SIGKILL);
    }
    REQUIRE(::access(pins.socket().c_str(), F_OK) == 0);
    // ...and the next start replaces it (and adopts the pinned state).
    DaemonProcess next(daemon_args(cg, pins));
    REQUIRE(next.ready());
    ControlClient ctl(pins.socket());
    CHECK(result(ctl.request("ping")).empty());
    CHECK(result(ctl.request("status"))["attach"]["adopted"] == true);

    SECTION("a live socket of another daemon is not stolen") {
        TestPinDir other("sock2");
        std::vector<std::string> argv = {daemon_binary(), "--cgroup", cg.path(), "--pin-dir",
                                         other.path(), "--socket", pins.socket()};
        auto r = run(argv, std::chrono::seconds(30));
        CHECK(r.exit_code == 1);
        CHECK(r.err.find("another process is serving the control socket") != std::string::npos);
    }
    CHECK(next.stop() == 0);
}

TEST_CASE("reload re-reads the config and bad config changes nothing") {
    TestCgroup cg("reload");
    TestPinDir pins("reload");
    DaemonProcess daemon(daemon_args(cg, pins));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());

    pins.write_config(R"({"log_level":"debug","map_size":1024,"drain":{"stop_timeout_sec":1}})");
    auto r = result(ctl.request("reload"));
    CHECK(r["applied"] == json::array({"log_level"}));
    CHECK(r["restart_required"] == json::array({"map_size"}));
    auto cfg = result(ctl.request("status"))["config"];
    CHECK(cfg["log_level"] == "debug");
    CHECK(cfg["map_size"] == 65536);  // in effect until a restart

    pins.write_config(R"({"log_level": "loud"})");
    auto bad = ctl.request("reload");
    CHECK(error_code(bad) == "invalid_argument");
    CHECK(bad["error"]["message"].get<std::string>().find("log_level") != std::string::npos);
    CHECK(result(ctl.request("status"))["config"]["log_level"] == "debug");

    // SIGHUP is the same reload.
    pins.write_config(R"({"log_level":"warn","drain":{"stop_timeout_sec":1}})");
    ::kill(daemon.pid(), SIGHUP);
    json level;
    for (int i = 0; i < 100; ++i) {
        level = result(ctl.request("status"))["config"]["log_level"];
        if (level == "warn") break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    CHECK(level == "warn");
    CHECK(daemon.stop() == 0);
}

TEST_CASE("a flush that waits longer than the idle timeout still gets its answer", "[drain]") {
    TestCgroup cg("longflush");
    TestPinDir pins("longflush");
    DaemonProcess daemon(daemon_args(
        cg, pins, {}, R"({"drain":{"stop_timeout_sec":1},"control":{"idle_timeout_sec":1}})"));
    REQUIRE(daemon.ready());
    ControlClient ctl(pins.socket());
    HeldPair p(cg.path(), "127.0.0.1");
    REQUIRE(p.send(1000) == "ok sent 1000");  // stays pending for the whole wait
    auto r = result(ctl.request("flush-map", {{"wait_ms", 2500}}));
    CHECK(r["pending"] == 1);
    CHECK(r["elapsed_ms"].get<int>() >= 2400);
    CHECK(p.read_all() == "ok read 1000");
    CHECK(p.close() == "ok closed");
    CHECK(daemon.stop() == 0);
}
