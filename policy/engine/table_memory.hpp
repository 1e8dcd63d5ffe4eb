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

}  // namespace relaygate::policy
