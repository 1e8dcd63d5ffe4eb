// Huge page advice for the policy's tables (see table_memory.hpp).
#include "policy/engine/table_memory.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>

namespace relaygate::policy {

void advise_huge_pages([[maybe_unused]] void* p, [[maybe_unused]] std::size_t bytes) noexcept {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    (void)madvise(p, bytes, MADV_HUGEPAGE);
#endif
}

std::shared_ptr<TableRegion> TableRegion::create(std::size_t bytes) {
    if (bytes == 0 || bytes > (std::size_t(1) << 40)) return nullptr;
    const std::size_t size = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    // One huge page more, to align the start to 2 MiB.
    const std::size_t mapped = size + kHugePage;
    void* m = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return nullptr;
    auto at = reinterpret_cast<std::uintptr_t>(m);
    auto* base = reinterpret_cast<unsigned char*>((at + kHugePage - 1) / kHugePage * kHugePage);
    advise_huge_pages(base, size);
    return std::shared_ptr<TableRegion>(new TableRegion(base, size, m, mapped));
}

TableRegion::~TableRegion() {
    ::munmap(mapping_, mapped_);
}

void* TableRegion::take(std::size_t bytes, std::size_t align) noexcept {
    const std::size_t at = (used_ + align - 1) / align * align;
    if (at > size_ || bytes > size_ - at) return nullptr;
    used_ = at + bytes;
    return base_ + at;
}

void TableRegion::release(void* p, std::size_t bytes) noexcept {
    static const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const auto from = (reinterpret_cast<std::uintptr_t>(p) + page - 1) / page * page;
    const auto to = (reinterpret_cast<std::uintptr_t>(p) + bytes) / page * page;
    if (to <= from) return;
    auto* start = reinterpret_cast<void*>(from);
    // No huge pages there any more: khugepaged would fill the hole back in
    // (it collapses a 2 MiB range with as few as one page present, by
    // default), and a reload's released tables would cost memory again
    // over time.
#if defined(__linux__) && defined(MADV_NOHUGEPAGE)
    (void)::madvise(start, to - from, MADV_NOHUGEPAGE);
#endif
    (void)::madvise(start, to - from, MADV_DONTNEED);
}

}  // namespace relaygate::policy
