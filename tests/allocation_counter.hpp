// Counts every operator new of the test binary whose one test source
// includes this header (a global replacement: include it in one file per
// binary only). malloc underneath, so a sanitizer still sees matching
// malloc/free pairs.
#pragma once

#include <atomic>
#include <cstdlib>
#include <new>

namespace relaygate::testing {
inline std::atomic<long> allocations{0};
}  // namespace relaygate::testing

void* operator new(std::size_t n) {
    ++relaygate::testing::allocations;
    if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
