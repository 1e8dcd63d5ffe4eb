// DomainIndex: two flat hash maps (exact names, wildcard bases) and a label
// walk.
#include "policy/engine/domain_index.hpp"

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

const DomainIndex::Grant* DomainIndex::holds(Owners o, std::uint32_t tenant, Grant& scratch) const {
    if ((o.first & kTenant) == tenant) {
        scratch = first_grant(o);
        return &scratch;
    }
    if (o.more != 0)
        for (const auto& g : more_[o.more - 1])
            if (g.tenant == tenant) return &g;
    return nullptr;
}

std::pair<DomainIndex::Entry, bool> DomainIndex::insert(std::string_view pattern, Grant grant) {
    Map* map = &exact_;
    bool wildcard = pattern.starts_with("*.");
    if (wildcard) {
        map = &wildcard_;
        pattern.remove_prefix(2);
    }
    // Tenant numbers stay below 2^30 (bits 30 and 31 are flags): a policy
    // that large could not be held in memory anyway.
    Owners fresh{grant.tenant | (grant.shared ? kShared : 0) | (grant.verify_dns ? kVerifyDns : 0),
                 0};
    auto [ref, inserted] = map->try_emplace(pattern, fresh);
    Entry e{ref, wildcard};
    if (inserted) return {e, true};
    Owners o = map->value(ref);
    Grant scratch{};
    if (holds(o, grant.tenant, scratch)) return {e, false};
    if (o.more == 0) {
        more_.emplace_back();
        o.more = static_cast<std::uint32_t>(more_.size());
        map->set_value(ref, o);
    }
    more_[o.more - 1].push_back(grant);
    return {e, true};
}

void DomainIndex::prefetch(std::string_view domain) const noexcept {
    if (domain.empty()) return;
    exact_.prefetch(domain);
    if (wildcard_.empty()) return;
    int parents = 0;
    for (std::size_t dot = domain.find('.'); dot != std::string_view::npos && parents < 8;
         dot = domain.find('.', dot + 1), ++parents)
        wildcard_.prefetch(domain.substr(dot + 1));
}

std::optional<DomainIndex::Match> DomainIndex::grant_for(std::string_view domain,
                                                         std::uint32_t tenant) const {
    if (domain.empty()) return std::nullopt;
    Grant scratch{};
    if (auto r = exact_.find(domain); r != Map::npos)
        if (const Grant* g = holds(exact_.value(r), tenant, scratch))
            return Match{exact_.key(r), false, g->verify_dns};
    if (wildcard_.empty()) return std::nullopt;
    for (std::size_t dot = domain.find('.'); dot != std::string_view::npos;
         dot = domain.find('.', dot + 1)) {
        std::string_view parent = domain.substr(dot + 1);
        if (auto r = wildcard_.find(parent); r != Map::npos)
            if (const Grant* g = holds(wildcard_.value(r), tenant, scratch))
                return Match{wildcard_.key(r), true, g->verify_dns};
    }
    return std::nullopt;
}

}  // namespace relaygate::policy
