// The batch store in front of a shared store (here a MemoryStore that
// counts its calls, standing in for Redis): blocks decide most messages
// in the process, replicas never overshoot a limit together, unused units
// and waiting volume counts reach the store, marks are not sent twice,
// and the caller's outcome reads as if the store had answered.
#include <doctest/doctest.h>

#include <atomic>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gateway/ratelimit/batch_store.hpp"
#include "gateway/ratelimit/memory_store.hpp"

using namespace relaygate::ratelimit;

namespace {

// The shared store: a MemoryStore that counts calls; `defer` holds the
// answers until release() (a store that answers later, like Redis).
class Shared final : public Store {
  public:
    explicit Shared(std::function<double()> clock) : memory(std::move(clock), 100000) {}
    void submit(Request r, std::function<void(Outcome)> done) override {
        ++calls;
        {
            std::lock_guard lock(mutex);
            requests.push_back(r);
        }
        Outcome o;
        if (fail) {
            o.status = Outcome::Status::store_error;
            o.allowed = false;
        } else {
            o = memory.decide(r);
        }
        if (defer)
            held.emplace_back(std::move(o), std::move(done));
        else
            done(std::move(o));
    }
    void clear_hold(std::string key, std::function<void(bool)> done) override {
        memory.clear_hold(std::move(key), std::move(done));
    }
    std::string_view name() const override { return "shared"; }
    void release() {
        while (!held.empty()) {
            auto [o, done] = std::move(held.front());
            held.pop_front();
            done(std::move(o));
        }
    }

    MemoryStore memory;
    std::atomic<int> calls{0};
    std::mutex mutex;
    std::vector<Request> requests;
    bool defer = false;
    bool fail = false;
    std::deque<std::pair<Outcome, std::function<void(Outcome)>>> held;
};

struct Events final : BatchEvents {
    void decided(bool local) override { (local ? in_process : in_store) += 1; }
    void block_units(std::string_view event, std::uint64_t units) override {
        if (event == "taken") taken += units;
        if (event == "returned") returned += units;
        if (event == "lost") lost += units;
    }
    void spike(std::string_view key, const Outcome& o) override {
        spikes.emplace_back(key);
        spike_volume = o.volume;
    }
    std::atomic<int> in_process{0}, in_store{0};
    std::uint64_t taken = 0, returned = 0, lost = 0;
    std::vector<std::string> spikes;
    std::uint64_t spike_volume = 0;
};

// count per hour with a burst of `count` (the policy's default burst).
Check limit(std::string key, double count, std::uint64_t cost = 1,
            Check::Mode mode = Check::Mode::consume) {
    return {std::move(key), 3600 / count, 3600, cost, mode};
}

const std::string kMessages = "rl:{acme}:tenant:acme:messages:3600";
const std::string kRecipients = "rl:{acme}:tenant:acme:recipients:3600";

Request message(double count = 1000) {
    Request r;
    r.checks.push_back(limit(kMessages, count));
    return r;
}

// Decides like the session: at once when it can, else by submit.
Outcome decide(BatchStore& store, Request r) {
    if (auto now = store.decide_now(r)) return *now;
    Outcome out;
    bool answered = false;
    store.submit(std::move(r), [&](Outcome o) {
        out = std::move(o);
        answered = true;
    });
    REQUIRE(answered);
    return out;
}

BatchSettings settings(double fraction = 0.01) {
    BatchSettings s;
    s.lease_fraction = fraction;
    s.batch_seconds = 1;
    return s;
}

}  // namespace

TEST_CASE("blocks: one store call per block, and exactly the limit passes") {
    double now = 1000;
    Shared shared([&] { return now; });
    auto events = std::make_shared<Events>();
    BatchStore store(
        shared, [&] { return now; }, settings(), events);

    int allowed = 0;
    for (int i = 0; i < 1200; ++i)
        allowed += decide(store, message()).allowed;
    // 1% of a 1000 burst: blocks of 10, each with the message that asked.
    CHECK(allowed == 1000);
    CHECK(shared.calls < 1000 / 10 + 1 + 200);
    CHECK(shared.calls >= 1000 / 11);
    CHECK(events->in_process + events->in_store == 1200);
    CHECK(events->in_store == shared.calls);
    CHECK(events->taken > 0);
    CHECK(store.units_held() == 0);
    // Below 2 units a block saves nothing: every decision calls the store.
    Shared plain([&] { return now; });
    BatchStore small(
        plain, [&] { return now; }, settings(0.01));
    for (int i = 0; i < 5; ++i)
        CHECK(decide(small, message(100)).allowed);
    CHECK(plain.calls == 5);
    // block_percent 0: no blocks at all.
    Shared none([&] { return now; });
    BatchStore off(
        none, [&] { return now; }, settings(0));
    for (int i = 0; i < 5; ++i)
        CHECK(decide(off, message()).allowed);
    CHECK(none.calls == 5);
}

TEST_CASE("two replicas share a limit: never more than it, and returned units serve the other") {
    double now = 5000;
    Shared shared([&] { return now; });
    auto ea = std::make_shared<Events>();
    BatchStore a(
        shared, [&] { return now; }, settings(0.05), ea);  // blocks of 5
    BatchStore b(
        shared, [&] { return now; }, settings(0.05));
    // a takes one message and a block of 5 it does not use yet.
    CHECK(decide(a, message(100)).allowed);
    CHECK(a.units_held() == 5);
    int b_allowed = 0;
    for (int i = 0; i < 120; ++i)
        b_allowed += decide(b, message(100)).allowed;
    CHECK(b_allowed == 94);  // 100 - 1 - the 5 a holds
    CHECK(b.units_held() == 0);
    // flush(true) gives a's units back to the store, where b finds them.
    a.flush(true);
    CHECK(a.units_held() == 0);
    CHECK(ea->returned == 5);
    int more = 0;
    for (int i = 0; i < 20; ++i)
        more += decide(b, message(100)).allowed;
    CHECK(more == 5);
    // A block goes back by flush() once batch_seconds passed.
    now += 3600;  // the limit refilled
    CHECK(decide(a, message(100)).allowed);
    CHECK(a.units_held() == 5);
    a.flush();
    CHECK(a.units_held() == 5);  // not yet
    now += 1.0;
    a.flush();
    CHECK(a.units_held() == 0);
    CHECK(ea->returned == 10);
}

TEST_CASE("threads share blocks without losing or inventing a unit") {
    Shared shared([] { return 100.0; });
    BatchStore store(
        shared, [] { return 100.0; }, settings(0.01));
    std::atomic<int> allowed{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < 3000; ++i)
                allowed += decide(store, message(10000)).allowed;
        });
    for (auto& t : threads)
        t.join();
    CHECK(allowed == 10000);
    CHECK(store.units_held() == 0);
}

TEST_CASE("a refund goes into the block and reaches the store with it") {
    double now = 100;
    Shared shared([&] { return now; });
    auto events = std::make_shared<Events>();
    BatchStore store(
        shared, [&] { return now; }, settings(), events);
    // The session's recipient lease: 3 units with the MAIL FROM decision.
    Request mail = message();
    mail.checks.push_back(limit(kRecipients, 1000, 3, Check::Mode::lease));
    const Outcome o = decide(store, mail);
    CHECK(o.allowed);
    CHECK(o.leased);
    CHECK(o.remaining.size() == 2);  // the caller's checks, not the blocks
    const int calls = shared.calls;
    Request refund;
    refund.checks.push_back(limit(kRecipients, 1000, 3, Check::Mode::refund));
    const Outcome r = decide(store, refund);
    CHECK(r.status == Outcome::Status::ok);
    CHECK(shared.calls == calls);  // no store call
    const std::uint64_t held = store.units_held();
    CHECK(held >= 3);
    store.flush(true);
    CHECK(shared.calls > calls);
    CHECK(events->returned == held);
    // Everything is back: the store's cells are full again.
    Request probe;
    probe.checks.push_back(limit(kMessages, 1000, 1, Check::Mode::ask));
    probe.checks.push_back(limit(kRecipients, 1000, 1, Check::Mode::ask));
    const Outcome p = shared.memory.decide(probe);
    CHECK(p.remaining[0] == 999);  // the one message
    CHECK(p.remaining[1] == 1000);
}

TEST_CASE("the caller's indexes: denied and remaining refer to its own checks") {
    double now = 100;
    Shared shared([&] { return now; });
    BatchStore store(
        shared, [&] { return now; }, settings(0.5));
    Request r;
    r.checks.push_back(limit(kRecipients, 1000, 2, Check::Mode::refund));  // stays here
    r.checks.push_back(limit(kMessages, 1000));
    r.checks.push_back(limit("rl:{acme}:tenant:acme:bytes:3600", 100, 500));  // cannot fit
    const Outcome o = decide(store, r);
    CHECK_FALSE(o.allowed);
    CHECK(o.denied == 2);
    CHECK(o.remaining.size() == 3);
    CHECK_FALSE(o.leased);
    CHECK(store.units_held() == 2);  // the refund, no block (refused)
}

TEST_CASE("a failing store: no block, the error reaches the caller, returns are lost") {
    double now = 100;
    Shared shared([&] { return now; });
    auto events = std::make_shared<Events>();
    BatchStore store(
        shared, [&] { return now; }, settings(), events);
    shared.fail = true;
    const Outcome o = decide(store, message());
    CHECK(o.status == Outcome::Status::store_error);
    CHECK(store.units_held() == 0);
    Request refund;
    refund.checks.push_back(limit(kRecipients, 1000, 4, Check::Mode::refund));
    decide(store, refund);
    store.flush(true);
    CHECK(events->lost == 4);
    CHECK(events->taken == 0);
}

TEST_CASE("volume counts wait in the process and reach the store in one call") {
    double now = 36000;  // the start of an hour bucket
    Shared shared([&] { return now; });
    auto events = std::make_shared<Events>();
    BatchStore store(
        shared, [&] { return now; }, settings(), events);
    auto observed = [&] {
        Request r;
        r.volume_key = "vol:{acme}";
        r.spike.min_messages = 20;
        r.spike.multiple = 2;
        return r;
    };
    // The first message asks the store (nothing known yet).
    Outcome o = decide(store, observed());
    CHECK(o.volume == 1);
    CHECK(shared.calls == 1);
    for (int i = 0; i < 29; ++i) {
        o = decide(store, observed());
        CHECK_FALSE(o.spike);
    }
    CHECK(shared.calls == 1);
    CHECK(o.volume == 30);  // what the store would say
    CHECK(store.counts_waiting() == 29);
    // A flush after batch_seconds sends them; the store sees the spike.
    now += 0.5;
    store.flush();
    CHECK(shared.calls == 1);
    now += 0.6;
    store.flush();
    CHECK(shared.calls == 2);
    CHECK(shared.requests.back().volume_count == 29);
    REQUIRE(events->spikes.size() == 1);
    CHECK(events->spikes[0] == "vol:{acme}");
    CHECK(events->spike_volume == 30);
    // The hold is known here from then on.
    o = decide(store, observed());
    CHECK(o.held);
    CHECK(o.volume == 31);
    // Waiting counts also ride on the next request that goes anyway.
    now += 1.1;
    Request r = observed();
    r.checks.push_back(limit(kMessages, 10));  // no block: every message asks
    o = decide(store, r);
    CHECK(shared.requests.back().volume_count == 2);
    CHECK(o.volume == 32);
    CHECK(store.counts_waiting() == 0);
    // An operator clears the hold: the next message asks the store.
    bool cleared = false;
    store.clear_hold("vol:{acme}", [&](bool ok) { cleared = ok; });
    CHECK(cleared);
    const int calls = shared.calls;
    o = decide(store, observed());
    CHECK(shared.calls == calls + 1);
    CHECK_FALSE(o.held);
}

TEST_CASE("while the store's answer is on its way, the next messages wait for nothing") {
    double now = 100;
    Shared shared([&] { return now; });
    shared.defer = true;
    BatchStore store(
        shared, [&] { return now; }, settings());
    Request r;
    r.volume_key = "vol:{acme}";
    bool first = false;
    store.submit(r, [&](Outcome) { first = true; });
    // Unknown until the store answers: a second message asks too.
    Request again = r;
    CHECK_FALSE(store.decide_now(again).has_value());
    shared.release();
    CHECK(first);
    Request third = r;
    CHECK(store.decide_now(third).has_value());
}

TEST_CASE("first-seen marks: sent once, then remembered until the refresh") {
    double now = 100;
    Shared shared([&] { return now; });
    BatchSettings s = settings();
    s.seen_refresh = 60;
    s.seen_entries = 4;
    BatchStore store(
        shared, [&] { return now; }, s);
    auto marked = [](std::string what) {
        Request r;
        r.first_seen.push_back("seen:{acme}:net:" + what);
        r.first_seen_ttl = 86400;
        return r;
    };
    Outcome o = decide(store, marked("a"));
    CHECK(o.first_seen_new == FirstSeenFlags{true});
    CHECK(shared.calls == 1);
    o = decide(store, marked("a"));
    CHECK(o.first_seen_new == FirstSeenFlags{false});
    CHECK(shared.calls == 1);
    // After the refresh it is sent again (and still not new in the store).
    now += 61;
    o = decide(store, marked("a"));
    CHECK(shared.calls == 2);
    CHECK(o.first_seen_new == FirstSeenFlags{false});
    // Bounded: after 4 more marks the first is forgotten (sent again, not new).
    for (const char* w : {"b", "c", "d", "e", "f"})
        decide(store, marked(w));
    const int calls = shared.calls;
    o = decide(store, marked("a"));
    CHECK(shared.calls == calls + 1);
    CHECK(o.first_seen_new == FirstSeenFlags{false});
}

TEST_CASE("100k tenants once each: what the process holds goes away when they are idle") {
    double now = 7200;
    Shared shared([&] { return now; });
    BatchSettings s = settings();
    s.seen_entries = 1000;
    BatchStore store(
        shared, [&] { return now; }, s);
    for (int t = 0; t < 100000; ++t) {
        const std::string tag = "{t" + std::to_string(t) + "}";
        Request r;
        r.checks.push_back(limit("rl:" + tag + ":messages", 100000));
        r.volume_key = "vol:" + tag;
        r.first_seen.push_back("seen:" + tag + ":net:192.0.2.0/24");
        r.first_seen_ttl = 86400;
        REQUIRE(decide(store, r).allowed);
    }
    // A block, a volume state per tenant, and at most seen_entries marks.
    CHECK(store.entries() <= 2 * 100000 + 1000);
    CHECK(store.units_held() == 100000 * 1000);
    now += 1;
    store.flush();  // the blocks go back
    CHECK(store.units_held() == 0);
    CHECK(store.entries() <= 100000 + 1000);
    now += 60;
    store.flush();  // the idle volume states are forgotten
    CHECK(store.entries() <= 1000);
}
