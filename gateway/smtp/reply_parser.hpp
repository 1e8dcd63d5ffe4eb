// Incremental parser for replies from the upstream relay (RFC 5321 4.2).
// Owns reply framing, code consistency and bounds; it does not decide what a
// reply means for the session and never does I/O.
#pragma once

#include <cstdint>
#include <string_view>

#include "gateway/smtp/line_framer.hpp"
#include "gateway/smtp/reply.hpp"

namespace relaygate::smtp {

enum class ReplyError : std::uint8_t {
    malformed_line,     // not "ddd", "ddd text" or "ddd-text"
    bad_code,           // three digits outside RFC 5321 4.2 Reply-code (2-5, 0-5, 0-9)
    inconsistent_code,  // a multi-line reply changed its code (RFC 5321 4.2.1)
    line_too_long,
    too_many_lines,
    bare_line_ending,  // bare CR or bare LF
    nul,
};

std::string_view to_string(ReplyError e);

struct ReplyLimits {
    std::size_t max_line_length = 2048;  // octets including CRLF
    std::size_t max_lines = 100;
};

struct ReplyEvent {
    enum class Kind : std::uint8_t { need_more, reply, error };
    Kind kind = Kind::need_more;
    // Octets taken; after `reply`, the rest of the input belongs to the next
    // reply (a pipelining server may send several at once, RFC 2920).
    std::size_t consumed = 0;
    ReplyError error = ReplyError::malformed_line;
    Reply reply;  // for `reply`
};

// Feed bytes, get complete replies. Errors are terminal: the upstream is not
// speaking SMTP, and the connection must be dropped; feed() keeps returning
// the error (consuming nothing) until reset().
//
// When the first line carries an enhanced status code whose class matches the
// reply code (RFC 3463, RFC 2034 4), it goes to Reply::enhanced and is removed
// from every line that repeats it.
class ReplyParser {
  public:
    explicit ReplyParser(ReplyLimits limits = {});

    ReplyEvent feed(std::string_view input);

    // Octets of an unfinished reply line held by the parser.
    std::size_t buffered() const { return framer_.buffered(); }
    // True while a multi-line reply has started but not ended.
    bool in_reply() const { return !lines_.empty(); }

    void reset();

  private:
    ReplyEvent fail(ReplyError e, std::size_t consumed);

    ReplyLimits limits_;
    LineFramer framer_;
    int code_ = 0;
    std::vector<std::string> lines_;
    bool failed_ = false;
    ReplyError error_ = ReplyError::malformed_line;
};

}  // namespace relaygate::smtp
