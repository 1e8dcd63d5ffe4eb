// Process health as the admin endpoints report it. Written by the server
// (listeners up, draining) and the policy holder (loaded); read by /readyz.
#pragma once

#include <atomic>

namespace relaygate::server {

struct Health {
    std::atomic<bool> policy_loaded{false};
    std::atomic<bool> listeners_up{false};
    std::atomic<bool> draining{false};

    bool ready() const { return policy_loaded && listeners_up && !draining; }
};

}  // namespace relaygate::server
