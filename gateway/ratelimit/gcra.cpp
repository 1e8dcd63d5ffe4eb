// GCRA arithmetic. The Lua twin is in redis_script.cpp: keep the
// operations and their order identical (both are IEEE doubles), or the
// memory and Redis stores drift apart (tests/ratelimit/test_redis_script).
#include "gateway/ratelimit/gcra.hpp"

#include <cmath>
#include <limits>

namespace relaygate::ratelimit {

std::uint64_t gcra_remaining(double tat, double now, double interval, double tolerance) {
    const double units = std::floor((now + tolerance - tat) / interval + kGcraSlack);
    // A tolerance lowered by a policy reload leaves old TATs beyond it.
    if (!(units > 0)) return 0;
    if (units >= kGcraRemainingCap) return static_cast<std::uint64_t>(kGcraRemainingCap);
    return static_cast<std::uint64_t>(units);
}

GcraResult gcra_decide(std::optional<double> stored_tat, double now, double interval,
                       double tolerance, std::uint64_t cost, bool consume) {
    const double tat = stored_tat && *stored_tat > now ? *stored_tat : now;
    const double increment = interval * static_cast<double>(cost);
    const double new_tat = tat + increment;
    const double allow_at = new_tat - tolerance;
    const double slack = kGcraSlack * interval;

    GcraResult r;
    r.tat = tat;
    if (increment > tolerance + slack) {
        // More units than the whole burst: no amount of waiting helps.
        r.retry_after = std::numeric_limits<double>::infinity();
    } else if (now < allow_at - slack) {
        r.retry_after = allow_at - now;
    } else {
        r.allowed = true;
        if (consume) r.tat = new_tat;
    }
    r.remaining = gcra_remaining(r.tat, now, interval, tolerance);
    return r;
}

double gcra_refund(std::optional<double> stored_tat, double now, double interval,
                   std::uint64_t cost) {
    const double tat = stored_tat && *stored_tat > now ? *stored_tat : now;
    const double back = tat - interval * static_cast<double>(cost);
    return back > now ? back : now;
}

}  // namespace relaygate::ratelimit
