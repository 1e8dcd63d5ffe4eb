// MemoryStore: the embedded store (rate_limit.store = "memory", the
// default): GCRA cells, tenant volume baselines and first-seen marks in
// this process, bounded by a number of entries (least recently used out),
// under sharded locks. Also the per-process fallback of the Redis store
// (fail_open). Pure: the clock is passed in.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include "gateway/ratelimit/store.hpp"

namespace relaygate::ratelimit {

class MemoryStore final : public Store {
  public:
    // `clock`: seconds on any monotonic scale (tests pass a fake one);
    // `max_entries`: cells + volume states + first-seen marks held at most.
    MemoryStore(std::function<double()> clock, std::size_t max_entries);
    ~MemoryStore() override;

    void submit(Request request, std::function<void(Outcome)> done) override;
    void clear_hold(std::string volume_key, std::function<void(bool ok)> done) override;
    std::string_view name() const override { return "memory"; }

    // The same decision, synchronously (what submit() calls).
    Outcome decide(const Request& request);
    std::size_t size() const;  // entries held, for a gauge and tests

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace relaygate::ratelimit
