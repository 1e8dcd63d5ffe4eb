// Finds the end of the header section across chunk boundaries. Only CRLF ends
// a line (RFC 5322 2.1, 2.2); bare CR or LF are left for read_header to refuse.
#include "gateway/message/header_collector.hpp"

#include <algorithm>

namespace relaygate::message {

HeaderCollector::HeaderCollector(std::size_t max_header_bytes) : max_(max_header_bytes) {}

HeaderCollector::Status HeaderCollector::feed(std::string_view chunk, std::size_t& consumed) {
    consumed = 0;
    if (status_ != Status::need_more || chunk.empty()) return status_;
    if (buffer_.size() >= max_) return status_ = Status::too_big;

    const std::size_t old_size = buffer_.size();
    const std::size_t take = std::min(chunk.size(), max_ - old_size);
    const std::string_view part = chunk.substr(0, take);
    // Octets of `part` up to and including the end of the header section.
    // Only those are buffered: the body that follows stays in the caller's
    // chunk (a 60 KiB read must not grow the header buffer to 60 KiB).
    std::size_t end = std::string::npos;
    if (old_size < 2) {
        // An empty first line: the header section is empty (RFC 5322 3.5).
        const std::string first = buffer_ + std::string(part.substr(0, 2 - old_size));
        if (first == "\r\n") end = 2 - old_size;
    }
    if (end == std::string::npos) {
        // The CRLF CRLF may straddle the boundary: the last 3 buffered octets
        // and the first 3 new ones. (The buffer alone never holds it.)
        const std::size_t tail = std::min<std::size_t>(old_size, 3);
        const std::string edge = buffer_.substr(old_size - tail) + std::string(part.substr(0, 3));
        if (auto hit = edge.find("\r\n\r\n"); hit != std::string::npos)
            end = hit + 4 - tail;
        else if (hit = part.find("\r\n\r\n"); hit != std::string::npos)
            end = hit + 4;
    }
    if (end != std::string::npos) {
        buffer_.append(part.substr(0, end));
        consumed = end;
        return status_ = Status::complete;
    }
    buffer_.append(part);
    consumed = take;
    if (take < chunk.size()) return status_ = Status::too_big;
    return status_;
}

void HeaderCollector::reset() {
    // A usual header's memory is kept for the next message; a big one's is
    // given back, not just its size.
    if (buffer_.capacity() > 4096)
        std::string().swap(buffer_);
    else
        buffer_.clear();
    status_ = Status::need_more;
}

HeaderCollector::Status HeaderCollector::finish() {
    if (status_ == Status::need_more) status_ = Status::complete;
    return status_;
}

}  // namespace relaygate::message
