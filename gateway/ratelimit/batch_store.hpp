// BatchStore: fewer calls to a shared store (Redis) per message, without
// letting replicas overshoot a limit. It sits in front of the shared store
// and answers most decisions in this process:
//  - Process leases: when a request goes to the store anyway, it also
//    takes a block of units (lease_fraction of each limit's burst) for
//    each limit it checks. Later requests that fit in the blocks this
//    process holds are decided here. The units were taken in the store
//    first, so the limit holds across replicas exactly as before; what a
//    block costs is that units taken and not yet used by one replica are
//    not available to another (at most one block per limit per replica,
//    for at most batch_seconds, then they go back).
//  - Refunds (a transaction's unused recipient lease) go into the
//    process's block and back to the store with it.
//  - Volume counts: a tenant's messages are counted here and sent at most
//    once per batch_seconds (with the next request that goes to the store
//    anyway, or by flush()). The spike signal and the hold therefore act
//    up to batch_seconds late; a spike found by flush() goes to the sink.
//  - First-seen marks: a mark this process sent within seen_refresh is
//    not sent again (it is not new, and its expiry is at most seen_refresh
//    short of what every sighting would give).
// Pure: the clock is passed in, the server runs flush() on a timer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "gateway/ratelimit/store.hpp"

namespace relaygate::ratelimit {

struct BatchSettings {
    double lease_fraction = 0.01;       // of a limit's burst per block; 0: no blocks
    double batch_seconds = 1;           // unused units and unsent counts wait at most this
    std::size_t seen_entries = 100000;  // first-seen marks remembered (0: none)
    double seen_refresh = 3600;         // a remembered mark is sent again after this
};

// What the batch store did, for metrics. Called outside its lock.
struct BatchEvents {
    virtual ~BatchEvents() = default;
    // A decision answered here (true) or sent to the store (false).
    virtual void decided(bool /*locally*/) {}
    // Units of process blocks: "taken" from the store, "returned" to it,
    // "lost" (the return failed; they come back with time).
    virtual void block_units(std::string_view /*event*/, std::uint64_t /*units*/) {}
    // flush() sent a tenant's counts and the store reported a spike.
    virtual void spike(std::string_view /*volume_key*/, const Outcome& /*outcome*/) {}
};

class BatchStore final : public Store {
  public:
    // `inner` must outlive the store; `events` lives as long as a callback
    // the inner store still holds (null: none).
    BatchStore(Store& inner, std::function<double()> clock, BatchSettings settings,
               std::shared_ptr<BatchEvents> events = nullptr);
    // The same, owning `inner` (the server's Redis store).
    BatchStore(std::unique_ptr<Store> inner, std::function<double()> clock, BatchSettings settings,
               std::shared_ptr<BatchEvents> events = nullptr);
    ~BatchStore() override;

    void submit(Request request, std::function<void(Outcome)> done) override;
    std::optional<Outcome> decide_now(Request& request) override;
    void clear_hold(std::string volume_key, std::function<void(bool ok)> done) override;
    std::string_view name() const override { return inner_.name(); }
    bool available() const override { return inner_.available(); }

    // Gives back blocks older than batch_seconds and sends counts waiting
    // longer than that; `everything`: all of them now (shutdown).
    void flush(bool everything = false);

    // Held here now: units in blocks, messages not yet counted in the store.
    std::uint64_t units_held() const;
    std::uint64_t counts_waiting() const;
    // Blocks, tenants' volume states and remembered marks (for a gauge):
    // bounded by what was active in the last 60 * batch_seconds, plus
    // seen_entries.
    std::size_t entries() const;

  private:
    struct Impl;
    std::unique_ptr<Store> owned_;  // first: inner_ may refer to it
    Store& inner_;
    std::shared_ptr<Impl> impl_;  // shared with the inner store's callbacks
};

}  // namespace relaygate::ratelimit
