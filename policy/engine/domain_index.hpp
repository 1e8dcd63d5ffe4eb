// DomainIndex: which tenants are granted a domain, exact or by wildcard.
// `*.x` grants every name strictly below x (any depth), never x itself;
// lookups walk the labels of the queried domain from most to least specific.
// Keys are lower-case A-labels; the index never normalizes what it is given.
//
// Two FlatStringMaps (exact names, wildcard bases); the first owner of a
// name is stored inline in its record, further owners (shared domains) in a
// side table. Lookups allocate nothing: a Match points into the index.
#pragma once

#include <cstdint>
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
        bool wildcard = false;
    };

    // `pattern` is "name" or "*.name". Returns false if this tenant already
    // holds the same pattern.
    bool add(std::string_view pattern, Grant grant) { return insert(pattern, grant).second; }
    // As add(), also returning the entry holding the pattern.
    std::pair<Entry, bool> insert(std::string_view pattern, Grant grant);
    void reserve(std::size_t exact, std::size_t wildcard, std::size_t key_bytes = 0) {
        exact_.reserve(exact, key_bytes);
        wildcard_.reserve(wildcard);
    }
    // Starts loading the slot insert(pattern, ...) will probe (bulk loading).
    void prefetch_insert(std::string_view pattern) const noexcept {
        if (pattern.starts_with("*.")) {
            wildcard_.prefetch(pattern.substr(2));
        } else {
            exact_.prefetch(pattern);
        }
    }
    std::size_t exact_count() const { return exact_.size(); }
    std::size_t wildcard_count() const { return wildcard_.size(); }

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
        if (auto r = exact_.find(domain); r != Map::npos)
            each(exact_.value(r), [&](const Grant& g) { f(Match{exact_.key(r), false}, g); });
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
        const Map& same = wildcard ? wildcard_ : exact_;
        if (auto r = same.find(base); r != Map::npos)
            each(same.value(r), [&](const Grant& g) { f(Match{same.key(r), wildcard}, g); });
        for_each_wildcard_parent(base, f);
    }
    // The same, starting from an entry returned by insert().
    template <class F>
    void for_each_covering(Entry e, F&& f) const {
        const Map& same = e.wildcard ? wildcard_ : exact_;
        std::string_view base = same.key(e.ref);
        each(same.value(e.ref), [&](const Grant& g) { f(Match{base, e.wildcard}, g); });
        for_each_wildcard_parent(base, f);
    }
    Match pattern_of(Entry e) const {
        return {(e.wildcard ? wildcard_ : exact_).key(e.ref), e.wildcard};
    }

  private:
    // The record value: the first owner inline, further owners in more_.
    struct Owners {
        std::uint32_t first;  // tenant number; bit 31: shared, bit 30: verify_dns
        std::uint32_t more;   // 1 + index into more_, or 0
    };
    using Map = FlatStringMap<Owners>;
    static constexpr std::uint32_t kShared = 0x8000'0000U;
    static constexpr std::uint32_t kVerifyDns = 0x4000'0000U;
    static constexpr std::uint32_t kTenant = 0x3fff'ffffU;
    static Grant first_grant(Owners o) {
        return Grant{o.first & kTenant, (o.first & kShared) != 0, (o.first & kVerifyDns) != 0};
    }

    template <class F>
    void each(Owners o, F&& f) const {
        f(first_grant(o));
        if (o.more != 0)
            for (const auto& g : more_[o.more - 1])
                f(g);
    }
    // The tenant's grant among the owners, if any.
    const Grant* holds(Owners o, std::uint32_t tenant, Grant& scratch) const;

    // f(Match, grant) for the wildcard grants of each proper parent of
    // `name` ("a.b.c" -> "b.c", "c"), most specific first.
    template <class F>
    void for_each_wildcard_parent(std::string_view name, F& f) const {
        if (wildcard_.empty()) return;
        for (std::size_t dot = name.find('.'); dot != std::string_view::npos;
             dot = name.find('.', dot + 1)) {
            std::string_view parent = name.substr(dot + 1);
            if (auto r = wildcard_.find(parent); r != Map::npos)
                each(wildcard_.value(r), [&](const Grant& g) {
                    f(Match{wildcard_.key(r), true}, g);
                });
        }
    }

    Map exact_;
    Map wildcard_;  // key: x for the pattern *.x
    std::vector<std::vector<Grant>> more_;
};

}  // namespace relaygate::policy
