// Volume baseline arithmetic (see volume.hpp). Every expression here has
// a line-for-line twin in the Lua decide script (redis_script.cpp).
#include "gateway/ratelimit/volume.hpp"

#include <algorithm>
#include <cmath>

namespace relaygate::ratelimit {

namespace {

// Floored modulo, as Lua's `%`: bucket indexes are integral doubles.
std::size_t slot_of(double bucket, std::uint32_t slots) {
    const double n = static_cast<double>(slots);
    return static_cast<std::size_t>(bucket - std::floor(bucket / n) * n);
}

void fold(std::vector<double>& baselines, std::size_t slot, double alpha, double count) {
    double& b = baselines[slot];
    b = b < 0 ? count : alpha * count + (1 - alpha) * b;
}

}  // namespace

bool volume_settings_valid(const SpikeSettings& s) {
    return std::isfinite(s.bucket_seconds) && s.bucket_seconds > 0 && s.slots >= 1 &&
           s.slots <= kMaxVolumeSlots && s.alpha >= 0 && s.alpha <= 1 && s.multiple >= 0 &&
           std::isfinite(s.multiple);
}

VolumeObservation volume_observe(VolumeState& state, const SpikeSettings& s, double now,
                                 std::uint64_t count) {
    const double bucket = std::floor(now / s.bucket_seconds);
    const bool fresh = state.baselines.empty() || state.bucket_seconds != s.bucket_seconds ||
                       state.baselines.size() != s.slots || now >= state.expires_at;
    if (fresh) {
        state.bucket_seconds = s.bucket_seconds;
        state.bucket = bucket;
        state.count = 0;
        state.fired = SpikeFired::none;
        state.baselines.assign(s.slots, -1.0);
    }
    // A bucket earlier than the current one (a replica's clock behind,
    // only possible with caller-supplied clocks) counts into the current.
    if (bucket > state.bucket) {
        fold(state.baselines, slot_of(state.bucket, s.slots), s.alpha,
             static_cast<double>(state.count));
        // Buckets without a message are zeros in their slots' history;
        // after a full cycle every slot has had one, more would only
        // repeat the same decay.
        double skipped = bucket - state.bucket - 1;
        if (skipped > s.slots) skipped = s.slots;
        for (double j = 1; j <= skipped; ++j)
            fold(state.baselines, slot_of(state.bucket + j, s.slots), s.alpha, 0);
        state.bucket = bucket;
        state.count = 0;
        state.fired = SpikeFired::none;
    }
    state.count += count;
    state.expires_at = now + (static_cast<double>(s.slots) + 1) * s.bucket_seconds;

    VolumeObservation o;
    o.baseline = state.baselines[slot_of(state.bucket, s.slots)];
    o.spike = state.fired == SpikeFired::none && state.count >= s.min_messages &&
              static_cast<double>(state.count) > s.multiple * std::max(o.baseline, 1.0);
    if (o.spike) state.fired = SpikeFired::held;
    o.held = state.fired == SpikeFired::held;
    o.volume = state.count;
    return o;
}

bool volume_clear_hold(VolumeState& state) {
    if (state.fired != SpikeFired::held) return false;
    state.fired = SpikeFired::cleared;
    return true;
}

}  // namespace relaygate::ratelimit
