// DataReader: the mail data after a 354, up to the real CRLF.CRLF
// (RFC 5321 4.1.1.4, 4.5.2). Owns end-of-data detection, dot un-stuffing and
// the content checks that defeat SMTP smuggling; it does not look inside the
// message (gateway/message does) and never does I/O.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

#include "gateway/common/reason.hpp"
#include "gateway/smtp/line_framer.hpp"

namespace relaygate::smtp {

enum class DataError : std::uint8_t {
    none,
    bare_cr,        // CR not followed by LF
    bare_lf,        // LF not preceded by CR
    nul,            // NUL octet
    line_too_long,  // a line over max_line_length octets, CRLF included
    too_big,        // un-stuffed content over max_message_size
};

std::string_view to_string(DataError e);
Reason reason(DataError e);  // the reply for a rejected message; accepted for none

struct DataLimits {
    // Un-stuffed octets, CRLFs included, terminator excluded (RFC 1870 SIZE
    // counts the same). Postfix's default message_size_limit.
    std::uint64_t max_message_size = 10'240'000;
    std::size_t max_line_length = kMaxTextLine;  // RFC 5321 4.5.3.1.6
};

// A non-owning reference to a callable taking std::string_view: the reader
// hands content to the gateway without allocating or copying.
class ContentSink {
  public:
    template <class F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, ContentSink>)
        ContentSink(F&& f)  // NOLINT(google-explicit-constructor): used as a parameter
        : obj_(const_cast<void*>(static_cast<const void*>(&f))),
          call_([](void* o, std::string_view s) {
              (*static_cast<std::remove_reference_t<F>*>(o))(s);
          }) {}
    void operator()(std::string_view s) const { call_(obj_, s); }

  private:
    void* obj_;
    void (*call_)(void*, std::string_view);
};

// Incremental reader for one message.
//
// End of data is ONLY the sequence CRLF "." CRLF, where the start of the data
// counts as following a CRLF (RFC 5321 4.1.1.4). A bare CR or LF never starts
// or ends a line, so "\n.\n", "\r.\r", "\r\n.\n", "\n.\r\n" and the rest of
// that family are content (and make the message invalid), never an end.
//
// A line starting with "." has that dot removed (RFC 5321 4.5.2). Content goes
// to the sink in spans: the first line-ending fault, NUL, over-long line or
// size overrun stops the output for good, so what the sink received is always
// a CRLF-clean prefix of the message. The reader keeps reading to the real
// end of data and reports the first fault then, so the reply comes once, at
// the point where the client expects it.
class DataReader {
  public:
    struct FeedResult {
        bool done = false;
        // Octets taken. When done, input.substr(consumed) was pipelined after
        // the end of data and is the next command (RFC 2920).
        std::size_t consumed = 0;
    };

    explicit DataReader(DataLimits limits = {});

    FeedResult feed(std::string_view input, ContentSink sink);
    // Convenience: appends the content to `out`.
    FeedResult feed(std::string_view input, std::string& out);

    bool done() const { return state_ == State::done; }
    // The first fault so far. Known before done(): the gateway can stop
    // forwarding at once; the client is answered after the end of data.
    DataError error() const { return error_; }
    // Un-stuffed octets seen so far, including those not delivered after a
    // fault (saturating).
    std::uint64_t size() const { return size_; }
    // Octets handed to the sink.
    std::uint64_t delivered() const { return delivered_; }

    void reset();

  private:
    enum class State : std::uint8_t { line_start, dot, dot_cr, text, cr, done };

    void fault(DataError e);
    bool account(std::size_t n);  // counts n content octets; false once faulted
    void content(std::string_view input, std::size_t pos, std::size_t n);
    void emit(std::string_view input, std::size_t pos, std::size_t n);
    void emit_cr();  // a CR held back from the previous feed()
    // A run of n octets other than CR, LF and NUL at input[pos] in state text.
    void text_run(std::string_view input, std::size_t pos, std::size_t n);
    void flush();

    DataLimits limits_;
    State state_ = State::line_start;
    DataError error_ = DataError::none;
    std::uint64_t size_ = 0;
    std::uint64_t delivered_ = 0;
    std::size_t line_octets_ = 0;
    bool cr_in_input_ = false;  // the pending CR is at input[i-1], not from a previous call

    // Span of the current input pending delivery to the sink.
    const ContentSink* sink_ = nullptr;
    const char* span_ = nullptr;
    std::size_t span_len_ = 0;
};

}  // namespace relaygate::smtp
