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
        if (ip.is_v4())
            each_match(v4_, key4(ip), ip, f);
        else
            each_match(v6_, key6(ip), ip, f);
    }

    std::size_t size() const { return v4_.size + v6_.size; }

  private:
    // IPv4 keys are the address in host order, so an IPv4 entry takes 12
    // octets, not 24 (100k tenants' /24s: 3 MB less per loaded policy).
    struct Key6 {
        std::uint64_t hi = 0, lo = 0;
        friend bool operator==(const Key6&, const Key6&) = default;
    };
    template <class K>
    struct Family {
        struct Entry {
            K key;
            std::uint32_t slot = 0;
            std::uint32_t len_plus_one = 0;  // 0: empty
        };
        std::vector<Entry, HugePageAllocator<Entry>> table;  // power of two, load <= 1/2
        std::vector<unsigned> lengths;                       // present lengths, longest first
        std::size_t size = 0;

        const Entry* find(const K& k, unsigned len) const;
        void rehash(std::size_t n);
        Entry& slot_for(const K& k, unsigned len);  // the entry or the empty slot for it
        std::uint32_t insert(const K& k, unsigned len, std::uint32_t slot);
        bool assign(const K& k, unsigned len, std::uint32_t slot);
    };

    static std::uint32_t key4(const IpAddress& ip);
    static Key6 key6(const IpAddress& ip);
    // The key of ip.masked(len), from the key of ip.
    static std::uint32_t masked(std::uint32_t k, unsigned len) {
        return len == 0 ? 0 : len < 32 ? k & (~std::uint32_t(0) << (32 - len)) : k;
    }
    static Key6 masked(Key6 k, unsigned len) {
        if (len == 0) return {};
        if (len < 64) return {k.hi & (~std::uint64_t(0) << (64 - len)), 0};
        if (len == 64) return {k.hi, 0};
        if (len < 128) return {k.hi, k.lo & (~std::uint64_t(0) << (128 - len))};
        return k;
    }
    static std::size_t hash(std::uint32_t k, unsigned len);
    static std::size_t hash(const Key6& k, unsigned len);

    template <class Fam, class K, class F>
    static void each_match(const Fam& fam, K k, const IpAddress& ip, F& f) {
        for (unsigned len : fam.lengths)
            if (const auto* e = fam.find(masked(k, len), len))
                f(Match{Cidr{ip.masked(len), len}, e->slot});
    }

    template <class Fam, class K>
    static std::optional<Match> first_match(const Fam& fam, K k, const IpAddress& ip);

    Family<std::uint32_t> v4_;
    Family<Key6> v6_;
};

}  // namespace relaygate::policy
