// Cache: DNS answers by (name, type), bounded, with LRU eviction. Honours
// TTLs (capped), caches negative answers (RFC 2308) and never caches
// failures. Sans-I/O and clock-free: the caller passes a monotonic `now` in
// seconds. Not thread-safe; the resolver serializes access.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

#include "gateway/dns/packet.hpp"

namespace relaygate::dns {

class Cache {
  public:
    // max_entries 0 disables the cache. RFC 2308 5 suggests capping negative
    // TTLs at one to three hours; 15 minutes keeps a fixed record visible.
    explicit Cache(std::size_t max_entries, std::uint32_t max_ttl = 86400,
                   std::uint32_t max_negative_ttl = 900);

    // The live answer for (name, type), its ttl set to the seconds left;
    // nullptr when absent or expired. The pointer is valid until the next
    // call on this cache.
    const Answer* find(std::string_view name, RrType type, double now);
    // Stores ok (records) and nxdomain/nodata answers with a TTL above 0;
    // anything else (servfail, error, timeout, follow) is ignored.
    void insert(std::string_view name, RrType type, const Answer& a, double now);
    std::size_t size() const { return map_.size(); }

  private:
    struct Entry {
        std::string key;
        Answer answer;
        double expires = 0;
    };
    using List = std::list<Entry>;

    std::size_t max_entries_;
    std::uint32_t max_ttl_;
    std::uint32_t max_negative_ttl_;
    List lru_;  // most recently used first
    std::unordered_map<std::string, List::iterator> map_;
};

}  // namespace relaygate::dns
