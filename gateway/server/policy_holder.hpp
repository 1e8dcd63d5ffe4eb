// PolicyHolder: the current compiled policy, swapped atomically on reload.
// Sessions take a snapshot at connect and keep it to the end, so a reload
// never changes the rules in the middle of a transaction.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "policy/engine/policy.hpp"
#include "policy/engine/policy_source.hpp"

namespace relaygate::metrics {
class Metrics;
}

namespace relaygate::server {

class PolicyHolder {
  public:
    PolicyHolder(policy::PolicySource source, metrics::Metrics& metrics)
        : source_(std::move(source)), metrics_(metrics) {}

    std::shared_ptr<const policy::Policy> get() const {
        std::lock_guard lock(mutex_);
        return current_;
    }

    // Loads the source (file or directory, and credentials); on success
    // swaps it in. On failure the old policy stays
    // and every error is logged with its JSON path. Returns success.
    bool reload();

  private:
    policy::PolicySource source_;
    metrics::Metrics& metrics_;
    mutable std::mutex mutex_;
    std::shared_ptr<const policy::Policy> current_;
};

}  // namespace relaygate::server
