// LineFramer: splits an SMTP byte stream into CRLF-terminated lines, bounded.
// Owns line termination rules only (RFC 5321 2.3.8: only CRLF ends a line);
// it never interprets a line, never does I/O and never buffers more than the
// configured maximum line length.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace relaygate::smtp {

// RFC 5321 4.5.3.1.4: a command line is at most 512 octets including CRLF.
inline constexpr std::size_t kMaxCommandLine = 512;
// RFC 5321 4.5.3.1.6: a text line is at most 1000 octets including CRLF.
inline constexpr std::size_t kMaxTextLine = 1000;

enum class LineError : std::uint8_t {
    too_long,  // more than the maximum octets including CRLF
    bare_cr,   // CR not followed by LF
    bare_lf,   // LF not preceded by CR
    nul,       // a NUL octet
};

std::string_view to_string(LineError e);

struct LineEvent {
    enum class Kind : std::uint8_t { need_more, line, error };
    Kind kind = Kind::need_more;
    // Octets of the input taken by this call. For `line` and `error` the
    // caller must feed input.substr(consumed) next: those bytes were pipelined
    // after the line and belong to what follows it.
    std::size_t consumed = 0;
    // For `line`: the line without its CRLF. Points into the input or into the
    // framer's buffer; valid until the next call to feed() or reset().
    std::string_view line;
    // For `error`: the first fault seen on the line.
    LineError error = LineError::too_long;
};

// Incremental, resumable line splitter.
//
// feed() returns exactly one event: a complete line, a line that broke a rule
// (`error`), or `need_more` after taking the whole input. A bad line is
// reported once: a line that grows past the limit as soon as it does (the
// rest of it, up to its real CRLF, is then discarded silently), any other bad
// line at its CRLF. So the session replies once and is back in sync. Bytes of a line that cannot be
// valid are discarded, not buffered, so memory stays bounded by the line limit even if a peer never
// sends CRLF (the session's timeouts bound the time).
class LineFramer {
  public:
    explicit LineFramer(std::size_t max_line_length = kMaxCommandLine);

    LineEvent feed(std::string_view input);

    // Octets of an unfinished line taken by feed() and not yet returned as a
    // line or error (retained or, for a line already known bad, discarded).
    // Non-zero after a command means the client pipelined more bytes: RFC 2920
    // 3.1 forbids that after DATA, and RFC 3207 6 after STARTTLS.
    std::size_t buffered() const { return line_octets_; }

    // Maximum line length including CRLF. The session raises it for text
    // lines (1000) or AUTH exchanges (RFC 4954 4: 12288). Values under 3 are
    // raised to 3 (one octet plus CRLF). Applies from the next line on.
    void set_max_line_length(std::size_t n);
    std::size_t max_line_length() const { return max_; }

    // Forgets any partial line (e.g. after STARTTLS, RFC 3207 4.2).
    void reset();

  private:
    LineEvent finish_line(std::string_view input, std::size_t start, std::size_t end);
    void note(LineError e);

    std::size_t max_;
    std::string buf_;  // retained octets of the unfinished line, at most max_
    std::size_t line_octets_ = 0;
    bool pending_cr_ = false;   // last octet seen was a CR
    bool release_buf_ = false;  // buf_ was returned as a line: clear on next feed
    bool skipping_ = false;     // a too-long line was reported: discard to its CRLF
    std::optional<LineError> error_;
};

}  // namespace relaygate::smtp
