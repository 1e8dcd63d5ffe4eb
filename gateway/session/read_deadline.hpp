// Which deadline bounds the next client read, and what its passing means:
// RFC 5321 4.5.3.2 per stage (a whole command line from when the wait
// began, so bytes trickled one by one do not extend it; a data block), the
// session's whole life, a minimum average data rate during DATA (so a
// slowloris cannot hold a slot), and the idle upstream connection's timeout.
// Pure arithmetic on time points the runner passes in; it reads no clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

#include "gateway/common/reason.hpp"
#include "gateway/config/config.hpp"

namespace relaygate::session {

class ReadDeadline {
  public:
    using Clock = std::chrono::steady_clock;
    using Time = Clock::time_point;

    enum class Wake : std::uint8_t { command, data, data_rate, session, upstream_idle };

    ReadDeadline(const config::Timeouts& timeouts, Clock::duration upstream_idle_timeout,
                 Time session_start);

    // What the session looks like before a read.
    struct Session {
        bool command_stage = true;
        bool partial_command = false;  // part of a command line is buffered
        bool upstream_idle = false;    // an upstream connection with no transaction
        Time upstream_used{};          // when that connection last did something
    };
    struct Next {
        Time at;
        Wake wake = Wake::command;
    };
    Next before_read(Time now, const Session& s);
    // `n` bytes arrived (counted against the data rate during DATA).
    void on_read(std::size_t n) { data_bytes_ += n; }

  private:
    const config::Timeouts& timeouts_;
    Clock::duration upstream_idle_timeout_;
    Time session_end_;
    Time command_deadline_{};
    bool in_data_ = false;
    Time data_started_{};
    std::uint64_t data_bytes_ = 0;
};

// The session's reason when a deadline passes (upstream_idle is no fault of
// the client: the runner closes the relay connection and keeps reading).
Reason reason(ReadDeadline::Wake w);
// The connection's close label in the audit log.
std::string_view close_label(ReadDeadline::Wake w);

}  // namespace relaygate::session
