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

CidrIndex::Key CidrIndex::key_of(const IpAddress& ip) {
    Key k;
    const auto& b = ip.bytes();
    for (int i = 0; i < 8; ++i)
        k.hi = (k.hi << 8) | b[i];
    for (int i = 8; i < 16; ++i)
        k.lo = (k.lo << 8) | b[i];
    return k;
}

std::size_t CidrIndex::hash(const Key& k, unsigned len) {
    // splitmix64-style finalizer: masked prefixes share low bits, so the
    // identity hash would cluster.
    std::uint64_t x = (k.hi * 0x9e3779b97f4a7c15ULL) ^ k.lo ^ (std::uint64_t(len) << 56);
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return static_cast<std::size_t>(x);
}

const CidrIndex::Entry* CidrIndex::Family::find(const Key& k, unsigned len) const {
    std::size_t mask = table.size() - 1;
    for (std::size_t i = hash(k, len) & mask;; i = (i + 1) & mask) {
        const Entry& e = table[i];
        if (e.len_plus_one == 0) return nullptr;
        if (e.len_plus_one == len + 1 && e.key == k) return &e;
    }
}

CidrIndex::Entry& CidrIndex::Family::slot_for(const Key& k, unsigned len) {
    std::size_t mask = table.size() - 1;
    for (std::size_t i = hash(k, len) & mask;; i = (i + 1) & mask) {
        Entry& e = table[i];
        if (e.len_plus_one == 0 || (e.len_plus_one == len + 1 && e.key == k)) return e;
    }
}

void CidrIndex::Family::rehash(std::size_t n) {
    std::vector<Entry, HugePageAllocator<Entry>> old(n);
    old.swap(table);
    for (const Entry& e : old)
        if (e.len_plus_one != 0) slot_for(e.key, e.len_plus_one - 1) = e;
}

void CidrIndex::reserve(std::size_t v4, std::size_t v6) {
    if (table_size_for(v4) > v4_.table.size()) v4_.rehash(table_size_for(v4));
    if (table_size_for(v6) > v6_.table.size()) v6_.rehash(table_size_for(v6));
}

std::uint32_t CidrIndex::insert(const Cidr& cidr, std::uint32_t slot) {
    Family& fam = cidr.address.is_v4() ? v4_ : v6_;
    if (table_size_for(fam.size + 1) > fam.table.size()) fam.rehash(table_size_for(fam.size + 1));
    Key k = key_of(cidr.address);
    Entry& e = fam.slot_for(k, cidr.prefix_len);
    if (e.len_plus_one != 0) return e.slot;
    e = {k, slot, cidr.prefix_len + 1};
    ++fam.size;
    if (std::find(fam.lengths.begin(), fam.lengths.end(), cidr.prefix_len) == fam.lengths.end()) {
        fam.lengths.push_back(cidr.prefix_len);
        std::sort(fam.lengths.begin(), fam.lengths.end(), std::greater<>());
    }
    return slot;
}

bool CidrIndex::assign(const Cidr& cidr, std::uint32_t slot) {
    Family& fam = cidr.address.is_v4() ? v4_ : v6_;
    if (fam.size == 0) return false;
    Entry& e = fam.slot_for(key_of(cidr.address), cidr.prefix_len);
    if (e.len_plus_one == 0) return false;
    e.slot = slot;
    return true;
}

std::optional<CidrIndex::Match> CidrIndex::longest_match(const IpAddress& ip) const {
    const Family& fam = family(ip);
    if (fam.size == 0) return std::nullopt;
    Key k = key_of(ip);
    for (unsigned len : fam.lengths)
        if (const Entry* e = fam.find(masked(k, len), len))
            return Match{Cidr{ip.masked(len), len}, e->slot};
    return std::nullopt;
}

}  // namespace relaygate::policy
