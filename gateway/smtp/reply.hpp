// The SMTP reply model and its wire format (RFC 5321 4.2, RFC 3463, RFC 2034).
// Owns how a reply is written; parsing upstream replies is reply_parser.hpp.
// Pure: builds strings, never writes to a socket.
#pragma once

#include <string>
#include <vector>

#include <boost/container/small_vector.hpp>

#include "gateway/common/reason.hpp"

namespace relaygate::smtp {

// RFC 5321 4.5.3.1.5: a reply line is at most 512 octets including CRLF.
inline constexpr std::size_t kMaxReplyLine = 512;

struct Reply {
    int code = 0;          // 200..599
    std::string enhanced;  // "2.1.0"; empty where RFC 2034 3 omits it (greeting, EHLO)
    // Text of each line, without code or enhanced code. Most replies have
    // one line: it is held inline (no allocation for the list).
    boost::container::small_vector<std::string, 1> lines;

    bool positive() const { return code >= 200 && code < 400; }
    bool tempfail() const { return code / 100 == 4; }
    bool permfail() const { return code / 100 == 5; }
    friend bool operator==(const Reply&, const Reply&) = default;
};

// "250-first\r\n250 last\r\n", with the enhanced code on every line
// (RFC 2034 4). Text is made safe for the wire: octets outside RFC 5321
// textstring (HTAB, %d32-126) become '?', and a line is cut so that it fits
// in 512 octets; an empty `lines` gives one line with no text.
std::string format_reply(const Reply& r);

// The reply for a reason from the reason table.
Reply make_reply(Reason r);

// True for "c.s.d" with c in {2,4,5} and s, d of 1-3 digits (RFC 3463 2).
bool is_enhanced_code(std::string_view s);

}  // namespace relaygate::smtp
