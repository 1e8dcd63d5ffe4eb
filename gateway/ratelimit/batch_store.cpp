// The batch store (see batch_store.hpp). One mutex guards the blocks,
// volume counts and remembered marks; it is never held while the inner
// store or a caller's callback runs.
#include "gateway/ratelimit/batch_store.hpp"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gateway/common/string_map.hpp"

namespace relaygate::ratelimit {

namespace {

template <class V>
using Map = StringMap<V>;

// Units of one limit this process took from the store and has not used.
struct Block {
    std::uint64_t units = 0;
    double interval = 1;  // the limit's, for the refund
    double tolerance = 0;
    double expires = 0;            // given back from here on
    std::uint64_t store_left = 0;  // units the store had left when it was taken
};

// A tenant's volume counts not yet in the store, and what the store said last.
struct Volume {
    bool known = false;  // the store answered for this tenant since it was added
    double synced = 0;   // when counts were last sent
    std::uint64_t waiting = 0;
    double waiting_since = 0;
    SpikeSettings spike;
    bool held = false;
    std::uint64_t volume = 0;  // the bucket's count when the store last answered
    double baseline = -1;
};

// Blocks stay at most a double's exact integers.
constexpr double kMaxBlock = 9007199254740992.0;

bool takes_units(const Check& c) {
    return c.mode == Check::Mode::consume || c.mode == Check::Mode::lease;
}

}  // namespace

struct BatchStore::Impl {
    Impl(std::function<double()> c, BatchSettings st, std::shared_ptr<BatchEvents> e)
        : clock(std::move(c)),
          s(st),
          events_owner(e ? std::move(e) : std::make_shared<BatchEvents>()),
          events(*events_owner) {}

    std::function<double()> clock;
    const BatchSettings s;
    std::shared_ptr<BatchEvents> events_owner;
    BatchEvents& events;

    mutable std::mutex mutex;
    Map<Block> blocks;
    Map<Volume> volumes;
    // Remembered first-seen marks, in two generations: when the current one
    // is full it becomes the old one (a bounded, nearly-LRU set).
    Map<double> seen, seen_old;

    // A block of this limit: lease_fraction of its burst, when that is at
    // least 2 units (a block of 1 would save nothing).
    std::uint64_t block_size(const Check& c) const {
        const double b = std::floor(c.tolerance / c.interval * s.lease_fraction);
        if (!(b >= 2)) return 0;
        return static_cast<std::uint64_t>(std::min(b, kMaxBlock));
    }

    bool seen_recently(std::string_view key, double now) const {
        for (const auto* gen : {&seen, &seen_old}) {
            const auto it = gen->find(key);
            if (it != gen->end()) return now < it->second + s.seen_refresh;
        }
        return false;
    }
    void remember_seen(const std::string& key, double now) {
        if (s.seen_entries == 0) return;
        if (seen.size() >= std::max<std::size_t>(s.seen_entries / 2, 1)) {
            seen_old = std::move(seen);
            seen.clear();
        }
        seen[key] = now;
    }

    // Units of `key` this request may use here: the block plus its refunds.
    std::uint64_t available(const Request& r, const std::string& key) const {
        const auto it = blocks.find(key);
        std::uint64_t units = it == blocks.end() ? 0 : it->second.units;
        for (const auto& c : r.checks)
            if (c.mode == Check::Mode::refund && c.key == key) units += c.cost;
        return units;
    }

    void refund_into_block(const Check& c, double now) {
        auto [it, fresh] = blocks.try_emplace(c.key);
        Block& b = it->second;
        if (fresh) {
            b.interval = c.interval;
            b.tolerance = c.tolerance;
            b.expires = now + s.batch_seconds;
        }
        b.units += c.cost;
    }

    // Locked. The whole request from blocks, counts and marks held here,
    // or nullopt (nothing changed).
    std::optional<Outcome> try_local(const Request& r, double now) {
        for (const auto& c : r.checks) {
            if (c.mode == Check::Mode::refund) continue;
            std::uint64_t need = 0, ask = 0;
            for (const auto& o : r.checks) {
                if (o.key != c.key) continue;
                if (takes_units(o)) need += o.cost;
                if (o.mode == Check::Mode::ask) ask = std::max(ask, o.cost);
            }
            if (available(r, c.key) < need + ask) return std::nullopt;
        }
        Volume* vol = nullptr;
        if (!r.volume_key.empty()) {
            const auto it = volumes.find(r.volume_key);
            if (it == volumes.end() || !it->second.known ||
                now >= it->second.synced + s.batch_seconds)
                return std::nullopt;
            vol = &it->second;
        }
        for (const auto& k : r.first_seen)
            if (!seen_recently(k, now)) return std::nullopt;

        Outcome out;
        for (const auto& c : r.checks)
            if (c.mode == Check::Mode::refund) refund_into_block(c, now);
        out.remaining.reserve(r.checks.size());
        for (const auto& c : r.checks) {
            Block& b = blocks[c.key];  // exists: every key here has units
            if (takes_units(c)) b.units -= c.cost;
            out.leased = out.leased || c.mode == Check::Mode::lease;
        }
        for (const auto& c : r.checks) {
            const Block& b = blocks.find(c.key)->second;
            out.remaining.push_back(b.store_left + b.units);
        }
        if (vol) {
            if (vol->waiting == 0) vol->waiting_since = now;
            vol->waiting += r.volume_count;
            out.held = vol->held;
            out.volume = vol->volume + vol->waiting;
            out.baseline = vol->baseline;
        }
        out.first_seen_new.assign(r.first_seen.size(), false);
        return out;
    }

    // What a forwarded request needs to be read back.
    struct Forward {
        std::vector<std::size_t> index;  // forwarded check -> the caller's index
        std::size_t caller_checks = 0;
        bool caller_leases = false;
        std::vector<Check> topups;    // the blocks asked for (lease checks)
        std::size_t first_topup = 0;  // index of the first top-up check
        std::string volume_key;
        FirstSeenKeys first_seen;
    };

    // Locked. Rewrites `r` for the store: refunds go into the blocks, a
    // block is asked for with every limit checked, waiting counts ride along.
    Forward prepare(Request& r, double now) {
        Forward f;
        f.caller_checks = r.checks.size();
        std::vector<Check> checks;
        checks.reserve(r.checks.size() * 2);
        for (std::size_t i = 0; i < r.checks.size(); ++i) {
            Check& c = r.checks[i];
            if (c.mode == Check::Mode::refund) {
                refund_into_block(c, now);
                continue;
            }
            f.caller_leases = f.caller_leases || c.mode == Check::Mode::lease;
            f.index.push_back(i);
            checks.push_back(std::move(c));
        }
        f.first_topup = checks.size();
        for (std::size_t i = 0; i < f.first_topup; ++i) {
            const Check& c = checks[i];
            const std::uint64_t size = block_size(c);
            if (size == 0) continue;
            const bool dup = std::any_of(f.topups.begin(), f.topups.end(),
                                         [&](const Check& t) { return t.key == c.key; });
            if (!dup)
                f.topups.push_back({c.key, c.interval, c.tolerance, size, Check::Mode::lease});
        }
        checks.insert(checks.end(), f.topups.begin(), f.topups.end());
        r.checks = std::move(checks);
        if (!r.volume_key.empty()) {
            Volume& v = volumes[r.volume_key];
            v.spike = r.spike;
            r.volume_count += v.waiting;
            v.waiting = 0;
            v.synced = now;
            f.volume_key = r.volume_key;
        }
        f.first_seen = r.first_seen;
        return f;
    }

    // Locked. Takes in the store's answer to a forwarded request and
    // returns the caller's outcome.
    Outcome absorb(const Forward& f, Outcome o, double now) {
        const bool ok = o.status == Outcome::Status::ok && !o.fallback;
        const bool topped = ok && o.leased && !f.topups.empty();
        if (topped) {
            for (std::size_t t = 0; t < f.topups.size(); ++t) {
                const Check& c = f.topups[t];
                Block& b = blocks[c.key];
                const std::size_t at = f.first_topup + t;
                b.interval = c.interval;
                b.tolerance = c.tolerance;
                b.units += c.cost;
                b.expires = now + s.batch_seconds;
                b.store_left = at < o.remaining.size() ? o.remaining[at] : 0;
            }
        }
        if (ok && !f.volume_key.empty()) {
            const auto it = volumes.find(f.volume_key);
            if (it != volumes.end()) {
                Volume& v = it->second;
                v.known = true;
                v.held = o.held;
                v.volume = o.volume;
                v.baseline = o.baseline;
            }
        }
        if (ok)
            for (const auto& k : f.first_seen)
                remember_seen(k, now);

        Outcome out = std::move(o);
        std::vector<std::uint64_t> remaining(f.caller_checks, 0);
        for (std::size_t i = 0; i < f.index.size() && i < out.remaining.size(); ++i)
            remaining[f.index[i]] = out.remaining[i];
        out.remaining = std::move(remaining);
        if (!out.allowed && out.denied < f.index.size()) out.denied = f.index[out.denied];
        out.leased = out.leased && f.caller_leases;
        return out;
    }

    std::uint64_t topup_units(const Forward& f) const {
        std::uint64_t n = 0;
        for (const auto& t : f.topups)
            n += t.cost;
        return n;
    }
};

BatchStore::BatchStore(Store& inner, std::function<double()> clock, BatchSettings settings,
                       std::shared_ptr<BatchEvents> events)
    : inner_(inner), impl_(std::make_shared<Impl>(std::move(clock), settings, std::move(events))) {}

BatchStore::BatchStore(std::unique_ptr<Store> inner, std::function<double()> clock,
                       BatchSettings settings, std::shared_ptr<BatchEvents> events)
    : BatchStore(*inner, std::move(clock), settings, std::move(events)) {
    owned_ = std::move(inner);
}

BatchStore::~BatchStore() = default;

std::optional<Outcome> BatchStore::decide_now(Request& request) {
    std::optional<Outcome> out;
    {
        std::lock_guard lock(impl_->mutex);
        out = impl_->try_local(request, impl_->clock());
    }
    if (out) impl_->events.decided(true);
    return out;
}

void BatchStore::submit(Request request, std::function<void(Outcome)> done) {
    if (auto now = decide_now(request)) {
        done(std::move(*now));
        return;
    }
    Impl::Forward f;
    {
        std::lock_guard lock(impl_->mutex);
        f = impl_->prepare(request, impl_->clock());
    }
    impl_->events.decided(false);
    inner_.submit(std::move(request),
                  [impl = impl_, f = std::move(f), done = std::move(done)](Outcome o) mutable {
                      const bool topped = o.status == Outcome::Status::ok && !o.fallback &&
                                          o.leased && !f.topups.empty();
                      Outcome out;
                      {
                          std::lock_guard lock(impl->mutex);
                          out = impl->absorb(f, std::move(o), impl->clock());
                      }
                      if (topped) impl->events.block_units("taken", impl->topup_units(f));
                      done(std::move(out));
                  });
}

void BatchStore::clear_hold(std::string volume_key, std::function<void(bool ok)> done) {
    inner_.clear_hold(volume_key,
                      [impl = impl_, key = volume_key, done = std::move(done)](bool ok) {
                          if (ok) {
                              // The next message asks the store again and learns the hold is off.
                              std::lock_guard lock(impl->mutex);
                              impl->volumes.erase(key);
                          }
                          done(ok);
                      });
}

void BatchStore::flush(bool everything) {
    std::vector<Request> refunds;
    std::vector<std::uint64_t> refund_units;
    std::vector<Request> counts;
    // One refund request per tenant (a Redis Cluster slot holds its
    // keys): tag -> index in `refunds`.
    std::unordered_map<std::string, std::size_t> by_tag;
    {
        std::lock_guard lock(impl_->mutex);
        const double now = impl_->clock();
        const double batch = impl_->s.batch_seconds;
        for (auto it = impl_->blocks.begin(); it != impl_->blocks.end();) {
            const Block& b = it->second;
            if (!everything && now < b.expires) {
                ++it;
                continue;
            }
            if (b.units > 0) {
                const auto [at, fresh] =
                    by_tag.try_emplace(std::string(hash_tag(it->first)), refunds.size());
                if (fresh) {
                    refunds.emplace_back();
                    refund_units.push_back(0);
                }
                refunds[at->second].checks.push_back(
                    {it->first, b.interval, b.tolerance, b.units, Check::Mode::refund});
                refund_units[at->second] += b.units;
            }
            it = impl_->blocks.erase(it);
        }
        for (auto it = impl_->volumes.begin(); it != impl_->volumes.end();) {
            Volume& v = it->second;
            if (v.waiting > 0 && (everything || now >= v.waiting_since + batch)) {
                Request r;
                r.volume_key = it->first;
                r.volume_count = v.waiting;
                r.spike = v.spike;
                counts.push_back(std::move(r));
                v.waiting = 0;
                v.synced = now;
            } else if (v.waiting == 0 && now >= v.synced + 60 * batch) {
                // Idle: forget it; its next message asks the store.
                it = impl_->volumes.erase(it);
                continue;
            }
            ++it;
        }
    }
    for (std::size_t i = 0; i < refunds.size(); ++i)
        inner_.submit(std::move(refunds[i]), [impl = impl_, units = refund_units[i]](Outcome o) {
            const bool ok = o.status == Outcome::Status::ok && !o.fallback;
            impl->events.block_units(ok ? "returned" : "lost", units);
        });
    for (auto& r : counts) {
        std::string key = r.volume_key;
        inner_.submit(std::move(r), [impl = impl_, key = std::move(key)](Outcome o) {
            if (o.status != Outcome::Status::ok || o.fallback) return;
            {
                std::lock_guard lock(impl->mutex);
                const auto it = impl->volumes.find(key);
                if (it != impl->volumes.end()) {
                    it->second.known = true;
                    it->second.held = o.held;
                    it->second.volume = o.volume;
                    it->second.baseline = o.baseline;
                }
            }
            if (o.spike) impl->events.spike(key, o);
        });
    }
}

std::uint64_t BatchStore::units_held() const {
    std::lock_guard lock(impl_->mutex);
    std::uint64_t n = 0;
    for (const auto& [key, b] : impl_->blocks)
        n += b.units;
    return n;
}

std::size_t BatchStore::entries() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->blocks.size() + impl_->volumes.size() + impl_->seen.size() +
           impl_->seen_old.size();
}

std::uint64_t BatchStore::counts_waiting() const {
    std::lock_guard lock(impl_->mutex);
    std::uint64_t n = 0;
    for (const auto& [key, v] : impl_->volumes)
        n += v.waiting;
    return n;
}

}  // namespace relaygate::ratelimit
