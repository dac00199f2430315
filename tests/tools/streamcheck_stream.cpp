// SPDX-License-Identifier: Apache-2.0
#include "streamcheck_stream.hpp"

#include <time.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace sockaccel::streamcheck {

namespace {

constexpr uint8_t kMagic[8] = {'S', 'A', 'C', 'H', 'K', 'S', 'T', 'R'};

// Received bytes needed before a mismatch is classified (only waived at EOF), and inside a
// garbage run before each resync attempt. locate() needs at most 15.
constexpr size_t kLookahead = 32;
// A stream run starting at i contains a whole aligned word by i + 15, so a garbage scan over
// n bytes can only rule out run starts below n - 14; the last 14 bytes wait for more data.
constexpr size_t kGarbageLookahead = 15;
// locate() accepts offsets this far past the announced end, so that excess data following
// garbage is still recognised as (excess) stream data.
constexpr uint64_t kExcessSlack = 1 << 20;
// Fallback window search for misplaced chunks too short for locate() (it needs a full aligned
// word). A 4-byte probe matches by accident in large windows, so it only searches nearby.
struct ProbeStep {
    size_t probe;
    uint64_t radius;
};
constexpr ProbeStep kProbeSteps[] = {{8, 1 << 20}, {4, 64 << 10}};
// Bound on window searches per stream (each costs ~1 ms) so that a stream full of small
// corruptions cannot eat unbounded CPU; locate() is O(1) and not limited.
constexpr uint32_t kMaxSearches = 256;
// Garbage runs per stream that are checked against every other stream of the run.
constexpr uint32_t kMaxForeignChecks = 4;
// Streams longer than this (in words) are not considered when naming foreign data.
constexpr uint64_t kMaxForeignWords = (1ULL << 40) / 8;
constexpr size_t kMaxFailuresPerStream = 4;

inline void store_le64(uint8_t* out, uint64_t v) {
    if constexpr (std::endian::native == std::endian::big) {
        v = __builtin_bswap64(v);
    }
    std::memcpy(out, &v, 8);
}

inline uint64_t load_le64(const uint8_t* in) {
    uint64_t v;
    std::memcpy(&v, in, 8);
    if constexpr (std::endian::native == std::endian::big) {
        v = __builtin_bswap64(v);
    }
    return v;
}

inline void store_le32(uint8_t* out, uint32_t v) {
    for (int i = 0; i < 4; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}

inline uint32_t load_le32(const uint8_t* in) {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(in[i]) << (8 * i);
    return v;
}

uint64_t header_check(const uint8_t* bytes) {
    uint64_t h = 0x5ac4ec4b00000000ULL;
    for (size_t i = 0; i < 40; i += 8) h = mix64(h ^ load_le64(bytes + i));
    return h;
}

std::string hex_byte(uint8_t b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02x", b);
    return buf;
}

constexpr uint64_t unxorshift(uint64_t y, int k) {
    uint64_t x = y;
    for (int shift = k; shift < 64; shift += k) x ^= y >> shift;
    return x;
}

// Newton iteration for the inverse of an odd number modulo 2^64.
constexpr uint64_t mod_inverse(uint64_t a) {
    uint64_t x = a;
    for (int i = 0; i < 6; ++i) x *= 2 - a * x;
    return x;
}

constexpr uint64_t kInvMul1 = mod_inverse(0xbf58476d1ce4e5b9ULL);
constexpr uint64_t kInvMul2 = mod_inverse(0x94d049bb133111ebULL);
constexpr uint64_t kInvGolden = mod_inverse(kGolden);
static_assert(kGolden * kInvGolden == 1);

constexpr uint64_t unmix64_impl(uint64_t y) {
    y = unxorshift(y, 31);
    y *= kInvMul2;
    y = unxorshift(y, 27);
    y *= kInvMul1;
    return unxorshift(y, 30);
}
static_assert(unmix64_impl(mix64(0x0123456789abcdefULL)) == 0x0123456789abcdefULL);

// Offset x such that p[0..] equals the stream with `key` at x for at least s + 8 bytes,
// where s = distance from p to the first word boundary (tries all 8 alignments).
std::optional<uint64_t> locate_in(uint64_t key, const uint64_t* unmixed, size_t count,
                                  const uint8_t* p, uint64_t limit) {
    uint8_t tmp[8];
    for (size_t s = 0; s < count; ++s) {
        const uint64_t w = (unmixed[s] - key) * kInvGolden;
        if (w > limit / 8 || w * 8 < s) continue;
        const uint64_t x = w * 8 - s;
        if (x >= limit) continue;
        if (s > 0) {
            fill_pattern(key, x, tmp, s);
            if (std::memcmp(tmp, p, s) != 0) continue;
        }
        return x;
    }
    return std::nullopt;
}

// unmix64 of the 8 possible word-aligned 8-byte windows at the start of p; returns how many.
size_t unmix_windows(const uint8_t* p, size_t n, uint64_t* out) {
    size_t count = 0;
    for (size_t s = 0; s < 8 && s + 8 <= n; ++s) out[count++] = unmix64_impl(load_le64(p + s));
    return count;
}

}  // namespace

uint64_t unmix64(uint64_t y) { return unmix64_impl(y); }

const char* direction_name(Direction dir) {
    return dir == Direction::kClientToServer ? "c2s" : "s2c";
}

double monotonic_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

uint64_t stream_key(uint64_t seed, uint32_t conn_id, Direction dir) {
    return mix64(mix64(seed ^ 0x73747265616d6b79ULL) ^
                 ((static_cast<uint64_t>(conn_id) << 1) | static_cast<uint64_t>(dir)));
}

void fill_pattern(uint64_t key, uint64_t offset, uint8_t* out, size_t n) {
    uint64_t word = offset / 8;
    const size_t skip = offset % 8;
    uint8_t tmp[8];
    if (skip != 0 && n > 0) {
        store_le64(tmp, pattern_word(key, word));
        const size_t take = std::min<size_t>(8 - skip, n);
        std::memcpy(out, tmp + skip, take);
        out += take;
        n -= take;
        ++word;
    }
    while (n >= 8) {
        store_le64(out, pattern_word(key, word));
        out += 8;
        n -= 8;
        ++word;
    }
    if (n > 0) {
        store_le64(tmp, pattern_word(key, word));
        std::memcpy(out, tmp, n);
    }
}

std::array<uint8_t, kHeaderSize> encode_header(const StreamHeader& header) {
    std::array<uint8_t, kHeaderSize> b{};
    std::memcpy(b.data(), kMagic, 8);
    store_le32(b.data() + 8, header.conn_id);
    b[12] = static_cast<uint8_t>(header.direction);
    b[13] = kHeaderVersion;
    store_le64(b.data() + 16, header.payload_len);
    store_le64(b.data() + 24, header.reply_len);
    store_le64(b.data() + 32, header.seed);
    store_le64(b.data() + 40, header_check(b.data()));
    return b;
}

std::optional<std::string> decode_header(const uint8_t* b, StreamHeader& out) {
    if (std::memcmp(b, kMagic, 8) != 0) return "bad magic (not a streamcheck stream)";
    if (b[13] != kHeaderVersion) return "unsupported header version " + std::to_string(b[13]);
    if (load_le64(b + 40) != header_check(b)) return "header checksum mismatch";
    if (b[12] > 1) return "bad direction " + std::to_string(b[12]);
    out.conn_id = load_le32(b + 8);
    out.direction = static_cast<Direction>(b[12]);
    out.payload_len = load_le64(b + 16);
    out.reply_len = load_le64(b + 24);
    out.seed = load_le64(b + 32);
    return std::nullopt;
}

uint64_t Rng::uniform(uint64_t lo, uint64_t hi) {
    if (hi <= lo) return lo;
    const uint64_t span = hi - lo + 1;
    return span == 0 ? next() : lo + next() % span;  // modulo bias is irrelevant here
}

uint64_t Rng::log_uniform(uint64_t lo, uint64_t hi) {
    if (hi <= lo) return lo;
    // +1 so that lo == 0 is allowed.
    const double a = std::log(static_cast<double>(lo) + 1.0);
    const double b = std::log(static_cast<double>(hi) + 1.0);
    const double v = std::exp(a + (b - a) * uniform01()) - 1.0;
    auto r = static_cast<uint64_t>(v);
    return std::clamp(r, lo, hi);
}

ConnPlan plan_connection(uint64_t seed, uint32_t conn_id, const SizeParams& sizes) {
    if (sizes.fixed_bytes) return {*sizes.fixed_bytes, *sizes.fixed_bytes};
    Rng rng(mix64(seed ^ 0x706c616e00000000ULL) ^ mix64(conn_id));
    ConnPlan plan;
    plan.c2s_len = rng.log_uniform(sizes.min_bytes, sizes.max_bytes);
    plan.s2c_len = rng.log_uniform(sizes.min_bytes, sizes.max_bytes);
    return plan;
}

// ---------------------------------------------------------------------------------------------
// StreamSender

StreamSender::StreamSender(const StreamHeader& header, const SenderParams& params,
                           const FaultSpec* fault)
    : header_bytes_(encode_header(header)),
      key_(stream_key(header.seed, header.conn_id, header.direction)),
      payload_len_(header.payload_len),
      params_(params),
      rng_(mix64(key_ ^ 0x73656e6465720000ULL)) {
    const uint64_t h = kHeaderSize;
    const uint64_t end = h + payload_len_;
    segments_ = {{0, end}};
    // Keys for injected foreign data: the next connection's stream in the same direction (so
    // the receiver can name it), and a key no stream of any run uses (plain garbage).
    foreign_key_ = stream_key(header.seed, header.conn_id + 1, header.direction);
    garbage_key_ = mix64(key_ ^ 0x6761726261676521ULL);
    if (fault != nullptr && fault->applies_to(header.conn_id, header.direction)) {
        const uint64_t L = payload_len_;
        const uint64_t a = std::min(fault->offset.value_or(L / 4), L);
        const uint64_t room = fault->kind == FaultKind::kSwap     ? (L - a) / 2
                              : fault->kind == FaultKind::kInsert ? fault->len
                                                                  : L - a;
        const uint64_t k = std::min(fault->len, room);
        if (k > 0) {
            const char* what = "";
            switch (fault->kind) {
                case FaultKind::kDrop:
                    segments_ = {{0, h + a}, {h + a + k, end}};
                    what = "drop";
                    break;
                case FaultKind::kDup:
                    segments_ = {{0, h + a + k}, {h + a, end}};
                    what = "dup";
                    break;
                case FaultKind::kSwap:
                    segments_ = {{0, h + a},
                                 {h + a + k, h + a + 2 * k},
                                 {h + a, h + a + k},
                                 {h + a + 2 * k, end}};
                    what = "swap";
                    break;
                case FaultKind::kCorrupt:
                    corrupt_begin_ = h + a;
                    corrupt_end_ = h + a + k;
                    what = "corrupt";
                    break;
                case FaultKind::kInsert:
                    segments_ = {{0, h + a}, {0, k, Source::kGarbage}, {h + a, end}};
                    what = "insert";
                    break;
                case FaultKind::kForeign:
                    segments_ = {{0, h + a}, {a, a + k, Source::kForeign}, {h + a + k, end}};
                    what = "foreign";
                    break;
                case FaultKind::kNone:
                    break;
            }
            fault_text_ = std::string(what) + " " + std::to_string(k) +
                          " bytes at payload offset " + std::to_string(a);
        }
    }
    for (const auto& s : segments_) wire_len_ += s.end - s.begin;
    pick_next_message();
}

void StreamSender::pick_next_message() {
    msg_left_ = std::min(rng_.log_uniform(params_.min_msg, params_.max_msg), wire_len_ - wire_pos_);
}

std::span<const uint8_t> StreamSender::current_message(std::vector<uint8_t>& scratch) {
    if (scratch.size() < msg_left_) scratch.resize(msg_left_);
    generate(wire_pos_, scratch.data(), msg_left_);
    return {scratch.data(), static_cast<size_t>(msg_left_)};
}

std::chrono::milliseconds StreamSender::advance(size_t n) {
    n = std::min<uint64_t>(n, msg_left_);
    wire_pos_ += n;
    msg_left_ -= n;
    if (msg_left_ > 0 || done()) return std::chrono::milliseconds(0);
    pick_next_message();
    if (params_.max_pause_ms == 0) return std::chrono::milliseconds(0);
    return std::chrono::milliseconds(rng_.uniform(0, params_.max_pause_ms));
}

void StreamSender::generate(uint64_t wire_offset, uint8_t* out, size_t n) const {
    uint64_t seg_wire_begin = 0;
    for (const auto& s : segments_) {
        const uint64_t seg_len = s.end - s.begin;
        if (n == 0) break;
        if (wire_offset < seg_wire_begin + seg_len) {
            const uint64_t within = wire_offset - seg_wire_begin;
            const size_t take = std::min<uint64_t>(n, seg_len - within);
            generate_source(s, s.begin + within, out, take);
            out += take;
            n -= take;
            wire_offset += take;
        }
        seg_wire_begin += seg_len;
    }
}

void StreamSender::generate_source(const Segment& seg, uint64_t src, uint8_t* out, size_t n) const {
    if (seg.source != Source::kOwn) {
        // Injected foreign bytes: payload offsets of another stream's pattern.
        fill_pattern(seg.source == Source::kForeign ? foreign_key_ : garbage_key_, src, out, n);
        return;
    }
    const uint64_t src_begin = src;
    const uint64_t src_end = src + n;
    uint8_t* p = out;
    if (src < kHeaderSize) {
        const size_t take = std::min<uint64_t>(n, kHeaderSize - src);
        std::memcpy(p, header_bytes_.data() + src, take);
        p += take;
        src += take;
        n -= take;
    }
    if (n > 0) fill_pattern(key_, src - kHeaderSize, p, n);
    // Injected corruption: flip bits in place, keeping length and offsets intact.
    const uint64_t lo = std::max(src_begin, corrupt_begin_);
    const uint64_t hi = std::min(src_end, corrupt_end_);
    for (uint64_t o = lo; o < hi; ++o) out[o - src_begin] ^= 0x5a;
}

// ---------------------------------------------------------------------------------------------
// IntervalSet

uint64_t IntervalSet::insert(uint64_t lo, uint64_t hi) {
    if (lo >= hi) return 0;
    auto it = ranges_.upper_bound(lo);
    if (it != ranges_.begin() && std::prev(it)->second >= lo) --it;
    if (it == ranges_.end() || it->first > hi) {
        ranges_.emplace_hint(it, lo, hi);
        total_ += hi - lo;
        return hi - lo;
    }
    // Merge every range that overlaps or touches [lo, hi) into one.
    auto first = it;
    uint64_t new_lo = std::min(lo, it->first);
    uint64_t new_hi = hi;
    uint64_t overlap = 0;
    for (; it != ranges_.end() && it->first <= hi; ++it) {
        const uint64_t ol = std::max(it->first, lo);
        const uint64_t oh = std::min(it->second, hi);
        if (oh > ol) overlap += oh - ol;
        new_hi = std::max(new_hi, it->second);
    }
    if (first->first == new_lo) {
        first->second = new_hi;  // common case: extend in place, no allocation
        ranges_.erase(std::next(first), it);
    } else {
        ranges_.erase(first, it);
        ranges_.emplace(new_lo, new_hi);
    }
    const uint64_t fresh = (hi - lo) - overlap;
    total_ += fresh;
    return fresh;
}

bool IntervalSet::contains(uint64_t x) const {
    auto it = ranges_.upper_bound(x);
    if (it == ranges_.begin()) return false;
    --it;
    return x < it->second;
}

uint64_t IntervalSet::first_gap(uint64_t limit) const {
    if (ranges_.empty() || ranges_.begin()->first > 0) return 0;
    return std::min(ranges_.begin()->second, limit);
}

// ---------------------------------------------------------------------------------------------
// StreamVerifier

StreamVerifier::StreamVerifier(ExpectedStream expect) : expect_(std::move(expect)) {}

std::string StreamVerifier::label() const {
    std::string who;
    if (header_state_ == HeaderState::kValid) {
        who = "conn " + std::to_string(header_.conn_id);
    } else if (expect_.conn_id) {
        who = "conn " + std::to_string(*expect_.conn_id);
    } else {
        who = expect_.name;
    }
    return who + " dir " + direction_name(expect_.direction);
}

void StreamVerifier::fail(const std::string& what) {
    if (stats_.failures.size() < kMaxFailuresPerStream) {
        stats_.failures.push_back({monotonic_seconds(), label() + ": " + what});
    }
}

void StreamVerifier::fail_at(uint64_t offset, const std::string& what) {
    if (stats_.failures.size() < kMaxFailuresPerStream) {
        stats_.failures.push_back(
            {monotonic_seconds(), label() + " offset " + std::to_string(offset) + ": " + what});
    }
}

void StreamVerifier::feed(const uint8_t* data, size_t n) {
    if (finished_ || n == 0) return;
    total_in_ += n;
    if (!stash_.empty()) {
        // Rare path (only right after a mismatch): join the lookahead with the new data.
        std::vector<uint8_t> buf;
        buf.swap(stash_);
        buf.insert(buf.end(), data, data + n);
        process(buf.data(), buf.size(), false);
    } else {
        process(data, n, false);
    }
}

void StreamVerifier::finish() {
    if (finished_) return;
    if (!stash_.empty()) {
        std::vector<uint8_t> buf;
        buf.swap(stash_);
        process(buf.data(), buf.size(), true);
    }
    if (in_garbage_) end_garbage(std::nullopt);
    finished_ = true;
    switch (header_state_) {
        case HeaderState::kPending:
            // Header bytes count as lost too, so an expected-empty stream that never showed up
            // still fails.
            stats_.lost += (kHeaderSize - header_fill_) + expect_.payload_len.value_or(0);
            fail(header_fill_ == 0 ? "stream ended before any byte arrived"
                                   : "stream ended inside the header after " +
                                         std::to_string(header_fill_) + " bytes");
            break;
        case HeaderState::kInvalid:
            // The expected stream never arrived (something else did).
            stats_.lost += expect_.payload_len.value_or(0);
            break;
        case HeaderState::kValid: {
            const uint64_t missing = len_ - covered_.total();
            if (missing > 0) {
                stats_.lost += missing;
                fail_at(covered_.first_gap(len_),
                        std::to_string(missing) + " of " + std::to_string(len_) +
                            " payload bytes never arrived (lost; first missing offset shown)");
            }
            break;
        }
    }
}

void StreamVerifier::check_header() {
    std::optional<std::string> err = decode_header(header_buf_.data(), header_);
    if (!err) {
        auto mismatch = [](const char* what, uint64_t got, uint64_t want) {
            return std::string(what) + " " + std::to_string(got) + " (expected " +
                   std::to_string(want) + ")";
        };
        if (header_.direction != expect_.direction) {
            err = std::string("header direction ") + direction_name(header_.direction) +
                  " (cross-talk?)";
        } else if (expect_.conn_id && header_.conn_id != *expect_.conn_id) {
            err =
                mismatch("header names conn", header_.conn_id, *expect_.conn_id) + " (cross-talk)";
        } else if (expect_.seed && header_.seed != *expect_.seed) {
            err =
                mismatch("header seed", header_.seed, *expect_.seed) + " (stream of another run?)";
        } else if (expect_.payload_len && header_.payload_len != *expect_.payload_len) {
            err = mismatch("header payload length", header_.payload_len, *expect_.payload_len);
        }
    }
    if (err) {
        header_state_ = HeaderState::kInvalid;
        stats_.corrupted += kHeaderSize;
        fail("bad stream header: " + *err + "; rest of stream counted as corrupted");
        return;
    }
    header_state_ = HeaderState::kValid;
    key_ = stream_key(header_.seed, header_.conn_id, header_.direction);
    len_ = header_.payload_len;
}

void StreamVerifier::process(const uint8_t* p, size_t n, bool eof) {
    if (header_state_ == HeaderState::kPending) {
        const size_t take = std::min(kHeaderSize - header_fill_, n);
        std::memcpy(header_buf_.data() + header_fill_, p, take);
        header_fill_ += take;
        p += take;
        n -= take;
        if (header_fill_ < kHeaderSize) return;
        check_header();
    }
    if (header_state_ == HeaderState::kInvalid) {
        stats_.corrupted += n;
        return;
    }
    while (n > 0) {
        if (in_garbage_) {
            if (n < kGarbageLookahead && !eof) {
                stash_.assign(p, p + n);
                return;
            }
            uint64_t x = 0;
            size_t skip = 0;
            if (scan_garbage(p, n, eof, skip, x)) {
                stats_.corrupted += skip;
                garbage_len_ += skip;
                p += skip;
                n -= skip;
                end_garbage(x);
                continue;
            }
            // No stream data starts in [0, skip): all garbage. The bytes kept back may still
            // begin a run whose first aligned word is not complete yet.
            stats_.corrupted += skip;
            garbage_len_ += skip;
            p += skip;
            n -= skip;
            continue;
        }
        const size_t m = match_len(cur_, p, n);
        if (m > 0) {
            account_match(cur_, m);
            cur_ += m;
            p += m;
            n -= m;
            continue;
        }
        // Mismatch at cur_. Classify with enough lookahead unless the stream has ended.
        if (n < kLookahead && !eof) {
            stash_.assign(p, p + n);
            return;
        }
        std::optional<uint64_t> x = locate(p, n);
        if (!x) x = search_short(p, n);
        if (x) {
            note_jump(*x);
            cur_ = *x;
            continue;
        }
        start_garbage(p, n);
        ++stats_.corrupted;
        ++garbage_len_;
        ++p;
        --n;
    }
}

size_t StreamVerifier::match_len(uint64_t pos, const uint8_t* p, size_t n) const {
    uint8_t expected[4096];
    size_t done = 0;
    while (done < n) {
        const size_t k = std::min(n - done, sizeof expected);
        fill_pattern(key_, pos + done, expected, k);
        if (std::memcmp(expected, p + done, k) == 0) {
            done += k;
            continue;
        }
        size_t i = 0;
        while (expected[i] == p[done + i]) ++i;
        return done + i;
    }
    return done;
}

void StreamVerifier::account_match(uint64_t pos, uint64_t m) {
    uint64_t end = pos + m;
    if (end > len_) {
        // Correct continuation of the pattern past the announced length: the sender sent too
        // much. Reported as duplicated (extra) bytes.
        const uint64_t from = std::max(pos, len_);
        stats_.duplicated += end - from;
        if (!excess_reported_) {
            excess_reported_ = true;
            fail_at(from, "excess bytes past the announced end of stream (length " +
                              std::to_string(len_) + "), counted as duplicated");
        }
        end = from;
    }
    if (pos >= end) return;
    // Bytes already covered are duplicates; uncovered bytes below the high-water mark arrived
    // after later data did (reordered); the rest is normal in-order progress.
    const uint64_t fresh = covered_.insert(pos, end);
    const uint64_t start_new = std::max(pos, hwm_);
    const uint64_t in_order = end > start_new ? end - start_new : 0;
    stats_.duplicated += (end - pos) - fresh;
    stats_.reordered += fresh - in_order;
    hwm_ = std::max(hwm_, end);
}

std::optional<uint64_t> StreamVerifier::locate(const uint8_t* p, size_t n) const {
    uint64_t unmixed[8];
    const size_t count = unmix_windows(p, n, unmixed);
    return locate_in(key_, unmixed, count, p, len_ + kExcessSlack);
}

bool StreamVerifier::scan_garbage(const uint8_t* p, size_t n, bool eof, size_t& skip,
                                  uint64_t& resume_at) const {
    // Every 8-byte window is unmixed once (sliding by one byte, ~5 ns/byte): a window that is
    // an aligned word of this stream yields an in-range word index. Back-extending over at
    // most 7 bytes then gives the exact first byte of the run.
    const uint64_t limit_words = (len_ + kExcessSlack) / 8;
    for (size_t j = 0; j + 8 <= n; ++j) {
        const uint64_t w = (unmix64_impl(load_le64(p + j)) - key_) * kInvGolden;
        if (w > limit_words) continue;
        uint8_t prev[8];
        size_t t = 0;
        if (w > 0) {
            store_le64(prev, pattern_word(key_, w - 1));
            while (t < 7 && t < j && p[j - t - 1] == prev[7 - t]) ++t;
        }
        skip = j - t;
        resume_at = w * 8 - t;
        return true;
    }
    if (!eof) {
        skip = n > kGarbageLookahead - 1 ? n - (kGarbageLookahead - 1) : 0;
        return false;
    }
    // End of stream: a final run too short to contain an aligned word (it starts within the
    // last kGarbageLookahead - 1 bytes) is still recognised if it continues the stream in
    // place (overwrite) or at the run's start (insertion).
    const size_t tail = kGarbageLookahead - 1;
    for (size_t i = n > tail ? n - tail : 0; i < n; ++i) {
        for (const uint64_t x : {cur_ + garbage_len_ + i, cur_}) {
            if (match_len(x, p + i, n - i) == n - i) {
                skip = i;
                resume_at = x;
                return true;
            }
        }
    }
    skip = n;
    return false;
}

std::optional<uint64_t> StreamVerifier::search_short(const uint8_t* p, size_t n) {
    if (searches_ >= kMaxSearches) return std::nullopt;
    ++searches_;
    // thread_local: the blocking engine verifies from many threads.
    thread_local std::vector<uint8_t> window;
    for (const ProbeStep& step : kProbeSteps) {
        if (n < step.probe) continue;
        const uint64_t lo = cur_ > step.radius ? cur_ - step.radius : 0;
        const uint64_t hi = std::min(len_, cur_ + step.radius);  // candidate starts [lo, hi)
        if (lo >= hi) continue;
        window.resize(hi - lo + step.probe - 1);
        fill_pattern(key_, lo, window.data(), window.size());
        const void* hit = memmem(window.data(), window.size(), p, step.probe);
        if (hit != nullptr) {
            return lo + static_cast<uint64_t>(static_cast<const uint8_t*>(hit) - window.data());
        }
    }
    return std::nullopt;
}

void StreamVerifier::note_jump(uint64_t x) {
    const std::string seen = "received bytes of offset " + std::to_string(x);
    if (x < cur_) {
        const std::string back = std::to_string(cur_ - x) + " bytes back)";
        if (covered_.contains(x)) {
            fail_at(cur_, seen + " again (duplicated, " + back);
        } else {
            fail_at(cur_, seen + " late (reordered, " + back);
        }
    } else {
        fail_at(cur_, seen + ", " + std::to_string(x - cur_) +
                          " bytes ahead (bytes in between missing so far: lost or reordered)");
    }
}

void StreamVerifier::start_garbage(const uint8_t* p, size_t n) {
    in_garbage_ = true;
    garbage_len_ = 0;
    ++garbage_runs_;
    uint8_t want = 0;
    fill_pattern(key_, cur_, &want, 1);
    garbage_note_ = "first byte expected " + hex_byte(want) + " got " + hex_byte(p[0]);
    if (garbage_runs_ <= kMaxForeignChecks) {
        const std::string source = identify_foreign(p, n);
        if (!source.empty()) garbage_note_ += "; " + source;
    }
}

void StreamVerifier::end_garbage(std::optional<uint64_t> resume_at) {
    const uint64_t start = cur_;
    const uint64_t g = garbage_len_;
    std::string how;
    if (!resume_at || *resume_at == start + g) {
        // Same length as what it replaced: the offsets were delivered, just wrong. Covering
        // them keeps a bit flip from also counting as lost.
        how = resume_at ? "overwritten in place" : "until end of stream";
        const uint64_t end = std::min(start + g, len_);
        if (start < end) {
            covered_.insert(start, end);
            hwm_ = std::max(hwm_, end);
        }
        cur_ = start + g;
    } else if (*resume_at == start) {
        how = "inserted, stream resumes at the same offset";
        cur_ = start;
    } else {
        const uint64_t x = *resume_at;
        how = "then stream resumes at offset " + std::to_string(x) + " (" +
              (x > start ? std::to_string(x - start) + " bytes ahead"
                         : std::to_string(start - x) + " bytes back") +
              ")";
        cur_ = x;
    }
    fail_at(start, std::to_string(g) + " corrupted byte(s), " + how + "; " + garbage_note_);
    in_garbage_ = false;
    garbage_len_ = 0;
}

std::string StreamVerifier::identify_foreign(const uint8_t* p, size_t n) const {
    if (!expect_.run_seed || expect_.run_connections == 0) return "";
    uint64_t unmixed[8];
    const size_t count = unmix_windows(p, n, unmixed);
    if (count == 0) return "";
    const uint64_t conns = std::min<uint64_t>(expect_.run_connections, 1 << 20);
    for (uint64_t c = 0; c < conns; ++c) {
        for (Direction dir : {Direction::kClientToServer, Direction::kServerToClient}) {
            const auto id = static_cast<uint32_t>(c);
            if (id == header_.conn_id && dir == header_.direction) continue;  // own stream
            const uint64_t key = stream_key(*expect_.run_seed, id, dir);
            if (auto x = locate_in(key, unmixed, count, p, kMaxForeignWords * 8)) {
                return "data belongs to conn " + std::to_string(id) + " dir " +
                       direction_name(dir) + " offset " + std::to_string(*x) + " (cross-talk)";
            }
        }
    }
    return "";
}

}  // namespace sockaccel::streamcheck
