// SPDX-License-Identifier: Apache-2.0
#include <utility>

#include "sockaccel/proto/protocol.h"

namespace sockaccel::proto {

void LineFramer::append(std::string_view bytes) {
    // After an overflow the stream position of the next line is unknown, so
    // nothing more is accepted; the connection is about to be closed anyway.
    if (overflowed_) {
        return;
    }
    while (!bytes.empty()) {
        const std::size_t nl = bytes.find('\n');
        if (nl == std::string_view::npos) {
            take_segment(bytes, false);
            return;
        }
        if (!take_segment(bytes.substr(0, nl), true)) {
            return;
        }
        bytes.remove_prefix(nl + 1);
    }
}

bool LineFramer::take_segment(std::string_view segment, bool ends_line) {
    const std::size_t len = partial_.size() + segment.size();
    // Check before copying so a huge chunk never lands in the buffer. A
    // trailing "\r" does not count towards the limit, so an unterminated line
    // may hold kMaxLineBytes + 1 bytes if the last one could be that "\r".
    bool too_long = len > kMaxLineBytes + 1;
    if (len == kMaxLineBytes + 1) {
        // len > 0, so at least one of the two is non-empty.
        const char last = segment.empty() ? partial_.back() : segment.back();
        too_long = last != '\r';
    }
    if (too_long) {
        overflowed_ = true;
        // Release the memory of the partial line, not just its contents.
        std::string().swap(partial_);
        return false;
    }

    partial_.append(segment);
    if (!ends_line) {
        return true;
    }
    if (!partial_.empty() && partial_.back() == '\r') {
        partial_.pop_back();
    }
    if (!partial_.empty()) {
        complete_bytes_ += partial_.size();
        lines_.push_back(std::move(partial_));
    }
    // A moved-from string is valid but unspecified; make it empty explicitly.
    partial_.clear();
    return true;
}

std::optional<std::string> LineFramer::next_line() {
    if (lines_.empty()) {
        return std::nullopt;
    }
    std::string line = std::move(lines_.front());
    lines_.pop_front();
    complete_bytes_ -= line.size();
    return line;
}

}  // namespace sockaccel::proto
