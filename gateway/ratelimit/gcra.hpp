// GCRA, the generic cell rate algorithm: the rate-limit decision for one
// key as a pure function of (stored TAT, now, limit, cost). It owns the
// arithmetic only; the stores (memory_store, the Redis script in
// redis_script.cpp) keep the TATs and must do exactly these operations in
// this order, so that both stores decide alike to the last bit.
//
// Why GCRA (and not a fixed window, a token bucket with two numbers or a
// sliding-window log):
//  - One number per key: the theoretical arrival time (TAT), the time at
//    which the key's budget is back to "full" (no debt). A key holds no
//    information once now >= TAT, so a cell expires by itself at its TAT
//    (Redis: PEXPIRE), and an idle tenant costs nothing.
//  - Exact bursts: "count N per T, burst B" is an emission interval
//    I = T / N per unit and a tolerance tau = I * B. B units pass at once,
//    then one unit every I seconds; no window edge lets 2N through, as a
//    fixed window does at its boundary.
//  - Atomic in one Lua call: read one string, compare, write one string
//    with a TTL. Several replicas share a limit without a read-modify-write
//    race, and a Redis Cluster can hold the cells (one hash tag per tenant).
//  - No sliding-window log: a log stores one entry per message (unbounded
//    at the volumes a compromised tenant sends); GCRA is O(1) in memory and
//    time whatever the rate.
// Guarantee: over any window of length T (= per) at most count + burst
// units pass (the full burst at the start, then the steady rate), and at
// most burst units pass at any single instant. With burst = count (the
// default) a tenant can send its hour's budget at once, but no more than
// 2 * count in any hour.
//
// A unit is a message, a recipient or an octet; a check may cost several
// units (a message of 40 kB costs 40000 byte units).
//
// Leases: units taken ahead of use (a transaction's first recipient, taken
// with its MAIL FROM decision) pass the same check and are consumed like
// any others, so replicas sharing a cell never overshoot it. Units leased
// and not used are refunded: the TAT moves back by interval * units, never
// below now. While the cell stays in debt (TAT > now) from the lease to
// the refund, that undoes the lease (up to rounding); otherwise at most
// the leased units come back and the cell is at most full. The guarantee
// above counts a leased unit when it is leased.
#pragma once

#include <cstdint>
#include <optional>

namespace relaygate::ratelimit {

// Slack against float rounding, in units of the interval: a double TAT at
// Unix-epoch scale has ~2.4e-7 s resolution and a burst of thousands of
// checks adds thousands of roundings, so "exactly burst units at once"
// must not be refused for being 1e-4 s late. Admitting a check a
// thousandth of an interval early changes no observable rate: the TAT
// still advances by the full interval * cost.
inline constexpr double kGcraSlack = 1e-3;

// remaining is capped here (2^63, exact as a double, fits in uint64).
inline constexpr double kGcraRemainingCap = 9223372036854775808.0;

struct GcraResult {
    bool allowed = false;
    // Denied: seconds until `cost` fits (+inf: it never can, cost exceeds
    // the burst). 0 when allowed.
    double retry_after = 0;
    // The cell's TAT after this decision: tat + interval * cost when
    // allowed and consumed, else max(stored, now) (unchanged).
    double tat = 0;
    // Whole units left after this decision (for a denied check: before it).
    std::uint64_t remaining = 0;
};

// The decision for one check at `now`. `stored_tat`: the key's TAT, absent
// when the key has none (the same as a TAT <= now). `interval` > 0 and
// `tolerance` >= 0, finite (the stores validate). With consume = false the
// returned tat is the stored one: the caller stores nothing.
GcraResult gcra_decide(std::optional<double> stored_tat, double now, double interval,
                       double tolerance, std::uint64_t cost, bool consume);

// Gives back `cost` units leased earlier and not used: the TAT (the
// stored one, or now when absent or past) moves back by interval * cost,
// never below `now` (the time that passed already refilled that much).
// Returns the new TAT; <= now means the cell is empty.
double gcra_refund(std::optional<double> stored_tat, double now, double interval,
                   std::uint64_t cost);

// Whole units that fit at `now` against a cell at `tat` (>= now):
// floor((now + tolerance - tat) / interval), never negative.
std::uint64_t gcra_remaining(double tat, double now, double interval, double tolerance);

// A cell at `tat` holds no information from `tat` on: drop it (memory) or
// let it expire (Redis TTL = tat - now).
inline bool gcra_expired(double tat, double now) {
    return now >= tat;
}
inline double gcra_ttl(double tat, double now) {
    return tat > now ? tat - now : 0;
}

}  // namespace relaygate::ratelimit
