#include "gateway/session/data_transfer.hpp"

#include <iterator>

#include <fmt/format.h>

namespace relaygate::session {

DataTransfer::DataTransfer(const config::Limits& limits)
    : reader_(smtp::DataLimits{limits.max_message_bytes, limits.max_text_line}),
      collector_(limits.max_header_bytes) {}

void DataTransfer::start() {
    reader_.reset();
    collector_.reset();
    writer_.reset();
    body_pending_.clear();
    header_out_.clear();
    dkim_seen_ = 0;
    dkim_.reset();
}

DataTransfer::Fed DataTransfer::feed(std::string_view input) {
    Fed fed;
    content_.clear();
    auto r = reader_.feed(input, content_);
    fed.consumed = r.consumed;
    fed.done = r.done;
    if (content_.empty() || reader_.error() != smtp::DataError::none) return fed;
    std::string_view content = content_;
    switch (phase_) {
        case Phase::header: {
            std::size_t used = 0;
            const auto st = collector_.feed(content, used);
            if (st == message::HeaderCollector::Status::too_big) {
                fed.header_too_big = true;
            } else if (st == message::HeaderCollector::Status::complete) {
                body_pending_.append(content.substr(used));
                fed.header_complete = true;
            }
            break;
        }
        case Phase::waiting_dns:
        case Phase::waiting_limits:
        case Phase::waiting_354:
            body_pending_.append(content);
            break;
        case Phase::holding:
            body_pending_.append(content);
            show_dkim_held();
            break;
        case Phase::body:
            if (dkim_) dkim_->on_body(content);
            writer_.write(content, fed.upstream);
            break;
        case Phase::none:
        case Phase::discard:
            break;
    }
    return fed;
}

void DataTransfer::show_dkim_held() {
    if (dkim_) dkim_->on_body(std::string_view(body_pending_).substr(dkim_seen_));
    dkim_seen_ = body_pending_.size();
}

void DataTransfer::start_body(std::string& out) {
    show_dkim_held();
    // One allocation: a few stuffed dots, and the terminator of a message
    // whose body is all here already.
    const std::size_t held = held_size();
    out.reserve(out.size() + held + held / 32 + 16);
    writer_.write(header_out_, out);
    writer_.write(body_pending_, out);
    header_out_.clear();
    body_pending_.clear();
    dkim_seen_ = 0;
}

void DataTransfer::last_chunk(std::string& out) {
    show_dkim_held();
    // What a DATA transfer would deliver: the content, and the CRLF its
    // terminator adds to a last line without one (DataWriter::terminator).
    const auto from_end = [this](std::size_t i) {  // the i-th octet from the end, i >= 1
        return i <= body_pending_.size() ? body_pending_[body_pending_.size() - i]
                                         : header_out_[held_size() - i];
    };
    const bool ends_crlf =
        held_size() == 0 || (held_size() >= 2 && from_end(2) == '\r' && from_end(1) == '\n');
    const std::string_view crlf = ends_crlf ? "" : "\r\n";
    out.reserve(out.size() + 32 + held_size() + crlf.size());
    fmt::format_to(std::back_inserter(out), "BDAT {} LAST\r\n", held_size() + crlf.size());
    out += header_out_;
    out += body_pending_;
    out += crlf;
    header_out_.clear();
    body_pending_.clear();
    dkim_seen_ = 0;
}

void DataTransfer::verify_dkim(const std::vector<message::HeaderField>& fields) {
    dkim_ = std::make_unique<dkim::Verifier>();
    dkim_->on_header(collector_.header(), fields);
}

void DataTransfer::finish() {
    dkim_.reset();
    dkim_seen_ = 0;
    // A 1 MiB message must not leave 1 MiB behind in an idle session:
    // shrink what grew, keep what is small (most sessions send small mail).
    constexpr std::size_t kKeep = 4096;
    for (std::string* b : {&content_, &body_pending_, &header_out_})
        if (b->capacity() > kKeep)
            std::string().swap(*b);
        else
            b->clear();
    collector_.reset();
}

}  // namespace relaygate::session
