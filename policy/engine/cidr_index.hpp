// CidrIndex: longest-prefix match from an address to a slot number, for IPv4
// and IPv6. One hash table per prefix length present, probed from the
// longest length down, so a lookup costs at most one probe per distinct
// length in use (real policies use a handful). Immutable after building.
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "policy/engine/ip_address.hpp"

namespace relaygate::policy {

class CidrIndex {
public:
    // Maps `cidr` to `slot`, or returns the slot already stored for it.
    std::uint32_t insert(const Cidr& cidr, std::uint32_t slot);

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
        for (unsigned len : fam.lengths) {
            auto hit = fam.by_length[len].find(key_of(ip.masked(len)));
            if (hit != fam.by_length[len].end()) f(Match{Cidr{ip.masked(len), len}, hit->second});
        }
    }

    std::size_t size() const { return size_; }

private:
    struct Key {
        std::uint64_t hi = 0, lo = 0;
        friend bool operator==(const Key&, const Key&) = default;
    };
    struct KeyHash {
        std::size_t operator()(const Key& k) const noexcept {
            // splitmix64-style finalizer: masked prefixes share low bits, so
            // the identity hash would cluster.
            std::uint64_t x = k.hi * 0x9e3779b97f4a7c15ULL ^ k.lo;
            x ^= x >> 30;
            x *= 0xbf58476d1ce4e5b9ULL;
            x ^= x >> 27;
            x *= 0x94d049bb133111ebULL;
            x ^= x >> 31;
            return static_cast<std::size_t>(x);
        }
    };
    struct Family {
        std::vector<std::unordered_map<Key, std::uint32_t, KeyHash>> by_length;
        std::vector<unsigned> lengths;  // present lengths, longest first
    };

    static Key key_of(const IpAddress& ip);
    const Family& family(const IpAddress& ip) const { return ip.is_v4() ? v4_ : v6_; }

    Family v4_{std::vector<std::unordered_map<Key, std::uint32_t, KeyHash>>(33), {}};
    Family v6_{std::vector<std::unordered_map<Key, std::uint32_t, KeyHash>>(129), {}};
    std::size_t size_ = 0;
};

}  // namespace relaygate::policy
