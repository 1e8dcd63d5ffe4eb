// Volume limits: the text forms of periods and counts, and the store key and
// description of an applied limit. Pure functions; the loader validates the
// "limits" blocks with them (policy_loader.cpp), the engine never parses.
#include "policy/engine/limits.hpp"

#include <fmt/format.h>

#include <array>
#include <limits>

namespace relaygate::policy {
namespace {

// The digits at the start of `s`, without sign or leading '+'; nullopt when
// there are none or the value exceeds `max`.
std::optional<std::uint64_t> leading_number(std::string_view& s, std::uint64_t max) {
    std::uint64_t v = 0;
    std::size_t i = 0;
    for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
        auto digit = static_cast<std::uint64_t>(s[i] - '0');
        if (v > (max - digit) / 10) return std::nullopt;
        v = v * 10 + digit;
    }
    if (i == 0) return std::nullopt;
    s.remove_prefix(i);
    return v;
}

struct Unit {
    std::string_view name;
    std::uint64_t factor;
};

constexpr std::array<Unit, 5> kPeriodUnits{
    {{"w", 604800}, {"d", 86400}, {"h", 3600}, {"m", 60}, {"s", 1}}};
// Longest first, so that format_count prefers the binary unit.
constexpr std::array<Unit, 8> kByteUnits{{{"TiB", std::uint64_t(1) << 40},
                                          {"GiB", std::uint64_t(1) << 30},
                                          {"MiB", std::uint64_t(1) << 20},
                                          {"KiB", std::uint64_t(1) << 10},
                                          {"TB", 1'000'000'000'000},
                                          {"GB", 1'000'000'000},
                                          {"MB", 1'000'000},
                                          {"KB", 1'000}}};

}  // namespace

std::string_view to_string(LimitKind k) {
    switch (k) {
        case LimitKind::messages:
            return "messages";
        case LimitKind::recipients:
            return "recipients";
        case LimitKind::bytes:
            return "bytes";
    }
    return "messages";
}

std::string_view to_string(LimitScope s) {
    switch (s) {
        case LimitScope::tenant:
            return "tenant";
        case LimitScope::identity:
            return "identity";
        case LimitScope::domain:
            return "domain";
    }
    return "tenant";
}

std::optional<std::uint32_t> parse_period(std::string_view s) {
    auto n = leading_number(s, std::numeric_limits<std::uint32_t>::max());
    if (!n || *n == 0 || s.size() != 1) return std::nullopt;
    for (const auto& u : kPeriodUnits) {
        if (s != u.name) continue;
        if (*n > std::numeric_limits<std::uint32_t>::max() / u.factor) return std::nullopt;
        return static_cast<std::uint32_t>(*n * u.factor);
    }
    return std::nullopt;
}

std::string format_period(std::uint32_t seconds) {
    if (seconds == 0) return "0s";
    for (const auto& u : kPeriodUnits)
        if (seconds % u.factor == 0) return fmt::format("{}{}", seconds / u.factor, u.name);
    return fmt::format("{}s", seconds);
}

std::optional<std::uint64_t> parse_byte_count(std::string_view s) {
    auto n = leading_number(s, std::numeric_limits<std::uint64_t>::max());
    if (!n) return std::nullopt;
    if (s.empty()) return n;
    for (const auto& u : kByteUnits) {
        if (s != u.name) continue;
        if (*n > std::numeric_limits<std::uint64_t>::max() / u.factor) return std::nullopt;
        return *n * u.factor;
    }
    return std::nullopt;
}

std::string format_count(LimitKind k, std::uint64_t count) {
    if (k == LimitKind::bytes && count != 0)
        for (const auto& u : kByteUnits)
            if (count % u.factor == 0) return fmt::format("{}{}", count / u.factor, u.name);
    return fmt::format("{}", count);
}

std::string AppliedLimit::key() const {
    return fmt::format("rl:{{{}}}:{}:{}:{}:{}", tenant, to_string(scope), subject, to_string(kind),
                       rate.per_seconds);
}

std::string AppliedLimit::describe() const {
    return fmt::format("{} {} per {}{} ({} {})", to_string(kind), format_count(kind, rate.count),
                       format_period(rate.per_seconds),
                       rate.burst == rate.count
                           ? std::string()
                           : fmt::format(", burst {}", format_count(kind, rate.burst)),
                       to_string(scope), subject);
}

}  // namespace relaygate::policy
