// Tests for AuthThrottle: leaky-bucket limits per client and per user, the
// /64 key for IPv6, expiry, and the bound on tracked entries.
#include "gateway/session/auth_throttle.hpp"

#include <doctest/doctest.h>

#include <string>

using relaygate::session::AuthThrottle;
using relaygate::session::AuthThrottleLimits;
using Scope = AuthThrottle::Scope;

TEST_CASE("a client is throttled after its failures and drains over the window") {
    AuthThrottle t(AuthThrottleLimits{3, 100, 600, 1000});
    double now = 1000;
    for (int i = 0; i < 3; ++i) {
        CHECK(t.admit("192.0.2.1", "user" + std::to_string(i), now) == Scope::none);
    }
    CHECK(t.check("192.0.2.1", "fresh", now) == Scope::client);
    CHECK(t.check("192.0.2.2", "fresh", now) == Scope::none);  // others are not affected
    // One failure drains in window/limit = 200 s: then one more attempt.
    CHECK(t.check("192.0.2.1", "fresh", now + 199) == Scope::client);
    CHECK(t.admit("192.0.2.1", "fresh", now + 201) == Scope::none);
    CHECK(t.check("192.0.2.1", "fresh", now + 202) == Scope::client);
    // After the whole window, everything is forgotten.
    CHECK(t.check("192.0.2.1", "fresh", now + 1000) == Scope::none);
}

TEST_CASE("1,000 guesses from one address are not possible in two minutes") {
    AuthThrottle t(AuthThrottleLimits{});  // defaults: 10 per 600 s
    int answered = 0;
    for (int i = 0; i < 1000; ++i) {
        const double now = i * 0.12;  // 1,000 attempts spread over 120 s
        if (t.admit("203.0.113.9", "u" + std::to_string(i), now) == Scope::none) ++answered;
    }
    CHECK(answered <= 12);
}

TEST_CASE("a user name is throttled across addresses") {
    AuthThrottle t(AuthThrottleLimits{100, 2, 600, 1000});
    t.admit("192.0.2.1", "alice", 0);
    t.admit("198.51.100.7", "alice", 0);
    CHECK(t.check("203.0.113.5", "alice", 1) == Scope::user);
    CHECK(t.check("203.0.113.5", "bob", 1) == Scope::none);
}

TEST_CASE("IPv6 clients are counted per /64") {
    CHECK(AuthThrottle::client_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64");
    CHECK(AuthThrottle::client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64");
    CHECK(AuthThrottle::client_key("192.0.2.1") == "192.0.2.1");
    CHECK(AuthThrottle::client_key("::ffff:192.0.2.1") == "192.0.2.1");
    AuthThrottle t(AuthThrottleLimits{2, 100, 600, 1000});
    t.admit("2001:db8:1:2::1", "a", 0);
    t.admit("2001:db8:1:2::2", "b", 0);
    CHECK(t.check("2001:db8:1:2::3", "c", 0) == Scope::client);
    CHECK(t.check("2001:db8:1:3::3", "c", 0) == Scope::none);
}

TEST_CASE("memory is bounded: the least recently used entries go first") {
    AuthThrottle t(AuthThrottleLimits{2, 2, 600, 16});
    for (int i = 0; i < 10000; ++i)
        t.admit("10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256),
                "u" + std::to_string(i), 0);
    CHECK(t.size() == 32);  // 16 clients + 16 users
    // A key failing again stays (it is recent), an old one was evicted.
    t.admit("192.0.2.200", "target", 1);
    t.admit("192.0.2.200", "target", 1);
    CHECK(t.check("192.0.2.200", "x", 1) == Scope::client);
    CHECK(t.check("10.0.0.0", "x", 1) == Scope::none);
}

TEST_CASE("admit counts the attempt at once: concurrent guesses cannot all pass") {
    AuthThrottle t(AuthThrottleLimits{3, 100, 600, 1000});
    int admitted = 0;
    // 50 guesses arrive before any of them has been checked.
    for (int i = 0; i < 50; ++i)
        if (t.admit("192.0.2.1", "u" + std::to_string(i), 0) == Scope::none) ++admitted;
    CHECK(admitted == 3);
    // A success gives its count back: a legitimate user is not penalised.
    AuthThrottle ok(AuthThrottleLimits{2, 2, 600, 1000});
    for (int i = 0; i < 10; ++i) {
        REQUIRE(ok.admit("192.0.2.9", "alice", i) == Scope::none);
        ok.succeeded("192.0.2.9", "alice", i);
    }
    CHECK(ok.check("192.0.2.9", "alice", 10) == Scope::none);
}
