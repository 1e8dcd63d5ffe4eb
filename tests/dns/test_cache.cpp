// Tests for gateway/dns/cache: TTL expiry with the caller's clock, caps,
// negative caching, failures never cached, LRU eviction within the bound,
// case-insensitive names.
#include "gateway/dns/cache.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace relaygate::dns;

namespace {

Answer ok(std::string record, std::uint32_t ttl) {
    Answer a;
    a.status = Status::ok;
    a.records = {std::move(record)};
    a.ttl = ttl;
    return a;
}

Answer negative(Status s, std::uint32_t ttl) {
    Answer a;
    a.status = s;
    a.ttl = ttl;
    return a;
}

}  // namespace

TEST_CASE("entries expire after their TTL") {
    Cache c(10);
    c.insert("example.com", RrType::txt, ok("v", 60), 1000.0);
    const Answer* a = c.find("example.com", RrType::txt, 1000.0);
    REQUIRE(a);
    CHECK(a->records == std::vector<std::string>{"v"});
    CHECK(a->ttl == 60);
    a = c.find("example.com", RrType::txt, 1030.5);
    REQUIRE(a);
    CHECK(a->ttl == 30);  // seconds left, rounded up
    CHECK(c.find("example.com", RrType::txt, 1060.0) == nullptr);
    CHECK(c.size() == 0);
}

TEST_CASE("keys: type matters, case and trailing dot do not") {
    Cache c(10);
    c.insert("Example.COM.", RrType::txt, ok("v", 60), 0);
    CHECK(c.find("example.com", RrType::txt, 1));
    CHECK(c.find("EXAMPLE.com.", RrType::txt, 1));
    CHECK_FALSE(c.find("example.com", RrType::a, 1));
    CHECK_FALSE(c.find("www.example.com", RrType::txt, 1));
}

TEST_CASE("TTL caps") {
    Cache c(10, 100, 20);
    c.insert("a.example", RrType::a, ok("192.0.2.1", 100000), 0);
    CHECK(c.find("a.example", RrType::a, 99));
    CHECK_FALSE(c.find("a.example", RrType::a, 100));
    c.insert("b.example", RrType::a, negative(Status::nxdomain, 3600), 0);
    CHECK(c.find("b.example", RrType::a, 19));
    CHECK_FALSE(c.find("b.example", RrType::a, 20));
}

TEST_CASE("negative answers are cached, failures and TTL 0 are not") {
    Cache c(10);
    c.insert("nx.example", RrType::txt, negative(Status::nxdomain, 300), 0);
    c.insert("nd.example", RrType::txt, negative(Status::nodata, 300), 0);
    const Answer* a = c.find("nx.example", RrType::txt, 1);
    REQUIRE(a);
    CHECK(a->status == Status::nxdomain);
    CHECK(c.find("nd.example", RrType::txt, 1)->status == Status::nodata);
    for (Status s : {Status::servfail, Status::error, Status::timeout})
        c.insert("fail.example", RrType::txt, negative(s, 300), 0);
    CHECK_FALSE(c.find("fail.example", RrType::txt, 1));
    c.insert("zero.example", RrType::txt, ok("v", 0), 0);
    c.insert("nosoa.example", RrType::txt, negative(Status::nxdomain, 0), 0);
    Answer follow = negative(Status::nodata, 300);
    follow.follow = true;
    follow.cname_target = "elsewhere.example";
    c.insert("alias.example", RrType::txt, follow, 0);
    CHECK(c.size() == 2);
}

TEST_CASE("bounded, least recently used evicted first") {
    Cache c(3);
    c.insert("a", RrType::a, ok("1", 60), 0);
    c.insert("b", RrType::a, ok("2", 60), 0);
    c.insert("c", RrType::a, ok("3", 60), 0);
    CHECK(c.find("a", RrType::a, 1));  // a is now the most recent
    c.insert("d", RrType::a, ok("4", 60), 1);
    CHECK(c.size() == 3);
    CHECK_FALSE(c.find("b", RrType::a, 2));
    CHECK(c.find("a", RrType::a, 2));
    CHECK(c.find("c", RrType::a, 2));
    CHECK(c.find("d", RrType::a, 2));
    // Replacing an entry does not grow the cache.
    c.insert("d", RrType::a, ok("5", 60), 3);
    CHECK(c.size() == 3);
    CHECK(c.find("d", RrType::a, 3)->records[0] == "5");
    for (int i = 0; i < 100; ++i)
        c.insert("n" + std::to_string(i), RrType::a, ok("x", 60), 4);
    CHECK(c.size() == 3);
}

TEST_CASE("0 entries disables the cache") {
    Cache c(0);
    c.insert("a", RrType::a, ok("1", 60), 0);
    CHECK(c.size() == 0);
    CHECK_FALSE(c.find("a", RrType::a, 0));
}
