// DomainIndex: shards of two flat hash maps (exact names, wildcard bases)
// and a label walk.
#include "policy/engine/domain_index.hpp"

#include <algorithm>
#include <cmath>

#include <malloc.h>

namespace relaygate::policy {

bool is_plain_ldh_domain(std::string_view domain) noexcept {
    if (domain.empty() || domain.size() > 255) return false;
    std::size_t label = 0;  // length of the current label so far
    for (std::size_t i = 0; i <= domain.size(); ++i) {
        char c = i < domain.size() ? domain[i] : '.';
        if (c == '.') {
            // Empty label, over 63 octets, or a hyphen at either end.
            if (label == 0 || label > 63 || domain[i - 1] == '-' || domain[i - label] == '-')
                return false;
            // "xn--": an A-label, which only libidn2 can validate.
            if (label >= 4 && domain.substr(i - label, 4) == "xn--") return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
            ++label;
        } else {
            return false;
        }
    }
    return true;
}

std::string DomainIndex::Match::pattern() const {
    if (!wildcard) return std::string(base);
    std::string out;
    out.reserve(base.size() + 2);
    out += "*.";
    out += base;
    return out;
}

const DomainIndex::Grant* DomainIndex::Shard::holds(Owners o, std::uint32_t tenant,
                                                    Grant& scratch) const {
    if ((o.first & kTenant) == tenant) {
        scratch = first_grant(o);
        return &scratch;
    }
    if (o.more != 0)
        for (const auto& g : more[o.more - 1])
            if (g.tenant == tenant) return &g;
    return nullptr;
}

std::pair<DomainIndex::Map::Ref, bool> DomainIndex::Shard::add(Map& map, std::string_view base,
                                                               Grant grant) {
    // Tenant numbers stay below 2^30 (bits 30 and 31 are flags): a policy
    // that large could not be held in memory anyway.
    Owners fresh{grant.tenant | (grant.shared ? kShared : 0) | (grant.verify_dns ? kVerifyDns : 0),
                 0};
    auto [ref, inserted] = map.try_emplace(base, fresh);
    if (inserted) return {ref, true};
    Owners o = map.value(ref);
    Grant scratch{};
    if (holds(o, grant.tenant, scratch)) return {ref, false};
    if (o.more == 0) {
        more.emplace_back();
        o.more = static_cast<std::uint32_t>(more.size());
    }
    // Owners stay in the order of their tenant numbers, however they came
    // (a full load adds them in that order; an incremental one adds the
    // changed tenants last), so both loads decide alike.
    auto& list = more[o.more - 1];
    if (const Grant first = first_grant(o); grant.tenant < first.tenant) {
        list.insert(list.begin(), first);
        o.first = fresh.first;
    } else {
        list.insert(std::upper_bound(list.begin(), list.end(), grant.tenant,
                                     [](std::uint32_t t, const Grant& g) { return t < g.tenant; }),
                    grant);
    }
    map.set_value(ref, o);
    return {ref, true};
}

namespace {
// About 4,096 names per shard: a reload that changes one tenant's ten
// names rebuilds at most ten shards of ~200 KB each.
constexpr std::size_t kNamesPerShard = 4096;
constexpr std::size_t kMaxShards = 256;  // DomainIndex::shard_number uses 8 bits

std::size_t shard_count_for(std::size_t names) {
    std::size_t n = 1;
    while (n < kMaxShards && n * kNamesPerShard < names)
        n *= 2;
    return n;
}

// Room for the share of `total` one of `shards` gets (hashing spreads
// them binomially: the mean plus four standard deviations).
std::size_t per_shard(std::size_t total, std::size_t shards) {
    if (total == 0) return 0;
    double mean = static_cast<double>(total) / static_cast<double>(shards);
    return static_cast<std::size_t>(mean + 4 * std::sqrt(mean)) + 16;
}
}  // namespace

void DomainIndex::reserve(std::size_t exact, std::size_t wildcard, std::size_t key_bytes) {
    // An empty index picks its number of shards; a filled one keeps it.
    if (exact_count() + wildcard_count() == 0) {
        const std::size_t n = shard_count_for(exact + wildcard);
        shards_.clear();
        for (std::size_t i = 0; i < n; ++i)
            shards_.push_back(std::make_shared<Shard>());
        owned_.assign(n, true);
    }
    const std::size_t n = shards_.size();
    // A shard with more names than the mean has more key bytes too.
    const std::size_t shard_exact = per_shard(exact, n);
    const std::size_t shard_keys =
        exact == 0
            ? 0
            : static_cast<std::size_t>(static_cast<double>(key_bytes) / static_cast<double>(exact) *
                                       static_cast<double>(shard_exact));
    for (std::size_t i = 0; i < n; ++i) {
        Shard& s = mutable_shard(i);
        s.exact.reserve(shard_exact, shard_keys);
        s.wildcard.reserve(per_shard(wildcard, n));
    }
}

void DomainIndex::compact() {
    std::size_t bytes = 0;
    for (std::size_t i = 0; i < shards_.size(); ++i)
        if (owned_[i])
            bytes += shards_[i]->exact.table_bytes() + shards_[i]->wildcard.table_bytes();
    // Not for a few shards (an incremental load's): a mapping rounds up to
    // whole huge pages.
    auto region = bytes >= 4 * kHugePage ? TableRegion::create(bytes) : nullptr;
    for (std::size_t i = 0; i < shards_.size(); ++i) {
        if (!owned_[i]) continue;
        Shard& s = *shards_[i];
        if (region) {
            s.exact.move_to(region);
            s.wildcard.move_to(region);
            // The heap copies are free now: their pages go back as the
            // region fills, so that the load does not need both at once.
            if (i % 32 == 31) ::malloc_trim(0);
        } else {
            s.exact.shrink_to_fit();
            s.wildcard.shrink_to_fit();
        }
        s.more.shrink_to_fit();
    }
}

DomainIndex::Shard& DomainIndex::mutable_shard(std::size_t i) {
    if (!owned_[i]) {
        shards_[i] = std::make_shared<Shard>(*shards_[i]);
        owned_[i] = true;
    }
    return *shards_[i];
}

DomainIndex DomainIndex::without(const DomainIndex& old, const std::vector<bool>& removed) {
    auto gone = [&](const Grant& g) { return g.tenant < removed.size() && removed[g.tenant]; };
    DomainIndex out;
    out.shards_.clear();
    out.owned_.clear();
    out.wildcards_ = old.wildcards_;
    for (const auto& from : old.shards_) {
        bool touched = false;
        for (const Map* m : {&from->exact, &from->wildcard})
            m->for_each([&](Map::Ref r) {
                from->each(m->value(r), [&](const Grant& g) { touched = touched || gone(g); });
            });
        if (!touched) {
            out.shards_.push_back(from);
            out.owned_.push_back(false);
            continue;
        }
        auto s = std::make_shared<Shard>();
        s->exact.reserve(from->exact.size(), from->exact.key_bytes());
        s->wildcard.reserve(from->wildcard.size(), from->wildcard.key_bytes());
        for (const auto& maps :
             {std::pair{&from->exact, &s->exact}, std::pair{&from->wildcard, &s->wildcard}}) {
            const Map* src = maps.first;
            Map* dst = maps.second;
            src->for_each([&](Map::Ref r) {
                from->each(src->value(r), [&](const Grant& g) {
                    if (!gone(g)) s->add(*dst, src->key(r), g);
                });
            });
        }
        out.shards_.push_back(std::move(s));
        out.owned_.push_back(true);
    }
    return out;
}

std::size_t DomainIndex::shards_shared_with(const DomainIndex& other) const {
    std::size_t n = 0;
    for (const auto& s : shards_)
        n += std::count(other.shards_.begin(), other.shards_.end(), s);
    return n;
}

std::size_t DomainIndex::exact_count() const {
    std::size_t n = 0;
    for (const auto& s : shards_)
        n += s->exact.size();
    return n;
}

std::size_t DomainIndex::wildcard_count() const {
    std::size_t n = 0;
    for (const auto& s : shards_)
        n += s->wildcard.size();
    return n;
}

std::pair<DomainIndex::Entry, bool> DomainIndex::insert(std::string_view pattern, Grant grant) {
    bool wildcard = pattern.starts_with("*.");
    if (wildcard) pattern.remove_prefix(2);
    const std::size_t i = shard_number(hash_bytes(pattern));
    Shard& s = mutable_shard(i);
    auto [ref, added] = s.add(wildcard ? s.wildcard : s.exact, pattern, grant);
    wildcards_ = wildcards_ || wildcard;
    return {Entry{ref, static_cast<std::uint16_t>(i), wildcard}, added};
}

void DomainIndex::prefetch(std::string_view domain) const noexcept {
    if (domain.empty()) return;
    std::uint64_t h = hash_bytes(domain);
    shard(h).exact.prefetch(h);
    if (!wildcards_) return;
    int parents = 0;
    for (std::size_t dot = domain.find('.'); dot != std::string_view::npos && parents < 8;
         dot = domain.find('.', dot + 1), ++parents) {
        h = hash_bytes(domain.substr(dot + 1));
        shard(h).wildcard.prefetch(h);
    }
}

std::optional<DomainIndex::Match> DomainIndex::grant_for(std::string_view domain,
                                                         std::uint32_t tenant) const {
    if (domain.empty()) return std::nullopt;
    Grant scratch{};
    std::uint64_t h = hash_bytes(domain);
    const Shard& s = shard(h);
    if (auto r = s.exact.find(domain, h); r != Map::npos)
        if (const Grant* g = s.holds(s.exact.value(r), tenant, scratch))
            return Match{s.exact.key(r), false, g->verify_dns};
    if (!wildcards_) return std::nullopt;
    for (std::size_t dot = domain.find('.'); dot != std::string_view::npos;
         dot = domain.find('.', dot + 1)) {
        std::string_view parent = domain.substr(dot + 1);
        h = hash_bytes(parent);
        const Shard& w = shard(h);
        if (auto r = w.wildcard.find(parent, h); r != Map::npos)
            if (const Grant* g = w.holds(w.wildcard.value(r), tenant, scratch))
                return Match{w.wildcard.key(r), true, g->verify_dns};
    }
    return std::nullopt;
}

}  // namespace relaygate::policy
