// HugePageAllocator: the allocator of the policy's large lookup tables.
// Allocations of 2 MiB and more are aligned to 2 MiB and advised to the
// kernel as transparent huge pages (Linux, THP "madvise" mode), so that
// random probes into tens of megabytes of tables cost a cache miss but
// rarely also a TLB miss and a page walk. Smaller allocations, and systems
// without THP, get ordinary memory; the advice never changes behaviour.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>

namespace relaygate::policy {

inline constexpr std::size_t kHugePage = std::size_t(2) << 20;

// madvise(MADV_HUGEPAGE) where available; best effort, errors ignored.
void advise_huge_pages(void* p, std::size_t bytes) noexcept;

template <class T>
struct HugePageAllocator {
    using value_type = T;

    HugePageAllocator() = default;
    template <class U>
    HugePageAllocator(const HugePageAllocator<U>&) noexcept {}

    T* allocate(std::size_t n) {
        if (n > std::size_t(-1) / sizeof(T)) throw std::bad_array_new_length();
        std::size_t bytes = n * sizeof(T);
        if (bytes < kHugePage) return std::allocator<T>{}.allocate(n);
        std::size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
        void* p = ::operator new (rounded, std::align_val_t{kHugePage});
        advise_huge_pages(p, rounded);
        return static_cast<T*>(p);
    }
    void deallocate(T* p, std::size_t n) noexcept {
        if (n * sizeof(T) < kHugePage) {
            std::allocator<T>{}.deallocate(p, n);
        } else {
            ::operator delete (p, std::align_val_t{kHugePage});
        }
    }
    template <class U>
    friend bool operator==(const HugePageAllocator&, const HugePageAllocator<U>&) noexcept {
        return true;
    }
};

// TableRegion: one mapping, 2 MiB aligned and advised as huge pages, that
// many small tables are carved from (bump allocation), so that a table split
// into shards of a few hundred KB (DomainIndex) is still read through huge
// pages. Memory given back (a shard freed, a table that grew elsewhere)
// returns its whole pages to the kernel at once; the mapping is unmapped
// when the last table using it is gone (each holds a shared_ptr).
// take() is for the one thread building the tables; release() may be
// called from any thread.
class TableRegion {
  public:
    // nullptr when the mapping fails (the caller then uses the heap).
    static std::shared_ptr<TableRegion> create(std::size_t bytes);
    ~TableRegion();
    TableRegion(const TableRegion&) = delete;
    TableRegion& operator=(const TableRegion&) = delete;

    // `bytes` aligned to `align` (at most 4 KiB), or nullptr when full.
    void* take(std::size_t bytes, std::size_t align) noexcept;
    bool contains(const void* p) const noexcept {
        auto* c = static_cast<const unsigned char*>(p);
        return c >= base_ && c < base_ + size_;
    }
    // The whole pages inside [p, p + bytes) go back to the kernel, and are
    // no longer advised as huge pages (so that they stay given back).
    void release(void* p, std::size_t bytes) noexcept;

  private:
    TableRegion(unsigned char* base, std::size_t size, void* mapping, std::size_t mapped)
        : base_(base), size_(size), mapping_(mapping), mapped_(mapped) {}
    unsigned char* base_;
    std::size_t size_;
    std::size_t used_ = 0;
    void* mapping_;
    std::size_t mapped_;
};

// The allocator of FlatStringMap: from a TableRegion when it has one and
// room, else as HugePageAllocator. A copy of a table gets no region (it is
// a table of its own, built later: DomainIndex copies a shared shard).
template <class T>
struct TableAllocator {
    using value_type = T;
    using propagate_on_container_copy_assignment = std::false_type;
    using propagate_on_container_move_assignment = std::true_type;
    using propagate_on_container_swap = std::true_type;

    TableAllocator() = default;
    explicit TableAllocator(std::shared_ptr<TableRegion> r) noexcept : region(std::move(r)) {}
    template <class U>
    TableAllocator(const TableAllocator<U>& o) noexcept : region(o.region) {}

    T* allocate(std::size_t n) {
        if (region && n <= std::size_t(-1) / sizeof(T))
            if (void* p = region->take(n * sizeof(T), alignof(T))) return static_cast<T*>(p);
        return HugePageAllocator<T>{}.allocate(n);
    }
    void deallocate(T* p, std::size_t n) noexcept {
        if (region && region->contains(p)) {
            region->release(p, n * sizeof(T));
        } else {
            HugePageAllocator<T>{}.deallocate(p, n);
        }
    }
    TableAllocator select_on_container_copy_construction() const { return {}; }
    template <class U>
    friend bool operator==(const TableAllocator& a, const TableAllocator<U>& b) noexcept {
        return a.region == b.region;
    }

    std::shared_ptr<TableRegion> region;
};

}  // namespace relaygate::policy
