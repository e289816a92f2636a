// SlabHeap-specific behaviour: class selection, chunk growth and hysteresis,
// reclaiming empty chunks on demand, the statistics, NotAllocated detection
// (the same in both modes), out-of-band metadata, and a model-based churn with
// bad deallocs mixed in.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "mm/alloc/slab_heap.h"
#include "tests/mm/alloc/byte_alloc_support.h"
#include "tests/support/seed.h"

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

TEST(SlabHeap, UsedCountsExactlyTheClassSizes) {
    Arena arena(2 << 20);
    Heap h;
    ASSERT_TRUE(h.init(arena.span()));
    // The descriptor table (192 bytes per 64 KiB) comes off the total, not out of used.
    EXPECT_LT(h.total_bytes(), arena.size());
    EXPECT_GE(h.total_bytes(), arena.size() - arena.size() / 64);
    auto a = h.alloc(10, 1);
    ASSERT_TRUE(a);
    EXPECT_EQ(h.used_bytes(), 64U);
    auto b = h.alloc(64, 64);
    ASSERT_TRUE(b);
    EXPECT_EQ(h.used_bytes(), 128U);
    auto c = h.alloc(5000, 8);
    ASSERT_TRUE(c);
    EXPECT_EQ(h.used_bytes(), 128U + 8192);  // buddy block size
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

// ---- dealloc detection: the same in both modes (descriptors are out of band) ----

template <class H>
class SlabDetectTest : public testing::Test {};
using SlabModes = testing::Types<mm::SlabHeap<true, 2>, mm::SlabHeap<false, 2>>;
TYPED_TEST_SUITE(SlabDetectTest, SlabModes);

TYPED_TEST(SlabDetectTest, BadDeallocsAreNotAllocatedAndChangeNothing) {
    Arena arena(2 << 20);
    TypeParam h;
    ASSERT_TRUE(h.init(arena.span()));
    auto keep = h.alloc(64, 8);
    auto p = h.alloc(64, 8);
    auto page = h.alloc(4096, 8);
    auto large = h.alloc(20000, 8);
    ASSERT_TRUE(keep && p && page && large);
    auto* chunk = reinterpret_cast<std::byte*>(reinterpret_cast<std::uintptr_t>(*p) & ~std::uintptr_t(0xFFFF));
    EXPECT_EQ(chunk, *keep);  // blocks start at the chunk: no in-band header
    auto* page_chunk = reinterpret_cast<std::byte*>(reinterpret_cast<std::uintptr_t>(*page) & ~std::uintptr_t(0x1FFFF));
    int on_stack = 0;
    const std::size_t used = h.used_bytes();
    const struct {
        void* ptr;
        std::size_t size;
        std::size_t align;
    } bad[] = {
        {static_cast<std::byte*>(*p) + 8, 64, 8},        // interior
        {static_cast<std::byte*>(*p) + 64 * 20, 64, 8},  // in the chunk, never handed out
        {*p, 128, 8},                                    // wrong class
        {*p, 64, 256},                                   // wrong class through the alignment
        {chunk, 1 << 16, 1 << 16},                       // a chunk as a large block
        {page_chunk + (1 << 16), 1 << 16, 1 << 16},      // a 128 KiB chunk's tail granule as a large block
        {*large, 64, 8},                                 // a large block as a small one
        {*large, 4096, 8},                               //   ... of the largest class
        {&on_stack, 64, 8},                              // foreign: never dereferenced
        {&on_stack, 1 << 20, 8},                         // foreign, large
        {arena.data(), 64, 8},                           // the descriptor table
        {static_cast<std::byte*>(*large) + 64, 64, 8},   // a granule with no chunk
    };
    for (const auto& b : bad) {
        SCOPED_TRACE(testing::Message() << "ptr " << b.ptr << " size " << b.size << " align " << b.align);
        auto s = h.dealloc(b.ptr, b.size, b.align);
        ASSERT_FALSE(s.has_value());
        EXPECT_EQ(s.error(), Error::NotAllocated);
        EXPECT_EQ(h.used_bytes(), used);
        EXPECT_TRUE(h.check_invariants());
    }
    ASSERT_TRUE(h.dealloc(*p, 64, 8));
    EXPECT_EQ(h.dealloc(*p, 64, 8).error(), Error::NotAllocated);  // double free
    ASSERT_TRUE(h.dealloc(*keep, 64, 8));
    EXPECT_EQ(h.dealloc(*keep, 64, 8).error(), Error::NotAllocated);  // double free into an empty chunk
    h.trim();
    EXPECT_EQ(h.chunk_count(0), 0U);
    EXPECT_EQ(h.dealloc(*keep, 64, 8).error(), Error::NotAllocated);  // a chunk handed back
    ASSERT_TRUE(h.dealloc(*page, 4096, 8));
    ASSERT_TRUE(h.dealloc(*large, 20000, 8));
    EXPECT_EQ(h.used_bytes(), 0U);
    EXPECT_TRUE(h.check_invariants());
}

// The allocator keeps nothing in the blocks: scribbling over freed blocks (a
// use-after-free in the caller) cannot corrupt it.
TYPED_TEST(SlabDetectTest, FreedBlocksHoldNoMetadata) {
    Arena arena(2 << 20);
    TypeParam h;
    ASSERT_TRUE(h.init(arena.span()));
    std::vector<std::pair<void*, std::size_t>> blocks;
    for (std::size_t i = 0; i < 600; ++i) {
        std::size_t size = std::size_t(64) << (i % 7);
        auto r = h.alloc(size, 8);
        ASSERT_TRUE(r);
        blocks.emplace_back(*r, size);
    }
    for (std::size_t i = 0; i < blocks.size(); i += 2) ASSERT_TRUE(h.dealloc(blocks[i].first, blocks[i].second, 8));
    for (std::size_t i = 0; i < blocks.size(); ++i) std::memset(blocks[i].first, 0xA5, blocks[i].second);
    EXPECT_TRUE(h.check_invariants());
    for (std::size_t i = 0; i < blocks.size(); i += 2) {
        auto r = h.alloc(blocks[i].second, 8);
        ASSERT_TRUE(r);
        blocks[i].first = *r;
    }
    EXPECT_TRUE(h.check_invariants());
    for (auto [q, size] : blocks) ASSERT_TRUE(h.dealloc(q, size, 8));
    EXPECT_EQ(h.used_bytes(), 0U);
    EXPECT_TRUE(h.check_invariants());
}

// Deallocs alternating between regions (the fast path remembers one region)
// and pointers in the gap between regions.
TYPED_TEST(SlabDetectTest, DeallocsAcrossRegions) {
    Arena arena(2 << 20);
    TypeParam h;
    ASSERT_TRUE(h.init(arena.span(0, 512 << 10)));
    ASSERT_TRUE(h.add_memory(arena.span((1 << 20) + 12, (512 << 10) - 12)));
    std::vector<void*> first;
    std::vector<void*> second;
    while (first.size() < 100 || second.size() < 100) {
        auto r = h.alloc(512, 8);
        ASSERT_TRUE(r);
        (static_cast<std::byte*>(*r) < arena.data() + (1 << 20) ? first : second).push_back(*r);
    }
    auto* gap = arena.data() + (768 << 10);
    EXPECT_EQ(h.dealloc(gap, 512, 8).error(), Error::NotAllocated);
    const std::size_t n = std::min(first.size(), second.size());
    for (std::size_t i = 0; i < n; ++i) {
        ASSERT_TRUE(h.dealloc(first[i], 512, 8));
        EXPECT_EQ(h.dealloc(gap, 512, 8).error(), Error::NotAllocated);
        ASSERT_TRUE(h.dealloc(second[i], 512, 8));
        EXPECT_EQ(h.dealloc(first[i], 512, 8).error(), Error::NotAllocated);
    }
    for (std::size_t i = n; i < first.size(); ++i) ASSERT_TRUE(h.dealloc(first[i], 512, 8));
    for (std::size_t i = n; i < second.size(); ++i) ASSERT_TRUE(h.dealloc(second[i], 512, 8));
    EXPECT_EQ(h.used_bytes(), 0U);
    EXPECT_TRUE(h.check_invariants());
}

// ---- model-based: exact statistics and bad deallocs mixed into random churn ----

template <class H>
std::size_t consumed(std::size_t size, std::size_t align) {
    std::size_t c = H::class_of(size, align);
    return c < H::kClassCount ? H::class_size(c) : H::Backing::block_size(size, align);
}

template <class H>
void slab_churn(std::uint64_t seed, std::size_t ops) {
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    Arena arena(6 << 20);
    H h;
    ASSERT_TRUE(h.init(arena.span(0, 4 << 20)));
    ASSERT_TRUE(h.add_memory(arena.span((4 << 20) + 100, (2 << 20) - 100)));
    std::map<std::uintptr_t, std::pair<std::size_t, std::size_t>> live;  // address -> (size, align)
    std::vector<std::uintptr_t> order;
    struct Freed {
        std::uintptr_t p;
        std::size_t size;
        std::size_t align;
    };
    std::vector<Freed> freed;  // recently freed, for double frees
    std::size_t model_used = 0;
    auto expect_rejected = [&](void* p, std::size_t size, std::size_t align, const char* what) {
        auto s = h.dealloc(p, size, align);
        ASSERT_FALSE(s.has_value()) << what;
        ASSERT_EQ(s.error(), Error::NotAllocated) << what;
    };
    for (std::size_t op = 0; op < ops; ++op) {
        const std::uint64_t k = rng() % 100;
        if (order.empty() || k < (order.size() < 800 ? 55U : 40U)) {
            std::size_t size = rng() % 8 == 0 ? 4097 + rng() % 20000 : 1 + rng() % 4096;
            std::size_t align = std::size_t(1) << (rng() % 8);
            auto r = h.alloc(size, align);
            if (!r) {
                ASSERT_EQ(r.error(), Error::NoMemory);
            } else {
                auto p = reinterpret_cast<std::uintptr_t>(*r);
                ASSERT_EQ(p % align, 0U);
                auto next = live.lower_bound(p);
                ASSERT_TRUE(next == live.end() || next->first >= p + size) << "overlap at op " << op;
                ASSERT_TRUE(next == live.begin() || std::prev(next)->first + std::prev(next)->second.first <= p);
                live[p] = {size, align};
                order.push_back(p);
                model_used += consumed<H>(size, align);
            }
        } else if (k < 90) {
            std::size_t i = rng() % order.size();
            std::uintptr_t p = order[i];
            order[i] = order.back();
            order.pop_back();
            auto [size, align] = live.at(p);
            ASSERT_TRUE(h.dealloc(reinterpret_cast<void*>(p), size, align)) << "at op " << op;
            live.erase(p);
            model_used -= consumed<H>(size, align);
            freed.push_back({p, size, align});
            if (freed.size() > 16) freed.erase(freed.begin());
        } else if (k < 95 && !freed.empty()) {
            // A large block may have coalesced into a bigger free block: only the
            // checked Buddy promises to see that.
            Freed f = freed[rng() % freed.size()];
            bool small = H::class_of(f.size, f.align) < H::kClassCount;
            if (live.count(f.p) == 0 && (small || H::kIsChecked))
                expect_rejected(reinterpret_cast<void*>(f.p), f.size, f.align, "double free");
        } else {
            std::uintptr_t p = order[rng() % order.size()];
            auto [size, align] = live.at(p);
            std::size_t c = H::class_of(size, align);
            if (c < H::kClassCount) {
                std::size_t other = H::class_size((c + 1 + rng() % (H::kClassCount - 1)) % H::kClassCount);
                expect_rejected(reinterpret_cast<void*>(p), other, 8, "wrong class");
                expect_rejected(reinterpret_cast<void*>(p + 8), size, align, "interior");
                expect_rejected(reinterpret_cast<void*>(p), 1 << 16, 1 << 16, "as a large block");
            }
        }
        if (testing::Test::HasFatalFailure()) return;
        ASSERT_EQ(h.used_bytes(), model_used) << "at op " << op;
        ASSERT_TRUE(h.check_invariants()) << "at op " << op;
    }
    for (auto& [p, l] : live) ASSERT_TRUE(h.dealloc(reinterpret_cast<void*>(p), l.first, l.second));
    EXPECT_EQ(h.used_bytes(), 0U);
    EXPECT_TRUE(h.check_invariants());
}

TYPED_TEST(SlabDetectTest, RandomizedChurnWithBadDeallocsAgainstModel) {
    for (std::uint64_t salt = 0; salt < 2; ++salt) {
        slab_churn<TypeParam>(pv::test::test_seed(0x51AB0000 + salt), 8000);
        if (testing::Test::HasFatalFailure()) return;
    }
}

}  // namespace
