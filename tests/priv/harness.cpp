// SPDX-License-Identifier: Apache-2.0
#include "harness.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "system.h"

namespace sockaccel::test {
namespace {

std::atomic<int> g_seq{0};

std::string unique_tag(const std::string& tag) {
    return tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(g_seq++);
}

void write_file(const std::string& path, const std::string& text) {
    std::ofstream f(path);
    f << text;
}

std::string read_file(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

using Clock = std::chrono::steady_clock;

// Waits for pid with a deadline; kills it with SIGKILL when the deadline
// passes. Returns the exit code, or -signal.
int wait_with_deadline(pid_t pid, Clock::time_point deadline) {
    int status = 0;
    for (;;) {
        pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) return -1;
        if (Clock::now() > deadline) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return -WTERMSIG(status);
    return -1;
}

}  // namespace

std::string daemon_binary() { return SOCKACCEL_TEST_DAEMON; }
std::string streamcheck_binary() { return SOCKACCEL_TEST_STREAMCHECK; }
std::string compat_binary() { return SOCKACCEL_TEST_COMPAT; }
std::string ctl_binary() { return SOCKACCEL_TEST_CTL; }

const std::string& cgroup_root() {
    static const std::string root = [] {
        auto r = find_cgroup2_mount();
        if (!r) throw std::runtime_error("no cgroup v2 mount: " + r.error().message());
        return *r;
    }();
    return root;
}

ProcessResult run_until_signal(const std::vector<std::string>& argv,
                               std::chrono::milliseconds after, int sig) {
    // coreutils timeout(1) delivers the signal; --preserve-status reports
    // the program's own exit status, which is what the tests check.
    std::vector<std::string> wrapped = {"/usr/bin/timeout", "--preserve-status",
                                        "--signal=" + std::to_string(sig),
                                        std::to_string(after.count() / 1000.0)};
    wrapped.insert(wrapped.end(), argv.begin(), argv.end());
    return run(wrapped, std::chrono::seconds(60));
}

ProcessResult run(const std::vector<std::string>& argv, std::chrono::seconds timeout,
                  uid_t as_uid) {
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)
        throw std::runtime_error("pipe");
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(out[1], 1);
        ::dup2(err[1], 2);
        if (as_uid != static_cast<uid_t>(-1)) {
            if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(as_uid) != 0)
                ::_exit(126);
        }
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        ::execv(args[0], args.data());
        ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    ProcessResult result;
    // Drain both pipes until EOF on both (the child exits or is killed).
    const auto deadline = Clock::now() + timeout;
    pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
    int open = 2;
    while (open > 0) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
            ::kill(pid, SIGKILL);
            left = std::chrono::milliseconds(1000);
        }
        int n = ::poll(fds, 2, static_cast<int>(left.count()));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) continue;
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char buf[65536];
            ssize_t r = ::read(fds[i].fd, buf, sizeof(buf));
            if (r > 0) {
                (i == 0 ? result.out : result.err).append(buf, static_cast<std::size_t>(r));
            } else {
                ::close(fds[i].fd);
                fds[i].fd = -1;
                --open;
            }
        }
    }
    result.exit_code = wait_with_deadline(pid, Clock::now() + std::chrono::seconds(5));
    return result;
}

TestCgroup::TestCgroup(const std::string& tag)
    : path_(cgroup_root() + "/" + unique_tag("sockaccel-test-" + tag)) {
    if (::mkdir(path_.c_str(), 0755) != 0)
        throw std::runtime_error("mkdir " + path_ + ": " + std::strerror(errno));
}

TestCgroup::~TestCgroup() {
    // Processes a failed test left behind are killed, then moved out so the
    // directory can go.
    std::istringstream procs(read_file(path_ + "/cgroup.procs"));
    for (std::string line; std::getline(procs, line);) {
        if (line.empty()) continue;
        pid_t p = std::stoi(line);
        if (p != ::getpid()) ::kill(p, SIGKILL);
        write_file(cgroup_root() + "/cgroup.procs", line);
    }
    for (int i = 0; i < 200 && ::rmdir(path_.c_str()) != 0 && errno == EBUSY; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

std::uint32_t TestCgroup::attached_programs(int attach_type) const {
    UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_DIRECTORY));
    if (!fd) return 0;
    __u32 ids[64];
    __u32 count = 64;
    __u32 flags = 0;
    if (bpf_prog_query(fd.get(), static_cast<bpf_attach_type>(attach_type), 0, &flags, ids,
                       &count) != 0)
        return 0;
    return count;
}

TestPinDir::TestPinDir(const std::string& tag) {
    const auto name = unique_tag("sockaccel_test_" + tag);
    path_ = "/sys/fs/bpf/" + name;
    run_dir_ = "/tmp/" + name;
    if (::mkdir(run_dir_.c_str(), 0755) != 0)
        throw std::runtime_error("mkdir " + run_dir_ + ": " + std::strerror(errno));
}

TestPinDir::~TestPinDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
    std::filesystem::remove_all(run_dir_, ec);
}

std::string TestPinDir::write_config(const std::string& json) const {
    const std::string path = run_dir_ + "/sockacceld.json";
    write_file(path, json);
    return path;
}

bool TestPinDir::exists() const { return path_exists(path_); }
bool TestPinDir::has(const std::string& name) const { return path_exists(path_ + "/" + name); }

DaemonProcess::DaemonProcess(std::vector<std::string> args) {
    int err[2];
    if (::pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    pid_ = ::fork();
    if (pid_ == 0) {
        // A test run that dies (killed, or its output pipe closed) takes its
        // daemon with it, in order: SIGTERM runs the normal stop.
        ::prctl(PR_SET_PDEATHSIG, SIGTERM);
        ::dup2(err[1], 2);
        ::dup2(err[1], 1);
        args.insert(args.begin(), daemon_binary());
        std::vector<char*> argv;
        for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    ::close(err[1]);
    err_fd_ = err[0];
    read_log_until("attached to cgroup", std::chrono::seconds(30));
    ready_ = log_.find("attached to cgroup") != std::string::npos;
}

void DaemonProcess::read_log_until(const std::string& needle, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (err_fd_ >= 0 && log_.find(needle) == std::string::npos) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) return;
        pollfd p{err_fd_, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
        char buf[4096];
        ssize_t r = ::read(err_fd_, buf, sizeof(buf));
        if (r <= 0) {
            ::close(err_fd_);
            err_fd_ = -1;
            return;
        }
        log_.append(buf, static_cast<std::size_t>(r));
    }
}

int DaemonProcess::stop(int sig, std::chrono::seconds timeout) {
    if (exit_code_) return *exit_code_;
    ::kill(pid_, sig);
    exit_code_ = wait_with_deadline(pid_, Clock::now() + timeout);
    // The daemon is gone: its end of the pipe is closed, so this reaches EOF.
    read_log_until("\x01never", std::chrono::seconds(5));
    return *exit_code_;
}

DaemonProcess::~DaemonProcess() {
    if (!exit_code_ && pid_ > 0) stop(SIGTERM, std::chrono::seconds(15));
    if (err_fd_ >= 0) ::close(err_fd_);
}

std::vector<std::string> daemon_args(const TestCgroup& cg, const TestPinDir& pins,
                                     std::vector<std::string> extra,
                                     const std::string& config_json) {
    const auto config = pins.write_config(
        config_json.empty() ? R"({"drain": {"stop_timeout_sec": 1}})" : config_json);
    std::vector<std::string> args = {"--config", config,         "--cgroup", cg.path(),
                                     "--pin-dir", pins.path(), "--socket", pins.socket()};
    const bool chosen = std::find(extra.begin(), extra.end(), "--drain-backend") != extra.end();
    if (auto backend = forced_drain_backend(); backend && !chosen)
        args.insert(args.end(), {"--drain-backend", std::string(to_string(*backend))});
    // The test cgroup is the scope: every test daemon accelerates all of
    // it (host scope below the attach point), as tests of the scope itself
    // override with their own --scope.
    if (std::find(extra.begin(), extra.end(), "--scope") == extra.end())
        args.insert(args.end(), {"--scope", "host"});
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
}

ControlClient::ControlClient(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        ::close(fd_);
        fd_ = -1;
    }
}

ControlClient::~ControlClient() { close(); }

void ControlClient::close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

void ControlClient::send_raw(const std::string& bytes) {
    std::size_t off = 0;
    while (fd_ >= 0 && off < bytes.size()) {
        ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
        if (n <= 0) return;
        off += static_cast<std::size_t>(n);
    }
}

std::string ControlClient::read_line(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
        auto pos = buffer_.find('\n');
        if (pos != std::string::npos) {
            std::string line = buffer_.substr(0, pos);
            buffer_.erase(0, pos + 1);
            return line;
        }
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (fd_ < 0 || left.count() <= 0) return "";
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
        char buf[65536];
        ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
        if (n <= 0) return "";
        buffer_.append(buf, static_cast<std::size_t>(n));
    }
}

bool ControlClient::closed_by_peer(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (fd_ >= 0 && Clock::now() < deadline) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        char buf[4096];
        ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
        if (n <= 0) return true;
        buffer_.append(buf, static_cast<std::size_t>(n));
    }
    return false;
}

nlohmann::json ControlClient::request(const std::string& cmd, const nlohmann::json& args) {
    nlohmann::json req = {{"v", 1}, {"id", next_id_++}, {"cmd", cmd}, {"args", args}};
    send_raw(req.dump() + "\n");
    auto line = read_line();
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) throw std::runtime_error("no valid response to " + cmd + ": '" + line + "'");
    return j;
}

CounterValues read_pinned_counters(const std::string& pin_dir) {
    CounterValues out{};
    UniqueFd fd(bpf_obj_get((pin_dir + "/counters").c_str()));
    if (!fd) throw std::runtime_error("open pinned counters in " + pin_dir);
    const int ncpus = libbpf_num_possible_cpus();
    std::vector<std::uint8_t> buf(static_cast<std::size_t>(ncpus) * 8);
    for (__u32 i = 0; i < SOCKACCEL_CNT__MAX; ++i) {
        if (bpf_map_lookup_elem(fd.get(), &i, buf.data()) != 0)
            throw std::runtime_error("read counters");
        out[i] = sum_per_cpu(buf, static_cast<std::size_t>(ncpus));
    }
    return out;
}

std::uint64_t pinned_entries(const std::string& pin_dir) {
    UniqueFd fd(bpf_obj_get((pin_dir + "/sock_hash").c_str()));
    if (!fd) throw std::runtime_error("open pinned sockhash in " + pin_dir);
    sockaccel_key key{}, next{};
    std::uint64_t n = 0;
    const void* prev = nullptr;
    while (bpf_map_get_next_key(fd.get(), prev, &next) == 0) {
        ++n;
        key = next;
        prev = &key;
    }
    return n;
}

ChildCgroup::ChildCgroup(const std::string& parent, const std::string& name)
    : path_(parent + "/" + name) {
    std::filesystem::create_directory(path_);
}

ChildCgroup::~ChildCgroup() {
    for (int i = 0; i < 200 && ::rmdir(path_.c_str()) != 0 && errno == EBUSY; ++i) ::usleep(10000);
}

int connect_nonblocking(int listen_fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return -1;
    const int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS) {
        ::close(fd);
        return -1;
    }
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t err_len = sizeof err;
    if (::poll(&p, 1, 10000) != 1 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0 ||
        err != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

int accept_nonblocking(int listen_fd) {
    pollfd p{listen_fd, POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) return -1;
    return ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK);
}

bool read_exact_nonblocking(int fd, void* buf, std::size_t n) {
    auto* p = static_cast<char*>(buf);
    while (n > 0) {
        const ssize_t r = ::recv(fd, p, n, 0);
        if (r > 0) {
            p += r;
            n -= static_cast<std::size_t>(r);
        } else if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            pollfd pf{fd, POLLIN, 0};
            if (::poll(&pf, 1, 10000) != 1) return false;
        } else {
            return false;
        }
    }
    return true;
}

bool write_all_nonblocking(int fd, const void* buf, std::size_t n) {
    const auto* p = static_cast<const char*>(buf);
    while (n > 0) {
        const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= static_cast<std::size_t>(w);
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            pollfd pf{fd, POLLOUT, 0};
            if (::poll(&pf, 1, 10000) != 1) return false;
        } else {
            return false;
        }
    }
    return true;
}

nlohmann::json run_streamcheck(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {streamcheck_binary()};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run(argv, std::chrono::seconds(300));
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    if (j.is_discarded() || !j.is_object())
        throw std::runtime_error("streamcheck gave no JSON report (exit " +
                                 std::to_string(r.exit_code) + "): " + r.out + r.err);
    j["exit_code"] = r.exit_code;
    return j;
}

const nlohmann::json& result(const nlohmann::json& response) {
    INFO(response.dump());
    REQUIRE(response["ok"] == true);
    return response["result"];
}

nlohmann::json wait_entries(ControlClient& ctl, std::uint64_t entries, bool at_least) {
    nlohmann::json status;
    for (int i = 0; i < 400; ++i) {
        status = result(ctl.request("status"));
        const auto n = status["map"]["entries"].get<std::uint64_t>();
        if (at_least ? n >= entries : n <= entries) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return status;
}

FeaturesOff::FeaturesOff(const std::string& names) {
    ::setenv("SOCKACCEL_FEATURES_OFF", names.c_str(), 1);
}
FeaturesOff::~FeaturesOff() { ::unsetenv("SOCKACCEL_FEATURES_OFF"); }

std::optional<DrainBackend> forced_drain_backend() {
    static const std::optional<DrainBackend> forced = []() -> std::optional<DrainBackend> {
        const char* name = std::getenv("SOCKACCEL_TEST_DRAIN_BACKEND");
        if (!name || !*name) return std::nullopt;
        auto b = parse_drain_backend(name);
        if (!b) {
            std::fprintf(stderr, "SOCKACCEL_TEST_DRAIN_BACKEND=%s: not a drain backend\n", name);
            std::exit(2);
        }
        return b;
    }();
    return forced;
}

DrainBackend expected_drain_backend() {
    if (auto forced = forced_drain_backend()) return *forced;
    auto candidates = drain_candidates(kernel_features(), std::nullopt);
    if (!candidates) throw std::runtime_error(candidates.error());
    return candidates->front();
}

const KernelFeatures& kernel_features() {
    static const KernelFeatures features = [] {
        auto probed = probe_kernel_features();
        if (!probed) throw std::runtime_error("probe kernel features: " + probed.error().message());
        return *probed;
    }();
    return features;
}

void check_integrity(const nlohmann::json& report) {
    INFO(report.dump());
    CHECK(report["exit_code"] == 0);
    CHECK(report["lost"] == 0);
    CHECK(report["duplicated"] == 0);
    CHECK(report["reordered"] == 0);
    CHECK(report["corrupted"] == 0);
    CHECK(report["hangs"] == 0);
    CHECK(report["errors"] == 0);
    CHECK(report["completed"] == report["connections"]);
}

}  // namespace sockaccel::test
