// Tests for gateway/config: defaults, contract keys, and errors with paths.
#include "gateway/config/config.hpp"

#include <doctest/doctest.h>

#include <algorithm>

using namespace relaygate::config;

namespace {
bool has_error(const std::vector<ConfigError>& errors, const std::string& path) {
    return std::any_of(errors.begin(), errors.end(),
                       [&](const ConfigError& e) { return e.path == path; });
}
}  // namespace

TEST_CASE("the contract example parses with its values") {
    auto c = parse_config(R"({ "listeners": [ { "address": "127.0.0.1", "port": 2525 } ],
        "upstream":  { "host": "127.0.0.1", "port": 10025 },
        "policy_file": "policy.json",
        "admin":     { "address": "127.0.0.1", "port": 9025 },
        "limits":    { "max_message_bytes": 52428800, "max_recipients": 100 },
        "threads": 0 })",
                          "/etc/relaygate");
    REQUIRE(c.ok());
    CHECK(c->listeners.size() == 1);
    CHECK(c->listeners[0].port == 2525);
    CHECK(c->upstream.port == 10025);
    CHECK(c->policy_file == "/etc/relaygate/policy.json");
    CHECK(c->admin.port == 9025);
    CHECK(c->limits.max_message_bytes == 52428800);
    CHECK(c->limits.max_recipients == 100);
    CHECK(c->threads == 0);
}

TEST_CASE("defaults follow RFC 5321") {
    auto c = parse_config("{}", ".");
    REQUIRE(c.ok());
    CHECK(c->limits.max_command_line == 512);
    CHECK(c->limits.max_text_line == 1000);
    CHECK(c->timeouts.command.count() == 300);
    CHECK(c->upstream.final_reply_timeout.count() == 600);
    CHECK(c->verdict_header == "X-Relaygate-Verdict");
}

TEST_CASE("every error is reported with its path") {
    auto c = parse_config(R"({ "listeners": [ { "port": 70000 }, { "adress": "x" } ],
        "upstream": { "port": "25" }, "limits": { "max_command_line": 100 },
        "verdict_header": "X Bad:", "bogus": 1 })",
                          ".");
    REQUIRE_FALSE(c.ok());
    const auto& e = c.error();
    CHECK(has_error(e, "listeners[0].port"));
    CHECK(has_error(e, "listeners[1].adress"));
    CHECK(has_error(e, "upstream.port"));
    CHECK(has_error(e, "limits.max_command_line"));
    CHECK(has_error(e, "verdict_header"));
    CHECK(has_error(e, "bogus"));
    CHECK(e.size() == 6);
}

TEST_CASE("invalid JSON is one error") {
    auto c = parse_config("{ nope", ".");
    REQUIRE_FALSE(c.ok());
    CHECK(c.error().size() == 1);
}

TEST_CASE("dns: servers, timeout, attempts and cache size") {
    auto c = parse_config("{}", ".");
    REQUIRE(c.ok());
    CHECK(c->dns.servers.empty());  // /etc/resolv.conf
    CHECK(c->dns.timeout_ms == 2000);
    CHECK(c->dns.attempts == 2);
    CHECK(c->dns.cache_entries == 10000);

    c = parse_config(R"({ "dns": { "servers": ["127.0.0.1:5353", "::1", "[::1]:53"],
                                   "timeout_ms": 500, "attempts": 3, "cache_entries": 0 } })",
                     ".");
    REQUIRE(c.ok());
    CHECK(c->dns.servers == std::vector<std::string>{"127.0.0.1:5353", "::1", "[::1]:53"});
    CHECK(c->dns.timeout_ms == 500);
    CHECK(c->dns.attempts == 3);
    CHECK(c->dns.cache_entries == 0);

    auto bad = parse_config(R"({ "dns": { "servers": ["ns.example", "127.0.0.1:99999", 5],
                                          "timeout_ms": 0, "attempts": 11, "retries": 1 } })",
                            ".");
    REQUIRE_FALSE(bad.ok());
    CHECK(has_error(bad.error(), "dns.servers[0]"));
    CHECK(has_error(bad.error(), "dns.servers[1]"));
    CHECK(has_error(bad.error(), "dns.servers[2]"));
    CHECK(has_error(bad.error(), "dns.timeout_ms"));
    CHECK(has_error(bad.error(), "dns.attempts"));
    CHECK(has_error(bad.error(), "dns.retries"));
}
