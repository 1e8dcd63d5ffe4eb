// GCRA arithmetic on a fake clock: exact bursts, the steady rate, costs
// beyond the burst, retry_after, remaining, look-only checks and expiry.
#include <doctest/doctest.h>

#include <cmath>
#include <optional>

#include "gateway/ratelimit/gcra.hpp"

using namespace relaygate::ratelimit;

namespace {

// One key's cell, as a store keeps it.
struct Cell {
    double interval;
    double tolerance;
    std::optional<double> tat;

    GcraResult hit(double now, std::uint64_t cost = 1, bool consume = true) {
        GcraResult r = gcra_decide(tat, now, interval, tolerance, cost, consume);
        if (r.allowed && consume) tat = r.tat;
        return r;
    }
};

Cell rate(double count, double per, double burst) {
    return Cell{per / count, per / count * burst, std::nullopt};
}

}  // namespace

TEST_CASE("exactly the burst passes at once, then one per interval") {
    // Near zero and at Unix-epoch scale, where a double has ~2.4e-7 s
    // resolution and a thousand additions round a thousand times.
    for (double start : {100.0, 1.7e9}) {
        CAPTURE(start);
        Cell c = rate(1000, 3600, 1000);  // interval 3.6 s
        for (int i = 0; i < 1000; ++i) {
            const GcraResult r = c.hit(start);
            REQUIRE(r.allowed);
            CHECK(r.remaining == std::uint64_t(999 - i));
        }
        GcraResult r = c.hit(start);
        CHECK_FALSE(r.allowed);
        CHECK(r.retry_after == doctest::Approx(3.6).epsilon(1e-4));
        CHECK(r.remaining == 0);

        // The steady rate: one unit per interval, not two.
        CHECK_FALSE(c.hit(start + 1.8).allowed);
        CHECK(c.hit(start + 3.6).allowed);
        r = c.hit(start + 3.6);
        CHECK_FALSE(r.allowed);
        CHECK(r.retry_after == doctest::Approx(3.6).epsilon(1e-4));
        CHECK(c.hit(start + 7.2).allowed);
    }
}

TEST_CASE("a burst smaller than the count") {
    Cell c = rate(10, 60, 2);  // 6 s per unit, 2 at once
    CHECK(c.hit(0).allowed);
    CHECK(c.hit(0).allowed);
    GcraResult r = c.hit(0);
    CHECK_FALSE(r.allowed);
    CHECK(r.retry_after == doctest::Approx(6));
    r = c.hit(1);
    CHECK_FALSE(r.allowed);
    CHECK(r.retry_after == doctest::Approx(5));  // exact: allow_at - now
    CHECK(c.hit(6).allowed);
}

TEST_CASE("a cost beyond the burst never fits; a cost of the burst does") {
    Cell c = rate(10, 60, 10);
    GcraResult r = c.hit(0, 11);
    CHECK_FALSE(r.allowed);
    CHECK(std::isinf(r.retry_after));
    CHECK(r.remaining == 10);  // nothing was taken
    CHECK_FALSE(c.tat.has_value());

    r = c.hit(0, 10);
    CHECK(r.allowed);
    CHECK(r.remaining == 0);
    r = c.hit(0, 3);
    CHECK_FALSE(r.allowed);
    CHECK(r.retry_after == doctest::Approx(18));  // three intervals
    CHECK(c.hit(18, 3).allowed);
}

TEST_CASE("costs count in units; remaining is whole units") {
    Cell c = rate(1000, 100, 1000);  // 0.1 s per unit
    GcraResult r = c.hit(0, 250);
    CHECK(r.allowed);
    CHECK(r.remaining == 750);
    r = c.hit(0.05, 1);  // half a unit came back: still whole units only
    CHECK(r.remaining == 749);
    r = c.hit(10, 1);  // 100 units came back, one taken
    CHECK(r.remaining == 848);
}

TEST_CASE("consume = false asks without taking") {
    Cell c = rate(5, 10, 5);
    for (int i = 0; i < 4; ++i)
        REQUIRE(c.hit(0).allowed);
    const std::optional<double> before = c.tat;
    GcraResult r = c.hit(0, 1, false);
    CHECK(r.allowed);
    CHECK(r.remaining == 1);  // left after it: nothing was taken
    CHECK(r.tat == doctest::Approx(*before));
    CHECK(c.tat == before);
    r = c.hit(0, 2, false);
    CHECK_FALSE(r.allowed);
    CHECK(r.retry_after == doctest::Approx(2));
    CHECK(c.tat == before);
    CHECK(c.hit(0).allowed);  // the last unit is still there
    CHECK_FALSE(c.hit(0).allowed);
}

TEST_CASE("a long idle resets the cell; expiry is at the TAT") {
    Cell c = rate(3, 30, 3);
    for (int i = 0; i < 3; ++i)
        REQUIRE(c.hit(50).allowed);
    REQUIRE_FALSE(c.hit(50).allowed);
    const double tat = *c.tat;
    CHECK(tat == doctest::Approx(80));
    CHECK_FALSE(gcra_expired(tat, 79.9));
    CHECK(gcra_ttl(tat, 50) == doctest::Approx(30));
    CHECK(gcra_expired(tat, 80));
    CHECK(gcra_ttl(tat, 90) == 0);
    // A TAT in the past says nothing: the same as no cell.
    for (int i = 0; i < 3; ++i)
        CHECK(c.hit(1e6).allowed);
    CHECK_FALSE(c.hit(1e6).allowed);
    const GcraResult fresh = gcra_decide(std::nullopt, 1e6, 10, 30, 1, true);
    const GcraResult stale = gcra_decide(5.0, 1e6, 10, 30, 1, true);
    CHECK(fresh.tat == stale.tat);
    CHECK(fresh.remaining == stale.remaining);
}

TEST_CASE("remaining never underflows after the tolerance shrank") {
    // A policy reload lowered the burst: the old TAT is beyond it.
    const GcraResult r = gcra_decide(200.0, 0, 1, 10, 1, true);
    CHECK_FALSE(r.allowed);
    CHECK(r.remaining == 0);
    CHECK(r.retry_after == doctest::Approx(191));
    CHECK(gcra_remaining(200.0, 0, 1, 10) == 0);
}

TEST_CASE("a lease is a consumption; its refund moves the TAT back, never below now") {
    // 10 per 100 s (interval 10 s), burst 10.
    Cell c = rate(10, 100, 10);
    for (int i = 0; i < 4; ++i)
        REQUIRE(c.hit(1000).allowed);
    const double before = *c.tat;  // 1040
    // A lease of 3 units is taken like any other cost.
    GcraResult lease = c.hit(1000, 3);
    REQUIRE(lease.allowed);
    CHECK(lease.remaining == 3);
    CHECK(*c.tat == 1070);
    // Refunded at once: exactly where it was.
    CHECK(gcra_refund(c.tat, 1000, c.interval, 3) == before);
    // Two of three refunded 5 s later: the TAT moves back by 20 s; the time
    // that passed refills as it would have.
    const double back = gcra_refund(c.tat, 1005, c.interval, 2);
    CHECK(back == 1050);
    CHECK(gcra_remaining(back, 1005, c.interval, c.tolerance) == 5);
    // Never below now: the cell is then empty (full budget), not in credit.
    CHECK(gcra_refund(1015.0, 1010, c.interval, 3) == 1010);
    CHECK(gcra_expired(gcra_refund(1015.0, 1010, c.interval, 3), 1010));
    CHECK(gcra_remaining(gcra_refund(1015.0, 1010, c.interval, 3), 1010, c.interval, c.tolerance) ==
          10);
    // No cell, or a cell in the past: the refund leaves it empty.
    CHECK(gcra_refund(std::nullopt, 1000, c.interval, 1) == 1000);
    CHECK(gcra_refund(900.0, 1000, c.interval, 1) == 1000);
}

TEST_CASE("lease and refund at epoch scale give the budget back to the unit") {
    // 1000 per hour: the interval 3.6 s is not a binary fraction.
    const double now = 1.7e9 + 0.123;
    Cell c = rate(1000, 3600, 1000);
    for (int i = 0; i < 700; ++i)
        REQUIRE(c.hit(now).allowed);
    const std::uint64_t left = gcra_remaining(*c.tat, now, c.interval, c.tolerance);
    CHECK(left == 300);
    REQUIRE(c.hit(now, 7).allowed);
    CHECK(gcra_remaining(*c.tat, now, c.interval, c.tolerance) == 293);
    const double refunded = gcra_refund(c.tat, now, c.interval, 7);
    CHECK(refunded == doctest::Approx(now + 700 * 3.6));
    CHECK(gcra_remaining(refunded, now, c.interval, c.tolerance) == left);
}
