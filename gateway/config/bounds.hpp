// Every numeric config key with its default, minimum and maximum: the one
// table the struct defaults (config.hpp), the reader's checks (config.cpp)
// and README.md's config table (tests/docs/check_docs.py) all come from.
// Rows are one line each with literal numbers, so the docs test can read them.
#pragma once

#include <cstdint>
#include <string_view>

namespace relaygate::config {

struct Bound {
    std::string_view name;  // "limits.max_recipients"; "listeners[].port" for each listener
    std::uint64_t default_value;
    std::uint64_t min;
    std::uint64_t max;
    std::string_view why;  // the reason for the minimum, shown with a refused value
};

// clang-format off
inline constexpr Bound kBounds[] = {
    {"listeners[].port", 2525, 0, 65535, "0 binds an ephemeral port"},
    {"listeners[].proxy_timeout_seconds", 5, 1, 60, ""},
    {"upstream.port", 10025, 1, 65535, ""},
    {"upstream.connect_timeout_seconds", 30, 1, 600, ""},
    {"upstream.reply_timeout_seconds", 300, 1, 3600, "RFC 5321 4.5.3.2.2-4 recommend 5 minutes"},
    {"upstream.final_reply_timeout_seconds", 600, 1, 3600, "RFC 5321 4.5.3.2.6 recommends 10 minutes; warned below"},
    {"upstream.data_block_seconds", 180, 1, 3600, "RFC 5321 4.5.3.2.5 recommends 3 minutes"},
    {"upstream.quit_seconds", 5, 1, 600, ""},
    {"upstream.idle_timeout_seconds", 30, 1, 3600, ""},
    {"upstream.pool_size", 32, 0, 100000, "0 turns the pool off"},
    {"admin.port", 9025, 0, 65535, "0 binds an ephemeral port"},
    {"limits.max_message_bytes", 52428800, 65536, 1099511627776, "RFC 5321 4.5.3.1.7: at least 64K octets"},
    {"limits.max_recipients", 100, 100, 100000, "RFC 5321 4.5.3.1.8: at least 100 recipients"},
    {"limits.max_command_line", 512, 512, 65536, "RFC 5321 4.5.3.1.4: 512 octets"},
    {"limits.max_text_line", 1000, 1000, 1048576, "RFC 5321 4.5.3.1.6: 1000 octets"},
    {"limits.max_header_bytes", 262144, 4096, 16777216, ""},
    {"limits.max_errors", 10, 1, 1000, ""},
    {"limits.max_connections", 1000, 1, 1000000, ""},
    {"limits.max_connections_per_client", 50, 1, 1000000, ""},
    {"limits.max_transactions_per_session", 1000, 1, 1000000, ""},
    {"timeouts.command_seconds", 300, 10, 3600, "RFC 5321 4.5.3.2.7 recommends 5 minutes, warned below; 10 s is Postfix's overload value"},
    {"timeouts.data_block_seconds", 180, 10, 3600, "RFC 5321 4.5.3.2.5 recommends 3 minutes, warned below; 10 s is Postfix's overload value"},
    {"timeouts.data_grace_seconds", 30, 0, 3600, ""},
    {"timeouts.min_data_rate_bytes_per_second", 1024, 0, 1073741824, "0 turns the rate check off"},
    {"timeouts.session_seconds", 3600, 1, 604800, ""},
    {"auth_throttle.client_failures", 10, 1, 1000000, ""},
    {"auth_throttle.user_failures", 30, 1, 1000000, ""},
    {"auth_throttle.window_seconds", 600, 1, 86400, ""},
    {"auth_throttle.entries", 100000, 16, 10000000, ""},
    {"auth_throttle.failure_delay_ms", 1000, 0, 10000, ""},
    {"auth_throttle.max_pending", 32, 1, 100000, ""},
    {"dns.timeout_ms", 2000, 10, 60000, ""},
    {"dns.attempts", 2, 1, 10, ""},
    {"dns.cache_entries", 10000, 0, 10000000, "0 turns the cache off"},
    {"threads", 0, 0, 1024, "0 means one per core"},
    {"metrics.tenant_label_max_tenants", 1000, 0, 10000000, ""},
    {"drain_timeout_seconds", 30, 1, 3600, ""},
    {"policy_poll_seconds", 2, 0, 3600, "0 turns polling off"},
    {"policy_fetch.poll_seconds", 30, 1, 86400, ""},
    {"policy_fetch.timeout_seconds", 10, 1, 600, ""},
    {"policy_fetch.max_bytes", 67108864, 1024, 1073741824, ""},
    {"policy_fetch.backoff_max_seconds", 300, 1, 86400, ""},
    {"rate_limit.memory_entries", 250000, 1000, 100000000, "about 380 bytes each"},
    {"rate_limit.connect_timeout_ms", 1000, 10, 60000, ""},
    {"rate_limit.timeout_ms", 250, 10, 60000, ""},
    {"rate_limit.replicas", 1, 1, 1000, "fail_open divides each limit by it"},
    {"rate_limit.recipient_lease", 1, 0, 100, "0 turns the lease off"},
    {"rate_limit.batch_ms", 1000, 0, 60000, "redis only; 0 turns batching off"},
    {"rate_limit.block_percent", 1, 0, 50, "of each limit's burst; 0: no blocks"},
    {"rate_limit.seen_cache_entries", 100000, 0, 10000000, "0: every mark goes to the store"},
    {"anomalies.first_seen_ttl_seconds", 2592000, 3600, 31536000, ""},
    {"anomalies.spike_multiple", 10, 2, 1000, ""},
    {"anomalies.spike_min_messages", 100, 1, 1000000000, ""},
    {"anomalies.bucket_seconds", 3600, 1, 86400, ""},
    {"anomalies.seasonal_slots", 24, 1, 168, ""},
    {"anomalies.alpha_percent", 30, 1, 100, ""},
};
// clang-format on

// The row of `name`; a name not in the table is a compile error when used
// in a constant expression (the struct defaults) and nullptr otherwise.
constexpr const Bound* find_bound(std::string_view name) {
    for (const auto& b : kBounds)
        if (b.name == name) return &b;
    return nullptr;
}

// Compares names, never pointers: g++ 12 cannot constant-evaluate a pointer
// test through a sanitizer build's instrumentation.
consteval std::uint64_t default_of(std::string_view name) {
    for (const auto& b : kBounds)
        if (b.name == name) return b.default_value;
    throw "no such row in kBounds";  // not a constant expression: compile error
}

}  // namespace relaygate::config
