#include "gateway/session/volume.hpp"

#include <fmt/format.h>

#include <cmath>

namespace relaygate::session {

void VolumeAsk::add(const std::vector<policy::AppliedLimit>& all, policy::LimitKind kind,
                    std::uint64_t cost, ratelimit::Check::Mode mode) {
    for (const auto& l : all) {
        if (l.kind != kind) continue;
        request.checks.push_back({l.key(), l.rate.interval(), l.rate.tolerance(), cost, mode});
        limits.push_back(l);
    }
}

void VolumeAsk::observe_volume(const std::string& tenant, const VolumeSettings& s) {
    if (!s.anomalies || tenant.empty()) return;
    request.volume_key = volume_key(tenant);
    request.spike = s.spike;
}

void VolumeAsk::mark_seen(const std::string& tenant, std::string_view kind, std::string what,
                          const VolumeSettings& s) {
    if (!s.anomalies || !s.first_seen || tenant.empty() || what.empty()) return;
    // The whole key carries the tenant's hash tag, like its limits.
    std::string key;  // "seen:{tenant}:kind:what", in one allocation
    key.reserve(tenant.size() + kind.size() + what.size() + sizeof "seen:{}::");
    key.append("seen:{").append(tenant).append("}:").append(kind).append(":").append(what);
    request.first_seen.push_back(std::move(key));
    request.first_seen_ttl = s.first_seen_ttl;
    seen_kinds.emplace_back(kind == "net" ? "first_seen_network" : "first_seen_domain");
    seen_what.push_back(std::move(what));
}

std::string volume_key(std::string_view tenant) {
    std::string key;
    key.reserve(tenant.size() + sizeof "vol:{}");
    key.append("vol:{").append(tenant).append("}");
    return key;
}

std::string client_network(const policy::IpAddress& ip) {
    const unsigned len = ip.is_v4() ? 24 : 48;
    return policy::Cidr{ip.masked(len), len}.to_string();
}

std::string retry_text(double seconds) {
    if (!std::isfinite(seconds)) return "more than the whole limit allows at once";
    const auto s = static_cast<std::uint64_t>(std::ceil(std::max(seconds, 1.0)));
    if (s < 120) return fmt::format("retry in {}s", s);
    if (s < 7200) return fmt::format("retry in {}m", (s + 59) / 60);
    return fmt::format("retry in {}h", (s + 3599) / 3600);
}

std::string spike_detail(const ratelimit::Outcome& o) {
    return o.baseline < 0
               ? fmt::format("{} messages in this bucket, no history yet", o.volume)
               : fmt::format("{} messages in this bucket, baseline {:.1f}", o.volume, o.baseline);
}

Reason limit_reason(policy::LimitKind kind) {
    switch (kind) {
        case policy::LimitKind::messages:
            return Reason::rate_limited_messages;
        case policy::LimitKind::recipients:
            return Reason::rate_limited_recipients;
        case policy::LimitKind::bytes:
            return Reason::rate_limited_bytes;
    }
    return Reason::rate_limited_messages;
}

}  // namespace relaygate::session
