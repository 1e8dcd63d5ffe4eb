// The session's volume-control requests (gateway/session/volume.hpp): keys,
// costs and the words of a refusal. The session's use of them is covered by
// the transcripts (tests/session/transcripts/limits-*.txt).
#include <doctest/doctest.h>

#include <limits>

#include "gateway/session/volume.hpp"

using namespace relaygate;
using policy::LimitKind;

namespace {
policy::AppliedLimit limit(LimitKind kind, std::uint64_t count, std::uint32_t per) {
    policy::AppliedLimit l;
    l.kind = kind;
    l.tenant = "acme";
    l.subject = "acme";
    l.rate = {count, per, count};
    return l;
}
}  // namespace

TEST_CASE("a request has one check per limit of the kind asked, with its cost") {
    const std::vector<policy::AppliedLimit> limits{limit(LimitKind::messages, 1000, 3600),
                                                   limit(LimitKind::recipients, 50, 60),
                                                   limit(LimitKind::messages, 10000, 86400)};
    session::VolumeAsk ask;
    ask.add(limits, LimitKind::messages, 1, ratelimit::Check::Mode::consume);
    ask.add(limits, LimitKind::bytes, 5000, ratelimit::Check::Mode::ask);  // no bytes limit
    REQUIRE(ask.request.checks.size() == 2);
    REQUIRE(ask.limits.size() == 2);
    CHECK(ask.limits[1].rate.per_seconds == 86400);
    CHECK(ask.request.checks[0].key == limits[0].key());
    CHECK(ask.request.checks[0].interval == doctest::Approx(3.6));
    CHECK(ask.request.checks[0].tolerance == doctest::Approx(3600));
    CHECK(ask.request.checks[0].cost == 1);
    CHECK(ask.request.checks[0].mode == ratelimit::Check::Mode::consume);
    CHECK_FALSE(ask.empty());
}

TEST_CASE("anomaly observations follow the settings and share the tenant's hash tag") {
    session::VolumeSettings s;
    session::VolumeAsk ask;
    CHECK(ask.empty());
    ask.observe_volume("acme", s);
    ask.mark_seen("acme", "net", "192.0.2.0/24", s);
    ask.mark_seen("acme", "from", "sasl acme-app|acme.example", s);
    CHECK(ask.request.volume_key == "vol:{acme}");
    REQUIRE(ask.request.first_seen.size() == 2);
    CHECK(ask.request.first_seen[0] == "seen:{acme}:net:192.0.2.0/24");
    CHECK(std::vector<std::string_view>(ask.seen_kinds.begin(), ask.seen_kinds.end()) ==
          std::vector<std::string_view>{"first_seen_network", "first_seen_domain"});
    CHECK(std::vector<std::string>(ask.seen_what.begin(), ask.seen_what.end()) ==
          std::vector<std::string>{"192.0.2.0/24", "sasl acme-app|acme.example"});

    session::VolumeAsk off;
    s.anomalies = false;
    off.observe_volume("acme", s);
    off.mark_seen("acme", "net", "192.0.2.0/24", s);
    CHECK(off.empty());
    s.anomalies = true;
    s.first_seen = false;
    off.mark_seen("acme", "net", "192.0.2.0/24", s);
    CHECK(off.empty());
    off.observe_volume("", s);  // no tenant: nothing to count against
    CHECK(off.empty());
}

TEST_CASE("client networks are /24 and /48") {
    CHECK(session::client_network(*policy::IpAddress::parse("198.51.100.77")) == "198.51.100.0/24");
    CHECK(session::client_network(*policy::IpAddress::parse("2001:db8:1:2::5")) ==
          "2001:db8:1::/48");
}

TEST_CASE("retry texts round up and say when a message can never fit") {
    CHECK(session::retry_text(0.2) == "retry in 1s");
    CHECK(session::retry_text(41.5) == "retry in 42s");
    CHECK(session::retry_text(119) == "retry in 119s");
    CHECK(session::retry_text(121) == "retry in 3m");
    CHECK(session::retry_text(7300) == "retry in 3h");
    CHECK(session::retry_text(std::numeric_limits<double>::infinity()) ==
          "more than the whole limit allows at once");
}

TEST_CASE("each limit kind has its reason") {
    CHECK(session::limit_reason(LimitKind::messages) == Reason::rate_limited_messages);
    CHECK(session::limit_reason(LimitKind::recipients) == Reason::rate_limited_recipients);
    CHECK(session::limit_reason(LimitKind::bytes) == Reason::rate_limited_bytes);
    CHECK(info(Reason::rate_limited_recipients).smtp_code == 452);
    CHECK(info(Reason::rate_limited_messages).enhanced == "4.7.1");
    CHECK(info(Reason::rate_limit_unavailable).smtp_code == 451);
}
