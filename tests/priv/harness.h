// SPDX-License-Identifier: Apache-2.0
//
// Privileged test harness (tier 3). Each test gets its own child cgroup,
// its own pin directory and control-socket path, and runs the real
// sockacceld and sockaccel-streamcheck binaries against the real kernel.
// Everything is undone by destructors, so a failing assertion (an
// exception in Catch2) still cleans up: processes killed, cgroup removed,
// pins removed (which detaches the links they hold).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "counters.h"
#include "drain_backend.h"
#include "kernel_features.h"

namespace sockaccel::test {

// Paths of the binaries under test, from CMake.
std::string daemon_binary();
std::string streamcheck_binary();
std::string ctl_binary();
std::string compat_binary();

// The cgroup v2 mount point of this host.
const std::string& cgroup_root();

// What the running kernel offers, probed once with the daemon's own probe,
// for expectations that differ between kernels (Debian 12's 6.1 has no
// psock->msg_tot_len: no exact unread byte counts and no back-pressure).
const KernelFeatures& kernel_features();

// The drain backend this run forces on every daemon daemon_args() starts
// (SOCKACCEL_TEST_DRAIN_BACKEND, as CTest's priv[<backend>] variants set
// it), or nullopt for the daemon's own choice. Exits the process with 2 on
// a name that is no backend.
std::optional<DrainBackend> forced_drain_backend();
// The backend daemons of this run use: the forced one, or the first the
// kernel allows.
DrainBackend expected_drain_backend();

// Sets SOCKACCEL_FEATURES_OFF (kernel_features.h) for the daemons started
// while it lives: they act as if the kernel lacked those features.
class FeaturesOff {
public:
    explicit FeaturesOff(const std::string& names);
    ~FeaturesOff();
    FeaturesOff(const FeaturesOff&) = delete;
    FeaturesOff& operator=(const FeaturesOff&) = delete;
};

// Result of a finished child process.
struct ProcessResult {
    int exit_code = -1;  // -signal if killed by a signal
    std::string out;
    std::string err;
};

// Runs argv to completion (with a timeout; the child is killed after it),
// capturing stdout and stderr. `setup` runs in the child before exec.
ProcessResult run(const std::vector<std::string>& argv,
                  std::chrono::seconds timeout = std::chrono::seconds(120),
                  uid_t as_uid = static_cast<uid_t>(-1));

// Runs argv, sends `sig` after `after`, and collects its output.
ProcessResult run_until_signal(const std::vector<std::string>& argv,
                               std::chrono::milliseconds after, int sig);

// A child cgroup of the cgroup v2 root, removed (after moving any leftover
// processes to the root) on destruction.
class TestCgroup {
public:
    explicit TestCgroup(const std::string& tag);
    ~TestCgroup();
    TestCgroup(const TestCgroup&) = delete;
    TestCgroup& operator=(const TestCgroup&) = delete;
    const std::string& path() const { return path_; }
    // Number of BPF programs of `attach_type` attached to this cgroup.
    std::uint32_t attached_programs(int attach_type) const;

private:
    std::string path_;
};

// A child cgroup of a test cgroup (a "slice" or "container"), removed
// before its parent (declare it after the TestCgroup).
class ChildCgroup {
public:
    ChildCgroup(const std::string& parent, const std::string& name);
    ~ChildCgroup();
    ChildCgroup(const ChildCgroup&) = delete;
    ChildCgroup& operator=(const ChildCgroup&) = delete;
    const std::string& path() const { return path_; }
    // The path as policy rules name it: below the cgroup v2 root.
    std::string rule() const { return path_.substr(cgroup_root().size()); }

private:
    std::string path_;
};

// A unique pin directory path on bpffs, plus a private directory for the
// daemon's control socket and config file; all removed on destruction.
class TestPinDir {
public:
    explicit TestPinDir(const std::string& tag);
    ~TestPinDir();
    TestPinDir(const TestPinDir&) = delete;
    TestPinDir& operator=(const TestPinDir&) = delete;
    const std::string& path() const { return path_; }
    bool exists() const;
    bool has(const std::string& name) const;
    // The control socket path tests give the daemon (in a 0755 directory
    // of its own under /tmp).
    std::string socket() const { return run_dir_ + "/ctl.sock"; }
    // Writes the daemon's config file and returns its path.
    std::string write_config(const std::string& json) const;

private:
    std::string path_;
    std::string run_dir_;
};

// A running sockacceld. Starts it, waits until it has attached (or exited),
// and on destruction stops it (SIGTERM, then SIGKILL) if still running.
class DaemonProcess {
public:
    DaemonProcess(std::vector<std::string> args);
    ~DaemonProcess();
    DaemonProcess(const DaemonProcess&) = delete;
    DaemonProcess& operator=(const DaemonProcess&) = delete;

    // True once the daemon logged that it attached.
    bool ready() const { return ready_; }
    pid_t pid() const { return pid_; }
    // Sends `sig` and waits for exit; returns the exit code (or -signal).
    int stop(int sig = 15, std::chrono::seconds timeout = std::chrono::seconds(30));
    // stderr collected so far (everything after stop()).
    const std::string& log() const { return log_; }

private:
    void read_log_until(const std::string& needle, std::chrono::milliseconds timeout);
    pid_t pid_ = -1;
    int err_fd_ = -1;
    bool ready_ = false;
    std::optional<int> exit_code_;
    std::string log_;
};

// Standard daemon arguments for a test environment: its own cgroup, pin
// dir and control socket, a config with a 1 s stop-drain timeout
// (`config_json` replaces it), --drain-backend if the run forces one
// and `extra` does not choose, and --scope host unless `extra` chooses.
std::vector<std::string> daemon_args(const TestCgroup& cg, const TestPinDir& pins,
                                     std::vector<std::string> extra = {},
                                     const std::string& config_json = "");

// A raw protocol client on the daemon's control socket.
class ControlClient {
public:
    explicit ControlClient(const std::string& path);
    ~ControlClient();
    ControlClient(const ControlClient&) = delete;
    ControlClient& operator=(const ControlClient&) = delete;
    bool connected() const { return fd_ >= 0; }
    // Sends {"v":1,"id":N,"cmd":cmd,"args":args} and returns the response.
    nlohmann::json request(const std::string& cmd, const nlohmann::json& args = nlohmann::json::object());
    void send_raw(const std::string& bytes);
    // Next response line; "" on EOF or timeout.
    std::string read_line(std::chrono::milliseconds timeout = std::chrono::seconds(30));
    // True if the daemon closed the connection (EOF) within `timeout`.
    bool closed_by_peer(std::chrono::milliseconds timeout);
    void close();

private:
    int fd_ = -1;
    int next_id_ = 1;
    std::string buffer_;
};

// Reads the pinned per-CPU counters of a daemon's pin directory.
CounterValues read_pinned_counters(const std::string& pin_dir);
// Number of entries in the pinned sockhash.
std::uint64_t pinned_entries(const std::string& pin_dir);

// Runs `sockaccel-streamcheck pair` and returns its JSON report; adds a
// "exit_code" member.
nlohmann::json run_streamcheck(const std::vector<std::string>& args);

// The `result` of a successful control response (REQUIREs ok == true).
const nlohmann::json& result(const nlohmann::json& response);

// Polls `status` (bounded, about 10 s) until the map holds at most (or,
// with at_least, at least) `entries` sockets; returns the last status
// result. The drain has no event to wait on, hence the poll.
nlohmann::json wait_entries(ControlClient& ctl, std::uint64_t entries, bool at_least = false);

// Loopback connections as sockaccel accelerates them: both ends
// non-blocking from connect() and accept() on (a blocking socket stays on
// TCP, see SOCKACCEL_GATE_READER_OK). -1 on failure (10 s bounds).
int connect_nonblocking(int listen_fd);
int accept_nonblocking(int listen_fd);
// Reads or writes exactly n bytes of a non-blocking socket, polling.
bool read_exact_nonblocking(int fd, void* buf, std::size_t n);
bool write_all_nonblocking(int fd, const void* buf, std::size_t n);

// Catch2 checks that a streamcheck report shows every byte delivered once,
// in order, with no hang and no error.
void check_integrity(const nlohmann::json& report);

}  // namespace sockaccel::test
