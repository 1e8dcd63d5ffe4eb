// Volume control in the session: the store requests a transaction's limits
// and anomaly signals become (gateway/ratelimit/store.hpp), and the words
// of a refusal. Pure: the session machine asks, the runner's store answers.
#pragma once

#include <boost/container/small_vector.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/config/bounds.hpp"
#include "gateway/ratelimit/store.hpp"
#include "policy/engine/decision.hpp"

namespace relaygate::session {

// The gateway's volume-control settings (config rate_limit and anomalies).
struct VolumeSettings {
    bool report_only = false;  // rate_limit.report_only: no limit refuses, every one is logged
    // rate_limit.recipient_lease: recipient units of every recipients limit
    // taken with the MAIL FROM decision, so that RCPT needs no store call
    // of its own while they last; 0: none (every RCPT asks the store).
    std::uint64_t recipient_lease = config::default_of("rate_limit.recipient_lease");
    bool anomalies = true;   // anomalies.enabled: volume baseline and spike signal
    bool first_seen = true;  // anomalies.first_seen: first-seen pairs
    double first_seen_ttl = 30 * 86400.0;
    ratelimit::SpikeSettings spike;
};

// One CheckLimits request with what each of its parts means, so that the
// outcome can be read back (the request itself is moved to the store).
struct VolumeAsk {
    ratelimit::Request request;
    std::vector<policy::AppliedLimit> limits;  // per request.checks
    // Per request.first_seen (the session marks one pair a request: the
    // network, or the From domain at end of data; inline, no allocation):
    // the anomaly kind (a literal), and what it names, for the log.
    boost::container::small_vector<std::string_view, 2> seen_kinds;
    boost::container::small_vector<std::string, 2> seen_what;

    bool empty() const {
        return request.checks.empty() && request.volume_key.empty() && request.first_seen.empty();
    }
    // Adds a check per limit of `kind` (cost units, in the given mode).
    void add(const std::vector<policy::AppliedLimit>& limits, policy::LimitKind kind,
             std::uint64_t cost, ratelimit::Check::Mode mode);
    // Counts one message into the tenant's volume baseline.
    void observe_volume(const std::string& tenant, const VolumeSettings& s);
    // Marks a (tenant, kind, what) pair; the outcome says whether it was new.
    void mark_seen(const std::string& tenant, std::string_view kind, std::string what,
                   const VolumeSettings& s);
};

// "vol:{acme}": the tenant's volume state (same hash tag as its limits).
std::string volume_key(std::string_view tenant);
// The client network a first-seen pair names: IPv4 /24, IPv6 /48.
std::string client_network(const policy::IpAddress& ip);
// "retry in 42s", "retry in 3m", "retry in 2h"; "the message is larger
// than the whole limit" for a check that can never fit.
std::string retry_text(double seconds);
// The detail of a volume_spike anomaly: "120 messages in this bucket,
// baseline 9.5" (or "no history yet").
std::string spike_detail(const ratelimit::Outcome& o);
// The reason a refused limit of `kind` gives.
Reason limit_reason(policy::LimitKind kind);

}  // namespace relaygate::session
