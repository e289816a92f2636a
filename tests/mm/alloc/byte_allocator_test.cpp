// One typed suite over every byte allocator (Buddy, SlabHeap, Tlsf; checked and
// unchecked): the mm::ByteAllocator contract, plus a model-based randomized churn.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "mm/alloc/allocator.h"
#include "mm/alloc/buddy.h"
#include "mm/alloc/slab_heap.h"
#include "mm/alloc/tlsf.h"
#include "tests/mm/alloc/byte_alloc_support.h"
#include "tests/support/seed.h"

namespace {

using mm::Error;
using pv::test::Arena;

static_assert(mm::ByteAllocator<mm::Buddy<>>);
static_assert(mm::ByteAllocator<mm::SlabHeap<>>);
static_assert(mm::ByteAllocator<mm::Tlsf<>>);

template <class A>
class ByteAllocatorTest : public testing::Test {
protected:
    std::unique_ptr<A> m_alloc = std::make_unique<A>();
    A& a() { return *m_alloc; }

    void expect_stats() {
        EXPECT_EQ(a().used_bytes() + a().available_bytes(), a().total_bytes());
        EXPECT_LE(a().used_bytes(), a().total_bytes());
    }
};

using AllocatorTypes = testing::Types<mm::Buddy<>, mm::SlabHeap<>, mm::Tlsf<>, mm::Buddy<5, 47, false>,
                                      mm::SlabHeap<false>, mm::Tlsf<false>>;
TYPED_TEST_SUITE(ByteAllocatorTest, AllocatorTypes);

bool in_span(const void* p, std::size_t size, std::span<std::byte> s) {
    auto a = reinterpret_cast<std::uintptr_t>(p);
    auto b = reinterpret_cast<std::uintptr_t>(s.data());
    return a >= b && a + size <= b + s.size();
}

TYPED_TEST(ByteAllocatorTest, AlignmentSweep) {
    Arena arena(2 << 20);
    ASSERT_TRUE(this->a().init(arena.span()));
    for (std::size_t size : {1UL, 24UL, 100UL, 4096UL, 5000UL}) {
        for (std::size_t align = 1; align <= 64 * 1024; align *= 2) {
            SCOPED_TRACE(testing::Message() << "size " << size << " align " << align);
            auto r = this->a().alloc(size, align);
            ASSERT_TRUE(r.has_value());
            EXPECT_EQ(reinterpret_cast<std::uintptr_t>(*r) % align, 0U);
            EXPECT_TRUE(in_span(*r, size, arena.span()));
            pv::test::fill_pattern(*r, size, align);
            EXPECT_TRUE(pv::test::check_pattern(*r, size, align));
            EXPECT_GE(this->a().used_bytes(), size);
            this->expect_stats();
            ASSERT_TRUE(this->a().check_invariants());
            ASSERT_TRUE(this->a().dealloc(*r, size, align));
            EXPECT_EQ(this->a().used_bytes(), 0U);
            ASSERT_TRUE(this->a().check_invariants());
        }
    }
}

TYPED_TEST(ByteAllocatorTest, ExhaustionAndRecovery) {
    Arena arena(1 << 20);
    ASSERT_TRUE(this->a().init(arena.span()));
    for (std::size_t size : {64UL, 1000UL, 4096UL, 20000UL}) {
        SCOPED_TRACE(testing::Message() << "size " << size);
        std::vector<std::size_t> counts;
        for (int round = 0; round < 2; ++round) {
            std::vector<void*> live;
            for (;;) {
                auto r = this->a().alloc(size, 8);
                if (!r) {
                    EXPECT_EQ(r.error(), Error::NoMemory);
                    break;
                }
                live.push_back(*r);
                ASSERT_LT(live.size(), arena.size() / size + 1);
            }
            EXPECT_GT(live.size(), arena.size() / size / 4);  // sanity: most of the arena is usable
            this->expect_stats();
            ASSERT_TRUE(this->a().check_invariants());
            std::mt19937_64 rng(round);
            std::shuffle(live.begin(), live.end(), rng);
            for (void* p : live) ASSERT_TRUE(this->a().dealloc(p, size, 8));
            EXPECT_EQ(this->a().used_bytes(), 0U);
            ASSERT_TRUE(this->a().check_invariants());
            counts.push_back(live.size());
        }
        EXPECT_EQ(counts[0], counts[1]);
    }
}

TYPED_TEST(ByteAllocatorTest, StatisticsExactAfterEveryOperation) {
    Arena arena(1 << 20);
    ASSERT_TRUE(this->a().init(arena.span()));
    const std::size_t total = this->a().total_bytes();
    EXPECT_GT(total, arena.size() / 2);
    EXPECT_LE(total, arena.size());
    EXPECT_EQ(this->a().used_bytes(), 0U);
    std::vector<std::pair<void*, std::size_t>> live;
    std::size_t requested = 0;
    for (std::size_t i = 1; i <= 64; ++i) {
        std::size_t size = i * 37 % 6000 + 1;
        auto r = this->a().alloc(size, 16);
        ASSERT_TRUE(r.has_value());
        live.emplace_back(*r, size);
        requested += size;
        EXPECT_GE(this->a().used_bytes(), requested);
        EXPECT_EQ(this->a().total_bytes(), total);
        this->expect_stats();
    }
    while (!live.empty()) {
        std::size_t before = this->a().used_bytes();
        ASSERT_TRUE(this->a().dealloc(live.back().first, live.back().second, 16));
        requested -= live.back().second;
        live.pop_back();
        EXPECT_LT(this->a().used_bytes(), before);
        EXPECT_GE(this->a().used_bytes(), requested);
        this->expect_stats();
    }
    EXPECT_EQ(this->a().used_bytes(), 0U);
    EXPECT_EQ(this->a().available_bytes(), total);
}

TYPED_TEST(ByteAllocatorTest, OverlappingAddMemoryIsRejected) {
    Arena arena(1 << 20);
    ASSERT_TRUE(this->a().init(arena.span(256 * 1024, 256 * 1024)));
    const std::size_t total = this->a().total_bytes();
    for (auto [off, len] : {std::pair{256UL * 1024, 256UL * 1024},
                            {200UL * 1024, 100UL * 1024},
                            {500UL * 1024, 100UL * 1024},
                            {300UL * 1024, 16UL},
                            {0UL, 1UL << 20}}) {
        SCOPED_TRACE(testing::Message() << "offset " << off << " length " << len);
        auto s = this->a().add_memory(arena.span(off, len));
        ASSERT_FALSE(s.has_value());
        EXPECT_EQ(s.error(), Error::MemoryOverlap);
        EXPECT_EQ(this->a().total_bytes(), total);
    }
    // Adjacent on both sides is fine.
    EXPECT_TRUE(this->a().add_memory(arena.span(0, 256 * 1024)));
    EXPECT_TRUE(this->a().add_memory(arena.span(512 * 1024, 256 * 1024)));
    EXPECT_GT(this->a().total_bytes(), total);
    EXPECT_TRUE(this->a().check_invariants());
}

TYPED_TEST(ByteAllocatorTest, DoubleAndForeignFreeAreNotAllocated) {
    Arena arena(1 << 20);
    ASSERT_TRUE(this->a().init(arena.span()));
    auto keep = this->a().alloc(200, 8);  // a live neighbour, so nothing coalesces away
    auto r = this->a().alloc(100, 8);
    ASSERT_TRUE(keep && r);
    ASSERT_TRUE(this->a().dealloc(*r, 100, 8));
    const std::size_t used = this->a().used_bytes();
    if constexpr (TypeParam::kIsChecked) {
        auto s = this->a().dealloc(*r, 100, 8);
        ASSERT_FALSE(s.has_value());
        EXPECT_EQ(s.error(), Error::NotAllocated);
        // An interior pointer of a live block.
        auto big = this->a().alloc(8192, 8);
        ASSERT_TRUE(big);
        auto* interior = static_cast<std::byte*>(*big) + 4096;
        EXPECT_EQ(this->a().dealloc(interior, 64, 8).error(), Error::NotAllocated);
        ASSERT_TRUE(this->a().dealloc(*big, 8192, 8));
    }
    {  // every variant finds a foreign pointer without dereferencing it
        int on_stack = 0;
        auto s = this->a().dealloc(&on_stack, 64, 8);
        ASSERT_FALSE(s.has_value());
        EXPECT_EQ(s.error(), Error::NotAllocated);
        EXPECT_EQ(this->a().dealloc(&on_stack, 1 << 20, 8).error(), Error::NotAllocated);
    }
    EXPECT_EQ(this->a().used_bytes(), used);
    EXPECT_TRUE(this->a().check_invariants());
    ASSERT_TRUE(this->a().dealloc(*keep, 200, 8));
    EXPECT_EQ(this->a().used_bytes(), 0U);
}

TYPED_TEST(ByteAllocatorTest, InvalidParameters) {
    Arena arena(1 << 20);
    EXPECT_EQ(this->a().init({}).error(), Error::InvalidParam);
    ASSERT_TRUE(this->a().init(arena.span(0, 512 * 1024)));
    EXPECT_EQ(this->a().init(arena.span(512 * 1024)).error(), Error::BadState);
    EXPECT_EQ(this->a().add_memory({}).error(), Error::InvalidParam);
    EXPECT_EQ(this->a().alloc(0, 8).error(), Error::InvalidParam);
    EXPECT_EQ(this->a().alloc(8, 0).error(), Error::InvalidParam);
    EXPECT_EQ(this->a().alloc(8, 3).error(), Error::InvalidParam);
    EXPECT_EQ(this->a().alloc(8, 48).error(), Error::InvalidParam);
    EXPECT_EQ(this->a().alloc((std::size_t(1) << 62) + 1, 8).error(), Error::InvalidParam);
    EXPECT_EQ(this->a().alloc(8, std::size_t(1) << 63).error(), Error::InvalidParam);
    EXPECT_EQ(this->a().alloc(std::size_t(1) << 40, 8).error(), Error::NoMemory);
    EXPECT_EQ(this->a().alloc(8, std::size_t(1) << 40).error(), Error::NoMemory);
    auto r = this->a().alloc(64, 8);
    ASSERT_TRUE(r);
    EXPECT_EQ(this->a().dealloc(*r, 0, 8).error(), Error::InvalidParam);
    EXPECT_EQ(this->a().dealloc(*r, 64, 3).error(), Error::InvalidParam);
    EXPECT_TRUE(this->a().dealloc(*r, 64, 8));
    EXPECT_EQ(this->a().used_bytes(), 0U);
    EXPECT_TRUE(this->a().check_invariants());
}

TYPED_TEST(ByteAllocatorTest, RegionWhoseEndWouldWrapIsInvalid) {
    // Such a span cannot exist in a real address space; the allocator must still
    // reject it from its numbers alone, without touching the memory.
    auto* top = reinterpret_cast<std::byte*>(UINTPTR_MAX - 4095);
    EXPECT_EQ(this->a().add_memory(std::span<std::byte>(top, 8192)).error(), Error::InvalidParam);
    EXPECT_EQ(this->a().total_bytes(), 0U);
}

// Regions too small for the allocator's metadata plus one minimum block are
// InvalidParam (documented in each header) and leave the allocator untouched.
TYPED_TEST(ByteAllocatorTest, TinyRegionsAreInvalid) {
    Arena arena(256 * 1024);  // SlabHeap needs room for a 64 KiB-aligned chunk
    for (std::size_t len : {1UL, 7UL, 16UL, 24UL, 32UL}) {
        SCOPED_TRACE(testing::Message() << "length " << len);
        EXPECT_EQ(this->a().add_memory(arena.span(1, len)).error(), Error::InvalidParam);
        EXPECT_EQ(this->a().total_bytes(), 0U);
    }
    ASSERT_TRUE(this->a().init(arena.span()));
    EXPECT_TRUE(this->a().alloc(64, 8));
    EXPECT_TRUE(this->a().check_invariants());
}

TYPED_TEST(ByteAllocatorTest, UnalignedRegionStarts) {
    Arena arena(4 << 20);
    const std::size_t offsets[] = {1, 3, 7, 13, 4095};
    for (std::size_t i = 0; i < 5; ++i) {
        auto s = this->a().add_memory(arena.span(i * (768 << 10) + offsets[i], (700 << 10) + offsets[i]));
        ASSERT_TRUE(s.has_value());
    }
    std::vector<std::pair<void*, std::size_t>> live;
    for (std::size_t i = 0; i < 400; ++i) {
        std::size_t size = 16 + i * 131 % 9000;
        std::size_t align = std::size_t(1) << (i % 14);
        auto r = this->a().alloc(size, align);
        ASSERT_TRUE(r.has_value());
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(*r) % align, 0U);
        bool inside = false;
        for (std::size_t k = 0; k < 5; ++k)
            inside |= in_span(*r, size, arena.span(k * (768 << 10) + offsets[k], (700 << 10) + offsets[k]));
        EXPECT_TRUE(inside);
        pv::test::fill_pattern(*r, size, 7);
        live.emplace_back(*r, size);
    }
    ASSERT_TRUE(this->a().check_invariants());
    for (std::size_t i = 0; i < live.size(); ++i) {
        EXPECT_TRUE(pv::test::check_pattern(live[i].first, live[i].second, 7));
        ASSERT_TRUE(this->a().dealloc(live[i].first, live[i].second, std::size_t(1) << (i % 14)));
    }
    EXPECT_EQ(this->a().used_bytes(), 0U);
    EXPECT_TRUE(this->a().check_invariants());
}

TYPED_TEST(ByteAllocatorTest, SeveralRegionsAllServeRequests) {
    Arena arena(1 << 20);
    std::size_t total = 0;
    for (std::size_t i = 0; i < 4; ++i) {
        ASSERT_TRUE(this->a().add_memory(arena.span(i * (256 << 10), 256 << 10)));
        EXPECT_GT(this->a().total_bytes(), total);
        total = this->a().total_bytes();
    }
    std::vector<void*> live;
    std::vector<int> per_region(4);
    for (;;) {
        auto r = this->a().alloc(3000, 8);
        if (!r) break;
        live.push_back(*r);
        ++per_region[static_cast<std::size_t>(static_cast<std::byte*>(*r) - arena.data()) / (256 << 10)];
    }
    for (int n : per_region) EXPECT_GT(n, 0);
    ASSERT_TRUE(this->a().check_invariants());
    for (void* p : live) ASSERT_TRUE(this->a().dealloc(p, 3000, 8));
    EXPECT_EQ(this->a().used_bytes(), 0U);
    EXPECT_TRUE(this->a().check_invariants());
}

// ---- model-based randomized churn ----------------------------------------------

struct Live {
    std::size_t size;
    std::size_t align;
};

struct Churn {
    std::mt19937_64 rng;
    std::uint64_t seed;
    std::map<std::uintptr_t, Live> model;
    std::vector<std::span<std::byte>> regions;

    std::size_t random_size() {
        std::uint64_t k = rng() % 100;
        if (k < 70) return 1 + rng() % 128;
        if (k < 90) return 129 + rng() % 1920;
        if (k < 98) return 2049 + rng() % 14336;
        return 16385 + rng() % (112 * 1024);
    }
    std::size_t random_align() {
        std::uint64_t k = rng() % 10;
        if (k < 6) return std::size_t(1) << (rng() % 5);  // 1..16
        if (k < 9) return std::size_t(1) << (rng() % 9);  // up to 256
        return std::size_t(1) << (9 + rng() % 5);         // 512..8K
    }
    bool inside_regions(std::uintptr_t p, std::size_t size) const {
        for (auto r : regions)
            if (in_span(reinterpret_cast<void*>(p), size, r)) return true;
        return false;
    }
    // No live block overlaps [p, p+size).
    bool disjoint(std::uintptr_t p, std::size_t size) const {
        auto next = model.lower_bound(p);
        if (next != model.end() && next->first < p + size) return false;
        if (next != model.begin() && std::prev(next)->first + std::prev(next)->second.size > p) return false;
        return true;
    }
};

template <class A>
void run_churn(A& a, std::uint64_t seed, std::size_t ops) {
    SCOPED_TRACE(pv::test::seed_trace(seed));
    Arena arena(12 << 20);
    Churn c{std::mt19937_64(seed), seed, {}, {}};
    c.regions = {arena.span(0, 6 << 20), arena.span((6 << 20) + 5, (4 << 20) - 5),
                 arena.span((10 << 20) + 4096, 1 << 20)};
    ASSERT_TRUE(a.init(c.regions[0]));
    for (std::size_t i = 1; i < c.regions.size(); ++i) ASSERT_TRUE(a.add_memory(c.regions[i]));
    std::vector<std::uintptr_t> order;  // live addresses, for random picks
    for (std::size_t op = 0; op < ops; ++op) {
        bool do_alloc = order.empty() || c.rng() % 100 < (order.size() < 1500 ? 60U : 35U);
        if (do_alloc) {
            std::size_t size = c.random_size();
            std::size_t align = c.random_align();
            auto r = a.alloc(size, align);
            if (!r) {
                ASSERT_EQ(r.error(), Error::NoMemory);
            } else {
                auto p = reinterpret_cast<std::uintptr_t>(*r);
                ASSERT_EQ(p % align, 0U);
                ASSERT_TRUE(c.inside_regions(p, size));
                ASSERT_TRUE(c.disjoint(p, size)) << "overlapping live blocks at op " << op;
                pv::test::fill_pattern(*r, size, seed);
                c.model[p] = {size, align};
                order.push_back(p);
            }
        } else {
            std::size_t i = c.rng() % order.size();
            std::uintptr_t p = order[i];
            order[i] = order.back();
            order.pop_back();
            Live l = c.model.at(p);
            ASSERT_TRUE(pv::test::check_pattern(reinterpret_cast<void*>(p), l.size, seed)) << "at op " << op;
            ASSERT_TRUE(a.dealloc(reinterpret_cast<void*>(p), l.size, l.align));
            c.model.erase(p);
        }
        ASSERT_EQ(a.used_bytes() + a.available_bytes(), a.total_bytes());
        if (op % 1000 == 0) {
            ASSERT_TRUE(a.check_invariants()) << "at op " << op;
        }
    }
    ASSERT_TRUE(a.check_invariants());
    for (auto& [p, l] : c.model) {
        ASSERT_TRUE(pv::test::check_pattern(reinterpret_cast<void*>(p), l.size, seed));
        ASSERT_TRUE(a.dealloc(reinterpret_cast<void*>(p), l.size, l.align));
    }
    EXPECT_EQ(a.used_bytes(), 0U);
    ASSERT_TRUE(a.check_invariants());
}

TYPED_TEST(ByteAllocatorTest, RandomizedChurnAgainstModel) {
    // 4 seeds x 30k operations = 120k operations per allocator per run.
    for (std::uint64_t salt = 0; salt < 4; ++salt) {
        auto alloc = std::make_unique<TypeParam>();
        run_churn(*alloc, pv::test::test_seed(0xB17E0000 + salt), 30000);
        if (testing::Test::HasFatalFailure()) return;
    }
}

}  // namespace
