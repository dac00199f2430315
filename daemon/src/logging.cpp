// SPDX-License-Identifier: Apache-2.0
#include "logging.h"

#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/systemd_sink.h>
#include <spdlog/spdlog.h>

namespace sockaccel {

namespace {

constexpr const char* kLoggerName = "sockacceld";
// "info: received SIGTERM, stopping". No timestamp: the journal or the
// supervisor adds one.
constexpr const char* kConsolePattern = "%^%l%$: %v";

// Where journald listens (sd_journal_send(3) writes there).
constexpr const char* kJournalSocket = "/run/systemd/journal/socket";

// spdlog's journal sink, plus what it leaves to its caller: when
// sd_journal_send() fails it throws, and the logger's default error handler
// would print an "[*** LOG ERROR ***]" line in place of the message. Here
// the message itself goes to stderr in the console form instead (under
// systemd that is the journal stream, so it still arrives, only without its
// priority). A journal that is missing altogether is not such a failure:
// libsystemd drops the message and reports success (ENOENT is "fail
// silently" in journal-send.c), so install_logger() checks for the socket.
class JournalSink final : public spdlog::sinks::systemd_sink<std::mutex> {
public:
    JournalSink()
        : systemd_sink(kLoggerName, /*enable_formatting=*/false),
          fallback_(std::make_shared<spdlog::sinks::stderr_color_sink_mt>()) {
        fallback_->set_pattern(kConsolePattern);
    }

protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        try {
            systemd_sink::sink_it_(msg);
        } catch (const spdlog::spdlog_ex&) {
            fallback_->log(msg);
        }
    }

private:
    std::shared_ptr<spdlog::sinks::sink> fallback_;
};

// One unsigned decimal field, all of `text`.
std::optional<std::uint64_t> parse_decimal(std::string_view text) {
    if (text.empty()) return std::nullopt;
    std::uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return value;
}

}  // namespace

std::optional<LogTarget> parse_log_target(std::string_view name) {
    if (name == "auto") return LogTarget::automatic;
    if (name == "console") return LogTarget::console;
    if (name == "journal") return LogTarget::journal;
    return std::nullopt;
}

std::string_view log_target_name(LogTarget target) {
    switch (target) {
    case LogTarget::automatic: return "auto";
    case LogTarget::console: return "console";
    case LogTarget::journal: return "journal";
    }
    return "auto";
}

std::optional<StreamId> parse_journal_stream(std::string_view value) {
    const auto colon = value.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    // from_chars accepts no sign and no spaces, and a second ':' makes the
    // inode field fail, which is exactly the strictness wanted.
    auto dev = parse_decimal(value.substr(0, colon));
    auto ino = parse_decimal(value.substr(colon + 1));
    if (!dev || !ino) return std::nullopt;
    return StreamId{*dev, *ino};
}

LogTarget resolve_log_target(LogTarget requested, const char* journal_stream,
                             std::optional<StreamId> stderr_id) {
    if (requested != LogTarget::automatic) return requested;
    if (!journal_stream || !stderr_id) return LogTarget::console;
    auto id = parse_journal_stream(journal_stream);
    return id && *id == *stderr_id ? LogTarget::journal : LogTarget::console;
}

LogTarget detect_log_target(LogTarget requested) {
    std::optional<StreamId> stderr_id;
    struct stat st {};
    if (::fstat(STDERR_FILENO, &st) == 0)
        stderr_id = StreamId{static_cast<std::uint64_t>(st.st_dev),
                             static_cast<std::uint64_t>(st.st_ino)};
    return resolve_log_target(requested, std::getenv("JOURNAL_STREAM"), stderr_id);
}

LogTarget install_logger(LogTarget target) {
    target = detect_log_target(target);
    // No journald (asked for by --log-target journal, or gone since systemd
    // set JOURNAL_STREAM): every line would vanish without a trace.
    const bool no_journal = target == LogTarget::journal && ::access(kJournalSocket, F_OK) != 0;
    if (no_journal) target = LogTarget::console;
    std::shared_ptr<spdlog::sinks::sink> sink;
    if (target == LogTarget::journal)
        sink = std::make_shared<JournalSink>();
    else
        sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    auto logger = std::make_shared<spdlog::logger>(kLoggerName, std::move(sink));
    // The journal sink sends the bare message (the level travels as
    // PRIORITY); the pattern shapes the console lines and the fallback.
    logger->set_pattern(kConsolePattern);
    spdlog::set_default_logger(std::move(logger));
    if (no_journal)
        spdlog::warn("the journal is not available ({} is missing); logging to stderr, ignoring",
                     kJournalSocket);
    return target;
}

}  // namespace sockaccel
