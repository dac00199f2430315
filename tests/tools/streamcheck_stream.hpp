// SPDX-License-Identifier: Apache-2.0
//
// Stream content for sockaccel-streamcheck: the deterministic byte pattern, the per-stream
// header, the sender (message sizing, pauses, test-only fault injection) and the receiver-side
// verifier that classifies anomalies as lost / duplicated / reordered / corrupted.
//
// Everything here is pure computation (no sockets) so both I/O engines share it.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace sockaccel::streamcheck {

enum class Direction : uint8_t { kClientToServer = 0, kServerToClient = 1 };

const char* direction_name(Direction dir);

// Seconds on CLOCK_MONOTONIC. The clock is system-wide, so failure timestamps from the client
// and server processes of `pair` can be merged into one chronological list.
double monotonic_seconds();

// ---------------------------------------------------------------------------------------------
// Pattern

// splitmix64 finaliser: cheap (two multiplies), a bijection, and good enough that neighbouring
// words are unrelated, which keeps accidental matches when locating data negligible.
constexpr uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

// Inverse of mix64 (xorshifts and odd multiplications are bijections). It lets the verifier
// turn any 8 received bytes straight into "word w of the stream with key k", i.e. find where
// misplaced data belongs in O(1) instead of searching a window.
uint64_t unmix64(uint64_t y);

inline constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

// Key of one (seed, connection, direction) stream; the payload is a pure function of it.
uint64_t stream_key(uint64_t seed, uint32_t conn_id, Direction dir);

// Payload word w is mix64(key + w * golden): random access (the verifier generates any part
// of the stream on demand) and ~5 GB/s per core.
inline uint64_t pattern_word(uint64_t key, uint64_t word_index) {
    return mix64(key + word_index * kGolden);
}

// Writes payload bytes [offset, offset + n) of the stream with the given key.
void fill_pattern(uint64_t key, uint64_t offset, uint8_t* out, size_t n);

// ---------------------------------------------------------------------------------------------
// Header

inline constexpr size_t kHeaderSize = 48;
inline constexpr uint8_t kHeaderVersion = 1;

// Sent in front of every stream so the receiver knows what to expect and can tell a stream of
// another connection (cross-talk) or another test run (different seed) from its own.
// Wire layout, little endian:
//   0 magic "SACHKSTR" | 8 conn_id u32 | 12 direction u8 | 13 version u8 | 14 zero u16
//   16 payload_len u64 | 24 reply_len u64 | 32 seed u64 | 40 check u64 (mix of bytes 0..39)
struct StreamHeader {
    uint32_t conn_id = 0;
    Direction direction = Direction::kClientToServer;
    uint64_t payload_len = 0;
    // Client->server only: how many payload bytes the server must send back. Lets a standalone
    // `serve` process follow the client's size settings and the client verify the exact length.
    uint64_t reply_len = 0;
    uint64_t seed = 0;
};

std::array<uint8_t, kHeaderSize> encode_header(const StreamHeader& header);

// Returns an error description if the bytes are not a well-formed header.
std::optional<std::string> decode_header(const uint8_t* bytes, StreamHeader& out);

// ---------------------------------------------------------------------------------------------
// Randomness for sizes and pauses (never for content)

class Rng {
public:
    explicit Rng(uint64_t seed) : state_(seed) {}
    uint64_t next() {
        state_ += kGolden;
        return mix64(state_);
    }
    double uniform01() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
    uint64_t uniform(uint64_t lo, uint64_t hi);  // inclusive
    // Log-uniform in [lo, hi]: every order of magnitude is equally likely, so 1-byte writes and
    // 256 KiB writes both show up in one run.
    uint64_t log_uniform(uint64_t lo, uint64_t hi);

private:
    uint64_t state_;
};

struct SizeParams {
    uint64_t min_bytes = 1;
    uint64_t max_bytes = 1 << 20;
    std::optional<uint64_t> fixed_bytes;
};

struct ConnPlan {
    uint64_t c2s_len = 0;
    uint64_t s2c_len = 0;
};

// Payload lengths of both directions of a connection; derived from (seed, conn_id) only so a
// run is reproducible with --seed regardless of scheduling.
ConnPlan plan_connection(uint64_t seed, uint32_t conn_id, const SizeParams& sizes);

// ---------------------------------------------------------------------------------------------
// Sender

enum class FaultKind { kNone, kDrop, kDup, kSwap, kCorrupt, kInsert, kForeign };

// Test-only sender misbehaviour used to prove the detector works (--inject-fault).
struct FaultSpec {
    FaultKind kind = FaultKind::kNone;
    int64_t conn = 0;  // connection id to damage, -1 = every connection
    Direction direction = Direction::kClientToServer;
    std::optional<uint64_t> offset;  // payload offset of the chunk; default len/4
    uint64_t len = 4096;             // chunk length (clipped to fit the stream)

    bool applies_to(uint32_t conn_id, Direction dir) const {
        return kind != FaultKind::kNone && direction == dir &&
               (conn < 0 || static_cast<uint64_t>(conn) == conn_id);
    }
};

struct SenderParams {
    uint64_t min_msg = 1;
    uint64_t max_msg = 256 * 1024;
    uint32_t max_pause_ms = 0;
};

// Produces the bytes of one stream (header + payload) as a series of "messages": each message
// is handed to exactly one send()/write() call (a partial send leaves the rest of the same
// message for the next call), so the message-size distribution is what the socket sees.
class StreamSender {
public:
    StreamSender(const StreamHeader& header, const SenderParams& params, const FaultSpec* fault);

    bool done() const { return wire_pos_ == wire_len_; }

    // The not-yet-sent rest of the current message, generated into scratch.
    std::span<const uint8_t> current_message(std::vector<uint8_t>& scratch);

    // Accounts n bytes accepted by the socket. Returns how long to pause before the next write
    // (zero unless a message just completed and --max-pause-ms is set).
    std::chrono::milliseconds advance(size_t n);

    uint64_t payload_len() const { return payload_len_; }
    // Payload bytes handed to the socket (header excluded; includes injected duplicates).
    uint64_t payload_sent() const { return wire_pos_ > kHeaderSize ? wire_pos_ - kHeaderSize : 0; }
    uint64_t wire_pos() const { return wire_pos_; }
    uint64_t wire_len() const { return wire_len_; }
    // Human-readable description of the injected fault, empty if none.
    const std::string& fault_description() const { return fault_text_; }

private:
    // Ranges of source stream offsets (header at [0, 48), payload after) in wire order.
    // Faults are expressed by reordering / repeating / omitting ranges, or by ranges taken
    // from another pattern (payload offsets of a garbage or foreign stream).
    enum class Source : uint8_t { kOwn, kGarbage, kForeign };
    struct Segment {
        uint64_t begin;
        uint64_t end;
        Source source = Source::kOwn;
    };

    void pick_next_message();
    void generate(uint64_t wire_offset, uint8_t* out, size_t n) const;
    void generate_source(const Segment& seg, uint64_t src_offset, uint8_t* out, size_t n) const;

    std::array<uint8_t, kHeaderSize> header_bytes_;
    uint64_t key_;
    uint64_t foreign_key_ = 0;
    uint64_t garbage_key_ = 0;
    uint64_t payload_len_;
    SenderParams params_;
    Rng rng_;
    std::vector<Segment> segments_;
    uint64_t corrupt_begin_ = 0;  // source offsets whose bytes get flipped
    uint64_t corrupt_end_ = 0;
    std::string fault_text_;
    uint64_t wire_len_ = 0;
    uint64_t wire_pos_ = 0;
    uint64_t msg_left_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Verifier

// Set of covered byte offsets, stored as disjoint, non-adjacent [begin, end) ranges. In a
// healthy stream it holds exactly one range, so the common case stays O(1)-ish.
class IntervalSet {
public:
    // Inserts [lo, hi); returns how many of those bytes were not covered before.
    uint64_t insert(uint64_t lo, uint64_t hi);
    bool contains(uint64_t x) const;
    uint64_t total() const { return total_; }
    // Lowest uncovered offset below limit, or limit if [0, limit) is fully covered.
    uint64_t first_gap(uint64_t limit) const;

private:
    std::map<uint64_t, uint64_t> ranges_;
    uint64_t total_ = 0;
};

struct Failure {
    double when = 0;  // monotonic_seconds()
    std::string what;
};

struct StreamStats {
    uint64_t lost = 0;
    uint64_t duplicated = 0;
    uint64_t reordered = 0;
    uint64_t corrupted = 0;
    std::vector<Failure> failures;  // first few anomalies of this stream, oldest first
};

// What the receiver knows before the header arrives. The client knows everything about the
// reply stream; a server learns conn id and lengths from the header.
struct ExpectedStream {
    Direction direction = Direction::kClientToServer;
    std::optional<uint32_t> conn_id;
    std::optional<uint64_t> payload_len;
    std::optional<uint64_t> seed;
    std::string name;  // label used until the header names the connection, e.g. "accepted #4"
    // Run-wide knowledge for naming the source of foreign bytes (cross-talk): streams of
    // connections 0..run_connections-1 under run_seed are tried. Unset/0 disables this.
    std::optional<uint64_t> run_seed;
    uint64_t run_connections = 0;
};

// Checks one received stream byte by byte against the expected pattern. Every received
// payload byte ends up in exactly one bucket:
//   - in order: matches the next expected offset;
//   - duplicated: matches an offset already received, or continues the pattern past the
//     announced length (excess);
//   - reordered: fills a hole below the highest offset received so far (arrived late);
//   - corrupted: belongs nowhere in this stream (bit flips, inserted bytes, another
//     connection's data - which is named when it is a stream of the same run).
// At EOF, expected offsets never received count as lost. On a mismatch the received bytes are
// located in the whole stream in O(1) by inverting mix64 (or, for chunks under ~15 bytes, by
// a window search), so a dropped chunk yields exactly `lost`, a repeated one `duplicated` and
// a swapped one `reordered`. Limits: chunks of 1-3 bytes that are moved (not dropped or
// repeated) cannot be located and count as corrupted; when the first misplaced byte happens to
// equal the expected one (1 in 256) a byte is attributed to the neighbouring bucket.
class StreamVerifier {
public:
    enum class HeaderState { kPending, kValid, kInvalid };

    explicit StreamVerifier(ExpectedStream expect);

    // Feeds received bytes in arrival order.
    void feed(const uint8_t* data, size_t n);
    // End of stream (read returned 0). Computes lost bytes. Idempotent.
    void finish();

    HeaderState header_state() const { return header_state_; }
    const StreamHeader& header() const { return header_; }
    const StreamStats& stats() const { return stats_; }
    bool finished() const { return finished_; }
    // Payload bytes received (everything after the first kHeaderSize bytes).
    uint64_t received() const { return total_in_ > kHeaderSize ? total_in_ - kHeaderSize : 0; }
    // Label such as "conn 3 dir s2c".
    std::string label() const;

private:
    void process(const uint8_t* p, size_t n, bool eof);
    void check_header();
    size_t match_len(uint64_t pos, const uint8_t* p, size_t n) const;
    void account_match(uint64_t pos, uint64_t m);
    std::optional<uint64_t> locate(const uint8_t* p, size_t n) const;
    std::optional<uint64_t> search_short(const uint8_t* p, size_t n);
    // Garbage mode: finds where stream data resumes in p. Sets skip to the number of leading
    // garbage bytes; returns true with resume_at = stream offset of p[skip] if found.
    bool scan_garbage(const uint8_t* p, size_t n, bool eof, size_t& skip,
                      uint64_t& resume_at) const;
    void note_jump(uint64_t x);
    void start_garbage(const uint8_t* p, size_t n);
    void end_garbage(std::optional<uint64_t> resume_at);
    std::string identify_foreign(const uint8_t* p, size_t n) const;
    void fail(const std::string& what);
    void fail_at(uint64_t offset, const std::string& what);

    ExpectedStream expect_;
    HeaderState header_state_ = HeaderState::kPending;
    StreamHeader header_;
    std::array<uint8_t, kHeaderSize> header_buf_{};
    size_t header_fill_ = 0;

    uint64_t key_ = 0;
    uint64_t len_ = 0;  // expected payload length
    uint64_t cur_ = 0;  // stream offset the next received byte is believed to belong to
    uint64_t hwm_ = 0;  // highest covered offset + 1: uncovered bytes below it arrive "late"
    IntervalSet covered_;
    uint64_t total_in_ = 0;
    std::vector<uint8_t> stash_;  // lookahead kept back until enough bytes to resync
    // Garbage run: received bytes that belong nowhere in this stream. cur_ stays at the offset
    // where the run began until data is located again; then the run is classified as
    // overwritten in place, inserted, or replacing a different amount of data.
    bool in_garbage_ = false;
    uint64_t garbage_len_ = 0;
    std::string garbage_note_;  // expected/got bytes and cross-talk source for the report
    uint32_t garbage_runs_ = 0;
    uint32_t searches_ = 0;  // window searches (the expensive fallback), bounded per stream
    bool excess_reported_ = false;
    bool finished_ = false;
    StreamStats stats_;
};

}  // namespace sockaccel::streamcheck
