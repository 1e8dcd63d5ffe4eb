// FlatStringMap: an open-addressing hash map from strings to small, trivially
// copyable values, for the policy's large, build-once-then-read indexes.
//
// Layout, chosen for cache misses rather than instructions: the slot array
// holds {32-bit hash tag, record handle} (8 bytes, linear probing, load
// factor <= 1/2), and each record {value, key length, key bytes} lives in one
// contiguous arena. A hit costs two cache lines (slot, record) where a
// node-based std::unordered_map costs three or four (bucket, node, heap key);
// a miss is nearly always settled by the slot line alone, because a record is
// only read when the 32-bit tag matches. Keys are always compared in full:
// the tag is a filter, never a proof.
//
// Entries are never erased. Handles (Ref) stay valid across growth, so an
// index may keep them (the linter does); string_views from key() stay valid
// until the next insertion.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "policy/engine/table_memory.hpp"

namespace relaygate::policy {

// 64-bit hash of a byte string: 8-byte words folded by multiplication, then
// a splitmix64 finalizer. Not keyed: the tables hold the policy's own keys,
// which clients cannot choose; client input only probes.
inline std::uint64_t hash_bytes(std::string_view s) noexcept {
    constexpr std::uint64_t k = 0x9e3779b97f4a7c15ULL;
    std::uint64_t h = k ^ (s.size() * 0xff51afd7ed558ccdULL);
    const char* p = s.data();
    std::size_t n = s.size();
    while (n >= 8) {
        std::uint64_t w;
        std::memcpy(&w, p, 8);
        h = (h ^ w) * k;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    if (n > 0) {
        std::uint64_t w = 0;
        std::memcpy(&w, p, n);
        h = (h ^ w) * k;
        h ^= h >> 29;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

struct BytesHash {
    std::uint64_t operator()(std::string_view s) const noexcept { return hash_bytes(s); }
};

// `Hash` is replaceable for tests (e.g. one that collides on purpose).
template <class V, class Hash = BytesHash>
class FlatStringMap {
    static_assert(std::is_trivially_copyable_v<V>, "values are copied as bytes");
    static_assert(alignof(V) <= 16, "arena records are aligned to at most 16 bytes");

  public:
    // Handle of an entry; npos (0) means "absent".
    using Ref = std::uint32_t;
    static constexpr Ref npos = 0;

    // Bytes move_to() takes from a region (alignment included).
    std::size_t table_bytes() const noexcept {
        return slots_.size() * sizeof(Slot) + arena_.size() + alignof(Slot) + kAlign;
    }
    // Moves its slots and records into `region` (or, when it is full, to
    // the heap), exactly as large as they are now: after a bulk load.
    void move_to(const std::shared_ptr<TableRegion>& region) {
        decltype(slots_) slots(slots_.begin(), slots_.end(), TableAllocator<Slot>(region));
        decltype(arena_) arena(arena_.begin(), arena_.end(), TableAllocator<unsigned char>(region));
        slots_ = std::move(slots);
        arena_ = std::move(arena);
    }

    // Room for `entries` keys totalling about `key_bytes` without rehashing.
    void reserve(std::size_t entries, std::size_t key_bytes = 0) {
        std::size_t want = slots_for(entries);
        if (want > slots_.size()) rehash(want);
        arena_.reserve(entries * (kHeader + kAlign) + key_bytes);
    }

    // Gives back the arena's unused capacity (after a bulk load).
    void shrink_to_fit() { arena_.shrink_to_fit(); }

    // Inserts key -> value unless the key is present. Returns the entry and
    // whether it was inserted (false: the existing value is unchanged).
    std::pair<Ref, bool> try_emplace(std::string_view key, const V& value) {
        std::uint64_t h = Hash{}(key);
        if (Ref r = find(key, h); r != npos) return {r, false};
        if (slots_for(size_ + 1) > slots_.size()) rehash(slots_for(size_ + 1));
        Ref r = append(key, value);
        place(h, r);
        ++size_;
        return {r, true};
    }

    Ref find(std::string_view key) const noexcept { return find(key, Hash{}(key)); }
    // `hash` must be Hash{}(key).
    Ref find(std::string_view key, std::uint64_t hash) const noexcept {
        if (slots_.empty()) return npos;
        std::size_t mask = slots_.size() - 1;
        auto tag = static_cast<std::uint32_t>(hash >> 32);
        for (std::size_t i = hash & mask;; i = (i + 1) & mask) {
            const Slot& s = slots_[i];
            if (s.ref == npos) return npos;
            if (s.tag == tag && this->key(s.ref) == key) return s.ref;
        }
    }

    // Starts loading the slot a lookup of a key with this hash reads first,
    // so that the miss overlaps other work.
    void prefetch(std::string_view key) const noexcept { prefetch(Hash{}(key)); }
    void prefetch(std::uint64_t hash) const noexcept {
        if (!slots_.empty()) __builtin_prefetch(&slots_[hash & (slots_.size() - 1)]);
    }

    std::string_view key(Ref r) const noexcept {
        const unsigned char* rec = arena_.data() + offset(r);
        std::uint32_t len;
        std::memcpy(&len, rec + kValueBytes, sizeof len);
        return {reinterpret_cast<const char*>(rec + kHeader), len};
    }
    V value(Ref r) const noexcept {
        V v;
        std::memcpy(static_cast<void*>(&v), arena_.data() + offset(r), sizeof(V));
        return v;
    }
    void set_value(Ref r, const V& v) noexcept {
        std::memcpy(arena_.data() + offset(r), static_cast<const void*>(&v), sizeof(V));
    }

    std::size_t size() const noexcept { return size_; }
    // Bytes of its keys (with record headers): what reserve() needs to
    // hold the same entries again.
    std::size_t key_bytes() const noexcept { return arena_.size(); }
    bool empty() const noexcept { return size_ == 0; }
    std::size_t slot_count() const noexcept { return slots_.size(); }

    // f(Ref) for every entry, in insertion order.
    template <class F>
    void for_each(F&& f) const {
        for (std::size_t off = 0; off < arena_.size();) {
            Ref r = static_cast<Ref>(off / kAlign + 1);
            f(r);
            off += record_size(key(r).size());
        }
    }

  private:
    struct Slot {
        std::uint32_t tag = 0;
        Ref ref = npos;
    };
    static constexpr std::size_t kAlign = alignof(V) > 4 ? alignof(V) : 4;
    static constexpr std::size_t kValueBytes = (sizeof(V) + 3) / 4 * 4;
    static constexpr std::size_t kHeader = kValueBytes + sizeof(std::uint32_t);

    static constexpr std::size_t record_size(std::size_t key_len) {
        return (kHeader + key_len + kAlign - 1) / kAlign * kAlign;
    }
    static std::size_t offset(Ref r) { return (std::size_t(r) - 1) * kAlign; }
    // Power of two, at least twice the entries (load factor <= 1/2), >= 16.
    static std::size_t slots_for(std::size_t entries) {
        std::size_t n = 16;
        while (n < entries * 2)
            n *= 2;
        return n;
    }

    Ref append(std::string_view key, const V& value) {
        if (key.size() > UINT32_MAX) throw std::length_error("FlatStringMap: key too long");
        std::size_t off = arena_.size();
        if ((off / kAlign + 1) > UINT32_MAX) throw std::length_error("FlatStringMap: arena full");
        arena_.resize(off + record_size(key.size()));
        unsigned char* rec = arena_.data() + off;
        std::memcpy(rec, static_cast<const void*>(&value), sizeof(V));
        auto len = static_cast<std::uint32_t>(key.size());
        std::memcpy(rec + kValueBytes, &len, sizeof len);
        if (!key.empty()) std::memcpy(rec + kHeader, key.data(), key.size());
        return static_cast<Ref>(off / kAlign + 1);
    }
    void place(std::uint64_t h, Ref r) {
        std::size_t mask = slots_.size() - 1;
        std::size_t i = h & mask;
        while (slots_[i].ref != npos)
            i = (i + 1) & mask;
        slots_[i] = {static_cast<std::uint32_t>(h >> 32), r};
    }
    void rehash(std::size_t n) {
        slots_.assign(n, Slot{});
        for_each([&](Ref r) { place(Hash{}(key(r)), r); });
    }

    std::vector<Slot, TableAllocator<Slot>> slots_;
    std::vector<unsigned char, TableAllocator<unsigned char>> arena_;
    std::size_t size_ = 0;
};

}  // namespace relaygate::policy
