// Buddy-specific behaviour: splitting, coalescing back to maximal blocks,
// rounding in the statistics, and what each checking mode detects.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "mm/alloc/buddy.h"
#include "tests/mm/alloc/byte_alloc_support.h"
#include "tests/support/seed.h"

namespace {

using mm::Error;
using pv::test::Arena;
using Checked = mm::Buddy<>;
using Unchecked = mm::Buddy<5, 47, false>;

template <class A>
std::vector<std::size_t> free_histogram(const A& a) {
    std::vector<std::size_t> h;
    for (unsigned k = 0; k < 64; ++k) h.push_back(a.free_blocks(k));
    return h;
}

TEST(Buddy, OrderForRoundsSizeAndAlignment) {
    EXPECT_EQ(Checked::order_for(1, 1), 5U);
    EXPECT_EQ(Checked::order_for(32, 8), 5U);
    EXPECT_EQ(Checked::order_for(33, 8), 6U);
    EXPECT_EQ(Checked::order_for(10, 256), 8U);
    EXPECT_EQ(Checked::order_for(4097, 4096), 13U);
    EXPECT_EQ(Checked::block_size(100, 1), 128U);
}

TEST(Buddy, RoundingCountsAsUsed) {
    Arena arena(1 << 20);
    Checked b;
    ASSERT_TRUE(b.init(arena.span()));
    auto p = b.alloc(33, 1);
    ASSERT_TRUE(p);
    EXPECT_EQ(b.used_bytes(), 64U);
    auto q = b.alloc(10, 256);
    ASSERT_TRUE(q);
    EXPECT_EQ(b.used_bytes(), 64U + 256U);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(*q) % 256, 0U);
    EXPECT_EQ(b.used_bytes() + b.available_bytes(), b.total_bytes());
    ASSERT_TRUE(b.dealloc(*p, 33, 1));
    ASSERT_TRUE(b.dealloc(*q, 10, 256));
    EXPECT_EQ(b.used_bytes(), 0U);
}

TEST(Buddy, RegionIsCarvedIntoMaximalAlignedBlocks) {
    Arena arena(4 << 20, 4 << 20);
    Checked b;
    // Starts 4 KiB into a 4 MiB-aligned buffer; after ~16 KiB of bitmaps the
    // blocks grow by alignment up to one 1 MiB block in the upper half.
    ASSERT_TRUE(b.init(arena.span(4096, (2 << 20) - 4096)));
    EXPECT_EQ(b.largest_free_order(), 20);
    std::size_t sum = 0;
    for (unsigned k = 0; k < 64; ++k) sum += b.free_blocks(k) << k;
    EXPECT_EQ(sum, b.total_bytes());
    EXPECT_TRUE(b.check_invariants());
}

template <class A>
void coalescing_restores(std::uint64_t seed) {
    SCOPED_TRACE(pv::test::seed_trace(seed));
    Arena arena(2 << 20, 1 << 20);
    A b;
    ASSERT_TRUE(b.init(arena.span(0, 1 << 20)));
    ASSERT_TRUE(b.add_memory(arena.span((1 << 20) + 3, (1 << 20) - 3)));
    const auto initial = free_histogram(b);
    const int largest = b.largest_free_order();
    std::mt19937_64 rng(seed);
    struct Block {
        void* p;
        std::size_t size;
        std::size_t align;
    };
    std::vector<Block> live;
    for (;;) {
        std::size_t size = 1 + rng() % 3000;
        std::size_t align = std::size_t(1) << (rng() % 10);
        auto r = b.alloc(size, align);
        if (!r) break;
        live.push_back({*r, size, align});
    }
    std::shuffle(live.begin(), live.end(), rng);
    for (std::size_t i = 0; i < live.size(); ++i) {
        ASSERT_TRUE(b.dealloc(live[i].p, live[i].size, live[i].align));
        if (i % 64 == 0) {
            ASSERT_TRUE(b.check_invariants());
        }
    }
    EXPECT_EQ(free_histogram(b), initial);
    EXPECT_EQ(b.largest_free_order(), largest);
    EXPECT_TRUE(b.check_invariants());
}

TEST(Buddy, CoalescingRestoresTheMaximalBlocks) {
    coalescing_restores<Checked>(pv::test::test_seed(1));
    coalescing_restores<Unchecked>(pv::test::test_seed(2));
}

TEST(Buddy, FreeingABuddyMergesImmediately) {
    Arena arena(1 << 20, 1 << 20);
    Checked b;
    ASSERT_TRUE(b.init(arena.span()));
    const auto initial = free_histogram(b);
    auto x = b.alloc(32, 32);
    auto y = b.alloc(32, 32);
    ASSERT_TRUE(x && y);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(*x) ^ reinterpret_cast<std::uintptr_t>(*y), 32U);  // buddies
    ASSERT_TRUE(b.dealloc(*x, 32, 32));
    EXPECT_EQ(b.free_blocks(5), initial[5] + 1);  // x waits for its buddy
    ASSERT_TRUE(b.dealloc(*y, 32, 32));
    EXPECT_EQ(free_histogram(b), initial);
}

TEST(Buddy, CheckedModeDetectsWrongSizeInteriorAndDoubleFree) {
    Arena arena(1 << 20);
    Checked b;
    ASSERT_TRUE(b.init(arena.span()));
    auto keep = b.alloc(64, 1);
    auto p = b.alloc(100, 1);  // a 128-byte block
    ASSERT_TRUE(keep && p);
    EXPECT_EQ(b.dealloc(*p, 64, 1).error(), Error::NotAllocated);     // claimed smaller
    EXPECT_EQ(b.dealloc(*p, 256, 1).error(), Error::NotAllocated);    // claimed larger
    EXPECT_EQ(b.dealloc(*p, 100, 256).error(), Error::NotAllocated);  // alignment makes it larger
    EXPECT_EQ(b.dealloc(static_cast<std::byte*>(*p) + 64, 64, 1).error(), Error::NotAllocated);
    EXPECT_TRUE(b.check_invariants());
    EXPECT_TRUE(b.dealloc(*p, 128, 128));  // same order as (100, 1): accepted
    EXPECT_EQ(b.dealloc(*p, 100, 1).error(), Error::NotAllocated);
    ASSERT_TRUE(b.dealloc(*keep, 64, 1));
    // Double free after the block coalesced away (its start is no longer a block).
    EXPECT_EQ(b.dealloc(*keep, 64, 1).error(), Error::NotAllocated);
    EXPECT_EQ(b.used_bytes(), 0U);
    EXPECT_TRUE(b.check_invariants());
}

TEST(Buddy, UncheckedModeStillDetectsCheapCases) {
    Arena arena(1 << 20);
    Unchecked b;
    ASSERT_TRUE(b.init(arena.span()));
    auto x = b.alloc(64, 64);
    auto y = b.alloc(64, 64);
    ASSERT_TRUE(x && y);
    ASSERT_TRUE(b.dealloc(*y, 64, 64));
    EXPECT_EQ(b.dealloc(*y, 64, 64).error(), Error::NotAllocated);  // its start is still free
    EXPECT_EQ(b.dealloc(static_cast<std::byte*>(*x) + 32, 64, 64).error(), Error::NotAllocated);  // misaligned
    alignas(64) char outside[64];
    EXPECT_EQ(b.dealloc(outside, 64, 64).error(), Error::NotAllocated);
    ASSERT_TRUE(b.dealloc(*x, 64, 64));
    EXPECT_EQ(b.used_bytes(), 0U);
    EXPECT_TRUE(b.check_invariants());
}

TEST(Buddy, RegionTableFullIsNoMemory) {
    Arena arena(17 * 4096);
    Checked b;
    for (std::size_t i = 0; i < 16; ++i) ASSERT_TRUE(b.add_memory(arena.span(i * 4096, 4096)));
    EXPECT_EQ(b.add_memory(arena.span(16 * 4096, 4096)).error(), Error::NoMemory);
    EXPECT_EQ(b.region_count(), 16U);
    EXPECT_TRUE(b.check_invariants());
}

TEST(Buddy, MaxOrderCapsBlocksAndRequests) {
    Arena arena(1 << 20, 1 << 20);
    mm::Buddy<5, 16> b;  // blocks of at most 64 KiB
    ASSERT_TRUE(b.init(arena.span()));
    EXPECT_EQ(b.largest_free_order(), 16);
    EXPECT_EQ(b.alloc(65537, 8).error(), Error::NoMemory);
    auto p = b.alloc(65536, 65536);
    ASSERT_TRUE(p);
    EXPECT_TRUE(b.check_invariants());
    EXPECT_TRUE(b.dealloc(*p, 65536, 65536));
    EXPECT_EQ(b.dealloc(*p, 1 << 17, 8).error(), Error::NotAllocated);
}

}  // namespace
