// SPDX-License-Identifier: Apache-2.0
//
// sockaccel-streamcheck: drives many concurrent TCP connections and verifies that every byte
// arrives exactly once, in order, in both directions, ending with a half-close. Used by the
// privileged tests to check that sk_msg redirection between local sockets is lossless.
//
//   serve   --addr A [--port P] [--cgroup DIR]         server side only (prints its port)
//   connect --addr A --port P [--cgroup DIR]           client side only
//   pair    --addr A [--server-cgroup D] [--client-cgroup D]
//                                                      fork: child serves, parent connects
//
// --read-pause-ms/--read-pause-after/--read-pause-file make receivers stop reading for a while
// (back-pressure on the sender, unread data held in the receiver while a test acts).
//
// Output is one JSON object on stdout (serve prints a {"event":"listening"} line first).
// Exit status: 0 clean, 1 any integrity failure / hang / error, 2 usage or setup error.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <random>

#include "streamcheck_engine.hpp"

namespace sockaccel::streamcheck {
namespace {

constexpr int kExitUsage = 2;

using ojson = nlohmann::ordered_json;

struct SetupError {
    std::string message;
};

// cgroup v2 membership is per process and the sockops program attaches per cgroup, so the
// move has to happen before the first socket exists.
void move_to_cgroup(const std::string& dir) {
    if (dir.empty()) return;
    const std::string path = dir + "/cgroup.procs";
    const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) throw SetupError{"cannot open " + path + ": " + std::strerror(errno)};
    const std::string pid = std::to_string(getpid()) + "\n";
    const ssize_t w = write(fd, pid.data(), pid.size());
    const int err = errno;
    close(fd);
    if (w != static_cast<ssize_t>(pid.size())) {
        throw SetupError{"cannot move pid " + std::to_string(getpid()) + " into cgroup " + dir +
                         " (write " + path + "): " + std::strerror(err)};
    }
}

// Sockets belong to the network namespace their creating thread is in, so entering one
// before the first socket puts this side of the test on another "host" (tests use namespaces
// they created, linked by veth).
void join_netns(const std::string& path) {
    if (path.empty()) return;
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw SetupError{"cannot open " + path + ": " + std::strerror(errno)};
    const int rc = setns(fd, CLONE_NEWNET);
    const int err = errno;
    close(fd);
    if (rc != 0) throw SetupError{"cannot enter network namespace " + path + ": " + std::strerror(err)};
}

// The process's cgroup v2 path ("0::/path" in /proc/self/cgroup), reported so that tests can
// confirm where each side ran.
std::string current_cgroup() {
    FILE* f = std::fopen("/proc/self/cgroup", "re");
    if (f == nullptr) return "";
    char line[4096];
    std::string result;
    while (std::fgets(line, sizeof line, f) != nullptr) {
        if (std::strncmp(line, "0::", 3) == 0) {
            result = line + 3;
            while (!result.empty() && result.back() == '\n') result.pop_back();
            break;
        }
    }
    std::fclose(f);
    return result;
}

SockAddr resolve_or_throw(const std::string& addr, uint16_t port) {
    SockAddr sa;
    if (auto err = resolve_numeric(addr, port, sa)) throw SetupError{*err};
    return sa;
}

void write_all(int fd, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
        const ssize_t w = write(fd, s.data() + off, s.size() - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        off += static_cast<size_t>(w);
    }
}

void print_line(const ojson& j) {
    std::cout << j.dump() << std::endl;  // endl flushes: callers read line by line
}

void add_header_fields(ojson& j, const char* mode, const Config& cfg) {
    j["mode"] = mode;
    j["io"] = io_mode_name(cfg.io);
    j["addr"] = cfg.addr;
    j["port"] = cfg.port;
    if (cfg.seed_given || std::string(mode) != "serve") {
        j["seed"] = cfg.seed;
    }
}

// Leaves via _exit when blocking-mode threads had to be abandoned: they still use state that
// normal exit would tear down.
int finish_process(int code, const Report& r) {
    if (r.abandoned_threads > 0) {
        std::cout.flush();
        std::fflush(nullptr);
        _exit(code);
    }
    return code;
}

int cmd_serve(Config& cfg) {
    SockAddr local;
    int lfd = -1;
    try {
        move_to_cgroup(cfg.cgroup);
        join_netns(cfg.netns);
        local = resolve_or_throw(cfg.addr, cfg.port);
        std::string err;
        lfd = make_listener(local, err);
        if (lfd < 0) throw SetupError{err};
    } catch (const SetupError& e) {
        std::cerr << "sockaccel-streamcheck serve: " << e.message << "\n";
        return kExitUsage;
    }
    cfg.port = local_port(lfd);
    print_line(ojson{{"event", "listening"}, {"port", cfg.port}});
    const Report r = run_server(cfg, lfd);
    ojson j;
    add_header_fields(j, "serve", cfg);
    j["role"] = "server";
    j["cgroup"] = current_cgroup();
    r.append_json(j);
    print_line(j);
    return finish_process(r.exit_code(), r);
}

int cmd_connect(Config& cfg) {
    SockAddr dst;
    try {
        move_to_cgroup(cfg.cgroup);
        join_netns(cfg.netns);
        dst = resolve_or_throw(cfg.addr, cfg.port);
    } catch (const SetupError& e) {
        std::cerr << "sockaccel-streamcheck connect: " << e.message << "\n";
        return kExitUsage;
    }
    const Report r = run_client(cfg, dst);
    ojson j;
    add_header_fields(j, "connect", cfg);
    j["role"] = "client";
    j["cgroup"] = current_cgroup();
    r.append_json(j);
    print_line(j);
    return finish_process(r.exit_code(), r);
}

// Where the pair's server listens: v4-mapped client addresses need a dual-stack "::" listener
// (that is the case being tested); otherwise the client address itself.
std::string default_listen_addr(const std::string& addr) {
    SockAddr sa;
    if (!resolve_numeric(addr, 0, sa) && sa.family() == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&sa.ss);
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) return "::";
    }
    return addr;
}

[[noreturn]] void pair_child(Config cfg, int out_fd, pid_t parent) {
    // Never outlive the parent, whatever happens to it.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(kExitUsage);
    int lfd = -1;
    try {
        move_to_cgroup(cfg.server_cgroup);
        join_netns(cfg.server_netns);
        const SockAddr local = resolve_or_throw(cfg.listen_addr, cfg.port);
        std::string err;
        lfd = make_listener(local, err);
        if (lfd < 0) throw SetupError{err};
    } catch (const SetupError& e) {
        write_all(out_fd, ojson{{"event", "error"}, {"message", e.message}}.dump() + "\n");
        _exit(kExitUsage);
    }
    write_all(out_fd, ojson{{"event", "listening"}, {"port", local_port(lfd)}}.dump() + "\n");
    const Report r = run_server(cfg, lfd);
    ojson j;
    j["event"] = "report";
    j["cgroup"] = current_cgroup();
    r.append_json(j, /*with_times=*/true);
    write_all(out_fd, j.dump() + "\n");
    _exit(r.exit_code());
}

// Reads one '\n'-terminated line from fd, giving up at the deadline or EOF.
std::optional<std::string> read_line(int fd, std::string& buffer, double deadline) {
    for (;;) {
        if (auto nl = buffer.find('\n'); nl != std::string::npos) {
            std::string line = buffer.substr(0, nl);
            buffer.erase(0, nl + 1);
            return line;
        }
        const double left = deadline - monotonic_seconds();
        if (left <= 0) return std::nullopt;
        pollfd pfd{fd, POLLIN, 0};
        const int n = poll(&pfd, 1, static_cast<int>(std::min(left, 1.0) * 1000) + 1);
        if (n < 0 && errno != EINTR) return std::nullopt;
        if (n <= 0) continue;
        char chunk[4096];
        const ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return std::nullopt;
        buffer.append(chunk, static_cast<size_t>(r));
    }
}

std::optional<ojson> parse_event(const std::optional<std::string>& line) {
    if (!line) return std::nullopt;
    auto j = ojson::parse(*line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return std::nullopt;
    return j;
}

int cmd_pair(Config& cfg) {
    if (cfg.listen_addr.empty()) cfg.listen_addr = default_listen_addr(cfg.addr);
    SockAddr dst;
    try {
        dst = resolve_or_throw(cfg.addr, 0);
        resolve_or_throw(cfg.listen_addr, 0);
    } catch (const SetupError& e) {
        std::cerr << "sockaccel-streamcheck pair: " << e.message << "\n";
        return kExitUsage;
    }
    // The server validates that every request carries the run's seed (cross-talk check).
    cfg.seed_given = true;

    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        std::cerr << "sockaccel-streamcheck pair: pipe: " << std::strerror(errno) << "\n";
        return kExitUsage;
    }
    std::cout.flush();
    std::fflush(nullptr);
    const pid_t parent = getpid();
    const pid_t child = fork();
    if (child < 0) {
        std::cerr << "sockaccel-streamcheck pair: fork: " << std::strerror(errno) << "\n";
        return kExitUsage;
    }
    if (child == 0) {
        close(fds[0]);
        pair_child(cfg, fds[1], parent);
    }
    close(fds[1]);
    const int in_fd = fds[0];
    std::string buffer;

    auto reap_child = [&](bool kill_first) {
        if (kill_first) kill(child, SIGKILL);
        int status = 0;
        while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
        }
        return status;
    };

    const auto listening = parse_event(read_line(in_fd, buffer, monotonic_seconds() + 30));
    if (!listening || listening->value("event", "") != "listening") {
        const std::string why = listening && listening->contains("message")
                                    ? (*listening)["message"].get<std::string>()
                                    : "server process did not start listening";
        std::cerr << "sockaccel-streamcheck pair: server: " << why << "\n";
        reap_child(!listening);
        return kExitUsage;
    }
    cfg.port = (*listening)["port"].get<uint16_t>();
    dst.set_port(cfg.port);

    try {
        move_to_cgroup(cfg.client_cgroup);
        join_netns(cfg.client_netns);
    } catch (const SetupError& e) {
        std::cerr << "sockaccel-streamcheck pair: " << e.message << "\n";
        reap_child(true);
        return kExitUsage;
    }

    const Report client = run_client(cfg, dst);

    // The client is done, so no further connections will come: let the server finish the
    // ones it has (each bounded by its own deadline) and report.
    kill(child, SIGTERM);
    const double wait_until = monotonic_seconds() + cfg.timeout_sec + 15.0;
    const auto server_json = parse_event(read_line(in_fd, buffer, wait_until));
    const bool got_report = server_json && server_json->value("event", "") == "report";
    const int status = reap_child(!got_report);
    close(in_fd);

    Report server;
    if (got_report) {
        server = Report::from_json(*server_json);
    } else {
        ++server.errors;
        std::string why = "server process produced no report";
        if (WIFSIGNALED(status))
            why += " (killed by signal " + std::to_string(WTERMSIG(status)) + ")";
        if (WIFEXITED(status)) why += " (exit status " + std::to_string(WEXITSTATUS(status)) + ")";
        server.add_failure({monotonic_seconds(), why});
    }

    Report total = client;
    total.merge(server);
    ojson j;
    add_header_fields(j, "pair", cfg);
    j["listen_addr"] = cfg.listen_addr;
    total.append_json(j);
    // Combined counts: connections as seen by the client; a connection is complete only
    // once both ends finished it.
    j["connections"] = client.connections;
    j["completed"] = std::min(client.completed, server.completed);
    ojson cj;
    cj["cgroup"] = current_cgroup();
    client.append_json(cj);
    ojson sj;
    sj["cgroup"] = got_report ? server_json->value("cgroup", "") : "";
    server.append_json(sj);
    j["client"] = std::move(cj);
    j["server"] = std::move(sj);
    print_line(j);
    return finish_process(total.exit_code(), client);
}

// CLI --------------------------------------------------------------------------------------

struct CliState {
    std::string io = "epoll";
    std::string fault = "none";
    std::string fault_dir = "c2s";
    std::string read_pause_dir = "both";
    int64_t fault_conn = 0;
    uint64_t fixed_bytes = 0;
    uint64_t serve_connections = 0;    // serve: until SIGTERM
    uint64_t client_connections = 10;  // connect / pair
    std::vector<CLI::Option*> seed_opts;
    std::vector<CLI::Option*> bytes_opts;
};

void add_common_options(CLI::App* app, Config& cfg, CliState& st, bool client_side) {
    app->add_option("--addr", cfg.addr,
                    "Numeric IPv4/IPv6 address (127.0.0.1, ::1, ::ffff:127.0.0.1, ::, ...)")
        ->capture_default_str();
    app->add_option("-n,--connections", client_side ? st.client_connections : st.serve_connections,
                    client_side ? "Total number of connections"
                                : "Connections to accept before exiting (0 = until SIGTERM)")
        ->capture_default_str();
    app->add_option("--io", st.io,
                    "I/O mode: epoll (nonblocking, one loop) or blocking (threads; counts "
                    "EAGAIN from blocking reads)")
        ->check(CLI::IsMember({"epoll", "blocking"}))
        ->capture_default_str();
    app->add_option("--timeout", cfg.timeout_sec,
                    "Per-connection deadline in seconds; unfinished connections count as hangs")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    st.seed_opts.push_back(app->add_option(
        "--seed", cfg.seed,
        client_side ? "Content/size seed (default: random, printed in the report)"
                    : "Require this seed in every request header (default: accept any)"));
    app->add_option("--min-msg", cfg.sender.min_msg, "Smallest write size in bytes")
        ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 30))
        ->capture_default_str();
    app->add_option("--max-msg", cfg.sender.max_msg,
                    "Largest write size in bytes (log-uniform between min and max)")
        ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 30))
        ->capture_default_str();
    app->add_option("--max-pause-ms", cfg.sender.max_pause_ms,
                    "Pause uniformly 0..N ms after each write (0 = never)")
        ->capture_default_str();

    const char* pause_group = "Receiver pauses (back-pressure)";
    app->add_option("--read-pause-ms", cfg.read_pause.ms,
                    "Receivers stop reading for N ms once --read-pause-after payload bytes have "
                    "arrived (once per stream; 0 = no timed pause)")
        ->group(pause_group)
        ->capture_default_str();
    app->add_option("--read-pause-after", cfg.read_pause.after_bytes,
                    "Payload bytes a receiver reads before its pause")
        ->group(pause_group)
        ->capture_default_str();
    app->add_option("--read-pause-file", cfg.read_pause.hold_file,
                    "A pause appends \"<pid> <conn>\" to FILE and lasts (at least "
                    "--read-pause-ms) until FILE is removed. Meanwhile FILE is copied to "
                    "FILE.queued once the paused socket has unread data, and to FILE.blocked "
                    "when a send returns EAGAIN")
        ->group(pause_group);
    app->add_flag("--late-half-close", cfg.late_half_close,
                  "Clients half-close only after the server's stream and EOF arrived (by "
                  "default each side half-closes as soon as it has sent everything)");
    app->add_option("--read-pause-dir", st.read_pause_dir,
                    "Which receivers pause: c2s (server), s2c (client) or both")
        ->group(pause_group)
        ->check(CLI::IsMember({"c2s", "s2c", "both"}))
        ->capture_default_str();

    const char* test_only = "Test-only fault injection (sender side, proves the detector)";
    app->add_option("--inject-fault", st.fault,
                    "none|drop|dup|swap|corrupt|insert|foreign: drop / duplicate / swap with "
                    "the next chunk / bit-flip one chunk of the stream, insert a chunk of "
                    "garbage, or replace a chunk with the next connection's data (cross-talk)")
        ->check(CLI::IsMember({"none", "drop", "dup", "swap", "corrupt", "insert", "foreign"}))
        ->group(test_only);
    app->add_option("--inject-conn", st.fault_conn, "Connection id to damage (-1 = all)")
        ->group(test_only)
        ->capture_default_str();
    app->add_option("--inject-dir", st.fault_dir, "Stream to damage: c2s or s2c")
        ->check(CLI::IsMember({"c2s", "s2c"}))
        ->group(test_only)
        ->capture_default_str();
    app->add_option("--inject-offset", cfg.fault.offset,
                    "Payload offset of the damaged chunk (default: payload length / 4)")
        ->group(test_only);
    app->add_option("--inject-len", cfg.fault.len, "Length of the damaged chunk in bytes")
        ->group(test_only)
        ->capture_default_str();

    if (client_side) {
        app->add_option("--min-bytes", cfg.sizes.min_bytes,
                        "Smallest payload per direction (log-uniform between min and max)")
            ->capture_default_str();
        app->add_option("--max-bytes", cfg.sizes.max_bytes, "Largest payload per direction")
            ->capture_default_str();
        st.bytes_opts.push_back(app->add_option("--bytes", st.fixed_bytes,
                                                "Fixed payload per direction (overrides min/max)"));
        app->add_option("-p,--parallel", cfg.parallel,
                        "Max connections open at once (default: all)");
    }
}

int parse_and_run(int argc, char** argv) {
    Config cfg;
    CliState st;
    CLI::App app{
        "sockaccel-streamcheck: verify that every byte of many concurrent TCP connections "
        "arrives exactly once and in order, in both directions, with half-close.\n"
        "Prints one JSON report; exit 0 = clean, 1 = loss/duplication/reordering/corruption/"
        "hang/error, 2 = usage or setup error."};
    app.require_subcommand(1);

    CLI::App* serve = app.add_subcommand(
        "serve",
        "Listen and verify incoming connections; prints {\"event\":\"listening\",\"port\":N} "
        "first. Stream sizes come from the client. First SIGTERM: stop accepting and finish; "
        "second: abort open connections (counted as hangs).");
    CLI::App* connect = app.add_subcommand("connect", "Run the client side against a server");
    CLI::App* pair = app.add_subcommand(
        "pair",
        "Fork a server (child) and a client (parent), optionally in different cgroups, and "
        "print one combined report");

    add_common_options(serve, cfg, st, false);
    serve->add_option("--port", cfg.port, "Port to listen on (0 = ephemeral)")
        ->capture_default_str();
    serve->add_option("--cgroup", cfg.cgroup,
                      "Move this process into cgroup v2 DIR before creating sockets");
    serve->add_option("--netns", cfg.netns, "Enter this network namespace (PATH) first");

    add_common_options(connect, cfg, st, true);
    connect->add_option("--port", cfg.port, "Server port")->required();
    connect->add_option("--cgroup", cfg.cgroup,
                        "Move this process into cgroup v2 DIR before creating sockets");
    connect->add_option("--netns", cfg.netns, "Enter this network namespace (PATH) first");

    add_common_options(pair, cfg, st, true);
    pair->add_option("--server-cgroup", cfg.server_cgroup, "cgroup v2 DIR for the server process");
    pair->add_option("--client-cgroup", cfg.client_cgroup, "cgroup v2 DIR for the client process");
    pair->add_option("--server-netns", cfg.server_netns, "Network namespace PATH for the server");
    pair->add_option("--client-netns", cfg.client_netns, "Network namespace PATH for the client");
    pair->add_option("--port", cfg.port, "Server port (0 = ephemeral)")->capture_default_str();
    pair->add_option("--listen-addr", cfg.listen_addr,
                     "Server bind address (default: --addr, or :: for a v4-mapped --addr)");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : kExitUsage;
    }

    const bool is_serve = serve->parsed();
    cfg.connections = is_serve ? st.serve_connections : st.client_connections;
    cfg.io = st.io == "blocking" ? IoMode::kBlocking : IoMode::kEpoll;
    for (auto* o : st.seed_opts) cfg.seed_given = cfg.seed_given || o->count() > 0;
    for (auto* o : st.bytes_opts) {
        if (o->count() > 0) cfg.sizes.fixed_bytes = st.fixed_bytes;
    }
    static const std::map<std::string, FaultKind> kFaults = {
        {"none", FaultKind::kNone},       {"drop", FaultKind::kDrop},
        {"dup", FaultKind::kDup},         {"swap", FaultKind::kSwap},
        {"corrupt", FaultKind::kCorrupt}, {"insert", FaultKind::kInsert},
        {"foreign", FaultKind::kForeign}};
    cfg.fault.kind = kFaults.at(st.fault);
    cfg.read_pause.c2s = st.read_pause_dir != "s2c";
    cfg.read_pause.s2c = st.read_pause_dir != "c2s";
    cfg.fault.conn = st.fault_conn;
    cfg.fault.direction =
        st.fault_dir == "s2c" ? Direction::kServerToClient : Direction::kClientToServer;

    auto usage = [](const std::string& msg) {
        std::cerr << "sockaccel-streamcheck: " << msg << "\n";
        return kExitUsage;
    };
    if (cfg.sender.min_msg > cfg.sender.max_msg) return usage("--min-msg exceeds --max-msg");
    if (cfg.sizes.min_bytes > cfg.sizes.max_bytes) return usage("--min-bytes exceeds --max-bytes");
    if (cfg.connections > (uint64_t{1} << 32)) return usage("--connections too large");
    if (!is_serve && cfg.connections == 0) return usage("--connections must be at least 1");
    if (!cfg.seed_given && !is_serve) {
        std::random_device rd;
        cfg.seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    }

    // Every connection is an fd (both ends, in pair mode, in different processes); the usual
    // soft limit of 1024 would turn large runs into EMFILE errors.
    rlimit nofile{};
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    install_signal_handlers();
    if (is_serve) return cmd_serve(cfg);
    if (connect->parsed()) return cmd_connect(cfg);
    return cmd_pair(cfg);
}

}  // namespace
}  // namespace sockaccel::streamcheck

int main(int argc, char** argv) { return sockaccel::streamcheck::parse_and_run(argc, argv); }
