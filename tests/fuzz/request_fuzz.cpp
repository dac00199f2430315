// SPDX-License-Identifier: Apache-2.0
//
// libFuzzer target for everything the daemon does with control-socket bytes
// before a command touches the kernel: framing (proto::LineFramer), parsing
// (proto::parse_request), the permission check, per-command argument
// validation (validate_request) and turning the outcome into a response
// line. The command handlers themselves are replaced by a stub, because the
// real ones need BPF and Boost.Asio coroutines.
//
// Each input is used twice:
//  (a) as one request line (the daemon has already framed it), and
//  (b) as a byte stream cut into chunks (sizes chosen by the input's last
//      byte) fed to a LineFramer, with every line it yields served the same
//      way, and a line_too_long answer once it overflows.
// Invariants checked (a violation calls __builtin_trap(), which libFuzzer
// reports as a crash):
//  - every response serializes to exactly one line of at most kMaxLineBytes
//    that parse_response() accepts and that reads back as the same response;
//  - errors that come after a successful parse carry the request's id;
//  - validated arguments are within their documented ranges and validate
//    again to the same value;
//  - the framer yields exactly the lines a trivial reference splitter finds,
//    overflows exactly when that one does, and never buffers more than
//    kMaxLineBytes + 2 plus the last chunk.
// ASan, UBSan and LeakSanitizer catch everything else.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "request_args.h"
#include "sockaccel/proto/protocol.h"

namespace proto = sockaccel::proto;
using nlohmann::json;

namespace {

#define FUZZ_CHECK(cond)                \
    do {                                \
        if (!(cond)) __builtin_trap();  \
    } while (0)

constexpr std::string_view kAdminGroup = "sockaccel";

// Stand-in for Daemon::handle: a small result derived from the validated
// arguments, or an exception for one magic id (dispatch_line must turn it
// into internal_error).
proto::Response run_stub(const proto::Request& request, const sockaccel::ValidatedRequest& v) {
    if (const auto* s = std::get_if<std::string>(&request.id); s && *s == "fuzz-throw")
        throw std::runtime_error("stub handler failed");
    json result = {{"cmd", request.cmd}};
    if (const auto* c = std::get_if<sockaccel::ConnectionsArgs>(&v)) {
        FUZZ_CHECK(!c->port || *c->port >= 1);
        FUZZ_CHECK(c->limit >= 1 && c->limit <= sockaccel::kMaxListLimit);
        json args = {{"limit", c->limit}};
        if (c->port) args["port"] = *c->port;
        auto again = sockaccel::validate_connections_args(args);
        FUZZ_CHECK(again && *again == *c);
        result["port"] = c->port ? json(*c->port) : json(nullptr);
        result["limit"] = c->limit;
    } else if (const auto* f = std::get_if<sockaccel::FlushArgs>(&v)) {
        FUZZ_CHECK(f->wait.count() >= 0 && f->wait.count() <= sockaccel::kMaxFlushWaitMs);
        auto again = sockaccel::validate_flush_args(
            json{{"force", f->force}, {"wait_ms", f->wait.count()}});
        FUZZ_CHECK(again && *again == *f);
        result["force"] = f->force;
        result["wait_ms"] = f->wait.count();
    } else if (const auto* p = std::get_if<sockaccel::PolicySetArgs>(&v)) {
        // The canonical form is accepted again and means the same policy,
        // with the scope spelled out (it names the effective scope).
        json args = {{"policy", proto::policy_to_json(p->policy)},
                     {"apply_existing", p->apply_existing},
                     {"wait_ms", p->wait.count()}};
        auto again = sockaccel::validate_policy_set_args(args);
        auto want = *p;
        want.policy.scope = p->policy.effective_scope();
        FUZZ_CHECK(again && *again == want);
        result["policy"] = args["policy"];
    } else {
        FUZZ_CHECK(std::holds_alternative<sockaccel::NoArgs>(v));
        FUZZ_CHECK(request.args.empty());
    }
    return proto::Response::success(request.id, std::move(result));
}

// What the client would make of `response`: it must be one valid line that
// reads back as the same response.
void check_response(const proto::Response& response) {
    const std::string out = proto::serialize(response);
    FUZZ_CHECK(!out.empty() && out.back() == '\n');
    FUZZ_CHECK(out.find('\n') == out.size() - 1);
    const std::string_view line(out.data(), out.size() - 1);
    FUZZ_CHECK(line.size() <= proto::kMaxLineBytes);
    auto back = proto::parse_response(line);
    FUZZ_CHECK(back.has_value());
    FUZZ_CHECK(back->ok == response.ok);
    FUZZ_CHECK(back->id == response.id);
    if (response.ok) {
        FUZZ_CHECK(back->result == response.result);
    } else {
        FUZZ_CHECK(!back->error.code.empty());
        FUZZ_CHECK(back->error.code == response.error.code);
        FUZZ_CHECK(back->error.message == response.error.message);
    }
}

// Serves one line as the daemon does and checks the outcome.
void serve_line(std::string_view line, bool peer_is_admin) {
    bool ran = false;
    const sockaccel::RequestRunner run = [&](const proto::Request& r,
                                             const sockaccel::ValidatedRequest& v) {
        ran = true;
        FUZZ_CHECK(peer_is_admin || !sockaccel::needs_admin(r.cmd));
        return run_stub(r, v);
    };
    const proto::Response response =
        sockaccel::dispatch_line(line, peer_is_admin, kAdminGroup, run);
    check_response(response);

    // The same steps one by one must agree with dispatch_line.
    auto request = proto::parse_request(line);
    if (!request) {
        FUZZ_CHECK(!ran && !response.ok);
        FUZZ_CHECK(response.id == request.error().id);
        FUZZ_CHECK(response.error.code == request.error().error.code);
        return;
    }
    FUZZ_CHECK(response.id == request->id);  // every later answer carries the id
    if (sockaccel::needs_admin(request->cmd) && !peer_is_admin) {
        FUZZ_CHECK(!ran && !response.ok);
        FUZZ_CHECK(response.error.code == proto::errc::kPermissionDenied);
        return;
    }
    auto validated = sockaccel::validate_request(*request);
    if (!validated) {
        FUZZ_CHECK(!ran && !response.ok);
        FUZZ_CHECK(response.error.code == validated.error().code);
        FUZZ_CHECK(response.error.code == proto::errc::kInvalidArgument ||
                   response.error.code == proto::errc::kUnknownCommand);
        return;
    }
    FUZZ_CHECK(ran);
    if (!response.ok) FUZZ_CHECK(response.error.code == proto::errc::kInternalError);
}

// Reference framing: the lines of `stream` (split at "\n", one trailing "\r"
// dropped, empty ones skipped) up to the first one longer than kMaxLineBytes,
// and whether there is such a line (an unterminated tail counts when it
// already exceeds what a line plus a trailing "\r" could be).
struct Framed {
    std::vector<std::string_view> lines;
    bool overflow = false;
};

Framed reference_frame(std::string_view stream) {
    Framed out;
    while (!stream.empty()) {
        const std::size_t nl = stream.find('\n');
        if (nl == std::string_view::npos) {
            const std::size_t n = stream.size();
            out.overflow = n > proto::kMaxLineBytes + 1 ||
                           (n == proto::kMaxLineBytes + 1 && stream.back() != '\r');
            return out;
        }
        std::string_view line = stream.substr(0, nl);
        stream.remove_prefix(nl + 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.size() > proto::kMaxLineBytes) {
            out.overflow = true;
            return out;
        }
        if (!line.empty()) out.lines.push_back(line);
    }
    return out;
}

// Chunk sizes from a tiny PRNG the fuzzer steers through `mode`: 0 is one
// chunk, small modes give tiny chunks (byte-at-a-time at 1), large ones
// chunks up to the daemon's 8 KiB read buffer and beyond.
class Chunker {
public:
    Chunker(std::uint8_t mode, std::size_t size) : mode_(mode), state_(mode * 0x9E3779B97F4A7C15ULL ^ size ^ 1) {}

    std::size_t next(std::size_t remaining) {
        if (mode_ == 0) return remaining;
        if (mode_ == 1) return 1;
        state_ ^= state_ << 13;
        state_ ^= state_ >> 7;
        state_ ^= state_ << 17;
        const std::size_t cap = mode_ < 64 ? 16 : mode_ < 128 ? 512 : mode_ < 192 ? 8192 : 70000;
        return std::min<std::size_t>(remaining, 1 + state_ % cap);
    }

private:
    std::uint8_t mode_;
    std::uint64_t state_;
};

void serve_stream(std::string_view stream, std::uint8_t mode) {
    const Framed expected = reference_frame(stream);
    proto::LineFramer framer;
    Chunker chunker(mode, stream.size());
    std::size_t index = 0;  // lines served so far
    std::string_view rest = stream;
    bool overflowed = false;
    while (!rest.empty() && !overflowed) {
        const std::size_t n = chunker.next(rest.size());
        const std::string_view chunk = rest.substr(0, n);
        rest.remove_prefix(n);
        framer.append(chunk);
        // The documented memory bound, given that lines are drained after
        // every append.
        FUZZ_CHECK(framer.buffered_bytes() <= proto::kMaxLineBytes + 2 + chunk.size());
        while (auto line = framer.next_line()) {
            FUZZ_CHECK(index < expected.lines.size());
            FUZZ_CHECK(*line == expected.lines[index]);
            FUZZ_CHECK(!line->empty() && line->size() <= proto::kMaxLineBytes);
            serve_line(*line, /*peer_is_admin=*/index % 2 == 1);
            ++index;
        }
        if (framer.overflowed()) {
            // What ControlServer::serve answers before closing.
            check_response(proto::Response::failure(
                std::nullopt, std::string(proto::errc::kLineTooLong),
                "request line longer than " + std::to_string(proto::kMaxLineBytes) +
                    " bytes; closing the connection"));
            overflowed = true;
        }
    }
    FUZZ_CHECK(overflowed == expected.overflow);
    FUZZ_CHECK(index == expected.lines.size());
    if (overflowed) {
        // Sticky, and nothing more is buffered or returned.
        framer.append("{\"v\":1,\"id\":1,\"cmd\":\"ping\"}\n");
        FUZZ_CHECK(framer.overflowed() && !framer.next_line());
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    // (a) The whole input as one line, from an admin peer (so validation is
    // reached for mutating commands too).
    serve_line(input, /*peer_is_admin=*/true);
    // (b) Everything but the last byte as a stream; the last byte picks the
    // chunk sizes.
    if (size > 0) serve_stream(input.substr(0, size - 1), data[size - 1]);
    return 0;
}
