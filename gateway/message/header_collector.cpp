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

    std::size_t old_size = buffer_.size();
    std::size_t take = std::min(chunk.size(), max_ - old_size);
    buffer_.append(chunk.substr(0, take));

    // An empty first line: the header section is empty (RFC 5322 3.5).
    std::size_t end = std::string::npos;
    if (buffer_.starts_with("\r\n")) {
        end = 2;
    } else {
        std::size_t from = old_size >= 3 ? old_size - 3 : 0;
        std::size_t hit = buffer_.find("\r\n\r\n", from);
        if (hit != std::string::npos) end = hit + 4;
    }
    if (end != std::string::npos) {
        consumed = end - old_size;
        buffer_.resize(end);
        return status_ = Status::complete;
    }
    consumed = take;
    if (take < chunk.size()) return status_ = Status::too_big;
    return status_;
}

HeaderCollector::Status HeaderCollector::finish() {
    if (status_ == Status::need_more) status_ = Status::complete;
    return status_;
}

}  // namespace relaygate::message
