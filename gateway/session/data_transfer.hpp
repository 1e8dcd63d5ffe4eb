// The data transfer of one message, between DATA's 354 and the end of data:
// the client's bytes are un-stuffed (DataReader), the header section is
// collected (HeaderCollector), body bytes are held back until the relay's
// 354 and then dot-stuffed for it (DataWriter), or, towards a relay that
// offers CHUNKING, held whole and sent as one BDAT LAST (RFC 3030). The DKIM
// verifier, when the session wants one, sees every byte. It decides
// nothing: the session moves it from phase to phase.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/config/config.hpp"
#include "gateway/dkim/verifier.hpp"
#include "gateway/message/header_collector.hpp"
#include "gateway/smtp/data_reader.hpp"
#include "gateway/smtp/data_writer.hpp"

namespace relaygate::session {

class DataTransfer {
  public:
    enum class Phase : std::uint8_t {
        none,            // no DATA in progress
        header,          // collecting the header section
        waiting_dns,     // header complete, the policy waits for a DNS proof
        waiting_limits,  // header accepted, the volume-control store decides
        waiting_354,     // header accepted, DATA sent upstream
        holding,         // header accepted, the message held for one BDAT LAST
        body,            // streaming to the relay
        discard,         // refused: read to the end, forward nothing
    };

    explicit DataTransfer(const config::Limits& limits);

    // What one feed() produced.
    struct Fed {
        std::size_t consumed = 0;
        bool done = false;             // the end-of-data line was read
        bool header_complete = false;  // the header section just ended
        bool header_too_big = false;
        std::string upstream;  // body phase: dot-stuffed bytes to write upstream
    };

    void start();  // DATA got its 354: read a new message
    Fed feed(std::string_view input);
    // The phase decides where content goes; only the session changes it
    // (SessionMachine::enter), after the calls below.
    Phase phase() const { return phase_; }
    // Entering Phase::holding, the DKIM verifier sees the body held so far.
    void set_phase(Phase p) {
        phase_ = p;
        if (p == Phase::holding) show_dkim_held();
    }

    // The header to forward once the 354 comes (the verdict header first),
    // empty, for the session to write (its memory is reused).
    std::string& held_header() {
        header_out_.clear();
        header_out_.reserve(256 + collector_.header().size());  // with the verdict line
        return header_out_;
    }
    // The 354 came: the header and the body read so far, dot-stuffed,
    // appended to `out`, with room for the rest of a small message.
    void start_body(std::string& out);
    // Octets held for the relay (header and body) before any was sent.
    std::size_t held_size() const { return header_out_.size() + body_pending_.size(); }
    // Phase::holding at the end of data: the whole message, un-stuffed, as
    // one "BDAT <size> LAST" command appended to `out` (RFC 3030 2).
    void last_chunk(std::string& out);
    // Ends the message (finished or abandoned); big buffers are released.
    void finish();

    // End of data without an empty line: the whole message is its header.
    bool finish_header_too_big() {
        return collector_.finish() == message::HeaderCollector::Status::too_big;
    }
    std::string_view header() const { return collector_.header(); }
    smtp::DataError reader_error() const { return reader_.error(); }
    std::uint64_t size() const { return reader_.size(); }
    std::string_view terminator() const { return writer_.terminator(); }

    // DKIM: a verifier that sees the header now and every body byte after.
    void verify_dkim(const std::vector<message::HeaderField>& fields);
    dkim::Verifier* dkim() { return dkim_.get(); }

  private:
    smtp::DataReader reader_;
    message::HeaderCollector collector_;
    smtp::DataWriter writer_;
    Phase phase_ = Phase::none;
    std::string content_;        // un-stuffed content of the current input chunk
    std::string body_pending_;   // body content received before the upstream's 354
    std::string header_out_;     // verdict header + client header, ready to forward
    std::size_t dkim_seen_ = 0;  // octets of body_pending_ the DKIM verifier has seen
    std::unique_ptr<dkim::Verifier> dkim_;

    // The DKIM verifier (if any) sees the held body it has not seen yet.
    void show_dkim_held();
};

std::string_view to_string(DataTransfer::Phase p);

}  // namespace relaygate::session
