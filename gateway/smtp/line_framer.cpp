// LineFramer implementation: one pass over the input, one event per call.
// The only state kept across calls is the unfinished line (bounded) and
// whether its last octet was a CR.
#include "gateway/smtp/line_framer.hpp"

#include <algorithm>

namespace relaygate::smtp {
namespace {

bool is_ordinary(char c) {
    return c != '\r' && c != '\n' && c != '\0';
}

}  // namespace

std::string_view to_string(LineError e) {
    switch (e) {
        case LineError::too_long:
            return "line too long";
        case LineError::bare_cr:
            return "bare CR";
        case LineError::bare_lf:
            return "bare LF";
        case LineError::nul:
            return "NUL octet";
    }
    return "bad line";
}

LineFramer::LineFramer(std::size_t max_line_length) {
    set_max_line_length(max_line_length);
}

void LineFramer::set_max_line_length(std::size_t n) {
    max_ = n < 3 ? 3 : n;
}

void LineFramer::reset() {
    buf_.clear();
    line_octets_ = 0;
    pending_cr_ = false;
    release_buf_ = false;
    skipping_ = false;
    error_.reset();
}

void LineFramer::note(LineError e) {
    if (skipping_) return;  // the line was reported already
    if (!error_) error_ = e;
    // A bad line is never returned: stop retaining it.
    buf_.clear();
}

LineEvent LineFramer::feed(std::string_view input) {
    if (release_buf_) {
        buf_.clear();
        release_buf_ = false;
    }
    std::size_t start = 0;  // where the current line begins in `input`
    for (std::size_t i = 0; i < input.size(); ++i) {
        if (!pending_cr_) {
            // Octets that are neither CR, LF nor NUL need nothing but
            // counting, as long as the line still fits with its CRLF (or
            // is being skipped anyway): taken as a run.
            const std::size_t room = max_ - 2 > line_octets_ ? max_ - 2 - line_octets_ : 0;
            const std::size_t end = skipping_ ? input.size() : std::min(input.size(), i + room);
            const std::size_t from = i;
            while (i < end && is_ordinary(input[i]))
                ++i;
            line_octets_ += i - from;
            if (i == input.size()) break;
        }
        const auto c = static_cast<unsigned char>(input[i]);
        ++line_octets_;
        if (pending_cr_) {
            pending_cr_ = false;
            if (c == '\n') {
                if (!skipping_) return finish_line(input, start, i + 1);
                // The end of a line reported early: back in sync.
                skipping_ = false;
                line_octets_ = 0;
                start = i + 1;
                continue;
            }
            // RFC 5321 2.3.8: a CR on its own is not a line ending.
            note(LineError::bare_cr);
        }
        if (c == '\r') {
            pending_cr_ = true;
        } else if (c == '\n') {
            note(LineError::bare_lf);
        } else if (c == '\0') {
            note(LineError::nul);
        }
        // RFC 5321 4.5.3.1.4/4.5.3.1.6 limits count the CRLF: report as soon
        // as the line can no longer fit (a peer that never sends CRLF gets
        // its reply now, not at a timeout), then discard the rest of it.
        if (!skipping_ && line_octets_ + (pending_cr_ ? 1 : 2) > max_) {
            note(LineError::too_long);
            LineEvent ev{LineEvent::Kind::error, i + 1, {}, *error_};
            error_.reset();
            skipping_ = true;
            return ev;
        }
    }
    // Out of input: retain the tail of a line that may still be valid.
    if (!error_ && !skipping_) buf_.append(input.substr(start));
    return LineEvent{LineEvent::Kind::need_more, input.size(), {}, LineError::too_long};
}

LineEvent LineFramer::finish_line(std::string_view input, std::size_t start, std::size_t end) {
    LineEvent ev;
    ev.consumed = end;
    line_octets_ = 0;
    if (error_) {
        ev.kind = LineEvent::Kind::error;
        ev.error = *error_;
        error_.reset();
        buf_.clear();
        return ev;
    }
    ev.kind = LineEvent::Kind::line;
    if (buf_.empty()) {
        ev.line = input.substr(start, end - 2 - start);
    } else {
        // Part of the line came in an earlier call (so it starts at 0 here);
        // the CR may be in buf_.
        buf_.append(input.substr(start, end - start));
        ev.line = std::string_view(buf_).substr(0, buf_.size() - 2);
        release_buf_ = true;
    }
    return ev;
}

}  // namespace relaygate::smtp
