// The embedded store: GCRA cells, volume states and first-seen marks in a
// few sharded LRU maps. It must decide exactly as the Redis decide script
// does (tests/ratelimit/test_redis_script runs both side by side), so the
// order of the steps below is the script's order.
#include "gateway/ratelimit/memory_store.hpp"

#include <boost/container/small_vector.hpp>

#include <algorithm>
#include <cmath>
#include <list>
#include <mutex>
#include <new>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>

#include "gateway/ratelimit/gcra.hpp"
#include "gateway/ratelimit/volume.hpp"

namespace relaygate::ratelimit {

namespace {

// Shards bound lock contention between tenants; small stores keep one
// shard so that "at most max_entries, least recently used out" is exact
// (per shard, the bound and the LRU order are exact; across shards the
// bound is the sum).
constexpr std::size_t kMaxShards = 16;
constexpr std::size_t kEntriesPerShardMin = 1024;

struct Cell {
    double tat = 0;
};
struct Mark {
    double expires_at = 0;
};
using Value = std::variant<Cell, VolumeState, Mark>;

template <class T>
using Small = boost::container::small_vector<T, 8>;

bool check_valid(const Check& c) {
    return std::isfinite(c.interval) && c.interval > 0 && std::isfinite(c.tolerance) &&
           c.tolerance >= 0;
}

}  // namespace

struct MemoryStore::Impl {
    struct Entry {
        Value value;
        std::list<std::string>::iterator lru;  // position in Shard::order
    };
    struct Shard {
        mutable std::mutex mutex;
        std::size_t capacity = 0;
        std::unordered_map<std::string, Entry> map;
        std::list<std::string> order;  // most recently used first

        // The entry of `key` if it holds a T (touching it), else nullptr.
        template <typename T>
        T* find(const std::string& key) {
            auto it = map.find(key);
            if (it == map.end()) return nullptr;
            order.splice(order.begin(), order, it->second.lru);
            return std::get_if<T>(&it->second.value);
        }
        // Stores `value` under `key` (most recently used).
        template <typename T>
        T& put(const std::string& key, T value) {
            auto it = map.find(key);
            if (it != map.end()) {
                order.splice(order.begin(), order, it->second.lru);
                it->second.value = std::move(value);
                return std::get<T>(it->second.value);
            }
            order.push_front(key);
            auto [pos, inserted] = map.emplace(key, Entry{std::move(value), order.begin()});
            return std::get<T>(pos->second.value);
        }
        void erase(const std::string& key) {
            auto it = map.find(key);
            if (it == map.end()) return;
            order.erase(it->second.lru);
            map.erase(it);
        }
        void evict() {
            while (map.size() > capacity && !order.empty()) {
                map.erase(order.back());
                order.pop_back();
            }
        }
    };

    std::function<double()> clock;
    std::vector<Shard> shards;

    Impl(std::function<double()> c, std::size_t max_entries)
        : clock(std::move(c)),
          shards(std::clamp<std::size_t>(max_entries / kEntriesPerShardMin, 1, kMaxShards)) {
        const std::size_t n = shards.size();
        for (std::size_t i = 0; i < n; ++i)
            shards[i].capacity = max_entries / n + (i < max_entries % n ? 1 : 0);
    }

    Shard& shard_of(std::string_view key) {
        return shards[std::hash<std::string_view>{}(hash_tag(key)) % shards.size()];
    }

    Outcome decide(const Request& request);
};

Outcome MemoryStore::Impl::decide(const Request& request) {
    Outcome out;
    for (const auto& c : request.checks) {
        if (!check_valid(c)) {
            out.status = Outcome::Status::store_error;
            out.error = "invalid check for " + c.key;
            out.allowed = false;
            return out;
        }
    }
    const bool has_volume = !request.volume_key.empty();
    if (has_volume && (!volume_settings_valid(request.spike) || request.volume_count == 0)) {
        out.status = Outcome::Status::store_error;
        out.error = "invalid spike settings";
        out.allowed = false;
        return out;
    }
    if (!request.first_seen.empty() &&
        !(std::isfinite(request.first_seen_ttl) && request.first_seen_ttl > 0)) {
        out.status = Outcome::Status::store_error;
        out.error = "invalid first_seen_ttl";
        out.allowed = false;
        return out;
    }

    // Lock every shard the request touches, in shard order (no deadlock
    // between requests whose keys, against the rule, mix hash tags).
    // Small vectors: a request names a few keys, and a decision per
    // message must not cost a heap allocation per scratch array.
    Small<Shard*> touched;
    for (const auto& c : request.checks)
        touched.push_back(&shard_of(c.key));
    if (has_volume) touched.push_back(&shard_of(request.volume_key));
    for (const auto& k : request.first_seen)
        touched.push_back(&shard_of(k));
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    Small<std::unique_lock<std::mutex>> locks;
    for (Shard* s : touched)
        locks.emplace_back(s->mutex);

    // Read under the locks: the decisions of one shard are in clock order.
    const double now = clock();

    // 1. The checks. `base`: a key's TAT before the request (max(stored,
    // now)); `start`: after the request's refunds, which apply whatever
    // the outcome; `tat`: after the consuming checks decided so far. A key
    // named twice sees its first check's effect.
    using Mode = Check::Mode;
    const std::size_t n = request.checks.size();
    Small<double> base(n), start(n), tat(n);
    Small<std::size_t> first(n);  // the first check index naming the same key
    bool has_lease = false;
    for (std::size_t i = 0; i < n; ++i) {
        const auto& c = request.checks[i];
        has_lease = has_lease || c.mode == Mode::lease;
        first[i] = i;
        for (std::size_t j = 0; j < i; ++j) {
            if (request.checks[j].key == c.key) {
                first[i] = first[j];
                break;
            }
        }
        if (first[i] == i) {
            const Cell* cell = shard_of(c.key).find<Cell>(c.key);
            base[i] = cell && cell->tat > now ? cell->tat : now;
            start[i] = base[i];
        }
    }
    // 1a. Refunds first: units leased earlier and not used are not this
    // request's to decide on.
    for (std::size_t i = 0; i < n; ++i) {
        const auto& c = request.checks[i];
        if (c.mode != Mode::refund) continue;
        double& s = start[first[i]];
        s = gcra_refund(s, now, c.interval, c.cost);
    }
    // 1b. The consume and ask checks, all or nothing.
    for (std::size_t i = 0; i < n; ++i)
        if (first[i] == i) tat[i] = start[i];
    for (std::size_t i = 0; i < n; ++i) {
        const auto& c = request.checks[i];
        if (c.mode != Mode::consume && c.mode != Mode::ask) continue;
        double& current = tat[first[i]];
        const GcraResult r =
            gcra_decide(current, now, c.interval, c.tolerance, c.cost, c.mode == Mode::consume);
        if (r.allowed) {
            current = r.tat;
        } else {
            if (out.allowed) out.denied = i;
            out.allowed = false;
            // The request fits when its slowest check fits.
            out.retry_after = std::max(out.retry_after, r.retry_after);
        }
    }
    Small<double>& final_tat = out.allowed ? tat : start;
    // 1c. Leases, only for an allowed request, all or nothing among
    // themselves; one that does not fit is not granted and refuses nothing.
    if (out.allowed && has_lease) {
        Small<double> leased = final_tat;
        bool fits = true;
        for (std::size_t i = 0; i < n && fits; ++i) {
            const auto& c = request.checks[i];
            if (c.mode != Mode::lease) continue;
            double& current = leased[first[i]];
            const GcraResult r = gcra_decide(current, now, c.interval, c.tolerance, c.cost, true);
            fits = r.allowed;
            current = r.tat;
        }
        if (fits) {
            final_tat = std::move(leased);
            out.leased = true;
        }
    }
    out.remaining.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        const auto& c = request.checks[i];
        const std::size_t k = first[i];
        out.remaining[i] = gcra_remaining(final_tat[k], now, c.interval, c.tolerance);
        if (k != i) continue;
        Shard& shard = shard_of(c.key);
        if (gcra_expired(final_tat[k], now))
            shard.erase(c.key);  // holds no information (any more)
        else if (final_tat[k] != base[k])
            shard.put(c.key, Cell{final_tat[k]});
    }

    // 2. The volume counts attempts, allowed or not: a spike must show
    // even while the limits refuse the excess.
    if (has_volume) {
        Shard& shard = shard_of(request.volume_key);
        VolumeState* state = shard.find<VolumeState>(request.volume_key);
        if (!state) state = &shard.put(request.volume_key, VolumeState{});
        const VolumeObservation v =
            volume_observe(*state, request.spike, now, request.volume_count);
        out.spike = v.spike;
        out.held = v.held;
        out.volume = v.volume;
        out.baseline = v.baseline;
    }

    // 3. First-seen marks: new when absent or expired; every sighting
    // extends the mark, so "new" means "not seen for first_seen_ttl".
    out.first_seen_new.reserve(request.first_seen.size());
    for (const auto& key : request.first_seen) {
        Shard& shard = shard_of(key);
        const Mark* mark = shard.find<Mark>(key);
        out.first_seen_new.push_back(!mark || now >= mark->expires_at);
        shard.put(key, Mark{now + request.first_seen_ttl});
    }

    for (Shard* s : touched)
        s->evict();
    return out;
}

MemoryStore::MemoryStore(std::function<double()> clock, std::size_t max_entries)
    : impl_(std::make_unique<Impl>(std::move(clock), max_entries)) {}

MemoryStore::~MemoryStore() = default;

Outcome MemoryStore::decide(const Request& request) {
    try {
        return impl_->decide(request);
    } catch (const std::bad_alloc&) {
        Outcome out;
        out.status = Outcome::Status::store_error;
        out.error = "out of memory";
        out.allowed = false;
        return out;
    }
}

void MemoryStore::submit(Request request, std::function<void(Outcome)> done) {
    Outcome out = decide(request);  // the shard locks are released here
    done(std::move(out));
}

void MemoryStore::clear_hold(std::string volume_key, std::function<void(bool ok)> done) {
    bool cleared = false;
    {
        Impl::Shard& shard = impl_->shard_of(volume_key);
        std::lock_guard lock(shard.mutex);
        if (VolumeState* state = shard.find<VolumeState>(volume_key))
            cleared = volume_clear_hold(*state);
    }
    done(cleared);
}

std::size_t MemoryStore::size() const {
    std::size_t total = 0;
    for (const auto& s : impl_->shards) {
        std::lock_guard lock(s.mutex);
        total += s.map.size();
    }
    return total;
}

}  // namespace relaygate::ratelimit
