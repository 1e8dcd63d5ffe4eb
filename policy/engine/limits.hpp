// Volume limits: the policy's "limits" blocks, compiled. Pure values; the
// policy loader parses them (policy_loader.cpp), the engine attaches the
// ones that apply to a Decision, and the session turns them into store
// checks (gateway/ratelimit). See policy/README.md "Limits".
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace relaygate::policy {

// What a limit counts: MAIL FROM transactions, RCPT TO recipients, or
// message octets (SIZE= at MAIL FROM, the real size at end of data).
enum class LimitKind : std::uint8_t { messages, recipients, bytes };
std::string_view to_string(LimitKind k);  // "messages" | "recipients" | "bytes"

// Whose volume: the tenant's, one identity's (a SASL user, a network, a
// certificate) or one granted domain pattern's.
enum class LimitScope : std::uint8_t { tenant, identity, domain };
std::string_view to_string(LimitScope s);  // "tenant" | "identity" | "domain"

// "count per period": a GCRA (generic cell rate) with `burst` units of
// tolerance; burst defaults to count (the whole period's budget at once).
struct Rate {
    std::uint64_t count = 0;        // >= 1
    std::uint32_t per_seconds = 0;  // >= 1
    std::uint64_t burst = 0;        // >= 1; defaults to count
    // Seconds of budget one unit costs (emission interval) and the burst
    // tolerance in seconds: what a store check needs.
    double interval() const { return double(per_seconds) / double(count); }
    double tolerance() const { return interval() * double(burst); }
};

// What exceeding a limit does: refuse (450/452) or only log and count.
enum class LimitMode : std::uint8_t { enforce, report };
// What a volume spike signal does: log it, or hold the tenant's mail (450)
// until an operator clears it or the spike's time bucket passes.
enum class SpikeAction : std::uint8_t { log, hold };

// One "limits" block as written (top level, tenant, identity or domain).
struct LimitSet {
    std::vector<Rate> messages;
    std::vector<Rate> recipients;
    std::vector<Rate> bytes;
    const std::vector<Rate>& of(LimitKind k) const {
        return k == LimitKind::messages     ? messages
               : k == LimitKind::recipients ? recipients
                                            : bytes;
    }
    std::vector<Rate>& of(LimitKind k) {
        return k == LimitKind::messages     ? messages
               : k == LimitKind::recipients ? recipients
                                            : bytes;
    }
    bool empty() const { return messages.empty() && recipients.empty() && bytes.empty(); }
};

// One limit as it applies to one transaction.
struct AppliedLimit {
    LimitKind kind = LimitKind::messages;
    LimitScope scope = LimitScope::tenant;
    std::string tenant;   // the tenant id (the store key's hash tag)
    std::string subject;  // tenant: the id; identity: "sasl:<user>", "network:<cidr>",
                          // "cert:<sha256>", "spki:<sha256>", "provider:<name>:<tenant_id>";
                          // domain: the grant pattern (lower-case A-labels)
    Rate rate;
    // The store key: "rl:{<tenant>}:<scope>:<subject>:<kind>:<per_seconds>".
    // The braces are a Redis Cluster hash tag: every key of one tenant is
    // in one slot, so one Lua script can decide them atomically.
    std::string key() const;
    // For replies and logs: "messages 1000 per 1h (tenant acme)".
    std::string describe() const;
};

// Bounds of one "limits" block, checked by the loader.
inline constexpr std::size_t kMaxRatesPerKind = 8;
inline constexpr std::uint32_t kMaxPeriodSeconds = 30 * 86400;  // "30d"
// Counts and bursts: at most 2^50 (1 PiB of bytes), so that the store's
// arithmetic (doubles, in Redis Lua too) stays exact.
inline constexpr std::uint64_t kMaxLimitCount = std::uint64_t(1) << 50;

// "45s", "30m", "1h", "1d", "1w" (a positive integer and one unit) -> seconds.
// Syntax only: the loader applies kMaxPeriodSeconds.
std::optional<std::uint32_t> parse_period(std::string_view s);
// The shortest exact form: 3600 -> "1h", 90 -> "90s".
std::string format_period(std::uint32_t seconds);
// A count: a JSON integer, or for bytes a string "512", "10KiB", "2GiB",
// "1MB" (KiB/MiB/GiB/TiB = 1024^n, KB/MB/GB/TB = 1000^n).
std::optional<std::uint64_t> parse_byte_count(std::string_view s);
// A count for humans: bytes in the largest exact unit ("2GiB", "500MB",
// "1000"), others as the number.
std::string format_count(LimitKind k, std::uint64_t count);

}  // namespace relaygate::policy
