// The decide script's arguments and reply, without a server: the layout
// the script reads, numbers that read back exactly, and strict decoding
// (a malformed reply is nullopt, never an exception or a guess).
#include <doctest/doctest.h>

#include <charconv>
#include <cmath>
#include <string>
#include <vector>

#include "gateway/ratelimit/redis_script.hpp"

using namespace relaygate::ratelimit;

namespace {

Request sample() {
    Request r;
    Check a;
    a.key = "rl:{acme}:tenant:acme:messages:3600";
    a.interval = 3.6;
    a.tolerance = 3600;
    Check b;
    b.key = "rl:{acme}:tenant:acme:bytes:86400";
    b.interval = 86400.0 / 3e9;
    b.tolerance = 86400;
    b.cost = 40000;
    b.mode = Check::Mode::ask;
    Check c = a;
    c.key = "rl:{acme}:tenant:acme:recipients:3600";
    c.mode = Check::Mode::lease;
    Check d = c;
    d.mode = Check::Mode::refund;
    d.cost = 2;
    r.checks = {a, b, c, d};
    r.volume_key = "vol:{acme}";
    r.first_seen = {"seen:{acme}:net:192.0.2.0/24"};
    return r;
}

std::vector<std::string> good_reply() {
    return {"0", "1", "12.5", "0", "999", "0", "3", "2", "1", "1", "250", "-1", "1"};
}

}  // namespace

TEST_CASE("encode: keys in order, one hash tag, numbers that read back exactly") {
    const Request r = sample();
    ScriptCall call = encode_decide(r, 1.7e9 + 0.123456789);
    CHECK(call.keys == std::vector<std::string>{r.checks[0].key, r.checks[1].key, r.checks[2].key,
                                                r.checks[3].key, "vol:{acme}",
                                                "seen:{acme}:net:192.0.2.0/24"});
    REQUIRE(call.args.size() == 11 + 4 * 4);
    CHECK(call.args[0] == "4");
    CHECK(call.args[1] == "1");
    CHECK(call.args[2] == "1");
    double now = 0;
    std::from_chars(call.args[3].data(), call.args[3].data() + call.args[3].size(), now);
    CHECK(now == 1.7e9 + 0.123456789);  // exact: both stores compute on the same double
    CHECK(call.args[10] == "1");        // the volume observation counts one message
    double interval = 0;
    std::from_chars(call.args[15].data(), call.args[15].data() + call.args[15].size(), interval);
    CHECK(interval == 86400.0 / 3e9);
    CHECK(call.args[17] == "40000");
    // The modes: consume 1, ask 0, lease 2, refund 3.
    CHECK(call.args[14] == "1");
    CHECK(call.args[18] == "0");
    CHECK(call.args[22] == "2");
    CHECK(call.args[25] == "2");  // the refund's cost
    CHECK(call.args[26] == "3");
    // Without `now` the script reads the server's TIME.
    CHECK(encode_decide(r).args[3].empty());

    const ScriptCall clear = encode_clear_hold("vol:{acme}");
    CHECK(clear.keys == std::vector<std::string>{"vol:{acme}"});
    CHECK(clear.args.empty());
    CHECK(decide_script().find("redis.call('TIME')") != std::string_view::npos);
    CHECK(clear_hold_script().find("HGET") != std::string_view::npos);
}

TEST_CASE("decode: the script's reply") {
    const Request r = sample();
    const auto o = decode_decide(r, good_reply());
    REQUIRE(o);
    CHECK(o->status == Outcome::Status::ok);
    CHECK_FALSE(o->allowed);
    CHECK(o->denied == 1);
    CHECK(o->retry_after == 12.5);
    CHECK_FALSE(o->leased);
    CHECK(o->remaining == std::vector<std::uint64_t>{999, 0, 3, 2});
    CHECK(o->spike);
    CHECK(o->held);
    CHECK(o->volume == 250);
    CHECK(o->baseline == -1);
    CHECK(o->first_seen_new == FirstSeenFlags{true});

    auto inf = good_reply();
    inf[2] = "inf";
    REQUIRE(decode_decide(r, inf));
    CHECK(std::isinf(decode_decide(r, inf)->retry_after));

    Request bare;
    const auto ok = decode_decide(bare, {"1", "0", "0", "0"});
    REQUIRE(ok);
    CHECK(ok->allowed);
    CHECK_FALSE(ok->leased);
    CHECK(ok->remaining.empty());
    CHECK(ok->baseline == -1);
    const auto leased = decode_decide(bare, {"1", "0", "0", "1"});
    REQUIRE(leased);
    CHECK(leased->leased);
}

TEST_CASE("decode: anything else is nullopt") {
    const Request r = sample();
    auto with = [](std::size_t i, std::string v) {
        auto reply = good_reply();
        reply[i] = std::move(v);
        return reply;
    };
    const std::vector<std::vector<std::string>> bad = {
        {},
        {"0", "1", "12.5", "0"},  // short
        [] {
            auto x = good_reply();
            x.push_back("1");
            return x;
        }(),  // long
        with(0, "2"),
        with(0, ""),
        with(0, "true"),
        with(1, "4"),
        with(1, "-1"),
        with(1, "x"),  // index out of range / bad
        with(2, "nan"),
        with(2, "-1"),
        with(2, "1e"),
        with(2, ""),
        with(3, "2"),
        with(3, "1"),  // leased, but the request was denied
        with(4, "-5"),
        with(4, "1.5"),
        with(4, "+3"),
        with(4, " 3"),
        with(4, "18446744073709551616"),  // over uint64
        with(9, "0"),                     // spike without hold
        with(8, "yes"),
        with(10, "0"),
        with(10, "12x"),
        with(11, "inf"),
        with(11, ""),
        with(12, "01"),
    };
    for (std::size_t i = 0; i < bad.size(); ++i) {
        CAPTURE(i);
        CHECK_FALSE(decode_decide(r, bad[i]).has_value());
    }
    // Allowed with a denied index or a wait is not a reply of the script.
    Request bare;
    CHECK_FALSE(decode_decide(bare, {"1", "1", "0", "0"}).has_value());
    CHECK_FALSE(decode_decide(bare, {"1", "0", "3", "0"}).has_value());
    CHECK_FALSE(decode_decide(bare, {"0", "0", "3", "0"}).has_value());  // denied, but no check
}
