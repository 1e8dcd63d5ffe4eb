// CidrIndex: longest-prefix match from an address to a slot number, for IPv4
// and IPv6. One open-addressing table per family keyed by (masked address,
// prefix length), probed once per prefix length present, longest first, so a
// lookup costs at most one probe (one cache line, nearly always) per
// distinct length in use (real policies use a handful). Immutable after
// building.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "policy/engine/ip_address.hpp"
#include "policy/engine/table_memory.hpp"

namespace relaygate::policy {

class CidrIndex {
  public:
    // Maps `cidr` to `slot`, or returns the slot already stored for it.
    std::uint32_t insert(const Cidr& cidr, std::uint32_t slot);
    // Replaces the slot of a network already inserted; false if absent.
    bool assign(const Cidr& cidr, std::uint32_t slot);
    void reserve(std::size_t v4, std::size_t v6);

    struct Match {
        Cidr cidr;
        std::uint32_t slot;
    };
    // The most specific network containing `ip`.
    std::optional<Match> longest_match(const IpAddress& ip) const;

    // Every network containing `ip`, most specific first.
    template <class F>
    void for_each_match(const IpAddress& ip, F&& f) const {
        const Family& fam = family(ip);
        if (fam.size == 0) return;
        Key k = key_of(ip);
        for (unsigned len : fam.lengths)
            if (const Entry* e = fam.find(masked(k, len), len))
                f(Match{Cidr{ip.masked(len), len}, e->slot});
    }

    std::size_t size() const { return v4_.size + v6_.size; }

  private:
    struct Key {
        std::uint64_t hi = 0, lo = 0;
        friend bool operator==(const Key&, const Key&) = default;
    };
    struct Entry {
        Key key;
        std::uint32_t slot = 0;
        std::uint32_t len_plus_one = 0;  // 0: empty
    };
    struct Family {
        std::vector<Entry, HugePageAllocator<Entry>> table;  // power of two, load <= 1/2
        std::vector<unsigned> lengths;                       // present lengths, longest first
        std::size_t size = 0;

        const Entry* find(const Key& k, unsigned len) const;
        void rehash(std::size_t n);
        Entry& slot_for(const Key& k, unsigned len);  // the entry or the empty slot for it
    };

    static Key key_of(const IpAddress& ip);
    // key_of(ip.masked(len)), from key_of(ip).
    static Key masked(Key k, unsigned len) {
        if (len == 0) return {};
        if (len < 64) return {k.hi & (~std::uint64_t(0) << (64 - len)), 0};
        if (len == 64) return {k.hi, 0};
        if (len < 128) return {k.hi, k.lo & (~std::uint64_t(0) << (128 - len))};
        return k;
    }
    static std::size_t hash(const Key& k, unsigned len);
    const Family& family(const IpAddress& ip) const { return ip.is_v4() ? v4_ : v6_; }

    Family v4_;
    Family v6_;
};

}  // namespace relaygate::policy
