// Tests for the connection limiter: totals, per-client limits, slot release.
#include "gateway/server/connection_limiter.hpp"

#include <doctest/doctest.h>

#include <vector>

using relaygate::server::ConnectionLimiter;

TEST_CASE("per-client and total limits, released by destruction") {
    ConnectionLimiter lim(3, 2);
    auto a1 = lim.acquire("a");
    auto a2 = lim.acquire("a");
    CHECK(a1);
    CHECK(a2);
    CHECK_FALSE(lim.acquire("a"));  // per-client limit
    auto b1 = lim.acquire("b");
    CHECK(b1);
    CHECK_FALSE(lim.acquire("c"));  // total limit
    CHECK(lim.active() == 3);
    { auto moved = std::move(a1); }
    CHECK(lim.active() == 2);
    CHECK(lim.acquire("c"));  // temporary: acquired and released at once
    CHECK(lim.active() == 2);
    auto a3 = lim.acquire("a");
    CHECK(a3);
}
