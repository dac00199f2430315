// SPDX-License-Identifier: Apache-2.0
//
// Where sockacceld's log goes: the console (stderr, "level: message" lines,
// as always) or the systemd journal (one entry per line, the level as the
// entry's PRIORITY, the message text unchanged).
//
// Every log line of the daemon, libbpf's included (DataPlane routes them
// into spdlog), goes through spdlog's default logger, so installing that
// logger once in main() is all it takes.
//
// The journal is used when asked for (--log-target journal), or with
// --log-target auto when stderr is connected to the journal: systemd then
// sets $JOURNAL_STREAM to stderr's "device:inode" (systemd.exec(5)). That
// comparison, not the mere presence of the variable, is the documented
// test: a variable inherited by a process whose stderr was redirected
// elsewhere must not divert its log.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string_view>

namespace sockaccel {

enum class LogTarget { automatic, console, journal };

// "auto", "console", "journal"; anything else is nullopt.
std::optional<LogTarget> parse_log_target(std::string_view name);
std::string_view log_target_name(LogTarget target);

// A file's identity, as fstat() gives it and as $JOURNAL_STREAM spells it.
struct StreamId {
    std::uint64_t dev = 0;
    std::uint64_t ino = 0;
    bool operator==(const StreamId&) const = default;
};

// Parses $JOURNAL_STREAM: "DEV:INO", both decimal without sign, each
// fitting 64 bits. Anything else (empty, spaces, hex, a third field) is
// nullopt. Pure.
std::optional<StreamId> parse_journal_stream(std::string_view value);

// The target actually used for `requested`: console and journal as asked;
// automatic means journal exactly when `journal_stream` (the value of
// $JOURNAL_STREAM, nullptr if unset) parses and equals `stderr_id` (nullopt
// if stderr could not be fstat()ed). Pure.
LogTarget resolve_log_target(LogTarget requested, const char* journal_stream,
                             std::optional<StreamId> stderr_id);

// resolve_log_target() with this process's $JOURNAL_STREAM and stderr.
LogTarget detect_log_target(LogTarget requested);

// Installs the default logger "sockacceld" for `target` (console or
// journal; automatic is resolved first). Console: stderr, "level: message",
// coloured on a terminal. Journal: sd_journal_send() through spdlog's
// systemd sink with SYSLOG_IDENTIFIER=sockacceld and PRIORITY from the
// level (trace and debug 7, info 6, warning 4, error 3, critical 2). If
// journald's socket does not exist at this point, the console is used
// instead (with one warning); a line the journal refuses later is written
// to stderr in the console form, so nothing is lost silently. Returns the
// target installed.
LogTarget install_logger(LogTarget target);

}  // namespace sockaccel
