// DataWriter: copies runs of content and inserts a "." before each dot that
// starts a line. Three booleans of state carry line position across chunks.
//
// Only a dot can need stuffing, so the content is scanned for dots with
// memchr and each is checked against the octet before it (or line_start_ for
// the first octet); the state after the chunk depends only on its last two
// octets (and last_cr_ for a one-octet chunk).
#include "gateway/smtp/data_writer.hpp"

#include <cstring>

namespace relaygate::smtp {

void DataWriter::write(std::string_view content, std::string& out) {
    if (content.empty()) return;
    const char* const data = content.data();
    const std::size_t size = content.size();
    std::size_t run = 0;  // start of the run not yet appended
    std::size_t i = 0;
    while (i < size) {
        const void* hit = std::memchr(data + i, '.', size - i);
        if (hit == nullptr) break;
        i = static_cast<std::size_t>(static_cast<const char*>(hit) - data);
        const bool at_line_start =
            i == 0 ? line_start_ : data[i - 1] == '\r' || data[i - 1] == '\n';
        if (at_line_start) {
            out.append(content.substr(run, i - run));
            out.push_back('.');  // RFC 5321 4.5.2: double a leading dot
            run = i;
        }
        ++i;
    }
    out.append(content.substr(run));
    const char last = data[size - 1];
    const bool prev_cr = size >= 2 ? data[size - 2] == '\r' : last_cr_;
    ends_crlf_ = prev_cr && last == '\n';
    last_cr_ = last == '\r';
    line_start_ = last == '\r' || last == '\n';
}

std::string_view DataWriter::terminator() const {
    return ends_crlf_ ? ".\r\n" : "\r\n.\r\n";
}

}  // namespace relaygate::smtp
