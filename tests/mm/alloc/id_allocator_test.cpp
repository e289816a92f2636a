// BitmapIdAllocator (mm::IdAllocator): the same contract checks as the page
// allocator suite (alignment sweep, exhaustion, statistics, error codes, no
// change on failure) and a model-based randomized test against a std::set of IDs.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "mm/alloc/allocator.h"
#include "mm/alloc/id_allocator.h"
#include "tests/support/seed.h"

namespace {

using mm::BitmapIdAllocator;
using mm::Error;

static_assert(mm::IdAllocator<BitmapIdAllocator>);

class IdAllocTest : public ::testing::Test {
protected:
    void init(size_t size) {
        m_meta.assign(BitmapIdAllocator::metadata_bytes(size), std::byte{0});
        ASSERT_TRUE(m_ids.init(std::span(m_meta), size).has_value());
    }
    void expect_used(size_t used) {
        EXPECT_EQ(m_ids.used(), used);
        EXPECT_EQ(m_ids.available(), m_ids.size() - used);
        EXPECT_TRUE(m_ids.check_invariants());
    }
    std::vector<bool> snapshot() const {
        std::vector<bool> s;
        for (uint64_t id = 0; id < m_ids.size(); ++id) s.push_back(m_ids.is_allocated(id));
        return s;
    }
    std::vector<std::byte> m_meta;
    BitmapIdAllocator m_ids;
};

TEST_F(IdAllocTest, InitErrors) {
    BitmapIdAllocator fresh;
    EXPECT_TRUE(fresh.check_invariants());
    EXPECT_EQ(fresh.alloc_id(1, 1).error(), Error::NoMemory);
    EXPECT_EQ(fresh.alloc_fixed_id(0).error(), Error::OutOfRange);
    std::vector<std::byte> small(8);
    EXPECT_EQ(fresh.init(std::span(small), 1000).error(), Error::NoMemory);
    EXPECT_EQ(fresh.init(std::span(small), 0).error(), Error::InvalidParam);
    init(100);
    EXPECT_EQ(m_ids.init(std::span(m_meta), 100).error(), Error::AlreadyInitialized);
    EXPECT_EQ(m_ids.size(), 100u);
    expect_used(0);
}

TEST_F(IdAllocTest, AlignmentSweep) {
    init(4099);
    size_t pinned = 0;
    for (uint64_t id = 0; id < 2048; id += 29, ++pinned) ASSERT_TRUE(m_ids.alloc_fixed_id(id).has_value());
    for (size_t count = 1; count <= 600; ++count) {
        for (size_t align = 1; align <= 1024; align *= 2) {
            SCOPED_TRACE(testing::Message() << "count=" << count << " align=" << align);
            auto r = m_ids.alloc_id(count, align);
            ASSERT_TRUE(r.has_value());
            ASSERT_EQ(*r % align, 0u);
            ASSERT_LE(*r + count, m_ids.size());
            ASSERT_TRUE(m_ids.is_allocated(*r));
            ASSERT_TRUE(m_ids.is_allocated(*r + count - 1));
            ASSERT_EQ(m_ids.used(), pinned + count);
            ASSERT_TRUE(m_ids.check_invariants());
            ASSERT_TRUE(m_ids.dealloc_id(*r, count).has_value());
        }
    }
    expect_used(pinned);
}

TEST_F(IdAllocTest, ExhaustionAndRecoveryAtOddSizes) {
    for (size_t size : {size_t(1), size_t(63), size_t(64), size_t(65), size_t(1000)}) {
        SCOPED_TRACE(testing::Message() << "size=" << size);
        BitmapIdAllocator ids;
        std::vector<std::byte> meta(BitmapIdAllocator::metadata_bytes(size));
        ASSERT_TRUE(ids.init(std::span(meta), size).has_value());
        std::set<uint64_t> got;
        for (size_t i = 0; i < size; ++i) {
            auto r = ids.alloc_id(1, 1);
            ASSERT_TRUE(r.has_value());
            ASSERT_LT(*r, size);
            ASSERT_TRUE(got.insert(*r).second);
            ASSERT_EQ(ids.used(), i + 1);
        }
        EXPECT_EQ(ids.alloc_id(1, 1).error(), Error::NoMemory);
        for (uint64_t id : got) ASSERT_TRUE(ids.dealloc_id(id, 1).has_value());
        EXPECT_EQ(ids.available(), size);
        auto all = ids.alloc_id(size, 1);
        ASSERT_TRUE(all.has_value());
        EXPECT_EQ(*all, 0u);
        EXPECT_EQ(ids.alloc_id(1, 1).error(), Error::NoMemory);
        EXPECT_TRUE(ids.check_invariants());
    }
}

TEST_F(IdAllocTest, InvalidParametersAndAlignmentBeyondSize) {
    init(100);
    EXPECT_EQ(m_ids.alloc_id(0, 1).error(), Error::InvalidParam);
    EXPECT_EQ(m_ids.alloc_id(1, 0).error(), Error::InvalidParam);
    EXPECT_EQ(m_ids.alloc_id(1, 3).error(), Error::InvalidParam);
    EXPECT_EQ(m_ids.alloc_id(101, 1).error(), Error::NoMemory);
    auto zero = m_ids.alloc_id(1, 128);  // only ID 0 is a multiple of 128 below 100
    ASSERT_TRUE(zero.has_value());
    EXPECT_EQ(*zero, 0u);
    EXPECT_EQ(m_ids.alloc_id(1, 128).error(), Error::NoMemory);
    EXPECT_EQ(m_ids.alloc_id(1, size_t(1) << 63).error(), Error::NoMemory);
    EXPECT_EQ(m_ids.dealloc_id(0, 0).error(), Error::InvalidParam);
    expect_used(1);
}

TEST_F(IdAllocTest, FixedIds) {
    init(70);
    EXPECT_TRUE(m_ids.alloc_fixed_id(69).has_value());
    EXPECT_EQ(m_ids.alloc_fixed_id(69).error(), Error::NoMemory);
    EXPECT_EQ(m_ids.alloc_fixed_id(70).error(), Error::OutOfRange);
    EXPECT_EQ(m_ids.alloc_fixed_id(UINT64_MAX).error(), Error::OutOfRange);
    EXPECT_TRUE(m_ids.is_allocated(69));
    EXPECT_FALSE(m_ids.is_allocated(70));
    EXPECT_FALSE(m_ids.is_allocated(UINT64_MAX));
    auto r = m_ids.alloc_id(6, 1);  // 64..69 does not fit any more
    ASSERT_TRUE(r.has_value());
    EXPECT_LE(*r + 6, 69u);
    expect_used(7);
}

TEST_F(IdAllocTest, BadFreesAreNotAllocatedAndChangeNothing) {
    init(200);
    ASSERT_TRUE(m_ids.alloc_fixed_id(10).has_value());
    auto a = m_ids.alloc_id(20, 4);
    ASSERT_TRUE(a.has_value());
    auto before = snapshot();
    EXPECT_EQ(m_ids.dealloc_id(11, 1).error(), Error::NotAllocated);           // never allocated
    EXPECT_EQ(m_ids.dealloc_id(*a, 21).error(), Error::NotAllocated);          // one past the run
    EXPECT_EQ(m_ids.dealloc_id(199, 2).error(), Error::NotAllocated);          // past the end
    EXPECT_EQ(m_ids.dealloc_id(UINT64_MAX, 1).error(), Error::NotAllocated);   // far past the end
    EXPECT_EQ(m_ids.dealloc_id(10, UINT64_MAX).error(), Error::NotAllocated);  // wraps
    EXPECT_EQ(snapshot(), before);
    expect_used(21);
    ASSERT_TRUE(m_ids.dealloc_id(10, 1).has_value());
    EXPECT_EQ(m_ids.dealloc_id(10, 1).error(), Error::NotAllocated);  // double free
    EXPECT_TRUE(m_ids.dealloc_id(*a + 5, 10).has_value());            // a piece of a run
    expect_used(10);
}

void run_id_model(uint64_t seed, size_t ops) {
    std::mt19937_64 rng(seed);
    auto rand = [&](uint64_t lo, uint64_t hi) { return std::uniform_int_distribution<uint64_t>(lo, hi)(rng); };
    size_t size = rand(0, 3) == 0 ? rand(1, 130) : rand(131, 3000);
    std::vector<std::byte> meta(BitmapIdAllocator::metadata_bytes(size));
    BitmapIdAllocator ids;
    ASSERT_TRUE(ids.init(std::span(meta), size).has_value());
    std::set<uint64_t> model;
    auto allocated_in = [&](uint64_t start, uint64_t count) {
        size_t c = 0;
        for (auto it = model.lower_bound(start); it != model.end() && *it - start < count; ++it) ++c;
        return c;
    };
    auto fits = [&](uint64_t count, uint64_t align) {
        uint64_t gap = 0;
        for (auto it = model.begin();; ++it) {
            uint64_t gap_end = it == model.end() ? size : *it;
            uint64_t s = (gap + align - 1) / align * align;
            if (s < gap_end && gap_end - s >= count) return true;
            if (it == model.end()) return false;
            gap = *it + 1;
        }
    };
    auto random_count = [&]() -> uint64_t {
        uint64_t k = rand(0, 99);
        return k < 60 ? 1 : k < 90 ? rand(2, 16) : rand(17, 300);
    };
    std::vector<std::pair<uint64_t, uint64_t>> runs;
    for (size_t op = 0; op < ops; ++op) {
        bool grow = (op / 1500) % 2 == 0;
        uint64_t kind = rand(0, 99);
        if (kind < (grow ? 50u : 30u)) {
            uint64_t count = random_count();
            uint64_t align = uint64_t(1) << (rand(0, 2) == 0 ? rand(0, 12) : 0);
            auto r = ids.alloc_id(count, align);
            bool ok = fits(count, align);
            ASSERT_EQ(r.has_value(), ok) << "alloc_id " << count << " align " << align << " op " << op;
            if (!ok) {
                ASSERT_EQ(r.error(), Error::NoMemory);
                continue;
            }
            ASSERT_EQ(*r % align, 0u);
            ASSERT_LE(*r + count, size);
            ASSERT_EQ(allocated_in(*r, count), 0u);
            for (uint64_t i = 0; i < count; ++i) model.insert(*r + i);
            runs.emplace_back(*r, count);
        } else if (kind < (grow ? 60u : 40u)) {
            uint64_t id = rand(0, size + 5);
            auto r = ids.alloc_fixed_id(id);
            Error expect = id >= size ? Error::OutOfRange : Error::NoMemory;
            bool ok = id < size && model.count(id) == 0;
            ASSERT_EQ(r.has_value(), ok) << "alloc_fixed_id " << id << " op " << op;
            if (!ok) {
                ASSERT_EQ(r.error(), expect);
            } else {
                model.insert(id);
            }
        } else {
            uint64_t start = 0;
            uint64_t count = 0;
            if (kind < 90 && !runs.empty()) {
                size_t i = rand(0, runs.size() - 1);
                std::tie(start, count) = runs[i];
                runs[i] = runs.back();
                runs.pop_back();
            } else {
                start = rand(0, size + 5);
                count = random_count();
            }
            auto r = ids.dealloc_id(start, count);
            bool ok = start < size && count <= size - start && allocated_in(start, count) == count;
            ASSERT_EQ(r.has_value(), ok) << "dealloc_id " << start << "+" << count << " op " << op;
            if (!ok) {
                ASSERT_EQ(r.error(), Error::NotAllocated);
            } else {
                for (uint64_t i = 0; i < count; ++i) model.erase(start + i);
            }
        }
        ASSERT_EQ(ids.used(), model.size()) << "op " << op;
        ASSERT_EQ(ids.available(), size - model.size());
        ASSERT_TRUE(ids.check_invariants()) << "op " << op;
        if (op % 1000 == 999) {
            for (uint64_t id = 0; id < size; ++id) ASSERT_EQ(ids.is_allocated(id), model.count(id) == 1) << id;
        }
    }
}

TEST(IdAllocModel, RandomizedAgainstSet) {
    // 5 seeds x 20k operations = 100k per run.
    for (uint64_t salt = 0; salt < 5; ++salt) {
        uint64_t seed = pv::test::test_seed(0x1d000 + salt);
        SCOPED_TRACE(pv::test::seed_trace(seed));
        run_id_model(seed, 20'000);
        if (testing::Test::HasFatalFailure()) return;
    }
}

}  // namespace
