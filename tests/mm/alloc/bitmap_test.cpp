// The hierarchical bitmap core (mm/alloc/bitmap_core.h) against brute force, and
// the parts of BitmapPageAllocator that the typed suite does not reach:
// metadata sizing, init errors, the next-fit hint, large allocators.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "mm/alloc/bitmap.h"
#include "mm/alloc/bitmap_core.h"
#include "tests/support/seed.h"

namespace {

using mm::Error;
using mm::bitmap::BitmapCore;
using mm::bitmap::kNoBit;
using mm::bitmap::SummaryTree;

// ---- SummaryTree ----------------------------------------------------------------

size_t model_next(const std::set<size_t>& set_bits, size_t pos) {
    auto it = set_bits.lower_bound(pos);
    return it == set_bits.end() ? kNoBit : *it;
}

TEST(SummaryTree, FindNextMatchesBruteForceAcrossLevels) {
    uint64_t seed = pv::test::test_seed(0xb17);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    for (size_t bits : {size_t(1), size_t(63), size_t(64), size_t(65), size_t(4095), size_t(4097), size_t(262145)}) {
        SCOPED_TRACE(testing::Message() << "bits=" << bits);
        std::vector<uint64_t> words(SummaryTree::words_for(bits));
        SummaryTree tree;
        tree.bind(words.data(), bits);
        std::set<size_t> model;  // the set bits
        EXPECT_EQ(tree.find_next(0), kNoBit);
        for (int round = 0; round < 300; ++round) {
            // Sparse updates keep whole summary words empty, so the climb is exercised.
            size_t b = rng() % bits;
            bool v = rng() % 3 != 0;
            tree.assign_bit(b, v);
            if (v)
                model.insert(b);
            else
                model.erase(b);
            ASSERT_TRUE(tree.check());
            for (int q = 0; q < 20; ++q) {
                size_t pos = rng() % (bits + 2);
                ASSERT_EQ(tree.find_next(pos), model_next(model, pos)) << "pos=" << pos;
            }
            ASSERT_EQ(tree.find_next(0), model_next(model, 0));
        }
    }
}

TEST(SummaryTree, WordsForCoversEveryLevel) {
    EXPECT_EQ(SummaryTree::words_for(0), 1u);
    EXPECT_EQ(SummaryTree::words_for(64), 1u);
    EXPECT_EQ(SummaryTree::words_for(65), 3u);  // 2 base + 1 top
    EXPECT_EQ(SummaryTree::words_for(4096 * 64), 4096u + 64 + 1);
}

// ---- BitmapCore -------------------------------------------------------------------

struct CoreFixture {
    explicit CoreFixture(size_t capacity) : words(BitmapCore::words_for(capacity)), model(capacity) {
        core.bind(words.data(), capacity);
    }
    void fill(size_t b, size_t n, bool free) {
        core.fill(b, n, free);
        for (size_t i = b; i < b + n; ++i) model[i] = free;
    }
    // First b in [lo, hi - n] with (b + phase) % align == 0 and [b, b+n) free.
    size_t brute_run(size_t lo, size_t hi, size_t n, size_t align, size_t phase) const {
        for (size_t b = lo; b + n <= hi; ++b) {
            if ((b + phase) % align != 0) continue;
            if (std::all_of(model.begin() + long(b), model.begin() + long(b + n), [](bool f) { return f; })) return b;
        }
        return kNoBit;
    }
    std::vector<uint64_t> words;
    std::vector<bool> model;  // true = free
    BitmapCore core;
};

TEST(BitmapCore, StartsAllocatedAndCountsExactly) {
    CoreFixture f(1000);
    EXPECT_EQ(f.core.free_count(), 0u);
    EXPECT_EQ(f.core.find_run(0, 1000, 1, 1, 0), kNoBit);
    f.fill(10, 900, true);
    EXPECT_EQ(f.core.free_count(), 900u);
    EXPECT_EQ(f.core.count_free(0, 1000), 900u);
    EXPECT_EQ(f.core.count_free(5, 10), 5u);
    EXPECT_TRUE(f.core.check_invariants());
    EXPECT_EQ(f.core.find_first(0, 1000, true), 10u);
    EXPECT_EQ(f.core.find_last(0, 1000, true), 909u);
    EXPECT_EQ(f.core.find_first(10, 900, false), kNoBit);
    EXPECT_EQ(f.core.find_last(0, 500, false), 9u);
}

// find_run returns exactly the first fitting start (small and large runs, every
// alignment phase), under random, blocky and nearly full fills.
TEST(BitmapCore, FindRunIsFirstFit) {
    uint64_t seed = pv::test::test_seed(0xc02e);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    auto rand = [&](size_t lo, size_t hi) { return std::uniform_int_distribution<size_t>(lo, hi)(rng); };
    for (int layout = 0; layout < 40; ++layout) {
        size_t capacity = rand(1, 5000);
        CoreFixture f(capacity);
        f.fill(0, capacity, true);
        int density = int(rand(0, 100));
        for (size_t b = 0; b < capacity;) {  // runs of random length, allocated with probability density%
            size_t len = std::min(capacity - b, rand(1, layout % 2 ? 300 : 4));
            if (int(rand(0, 99)) < density) f.fill(b, len, false);
            b += len;
        }
        ASSERT_TRUE(f.core.check_invariants());
        ASSERT_EQ(f.core.free_count(), size_t(std::count(f.model.begin(), f.model.end(), true)));
        for (int q = 0; q < 300; ++q) {
            size_t lo = rand(0, capacity);
            size_t hi = rand(lo, capacity);
            size_t kind = rand(0, 2);
            size_t n = kind == 0 ? rand(128, 700) : kind == 1 ? rand(1, 16) : rand(1, 130);
            size_t align = size_t(1) << rand(0, 11);
            size_t phase = rand(0, align - 1);
            ASSERT_EQ(f.core.find_run(lo, hi, n, align, phase), f.brute_run(lo, hi, n, align, phase))
                << "capacity=" << capacity << " lo=" << lo << " hi=" << hi << " n=" << n << " align=" << align
                << " phase=" << phase;
        }
    }
}

TEST(BitmapCore, BlockStartsMatchesBruteForce) {
    std::mt19937_64 rng(pv::test::test_seed(0xb10c));
    for (int i = 0; i < 2000; ++i) {
        uint64_t w = rng();
        for (int k = int(rng() % 4); k > 0; --k) w |= rng();  // denser words hold more blocks
        for (unsigned shift = 0; shift <= 6; ++shift) {
            uint64_t size = uint64_t(1) << shift;
            uint64_t expect = 0;
            for (uint64_t start = 0; start < 64; start += size) {
                uint64_t mask = size == 64 ? ~uint64_t(0) : ((uint64_t(1) << size) - 1) << start;
                if ((w & mask) == mask) expect |= uint64_t(1) << start;
            }
            ASSERT_EQ(BitmapCore::block_starts(w, shift), expect) << std::hex << w << " shift " << shift;
        }
    }
    EXPECT_EQ(BitmapCore::block_starts(~uint64_t(0), 6), 1u);
}

TEST(BitmapCore, CapacityForWordsIsTheLargestThatFits) {
    for (size_t words : {size_t(4), size_t(5), size_t(6), size_t(100), size_t(16384 + 300), size_t(1) << 20}) {
        size_t cap = BitmapCore::capacity_for_words(words);
        EXPECT_LE(BitmapCore::words_for(cap), words);
        EXPECT_GT(BitmapCore::words_for(cap + 1), words);
    }
    EXPECT_EQ(BitmapCore::capacity_for_words(0), 0u);
    EXPECT_EQ(BitmapCore::capacity_for_words(BitmapCore::words_for(0) - 1), 0u);
}

TEST(BitmapCore, MetadataWordsAlignsTheSpan) {
    alignas(8) std::byte buf[64];
    uint64_t* words = nullptr;
    EXPECT_EQ(mm::bitmap::metadata_words(std::span(buf, 64), &words), 8u);
    EXPECT_EQ(static_cast<void*>(words), static_cast<void*>(buf));
    EXPECT_EQ(mm::bitmap::metadata_words(std::span(buf + 3, 61), &words), 7u);
    EXPECT_EQ(static_cast<void*>(words), static_cast<void*>(buf + 8));
    EXPECT_EQ(mm::bitmap::metadata_words(std::span(buf + 3, 4), &words), 0u);
}

// ---- BitmapPageAllocator specifics -------------------------------------------------

using Pages = mm::BitmapPageAllocator<mm::GuestPhysAddr>;
constexpr uint64_t kPg = Pages::kPageSize;

// metadata_bytes(total, segments) is enough for ANY split of `total` pages into
// `segments` segments at any addresses, even from a misaligned span.
TEST(BitmapPageAllocator, MetadataBytesSufficesForAnySplit) {
    uint64_t seed = pv::test::test_seed(0x3e7a);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    for (int trial = 0; trial < 200; ++trial) {
        size_t segments = 1 + rng() % 12;
        std::vector<uint64_t> sizes(segments);
        size_t total = 0;
        for (auto& s : sizes) total += (s = 1 + rng() % (trial % 2 ? 5 : 3000));
        size_t offset = rng() % 8;
        std::vector<std::byte> buf(Pages::metadata_bytes(total, segments) + offset);
        Pages alloc;
        ASSERT_TRUE(alloc.init(std::span(buf).subspan(offset), segments).has_value());
        uint64_t page = rng() % 64;
        for (uint64_t s : sizes) {
            ASSERT_TRUE(alloc.add_memory(mm::GuestPhysAddr(page * kPg), s * kPg).has_value());
            page += s + 1 + rng() % 100;
        }
        ASSERT_EQ(alloc.total_pages(), total);
        ASSERT_EQ(alloc.available_pages(), total);
        ASSERT_TRUE(alloc.check_invariants());
        EXPECT_EQ(alloc.add_memory(mm::GuestPhysAddr(page * kPg), kPg).error(), Error::NoMemory);
    }
}

TEST(BitmapPageAllocator, InitErrors) {
    std::vector<std::byte> buf(Pages::metadata_bytes(1000, 4));
    Pages a;
    EXPECT_EQ(a.init(std::span(buf), 0).error(), Error::InvalidParam);
    EXPECT_EQ(a.init(std::span(buf).first(16), 4).error(), Error::NoMemory);
    ASSERT_TRUE(a.init(std::span(buf), 4).has_value());
    EXPECT_EQ(a.init(std::span(buf), 4).error(), Error::AlreadyInitialized);
    // The bit space is the limit: a segment larger than the metadata can describe.
    EXPECT_EQ(a.add_memory(mm::GuestPhysAddr(0), 100'000 * kPg).error(), Error::NoMemory);
    EXPECT_TRUE(a.add_memory(mm::GuestPhysAddr(0), 1000 * kPg).has_value());
    EXPECT_TRUE(a.check_invariants());
}

TEST(BitmapPageAllocator, NextFitHintDoesNotReuseAtOnce) {
    std::vector<std::byte> buf(Pages::metadata_bytes(256, 1));
    Pages a;
    ASSERT_TRUE(a.init(std::span(buf), 1).has_value());
    ASSERT_TRUE(a.add_memory(mm::GuestPhysAddr(0), 256 * kPg).has_value());
    std::vector<uint64_t> seen;
    for (int i = 0; i < 256; ++i) {
        auto r = a.alloc_pages(1, kPg);
        ASSERT_TRUE(r.has_value());
        seen.push_back(r->value() / kPg);
        ASSERT_TRUE(a.dealloc_pages(*r, 1).has_value());
    }
    // Alloc/free pairs walk the whole segment before coming back.
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(std::unique(seen.begin(), seen.end()), seen.end());
    auto again = a.alloc_pages(1, kPg);
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ(again->value(), 0u);  // wrapped around to the start
}

// 2^20 pages at 90% random fill: single pages and large aligned runs are still
// found where they are (correctness at benchmark scale).
TEST(BitmapPageAllocator, MillionPagesAtNinetyPercent) {
    constexpr size_t kPages = size_t(1) << 20;
    uint64_t seed = pv::test::test_seed(0x90);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    std::vector<std::byte> buf(Pages::metadata_bytes(kPages, 1));
    Pages a;
    ASSERT_TRUE(a.init(std::span(buf), 1).has_value());
    ASSERT_TRUE(a.add_memory(mm::GuestPhysAddr(0x1'0000'0000), kPages * kPg).has_value());
    // Every page except the last 1024 (a free 4 MiB tail) taken with probability 0.9.
    size_t used = 0;
    for (size_t p = 0; p < kPages - 1024; ++p) {
        if (rng() % 10 == 0) continue;
        ASSERT_TRUE(a.alloc_pages_at(mm::GuestPhysAddr(0x1'0000'0000 + p * kPg), 1, kPg).has_value());
        ++used;
    }
    ASSERT_EQ(a.used_pages(), used);
    ASSERT_TRUE(a.check_invariants());
    for (int i = 0; i < 1000; ++i) {
        auto r = a.alloc_pages(1, kPg);
        ASSERT_TRUE(r.has_value());
        ASSERT_TRUE(a.is_allocated(*r));
    }
    auto big = a.alloc_pages(512, 2 << 20);  // only the free tail holds an aligned 2 MiB run
    ASSERT_TRUE(big.has_value());
    EXPECT_EQ(big->value() % (2 << 20), 0u);
    EXPECT_GE(big->value(), 0x1'0000'0000 + (kPages - 1024) * kPg);
    EXPECT_EQ(a.used_pages(), used + 1000 + 512);
    EXPECT_TRUE(a.check_invariants());
}

}  // namespace
