// The index math of the guest's `touch` workload (guest/programs/touch_order.h),
// run on the host: permutations are bijections, strides are fixed up to
// coprime ones, vCPU slices partition the sequence, the page map and the RAM
// map validation agree with simple reference models.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "guest/programs/touch_order.h"
#include "tests/support/seed.h"

namespace {

using namespace pv::guest::touch;
using pv::abi::BootInfo;
using pv::abi::RamKind;
using pv::abi::RamRange;
__extension__ typedef unsigned __int128 U128;

// Sizes around the edge cases: tiny, primes, powers of two and their neighbours.
const std::vector<uint64_t> kSizes = {1,   2,   3,    4,    5,    7,    8,    9,    13,   16,  17,
                                      31,  32,  33,   64,   97,   127,  128,  129,  255,  256, 257,
                                      509, 512, 1000, 1021, 1023, 1024, 1025, 4093, 4096, 4097};
// Permutations are also checked on larger domains.
const std::vector<uint64_t> kLargeSizes = {65521, 65536, 65537, 131'071};

std::vector<uint64_t> seeds_for(uint64_t salt) {
    std::vector<uint64_t> s = {0, 1, 0xFFFF'FFFF'FFFF'FFFFULL, 0x9E37'79B9'7F4A'7C15ULL};
    std::mt19937_64 rng(pv::test::test_seed(salt));
    for (int i = 0; i < 4; ++i) s.push_back(rng());
    return s;
}

// Every value in [0, n) exactly once.
::testing::AssertionResult is_permutation_of_n(const std::vector<uint64_t>& v, uint64_t n) {
    if (v.size() != n) return ::testing::AssertionFailure() << "size " << v.size() << " != " << n;
    std::vector<bool> seen(n, false);
    for (size_t i = 0; i < v.size(); ++i) {
        if (v[i] >= n) return ::testing::AssertionFailure() << "position " << i << " -> " << v[i] << " >= " << n;
        if (seen[v[i]]) return ::testing::AssertionFailure() << "position " << i << " repeats " << v[i];
        seen[v[i]] = true;
    }
    return ::testing::AssertionSuccess();
}

TEST(TouchPermutation, IsABijectionForManySizesAndSeeds) {
    for (uint64_t seed : seeds_for(1)) {
        SCOPED_TRACE(pv::test::seed_trace(seed));
        std::vector<uint64_t> sizes = kSizes;
        sizes.insert(sizes.end(), kLargeSizes.begin(), kLargeSizes.end());
        for (uint64_t n : sizes) {
            Permutation p(n, seed);
            ASSERT_EQ(p.size(), n);
            std::vector<uint64_t> image(n);
            for (uint64_t i = 0; i < n; ++i) image[i] = p(i);
            ASSERT_TRUE(is_permutation_of_n(image, n)) << "n = " << n;
        }
    }
}

TEST(TouchPermutation, ShufflesAndDependsOnTheSeed) {
    const uint64_t seed = pv::test::test_seed(2);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    const uint64_t n = 1000;
    Permutation a(n, seed);
    Permutation b(n, seed + 1);
    uint64_t fixed = 0, ascending_steps = 0, same_as_b = 0;
    for (uint64_t i = 0; i < n; ++i) {
        fixed += a(i) == i;
        same_as_b += a(i) == b(i);
        if (i + 1 < n) ascending_steps += a(i + 1) == a(i) + 1;
    }
    // A uniform permutation has about 1 of each; allow a wide margin.
    EXPECT_LT(fixed, n / 20);
    EXPECT_LT(ascending_steps, n / 20);
    EXPECT_LT(same_as_b, n / 20);
}

TEST(TouchPermutation, LargeDomainIsInjectiveOnASample) {
    const uint64_t seed = pv::test::test_seed(3);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    for (uint64_t n : {(uint64_t(1) << 40) + 12345, uint64_t(1) << 52, (uint64_t(1) << 62) + 1}) {
        Permutation p(n, seed);
        std::vector<uint64_t> in, out;
        for (int i = 0; i < 20000; ++i) in.push_back(rng() % n);
        std::sort(in.begin(), in.end());
        in.erase(std::unique(in.begin(), in.end()), in.end());
        for (uint64_t i : in) {
            out.push_back(p(i));
            ASSERT_LT(out.back(), n);
        }
        std::sort(out.begin(), out.end());
        EXPECT_EQ(std::adjacent_find(out.begin(), out.end()), out.end()) << "two indices map to one, n = " << n;
    }
}

TEST(TouchMath, MulmodMatchesWideArithmetic) {
    const uint64_t seed = pv::test::test_seed(4);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    for (int i = 0; i < 20000; ++i) {
        uint64_t m = rng() >> (rng() % 64);
        if (m == 0) m = 1;
        const uint64_t a = rng() % m, b = rng() % m;
        const auto want = static_cast<uint64_t>(static_cast<U128>(a) * b % m);
        ASSERT_EQ(mulmod(a, b, m), want) << a << " * " << b << " mod " << m;
    }
    EXPECT_EQ(mulmod(~uint64_t(0) - 1, ~uint64_t(0) - 1, ~uint64_t(0)), 1u);  // (-1)^2 mod m
}

TEST(TouchStride, IsTheFirstCoprimeAtOrAboveStrideModN) {
    for (uint64_t n : kSizes) {
        for (uint64_t stride : {uint64_t(0), uint64_t(1), uint64_t(2), uint64_t(6), uint64_t(512), n - 1, n, n + 1,
                                2 * n, ~uint64_t(0)}) {
            const uint64_t s = coprime_stride(stride, n);
            if (n == 1) {
                EXPECT_EQ(s, 0u);
                continue;
            }
            uint64_t want = stride % n == 0 ? 1 : stride % n;
            while (std::gcd(want, n) != 1) ++want;
            EXPECT_EQ(s, want) << "stride " << stride << " n " << n;
            EXPECT_GE(s, 1u);
            EXPECT_LT(s, n);
        }
    }
}

TEST(TouchSlice, SlicesPartitionTheSequence) {
    for (uint64_t n : kSizes) {
        for (uint32_t parts = 1; parts <= pv::layout::kMaxVcpus; ++parts) {
            uint64_t next = 0;
            for (uint32_t i = 0; i < parts; ++i) {
                const Slice s = slice_of(n, parts, i);
                ASSERT_EQ(s.begin, next) << "n " << n << " parts " << parts << " part " << i;
                EXPECT_TRUE(s.count == n / parts || s.count == n / parts + 1);
                if (i > 0) {
                    EXPECT_LE(s.count, slice_of(n, parts, i - 1).count);  // larger parts first
                }
                next += s.count;
            }
            ASSERT_EQ(next, n) << "n " << n << " parts " << parts;
        }
    }
    EXPECT_EQ(slice_of(~uint64_t(0), 32, 31).begin + slice_of(~uint64_t(0), 32, 31).count, ~uint64_t(0));
}

// What PageOrder::at must return, computed independently.
uint64_t reference_at(Order order, uint64_t n, uint64_t stride, const Permutation& perm, uint64_t pos) {
    switch (order) {
        case Order::Sequential: return pos;
        case Order::Random: return perm(pos);
        case Order::Descending: return n - 1 - pos;
        case Order::Strided: return static_cast<uint64_t>(static_cast<U128>(pos) * stride % n);
    }
    return 0;
}

TEST(TouchOrder, EveryOrderVisitsEachIndexOnceAndSlicesAgreeWithAt) {
    const uint64_t seed = pv::test::test_seed(5);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    for (uint64_t o = 0; o < kOrderCount; ++o) {
        const auto order = static_cast<Order>(o);
        for (uint64_t n : kSizes) {
            for (uint64_t stride : {uint64_t(0), uint64_t(3), uint64_t(1024), seed}) {
                PageOrder po(order, n, seed, stride);
                const uint64_t eff = coprime_stride(stride == 0 ? kDefaultStride : stride, n);
                ASSERT_EQ(po.stride(), eff);
                const Permutation perm(n, seed);
                std::vector<uint64_t> by_at(n);
                for (uint64_t p = 0; p < n; ++p) {
                    by_at[p] = po.at(p);
                    ASSERT_EQ(by_at[p], reference_at(order, n, eff, perm, p))
                        << order_name(order) << " n " << n << " pos " << p;
                }
                ASSERT_TRUE(is_permutation_of_n(by_at, n)) << order_name(order) << " n " << n << " stride " << stride;
                for (uint32_t parts : {1u, 2u, 3u, 7u, 32u}) {
                    std::vector<uint64_t> by_slices;
                    for (uint32_t i = 0; i < parts; ++i)
                        po.for_each(slice_of(n, parts, i), [&](uint64_t idx) { by_slices.push_back(idx); });
                    ASSERT_EQ(by_slices, by_at) << order_name(order) << " n " << n << " parts " << parts;
                }
            }
        }
    }
}

TEST(TouchOrder, SequentialSlicesAreContiguousHalves) {
    PageOrder po(Order::Sequential, 10, 0, 0);
    std::vector<uint64_t> first, second;
    po.for_each(slice_of(10, 2, 0), [&](uint64_t i) { first.push_back(i); });
    po.for_each(slice_of(10, 2, 1), [&](uint64_t i) { second.push_back(i); });
    EXPECT_EQ(first, (std::vector<uint64_t>{0, 1, 2, 3, 4}));
    EXPECT_EQ(second, (std::vector<uint64_t>{5, 6, 7, 8, 9}));
}

TEST(TouchPageMap, GpaOfMatchesAnExpandedModel) {
    const uint64_t seed = pv::test::test_seed(6);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    for (int round = 0; round < 50; ++round) {
        PageMap map;
        std::vector<uint64_t> model;  // page index -> gpa
        uint64_t gpa = pv::layout::kFreeRamStart;
        const uint32_t segs = 1 + rng() % pv::abi::kMaxRamRanges;
        for (uint32_t k = 0; k < segs; ++k) {
            gpa += (rng() % 4) * kPageSize;  // holes between ranges, sometimes none
            const uint64_t pages = 1 + rng() % 40;
            ASSERT_TRUE(map.add(gpa, pages));
            ASSERT_TRUE(map.check_invariants());
            for (uint64_t p = 0; p < pages; ++p) model.push_back(gpa + p * kPageSize);
            gpa += pages * kPageSize;
        }
        ASSERT_EQ(map.total(), model.size());
        ASSERT_EQ(map.segments(), segs);
        uint32_t hint = 0;
        for (uint64_t i = 0; i < model.size(); ++i) ASSERT_EQ(map.gpa_of(i, hint), model[i]) << "sequential " << i;
        for (int i = 0; i < 2000; ++i) {
            const uint64_t idx = rng() % model.size();
            ASSERT_EQ(map.gpa_of(idx, hint), model[idx]) << "random " << idx;
            ASSERT_LT(hint, map.segments());
        }
    }
}

TEST(TouchPageMap, RejectsEmptySegmentsAndOverflow) {
    PageMap map;
    EXPECT_FALSE(map.add(0x200'0000, 0));
    for (uint32_t k = 0; k < pv::abi::kMaxRamRanges; ++k) ASSERT_TRUE(map.add(0x200'0000 + k * 0x10'0000, 1));
    EXPECT_FALSE(map.add(0x1'0000'0000, 1));
    EXPECT_EQ(map.total(), pv::abi::kMaxRamRanges);
    EXPECT_TRUE(map.check_invariants());
}

BootInfo boot_with(std::initializer_list<RamRange> ranges, uint32_t nodes = 2) {
    BootInfo b{};
    b.node_count = nodes;
    for (const RamRange& r : ranges) b.ram[b.ram_count++] = r;
    return b;
}

const char* error_of(const BootInfo& b, uint32_t* index) { return ram_map_error(b, index); }

TEST(TouchRamMap, AcceptsAWellFormedMap) {
    uint32_t idx = 99;
    const uint64_t base = pv::layout::kFreeRamStart;
    EXPECT_EQ(error_of(boot_with({{base, 0x1000, 0, RamKind::Eager},
                                  {base + 0x1000, 0x2000, 1, RamKind::Demand},
                                  {0x1'0000'0000, 0x10'0000, 1, RamKind::ReadOnly}}),
                       &idx),
              nullptr);
    EXPECT_EQ(idx, 3u);
    EXPECT_EQ(error_of(boot_with({}, 0), &idx), nullptr);  // no map at all (an older VMM)
}

TEST(TouchRamMap, NamesTheBadRange) {
    const uint64_t base = pv::layout::kFreeRamStart;
    const RamRange good = {base, 0x1000, 0, RamKind::Eager};
    const uint64_t top = uint64_t(1) << 47;
    struct Case {
        RamRange bad;
        const char* why;
    } cases[] = {
        {{base + 0x1000, 0, 0, RamKind::Eager}, "empty range"},
        {{base + 0x1800, 0x1000, 0, RamKind::Eager}, "range not page aligned"},
        {{base + 0x1000, 0x1800, 0, RamKind::Eager}, "range not page aligned"},
        {{base, 0x1000, 0, RamKind::Eager}, "ranges not sorted or overlapping"},
        {{top - 0x1000, 0x2000, 0, RamKind::Eager}, "range beyond the user address space"},
        {{0xFFFF'FFFF'FFFF'F000ULL, 0x2000, 0, RamKind::Eager}, "range beyond the user address space"},
        {{base + 0x1000, 0x1000, 0, static_cast<RamKind>(0)}, "unknown range kind"},
        {{base + 0x1000, 0x1000, 0, static_cast<RamKind>(4)}, "unknown range kind"},
        {{base + 0x1000, 0x1000, 2, RamKind::Eager}, "range node >= node_count"},
    };
    for (const Case& c : cases) {
        uint32_t idx = 99;
        const char* why = error_of(boot_with({good, c.bad}), &idx);
        ASSERT_NE(why, nullptr) << c.why;
        EXPECT_STREQ(why, c.why);
        EXPECT_EQ(idx, 1u) << c.why;
    }
    uint32_t idx = 99;
    EXPECT_STREQ(error_of(boot_with({{base - 0x1000, 0x2000, 0, RamKind::Eager}}), &idx), "range below kFreeRamStart");
    EXPECT_EQ(idx, 0u);
    BootInfo too_many = boot_with({good});
    too_many.ram_count = pv::abi::kMaxRamRanges + 1;
    EXPECT_STREQ(error_of(too_many, &idx), "ram_count exceeds kMaxRamRanges");
    EXPECT_STREQ(error_of(boot_with({good}, 0), &idx), "node_count is 0");
}

TEST(TouchPattern, WordsOfAPageAreDistinctAndTheWrittenWordMovesWithThePage) {
    const uint64_t seed = pv::test::test_seed(7);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    const uint64_t gpa = pv::layout::kFreeRamStart + 5 * kPageSize;
    std::vector<uint64_t> words;
    for (uint64_t w = 0; w < kWordsPerPage; ++w) words.push_back(pattern_value(gpa, w, seed));
    std::sort(words.begin(), words.end());
    EXPECT_EQ(std::adjacent_find(words.begin(), words.end()), words.end());
    EXPECT_NE(pattern_base(gpa, seed), pattern_base(gpa + kPageSize, seed));
    EXPECT_NE(pattern_word_index(gpa), pattern_word_index(gpa + kPageSize));
    EXPECT_LT(pattern_word_index(gpa), kWordsPerPage);
}

}  // namespace
