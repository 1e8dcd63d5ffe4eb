// PolicyHolder: the current compiled policy, swapped atomically on reload.
// Sessions take a snapshot at connect and keep it to the end, so a reload
// never changes the rules in the middle of a transaction.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
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
    const policy::PolicySource& source() const { return source_; }

    // Loads the source (file or directory, and credentials; for a fetched
    // policy its last good copy); on success swaps it in. On failure the
    // old policy stays and every error is logged with its JSON path.
    // Returns success.
    bool reload();
    // The same with the policy's text in hand (a fetched policy); `origin`
    // names it in logs.
    bool reload_text(std::string_view text, const std::string& origin);
    // The same from an open file (policy::load_policy_descriptor).
    bool reload_descriptor(int fd, const std::filesystem::path& name, const std::string& origin);

    // The source's last failure (a load, or a fetch reported by the
    // poller); a successful load or fetch clears it.
    void set_error(std::string error);
    // For /readyz: policy_source, policy_origin, policy_hash,
    // policy_age_seconds (since the loaded policy was loaded) and
    // policy_last_error.
    void status(nlohmann::json& out) const;

  private:
    bool adopt(policy::LoadResult loaded, const std::string& origin, double load_seconds);

    policy::PolicySource source_;
    metrics::Metrics& metrics_;
    mutable std::mutex mutex_;
    std::shared_ptr<const policy::Policy> current_;
    std::chrono::steady_clock::time_point loaded_at_;
    std::string last_error_;
};

}  // namespace relaygate::server
