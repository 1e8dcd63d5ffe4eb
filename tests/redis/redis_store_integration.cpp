// Integration tests for gateway/server/redis_client and redis_store against
// a real /usr/bin/redis-server started here on a free loopback port (and
// stopped by its pid): commands and pipelining, two replicas sharing one
// limit, AUTH with an ACL user, TLS, and Redis killed, stopped (SIGSTOP)
// and restarted under fail_open and fail_closed.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "gateway/metrics/metrics.hpp"
#include "gateway/ratelimit/redis_script.hpp"
#include "gateway/server/redis_client.hpp"
#include "gateway/server/redis_store.hpp"
#include "tests/common/redis_server.hpp"

extern char** environ;

using namespace relaygate;
using namespace relaygate::server;
using namespace std::chrono_literals;
using ratelimit::Outcome;
using ratelimit::Request;
using testing::RedisServer;

namespace {

// An io_context on its own thread, as the server runs it.
struct IoThread {
    net::asio::io_context ioc;
    net::asio::executor_work_guard<net::asio::io_context::executor_type> work{ioc.get_executor()};
    std::thread thread{[this] { ioc.run(); }};
    ~IoThread() {
        work.reset();
        ioc.stop();
        thread.join();
    }
};

template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds limit = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        if (pred()) return true;
        std::this_thread::sleep_for(5ms);
    }
    return pred();
}

Result<resp::Value, std::string> call(RedisClient& c, std::vector<std::string> argv) {
    auto p = std::make_shared<std::promise<Result<resp::Value, std::string>>>();
    auto f = p->get_future();
    c.call(std::move(argv),
           [p](Result<resp::Value, std::string> r) { p->set_value(std::move(r)); });
    REQUIRE(f.wait_for(5s) == std::future_status::ready);
    return f.get();
}

Outcome decide(ratelimit::Store& s, Request r) {
    auto p = std::make_shared<std::promise<Outcome>>();
    auto f = p->get_future();
    s.submit(std::move(r), [p](Outcome o) { p->set_value(std::move(o)); });
    REQUIRE(f.wait_for(5s) == std::future_status::ready);
    return f.get();
}

// "count per hour, burst = count" for tenant acme's messages.
Request messages(std::uint64_t count, const std::string& tenant = "acme") {
    Request r;
    ratelimit::Check c;
    c.key = "rl:{" + tenant + "}:tenant:" + tenant + ":messages:3600";
    c.interval = 3600.0 / double(count);
    c.tolerance = 3600.0;
    r.checks.push_back(c);
    return r;
}

RedisClientOptions client_options(const std::string& address) {
    RedisClientOptions o;
    o.address = address;
    o.connect_timeout = 500ms;
    o.command_timeout = 300ms;
    o.backoff_min = 20ms;
    o.backoff_max = 200ms;
    return o;
}

RedisStoreOptions store_options(const std::string& address, std::uint32_t replicas = 1) {
    RedisStoreOptions o;
    o.client = client_options(address);
    o.replicas = replicas;
    o.fallback_entries = 10000;
    return o;
}

std::filesystem::path temp_dir() {
    char tmpl[] = "/tmp/relaygate-redis-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
    return tmpl;
}

void write_file(const std::filesystem::path& p, const std::string& s) {
    std::ofstream(p, std::ios::binary) << s;
}

}  // namespace

TEST_CASE("client: commands, error replies, pipelining in order") {
    RedisServer redis;
    IoThread io;
    auto c = RedisClient::create(io.ioc.get_executor(), client_options(redis.address()));
    REQUIRE(wait_until([&] { return c->connected(); }));
    auto pong = call(*c, {"PING"});
    REQUIRE(pong.ok());
    CHECK(pong->type == resp::Type::status);
    CHECK(pong->text == "PONG");
    CHECK(call(*c, {"SET", "k", std::string("v\r\n\0x", 5)}).ok());
    auto got = call(*c, {"GET", "k"});
    REQUIRE(got.ok());
    CHECK(got->text == std::string("v\r\n\0x", 5));
    auto err = call(*c, {"NOSUCHCOMMAND"});
    REQUIRE(err.ok());  // an error reply is a reply
    CHECK(err->is_error());
    auto eval = call(*c, {"EVAL", "return {1, ARGV[1], KEYS[1]}", "1", "key", "arg"});
    REQUIRE(eval.ok());
    REQUIRE(eval->elements.size() == 3);
    CHECK(eval->elements[2].text == "key");

    // 2000 commands in flight at once: every reply matched to its command.
    constexpr int kN = 2000;
    std::vector<std::promise<long long>> results(kN);
    for (int i = 0; i < kN; ++i)
        c->call({"INCRBY", "counter", "1"}, [&results, i](Result<resp::Value, std::string> r) {
            results[i].set_value(r.ok() ? r->integer : -1);
        });
    for (int i = 0; i < kN; ++i) {
        auto f = results[i].get_future();
        REQUIRE(f.wait_for(5s) == std::future_status::ready);
        CHECK(f.get() == i + 1);
    }
    c->close();
    CHECK(wait_until([&] { return !c->connected(); }));
    auto closed = call(*c, {"PING"});
    CHECK(!closed.ok());
}

TEST_CASE("client: a bounded queue fails at once when full") {
    RedisServer redis;
    IoThread io;
    auto opts = client_options(redis.address());
    opts.max_pending = 4;
    auto c = RedisClient::create(io.ioc.get_executor(), opts);
    REQUIRE(wait_until([&] { return c->connected(); }));
    redis.pause();  // nothing is answered: the queue fills
    std::atomic<int> queue_full{0}, timed_out{0};
    std::atomic<int> done{0};
    for (int i = 0; i < 10; ++i)
        c->call({"PING"}, [&](Result<resp::Value, std::string> r) {
            if (!r.ok() && r.error().find("pending") != std::string::npos) ++queue_full;
            if (!r.ok() && redis_error_kind(r.error()) == "timeout") ++timed_out;
            ++done;
        });
    CHECK(wait_until([&] { return done == 10; }, 3s));
    CHECK(queue_full == 6);
    CHECK(timed_out == 10);  // queue full counts as a timeout kind too
    redis.resume();
    c->close();
}

TEST_CASE("two replicas share one limit") {
    RedisServer redis;
    metrics::Metrics m;  // outlives the io thread, which reports into it
    IoThread io;
    RedisStore a(io.ioc.get_executor(), store_options(redis.address(), 2), m);
    RedisStore b(io.ioc.get_executor(), store_options(redis.address(), 2), m);
    REQUIRE(wait_until([&] { return a.connected() && b.connected(); }));

    // 60 concurrent requests, alternating replicas, against 10 per hour.
    constexpr int kN = 60;
    std::vector<std::promise<Outcome>> out(kN);
    for (int i = 0; i < kN; ++i)
        (i % 2 ? a : b).submit(messages(10), [&out, i](Outcome o) { out[i].set_value(o); });
    int allowed = 0;
    for (auto& p : out) {
        auto f = p.get_future();
        REQUIRE(f.wait_for(5s) == std::future_status::ready);
        const Outcome o = f.get();
        CHECK(o.status == Outcome::Status::ok);
        CHECK_FALSE(o.fallback);
        allowed += o.allowed ? 1 : 0;
    }
    CHECK(allowed == 10);

    // The keys carry the prefix; the script survives SCRIPT FLUSH (NOSCRIPT
    // -> EVAL) and the limit still holds.
    auto c = RedisClient::create(io.ioc.get_executor(), client_options(redis.address()));
    REQUIRE(wait_until([&] { return c->connected(); }));
    auto keys = call(*c, {"KEYS", "*"});
    REQUIRE(keys.ok());
    REQUIRE(keys->elements.size() == 1);
    CHECK(keys->elements[0].text == "relaygate:rl:{acme}:tenant:acme:messages:3600");
    REQUIRE(call(*c, {"SCRIPT", "FLUSH"}).ok());
    const Outcome again = decide(a, messages(10));
    CHECK(again.status == Outcome::Status::ok);
    CHECK_FALSE(again.allowed);
    CHECK(again.retry_after > 0);
    const Outcome other = decide(b, messages(10, "other"));
    CHECK(other.allowed);
    CHECK(other.remaining.at(0) == 9);
    c->close();

    const std::string text = m.serialize();
    CHECK(text.find("relaygate_rate_limit_store_up 1") != std::string::npos);
    CHECK(text.find("relaygate_rate_limit_store_duration_seconds_count{store=\"redis\"} 62") !=
          std::string::npos);
}

TEST_CASE("recipient leases on two replicas: never over the limit, refunds reach Redis") {
    RedisServer redis;
    metrics::Metrics m;  // outlives the io thread, which reports into it
    IoThread io;
    RedisStore a(io.ioc.get_executor(), store_options(redis.address()), m);
    RedisStore b(io.ioc.get_executor(), store_options(redis.address()), m);
    REQUIRE(wait_until([&] { return a.connected() && b.connected(); }));

    // 12 recipients per hour. A transaction is a MAIL FROM request (a
    // message and a lease of one recipient) and, when the lease was not
    // granted, the RCPT's own request; the replicas alternate.
    auto mail = [] {
        Request r = messages(1000);
        ratelimit::Check lease;
        lease.key = "rl:{acme}:tenant:acme:recipients:3600";
        lease.interval = 3600.0 / 12;
        lease.tolerance = 3600.0;
        lease.mode = ratelimit::Check::Mode::lease;
        r.checks.push_back(lease);
        return r;
    };
    auto rcpt = [&] {
        Request r;
        r.checks.push_back(mail().checks[1]);
        r.checks[0].mode = ratelimit::Check::Mode::consume;
        return r;
    };
    constexpr int kN = 40;
    std::vector<std::promise<Outcome>> mails(kN);
    for (int i = 0; i < kN; ++i)
        (i % 2 ? a : b).submit(mail(), [&mails, i](Outcome o) { mails[i].set_value(o); });
    int recipients = 0, leases = 0;
    for (int i = 0; i < kN; ++i) {
        auto f = mails[i].get_future();
        REQUIRE(f.wait_for(5s) == std::future_status::ready);
        const Outcome o = f.get();
        REQUIRE(o.status == Outcome::Status::ok);
        CHECK(o.allowed);  // never refused for its lease
        if (o.leased) {
            ++leases;
            ++recipients;
        } else if (decide(i % 2 ? a : b, rcpt()).allowed) {
            ++recipients;
        }
    }
    CHECK(leases == 12);
    CHECK(recipients == 12);  // exactly the limit, never more

    // A lease of 3 taken on one replica shows on the other; its refund
    // gives all 3 back there, and the cell is gone (no debt left).
    Request fresh = mail();
    fresh.checks[1].key = "rl:{acme}:tenant:acme:recipients:60";
    fresh.checks[1].cost = 3;
    const Outcome leased = decide(a, fresh);
    REQUIRE(leased.leased);
    CHECK(leased.remaining.at(1) == 9);
    Request refund;
    refund.checks.push_back(fresh.checks[1]);
    refund.checks[0].mode = ratelimit::Check::Mode::refund;
    CHECK(decide(b, refund).remaining.at(0) == 12);
    auto c = RedisClient::create(io.ioc.get_executor(), client_options(redis.address()));
    REQUIRE(wait_until([&] { return c->connected(); }));
    auto cell = call(*c, {"EXISTS", "relaygate:rl:{acme}:tenant:acme:recipients:60"});
    REQUIRE(cell.ok());
    CHECK(cell->integer == 0);
    c->close();
}

TEST_CASE("one connection per I/O thread, each answering on its own thread") {
    RedisServer redis;
    metrics::Metrics m;  // outlives the io threads, which report into it
    IoThread io[3];
    RedisStore s({io[0].ioc.get_executor(), io[1].ioc.get_executor(), io[2].ioc.get_executor()},
                 store_options(redis.address()), m);
    REQUIRE(wait_until([&] { return s.connected(); }));
    CHECK(m.serialize().find("relaygate_rate_limit_store_up 1") != std::string::npos);

    // 30 decisions against 10 per hour, each submitted on one of the
    // threads (as a session would): its reply comes back on that thread,
    // and the three connections share the limit.
    constexpr int kN = 30;
    std::vector<std::promise<std::pair<Outcome, bool>>> out(kN);
    for (int i = 0; i < kN; ++i) {
        auto& ioc = io[i % 3].ioc;
        net::asio::post(ioc, [&s, &ioc, &out, i] {
            s.submit(messages(10), [&ioc, &out, i](Outcome o) {
                out[i].set_value({o, ioc.get_executor().running_in_this_thread()});
            });
        });
    }
    int allowed = 0, home = 0;
    for (auto& p : out) {
        auto f = p.get_future();
        REQUIRE(f.wait_for(5s) == std::future_status::ready);
        const auto [o, on_own_thread] = f.get();
        CHECK(o.status == Outcome::Status::ok);
        allowed += o.allowed ? 1 : 0;
        home += on_own_thread ? 1 : 0;
    }
    CHECK(allowed == 10);
    CHECK(home == kN);
    // From a thread that runs none of them (the admin endpoint's clear-hold
    // in a test, say): one of the connections answers.
    CHECK_FALSE(decide(s, messages(10)).allowed);

    auto c = RedisClient::create(io[0].ioc.get_executor(), client_options(redis.address()));
    REQUIRE(wait_until([&] { return c->connected(); }));
    auto clients = call(*c, {"CLIENT", "LIST"});
    REQUIRE(clients.ok());
    const std::string& list = clients->text;
    CHECK(std::count(list.begin(), list.end(), '\n') == 4);  // three store connections + c
    c->close();
}

TEST_CASE("clear_hold runs its script") {
    RedisServer redis;
    metrics::Metrics m;  // outlives the io thread, which reports into it
    IoThread io;
    RedisStore s(io.ioc.get_executor(), store_options(redis.address()), m);
    REQUIRE(wait_until([&] { return s.connected(); }));
    auto p = std::make_shared<std::promise<bool>>();
    s.clear_hold("vol:{acme}", [p](bool ok) { p->set_value(ok); });
    auto f = p->get_future();
    REQUIRE(f.wait_for(5s) == std::future_status::ready);
    CHECK_FALSE(f.get());  // no hold to clear
}

TEST_CASE("AUTH: an ACL user with a password file; a wrong password fails cleanly") {
    // One word per argument: redis-server quotes an argument with spaces.
    RedisServer redis(
        {"--user", "default", "off", "--user", "relaygate", "on", ">s3cret-pw", "~*", "+@all"});
    const auto dir = temp_dir();
    write_file(dir / "pw", "s3cret-pw\n");
    write_file(dir / "bad", "wrong\n");
    metrics::Metrics m;  // outlives the io thread, which reports into it
    IoThread io;

    config::RateLimit rl;
    rl.address = redis.address();
    rl.username = "relaygate";
    rl.password_file = (dir / "pw").string();
    auto opts = redis_store_options(rl);
    REQUIRE(opts.ok());
    CHECK(opts->client.password == "s3cret-pw");  // trailing newline stripped
    {
        RedisStore s(io.ioc.get_executor(), *opts, m);
        REQUIRE(wait_until([&] { return s.connected(); }));
        const Outcome o = decide(s, messages(5));
        CHECK(o.status == Outcome::Status::ok);
        CHECK_FALSE(o.fallback);
        CHECK(o.allowed);
    }
    rl.password_file = (dir / "bad").string();
    auto bad = redis_store_options(rl);
    REQUIRE(bad.ok());
    bad->on_error = config::StoreFailure::fail_closed;
    {
        RedisStore s(io.ioc.get_executor(), *bad, m);
        std::this_thread::sleep_for(300ms);
        CHECK_FALSE(s.connected());
        const Outcome o = decide(s, messages(5));
        CHECK(o.status == Outcome::Status::store_error);
        CHECK_FALSE(o.allowed);
    }
    CHECK(m.serialize().find("relaygate_rate_limit_store_errors_total{kind=\"connect\"} 0") ==
          std::string::npos);
    rl.password_file = (dir / "missing").string();
    CHECK_FALSE(redis_store_options(rl).ok());

    // No username: AUTH <password> (requirepass, the default user).
    RedisServer plain({"--requirepass", "s3cret-pw"});
    rl.address = plain.address();
    rl.username.clear();
    rl.password_file = (dir / "pw").string();
    auto no_user = redis_store_options(rl);
    REQUIRE(no_user.ok());
    {
        RedisStore s(io.ioc.get_executor(), *no_user, m);
        REQUIRE(wait_until([&] { return s.connected(); }));
        CHECK(decide(s, messages(5)).allowed);
    }
    std::filesystem::remove_all(dir);
}

TEST_CASE("TLS: verified server certificate and a client certificate") {
    const auto dir = temp_dir();
    const std::string d = dir.string();
    const std::string gen =
        "cd " + d +
        " && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca "
        "-keyout ca.key -out ca.pem 2>/dev/null"
        " && openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key "
        "-out server.csr 2>/dev/null"
        " && printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext"
        " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
        "-extfile san.ext -out server.pem 2>/dev/null"
        " && openssl req -newkey rsa:2048 -nodes -subj /CN=relaygate -keyout client.key "
        "-out client.csr 2>/dev/null"
        " && openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
        "-out client.pem 2>/dev/null"
        " && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca "
        "-keyout other.key -out other.pem 2>/dev/null";
    REQUIRE(std::system(gen.c_str()) == 0);
    RedisServer redis({"--tls-cert-file", d + "/server.pem", "--tls-key-file", d + "/server.key",
                       "--tls-ca-cert-file", d + "/ca.pem", "--tls-auth-clients", "yes"},
                      true);
    metrics::Metrics m;  // outlives the io thread, which reports into it
    IoThread io;

    auto opts = store_options(redis.address());
    opts.client.tls = true;
    opts.client.ca_file = d + "/ca.pem";
    opts.client.cert_file = d + "/client.pem";
    opts.client.key_file = d + "/client.key";
    {
        RedisStore s(io.ioc.get_executor(), opts, m);  // verifies IP 127.0.0.1
        REQUIRE(wait_until([&] { return s.connected(); }));
        CHECK(decide(s, messages(3)).allowed);
    }
    {
        auto named = opts;
        named.client.verify_name = "localhost";
        RedisStore s(io.ioc.get_executor(), named, m);
        REQUIRE(wait_until([&] { return s.connected(); }));
        CHECK(decide(s, messages(3)).allowed);
    }
    for (auto bad : {std::string("wrong-name"), std::string("other-ca"), std::string("no-cert")}) {
        CAPTURE(bad);
        auto o = opts;
        o.on_error = config::StoreFailure::fail_closed;
        if (bad == "wrong-name") o.client.verify_name = "redis.example";
        if (bad == "other-ca") o.client.ca_file = d + "/other.pem";
        if (bad == "no-cert") o.client.cert_file = o.client.key_file = "";
        RedisStore s(io.ioc.get_executor(), o, m);
        std::this_thread::sleep_for(300ms);
        if (bad == "no-cert") {
            // TLS 1.3: the client's side of the handshake completes before
            // the server checks for its certificate, so the connection may
            // look up until the server's alert arrives; it never serves.
            CHECK(wait_until([&] { return !s.connected(); }));
        } else {
            CHECK_FALSE(s.connected());
        }
        CHECK(decide(s, messages(3)).status == Outcome::Status::store_error);
    }
    std::filesystem::remove_all(dir);
}

TEST_CASE("Redis killed: fail_open decides on divided limits, fail_closed tempfails, no hang") {
    auto redis = std::make_unique<RedisServer>();
    const std::uint16_t port = redis->port();
    metrics::Metrics m;  // outlives the io thread, which reports into it
    IoThread io;
    RedisStore open_store(io.ioc.get_executor(), store_options(redis->address(), 2), m);
    auto closed_opts = store_options(redis->address(), 2);
    closed_opts.on_error = config::StoreFailure::fail_closed;
    RedisStore closed_store(io.ioc.get_executor(), closed_opts, m);
    REQUIRE(wait_until([&] { return open_store.connected() && closed_store.connected(); }));
    CHECK(decide(open_store, messages(10)).allowed);

    redis->kill();
    REQUIRE(wait_until([&] { return !open_store.connected(); }));
    // 10 per hour over 2 replicas: this one gets 5 on its own.
    int allowed = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 20; ++i) {
        const Outcome o = decide(open_store, messages(10));
        CHECK(o.status == Outcome::Status::ok);
        CHECK(o.fallback);
        allowed += o.allowed ? 1 : 0;
    }
    CHECK(allowed == 5);
    const Outcome c = decide(closed_store, messages(10));
    CHECK(c.status == Outcome::Status::store_error);
    CHECK(!c.error.empty());
    CHECK(std::chrono::steady_clock::now() - t0 < 2s);  // down: failing at once
    const std::string text = m.serialize();
    CHECK(text.find("relaygate_rate_limit_fallback_total 20") != std::string::npos);
    CHECK(text.find("relaygate_rate_limit_store_up 0") != std::string::npos);

    // Restarted on the same port: both reconnect and decide on Redis again.
    redis = std::make_unique<RedisServer>(std::vector<std::string>{}, false, port);
    REQUIRE(wait_until([&] { return open_store.connected() && closed_store.connected(); }));
    const Outcome back = decide(open_store, messages(10));
    CHECK_FALSE(back.fallback);
    CHECK(back.allowed);  // a fresh server: a fresh budget
    CHECK(decide(closed_store, messages(10)).status == Outcome::Status::ok);
}

TEST_CASE("Redis stopped (SIGSTOP): a timeout within timeout_ms, then recovery") {
    RedisServer redis;
    metrics::Metrics m;  // outlives the io thread, which reports into it
    IoThread io;
    auto opts = store_options(redis.address());
    opts.on_error = config::StoreFailure::fail_closed;
    opts.client.command_timeout = 200ms;
    RedisStore s(io.ioc.get_executor(), opts, m);
    REQUIRE(wait_until([&] { return s.connected(); }));
    CHECK(decide(s, messages(10)).allowed);

    redis.pause();
    const auto t0 = std::chrono::steady_clock::now();
    const Outcome o = decide(s, messages(10));
    const auto took = std::chrono::steady_clock::now() - t0;
    CHECK(o.status == Outcome::Status::store_error);
    CHECK(o.error.starts_with("timeout:"));
    CHECK(took >= 190ms);
    CHECK(took < 600ms);
    CHECK(m.serialize().find("relaygate_rate_limit_store_errors_total{kind=\"timeout\"} 1") !=
          std::string::npos);

    redis.resume();
    REQUIRE(wait_until([&] { return s.connected(); }));
    const Outcome after = decide(s, messages(10));
    CHECK(after.status == Outcome::Status::ok);
    CHECK(after.allowed);
}

TEST_CASE("fallback division: interval times replicas, tolerance kept, at least one unit") {
    Request r = messages(10);
    r.volume_key = "vol:{acme}";
    r.first_seen = {"seen:{acme}:net:198.51.100.0/24"};
    const Request d = RedisStore::divided(r, 4);
    REQUIRE(d.checks.size() == 1);
    CHECK(d.checks[0].interval == doctest::Approx(1440));
    CHECK(d.checks[0].tolerance == doctest::Approx(3600));
    CHECK(d.volume_key.empty());
    CHECK(d.first_seen.empty());
    const Request many = RedisStore::divided(r, 100);  // burst 10 over 100 replicas
    CHECK(many.checks[0].tolerance == doctest::Approx(many.checks[0].interval));

    // Leases and refunds are Redis's: the fallback neither takes nor gives
    // (questions of nothing, in place, so indices still match).
    Request leasing = messages(10);
    leasing.checks.push_back(leasing.checks[0]);
    leasing.checks[1].mode = ratelimit::Check::Mode::lease;
    leasing.checks.push_back(leasing.checks[0]);
    leasing.checks[2].mode = ratelimit::Check::Mode::refund;
    leasing.checks[2].cost = 2;
    const Request f = RedisStore::divided(leasing, 2);
    REQUIRE(f.checks.size() == 3);
    CHECK(f.checks[0].mode == ratelimit::Check::Mode::consume);
    CHECK(f.checks[1].mode == ratelimit::Check::Mode::ask);
    CHECK(f.checks[1].cost == 0);
    CHECK(f.checks[2].mode == ratelimit::Check::Mode::ask);
    CHECK(f.checks[2].cost == 0);
}
