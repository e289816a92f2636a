// TLSF-specific behaviour: coalescing with both physical neighbours, large
// alignments (leading split), block trimming, and checked-mode detection.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "mm/alloc/tlsf.h"
#include "tests/mm/alloc/byte_alloc_support.h"
#include "tests/support/seed.h"

namespace {

using mm::Error;
using pv::test::Arena;
using Checked = mm::Tlsf<>;
using Unchecked = mm::Tlsf<false>;

TEST(Tlsf, CoalescesWithBothNeighbours) {
    Arena arena(1 << 20);
    Checked t;
    ASSERT_TRUE(t.init(arena.span()));
    EXPECT_EQ(t.free_block_count(), 1U);
    const std::size_t total = t.total_bytes();
    void* p[4];
    for (auto& q : p) {
        auto r = t.alloc(1000, 8);
        ASSERT_TRUE(r);
        q = *r;
    }
    EXPECT_EQ(t.free_block_count(), 1U);  // the tail
    // Physically consecutive: each block follows the previous one.
    for (int i = 1; i < 4; ++i) EXPECT_EQ(static_cast<std::byte*>(p[i]) - static_cast<std::byte*>(p[i - 1]), 1008 + 16);
    ASSERT_TRUE(t.dealloc(p[0], 1000, 8));
    ASSERT_TRUE(t.dealloc(p[2], 1000, 8));
    EXPECT_EQ(t.free_block_count(), 3U);
    ASSERT_TRUE(t.dealloc(p[1], 1000, 8));  // merges with p[0] (before) and p[2] (after)
    EXPECT_EQ(t.free_block_count(), 2U);
    EXPECT_TRUE(t.check_invariants());
    ASSERT_TRUE(t.dealloc(p[3], 1000, 8));  // merges with the run before and the tail
    EXPECT_EQ(t.free_block_count(), 1U);
    EXPECT_EQ(t.used_bytes(), 0U);
    EXPECT_EQ(t.available_bytes(), total);
    EXPECT_TRUE(t.check_invariants());
    // The whole pool is one block again: a request for nearly all of it fits.
    auto all = t.alloc(total - 64 * 1024, 8);
    EXPECT_TRUE(all);
}

TEST(Tlsf, LargeAlignmentSplitsOffALeadingFreeBlock) {
    Arena arena(8 << 20);
    Checked t;
    ASSERT_TRUE(t.init(arena.span(48, (8 << 20) - 48)));
    for (std::size_t align : {32UL, 64UL, 4096UL, 1UL << 16, 1UL << 20, 1UL << 22}) {
        SCOPED_TRACE(testing::Message() << "align " << align);
        auto r = t.alloc(100, align);
        ASSERT_TRUE(r);
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(*r) % align, 0U);
        // Trimmed to the request: at most a minimum block of slack stays attached.
        EXPECT_GE(t.block_payload(*r), 112U);
        EXPECT_LT(t.block_payload(*r), 112U + Checked::kMinBlock);
        EXPECT_LE(t.used_bytes(), 112U + Checked::kMinBlock + Checked::kHeader);
        EXPECT_TRUE(t.check_invariants());
        ASSERT_TRUE(t.dealloc(*r, 100, align));
        EXPECT_EQ(t.free_block_count(), 1U);
        EXPECT_TRUE(t.check_invariants());
    }
}

TEST(Tlsf, FreedBlockIsReusedForTheSameSize) {
    Arena arena(1 << 20);
    Checked t;
    ASSERT_TRUE(t.init(arena.span()));
    auto a = t.alloc(300, 8);
    auto guard = t.alloc(16, 8);
    ASSERT_TRUE(a && guard);
    ASSERT_TRUE(t.dealloc(*a, 300, 8));
    auto b = t.alloc(300, 8);
    ASSERT_TRUE(b);
    EXPECT_EQ(*a, *b);  // exact-size list hit, not the big tail
}

TEST(Tlsf, CheckedModeDetection) {
    Arena arena(1 << 20);
    Checked t;
    ASSERT_TRUE(t.init(arena.span()));
    auto a = t.alloc(256, 8);
    auto b = t.alloc(256, 8);
    ASSERT_TRUE(a && b);
    EXPECT_EQ(t.dealloc(*a, 1024, 8).error(), Error::NotAllocated);  // larger than the block
    // A forged header inside a live block that even points back correctly.
    auto* inner = static_cast<std::byte*>(*a) + 64;
    auto* hdr = reinterpret_cast<std::uint64_t*>(inner - 16);
    hdr[0] = 0;
    hdr[1] = 128;  // size 128, used; its "next" is at inner + 128, inside *a
    std::uint64_t* next = reinterpret_cast<std::uint64_t*>(inner + 128);
    next[0] = reinterpret_cast<std::uintptr_t>(hdr);
    EXPECT_EQ(t.dealloc(inner, 64, 8).error(), Error::NotAllocated);
    ASSERT_TRUE(t.dealloc(*a, 256, 8));
    EXPECT_EQ(t.dealloc(*a, 256, 8).error(), Error::NotAllocated);
    ASSERT_TRUE(t.dealloc(*b, 256, 8));
    EXPECT_EQ(t.used_bytes(), 0U);
    EXPECT_TRUE(t.check_invariants());
}

TEST(Tlsf, UncheckedModeDetectsCheapCases) {
    Arena arena(1 << 20);
    Unchecked t;
    ASSERT_TRUE(t.init(arena.span()));
    auto a = t.alloc(256, 8);
    auto b = t.alloc(256, 8);
    ASSERT_TRUE(a && b);
    ASSERT_TRUE(t.dealloc(*a, 256, 8));
    EXPECT_EQ(t.dealloc(*a, 256, 8).error(), Error::NotAllocated);                             // header says free
    EXPECT_EQ(t.dealloc(static_cast<std::byte*>(*b) + 8, 8, 8).error(), Error::NotAllocated);  // misaligned
    std::memset(*b, 0, 256);
    EXPECT_EQ(t.dealloc(static_cast<std::byte*>(*b) + 64, 8, 8).error(), Error::NotAllocated);  // zero header
    ASSERT_TRUE(t.dealloc(*b, 256, 8));
    EXPECT_TRUE(t.check_invariants());
}

// Fragment the pool with a random mix, then check that each operation touches
// only neighbours: interleaved alloc/free keeps the invariants after every step.
TEST(Tlsf, RandomFragmentationKeepsInvariantsEveryStep) {
    std::uint64_t seed = pv::test::test_seed(77);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    Arena arena(1 << 20);
    Checked t;
    ASSERT_TRUE(t.init(arena.span(0, 600 << 10)));
    ASSERT_TRUE(t.add_memory(arena.span((600 << 10) + 8, 400 << 10)));
    struct Live {
        void* p;
        std::size_t size;
        std::size_t align;
    };
    std::vector<Live> live;
    for (int op = 0; op < 4000; ++op) {
        if (live.empty() || rng() % 2 == 0) {
            std::size_t size = 1 + rng() % 2000;
            std::size_t align = std::size_t(1) << (rng() % 8);
            auto r = t.alloc(size, align);
            if (r) live.push_back({*r, size, align});
        } else {
            std::size_t i = rng() % live.size();
            ASSERT_TRUE(t.dealloc(live[i].p, live[i].size, live[i].align));
            live[i] = live.back();
            live.pop_back();
        }
        ASSERT_TRUE(t.check_invariants()) << "op " << op;
    }
    for (auto l : live) ASSERT_TRUE(t.dealloc(l.p, l.size, l.align));
    EXPECT_EQ(t.free_block_count(), 2U);  // one per pool
}

}  // namespace
