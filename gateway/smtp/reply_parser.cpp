// Upstream reply parsing on top of LineFramer: one line at a time, the reply
// is complete at the first line whose code is followed by SP or CRLF.
#include "gateway/smtp/reply_parser.hpp"

#include "gateway/common/ascii.hpp"

namespace relaygate::smtp {
namespace {

// Strips "c.s.d " (or a text that is only "c.s.d") from the front of `text`
// if it is exactly `enhanced`.
std::string_view strip_enhanced(std::string_view text, std::string_view enhanced) {
    if (enhanced.empty() || !text.starts_with(enhanced)) return text;
    std::string_view rest = text.substr(enhanced.size());
    if (rest.empty()) return rest;
    if (rest.front() == ' ') return rest.substr(1);
    return text;
}

// The enhanced code at the front of `text`, if any, of class `cls`.
std::string_view leading_enhanced(std::string_view text, char cls) {
    const auto sp = text.find(' ');
    std::string_view word = text.substr(0, sp);
    if (!is_enhanced_code(word) || word.front() != cls) return {};
    return word;
}

}  // namespace

std::string_view to_string(ReplyError e) {
    switch (e) {
        case ReplyError::malformed_line:
            return "malformed reply line";
        case ReplyError::bad_code:
            return "invalid reply code";
        case ReplyError::inconsistent_code:
            return "reply code changed within a multi-line reply";
        case ReplyError::line_too_long:
            return "reply line too long";
        case ReplyError::too_many_lines:
            return "too many reply lines";
        case ReplyError::bare_line_ending:
            return "bare CR or LF in reply";
        case ReplyError::nul:
            return "NUL in reply";
    }
    return "bad reply";
}

ReplyParser::ReplyParser(ReplyLimits limits) : limits_(limits), framer_(limits.max_line_length) {}

void ReplyParser::reset() {
    framer_.reset();
    code_ = 0;
    lines_.clear();
    failed_ = false;
}

ReplyEvent ReplyParser::fail(ReplyError e, std::size_t consumed) {
    failed_ = true;
    error_ = e;
    ReplyEvent ev;
    ev.kind = ReplyEvent::Kind::error;
    ev.consumed = consumed;
    ev.error = e;
    return ev;
}

ReplyEvent ReplyParser::feed(std::string_view input) {
    if (failed_) return fail(error_, 0);
    std::size_t pos = 0;
    for (;;) {
        LineEvent le = framer_.feed(input.substr(pos));
        pos += le.consumed;
        if (le.kind == LineEvent::Kind::need_more) {
            ReplyEvent ev;
            ev.consumed = pos;
            return ev;
        }
        if (le.kind == LineEvent::Kind::error) {
            switch (le.error) {
                case LineError::too_long:
                    return fail(ReplyError::line_too_long, pos);
                case LineError::nul:
                    return fail(ReplyError::nul, pos);
                default:
                    return fail(ReplyError::bare_line_ending, pos);
            }
        }
        std::string_view line = le.line;
        // Reply-line = *( Reply-code "-" [ textstring ] CRLF )
        //              Reply-code [ SP textstring ] CRLF      (RFC 5321 4.2)
        if (line.size() < 3) return fail(ReplyError::malformed_line, pos);
        for (int i = 0; i < 3; ++i)
            if (!ascii::is_digit(static_cast<unsigned char>(line[i])))
                return fail(ReplyError::malformed_line, pos);
        if (line[0] < '2' || line[0] > '5' || line[1] > '5') return fail(ReplyError::bad_code, pos);
        const int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        bool last = true;
        std::string_view text;
        if (line.size() > 3) {
            if (line[3] == '-')
                last = false;
            else if (line[3] != ' ')
                return fail(ReplyError::malformed_line, pos);
            text = line.substr(4);
        }
        if (!lines_.empty() && code != code_) return fail(ReplyError::inconsistent_code, pos);
        if (lines_.size() >= limits_.max_lines) return fail(ReplyError::too_many_lines, pos);
        code_ = code;
        if (!last) {
            lines_.emplace_back(text);
            continue;
        }

        // The last line is still in the input: a one-line reply (the
        // usual) is made from it without a copy in lines_.
        ReplyEvent ev;
        ev.kind = ReplyEvent::Kind::reply;
        ev.consumed = pos;
        ev.reply.code = code_;
        ev.reply.enhanced =
            std::string(leading_enhanced(lines_.empty() ? text : lines_.front(), line[0]));
        ev.reply.lines.reserve(lines_.size() + 1);
        for (auto& l : lines_)
            ev.reply.lines.emplace_back(strip_enhanced(l, ev.reply.enhanced));
        ev.reply.lines.emplace_back(strip_enhanced(text, ev.reply.enhanced));
        lines_.clear();
        code_ = 0;
        return ev;
    }
}

}  // namespace relaygate::smtp
