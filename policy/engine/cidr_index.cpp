// CidrIndex building and the longest-prefix probe.
#include "policy/engine/cidr_index.hpp"

#include <algorithm>
#include <functional>

namespace relaygate::policy {
namespace {

std::size_t table_size_for(std::size_t entries) {
    std::size_t n = 16;
    while (n < entries * 2)
        n *= 2;
    return n;
}

}  // namespace

std::uint32_t CidrIndex::key4(const IpAddress& ip) {
    const auto& b = ip.bytes();
    return std::uint32_t(b[0]) << 24 | std::uint32_t(b[1]) << 16 | std::uint32_t(b[2]) << 8 | b[3];
}

CidrIndex::Key6 CidrIndex::key6(const IpAddress& ip) {
    Key6 k;
    const auto& b = ip.bytes();
    for (int i = 0; i < 8; ++i)
        k.hi = (k.hi << 8) | b[i];
    for (int i = 8; i < 16; ++i)
        k.lo = (k.lo << 8) | b[i];
    return k;
}

namespace {

// splitmix64-style finalizer: masked prefixes share low bits, so the
// identity hash would cluster.
std::size_t mix(std::uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return static_cast<std::size_t>(x);
}

}  // namespace

std::size_t CidrIndex::hash(std::uint32_t k, unsigned len) {
    return mix((std::uint64_t(k) << 32) * 0x9e3779b97f4a7c15ULL ^ (std::uint64_t(len) << 56));
}

std::size_t CidrIndex::hash(const Key6& k, unsigned len) {
    return mix((k.hi * 0x9e3779b97f4a7c15ULL) ^ k.lo ^ (std::uint64_t(len) << 56));
}

template <class K>
auto CidrIndex::Family<K>::find(const K& k, unsigned len) const -> const Entry* {
    std::size_t mask = table.size() - 1;
    for (std::size_t i = hash(k, len) & mask;; i = (i + 1) & mask) {
        const Entry& e = table[i];
        if (e.len_plus_one == 0) return nullptr;
        if (e.len_plus_one == len + 1 && e.key == k) return &e;
    }
}

template <class K>
auto CidrIndex::Family<K>::slot_for(const K& k, unsigned len) -> Entry& {
    std::size_t mask = table.size() - 1;
    for (std::size_t i = hash(k, len) & mask;; i = (i + 1) & mask) {
        Entry& e = table[i];
        if (e.len_plus_one == 0 || (e.len_plus_one == len + 1 && e.key == k)) return e;
    }
}

template <class K>
void CidrIndex::Family<K>::rehash(std::size_t n) {
    std::vector<Entry, HugePageAllocator<Entry>> old(n);
    old.swap(table);
    for (const Entry& e : old)
        if (e.len_plus_one != 0) slot_for(e.key, e.len_plus_one - 1) = e;
}

template <class K>
std::uint32_t CidrIndex::Family<K>::insert(const K& k, unsigned len, std::uint32_t slot) {
    if (table_size_for(size + 1) > table.size()) rehash(table_size_for(size + 1));
    Entry& e = slot_for(k, len);
    if (e.len_plus_one != 0) return e.slot;
    e = {k, slot, len + 1};
    ++size;
    if (std::find(lengths.begin(), lengths.end(), len) == lengths.end()) {
        lengths.push_back(len);
        std::sort(lengths.begin(), lengths.end(), std::greater<>());
    }
    return slot;
}

template <class K>
bool CidrIndex::Family<K>::assign(const K& k, unsigned len, std::uint32_t slot) {
    if (size == 0) return false;
    Entry& e = slot_for(k, len);
    if (e.len_plus_one == 0) return false;
    e.slot = slot;
    return true;
}

void CidrIndex::reserve(std::size_t v4, std::size_t v6) {
    if (table_size_for(v4) > v4_.table.size()) v4_.rehash(table_size_for(v4));
    if (table_size_for(v6) > v6_.table.size()) v6_.rehash(table_size_for(v6));
}

std::uint32_t CidrIndex::insert(const Cidr& cidr, std::uint32_t slot) {
    const auto& a = cidr.address;
    return a.is_v4() ? v4_.insert(key4(a), cidr.prefix_len, slot)
                     : v6_.insert(key6(a), cidr.prefix_len, slot);
}

bool CidrIndex::assign(const Cidr& cidr, std::uint32_t slot) {
    const auto& a = cidr.address;
    return a.is_v4() ? v4_.assign(key4(a), cidr.prefix_len, slot)
                     : v6_.assign(key6(a), cidr.prefix_len, slot);
}

template <class Fam, class K>
std::optional<CidrIndex::Match> CidrIndex::first_match(const Fam& fam, K k, const IpAddress& ip) {
    for (unsigned len : fam.lengths)
        if (const auto* e = fam.find(masked(k, len), len))
            return Match{Cidr{ip.masked(len), len}, e->slot};
    return std::nullopt;
}

std::optional<CidrIndex::Match> CidrIndex::longest_match(const IpAddress& ip) const {
    return ip.is_v4() ? first_match(v4_, key4(ip), ip) : first_match(v6_, key6(ip), ip);
}

// for_each_match, in the header, finds in both.
template struct CidrIndex::Family<std::uint32_t>;
template struct CidrIndex::Family<CidrIndex::Key6>;

}  // namespace relaygate::policy
