// The memory store: all-or-nothing checks, the LRU bound, first-seen marks
// and their expiry, volume holds, errors, and exact counts under threads.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "gateway/ratelimit/memory_store.hpp"

using namespace relaygate::ratelimit;

namespace {

Check check(std::string key, double count, double per, double burst, std::uint64_t cost = 1,
            Check::Mode mode = Check::Mode::consume) {
    Check c;
    c.key = std::move(key);
    c.interval = per / count;
    c.tolerance = per / count * burst;
    c.cost = cost;
    c.mode = mode;
    return c;
}

Request one(Check c) {
    Request r;
    r.checks.push_back(std::move(c));
    return r;
}

}  // namespace

TEST_CASE("all or nothing: a check that refuses keeps the others untaken") {
    double now = 1000;
    MemoryStore store([&] { return now; }, 1000);
    const Check hourly = check("rl:{acme}:tenant:acme:messages:3600", 10, 3600, 10);
    const Check daily = check("rl:{acme}:tenant:acme:messages:86400", 3, 86400, 3);
    Request both;
    both.checks = {hourly, daily};
    for (int i = 0; i < 3; ++i) {
        const Outcome o = store.decide(both);
        REQUIRE(o.allowed);
        CHECK(o.remaining ==
              std::vector<std::uint64_t>{std::uint64_t(9 - i), std::uint64_t(2 - i)});
    }
    Outcome o = store.decide(both);
    CHECK(o.status == Outcome::Status::ok);
    CHECK_FALSE(o.allowed);
    CHECK(o.denied == 1);
    CHECK(o.retry_after == doctest::Approx(28800));
    CHECK(o.remaining == std::vector<std::uint64_t>{7, 0});  // the hourly was not taken
    o = store.decide(one(hourly));
    CHECK(o.allowed);
    CHECK(o.remaining == std::vector<std::uint64_t>{6});

    // Two refusals: the request fits when the slowest fits.
    const Check tight = check("rl:{acme}:identity:sasl:bob:messages:60", 1, 60, 1);
    REQUIRE(store.decide(one(tight)).allowed);
    now += 10;
    Request three;
    three.checks = {tight, hourly, daily};
    o = store.decide(three);
    CHECK_FALSE(o.allowed);
    CHECK(o.denied == 0);
    CHECK(o.retry_after == doctest::Approx(28800 - 10));
}

TEST_CASE("look-only checks take nothing; a key named twice sees the first") {
    double now = 0;
    MemoryStore store([&] { return now; }, 1000);
    const Check bytes =
        check("rl:{acme}:tenant:acme:bytes:86400", 1000, 86400, 1000, 600, Check::Mode::ask);
    Outcome o = store.decide(one(bytes));
    CHECK(o.allowed);
    CHECK(o.remaining == std::vector<std::uint64_t>{1000});
    CHECK(store.size() == 0);  // nothing stored for a question

    Check take = bytes;
    take.mode = Check::Mode::consume;
    Request twice;
    twice.checks = {take, take};  // 600 + 600 > 1000
    o = store.decide(twice);
    CHECK_FALSE(o.allowed);
    CHECK(o.denied == 1);
    CHECK(o.remaining == std::vector<std::uint64_t>{1000, 1000});
    take.cost = 400;
    twice.checks = {take, take};
    o = store.decide(twice);
    CHECK(o.allowed);
    CHECK(o.remaining == std::vector<std::uint64_t>{200, 200});
}

TEST_CASE("bounded: least recently used out, expired cells dropped") {
    double now = 0;
    MemoryStore store([&] { return now; }, 4);
    auto key = [](char c) { return std::string("rl:{t") + c + "}:tenant:t:messages:60"; };
    for (char c : {'a', 'b', 'c', 'd'})
        REQUIRE(store.decide(one(check(key(c), 5, 60, 5))).allowed);
    CHECK(store.size() == 4);
    REQUIRE(store.decide(one(check(key('a'), 5, 60, 5))).allowed);  // a is recent now
    REQUIRE(store.decide(one(check(key('e'), 5, 60, 5))).allowed);  // b goes
    CHECK(store.size() == 4);
    // Looking only (Mode::ask) does not re-create an evicted cell.
    Outcome o = store.decide(one(check(key('b'), 5, 60, 5, 1, Check::Mode::ask)));
    CHECK(o.remaining == std::vector<std::uint64_t>{5});  // forgotten
    o = store.decide(one(check(key('a'), 5, 60, 5, 1, Check::Mode::ask)));
    CHECK(o.remaining == std::vector<std::uint64_t>{3});  // kept
    CHECK(store.size() == 4);

    // A cell past its TAT holds nothing and is dropped when met.
    now = 1000;
    o = store.decide(one(check(key('a'), 5, 60, 5, 1, Check::Mode::ask)));
    CHECK(o.remaining == std::vector<std::uint64_t>{5});
    CHECK(store.size() == 3);

    // Many tenants: the bound holds with several shards too.
    MemoryStore big([&] { return now; }, 20000);
    for (int i = 0; i < 50000; ++i) {
        Request r = one(check("rl:{t" + std::to_string(i) + "}:x", 5, 60, 5));
        r.first_seen.push_back("seen:{t" + std::to_string(i) + "}:net:192.0.2.0/24");
        big.decide(r);
    }
    CHECK(big.size() <= 20000);
    CHECK(big.size() >= 19000);
}

TEST_CASE("first-seen marks: new once, again after the TTL without sightings") {
    double now = 0;
    MemoryStore store([&] { return now; }, 100);
    Request r;
    r.first_seen = {"seen:{acme}:from:sasl:bob:example.com", "seen:{acme}:net:198.51.100.0/24"};
    r.first_seen_ttl = 100;
    Outcome o = store.decide(r);
    CHECK(o.first_seen_new == FirstSeenFlags{true, true});
    o = store.decide(r);
    CHECK(o.first_seen_new == FirstSeenFlags{false, false});
    // Every sighting extends the mark: seen at 99 holds until 199.
    now = 99;
    o = store.decide(r);
    CHECK(o.first_seen_new == FirstSeenFlags{false, false});
    now = 198;
    Request first_only = r;
    first_only.first_seen.pop_back();
    o = store.decide(first_only);
    CHECK(o.first_seen_new == FirstSeenFlags{false});
    now = 199;  // the second was last seen at 99
    o = store.decide(r);
    CHECK(o.first_seen_new == FirstSeenFlags{false, true});

    // Marked whatever the checks say.
    Request refused = r;
    refused.first_seen = {"seen:{acme}:from:sasl:eve:example.org"};
    refused.checks.push_back(check("rl:{acme}:tenant:acme:messages:60", 1, 60, 1, 2));
    o = store.decide(refused);
    CHECK_FALSE(o.allowed);
    CHECK(std::isinf(o.retry_after));
    CHECK(o.first_seen_new == FirstSeenFlags{true});
    o = store.decide(refused);
    CHECK(o.first_seen_new == FirstSeenFlags{false});
}

TEST_CASE("volume: counted while refused, held until cleared") {
    double now = 0;
    MemoryStore store([&] { return now; }, 100);
    Request r = one(check("rl:{acme}:tenant:acme:messages:3600", 2, 3600, 2));
    r.volume_key = "vol:{acme}";
    r.spike.bucket_seconds = 60;
    r.spike.slots = 2;
    r.spike.multiple = 2;
    r.spike.min_messages = 3;
    Outcome o;
    for (int i = 0; i < 3; ++i)
        o = store.decide(r);
    CHECK_FALSE(o.allowed);  // the limit refuses the third ...
    CHECK(o.spike);          // ... and the spike shows all the same
    CHECK(o.held);
    CHECK(o.volume == 3);
    CHECK(o.baseline == -1);

    bool cleared = false;
    int calls = 0;
    store.clear_hold("vol:{acme}", [&](bool ok) {
        cleared = ok;
        ++calls;
    });
    CHECK(calls == 1);
    CHECK(cleared);
    store.clear_hold("vol:{acme}", [&](bool ok) { cleared = ok; });
    CHECK_FALSE(cleared);
    store.clear_hold("vol:{nobody}", [&](bool ok) { cleared = ok; });
    CHECK_FALSE(cleared);

    // submit() answers at once, outside the lock (the callback may call in).
    Outcome got;
    store.submit(r, [&](Outcome out) {
        got = std::move(out);
        CHECK(store.size() == 2);
    });
    CHECK(got.volume == 4);
    CHECK_FALSE(got.held);
    CHECK_FALSE(got.spike);
}

TEST_CASE("invalid requests are store errors, not exceptions") {
    MemoryStore store([] { return 0.0; }, 100);
    Request r = one(check("k", 1, 60, 1));
    r.checks[0].interval = 0;
    Outcome o = store.decide(r);
    CHECK(o.status == Outcome::Status::store_error);
    CHECK_FALSE(o.allowed);
    r = one(check("k", 1, 60, 1));
    r.checks[0].tolerance = std::nan("");
    CHECK(store.decide(r).status == Outcome::Status::store_error);
    r = Request{};
    r.volume_key = "vol:{t}";
    r.spike.slots = 0;
    CHECK(store.decide(r).status == Outcome::Status::store_error);
    CHECK(store.size() == 0);
}

TEST_CASE("threads: exactly the budget passes on one key, and per tenant") {
    const double now = 5e8;
    MemoryStore store([&] { return now; }, 100000);
    std::atomic<int> allowed{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            const Request r = one(check("rl:{acme}:tenant:acme:messages:86400", 1000, 86400, 1000));
            for (int i = 0; i < 10000; ++i)
                if (store.decide(r).allowed) ++allowed;
        });
    }
    for (auto& t : threads)
        t.join();
    CHECK(allowed.load() == 1000);

    // 64 tenants over all the shards, each with a budget of 5.
    std::vector<std::atomic<int>> per_tenant(64);
    threads.clear();
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 4000; ++i) {
                const int tenant = (i * 7 + t) % 64;
                const std::string tag = "{t" + std::to_string(tenant) + "}";
                Request r = one(check("rl:" + tag + ":m", 5, 3600, 5));
                r.volume_key = "vol:" + tag;
                if (store.decide(r).allowed) ++per_tenant[tenant];
            }
        });
    }
    for (auto& t : threads)
        t.join();
    for (int i = 0; i < 64; ++i) {
        CAPTURE(i);
        CHECK(per_tenant[i].load() == 5);
    }
}

TEST_CASE("a lease is taken when it fits and never refuses the request") {
    double now = 100;
    MemoryStore store([&] { return now; }, 1000);
    const Check messages = check("rl:{acme}:tenant:acme:messages:3600", 100, 3600, 100);
    const Check recipients =
        check("rl:{acme}:tenant:acme:recipients:3600", 3, 3600, 3, 1, Check::Mode::lease);
    Request mail;
    mail.checks = {messages, recipients};
    Outcome o = store.decide(mail);
    REQUIRE(o.allowed);
    CHECK(o.leased);
    CHECK(o.remaining == std::vector<std::uint64_t>{99, 2});  // taken in the store at once

    // Two more recipients used at RCPT (consumed there): the limit is full.
    Check rcpt = recipients;
    rcpt.mode = Check::Mode::consume;
    REQUIRE(store.decide(one(rcpt)).allowed);
    REQUIRE(store.decide(one(rcpt)).allowed);
    // The next MAIL FROM is allowed; its lease does not fit and is not taken.
    o = store.decide(mail);
    CHECK(o.allowed);
    CHECK_FALSE(o.leased);
    CHECK(o.remaining == std::vector<std::uint64_t>{98, 0});
    CHECK(o.retry_after == 0);
    // A refused request takes no lease.
    Request refused = mail;
    refused.checks[0].cost = 1000;  // more than the whole messages limit
    o = store.decide(refused);
    CHECK_FALSE(o.allowed);
    CHECK(o.denied == 0);
    CHECK_FALSE(o.leased);

    // Leases are all or nothing among themselves: the hourly fits, the
    // daily does not, so neither is taken.
    now += 3600;
    const Check daily =
        check("rl:{acme}:tenant:acme:recipients:86400", 3, 86400, 3, 1, Check::Mode::lease);
    Request both;
    both.checks = {messages, recipients, daily};
    both.checks[2].cost = 4;
    o = store.decide(both);
    CHECK(o.allowed);
    CHECK_FALSE(o.leased);
    CHECK(o.remaining == std::vector<std::uint64_t>{99, 3, 3});
    both.checks[2].cost = 1;
    o = store.decide(both);
    CHECK(o.leased);
    CHECK(o.remaining == std::vector<std::uint64_t>{98, 2, 2});
    // No lease check: not leased.
    CHECK_FALSE(store.decide(one(messages)).leased);
}

TEST_CASE("a refund restores exactly what the lease took, applies whatever the outcome") {
    double now = 1.7e9;
    MemoryStore store([&] { return now; }, 1000);
    const Check lease =
        check("rl:{acme}:tenant:acme:recipients:3600", 1000, 3600, 1000, 5, Check::Mode::lease);
    const Check messages = check("rl:{acme}:tenant:acme:messages:3600", 2, 3600, 2);
    Check refund = lease;
    refund.mode = Check::Mode::refund;
    Check ask = lease;
    ask.mode = Check::Mode::ask;
    ask.cost = 0;

    for (int i = 0; i < 3; ++i) {
        Request r;
        r.checks = {messages, lease};
        const Outcome o = store.decide(r);
        CHECK(o.allowed == (i < 2));
        CHECK(o.leased == (i < 2));
    }
    CHECK(store.decide(one(ask)).remaining == std::vector<std::uint64_t>{990});
    // Two of five used, three back: 993 left.
    refund.cost = 3;
    Outcome o = store.decide(one(refund));
    CHECK(o.allowed);
    CHECK(o.remaining == std::vector<std::uint64_t>{993});
    // With a request that is refused: the refund still applies, the
    // consumption does not.
    Request eod;
    eod.checks = {messages, refund};
    o = store.decide(eod);
    CHECK_FALSE(o.allowed);
    CHECK(o.denied == 0);
    CHECK(o.remaining == std::vector<std::uint64_t>{0, 996});
    // Refunds first: the units given back are there for the same request.
    const Check small = check("rl:{t}:r", 2, 60, 2, 2);
    REQUIRE(store.decide(one(small)).allowed);
    Check small_refund = small;
    small_refund.mode = Check::Mode::refund;
    small_refund.cost = 1;
    Request again;
    again.checks = {small_refund, small};  // 2 do not fit with 1 given back
    o = store.decide(again);
    CHECK_FALSE(o.allowed);
    CHECK(o.denied == 1);
    CHECK(o.remaining == std::vector<std::uint64_t>{1, 1});  // the refund stayed
    again.checks[1].cost = 1;  // with one more given back, 1 of 2 is taken
    o = store.decide(again);
    CHECK(o.allowed);
    CHECK(o.remaining == std::vector<std::uint64_t>{1, 1});
}

TEST_CASE("a refund never goes below now: the cell is empty, then dropped") {
    double now = 500;
    MemoryStore store([&] { return now; }, 1000);
    const Check lease = check("rl:{acme}:tenant:acme:recipients:60", 6, 60, 6, 2,
                              Check::Mode::lease);  // interval 10 s
    Request r;
    r.checks = {check("rl:{acme}:tenant:acme:messages:60", 6, 60, 6), lease};
    REQUIRE(store.decide(r).leased);
    CHECK(store.size() == 2);
    // 15 s later the lease's 20 s of debt is down to 5 s: refunding both
    // units empties the cell, no credit beyond the burst.
    now += 15;
    Check refund = lease;
    refund.mode = Check::Mode::refund;
    Outcome o = store.decide(one(refund));
    CHECK(o.remaining == std::vector<std::uint64_t>{6});
    CHECK(store.size() == 1);  // the recipients cell holds nothing: dropped
    Check take = lease;
    take.mode = Check::Mode::consume;
    take.cost = 6;
    CHECK(store.decide(one(take)).allowed);
    take.cost = 1;
    CHECK_FALSE(store.decide(one(take)).allowed);
    // A refund for a key with no cell stores nothing.
    now += 1000;
    refund.key = "rl:{other}:tenant:other:recipients:60";
    o = store.decide(one(refund));
    CHECK(o.remaining == std::vector<std::uint64_t>{6});
    CHECK(store.size() == 2);
}
