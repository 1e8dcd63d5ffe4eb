// DataWriter: copies runs of content and inserts a "." before each dot that
// starts a line. Three booleans of state carry line position across chunks.
#include "gateway/smtp/data_writer.hpp"

namespace relaygate::smtp {

void DataWriter::write(std::string_view content, std::string& out) {
    std::size_t run = 0;  // start of the run not yet appended
    for (std::size_t i = 0; i < content.size(); ++i) {
        const char c = content[i];
        if (c == '.' && line_start_) {
            out.append(content.substr(run, i - run));
            out.push_back('.');  // RFC 5321 4.5.2: double a leading dot
            run = i;
        }
        ends_crlf_ = last_cr_ && c == '\n';
        last_cr_ = c == '\r';
        line_start_ = c == '\r' || c == '\n';
    }
    out.append(content.substr(run));
}

std::string_view DataWriter::terminator() const {
    return ends_crlf_ ? ".\r\n" : "\r\n.\r\n";
}

}  // namespace relaygate::smtp
