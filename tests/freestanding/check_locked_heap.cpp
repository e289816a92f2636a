// Freestanding use of mm::LockedHeap with the guest's SpinLock over each byte
// allocator: init once (a second init is AlreadyInitialized), BadState before
// init, alloc/dealloc/stats/check_invariants under the lock.
#include "guest/rt/sync.h"
#include "mm/alloc/buddy.h"
#include "mm/alloc/locked_heap.h"
#include "mm/alloc/slab_heap.h"
#include "mm/alloc/tlsf.h"

int pv_freestanding_main();

namespace {

alignas(4096) std::byte g_arena[3][2048 * 1024];

template <class A>
int exercise(mm::LockedHeap<A, pv::guest::SpinLock>& heap, std::span<std::byte> region) {
    using namespace mm;
    if (heap.is_initialized() || !heap.check_invariants()) return 1;
    auto early = heap.alloc(64, 8);
    if (early || early.error() != Error::BadState) return 2;
    Status early_free = heap.dealloc(region.data(), 64, 8);
    if (early_free || early_free.error() != Error::BadState) return 3;
    if (!heap.init(region)) return 4;
    Status again = heap.init(region);
    if (again || again.error() != Error::AlreadyInitialized) return 5;
    void* ptrs[32] = {};
    for (size_t i = 0; i < 32; ++i) {
        auto r = heap.alloc(16 + i * 100, size_t(1) << (i % 10));
        if (!r) return 6;
        ptrs[i] = *r;
        static_cast<unsigned char*>(ptrs[i])[0] = static_cast<unsigned char>(i);
    }
    auto s = heap.stats();
    if (!s.initialized || s.allocs != 32 || s.used_bytes == 0 || !heap.check_invariants()) return 7;
    for (size_t i = 0; i < 32; ++i) {
        if (static_cast<unsigned char*>(ptrs[i])[0] != static_cast<unsigned char>(i)) return 8;
        if (!heap.dealloc(ptrs[i], 16 + i * 100, size_t(1) << (i % 10))) return 9;
    }
    s = heap.stats();
    return (s.frees == 32 && s.used_bytes == 0 && heap.check_invariants()) ? 0 : 10;
}

}  // namespace

int pv_freestanding_main() {
    static mm::LockedHeap<mm::Buddy<>, pv::guest::SpinLock> buddy;
    static mm::LockedHeap<mm::SlabHeap<>, pv::guest::SpinLock> slab;
    static mm::LockedHeap<mm::Tlsf<>, pv::guest::SpinLock> tlsf;
    // Exit status: 10 * (heap index + 1) + the failing step, 0 if all behaved.
    int rcs[3] = {exercise(buddy, g_arena[0]), exercise(slab, g_arena[1]), exercise(tlsf, g_arena[2])};
    for (int i = 0; i < 3; ++i) {
        if (rcs[i] != 0) return 10 * (i + 1) + rcs[i];
    }
    return 0;
}
