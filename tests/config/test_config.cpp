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

TEST_CASE("listeners[].reuse_port: on by default, off when asked, a boolean") {
    auto c = parse_config(R"({ "listeners": [ { "port": 2525 },
                                              { "port": 2526, "reuse_port": false } ] })",
                          ".");
    REQUIRE(c.ok());
    CHECK(c->listeners[0].reuse_port);
    CHECK_FALSE(c->listeners[1].reuse_port);
    auto wrong = parse_config(R"({ "listeners": [ { "reuse_port": "yes" } ] })", ".");
    REQUIRE_FALSE(wrong.ok());
    CHECK(has_error(wrong.error(), "/listeners/0/reuse_port"));
}

TEST_CASE("upstream.pipelining and upstream.defer_mail: on by default, off when asked, booleans") {
    auto c = parse_config("{}", ".");
    REQUIRE(c.ok());
    CHECK(c->upstream.pipelining);
    CHECK(c->upstream.defer_mail);
    auto off = parse_config(R"({ "upstream": { "defer_mail": false } })", ".");
    REQUIRE(off.ok());
    CHECK(off->upstream.pipelining);
    CHECK_FALSE(off->upstream.defer_mail);
    auto wrong = parse_config(R"({ "upstream": { "defer_mail": 1 } })", ".");
    REQUIRE_FALSE(wrong.ok());
    CHECK(has_error(wrong.error(), "/upstream/defer_mail"));
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
    CHECK(has_error(e, "/listeners/0/port"));
    CHECK(has_error(e, "/listeners/1/adress"));
    CHECK(has_error(e, "/upstream/port"));
    CHECK(has_error(e, "/limits/max_command_line"));
    CHECK(has_error(e, "/verdict_header"));
    CHECK(has_error(e, "/bogus"));
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
    CHECK(has_error(bad.error(), "/dns/servers/0"));
    CHECK(has_error(bad.error(), "/dns/servers/1"));
    CHECK(has_error(bad.error(), "/dns/servers/2"));
    CHECK(has_error(bad.error(), "/dns/timeout_ms"));
    CHECK(has_error(bad.error(), "/dns/attempts"));
    CHECK(has_error(bad.error(), "/dns/retries"));
}

TEST_CASE("authserv_ids: RFC 8601 authserv-id tokens, empty by default") {
    auto c = parse_config("{}", ".");
    REQUIRE(c.ok());
    CHECK(c->authserv_ids.empty());

    c = parse_config(R"({ "authserv_ids": ["signer.example", "MX.Gw.Example"] })", ".");
    REQUIRE(c.ok());
    CHECK(c->authserv_ids == std::vector<std::string>{"signer.example", "MX.Gw.Example"});

    auto wrong_type = parse_config(R"({ "authserv_ids": "signer.example" })", ".");
    REQUIRE_FALSE(wrong_type.ok());
    CHECK(has_error(wrong_type.error(), "/authserv_ids"));
    CHECK(wrong_type.error().size() == 1);

    auto bad = parse_config(
        R"({ "authserv_ids": ["ok.example", 5, "", "a b", "x;y", "caf\u00e9", "\"q\""] })", ".");
    REQUIRE_FALSE(bad.ok());
    CHECK_FALSE(has_error(bad.error(), "/authserv_ids/0"));
    for (int i = 1; i <= 6; ++i)
        CHECK(has_error(bad.error(), "/authserv_ids/" + std::to_string(i)));
    CHECK(bad.error().size() == 6);

    std::string many = R"({ "authserv_ids": [)";
    for (int i = 0; i < 65; ++i)
        many += std::string(i ? "," : "") + "\"id" + std::to_string(i) + ".example\"";
    auto too_many = parse_config(many + "] }", ".");
    REQUIRE_FALSE(too_many.ok());
    CHECK(has_error(too_many.error(), "/authserv_ids"));
}

TEST_CASE("hardening keys: auth_throttle, session and upstream idle limits") {
    auto d = parse_config("{}", ".");
    REQUIRE(d.ok());
    CHECK(d->auth_throttle.client_failures == 10);
    CHECK(d->auth_throttle.user_failures == 30);
    CHECK(d->auth_throttle.window == std::chrono::seconds(600));
    CHECK(d->auth_throttle.failure_delay == std::chrono::milliseconds(1000));
    CHECK(d->auth_throttle.max_pending == 32);
    CHECK(d->timeouts.session == std::chrono::seconds(3600));
    CHECK(d->limits.max_transactions_per_session == 1000);
    CHECK(d->upstream.idle_timeout == std::chrono::seconds(30));
    CHECK(d->upstream.final_reply_timeout == std::chrono::seconds(600));

    auto c = parse_config(R"({ "auth_throttle": { "client_failures": 3, "user_failures": 5,
                                 "window_seconds": 60, "entries": 1000, "failure_delay_ms": 0,
                                 "max_pending": 4 },
                               "timeouts": { "session_seconds": 120 },
                               "limits": { "max_transactions_per_session": 7 },
                               "upstream": { "idle_timeout_seconds": 5 } })",
                          ".");
    REQUIRE(c.ok());
    CHECK(c->auth_throttle.client_failures == 3);
    CHECK(c->auth_throttle.user_failures == 5);
    CHECK(c->auth_throttle.window == std::chrono::seconds(60));
    CHECK(c->auth_throttle.entries == 1000);
    CHECK(c->auth_throttle.failure_delay == std::chrono::milliseconds(0));
    CHECK(c->auth_throttle.max_pending == 4);
    CHECK(c->timeouts.session == std::chrono::seconds(120));
    CHECK(c->limits.max_transactions_per_session == 7);
    CHECK(c->upstream.idle_timeout == std::chrono::seconds(5));

    auto bad = parse_config(R"({ "auth_throttle": { "client_failures": 0, "entries": 1,
                                   "failure_delay_ms": 60000, "max_pending": 0, "typo": 1 },
                                 "limits": { "max_transactions_per_session": 0 } })",
                            ".");
    REQUIRE(!bad.ok());
    CHECK(has_error(bad.error(), "/auth_throttle/client_failures"));
    CHECK(has_error(bad.error(), "/auth_throttle/entries"));
    CHECK(has_error(bad.error(), "/auth_throttle/failure_delay_ms"));
    CHECK(has_error(bad.error(), "/auth_throttle/max_pending"));
    CHECK(has_error(bad.error(), "/auth_throttle/typo"));
    CHECK(has_error(bad.error(), "/limits/max_transactions_per_session"));
}

TEST_CASE("config warnings: the descriptor limit and the final-reply timeout") {
    auto c = parse_config(R"({ "limits": { "max_connections": 1000 } })", ".");
    REQUIRE(c.ok());
    CHECK(descriptors_needed(*c) == 2000 + 32 + 1 + 64);  // clients, relays, pool, listener
    CHECK(config_warnings(*c, 1u << 20).empty());
    auto w = config_warnings(*c, 1024);
    REQUIRE(w.size() == 1);
    CHECK(w[0].find("RLIMIT_NOFILE is 1024") != std::string::npos);
    CHECK(w[0].find("lower limits.max_connections to 463") != std::string::npos);

    auto quick = parse_config(R"({ "upstream": { "final_reply_timeout_seconds": 60 } })", ".");
    REQUIRE(quick.ok());
    auto w2 = config_warnings(*quick, 1u << 20);
    REQUIRE(w2.size() == 1);
    CHECK(w2[0].find("RFC 1047") != std::string::npos);
}

TEST_CASE("errors carry line and column, also for type errors deep in the file") {
    auto c = parse_config(R"({
  "listeners": [ { "port": 2525 },
                 { "address": "::1",
                   "proxy_timeout_seconds": "5" } ],
  "upstream": { "prot": 25 }
})",
                          ".");
    REQUIRE_FALSE(c.ok());
    REQUIRE(c.error().size() == 2);
    const auto& type = c.error()[0];
    CHECK(type.path == "/listeners/1/proxy_timeout_seconds");
    CHECK(type.line == 4);
    CHECK(type.column == 45);
    CHECK(format_error(type) ==
          "/listeners/1/proxy_timeout_seconds (line 4, column 45): must be a non-negative integer");
    // An unknown key names the keys that are allowed.
    const auto& unknown = c.error()[1];
    CHECK(unknown.path == "/upstream/prot");
    CHECK(unknown.line == 5);
    CHECK(unknown.message.starts_with("unknown key \"prot\" (allowed: host, port, xclient,"));

    auto syntax = parse_config("{\n  \"threads\": 1,\n  oops\n}", ".");
    REQUIRE_FALSE(syntax.ok());
    CHECK(syntax.error()[0].line == 3);
}

TEST_CASE("duplicate keys are refused, not the last one kept") {
    auto c = parse_config(R"({ "limits": { "max_errors": 5, "max_errors": 50 }, "threads": 1,
                               "threads": 2 })",
                          ".");
    REQUIRE_FALSE(c.ok());
    REQUIRE(c.error().size() == 2);
    CHECK(has_error(c.error(), "/limits/max_errors"));
    CHECK(has_error(c.error(), "/threads"));
    CHECK(c.error()[0].message.find("appears twice") != std::string::npos);
    CHECK(c.error()[1].line == 2);
}

TEST_CASE("the RFC 5321 floors: max_recipients and command_seconds of 1 are refused") {
    auto c = parse_config(R"({ "limits": { "max_recipients": 1 },
                               "timeouts": { "command_seconds": 1 } })",
                          ".");
    REQUIRE_FALSE(c.ok());
    CHECK(has_error(c.error(), "/limits/max_recipients"));
    CHECK(has_error(c.error(), "/timeouts/command_seconds"));
    CHECK(c.error()[0].message.find("RFC 5321 4.5.3.1.8") != std::string::npos);

    // Below the RFC's recommendation but above the floor: accepted, warned.
    auto quick =
        parse_config(R"({ "timeouts": { "command_seconds": 10, "data_block_seconds": 10 } })", ".");
    REQUIRE(quick.ok());
    auto w = config_warnings(*quick, 1u << 20);
    REQUIRE(w.size() == 2);
    CHECK(w[0].find("RFC 5321 4.5.3.2.7") != std::string::npos);
    CHECK(w[1].find("RFC 5321 4.5.3.2.5") != std::string::npos);
}

namespace {

// {"a": {"b": v}} for "a.b", {"listeners": [{"x": v}]} for "listeners[].x";
// policy_fetch keys come with the policy_url and cache_file they need.
std::string config_with(std::string_view name, std::uint64_t v) {
    if (name.starts_with("policy_fetch."))
        return R"({"policy_url": "https://p.example/p.json", "policy_fetch": {"cache_file": "c", ")" +
               std::string(name.substr(13)) + "\": " + std::to_string(v) + "}}";
    std::string open = "{", close = "}";
    for (auto dot = name.find('.'); dot != std::string_view::npos; dot = name.find('.')) {
        auto part = name.substr(0, dot);
        const bool array = part.ends_with("[]");
        if (array) part.remove_suffix(2);
        open += "\"" + std::string(part) + (array ? "\": [{" : "\": {");
        close = (array ? "}]" : "}") + close;
        name.remove_prefix(dot + 1);
    }
    return open + "\"" + std::string(name) + "\": " + std::to_string(v) + close;
}

std::string pointer_of(std::string_view name) {
    std::string out = "/";
    for (char ch : name)
        out += ch == '.'                ? std::string("/")
               : ch == '[' || ch == ']' ? std::string()
                                        : std::string(1, ch);
    // "listeners[]/port" -> "/listeners/0/port"
    if (auto at = out.find("listeners/"); at != std::string::npos) out.insert(at + 10, "0/");
    return out;
}

}  // namespace

TEST_CASE("every bound of kBounds: min-1 and max+1 refused at their path, min and max accepted") {
    CHECK(std::size(kBounds) >= 30);
    for (const auto& b : kBounds) {
        CAPTURE(b.name);
        CHECK(b.min <= b.default_value);
        CHECK(b.default_value <= b.max);
        const std::string path = pointer_of(b.name);
        auto at = [&](std::uint64_t v) { return parse_config(config_with(b.name, v), "."); };
        CHECK(at(b.min).ok());
        CHECK(at(b.max).ok());
        CHECK(at(b.default_value).ok());
        if (b.min > 0) {
            auto low = at(b.min - 1);
            REQUIRE_FALSE(low.ok());
            CHECK(low.error().size() == 1);
            CHECK(low.error()[0].path == path);
            CHECK(low.error()[0].message.starts_with("must be between"));
            CHECK(low.error()[0].line == 1);
        }
        auto high = at(b.max + 1);
        REQUIRE_FALSE(high.ok());
        CHECK(high.error().size() == 1);
        CHECK(high.error()[0].path == path);
    }
}

TEST_CASE("the struct defaults are the table's") {
    const Config c;
    CHECK(c.limits.max_recipients == find_bound("limits.max_recipients")->default_value);
    CHECK(static_cast<std::uint64_t>(c.timeouts.command.count()) ==
          find_bound("timeouts.command_seconds")->default_value);
    CHECK(static_cast<std::uint64_t>(c.auth_throttle.failure_delay.count()) ==
          find_bound("auth_throttle.failure_delay_ms")->default_value);
    CHECK(c.listeners.at(0).port == find_bound("listeners[].port")->default_value);
}

TEST_CASE("upstream data block and QUIT timeouts") {
    auto d = parse_config("{}", ".");
    REQUIRE(d.ok());
    CHECK(d->upstream.data_block_timeout == std::chrono::seconds(180));  // RFC 5321 4.5.3.2.5
    CHECK(d->upstream.quit_timeout == std::chrono::seconds(5));

    auto c =
        parse_config(R"({ "upstream": { "data_block_seconds": 60, "quit_seconds": 2 } })", ".");
    REQUIRE(c.ok());
    CHECK(c->upstream.data_block_timeout == std::chrono::seconds(60));
    CHECK(c->upstream.quit_timeout == std::chrono::seconds(2));

    auto bad =
        parse_config(R"({ "upstream": { "data_block_seconds": 0, "quit_seconds": 601 } })", ".");
    REQUIRE(!bad.ok());
    CHECK(has_error(bad.error(), "/upstream/data_block_seconds"));
    CHECK(has_error(bad.error(), "/upstream/quit_seconds"));
}

TEST_CASE("rate_limit and anomalies: defaults") {
    auto c = parse_config("{}", ".");
    REQUIRE(c.ok());
    const RateLimit& rl = c->rate_limit;
    CHECK(rl.store == RateLimitStore::memory);
    CHECK_FALSE(rl.report_only);
    CHECK(rl.memory_entries == 250000);
    CHECK(rl.address == "127.0.0.1:6379");
    CHECK(rl.username.empty());
    CHECK(rl.password_file.empty());
    CHECK(rl.key_prefix == "relaygate:");
    CHECK_FALSE(rl.tls.enabled);
    CHECK(rl.connect_timeout == std::chrono::milliseconds(1000));
    CHECK(rl.timeout == std::chrono::milliseconds(250));
    CHECK(rl.on_error == StoreFailure::fail_open);
    CHECK(rl.replicas == 1);
    CHECK(rl.batch == std::chrono::milliseconds(1000));
    CHECK(rl.block_percent == 1);
    CHECK(rl.seen_cache_entries == 100000);
    const Anomalies& a = c->anomalies;
    CHECK(a.enabled);
    CHECK(a.first_seen);
    CHECK(a.first_seen_ttl == std::chrono::seconds(2592000));
    CHECK(a.spike_multiple == 10);
    CHECK(a.spike_min_messages == 100);
    CHECK(a.bucket == std::chrono::seconds(3600));
    CHECK(a.seasonal_slots == 24);
    CHECK(a.alpha_percent == 30);
    CHECK_FALSE(a.tenant_label);
}

TEST_CASE("rate_limit: every key read, files relative to the config") {
    auto c = parse_config(R"({ "rate_limit": { "store": "redis", "report_only": true,
        "memory_entries": 5000, "address": "[::1]:6380", "username": "relaygate",
        "password_file": "secrets/redis.pw", "key_prefix": "rg:",
        "tls": { "enabled": true, "ca_file": "ca.pem", "verify_name": "redis.internal",
                 "cert_file": "/abs/c.pem", "key_file": "k.pem" },
        "connect_timeout_ms": 500, "timeout_ms": 100, "on_error": "fail_closed",
        "replicas": 3, "batch_ms": 250, "block_percent": 5, "seen_cache_entries": 0 },
        "anomalies": { "enabled": false, "first_seen": false, "first_seen_ttl_seconds": 7200,
        "spike_multiple": 5, "spike_min_messages": 20, "bucket_seconds": 600,
        "seasonal_slots": 168, "alpha_percent": 50, "tenant_label": true } })",
                          "/etc/relaygate");
    REQUIRE(c.ok());
    const RateLimit& rl = c->rate_limit;
    CHECK(rl.store == RateLimitStore::redis);
    CHECK(rl.report_only);
    CHECK(rl.memory_entries == 5000);
    CHECK(rl.address == "[::1]:6380");
    CHECK(rl.username == "relaygate");
    CHECK(rl.password_file == "/etc/relaygate/secrets/redis.pw");
    CHECK(rl.key_prefix == "rg:");
    CHECK(rl.tls.enabled);
    CHECK(rl.tls.ca_file == "/etc/relaygate/ca.pem");
    CHECK(rl.tls.verify_name == "redis.internal");
    CHECK(rl.tls.cert_file == "/abs/c.pem");
    CHECK(rl.tls.key_file == "/etc/relaygate/k.pem");
    CHECK(rl.connect_timeout == std::chrono::milliseconds(500));
    CHECK(rl.timeout == std::chrono::milliseconds(100));
    CHECK(rl.on_error == StoreFailure::fail_closed);
    CHECK(rl.replicas == 3);
    CHECK(rl.batch == std::chrono::milliseconds(250));
    CHECK(rl.block_percent == 5);
    CHECK(rl.seen_cache_entries == 0);
    const Anomalies& a = c->anomalies;
    CHECK_FALSE(a.enabled);
    CHECK_FALSE(a.first_seen);
    CHECK(a.first_seen_ttl == std::chrono::seconds(7200));
    CHECK(a.spike_multiple == 5);
    CHECK(a.spike_min_messages == 20);
    CHECK(a.bucket == std::chrono::seconds(600));
    CHECK(a.seasonal_slots == 168);
    CHECK(a.alpha_percent == 50);
    CHECK(a.tenant_label);
}

TEST_CASE("rate_limit and anomalies: bad values and unknown keys at their paths") {
    auto one_error = [](const std::string& json, const std::string& path) {
        CAPTURE(json);
        auto c = parse_config(json, ".");
        REQUIRE_FALSE(c.ok());
        CHECK(c.error().size() == 1);
        CHECK(c.error()[0].path == path);
        CHECK(c.error()[0].line == 1);
    };
    one_error(R"({"rate_limit": {"store": "memcached"}})", "/rate_limit/store");
    one_error(R"({"rate_limit": {"on_error": "fail_sometimes"}})", "/rate_limit/on_error");
    one_error(R"({"rate_limit": {"on_error": 1}})", "/rate_limit/on_error");
    one_error(R"({"rate_limit": {"report_only": "yes"}})", "/rate_limit/report_only");
    one_error(R"({"rate_limit": {"adress": "x:1"}})", "/rate_limit/adress");
    one_error(R"({"rate_limit": {"tls": {"enable": true}}})", "/rate_limit/tls/enable");
    one_error(R"({"anomalies": {"spike": 3}})", "/anomalies/spike");
    one_error(R"({"anomalies": {"tenant_label": 1}})", "/anomalies/tenant_label");
    one_error(R"({"rate_limit": []})", "/rate_limit");
    for (const char* bad :
         {"", "::1:6379", "host:", "host:0", "host:65536", "[::1", "[]:1", "a b:1", "host:x"})
        one_error(std::string(R"({"rate_limit": {"address": ")") + bad + "\"}}",
                  "/rate_limit/address");
    for (const char* good : {"redis", "redis.svc.cluster.local:6379", "10.0.0.1:7000",
                             "[2001:db8::1]:6379", "[::1]"}) {
        CAPTURE(good);
        CHECK(
            parse_config(std::string(R"({"rate_limit": {"address": ")") + good + "\"}}", ".").ok());
    }
    // A brace would move the Redis Cluster hash tag off the tenant.
    one_error(R"({"rate_limit": {"key_prefix": "rg:{x}:"}})", "/rate_limit/key_prefix");
    one_error(R"({"rate_limit": {"key_prefix": "a}"}})", "/rate_limit/key_prefix");
    one_error(R"({"rate_limit": {"key_prefix": "a b"}})", "/rate_limit/key_prefix");
    CHECK(parse_config(R"({"rate_limit": {"key_prefix": ""}})", ".").ok());
    one_error(R"({"rate_limit": {"batch_ms": 60001}})", "/rate_limit/batch_ms");
    one_error(R"({"rate_limit": {"block_percent": 51}})", "/rate_limit/block_percent");
    one_error(R"({"rate_limit": {"seen_cache_entries": -1}})", "/rate_limit/seen_cache_entries");
    CHECK(parse_config(R"({"rate_limit": {"batch_ms": 0, "block_percent": 0}})", ".").ok());
    one_error(R"({"rate_limit": {"tls": {"cert_file": "c.pem"}}})", "/rate_limit/tls");
    one_error(R"({"rate_limit": {"username": "u"}})", "/rate_limit/username");
    one_error(R"({"rate_limit": {"password_file": ""}})", "/rate_limit/password_file");
}

TEST_CASE("metrics: tenant label mode and bound") {
    auto d = parse_config("{}", ".");
    REQUIRE(d.ok());
    CHECK(d->metrics.tenant_label == TenantLabel::auto_);
    CHECK(d->metrics.tenant_label_max_tenants == 1000);
    auto c = parse_config(
        R"({ "metrics": { "tenant_label": "off", "tenant_label_max_tenants": 50 } })", ".");
    REQUIRE(c.ok());
    CHECK(c->metrics.tenant_label == TenantLabel::off);
    CHECK(c->metrics.tenant_label_max_tenants == 50);
    auto bad = parse_config(R"({ "metrics": { "tenant_label": "per-tenant", "typo": 1 } })", ".");
    REQUIRE_FALSE(bad.ok());
    CHECK(has_error(bad.error(), "/metrics/tenant_label"));
    CHECK(has_error(bad.error(), "/metrics/typo"));
}

TEST_CASE("policy sources: policy_file or policy_dir, and credentials_file") {
    auto c = parse_config(R"({"policy_dir": "policy.d", "credentials_file": "/run/secrets/sasl"})",
                          "/etc/relaygate");
    REQUIRE(c.ok());
    CHECK(c->policy_file.empty());
    CHECK(c->policy_dir == "/etc/relaygate/policy.d");
    CHECK(c->credentials_file == "/run/secrets/sasl");
    auto source = c->policy_source();
    CHECK(source.dir == "/etc/relaygate/policy.d");
    CHECK(source.credentials == "/run/secrets/sasl");
    CHECK(source.watched().size() == 2);

    // The default: policy.json next to the config, no credentials.
    c = parse_config("{}", "/etc/relaygate");
    REQUIRE(c.ok());
    CHECK(c->policy_source().file == "/etc/relaygate/policy.json");
    CHECK(c->policy_source().dir.empty());
    CHECK(c->policy_source().credentials.empty());
    CHECK(c->policy_source().watched().size() == 1);

    // Both sources at once is ambiguous; an empty directory name is no source.
    auto both = parse_config(R"({"policy_file": "p.json", "policy_dir": "policy.d"})", "/x");
    REQUIRE(!both.ok());
    CHECK(has_error(both.error(), "/policy_dir"));
    auto empty = parse_config(R"({"policy_dir": ""})", "/x");
    REQUIRE(!empty.ok());
    CHECK(has_error(empty.error(), "/policy_dir"));
}

TEST_CASE("policy sources: policy_url with policy_fetch") {
    auto c = parse_config(R"({"policy_url": "https://policy.example:8443/relaygate/p.json",
        "credentials_file": "sasl",
        "policy_fetch": {"cache_file": "cache/p.json", "public_key_file": "sign.pub",
                         "bearer_token_file": "/run/secrets/token", "poll_seconds": 60}})",
                          "/etc/relaygate");
    REQUIRE(c.ok());
    CHECK(c->policy_url == "https://policy.example:8443/relaygate/p.json");
    CHECK(c->policy_fetch.signature_url == "https://policy.example:8443/relaygate/p.json.sig");
    CHECK(c->policy_fetch.public_key_file == "/etc/relaygate/sign.pub");
    CHECK(c->policy_fetch.bearer_token_file == "/run/secrets/token");
    CHECK(c->policy_fetch.poll == std::chrono::seconds(60));
    CHECK(c->policy_fetch.timeout == std::chrono::seconds(10));
    // The cached copy is the file the holder (re)loads; only the
    // credentials are watched: the gateway writes the copy itself.
    const auto source = c->policy_source();
    CHECK(source.kind() == "url");
    CHECK(source.file == "/etc/relaygate/cache/p.json");
    CHECK(source.describe() == c->policy_url);
    REQUIRE(source.watched().size() == 1);
    CHECK(source.watched()[0] == "/etc/relaygate/sasl");

    const auto refused = [](std::string_view text, const std::string& path) {
        auto r = parse_config(text, "/x");
        REQUIRE_FALSE(r.ok());
        CHECK(has_error(r.error(), path));
    };
    refused(R"({"policy_url": "http://p.example/p.json", "policy_fetch": {"cache_file": "c"}})",
            "/policy_url");
    refused(R"({"policy_url": "https://p.example/p.json"})", "/policy_fetch/cache_file");
    refused(R"({"policy_url": "https://p.example/p", "policy_file": "p.json",
                "policy_fetch": {"cache_file": "c"}})",
            "/policy_url");
    refused(R"({"policy_fetch": {"cache_file": "c"}})", "/policy_fetch");
    refused(
        R"({"policy_url": "https://p.example/p", "policy_fetch": {"cache_file": "c", "etag": 1}})",
        "/policy_fetch/etag");
}
