// Streaming boundary finder: buffers message data (dot-unstuffed) until the
// empty line that ends the header section (RFC 5322 2.1), within a bound.
// Sans-I/O: the caller moves the bytes; this never looks past the header.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace relaygate::message {

class HeaderCollector {
  public:
    explicit HeaderCollector(std::size_t max_header_bytes);

    enum class Status { need_more, complete, too_big };

    // Consumes up to and including the CRLF CRLF that ends the header section,
    // never beyond. `consumed` is how many bytes of `chunk` were taken. Once
    // complete or too_big, further calls consume nothing and repeat the status.
    // too_big: more than max_header_bytes without the end of the header.
    Status feed(std::string_view chunk, std::size_t& consumed);

    // End of data without an empty line: the whole message is the header section.
    Status finish();

    // Ready for the next message, with the buffer's memory released.
    void reset();

    Status status() const { return status_; }
    std::string_view header() const { return buffer_; }  // the buffered header section

  private:
    std::size_t max_;
    std::string buffer_;
    Status status_ = Status::need_more;
};

}  // namespace relaygate::message
