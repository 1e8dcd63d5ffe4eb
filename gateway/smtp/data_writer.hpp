// DataWriter: dot-stuffs message content for the upstream (RFC 5321 4.5.2)
// and produces the end-of-data terminator separately, because sending the
// terminator is the gateway's commit point. Pure: appends to a string.
#pragma once

#include <string>
#include <string_view>

namespace relaygate::smtp {

// The content given is what DataReader delivered: CRLF-clean, ending in CRLF
// or empty. Writing it and re-reading the output with DataReader gives the
// same content back.
//
// As a defence against a lenient upstream that treats a bare CR or LF as a
// line end (the SMTP smuggling family), a "." is also stuffed after a bare CR
// or LF; that cannot happen with CRLF-clean content, so it never changes what
// a strict reader sees.
class DataWriter {
  public:
    // Appends `content`, dot-stuffed, to `out`. A chunk boundary may fall
    // anywhere, including between a CRLF and a leading dot.
    void write(std::string_view content, std::string& out);

    // The end-of-data terminator: ".\r\n" when the content so far ends with
    // CRLF or is empty (the start of data counts as after CRLF, RFC 5321
    // 4.1.1.4), otherwise "\r\n.\r\n". The caller sends it when it commits.
    std::string_view terminator() const;

    // Ready for the next message.
    void reset() { *this = DataWriter{}; }

  private:
    bool line_start_ = true;  // nothing written yet, or the last octet was CR or LF
    bool ends_crlf_ = true;   // empty, or the last two octets were CRLF
    bool last_cr_ = false;
};

}  // namespace relaygate::smtp
