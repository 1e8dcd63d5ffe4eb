#include "gateway/session/data_transfer.hpp"

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

void DataTransfer::start_body(std::string& out) {
    if (dkim_) dkim_->on_body(body_pending_);
    // One allocation: a few stuffed dots, and the terminator of a message
    // whose body is all here already.
    const std::size_t held = header_out_.size() + body_pending_.size();
    out.reserve(out.size() + held + held / 32 + 16);
    writer_.write(header_out_, out);
    writer_.write(body_pending_, out);
    header_out_.clear();
    body_pending_.clear();
}

void DataTransfer::verify_dkim(const std::vector<message::HeaderField>& fields) {
    dkim_ = std::make_unique<dkim::Verifier>();
    dkim_->on_header(collector_.header(), fields);
}

void DataTransfer::finish() {
    dkim_.reset();
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
