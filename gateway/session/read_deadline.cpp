#include "gateway/session/read_deadline.hpp"

namespace relaygate::session {

ReadDeadline::ReadDeadline(const config::Timeouts& timeouts, Clock::duration upstream_idle_timeout,
                           Time session_start)
    : timeouts_(timeouts),
      upstream_idle_timeout_(upstream_idle_timeout),
      session_end_(session_start + timeouts.session) {}

ReadDeadline::Next ReadDeadline::before_read(Time now, const Session& s) {
    Next next;
    if (s.command_stage) {
        in_data_ = false;
        if (!s.partial_command) command_deadline_ = now + timeouts_.command;
        next = {command_deadline_, Wake::command};
        if (session_end_ < next.at) next = {session_end_, Wake::session};
        const Time idle_end = s.upstream_used + upstream_idle_timeout_;
        if (s.upstream_idle && idle_end < next.at) next = {idle_end, Wake::upstream_idle};
        return next;
    }
    if (!in_data_) {
        in_data_ = true;
        data_started_ = now;
        data_bytes_ = 0;
    }
    next = {now + timeouts_.data_block, Wake::data};
    if (timeouts_.min_data_rate > 0) {
        using ms = std::chrono::milliseconds;
        const Time allowed =
            data_started_ + timeouts_.data_grace + ms(data_bytes_ * 1000 / timeouts_.min_data_rate);
        if (allowed < next.at) next = {allowed, Wake::data_rate};
    }
    return next;
}

Reason reason(ReadDeadline::Wake w) {
    return w == ReadDeadline::Wake::session     ? Reason::session_lifetime_exceeded
           : w == ReadDeadline::Wake::data_rate ? Reason::data_too_slow
                                                : Reason::timeout;
}

std::string_view close_label(ReadDeadline::Wake w) {
    return w == ReadDeadline::Wake::session     ? "session_lifetime"
           : w == ReadDeadline::Wake::data_rate ? "data_too_slow"
                                                : "timeout";
}

}  // namespace relaygate::session
