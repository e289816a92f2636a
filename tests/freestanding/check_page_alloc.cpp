// Freestanding use of the bitmap page allocator and the ID allocator.
#include "mm/alloc/allocator.h"
#include "mm/alloc/bitmap.h"
#include "mm/alloc/id_allocator.h"

int pv_freestanding_main();

namespace {

using PageAlloc = mm::BitmapPageAllocator<mm::GuestPhysAddr>;
static_assert(mm::PageAllocator<PageAlloc>);
static_assert(mm::PageAllocator<mm::BitmapPageAllocator<mm::HostVirtAddr, 2 * 1024 * 1024>>);
static_assert(mm::IdAllocator<mm::BitmapIdAllocator>);

constexpr size_t kPages = 4096;
alignas(8) std::byte g_page_meta[PageAlloc::metadata_bytes(kPages, 4)];
alignas(8) std::byte g_id_meta[mm::BitmapIdAllocator::metadata_bytes(1000)];
PageAlloc g_pages;
mm::BitmapIdAllocator g_ids;

bool exercise_pages() {
    using mm::GuestPhysAddr;
    if (!g_pages.init(std::span(g_page_meta), 4)) return false;
    if (!g_pages.add_memory(GuestPhysAddr(0x1000), 2048 * 4096)) return false;
    if (!g_pages.add_memory(GuestPhysAddr(UINT64_MAX - 2048 * 4096 + 1), 2048 * 4096)) return false;
    if (g_pages.add_memory(GuestPhysAddr(0x2000), 4096).error() != mm::Error::MemoryOverlap) return false;
    auto a = g_pages.alloc_pages(1, 0x20'0000);
    auto b = g_pages.alloc_pages(300, 0x10000);
    if (!a || !b || !a->is_aligned(0x20'0000) || !b->is_aligned(0x10000)) return false;
    for (size_t n : {3, 10, 20}) {  // runs found through the 4- and 8-page block trees
        auto r = g_pages.alloc_pages(n, 0x4000);
        if (!r || !r->is_aligned(0x4000) || !g_pages.dealloc_pages(*r, n)) return false;
    }
    auto top = g_pages.alloc_pages_at(GuestPhysAddr(UINT64_MAX - 4095), 1);
    if (!top || !g_pages.is_allocated(*top)) return false;
    if (g_pages.dealloc_pages(*a, 2).has_value()) return false;  // second page is free
    if (!g_pages.dealloc_pages(*a, 1) || !g_pages.dealloc_pages(*b, 300) || !g_pages.dealloc_pages(*top, 1))
        return false;
    return g_pages.used_pages() == 0 && g_pages.total_pages() == kPages && g_pages.check_invariants();
}

bool exercise_ids() {
    if (!g_ids.init(std::span(g_id_meta), 1000)) return false;
    auto a = g_ids.alloc_id(10, 8);
    if (!a || *a % 8 != 0 || !g_ids.alloc_fixed_id(999) || g_ids.alloc_fixed_id(1000).has_value()) return false;
    if (!g_ids.dealloc_id(*a, 10) || !g_ids.dealloc_id(999, 1)) return false;
    return g_ids.used() == 0 && g_ids.available() == 1000 && g_ids.check_invariants();
}

}  // namespace

int pv_freestanding_main() { return exercise_pages() && exercise_ids() ? 0 : 1; }
