// The client read deadlines, as pure arithmetic: which one is next and what
// its passing means.
#include "gateway/session/read_deadline.hpp"

#include <doctest/doctest.h>

using namespace relaygate;
using session::ReadDeadline;
using Wake = ReadDeadline::Wake;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {
const ReadDeadline::Time t0{seconds(1000)};

config::Timeouts timeouts() {
    config::Timeouts t;
    t.command = seconds(300);
    t.data_block = seconds(180);
    t.data_grace = seconds(30);
    t.min_data_rate = 1000;
    t.session = seconds(3600);
    return t;
}
}  // namespace

TEST_CASE("a command line's deadline runs from when the wait began, not from its last byte") {
    const auto t = timeouts();
    ReadDeadline d(t, seconds(30), t0);
    auto first = d.before_read(t0, {});
    CHECK(first.wake == Wake::command);
    CHECK(first.at == t0 + seconds(300));
    // Bytes trickled in: a partial command keeps the deadline.
    auto later = d.before_read(t0 + seconds(200), {.partial_command = true});
    CHECK(later.at == t0 + seconds(300));
    // A complete command: the next one gets a fresh deadline.
    auto fresh = d.before_read(t0 + seconds(250), {});
    CHECK(fresh.at == t0 + seconds(550));
}

TEST_CASE("the session's lifetime and an idle upstream bound the command wait") {
    const auto t = timeouts();
    ReadDeadline d(t, seconds(30), t0);
    auto n = d.before_read(t0 + seconds(3500), {});
    CHECK(n.wake == Wake::session);
    CHECK(n.at == t0 + seconds(3600));
    CHECK(session::reason(n.wake) == Reason::session_lifetime_exceeded);
    CHECK(session::close_label(n.wake) == "session_lifetime");

    ReadDeadline e(t, seconds(30), t0);
    auto idle = e.before_read(t0 + seconds(10), {.upstream_idle = true, .upstream_used = t0});
    CHECK(idle.wake == Wake::upstream_idle);
    CHECK(idle.at == t0 + seconds(30));
    // Not idle (a transaction on it): the command deadline again.
    auto busy = e.before_read(t0 + seconds(10), {.upstream_used = t0});
    CHECK(busy.wake == Wake::command);
}

TEST_CASE("DATA: a data block deadline, and a minimum average rate after a grace period") {
    const auto t = timeouts();
    ReadDeadline d(t, seconds(30), t0);
    ReadDeadline::Session data{.command_stage = false};
    auto n = d.before_read(t0, data);
    // Nothing received yet: the grace period (30 s) comes before the block (180 s).
    CHECK(n.wake == Wake::data_rate);
    CHECK(n.at == t0 + seconds(30));
    CHECK(session::reason(n.wake) == Reason::data_too_slow);
    // 200 kB at 1000 B/s buy 200 s after the grace: the data block is nearer.
    d.on_read(200000);
    n = d.before_read(t0 + seconds(10), data);
    CHECK(n.wake == Wake::data);
    CHECK(n.at == t0 + seconds(190));
    CHECK(session::reason(n.wake) == Reason::timeout);
    // The rate is averaged over the whole DATA phase, from its start.
    d.on_read(1500);
    n = d.before_read(t0 + seconds(150), data);
    CHECK(n.wake == Wake::data_rate);
    CHECK(n.at == t0 + seconds(30) + milliseconds(201500));
    // The next DATA starts counting afresh.
    d.before_read(t0 + seconds(160), {});
    n = d.before_read(t0 + seconds(170), data);
    CHECK(n.at == t0 + seconds(200));
}

TEST_CASE("min_data_rate 0 turns the rate check off") {
    auto t = timeouts();
    t.min_data_rate = 0;
    ReadDeadline d(t, seconds(30), t0);
    auto n = d.before_read(t0, {.command_stage = false});
    CHECK(n.wake == Wake::data);
    CHECK(n.at == t0 + seconds(180));
}
