// PolicyHolder: the current compiled policy, swapped atomically on reload.
// Sessions take a snapshot at connect and keep it to the end, so a reload
// never changes the rules in the middle of a transaction.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "policy/engine/policy.hpp"

namespace relaygate::metrics {
class Metrics;
}

namespace relaygate::server {

class PolicyHolder {
  public:
    PolicyHolder(std::filesystem::path file, metrics::Metrics& metrics)
        : file_(std::move(file)), metrics_(metrics) {}

    std::shared_ptr<const policy::Policy> get() const {
        std::lock_guard lock(mutex_);
        return current_;
    }

    // Loads the file; on success swaps it in. On failure the old policy stays
    // and every error is logged with its JSON path. Returns success.
    bool reload();

  private:
    std::filesystem::path file_;
    metrics::Metrics& metrics_;
    mutable std::mutex mutex_;
    std::shared_ptr<const policy::Policy> current_;
};

}  // namespace relaygate::server
