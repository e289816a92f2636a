// FrameAllocator (mm/frames.h): validation, fallback order, quota, caches,
// exact statistics and double-free detection; a model-based randomized test;
// multi-threaded tests with one thread per cpu id.
#include "mm/frames.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "tests/support/seed.h"

namespace {

using mm::Error;
using mm::FrameNodeConfig;
using mm::GuestFrame;
using mm::GuestFrameRange;
using Frames = mm::FrameAllocator<std::mutex>;
constexpr uint32_t kCache = Frames::kCacheFrames;
constexpr uint32_t kBatch = Frames::kBatch;

// Metadata first: it must outlive the allocator, whose destructor destroys the locks in it.
struct Pool {
    explicit Pool(uint32_t nodes, uint32_t cpus, uint64_t frames_per_node = 1024, uint32_t rpn = 4)
        : meta(Frames::metadata_bytes(nodes, cpus, frames_per_node, rpn)) {
        EXPECT_TRUE(fa.init(std::span(meta), nodes, cpus, rpn).has_value());
        EXPECT_GE(fa.frames_per_node_capacity(), frames_per_node);
    }
    void add(uint32_t node, uint64_t first, uint64_t count) {
        ASSERT_TRUE(fa.add_range(node, GuestFrameRange{GuestFrame(first), count}).has_value());
    }
    std::vector<std::byte> meta;
    Frames fa;
};

FrameNodeConfig config(std::initializer_list<uint32_t> fallback, uint64_t quota = 0, bool may_fall_back = true) {
    FrameNodeConfig c;
    for (uint32_t n : fallback) c.fallback[c.fallback_count++] = n;
    c.quota_frames = quota;
    c.may_fall_back = may_fall_back;
    return c;
}

void expect_balanced(const Frames& fa, uint32_t node) {
    auto s = fa.stats(node);
    EXPECT_EQ(s.total_frames, s.used_frames + s.cached_frames + s.free_frames) << "node " << node;
}

// ---- setup validation ------------------------------------------------------------

TEST(FrameAllocator, InitValidatesAndSizesCapacityFromMetadata) {
    std::vector<std::byte> meta(Frames::metadata_bytes(2, 2, 4096));
    Frames fa;
    EXPECT_EQ(fa.alloc(0, 0).error(), Error::BadState);
    EXPECT_EQ(fa.free(0, GuestFrame(1)).error(), Error::BadState);
    EXPECT_EQ(fa.add_range(0, GuestFrameRange{GuestFrame(0), 1}).error(), Error::BadState);
    EXPECT_EQ(fa.configure(0, FrameNodeConfig{}).error(), Error::BadState);
    EXPECT_EQ(fa.alloc_contiguous(0, 1, 1).error(), Error::BadState);
    EXPECT_EQ(fa.free_contiguous(GuestFrame(0), 1).error(), Error::BadState);
    EXPECT_TRUE(fa.check_invariants());
    EXPECT_EQ(fa.init(std::span(meta), 0, 1).error(), Error::InvalidParam);
    EXPECT_EQ(fa.init(std::span(meta), Frames::kMaxNodes + 1, 1).error(), Error::InvalidParam);
    EXPECT_EQ(fa.init(std::span(meta), 1, 0).error(), Error::InvalidParam);
    EXPECT_EQ(fa.init(std::span(meta), 1, Frames::kMaxCpus + 1).error(), Error::InvalidParam);
    EXPECT_EQ(fa.init(std::span(meta), 1, 1, 0).error(), Error::InvalidParam);
    EXPECT_EQ(fa.init(std::span(meta).first(64), 2, 2).error(), Error::NoMemory);
    EXPECT_EQ(fa.stats(0).total_frames, 0u);
    ASSERT_TRUE(fa.init(std::span(meta), 2, 2).has_value());
    EXPECT_EQ(fa.init(std::span(meta), 2, 2).error(), Error::AlreadyInitialized);
    EXPECT_GE(fa.frames_per_node_capacity(), 4096u);
    // Exactly the capacity fits in a node; one more frame does not.
    uint64_t cap = fa.frames_per_node_capacity();
    EXPECT_EQ(fa.add_range(0, GuestFrameRange{GuestFrame(0), cap + 1}).error(), Error::NoMemory);
    EXPECT_TRUE(fa.add_range(0, GuestFrameRange{GuestFrame(0), cap}).has_value());
    EXPECT_EQ(fa.stats(0).total_frames, cap);
    EXPECT_EQ(fa.stats(0).free_frames, cap);
    EXPECT_TRUE(fa.check_invariants());
}

TEST(FrameAllocator, AddRangeRejectsBadAndOverlappingRanges) {
    Pool s(2, 1, 1024, 2);
    EXPECT_EQ(s.fa.add_range(2, GuestFrameRange{GuestFrame(0), 1}).error(), Error::InvalidParam);
    EXPECT_EQ(s.fa.add_range(0, GuestFrameRange{GuestFrame(0), 0}).error(), Error::InvalidParam);
    EXPECT_EQ(s.fa.add_range(0, GuestFrameRange{GuestFrame(GuestFrame::kMaxNumber), 2}).error(), Error::InvalidParam);
    s.add(0, 100, 50);
    std::vector<std::pair<uint64_t, uint64_t>> overlapping{{90, 11}, {149, 1}, {120, 5}, {0, 1000}};
    for (auto [first, count] : overlapping)
        EXPECT_EQ(s.fa.add_range(1, GuestFrameRange{GuestFrame(first), count}).error(), Error::MemoryOverlap) << first;
    s.add(1, 150, 10);  // adjacent to node 0's range: fine
    s.add(0, 90, 10);
    EXPECT_EQ(s.fa.add_range(0, GuestFrameRange{GuestFrame(5000), 1}).error(), Error::NoMemory);  // 2 ranges max
    // A range ending at the top of the frame space.
    s.add(1, GuestFrame::kMaxNumber - 63, 64);
    EXPECT_EQ(s.fa.stats(2).total_frames, 0u);  // no such node: all zero
    EXPECT_EQ(s.fa.stats(0).total_frames, 60u);
    EXPECT_EQ(s.fa.stats(1).total_frames, 74u);
    EXPECT_TRUE(s.fa.check_invariants());
    std::set<uint64_t> got;
    for (int i = 0; i < 74; ++i) {
        auto r = s.fa.alloc(0, 1);
        ASSERT_TRUE(r.has_value()) << i;
        EXPECT_EQ(r->node, 1u);
        got.insert(r->frame.number());
    }
    EXPECT_EQ(got.size(), 74u);
    EXPECT_TRUE(got.count(GuestFrame::kMaxNumber));
    for (uint64_t f : got) ASSERT_TRUE(s.fa.free(0, GuestFrame(f)).has_value());
    EXPECT_TRUE(s.fa.check_invariants());
}

TEST(FrameAllocator, ConfigureRejectsBadFallbackOrders) {
    Pool s(3, 1);
    EXPECT_EQ(s.fa.configure(3, config({})).error(), Error::InvalidParam);
    EXPECT_EQ(s.fa.configure(0, config({0})).error(), Error::InvalidParam);
    EXPECT_EQ(s.fa.configure(0, config({1, 1})).error(), Error::InvalidParam);
    EXPECT_EQ(s.fa.configure(0, config({3})).error(), Error::InvalidParam);
    FrameNodeConfig too_long;
    too_long.fallback_count = mm::kMaxFrameNodes + 1;
    EXPECT_EQ(s.fa.configure(0, too_long).error(), Error::InvalidParam);
    EXPECT_TRUE(s.fa.configure(0, config({2, 1}, 7)).has_value());
    EXPECT_EQ(s.fa.stats(0).quota_frames, 7u);
}

TEST(FrameAllocator, GuestFrameRangeFromPhys) {
    using mm::GuestPhysAddr;
    using mm::GuestPhysRange;
    auto r = GuestFrameRange::from_phys(GuestPhysRange::from_start_size(GuestPhysAddr(0x10000), 0x3000));
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->first.number(), 0x10u);
    EXPECT_EQ(r->count, 3u);
    EXPECT_TRUE(r->contains(GuestFrame(0x12)));
    EXPECT_FALSE(r->contains(GuestFrame(0x13)));
    EXPECT_FALSE(r->contains(GuestFrame(0xf)));
    EXPECT_FALSE(GuestFrameRange::from_phys(GuestPhysRange::from_start_size(GuestPhysAddr(0x10), 0x1000)));
    EXPECT_FALSE(GuestFrameRange::from_phys(GuestPhysRange::from_start_size(GuestPhysAddr(0), 0)));
}

// ---- allocation, statistics, errors ------------------------------------------------

TEST(FrameAllocator, AllocHandsOutEveryFrameOnceWithExactStats) {
    Pool s(1, 1);
    s.add(0, 1000, 100);
    std::set<uint64_t> got;
    for (uint64_t i = 1; i <= 100; ++i) {
        auto r = s.fa.alloc(0, 0);
        ASSERT_TRUE(r.has_value());
        EXPECT_EQ(r->node, 0u);
        EXPECT_TRUE(r->frame.number() >= 1000 && r->frame.number() < 1100);
        EXPECT_TRUE(got.insert(r->frame.number()).second);
        EXPECT_EQ(s.fa.stats(0).used_frames, i);
        expect_balanced(s.fa, 0);
    }
    EXPECT_EQ(s.fa.alloc(0, 0).error(), Error::NoMemory);
    auto st = s.fa.stats(0);
    EXPECT_EQ(st.refusals, 1u);
    EXPECT_EQ(st.quota_refusals, 0u);
    EXPECT_EQ(st.fallback_allocs, 0u);
    EXPECT_EQ(st.free_frames + st.cached_frames, 0u);
    EXPECT_TRUE(s.fa.check_invariants());
    for (uint64_t f : got) ASSERT_TRUE(s.fa.free(0, GuestFrame(f)).has_value());
    st = s.fa.stats(0);
    EXPECT_EQ(st.used_frames, 0u);
    EXPECT_LE(st.cached_frames, kCache);
    expect_balanced(s.fa, 0);
    EXPECT_TRUE(s.fa.check_invariants());
}

TEST(FrameAllocator, BadFreesAreNotAllocatedAndChangeNothing) {
    Pool s(2, 2);
    s.add(0, 0, 64);
    s.add(1, 64, 64);
    auto a = s.fa.alloc(0, 0);
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(s.fa.alloc(2, 0).error(), Error::InvalidParam);
    EXPECT_EQ(s.fa.alloc(0, 2).error(), Error::InvalidParam);
    EXPECT_EQ(s.fa.free(2, a->frame).error(), Error::InvalidParam);
    EXPECT_EQ(s.fa.free(0, GuestFrame(500)).error(), Error::NotAllocated);     // outside every range
    EXPECT_EQ(s.fa.free(0, GuestFrame(100)).error(), Error::NotAllocated);     // never handed out
    uint64_t cached = a->frame.number() == 0 ? 1 : 0;                          // a frame now in cpu 0's cache
    EXPECT_EQ(s.fa.free(1, GuestFrame(cached)).error(), Error::NotAllocated);  // cached is free
    auto before = s.fa.stats(0);
    ASSERT_TRUE(s.fa.free(1, a->frame).has_value());
    EXPECT_EQ(s.fa.free(0, a->frame).error(), Error::NotAllocated);  // double free, other cpu
    EXPECT_EQ(s.fa.free(1, a->frame).error(), Error::NotAllocated);  // double free, same cpu
    auto after = s.fa.stats(0);
    EXPECT_EQ(after.used_frames, before.used_frames - 1);
    EXPECT_EQ(after.cached_frames, before.cached_frames + 1);
    EXPECT_EQ(s.fa.free_contiguous(GuestFrame(0), 0).error(), Error::InvalidParam);
    EXPECT_EQ(s.fa.free_contiguous(GuestFrame(GuestFrame::kMaxNumber), 2).error(), Error::InvalidParam);
    EXPECT_TRUE(s.fa.check_invariants());
}

TEST(FrameAllocator, FallbackFollowsTheConfiguredOrder) {
    Pool s(3, 1);
    s.add(0, 0, 20);
    s.add(1, 100, 20);
    s.add(2, 200, 20);
    ASSERT_TRUE(s.fa.configure(0, config({2, 1})).has_value());
    std::vector<uint32_t> payers;
    for (;;) {
        auto r = s.fa.alloc(0, 0);
        if (!r) {
            EXPECT_EQ(r.error(), Error::NoMemory);
            break;
        }
        EXPECT_EQ(r->frame.number() / 100, r->node);  // the frame is the payer's
        payers.push_back(r->node);
    }
    ASSERT_EQ(payers.size(), 60u);
    EXPECT_TRUE(std::is_sorted(payers.begin(), payers.end(), [](uint32_t x, uint32_t y) {
        auto rank = [](uint32_t n) { return n == 0 ? 0 : n == 2 ? 1 : 2; };
        return rank(x) < rank(y);
    }));
    EXPECT_EQ(payers[20], 2u);
    EXPECT_EQ(payers[40], 1u);
    EXPECT_EQ(s.fa.stats(2).fallback_allocs, 20u);
    EXPECT_EQ(s.fa.stats(1).fallback_allocs, 20u);
    EXPECT_EQ(s.fa.stats(0).fallback_allocs, 0u);
    EXPECT_EQ(s.fa.stats(0).refusals, 1u);
    EXPECT_EQ(s.fa.stats(1).refusals, 0u);
    EXPECT_TRUE(s.fa.check_invariants());
}

TEST(FrameAllocator, NoFallbackWithoutPermission) {
    Pool s(2, 1);
    s.add(0, 0, 8);
    s.add(1, 100, 8);
    ASSERT_TRUE(s.fa.configure(0, config({1}, 0, false)).has_value());
    for (int i = 0; i < 8; ++i) ASSERT_TRUE(s.fa.alloc(0, 0).has_value());
    EXPECT_EQ(s.fa.alloc(0, 0).error(), Error::NoMemory);
    EXPECT_EQ(s.fa.alloc_contiguous(0, 1, 1).error(), Error::NoMemory);
    EXPECT_EQ(s.fa.stats(1).used_frames, 0u);
    EXPECT_EQ(s.fa.stats(0).refusals, 2u);
}

TEST(FrameAllocator, QuotaCountsFramesInGuestUseExactly) {
    Pool s(2, 2);
    s.add(0, 0, 100);
    s.add(1, 100, 100);
    // Cached frames do not count: fill cpu 0's cache, then set the quota.
    std::vector<GuestFrame> held;
    for (int i = 0; i < 5; ++i) held.push_back(s.fa.alloc(0, 0)->frame);
    for (auto f : held) ASSERT_TRUE(s.fa.free(0, f).has_value());
    held.clear();
    ASSERT_GT(s.fa.stats(0).cached_frames, 0u);
    ASSERT_TRUE(s.fa.configure(0, config({}, 10)).has_value());
    for (int i = 0; i < 8; ++i) held.push_back(s.fa.alloc(i % 2, 0)->frame);
    auto run = s.fa.alloc_contiguous(0, 2, 2);  // contiguous frames count too
    ASSERT_TRUE(run.has_value());
    EXPECT_EQ(s.fa.stats(0).used_frames, 10u);
    EXPECT_EQ(s.fa.alloc(1, 0).error(), Error::NoMemory);
    EXPECT_EQ(s.fa.alloc_contiguous(0, 1, 1).error(), Error::NoMemory);
    EXPECT_EQ(s.fa.stats(0).quota_refusals, 2u);
    EXPECT_EQ(s.fa.stats(0).refusals, 2u);
    // The node's cached frames went back to the pool when cpu 0 used the node under the quota.
    EXPECT_EQ(s.fa.stats(0).cached_frames, 0u);
    ASSERT_TRUE(s.fa.free(1, held.back()).has_value());
    held.pop_back();
    EXPECT_TRUE(s.fa.alloc(1, 0).has_value());
    // With a fallback, the quota sends requests to the next node.
    ASSERT_TRUE(s.fa.configure(0, config({1}, 10)).has_value());
    auto r = s.fa.alloc(0, 0);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->node, 1u);
    EXPECT_EQ(s.fa.stats(0).used_frames, 10u);
    // A quota on the fallback node limits what it pays for others.
    ASSERT_TRUE(s.fa.configure(1, config({}, 1)).has_value());
    EXPECT_EQ(s.fa.alloc(0, 0).error(), Error::NoMemory);
    EXPECT_EQ(s.fa.stats(1).quota_refusals, 1u);
    EXPECT_TRUE(s.fa.check_invariants());
    expect_balanced(s.fa, 0);
    expect_balanced(s.fa, 1);
}

TEST(FrameAllocator, ContiguousRunsAreAlignedAndFreedAllOrNothing) {
    Pool s(2, 1, 4096);
    s.add(0, 0x1003, 1500);  // an unaligned start: the aligned runs lie inside
    s.add(1, 0x2000, 512);
    EXPECT_EQ(s.fa.alloc_contiguous(0, 0, 1).error(), Error::InvalidParam);
    EXPECT_EQ(s.fa.alloc_contiguous(0, 1, 3).error(), Error::InvalidParam);
    EXPECT_EQ(s.fa.alloc_contiguous(0, 1, 0).error(), Error::InvalidParam);
    EXPECT_EQ(s.fa.alloc_contiguous(2, 1, 1).error(), Error::InvalidParam);
    EXPECT_EQ(s.fa.alloc_contiguous(0, 1, size_t(1) << 52).error(), Error::InvalidParam);  // align overflows
    EXPECT_EQ(s.fa.alloc_contiguous(0, SIZE_MAX, 1).error(), Error::NoMemory);
    EXPECT_EQ(s.fa.alloc_contiguous(0, 1, size_t(1) << 40).error(), Error::NoMemory);
    auto big = s.fa.alloc_contiguous(0, 512, 512);  // a 2 MiB page
    ASSERT_TRUE(big.has_value());
    EXPECT_EQ(big->frame.number() % 512, 0u);
    EXPECT_EQ(big->node, 0u);
    EXPECT_EQ(s.fa.stats(0).used_frames, 512u);
    EXPECT_EQ(s.fa.alloc_contiguous(0, 1024, 512).error(), Error::NoMemory);
    // free_contiguous over a run with a free frame: NotAllocated, nothing changes.
    ASSERT_TRUE(s.fa.free(0, big->frame + 7).has_value());
    EXPECT_EQ(s.fa.free_contiguous(big->frame, 512).error(), Error::NotAllocated);
    EXPECT_EQ(s.fa.stats(0).used_frames, 511u);
    EXPECT_TRUE(s.fa.check_invariants());
    ASSERT_TRUE(s.fa.free_contiguous(big->frame, 7).has_value());
    ASSERT_TRUE(s.fa.free_contiguous(big->frame + 8, 504).has_value());
    EXPECT_EQ(s.fa.stats(0).used_frames, 0u);
    // Runs crossing into another node's range are never one allocation.
    auto edge = s.fa.alloc_contiguous(1, 512, 512);
    ASSERT_TRUE(edge.has_value());
    EXPECT_EQ(s.fa.free_contiguous(GuestFrame(0x1fff), 2).error(), Error::NotAllocated);
    EXPECT_EQ(s.fa.free_contiguous(GuestFrame(0x2200), 1).error(), Error::NotAllocated);  // outside
    ASSERT_TRUE(s.fa.free_contiguous(edge->frame, 512).has_value());
    EXPECT_TRUE(s.fa.check_invariants());
}

TEST(FrameAllocator, FreeContiguousSpansAdjacentRangesOfOneNode) {
    Pool s(1, 1);
    s.add(0, 0, 32);
    s.add(0, 32, 32);
    std::vector<GuestFrame> all;
    for (int i = 0; i < 64; ++i) all.push_back(s.fa.alloc_contiguous(0, 1, 1)->frame);
    EXPECT_TRUE(s.fa.free_contiguous(GuestFrame(30), 4).has_value());
    EXPECT_EQ(s.fa.stats(0).used_frames, 60u);
    EXPECT_EQ(s.fa.free_contiguous(GuestFrame(28), 4).error(), Error::NotAllocated);
    EXPECT_EQ(s.fa.stats(0).used_frames, 60u);  // 28 and 29 stayed in use
    EXPECT_TRUE(s.fa.check_invariants());
    EXPECT_TRUE(s.fa.free(0, GuestFrame(28)).has_value());
}

TEST(FrameAllocator, FailedFreeContiguousRestoresEarlierRanges) {
    Pool s(1, 1);
    s.add(0, 0, 32);
    s.add(0, 32, 32);
    for (int i = 0; i < 64; ++i) ASSERT_TRUE(s.fa.alloc_contiguous(0, 1, 1).has_value());
    ASSERT_TRUE(s.fa.free(0, GuestFrame(40)).has_value());
    // [20, 32) is cleared, then [32, 44) fails on frame 40: [20, 32) is set again.
    EXPECT_EQ(s.fa.free_contiguous(GuestFrame(20), 24).error(), Error::NotAllocated);
    EXPECT_EQ(s.fa.stats(0).used_frames, 63u);
    EXPECT_TRUE(s.fa.check_invariants());
    EXPECT_TRUE(s.fa.free_contiguous(GuestFrame(20), 20).has_value());
    EXPECT_EQ(s.fa.stats(0).used_frames, 43u);
    EXPECT_TRUE(s.fa.check_invariants());
}

TEST(FrameAllocator, CacheRefillsAndSpillsInBatchesAndDrains) {
    Pool s(1, 2);
    s.add(0, 0, 200);
    auto first = s.fa.alloc(0, 0);
    ASSERT_TRUE(first.has_value());
    auto st = s.fa.stats(0);
    EXPECT_EQ(st.cached_frames, kBatch - 1);  // one refill of kBatch, one handed out
    EXPECT_EQ(st.free_frames, 200 - kBatch);
    std::vector<GuestFrame> held{first->frame};
    for (uint32_t i = 1; i < 100; ++i) held.push_back(s.fa.alloc(0, 0)->frame);
    // Frees overflow the cache: it spills kBatch at a time, never holding more than kCacheFrames.
    for (auto f : held) {
        ASSERT_TRUE(s.fa.free(0, f).has_value());
        ASSERT_LE(s.fa.stats(0).cached_frames, kCache);
    }
    EXPECT_GT(s.fa.stats(0).cached_frames, 0u);
    EXPECT_TRUE(s.fa.check_invariants());
    s.fa.drain(1);  // another cpu's drain leaves cpu 0's cache alone
    EXPECT_GT(s.fa.stats(0).cached_frames, 0u);
    s.fa.drain(0);
    st = s.fa.stats(0);
    EXPECT_EQ(st.cached_frames, 0u);
    EXPECT_EQ(st.free_frames, 200u);
    s.fa.drain(5);  // no such cpu: nothing
    EXPECT_TRUE(s.fa.check_invariants());
}

TEST(FrameAllocator, FramesInAnotherCpusCacheAreInvisibleUntilDrained) {
    Pool s(1, 2);
    s.add(0, 0, 40);
    std::vector<GuestFrame> held;
    for (int i = 0; i < 40; ++i) held.push_back(s.fa.alloc(0, 0)->frame);
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(s.fa.free(0, held[size_t(i)]).has_value());
    EXPECT_EQ(s.fa.stats(0).cached_frames, 10u);
    EXPECT_EQ(s.fa.alloc(1, 0).error(), Error::NoMemory);  // documented: cpu 0's cache holds them
    s.fa.drain(0);
    EXPECT_TRUE(s.fa.alloc(1, 0).has_value());
    EXPECT_TRUE(s.fa.check_invariants());
}

TEST(FrameAllocator, ClaimTakesExactlyTheGivenFramesAllOrNothing) {
    Pool s(2, 1, 4096);
    EXPECT_EQ(Frames().claim(GuestFrame(1), 1).error(), Error::BadState);
    s.add(0, 0x1000, 1024);
    s.add(0, 0x1400, 512);  // adjacent range of the same node
    s.add(1, 0x2000, 512);
    EXPECT_EQ(s.fa.claim(GuestFrame(0x1000), 0).error(), Error::InvalidParam);
    EXPECT_EQ(s.fa.claim(GuestFrame(GuestFrame::kMaxNumber), 2).error(), Error::InvalidParam);
    EXPECT_EQ(s.fa.claim(GuestFrame(0x0fff), 1).error(), Error::OutOfRange);
    EXPECT_EQ(s.fa.claim(GuestFrame(0x15ff), 2).error(), Error::OutOfRange);  // past the end of node 0
    ASSERT_EQ(s.fa.claim(GuestFrame(0x1000), 512).value(), 0u);               // a 2 MiB block
    ASSERT_EQ(s.fa.claim(GuestFrame(0x13ff), 2).value(), 0u);                 // across the two ranges of node 0
    ASSERT_EQ(s.fa.claim(GuestFrame(0x2005), 1).value(), 1u);
    EXPECT_EQ(s.fa.claim(GuestFrame(0x11fe), 2).error(), Error::AlreadyExists);  // 0x11fe is taken
    EXPECT_EQ(s.fa.stats(0).used_frames, 514u);
    EXPECT_EQ(s.fa.stats(1).used_frames, 1u);
    EXPECT_TRUE(s.fa.check_invariants());
    // Claimed frames are ordinary frames in use: freed like alloc_contiguous's, never handed out again.
    for (int i = 0; i < 1022; ++i) {
        auto g = s.fa.alloc_contiguous(0, 1, 1);
        ASSERT_TRUE(g.has_value());
        EXPECT_TRUE(g->frame.number() >= 0x1200 && g->frame.number() != 0x13ff && g->frame.number() != 0x1400);
    }
    EXPECT_EQ(s.fa.alloc_contiguous(0, 1, 1).error(), Error::NoMemory);
    ASSERT_TRUE(s.fa.free_contiguous(GuestFrame(0x1000), 512).has_value());
    ASSERT_TRUE(s.fa.free(0, GuestFrame(0x2005)).has_value());
    EXPECT_EQ(s.fa.free(0, GuestFrame(0x2005)).error(), Error::NotAllocated);
    // A quota bounds claims like allocations.
    ASSERT_TRUE(s.fa.configure(1, config({}, 4)).has_value());
    EXPECT_EQ(s.fa.claim(GuestFrame(0x2000), 5).error(), Error::NoMemory);
    EXPECT_TRUE(s.fa.claim(GuestFrame(0x2000), 4).has_value());
    EXPECT_EQ(s.fa.claim(GuestFrame(0x2010), 1).error(), Error::NoMemory);
    EXPECT_TRUE(s.fa.check_invariants());
}

// ---- model-based randomized test ----------------------------------------------------

struct ModelRun {
    static constexpr uint32_t kNodes = 3;
    static constexpr uint32_t kCpus = 3;

    explicit ModelRun(std::mt19937_64& r) : rng(r), s(kNodes, kCpus, 256, 4) {
        s.add(0, 0, 40);
        s.add(0, 64, 30);
        s.add(1, 200, 50);
        s.add(2, 300, 24);
        s.add(2, 324, 8);  // adjacent range of the same node
        for (uint32_t n = 0; n < kNodes; ++n) configs[n] = FrameNodeConfig{};
    }

    uint32_t node_of(uint64_t f) const { return f < 100 ? 0 : f < 300 ? 1 : 2; }
    uint64_t pick(uint64_t n) { return rng() % n; }
    static bool limited(const mm::FrameNodeStats& st) {
        return st.quota_frames != 0 && st.used_frames >= st.quota_frames;
    }
    std::vector<uint32_t> candidates(uint32_t pref) const {
        std::vector<uint32_t> c{pref};
        if (configs[pref].may_fall_back)
            for (uint32_t i = 0; i < configs[pref].fallback_count; ++i) c.push_back(configs[pref].fallback[i]);
        return c;
    }

    // `any_frame`: the request could use any free frame (one frame, no alignment).
    void grant_ok(uint32_t pref, const mm::FrameGrant& g, uint64_t n, bool any_frame,
                  const std::vector<mm::FrameNodeStats>& before) {
        ASSERT_EQ(node_of(g.frame.number()), g.node);
        for (uint64_t k = 0; k < n; ++k) {
            ASSERT_FALSE(owned.count(g.frame.number() + k)) << "frame handed out twice";
            owned[g.frame.number() + k] = g.node;
        }
        auto c = candidates(pref);
        auto it = std::find(c.begin(), c.end(), g.node);
        ASSERT_NE(it, c.end()) << "paid by a node outside the fallback order";
        for (auto e = c.begin(); any_frame && e != it; ++e)  // every earlier candidate was empty or at its quota
            ASSERT_TRUE(before[*e].free_frames == 0 || limited(before[*e])) << "skipped node " << *e;
        auto after = s.fa.stats(g.node);
        if (after.quota_frames != 0) {
            ASSERT_LE(after.used_frames, after.quota_frames);
        }
    }
    void refusal_ok(uint32_t pref, const std::vector<mm::FrameNodeStats>& before) {
        for (uint32_t n : candidates(pref))
            ASSERT_TRUE(before[n].free_frames == 0 || limited(before[n])) << "refused with node " << n << " able";
    }

    std::vector<mm::FrameNodeStats> all_stats() const {
        std::vector<mm::FrameNodeStats> v;
        for (uint32_t n = 0; n < kNodes; ++n) v.push_back(s.fa.stats(n));
        return v;
    }

    void do_alloc() {
        uint32_t cpu = uint32_t(pick(kCpus));
        uint32_t node = uint32_t(pick(kNodes));
        auto before = all_stats();
        auto r = s.fa.alloc(cpu, node);
        if (r) return grant_ok(node, *r, 1, true, before);
        ASSERT_EQ(r.error(), Error::NoMemory);
        refusal_ok(node, before);
    }
    void do_alloc_contiguous() {
        uint32_t node = uint32_t(pick(kNodes));
        uint64_t n = uint64_t(1) << pick(4);
        uint64_t align = uint64_t(1) << pick(4);
        auto before = all_stats();
        auto r = s.fa.alloc_contiguous(node, n, align);
        if (!r) {
            ASSERT_EQ(r.error(), Error::NoMemory);
            return;
        }
        ASSERT_EQ(r->frame.number() % align, 0u);
        grant_ok(node, *r, n, n == 1 && align == 1, before);
    }
    void do_free() {
        if (owned.empty()) return;
        auto it = owned.begin();
        std::advance(it, pick(owned.size()));
        uint64_t f = it->first;
        if (pick(4) == 0) {  // a run of owned frames of one node, freed together
            uint64_t n = 1;
            while (n < 6 && owned.count(f + n) && owned.at(f + n) == it->second) ++n;
            ASSERT_TRUE(s.fa.free_contiguous(GuestFrame(f), n).has_value());
            for (uint64_t k = 0; k < n; ++k) owned.erase(f + k);
            return;
        }
        ASSERT_TRUE(s.fa.free(uint32_t(pick(kCpus)), GuestFrame(f)).has_value());
        owned.erase(it);
    }
    void do_bad_free() {
        uint64_t f = pick(400);
        if (owned.count(f)) return;
        ASSERT_EQ(s.fa.free(uint32_t(pick(kCpus)), GuestFrame(f)).error(), Error::NotAllocated);
        ASSERT_EQ(s.fa.free_contiguous(GuestFrame(f), 1 + pick(3)).error(), Error::NotAllocated);
    }
    void do_configure() {
        uint32_t node = uint32_t(pick(kNodes));
        FrameNodeConfig c;
        for (uint32_t n = 0; n < kNodes; ++n)
            if (n != node && pick(2)) c.fallback[c.fallback_count++] = n;
        c.may_fall_back = pick(3) != 0;
        c.quota_frames = pick(3) == 0 ? pick(40) : 0;
        ASSERT_TRUE(s.fa.configure(node, c).has_value());
        configs[node] = c;
    }

    // Ranges of the model: node 0 [0, 40) [64, 94); node 1 [200, 250); node 2 [300, 332).
    bool in_one_node(uint64_t f, uint64_t n) const {
        auto in = [](uint64_t x) {
            return x < 40 || (x >= 64 && x < 94) || (x >= 200 && x < 250) || (x >= 300 && x < 332);
        };
        for (uint64_t k = 0; k < n; ++k)
            if (!in(f + k) || node_of(f + k) != node_of(f)) return false;
        return true;
    }
    void do_claim() {
        for (uint32_t cpu = 0; cpu < kCpus; ++cpu) s.fa.drain(cpu);  // cached frames are not claimable
        uint64_t f = pick(400);
        uint64_t n = uint64_t(1) << pick(3);
        const uint32_t node = node_of(f);
        const auto st = s.fa.stats(node);
        auto r = s.fa.claim(GuestFrame(f), n);
        if (!in_one_node(f, n)) {
            ASSERT_FALSE(r.has_value());
            ASSERT_EQ(r.error(), Error::OutOfRange) << f << "+" << n;
            return;
        }
        bool taken = false;
        for (uint64_t k = 0; k < n; ++k) taken = taken || owned.count(f + k) != 0;
        if (st.quota_frames != 0 && st.used_frames + n > st.quota_frames) {
            ASSERT_FALSE(r.has_value());
            ASSERT_EQ(r.error(), Error::NoMemory);
            return;
        }
        if (taken) {
            ASSERT_FALSE(r.has_value());
            ASSERT_EQ(r.error(), Error::AlreadyExists);
            return;
        }
        ASSERT_TRUE(r.has_value()) << f << "+" << n;
        ASSERT_EQ(*r, node);
        for (uint64_t k = 0; k < n; ++k) owned[f + k] = node;
        ++claims;
    }

    void check() {
        ASSERT_TRUE(s.fa.check_invariants());
        std::map<uint32_t, uint64_t> used;
        for (auto [f, n] : owned) ++used[n];
        for (uint32_t n = 0; n < kNodes; ++n) {
            auto st = s.fa.stats(n);
            ASSERT_EQ(st.used_frames, used[n]) << "node " << n;
            ASSERT_EQ(st.total_frames, st.used_frames + st.cached_frames + st.free_frames);
            ASSERT_LE(st.cached_frames, uint64_t(kCpus) * kCache);
        }
    }

    void step() {
        switch (pick(10)) {
            case 0:
            case 1:
            case 2: do_alloc(); break;
            case 3: do_alloc_contiguous(); break;
            case 4:
            case 5:
            case 6: do_free(); break;
            case 7: do_bad_free(); break;
            case 8:
                if (pick(4) == 0) do_configure();
                if (pick(2) == 0) do_claim();
                break;
            default: s.fa.drain(uint32_t(pick(kCpus))); break;
        }
    }

    std::mt19937_64& rng;
    Pool s;
    FrameNodeConfig configs[kNodes];
    std::map<uint64_t, uint32_t> owned;  // frame -> node, frames in guest use
    uint64_t claims = 0;                 // successful claims
};

TEST(FrameAllocatorModel, RandomOperationsMatchTheModel) {
    uint64_t seed = pv::test::test_seed(0xf7a3e5);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    uint64_t claims = 0;
    for (int round = 0; round < 8; ++round) {
        ModelRun run(rng);
        for (int op = 0; op < 1500; ++op) {
            ASSERT_NO_FATAL_FAILURE(run.step()) << "round " << round << " op " << op;
            ASSERT_NO_FATAL_FAILURE(run.check()) << "round " << round << " op " << op;
        }
        claims += run.claims;
    }
    EXPECT_GT(claims, 0U);  // the model reached successful claims, not only refusals
}

// ---- threads ---------------------------------------------------------------------

TEST(FrameAllocatorThreads, EachCpuOnItsOwnThreadNeverSharesAFrame) {
    constexpr uint32_t kThreads = 4;
    constexpr uint64_t kPerNode = 256;
    Pool s(2, kThreads);
    s.add(0, 0, kPerNode);
    s.add(1, kPerNode, kPerNode);
    ASSERT_TRUE(s.fa.configure(0, config({1})).has_value());
    ASSERT_TRUE(s.fa.configure(1, config({0})).has_value());
    std::vector<std::atomic<int>> owner(2 * kPerNode);
    for (auto& o : owner) o.store(-1);
    std::atomic<bool> bad{false};
    std::atomic<bool> done{false};
    uint64_t seed = pv::test::test_seed(0x7e4d);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    auto claim = [&](uint64_t f, int t) {
        int expected = -1;
        if (!owner[f].compare_exchange_strong(expected, t)) bad = true;
    };
    auto release = [&](uint64_t f, int t) {
        int expected = t;
        if (!owner[f].compare_exchange_strong(expected, -1)) bad = true;
    };
    auto worker = [&](uint32_t cpu) {
        std::mt19937_64 rng(seed + cpu);
        std::vector<std::pair<uint64_t, uint64_t>> held;  // (first, count)
        int t = int(cpu);
        for (int i = 0; i < 20000 && !bad; ++i) {
            uint64_t op = rng() % 8;
            if (op < 4 || held.empty()) {
                auto r =
                    op == 3 ? s.fa.alloc_contiguous(uint32_t(rng() % 2), 4, 4) : s.fa.alloc(cpu, uint32_t(rng() % 2));
                if (!r) continue;
                uint64_t n = op == 3 ? 4 : 1;
                for (uint64_t k = 0; k < n; ++k) claim(r->frame.number() + k, t);
                held.emplace_back(r->frame.number(), n);
                continue;
            }
            size_t j = size_t(rng() % held.size());
            auto [f, n] = held[j];
            held[j] = held.back();
            held.pop_back();
            for (uint64_t k = 0; k < n; ++k) release(f + k, t);
            bool ok =
                n == 1 ? s.fa.free(cpu, GuestFrame(f)).has_value() : s.fa.free_contiguous(GuestFrame(f), n).has_value();
            if (!ok) bad = true;
        }
        for (auto [f, n] : held) {
            for (uint64_t k = 0; k < n; ++k) release(f + k, t);
            for (uint64_t k = 0; k < n; ++k)
                if (!s.fa.free(cpu, GuestFrame(f + k))) bad = true;
        }
        s.fa.drain(cpu);
    };
    std::thread reader([&] {  // stats are readable at any time
        while (!done) {
            for (uint32_t n = 0; n < 2; ++n)
                if (s.fa.stats(n).total_frames != kPerNode) bad = true;
        }
    });
    std::vector<std::thread> threads;
    for (uint32_t c = 0; c < kThreads; ++c) threads.emplace_back(worker, c);
    for (auto& th : threads) th.join();
    done = true;
    reader.join();
    EXPECT_FALSE(bad.load());
    EXPECT_TRUE(s.fa.check_invariants());
    for (uint32_t n = 0; n < 2; ++n) {
        auto st = s.fa.stats(n);
        EXPECT_EQ(st.used_frames, 0u);
        EXPECT_EQ(st.cached_frames, 0u);
        EXPECT_EQ(st.free_frames, kPerNode);
    }
}

TEST(FrameAllocatorThreads, RacingFreesOfOneFrameExactlyOneWins) {
    constexpr uint64_t kFrames = 512;
    Pool s(1, 2);
    s.add(0, 0, kFrames);
    for (int round = 0; round < 20; ++round) {
        std::vector<GuestFrame> frames;
        for (uint64_t i = 0; i < kFrames; ++i) frames.push_back(s.fa.alloc_contiguous(0, 1, 1)->frame);
        std::vector<std::atomic<int>> wins(kFrames);
        std::atomic<int> go{0};
        auto racer = [&](uint32_t cpu) {
            go.fetch_add(1);
            while (go.load() < 2) {
            }
            for (auto f : frames)
                if (s.fa.free(cpu, f)) wins[f.number()].fetch_add(1);
            s.fa.drain(cpu);
        };
        std::thread a(racer, 0);
        std::thread b(racer, 1);
        a.join();
        b.join();
        for (uint64_t f = 0; f < kFrames; ++f) ASSERT_EQ(wins[f].load(), 1) << "frame " << f << " round " << round;
        ASSERT_TRUE(s.fa.check_invariants());
        ASSERT_EQ(s.fa.stats(0).free_frames, kFrames);
    }
}

}  // namespace
