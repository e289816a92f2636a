// SlabHeap-specific behaviour: class selection, chunk growth and hysteresis,
// reclaiming empty chunks on demand, the statistics, and checked-mode detection.
#include <gtest/gtest.h>

#include <vector>

#include "mm/alloc/slab_heap.h"
#include "tests/mm/alloc/byte_alloc_support.h"

namespace {

using mm::Error;
using pv::test::Arena;
using Heap = mm::SlabHeap<true, 2>;

template <class H>
std::size_t chunks(const H& h) {
    std::size_t n = 0;
    for (std::size_t c = 0; c < H::kClassCount; ++c) n += h.chunk_count(c);
    return n;
}

TEST(SlabHeap, ClassIsChosenByMaxOfSizeAndAlignment) {
    EXPECT_EQ(Heap::class_of(1, 1), 0U);
    EXPECT_EQ(Heap::class_of(64, 8), 0U);
    EXPECT_EQ(Heap::class_of(65, 8), 1U);
    EXPECT_EQ(Heap::class_of(64, 256), 2U);
    EXPECT_EQ(Heap::class_of(4096, 4096), 6U);
    EXPECT_EQ(Heap::class_of(4097, 8), Heap::kClassCount);
    EXPECT_EQ(Heap::class_of(8, 8192), Heap::kClassCount);
    EXPECT_EQ(Heap::chunk_size(0), 64U * 1024);
    EXPECT_EQ(Heap::chunk_size(6), 128U * 1024);

    Arena arena(2 << 20);
    Heap h;
    ASSERT_TRUE(h.init(arena.span()));
    auto p = h.alloc(64, 256);
    ASSERT_TRUE(p);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(*p) % 256, 0U);
    EXPECT_EQ(h.chunk_count(2), 1U);
    EXPECT_EQ(chunks(h), 1U);
    // Above the largest class, or aligned above 4096: the buddy, honouring alignment.
    auto big = h.alloc(8, 1 << 16);
    auto large = h.alloc(5000, 8);
    ASSERT_TRUE(big && large);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(*big) % (1 << 16), 0U);
    EXPECT_EQ(chunks(h), 1U);
    EXPECT_TRUE(h.check_invariants());
    EXPECT_EQ(h.dealloc(*p, 64, 8).error(), Error::NotAllocated);  // wrong class: not a 64-byte block
    ASSERT_TRUE(h.dealloc(*p, 64, 256));
    ASSERT_TRUE(h.dealloc(*big, 8, 1 << 16));
    ASSERT_TRUE(h.dealloc(*large, 5000, 8));
    EXPECT_EQ(h.used_bytes(), 0U);
    EXPECT_TRUE(h.check_invariants());
}

TEST(SlabHeap, UsedCountsClassSizePlusHeadersOfBusyChunks) {
    Arena arena(2 << 20);
    Heap h;
    ASSERT_TRUE(h.init(arena.span()));
    auto a = h.alloc(10, 1);
    ASSERT_TRUE(a);
    const std::size_t first = h.used_bytes();
    EXPECT_GT(first, 64U);  // the block plus the chunk header
    EXPECT_LT(first, 1024U);
    auto b = h.alloc(64, 64);
    ASSERT_TRUE(b);
    EXPECT_EQ(h.used_bytes(), first + 64);  // same chunk: exactly one class size more
    auto c = h.alloc(5000, 8);
    ASSERT_TRUE(c);
    EXPECT_EQ(h.used_bytes(), first + 64 + 8192);  // buddy block size
    ASSERT_TRUE(h.dealloc(*a, 10, 1));
    ASSERT_TRUE(h.dealloc(*b, 64, 64));
    // The chunk is empty and parked: all of it counts as available.
    EXPECT_EQ(h.used_bytes(), 8192U);
    EXPECT_EQ(h.chunk_count(0), 1U);
    ASSERT_TRUE(h.dealloc(*c, 5000, 8));
    EXPECT_EQ(h.used_bytes(), 0U);
    EXPECT_EQ(h.available_bytes(), h.total_bytes());
}

TEST(SlabHeap, HysteresisKeepsAtMostKEmptyChunks) {
    Arena arena(4 << 20);
    Heap h;
    ASSERT_TRUE(h.init(arena.span()));
    std::vector<void*> live;
    while (h.chunk_count(0) < 5 || h.empty_chunk_count(0) != 0) {
        auto p = h.alloc(64, 8);
        ASSERT_TRUE(p);
        live.push_back(*p);
    }
    // Stopped right after the fifth chunk was taken: four full chunks and one block.
    const std::size_t buddy_used_full = h.backing().used_bytes();
    EXPECT_EQ(buddy_used_full, 5U * Heap::chunk_size(0));
    for (void* p : live) ASSERT_TRUE(h.dealloc(p, 64, 8));
    live.clear();
    EXPECT_EQ(h.chunk_count(0), 2U);
    EXPECT_EQ(h.empty_chunk_count(0), 2U);
    EXPECT_EQ(h.backing().used_bytes(), 2U * Heap::chunk_size(0));
    EXPECT_EQ(h.used_bytes(), 0U);
    EXPECT_TRUE(h.check_invariants());
    h.trim();
    EXPECT_EQ(h.chunk_count(0), 0U);
    EXPECT_EQ(h.backing().used_bytes(), 0U);
    EXPECT_TRUE(h.check_invariants());
}

TEST(SlabHeap, AllocFreeAtAChunkBoundaryDoesNotThrash) {
    Arena arena(4 << 20);
    Heap h;
    ASSERT_TRUE(h.init(arena.span()));
    std::vector<void*> live;
    // Fill exactly one chunk.
    for (;;) {
        auto p = h.alloc(4096, 8);
        ASSERT_TRUE(p);
        if (h.chunk_count(6) == 2) {
            ASSERT_TRUE(h.dealloc(*p, 4096, 8));
            break;
        }
        live.push_back(*p);
    }
    ASSERT_EQ(h.chunk_count(6), 2U);
    void* first_extra = nullptr;
    for (int i = 0; i < 1000; ++i) {
        auto p = h.alloc(4096, 8);  // needs the second chunk
        ASSERT_TRUE(p);
        if (first_extra == nullptr) first_extra = *p;
        EXPECT_EQ(*p, first_extra);  // the parked chunk is reused, not re-taken
        ASSERT_TRUE(h.dealloc(*p, 4096, 8));
        EXPECT_EQ(h.chunk_count(6), 2U);
    }
    for (void* p : live) ASSERT_TRUE(h.dealloc(p, 4096, 8));
    EXPECT_TRUE(h.check_invariants());
}

TEST(SlabHeap, EmptyChunksAreReclaimedWhenTheBuddyRunsOut) {
    Arena arena(1 << 20, 1 << 20);
    mm::SlabHeap<true, 4> h;  // keeps up to 4 empty chunks per class
    ASSERT_TRUE(h.init(arena.span()));
    // The largest buddy block this heap can ever hand out.
    std::size_t largest = std::size_t(1) << h.backing().largest_free_order();
    ASSERT_TRUE(h.dealloc(*h.alloc(largest, 8), largest, 8));
    // Park empty chunks in several classes, all over the region.
    std::vector<std::pair<void*, std::size_t>> live;
    for (std::size_t size : {64UL, 256UL, 1024UL, 4096UL}) {
        for (int i = 0; i < 200; ++i) {
            auto p = h.alloc(size, 8);
            if (!p) break;
            live.emplace_back(*p, size);
        }
    }
    for (auto [p, size] : live) ASSERT_TRUE(h.dealloc(p, size, 8));
    EXPECT_GT(chunks(h), 0U);
    EXPECT_EQ(h.used_bytes(), 0U);
    auto big = h.alloc(largest, 8);
    ASSERT_TRUE(big);
    EXPECT_EQ(chunks(h), 0U);  // all handed back to make room
    ASSERT_TRUE(h.dealloc(*big, largest, 8));
    EXPECT_TRUE(h.check_invariants());
}

TEST(SlabHeap, CheckedModeDetection) {
    Arena arena(2 << 20);
    Heap h;
    ASSERT_TRUE(h.init(arena.span()));
    auto keep = h.alloc(64, 8);
    auto p = h.alloc(64, 8);
    ASSERT_TRUE(keep && p);
    auto* chunk = reinterpret_cast<std::byte*>(reinterpret_cast<std::uintptr_t>(*p) & ~std::uintptr_t(0xFFFF));
    EXPECT_EQ(h.dealloc(chunk, 64, 8).error(), Error::NotAllocated);             // header block
    EXPECT_EQ(h.dealloc(chunk, 1 << 16, 1 << 16).error(), Error::NotAllocated);  // the chunk as a large block
    EXPECT_EQ(h.dealloc(static_cast<std::byte*>(*p) + 8, 64, 8).error(), Error::NotAllocated);
    EXPECT_EQ(h.dealloc(static_cast<std::byte*>(*p) + 64 * 20, 64, 8).error(), Error::NotAllocated);  // never used
    ASSERT_TRUE(h.dealloc(*p, 64, 8));
    EXPECT_EQ(h.dealloc(*p, 64, 8).error(), Error::NotAllocated);  // double free
    ASSERT_TRUE(h.dealloc(*keep, 64, 8));
    EXPECT_EQ(h.used_bytes(), 0U);
    EXPECT_TRUE(h.check_invariants());
}

}  // namespace
