// DomainIndex: two hash maps (exact names, wildcard bases) and a label walk.
#include "policy/engine/domain_index.hpp"

namespace relaygate::policy {
namespace {

// Yields the proper parent suffixes of `domain`: "a.b.c" -> "b.c", "c".
template <class F>
void for_each_parent(std::string_view domain, F&& f) {
    for (std::size_t dot = domain.find('.'); dot != std::string_view::npos;
         dot = domain.find('.', dot + 1)) {
        if (!f(domain.substr(dot + 1))) return;
    }
}

}  // namespace

bool DomainIndex::add(std::string_view pattern, Grant grant) {
    Map* map = &exact_;
    if (pattern.starts_with("*.")) {
        map = &wildcard_;
        pattern.remove_prefix(2);
    }
    auto it = map->find(pattern);
    if (it == map->end()) {
        map->emplace(std::string(pattern), GrantList{grant, {}});
        return true;
    }
    bool present = false;
    it->second.each([&](const Grant& g) { present = present || g.tenant == grant.tenant; });
    if (present) return false;
    it->second.more.push_back(grant);
    return true;
}

std::optional<std::string> DomainIndex::grant_for(std::string_view domain,
                                                  std::uint32_t tenant) const {
    auto holds = [tenant](const GrantList& list) {
        bool found = false;
        list.each([&](const Grant& g) { found = found || g.tenant == tenant; });
        return found;
    };
    if (domain.empty()) return std::nullopt;
    if (auto it = exact_.find(domain); it != exact_.end() && holds(it->second))
        return std::string(domain);
    std::optional<std::string> out;
    for_each_parent(domain, [&](std::string_view parent) {
        auto it = wildcard_.find(parent);
        if (it != wildcard_.end() && holds(it->second)) {
            out = "*." + std::string(parent);
            return false;
        }
        return true;
    });
    return out;
}

void DomainIndex::for_each_grant(
    std::string_view domain, const std::function<void(std::string_view, const Grant&)>& f) const {
    if (domain.empty()) return;
    if (auto it = exact_.find(domain); it != exact_.end())
        it->second.each([&](const Grant& g) { f(domain, g); });
    for_each_parent(domain, [&](std::string_view parent) {
        if (auto it = wildcard_.find(parent); it != wildcard_.end()) {
            std::string pattern = "*." + std::string(parent);
            it->second.each([&](const Grant& g) { f(pattern, g); });
        }
        return true;
    });
}

void DomainIndex::for_each_covering(
    std::string_view pattern, const std::function<void(std::string_view, const Grant&)>& f) const {
    // An exact name x is also covered by wildcards of its parents; *.x is
    // covered by the same wildcard entry and by wildcards of x's parents.
    // Coverage the other way round (a wildcard covering someone's exact
    // name) is found when that exact name is visited.
    bool wildcard = pattern.starts_with("*.");
    std::string_view base = wildcard ? pattern.substr(2) : pattern;
    const Map& same = wildcard ? wildcard_ : exact_;
    if (auto it = same.find(base); it != same.end())
        it->second.each([&](const Grant& g) { f(pattern, g); });
    for_each_parent(base, [&](std::string_view parent) {
        if (auto it = wildcard_.find(parent); it != wildcard_.end()) {
            std::string covering = "*." + std::string(parent);
            it->second.each([&](const Grant& g) { f(covering, g); });
        }
        return true;
    });
}

}  // namespace relaygate::policy
