// Freestanding use of the byte allocators (buddy, slab heap, TLSF), checked and
// unchecked, over static arrays: proves they need nothing from libc.
#include "mm/alloc/buddy.h"
#include "mm/alloc/slab_heap.h"
#include "mm/alloc/tlsf.h"

int pv_freestanding_main();

namespace {

alignas(4096) std::byte g_arena[6][2048 * 1024];  // slab heaps need room for 64 KiB chunks of 7 classes

template <class A>
int exercise(A& a, std::span<std::byte> first, std::span<std::byte> second) {
    using namespace mm;
    if (!a.init(first) || a.init(first).error() != Error::BadState) return 1;
    if (!a.add_memory(second) || a.add_memory(second.subspan(8)).error() != Error::MemoryOverlap) return 2;
    void* ptrs[64] = {};
    size_t sizes[64] = {};
    for (size_t i = 0; i < 64; ++i) {
        sizes[i] = 1 + (i * 977) % 3000;
        auto r = a.alloc(sizes[i], size_t(1) << (i % 13));
        if (!r) return 3;
        ptrs[i] = *r;
        auto* b = static_cast<unsigned char*>(ptrs[i]);
        for (size_t j = 0; j < sizes[i]; ++j) b[j] = static_cast<unsigned char>(i);
    }
    if (!a.check_invariants() || a.used_bytes() + a.available_bytes() != a.total_bytes()) return 4;
    for (size_t i = 0; i < 64; ++i) {
        if (static_cast<unsigned char*>(ptrs[i])[sizes[i] - 1] != static_cast<unsigned char>(i)) return 5;
        if (!a.dealloc(ptrs[i], sizes[i], size_t(1) << (i % 13))) return 6;
    }
    if (a.alloc(0, 8).has_value() || a.alloc(8, 3).has_value()) return 7;
    if (A::kIsChecked && a.dealloc(ptrs[0], sizes[0], 1).has_value()) return 8;
    return (a.check_invariants() && a.used_bytes() == 0) ? 0 : 9;
}

}  // namespace

int pv_freestanding_main() {
    static mm::Buddy<> buddy;
    static mm::Buddy<5, 47, false> buddy_unchecked;
    static mm::SlabHeap<> slab;
    static mm::Tlsf<> tlsf;
    static mm::Tlsf<false> tlsf_unchecked;
    static mm::SlabHeap<false> slab_unchecked;
    auto half = [](int i, int h) { return std::span<std::byte>(g_arena[i] + h * 1024 * 1024, 1024 * 1024); };
    // Exit status: 10 * (allocator index + 1) + the failing step, 0 if all behaved.
    int rcs[6] = {
        exercise(buddy, half(0, 0), half(0, 1)),          exercise(buddy_unchecked, half(1, 0), half(1, 1)),
        exercise(slab, half(2, 0), half(2, 1)),           exercise(tlsf, half(3, 0), half(3, 1)),
        exercise(tlsf_unchecked, half(4, 0), half(4, 1)), exercise(slab_unchecked, half(5, 0), half(5, 1)),
    };
    for (int k = 0; k < 6; ++k)
        if (rcs[k] != 0) return 10 * (k + 1) + rcs[k];
    return 0;
}
