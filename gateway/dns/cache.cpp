// Cache implementation: a list in recency order plus a hash index. Keys are
// the normalized name and the type, so lookups are case-insensitive
// (RFC 4343) and a trailing dot does not matter.
#include "gateway/dns/cache.hpp"

#include <algorithm>
#include <cmath>

namespace relaygate::dns {
namespace {

std::string make_key(std::string_view name, RrType type) {
    std::string key = normalize_name(name);
    key += '\0';
    key += std::to_string(static_cast<unsigned>(type));
    return key;
}

}  // namespace

Cache::Cache(std::size_t max_entries, std::uint32_t max_ttl, std::uint32_t max_negative_ttl)
    : max_entries_(max_entries), max_ttl_(max_ttl), max_negative_ttl_(max_negative_ttl) {}

const Answer* Cache::find(std::string_view name, RrType type, double now) {
    if (max_entries_ == 0) return nullptr;
    const auto it = map_.find(make_key(name, type));
    if (it == map_.end()) return nullptr;
    Entry& e = *it->second;
    if (now >= e.expires) {
        lru_.erase(it->second);
        map_.erase(it);
        return nullptr;
    }
    lru_.splice(lru_.begin(), lru_, it->second);
    e.answer.ttl = static_cast<std::uint32_t>(std::ceil(e.expires - now));
    return &e.answer;
}

void Cache::insert(std::string_view name, RrType type, const Answer& a, double now) {
    if (max_entries_ == 0 || a.follow) return;
    std::uint32_t ttl = 0;
    if (a.status == Status::ok && !a.records.empty())
        ttl = std::min(a.ttl, max_ttl_);
    else if (a.status == Status::nxdomain || a.status == Status::nodata)
        ttl = std::min(a.ttl, max_negative_ttl_);
    if (ttl == 0) return;

    std::string key = make_key(name, type);
    if (auto it = map_.find(key); it != map_.end()) {
        lru_.erase(it->second);
        map_.erase(it);
    }
    while (map_.size() >= max_entries_) {
        map_.erase(lru_.back().key);
        lru_.pop_back();
    }
    lru_.push_front(Entry{key, a, now + ttl});
    lru_.front().answer.ttl = ttl;
    map_.emplace(std::move(key), lru_.begin());
}

}  // namespace relaygate::dns
