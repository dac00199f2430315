// SPDX-License-Identifier: Apache-2.0
//
// The pure parts of the EAGAIN self-test (daemon/src/kernel_selftest.h):
// reading /proc task status, classifying one wakeup, the verdict, and the
// status entry. The probe itself runs in tests/priv/selftest_test.cpp.
#include "kernel_selftest.h"

#include <catch2/catch.hpp>
#include <cerrno>

using namespace sockaccel;

namespace {
WakeResult wake(WakeOutcome o, double ms = 0.5) {
    WakeResult w;
    w.outcome = o;
    w.reader_ms = ms;
    return w;
}
}  // namespace

TEST_CASE("self-test helpers: task status gives the state letter and voluntary switches") {
    auto st = parse_task_status(
        "Name:\tselftest\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t12\n"
        "voluntary_ctxt_switches:\t42\nnonvoluntary_ctxt_switches:\t7\n");
    REQUIRE(st);
    CHECK(st->state == 'S');
    CHECK(st->voluntary_switches == 42);

    // nonvoluntary_ctxt_switches must not be mistaken for the voluntary one.
    st = parse_task_status(
        "Name:\tx\nState:\tR (running)\nnonvoluntary_ctxt_switches:\t3\n"
        "voluntary_ctxt_switches:\t9");
    REQUIRE(st);
    CHECK(st->state == 'R');
    CHECK(st->voluntary_switches == 9);

    CHECK_FALSE(parse_task_status(""));
    CHECK_FALSE(parse_task_status("Name:\tx\nState:\tS (sleeping)\n"));
    CHECK_FALSE(parse_task_status("Name:\tx\nvoluntary_ctxt_switches:\t1\n"));
    CHECK_FALSE(parse_task_status("Name:\tx\nState:\tS\nvoluntary_ctxt_switches:\tz\n"));
}

TEST_CASE("self-test helpers: one wakeup is classified like the research prototype") {
    CHECK(classify_wake(false, true, 1, 0, 1, 1000) == WakeOutcome::never_blocked);
    CHECK(classify_wake(true, false, -1, EAGAIN, 1, 1000) == WakeOutcome::wake_not_observed);
    CHECK(classify_wake(true, true, 1, 0, 2, 1000) == WakeOutcome::kept_waiting);
    CHECK(classify_wake(true, true, -1, EAGAIN, 0.4, 1000) == WakeOutcome::eagain);
    // Near SO_RCVTIMEO an EAGAIN may be the timeout itself.
    CHECK(classify_wake(true, true, -1, EAGAIN, 950, 1000) == WakeOutcome::other);
    CHECK(classify_wake(true, true, 0, 0, 1, 1000) == WakeOutcome::other);
    CHECK(classify_wake(true, true, -1, ECONNRESET, 1, 1000) == WakeOutcome::other);
}

TEST_CASE("self-test helpers: either EAGAIN is detected, both waits are clean, the rest unknown") {
    using O = WakeOutcome;
    CHECK(combine_verdict(wake(O::eagain), wake(O::eagain)) == true);
    CHECK(combine_verdict(wake(O::eagain), wake(O::never_blocked)) == true);
    CHECK(combine_verdict(wake(O::kept_waiting), wake(O::eagain)) == true);
    CHECK(combine_verdict(wake(O::kept_waiting), wake(O::kept_waiting)) == false);
    CHECK_FALSE(combine_verdict(wake(O::kept_waiting), wake(O::other)).has_value());
    CHECK_FALSE(combine_verdict(wake(O::wake_not_observed), wake(O::kept_waiting)).has_value());

    CHECK(describe_wakes(wake(O::eagain, 0.42), wake(O::kept_waiting)) ==
          "shutdown() wake: EAGAIN after 0.4 ms; signal wake: kept waiting");
    WakeResult failed = wake(O::other, 3);
    failed.ret = -1;
    failed.err = ECONNRESET;
    CHECK(describe_wakes(wake(O::never_blocked), failed) ==
          "shutdown() wake: inconclusive (the reader was never seen blocked in recv()); "
          "signal wake: inconclusive (recv() failed with Connection reset by peer after 3.0 ms)");
}

TEST_CASE("self-test helpers: the status entry carries true, false or null") {
    auto j = eagain_issue_json(true);
    CHECK(j["id"] == "eagain_blocking_read");
    CHECK(j["detected"] == true);
    CHECK(j["doc"] == "docs/operations.md#known-kernel-issues");
    CHECK(j["summary"].get<std::string>().find("EAGAIN") != std::string::npos);
    CHECK_FALSE(j["affects"].get<std::string>().empty());
    CHECK(eagain_issue_json(false)["detected"] == false);
    CHECK(eagain_issue_json(std::nullopt)["detected"].is_null());
}
