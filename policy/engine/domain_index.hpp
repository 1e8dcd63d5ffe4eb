// DomainIndex: which tenants are granted a domain, exact or by wildcard.
// `*.x` grants every name strictly below x (any depth), never x itself;
// lookups walk the labels of the queried domain from most to least specific.
// Keys are lower-case A-labels; the index never normalizes what it is given.
//
// The names are split over up to 256 shards by hash (about 4,096 names per
// shard), each two FlatStringMaps (exact names, wildcard bases); the first
// owner of a name is stored inline in its record, further owners (shared
// domains) in the shard's side table. Lookups allocate nothing: a Match
// points into the index. Shards are held by shared_ptr so that a reload
// that changes a few tenants shares every shard they have no name in with
// the previous policy (without()): the two policies then cost one index
// plus the rebuilt shards, not two indexes.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/engine/flat_table.hpp"

namespace relaygate::policy {

// True when `domain` is plain lower-case LDH ASCII that normalize_domain
// would return unchanged: 1-255 octets, labels of 1-63 of [a-z0-9-] neither
// starting nor ending with '-', and no "xn--" label (A-labels need libidn2's
// round-trip check). False means "ask normalize_domain", not "invalid".
bool is_plain_ldh_domain(std::string_view domain) noexcept;

class DomainIndex {
  public:
    struct Grant {
        std::uint32_t tenant;
        bool shared;              // the grant carries "shared_domain": true
        bool verify_dns = false;  // "verify": "dns": holds only while DNS names the tenant
    };
    // A pattern held by the index: `base`, or `*.base` when `wildcard`.
    // `base` points into the index (valid while the index is unchanged).
    struct Match {
        std::string_view base;
        bool wildcard = false;
        bool verify_dns = false;  // grant_for: the tenant's grant needs a DomainProof
        std::string pattern() const;
        friend bool operator==(const Match&, const Match&) = default;
    };
    // An entry of the index, for the linter to revisit without hashing.
    struct Entry {
        std::uint32_t ref = 0;  // 0: none
        std::uint16_t shard = 0;
        bool wildcard = false;
    };

    DomainIndex() : shards_{std::make_shared<Shard>()}, owned_{true} {}

    // A copy of `old` without the grants of the tenants marked in
    // `removed` (indexed by tenant number): a shard holding none of them
    // is shared with `old`, the others are rebuilt in their order. Later
    // insertions copy a shared shard before changing it.
    static DomainIndex without(const DomainIndex& old, const std::vector<bool>& removed);
    // How many shards this index shares with `other` (the same objects).
    std::size_t shards_shared_with(const DomainIndex& other) const;
    std::size_t shard_count() const { return shards_.size(); }
    // The shard that holds `pattern` ("name" or "*.name").
    std::size_t shard_of(std::string_view pattern) const {
        if (pattern.starts_with("*.")) pattern.remove_prefix(2);
        return shard_number(hash_bytes(pattern));
    }

    // `pattern` is "name" or "*.name". Returns false if this tenant already
    // holds the same pattern.
    bool add(std::string_view pattern, Grant grant) { return insert(pattern, grant).second; }
    // As add(), also returning the entry holding the pattern.
    std::pair<Entry, bool> insert(std::string_view pattern, Grant grant);
    // Sizes an empty index for about this many names (and picks its
    // number of shards).
    void reserve(std::size_t exact, std::size_t wildcard, std::size_t key_bytes = 0);
    // After the last insertion: the shards this index made move into one
    // mapping of huge pages, exactly as large as they are (so that the
    // random probes of lookups rarely miss the TLB, see TableRegion), or
    // when they are too few for a huge page, give back what reserve() and
    // growth left unused.
    void compact();
    // Starts loading the slot insert(pattern, ...) will probe (bulk loading).
    void prefetch_insert(std::string_view pattern) const noexcept {
        bool wildcard = pattern.starts_with("*.");
        if (wildcard) pattern.remove_prefix(2);
        std::uint64_t h = hash_bytes(pattern);
        const Shard& s = shard(h);
        (wildcard ? s.wildcard : s.exact).prefetch(h);
    }
    std::size_t exact_count() const;
    std::size_t wildcard_count() const;

    // Starts loading what grant_for(domain, ...) reads first (the slots of
    // the name and of up to 8 parents), so that those cache misses overlap
    // the caller's identity lookup. A hint only.
    void prefetch(std::string_view domain) const noexcept;

    // The most specific pattern granting `domain` to `tenant`.
    std::optional<Match> grant_for(std::string_view domain, std::uint32_t tenant) const;

    // f(Match, grant) for every grant covering `domain`, most specific first.
    template <class F>
    void for_each_grant(std::string_view domain, F&& f) const {
        if (domain.empty()) return;
        std::uint64_t h = hash_bytes(domain);
        const Shard& s = shard(h);
        if (auto r = s.exact.find(domain, h); r != Map::npos)
            s.each(s.exact.value(r), [&](const Grant& g) { f(Match{s.exact.key(r), false}, g); });
        for_each_wildcard_parent(domain, f);
    }
    // f(Match, grant) for every grant covering some name strictly below
    // the given pattern's own coverage from a *different* entry: used by the
    // linter to find overlaps between tenants. Includes the grants of the
    // pattern's own entry.
    template <class F>
    void for_each_covering(std::string_view pattern, F&& f) const {
        bool wildcard = pattern.starts_with("*.");
        std::string_view base = wildcard ? pattern.substr(2) : pattern;
        std::uint64_t h = hash_bytes(base);
        const Shard& s = shard(h);
        const Map& same = wildcard ? s.wildcard : s.exact;
        if (auto r = same.find(base, h); r != Map::npos)
            s.each(same.value(r), [&](const Grant& g) { f(Match{same.key(r), wildcard}, g); });
        for_each_wildcard_parent(base, f);
    }
    // The same, starting from an entry returned by insert().
    template <class F>
    void for_each_covering(Entry e, F&& f) const {
        const Shard& s = *shards_[e.shard];
        const Map& same = e.wildcard ? s.wildcard : s.exact;
        std::string_view base = same.key(e.ref);
        s.each(same.value(e.ref), [&](const Grant& g) { f(Match{base, e.wildcard}, g); });
        for_each_wildcard_parent(base, f);
    }
    Match pattern_of(Entry e) const {
        const Shard& s = *shards_[e.shard];
        return {(e.wildcard ? s.wildcard : s.exact).key(e.ref), e.wildcard};
    }
    // f(Match, grant) for every grant of the index, shard by shard.
    template <class F>
    void for_each(F&& f) const {
        for (const auto& s : shards_)
            for (const Map* m : {&s->exact, &s->wildcard})
                m->for_each([&](Map::Ref r) {
                    s->each(m->value(r), [&](const Grant& g) {
                        f(Match{m->key(r), m == &s->wildcard}, g);
                    });
                });
    }

  private:
    // The record value: the first owner inline, further owners in the
    // shard's side table (Shard::more).
    struct Owners {
        std::uint32_t first;  // tenant number; bit 31: shared, bit 30: verify_dns
        std::uint32_t more;   // 1 + index into Shard::more, or 0
    };
    using Map = FlatStringMap<Owners>;
    static constexpr std::uint32_t kShared = 0x8000'0000U;
    static constexpr std::uint32_t kVerifyDns = 0x4000'0000U;
    static constexpr std::uint32_t kTenant = 0x3fff'ffffU;
    static Grant first_grant(Owners o) {
        return Grant{o.first & kTenant, (o.first & kShared) != 0, (o.first & kVerifyDns) != 0};
    }

    struct Shard {
        Map exact;
        Map wildcard;  // key: x for the pattern *.x
        std::vector<std::vector<Grant>> more;

        template <class F>
        void each(Owners o, F&& f) const {
            f(first_grant(o));
            if (o.more != 0)
                for (const auto& g : more[o.more - 1])
                    f(g);
        }
        // The tenant's grant among the owners, if any.
        const Grant* holds(Owners o, std::uint32_t tenant, Grant& scratch) const;
        // Adds the grant to the pattern's owners; false if the tenant is
        // one of them already.
        std::pair<Map::Ref, bool> add(Map& map, std::string_view base, Grant grant);
    };
    // Shard of a name: bits 24-31 of its hash (FlatStringMap uses the low
    // bits for the slot and the high 32 for the tag).
    std::size_t shard_number(std::uint64_t h) const { return (h >> 24) & (shards_.size() - 1); }
    const Shard& shard(std::uint64_t h) const { return *shards_[shard_number(h)]; }
    // The shard, copied first if it is shared with another index.
    Shard& mutable_shard(std::size_t i);

    // f(Match, grant) for the wildcard grants of each proper parent of
    // `name` ("a.b.c" -> "b.c", "c"), most specific first.
    template <class F>
    void for_each_wildcard_parent(std::string_view name, F& f) const {
        if (!wildcards_) return;
        for (std::size_t dot = name.find('.'); dot != std::string_view::npos;
             dot = name.find('.', dot + 1)) {
            std::string_view parent = name.substr(dot + 1);
            std::uint64_t h = hash_bytes(parent);
            const Shard& s = shard(h);
            if (auto r = s.wildcard.find(parent, h); r != Map::npos)
                s.each(s.wildcard.value(r), [&](const Grant& g) {
                    f(Match{s.wildcard.key(r), true}, g);
                });
        }
    }

    std::vector<std::shared_ptr<Shard>> shards_;  // a power of two of them
    std::vector<bool> owned_;                     // shards_[i] was made by this index
    bool wildcards_ = false;                      // some wildcard was inserted
};

}  // namespace relaygate::policy
