// The volume-control store: one atomic decision per request, against
// counters that may be shared by several gateway replicas. Sans-I/O at
// this level: a Store answers through a callback, the memory store at
// once, the Redis store (gateway/server/redis_store) when Redis replied.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/container/small_vector.hpp>

namespace relaygate::ratelimit {

using FirstSeenKeys = boost::container::small_vector<std::string, 2>;
using FirstSeenFlags = boost::container::small_vector<bool, 2>;

// One GCRA check (see gcra.hpp): `cost` units against `key`.
struct Check {
    // What the check does with its units. A store decides a request in
    // this order: every refund, then the consume/ask checks (all or
    // nothing: they decide `allowed`), then, only when allowed, the leases
    // (all or nothing among themselves; a lease that does not fit is not
    // granted and never refuses the request).
    enum class Mode : std::uint8_t {
        consume,  // take `cost` units when the request is allowed
        ask,      // only ask whether `cost` would fit (SIZE= at MAIL FROM)
        lease,    // take `cost` units for later if they fit (recipients at MAIL FROM)
        refund,   // give back `cost` unused leased units (never below an empty cell)
    };
    std::string key;       // with the tenant's hash tag: "rl:{acme}:tenant:acme:messages:3600"
    double interval = 1;   // seconds of budget one unit costs (per / count)
    double tolerance = 1;  // burst tolerance in seconds (interval * burst)
    std::uint64_t cost = 1;
    Mode mode = Mode::consume;
};

// Anomaly settings that ride on a request (config "anomalies").
struct SpikeSettings {
    double bucket_seconds = 3600;      // one volume bucket (an hour)
    std::uint32_t slots = 24;          // baselines kept: one per hour of the day
    double alpha = 0.3;                // EWMA weight of a completed bucket
    double multiple = 10;              // spike: count > multiple * max(baseline, 1)
    std::uint64_t min_messages = 100;  // and count >= this
};

struct Request {
    // All or nothing: the consuming checks are taken only when every
    // consume and ask check passes (a message passing its hourly limit but
    // not its daily one costs neither). Refunds apply whatever the outcome.
    std::vector<Check> checks;
    // Count one message into this tenant volume key and report a spike
    // ("vol:{acme}"); empty: no volume observation.
    std::string volume_key;
    // Messages this observation counts (>= 1): more than one when a
    // process sends the counts of several messages at once (batch_store).
    std::uint64_t volume_count = 1;
    SpikeSettings spike;
    // First-seen keys to mark ("seen:{acme}:net:198.51.100.0/24"); the
    // outcome says which were new. Each expires first_seen_ttl after its
    // last sighting (every sighting extends it): new = not seen for that long.
    // A session marks at most one a request: inline, no allocation.
    FirstSeenKeys first_seen;
    double first_seen_ttl = 30 * 86400.0;
};

struct Outcome {
    enum class Status : std::uint8_t { ok, store_error };
    Status status = Status::ok;
    std::string error;  // store_error: what failed (for the log)
    // fail_open: the shared store failed and this came from the process's
    // own fallback counters (limits divided by the expected replica count).
    bool fallback = false;
    bool allowed = true;
    // The request's lease checks were all taken (false when it has none,
    // when one did not fit, or when the request was not allowed).
    bool leased = false;
    std::size_t denied = 0;  // !allowed: index of the first check that did not fit
    double retry_after = 0;  // !allowed: seconds until it would fit (inf: never);
                             // the longest wait of the checks that did not fit
    // Per check, in request order: whole units left after this decision.
    std::vector<std::uint64_t> remaining;
    // Volume observation (when volume_key was set).
    bool spike = false;  // this request made the bucket cross the threshold (once per bucket)
    bool held = false;   // the tenant's current bucket is in a spike not cleared by an operator
    std::uint64_t volume = 0;       // messages in the current bucket, this one included
    double baseline = -1;           // the bucket slot's EWMA baseline; -1: no history yet
    FirstSeenFlags first_seen_new;  // per Request::first_seen entry
};

class Store {
  public:
    virtual ~Store() = default;
    // Decides `request` atomically and calls `done` exactly once, never
    // from inside a lock the caller holds; may call it before returning.
    // Never throws. Thread-safe.
    virtual void submit(Request request, std::function<void(Outcome)> done) = 0;
    // An operator cleared the tenant's spike hold (admin endpoint).
    virtual void clear_hold(std::string volume_key, std::function<void(bool ok)> done) = 0;
    virtual std::string_view name() const = 0;  // "memory" | "redis"
    // The store answers now (Redis: connected); /readyz shows it.
    virtual bool available() const { return true; }
    // Decides `request` at once, without I/O, when this store can (the
    // memory store always; the batch store from the units it holds):
    // then the caller need not suspend. Otherwise nullopt, and `request`
    // is untouched for submit(). Never throws. Thread-safe.
    virtual std::optional<Outcome> decide_now(Request& /*request*/) { return std::nullopt; }
};

// Redis Cluster's hash tag rule: the text between the first '{' and the
// next '}' when not empty, else the whole key. All keys of one tenant
// share it ("rl:{acme}:...", "vol:{acme}").
inline std::string_view hash_tag(std::string_view key) {
    const auto open = key.find('{');
    if (open == std::string_view::npos) return key;
    const auto close = key.find('}', open + 1);
    if (close == std::string_view::npos || close == open + 1) return key;
    return key.substr(open + 1, close - open - 1);
}

}  // namespace relaygate::ratelimit
