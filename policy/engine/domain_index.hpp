// DomainIndex: which tenants are granted a domain, exact or by wildcard.
// `*.x` grants every name strictly below x (any depth), never x itself;
// lookups walk the labels of the queried domain from most to least specific.
// Keys are lower-case A-labels; the index never normalizes what it is given.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace relaygate::policy {

class DomainIndex {
public:
    struct Grant {
        std::uint32_t tenant;
        bool shared;  // the grant carries "shared_domain": true
    };

    // `pattern` is "name" or "*.name". Returns false if this tenant already
    // holds the same pattern.
    bool add(std::string_view pattern, Grant grant);
    void reserve(std::size_t n) { exact_.reserve(n); }

    // The most specific pattern granting `domain` to `tenant`.
    std::optional<std::string> grant_for(std::string_view domain, std::uint32_t tenant) const;

    // f(pattern, grant) for every grant covering `domain`, most specific first.
    void for_each_grant(std::string_view domain,
                        const std::function<void(std::string_view, const Grant&)>& f) const;
    // f(pattern, grant) for every grant covering some name strictly below
    // the given pattern's own coverage from a *different* entry: used by the
    // linter to find overlaps between tenants.
    void for_each_covering(std::string_view pattern,
                           const std::function<void(std::string_view, const Grant&)>& f) const;

private:
    struct GrantList {
        Grant first;
        std::vector<Grant> more;  // empty (no allocation) for the usual single owner
        template <class F>
        void each(F&& f) const {
            f(first);
            for (const auto& g : more) f(g);
        }
    };
    struct StringHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    using Map = std::unordered_map<std::string, GrantList, StringHash, std::equal_to<>>;

    Map exact_;
    Map wildcard_;  // key: x for the pattern *.x
};

}  // namespace relaygate::policy
