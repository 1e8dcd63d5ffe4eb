// A tenant's volume baseline and spike signal: messages counted per time
// bucket (an hour), one EWMA baseline per bucket slot (hour of the day),
// and a spike when a bucket exceeds `multiple` times its slot's baseline.
// Pure arithmetic on a state the stores keep; the Lua twin in
// redis_script.cpp must do the same operations in the same order.
#pragma once

#include <cstdint>
#include <vector>

#include "gateway/ratelimit/store.hpp"

namespace relaygate::ratelimit {

enum class SpikeFired : std::uint8_t {
    none = 0,     // no spike in the current bucket (yet)
    held = 1,     // a spike fired: the tenant is held (on_spike = hold)
    cleared = 2,  // an operator cleared the hold; no new spike this bucket
};

struct VolumeState {
    // An empty `baselines` is no state at all (a new or expired tenant).
    double bucket_seconds = 0;  // the settings the state was made for
    double bucket = 0;          // floor(now / bucket_seconds) of the current bucket
    std::uint64_t count = 0;    // messages in the current bucket
    SpikeFired fired = SpikeFired::none;
    // Past this the state says nothing any more ((slots + 1) buckets after
    // the last message): it is dropped, as Redis drops the hash by TTL.
    double expires_at = 0;
    std::vector<double> baselines;  // one per slot; -1: no history
};

struct VolumeObservation {
    bool spike = false;  // these messages made the bucket cross the threshold
    bool held = false;   // fired == held after this message
    std::uint64_t volume = 0;
    double baseline = -1;  // the current slot's baseline; -1: no history
};

// The settings a state can be kept for: bucket_seconds > 0, finite;
// 1 <= slots <= kMaxVolumeSlots; 0 <= alpha <= 1; multiple >= 0.
inline constexpr std::uint32_t kMaxVolumeSlots = 10080;  // a week of minutes
bool volume_settings_valid(const SpikeSettings& s);

// Counts `count` (>= 1) messages at `now` into `state` (reset first when
// it is empty, expired or was made for other bucket settings) and reports
// the spike signal. `s` must be valid.
VolumeObservation volume_observe(VolumeState& state, const SpikeSettings& s, double now,
                                 std::uint64_t count = 1);

// An operator clears a hold: held -> cleared. False when nothing was held.
bool volume_clear_hold(VolumeState& state);

}  // namespace relaygate::ratelimit
