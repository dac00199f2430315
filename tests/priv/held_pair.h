// SPDX-License-Identifier: Apache-2.0
//
// HeldPair: one loopback TCP connection held open by a child process inside
// a test cgroup, driven step by step from the test. It reproduces the
// kernel-facts fact 1 situation on demand: bytes redirected to a receiver
// that has not read them yet.
#pragma once

#include <sys/types.h>

#include <string>

namespace sockaccel::test {

class HeldPair {
public:
    // Forks a child that joins `cgroup` (and, if given, the network
    // namespace at path `netns`), connects a client to a server over `addr`
    // (127.0.0.1 or ::1) and waits for commands.
    HeldPair(const std::string& cgroup, const std::string& addr, const std::string& netns = "");
    ~HeldPair();  // kills the child if it is still running
    HeldPair(const HeldPair&) = delete;
    HeldPair& operator=(const HeldPair&) = delete;

    // Client sends `n` more bytes of the stream; the server does not read.
    // Returns the child's answer ("ok ..." or "fail ...").
    std::string send(std::size_t n);
    // Client sends up to `n` more bytes without blocking, until its socket stays unwritable
    // for `blocked_ms`: "ok filled N blocked" (back-pressure) or "ok filled N" (all taken).
    std::string fill(std::size_t n, int blocked_ms);
    // Server reads everything sent so far and checks every byte, in order.
    std::string read_all();
    // Client sends `n` more bytes of the stream in writes of `size` bytes; the server does not
    // read ("ok sent TOTAL").
    std::string writes(std::size_t n, std::size_t size);
    // `n` round trips of `size` bytes: the client writes, the server reads and checks and
    // answers as much, the client reads and checks ("ok rr N"). Leaves nothing unread.
    std::string round_trips(std::size_t n, std::size_t size);
    // Both sockets closed; the child exits.
    std::string close();

    // Clears (true) or sets (false) O_NONBLOCK on the server socket: "ok server blocking" or
    // "ok server nonblocking". Reads stay non-blocking (poll) either way.
    std::string server_blocking(bool blocking);
    // Server sends `n` more bytes of its own stream to the client; the client does not read.
    std::string server_send(std::size_t n);
    // Closes one side only, whatever it has not read ("ok closed server|client"); with
    // `abort`, SO_LINGER 0 first, so the close resets the connection.
    std::string close_server(bool abort = false);
    std::string close_client(bool abort = false);
    // On the side still open: reads (discarding) until EOF or an error, then sends until a
    // send fails, each step bounded by `limit_ms` of silence. Answers
    // "ok read <eof|error NAME|hang> after N bytes; write <error NAME|hang> after M sends".
    std::string probe_client(int limit_ms = 10000);
    std::string probe_server(int limit_ms = 10000);

    // Moves the server socket out of every file table: its descriptor is
    // sent in an SCM_RIGHTS message on a Unix socket pair and closed, so
    // only the message in flight holds it ("ok hidden"). unhide() receives
    // it back ("ok unhidden"). What a drain walk over file tables cannot
    // see (iter/task_file).
    std::string hide_server();
    std::string unhide_server();

private:
    std::string command(const std::string& cmd);
    pid_t pid_ = -1;
    int to_child_ = -1;
    int from_child_ = -1;
};

}  // namespace sockaccel::test
