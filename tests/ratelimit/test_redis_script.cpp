// The Redis decide script against the memory store: the same random
// request sequences through EVAL on a real redis-server and through a
// MemoryStore on a fake clock at the same times must give the same
// Outcomes, field by field. Integration test: starts /usr/bin/redis-server
// on a free loopback port and stops it by its pid. hiredis's synchronous
// client is used here only; the gateway does its Redis I/O with Asio.
#include <doctest/doctest.h>

#include <hiredis/hiredis.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "gateway/ratelimit/memory_store.hpp"
#include "gateway/ratelimit/redis_script.hpp"
#include "tests/common/redis_server.hpp"

using namespace relaygate::ratelimit;

namespace {

struct ReplyDeleter {
    void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;
struct ContextDeleter {
    void operator()(redisContext* c) const { redisFree(c); }
};
using Context = std::unique_ptr<redisContext, ContextDeleter>;

Reply command(redisContext* c, const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    return Reply(static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data())));
}

// A private redis-server (stopped by its pid when the test ends, also when
// it fails) and a synchronous connection to it.
class RedisServer {
  public:
    RedisServer() : ctx_(redisConnect("127.0.0.1", server_.port())) {
        if (!ctx_ || ctx_->err) throw std::runtime_error("cannot connect to redis-server");
    }
    redisContext* ctx() { return ctx_.get(); }

  private:
    relaygate::testing::RedisServer server_;
    Context ctx_;
};

// The reply as decode_decide wants it: each element as text.
std::optional<std::vector<std::string>> texts(const redisReply* r) {
    if (!r || r->type != REDIS_REPLY_ARRAY) return std::nullopt;
    std::vector<std::string> out;
    for (size_t i = 0; i < r->elements; ++i) {
        const redisReply* e = r->element[i];
        if (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS)
            out.emplace_back(e->str, e->len);
        else if (e->type == REDIS_REPLY_INTEGER)
            out.push_back(std::to_string(e->integer));
        else if (e->type == REDIS_REPLY_NIL)
            out.emplace_back();
        else
            return std::nullopt;
    }
    return out;
}

Reply eval(redisContext* c, std::string_view script, const ScriptCall& call) {
    std::vector<std::string> args = {"EVAL", std::string(script), std::to_string(call.keys.size())};
    args.insert(args.end(), call.keys.begin(), call.keys.end());
    args.insert(args.end(), call.args.begin(), call.args.end());
    return command(c, args);
}

std::optional<Outcome> decide_in_redis(redisContext* c, const Request& r,
                                       std::optional<double> now) {
    const Reply reply = eval(c, decide_script(), encode_decide(r, now));
    REQUIRE(reply);
    if (reply->type == REDIS_REPLY_ERROR)
        FAIL("script error: " << std::string(reply->str, reply->len));
    const auto t = texts(reply.get());
    REQUIRE(t);
    return decode_decide(r, *t);
}

bool close_enough(double a, double b) {
    if (std::isinf(a) || std::isinf(b)) return a == b;
    return std::fabs(a - b) <= 1e-6;
}

struct Limit {
    const char* name;
    double count, per, burst;
    std::uint64_t max_cost;
};

// One random sequence; returns the number of requests the two allowed.
int run_sequence(redisContext* c, unsigned seed, int steps) {
    std::mt19937_64 rng(seed);
    auto uniform = [&](double lo, double hi) {
        return std::uniform_real_distribution<double>(lo, hi)(rng);
    };
    auto below = [&](std::uint64_t n) {
        return std::uniform_int_distribution<std::uint64_t>(0, n - 1)(rng);
    };

    Reply flushed = command(c, {"FLUSHALL"});
    REQUIRE(flushed);
    double now = 1.7e9 + uniform(0, 86400);  // epoch scale, as TIME gives
    MemoryStore memory([&] { return now; }, 1000000);

    const Limit limits[] = {{"messages:10", 5, 10, 5, 2},
                            {"messages:60", 12, 60, 4, 3},
                            {"recipients:5", 3, 5, 1, 2},
                            {"bytes:30", 1000, 30, 1000, 1300}};
    const char* tenants[] = {"acme", "globex", "initech"};
    int allowed = 0, spikes = 0, news = 0, holds_cleared = 0, leased = 0, not_leased = 0;

    for (int step = 0; step < steps; ++step) {
        CAPTURE(seed);
        CAPTURE(step);
        const double p = uniform(0, 1);
        now += p < 0.4 ? 0 : p < 0.8 ? uniform(0, 2) : p < 0.95 ? uniform(0, 20) : uniform(0, 200);
        const std::string tenant = tenants[below(3)];
        const std::string tag = "{" + tenant + "}";

        if (uniform(0, 1) < 0.03) {
            const Reply r = eval(c, clear_hold_script(), encode_clear_hold("vol:" + tag));
            REQUIRE(r);
            REQUIRE(r->type == REDIS_REPLY_INTEGER);
            bool in_memory = false;
            memory.clear_hold("vol:" + tag, [&](bool ok) { in_memory = ok; });
            CHECK(in_memory == (r->integer == 1));
            holds_cleared += in_memory;
            continue;
        }

        Request req;
        const std::uint64_t n = below(4);
        for (std::uint64_t i = 0; i < n; ++i) {
            const Limit& l = limits[below(4)];  // a key may come twice
            Check ch;
            ch.key = "rl:" + tag + ":tenant:" + tenant + ":" + l.name;
            ch.interval = l.per / l.count;
            ch.tolerance = ch.interval * l.burst;
            ch.cost = 1 + below(l.max_cost);
            const double mode = uniform(0, 1);
            ch.mode = mode < 0.7   ? Check::Mode::consume
                      : mode < 0.8 ? Check::Mode::ask
                      : mode < 0.9 ? Check::Mode::lease
                                   : Check::Mode::refund;
            req.checks.push_back(ch);
        }
        if (uniform(0, 1) < 0.7) {
            req.volume_key = "vol:" + tag;
            req.spike.bucket_seconds = 5;
            req.spike.slots = 3;
            req.spike.alpha = 0.3;
            req.spike.multiple = 2;
            req.spike.min_messages = 3;
            // A batching process counts several messages at once.
            if (uniform(0, 1) < 0.2) req.volume_count = 1 + below(4);
        }
        const std::uint64_t m = below(3);
        for (std::uint64_t j = 0; j < m; ++j)
            req.first_seen.push_back("seen:" + tag + ":from:" + std::to_string(below(5)));
        req.first_seen_ttl = 15;

        const Outcome mem = memory.decide(req);
        const std::optional<Outcome> red = decide_in_redis(c, req, now);
        REQUIRE(red.has_value());
        REQUIRE(mem.status == Outcome::Status::ok);
        CHECK(red->allowed == mem.allowed);
        CHECK(red->leased == mem.leased);
        CHECK(red->denied == mem.denied);
        CHECK(close_enough(red->retry_after, mem.retry_after));
        CHECK(red->remaining == mem.remaining);
        CHECK(red->spike == mem.spike);
        CHECK(red->held == mem.held);
        CHECK(red->volume == mem.volume);
        CHECK(close_enough(red->baseline, mem.baseline));
        CHECK(red->first_seen_new == mem.first_seen_new);
        allowed += mem.allowed && n > 0;
        const bool has_lease =
            std::any_of(req.checks.begin(), req.checks.end(),
                        [](const Check& c) { return c.mode == Check::Mode::lease; });
        leased += mem.leased;
        not_leased += mem.allowed && has_lease && !mem.leased;
        spikes += mem.spike;
        for (bool b : mem.first_seen_new)
            news += b;
    }
    // The sequence exercised what it should compare.
    CHECK(spikes > 0);
    CHECK(news > 0);
    CHECK(allowed > 0);
    CHECK(leased > 0);
    CHECK(not_leased > 0);
    MESSAGE("seed " << seed << ": " << allowed << " allowed, " << spikes << " spikes, " << news
                    << " first-seen, " << holds_cleared << " holds cleared, " << leased
                    << " leases granted, " << not_leased << " not");

    // Every key the script wrote expires by itself.
    const Reply keys = command(c, {"KEYS", "*"});
    REQUIRE(keys);
    REQUIRE(keys->type == REDIS_REPLY_ARRAY);
    CHECK(keys->elements > 0);
    for (size_t i = 0; i < keys->elements; ++i) {
        const std::string key(keys->element[i]->str, keys->element[i]->len);
        const Reply ttl = command(c, {"PTTL", key});
        REQUIRE(ttl);
        CAPTURE(key);
        CHECK(ttl->integer > 0);
    }
    return allowed;
}

}  // namespace

TEST_CASE("the decide script decides exactly as the memory store") {
    RedisServer redis;
    for (unsigned seed : {1u, 2u, 3u, 4u, 5u})
        run_sequence(redis.ctx(), seed, 1500);
}

TEST_CASE("the server's TIME is the clock when no `now` is given") {
    RedisServer redis;
    Request r;
    Check ch;
    ch.key = "rl:{acme}:tenant:acme:messages:60";
    ch.interval = 60.0 / 2;
    ch.tolerance = 60;
    r.checks = {ch, ch, ch};  // the third does not fit
    r.volume_key = "vol:{acme}";
    r.first_seen = {"seen:{acme}:net:192.0.2.0/24"};
    std::optional<Outcome> o = decide_in_redis(redis.ctx(), r, std::nullopt);
    REQUIRE(o);
    CHECK_FALSE(o->allowed);
    CHECK(o->denied == 2);
    CHECK(o->retry_after == doctest::Approx(30).epsilon(1e-3));
    CHECK(o->volume == 1);
    CHECK(o->first_seen_new == FirstSeenFlags{true});
    r.checks.pop_back();
    o = decide_in_redis(redis.ctx(), r, std::nullopt);
    REQUIRE(o);
    CHECK(o->allowed);
    CHECK(o->remaining == std::vector<std::uint64_t>{0, 0});
    CHECK(o->volume == 2);
    CHECK(o->first_seen_new == FirstSeenFlags{false});
    // The cell's TTL is its TAT (two intervals ahead) plus the margin.
    const Reply ttl = command(redis.ctx(), {"PTTL", ch.key});
    REQUIRE(ttl);
    CHECK(ttl->integer > 60000);
    CHECK(ttl->integer <= 61000);
}

TEST_CASE("bad arguments are script errors, written nothing") {
    RedisServer redis;
    Request r;
    Check ch;
    ch.key = "rl:{acme}:x";
    ch.interval = 0;
    r.checks = {ch};
    r.first_seen = {"seen:{acme}:y"};
    const Reply reply = eval(redis.ctx(), decide_script(), encode_decide(r, 100.0));
    REQUIRE(reply);
    CHECK(reply->type == REDIS_REPLY_ERROR);
    const Reply size = command(redis.ctx(), {"DBSIZE"});
    REQUIRE(size);
    CHECK(size->integer == 0);
}
