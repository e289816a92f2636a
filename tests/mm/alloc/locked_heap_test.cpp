// mm::LockedHeap: once-only initialisation (a second init is AlreadyInitialized
// and changes nothing), BadState before init, counters, a model-based random
// run, and threads hammering one heap (blocks must never overlap: every block
// carries an address-derived pattern that is verified before it is freed).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "mm/alloc/buddy.h"
#include "mm/alloc/locked_heap.h"
#include "mm/alloc/slab_heap.h"
#include "mm/alloc/tlsf.h"
#include "tests/mm/alloc/byte_alloc_support.h"
#include "tests/support/seed.h"

namespace {

using mm::Error;

// A lock that counts how often it is taken (in a global, since LockedHeap
// owns its lock) and checks it is never taken while held.
std::atomic<uint64_t> g_lock_takes{0};
class CountingLock {
public:
    void lock() {
        m_mutex.lock();
        EXPECT_FALSE(m_held);
        m_held = true;
        ++g_lock_takes;
    }
    void unlock() {
        m_held = false;
        m_mutex.unlock();
    }

private:
    std::mutex m_mutex;
    bool m_held = false;
};

template <class A>
class LockedHeapTest : public ::testing::Test {};
using Allocators = ::testing::Types<mm::Buddy<>, mm::SlabHeap<>, mm::Tlsf<>>;
TYPED_TEST_SUITE(LockedHeapTest, Allocators);

TYPED_TEST(LockedHeapTest, BeforeInitEverythingIsBadState) {
    mm::LockedHeap<TypeParam, std::mutex> heap;
    pv::test::Arena arena(1 << 20);
    EXPECT_FALSE(heap.is_initialized());
    auto r = heap.alloc(64, 8);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), Error::BadState);
    auto d = heap.dealloc(arena.data(), 64, 8);
    ASSERT_FALSE(d);
    EXPECT_EQ(d.error(), Error::BadState);
    auto m = heap.add_memory(arena.span());
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error(), Error::BadState);
    const auto s = heap.stats();
    EXPECT_FALSE(s.initialized);
    EXPECT_EQ(s.total_bytes, 0u);
    EXPECT_EQ(s.allocs + s.frees + s.failed_allocs, 0u);
    EXPECT_TRUE(heap.check_invariants());
}

TYPED_TEST(LockedHeapTest, SecondInitIsAlreadyInitializedAndChangesNothing) {
    mm::LockedHeap<TypeParam, std::mutex> heap;
    pv::test::Arena arena(2 << 20);
    ASSERT_TRUE(heap.init(arena.span(0, 1 << 20)));
    auto p = heap.alloc(100, 16);
    ASSERT_TRUE(p);
    const auto before = heap.stats();
    for (auto region : {arena.span(0, 1 << 20), arena.span(1 << 20, 1 << 20)}) {
        auto again = heap.init(region);
        ASSERT_FALSE(again);
        EXPECT_EQ(again.error(), Error::AlreadyInitialized);
    }
    const auto after = heap.stats();
    EXPECT_EQ(after.total_bytes, before.total_bytes);
    EXPECT_EQ(after.used_bytes, before.used_bytes);
    EXPECT_TRUE(heap.check_invariants());
    EXPECT_TRUE(heap.dealloc(*p, 100, 16));
    // add_memory is the way to grow it.
    EXPECT_TRUE(heap.add_memory(arena.span(1 << 20, 1 << 20)));
    EXPECT_GT(heap.stats().total_bytes, before.total_bytes);
    EXPECT_TRUE(heap.check_invariants());
}

TYPED_TEST(LockedHeapTest, FailedInitLeavesItUninitialised) {
    mm::LockedHeap<TypeParam, std::mutex> heap;
    pv::test::Arena arena(1 << 20);
    auto bad = heap.init(arena.span(0, 0));
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error(), Error::InvalidParam);
    EXPECT_FALSE(heap.is_initialized());
    EXPECT_EQ(heap.alloc(8, 8).error(), Error::BadState);
    EXPECT_TRUE(heap.init(arena.span()));
    EXPECT_TRUE(heap.is_initialized());
}

TYPED_TEST(LockedHeapTest, EveryOperationTakesTheLockOnce) {
    mm::LockedHeap<TypeParam, CountingLock> heap;
    pv::test::Arena arena(1 << 20);
    auto takes_of = [](auto&& op) {
        const uint64_t before = g_lock_takes.load();
        op();
        return g_lock_takes.load() - before;
    };
    EXPECT_EQ(takes_of([&] { ASSERT_TRUE(heap.init(arena.span())); }), 1u);
    EXPECT_EQ(takes_of([&] { ASSERT_FALSE(heap.init(arena.span())); }), 1u);
    void* p = nullptr;
    EXPECT_EQ(takes_of([&] { p = *heap.alloc(32, 8); }), 1u);
    EXPECT_EQ(takes_of([&] { ASSERT_TRUE(heap.dealloc(p, 32, 8)); }), 1u);
    EXPECT_EQ(takes_of([&] { (void)heap.stats(); }), 1u);
    EXPECT_EQ(takes_of([&] { ASSERT_TRUE(heap.check_invariants()); }), 1u);
    EXPECT_EQ(takes_of([&] { ASSERT_TRUE(heap.is_initialized()); }), 1u);
    size_t total = 0;
    EXPECT_EQ(takes_of([&] { total = heap.inspect([](const TypeParam& a) { return a.total_bytes(); }); }), 1u);
    EXPECT_EQ(total, heap.stats().total_bytes);
}

TYPED_TEST(LockedHeapTest, CountersMatchAModel) {
    const uint64_t seed = pv::test::test_seed(0x10c4ed);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    mm::LockedHeap<TypeParam, std::mutex> heap;
    pv::test::Arena arena(1 << 20);
    ASSERT_TRUE(heap.init(arena.span()));
    std::map<uintptr_t, std::pair<size_t, size_t>> live;  // addr -> (size, align)
    uint64_t allocs = 0, frees = 0, refused = 0;
    for (int op = 0; op < 3000; ++op) {
        if (live.empty() || rng() % 3 != 0) {
            size_t size = 1 + rng() % 20000;
            size_t align = size_t(1) << (rng() % 10);
            auto r = heap.alloc(size, align);
            if (!r) {
                EXPECT_EQ(r.error(), Error::NoMemory);
                ++refused;
                continue;
            }
            auto a = reinterpret_cast<uintptr_t>(*r);
            EXPECT_EQ(a % align, 0u);
            auto next = live.lower_bound(a);
            if (next != live.end()) {
                EXPECT_LE(a + size, next->first);
            }
            if (next != live.begin()) {
                EXPECT_LE(std::prev(next)->first + std::prev(next)->second.first, a);
            }
            live[a] = {size, align};
            ++allocs;
        } else {
            auto it = live.begin();
            std::advance(it, rng() % live.size());
            ASSERT_TRUE(heap.dealloc(reinterpret_cast<void*>(it->first), it->second.first, it->second.second));
            live.erase(it);
            ++frees;
        }
        ASSERT_TRUE(heap.check_invariants());
        const auto s = heap.stats();
        ASSERT_EQ(s.allocs, allocs);
        ASSERT_EQ(s.frees, frees);
        ASSERT_EQ(s.failed_allocs, refused);
        ASSERT_EQ(s.used_bytes + s.available_bytes, s.total_bytes);
    }
    for (auto& [a, sa] : live) ASSERT_TRUE(heap.dealloc(reinterpret_cast<void*>(a), sa.first, sa.second));
    EXPECT_EQ(heap.stats().used_bytes, 0u);
}

// Threads hammer one heap: every block is filled with a pattern of its own
// address and thread, and verified before it is freed; a lost lock shows up as
// a corrupted pattern, a broken invariant or an allocator error.
TYPED_TEST(LockedHeapTest, ThreadsHammeringOneHeapNeverShareABlock) {
    const uint64_t seed = pv::test::test_seed(0x7a3);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    constexpr int kThreads = 4;
    constexpr int kOps = 4000;
    auto heap = std::make_unique<mm::LockedHeap<TypeParam, std::mutex>>();
    pv::test::Arena arena(4 << 20);
    ASSERT_TRUE(heap->init(arena.span()));
    std::atomic<uint64_t> bad{0}, errors{0}, allocs{0};
    auto worker = [&](int t) {
        std::mt19937_64 rng(seed + uint64_t(t));
        struct Blk {
            unsigned char* p;
            size_t size;
        };
        std::vector<Blk> mine;
        auto verify_free = [&](size_t i) {
            Blk b = mine[i];
            for (size_t j = 0; j < b.size; ++j)
                if (b.p[j] != static_cast<unsigned char>((reinterpret_cast<uintptr_t>(b.p) + j) * 31 + t)) {
                    ++bad;
                    break;
                }
            if (!heap->dealloc(b.p, b.size, 16)) ++errors;
            mine[i] = mine.back();
            mine.pop_back();
        };
        for (int op = 0; op < kOps; ++op) {
            if (mine.empty() || rng() % 2 == 0) {
                size_t size = 1 + rng() % 2048;
                auto r = heap->alloc(size, 16);
                if (!r) {
                    if (r.error() != Error::NoMemory) ++errors;
                    continue;
                }
                auto* p = static_cast<unsigned char*>(*r);
                for (size_t j = 0; j < size; ++j)
                    p[j] = static_cast<unsigned char>((reinterpret_cast<uintptr_t>(p) + j) * 31 + t);
                mine.push_back({p, size});
                ++allocs;
            } else {
                verify_free(rng() % mine.size());
            }
            if (op % 500 == 0 && !heap->check_invariants()) ++errors;
        }
        while (!mine.empty()) verify_free(mine.size() - 1);
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
    // A late init from another thread must be refused while they run.
    auto late = heap->init(arena.span());
    for (auto& th : threads) th.join();
    ASSERT_FALSE(late);
    EXPECT_EQ(late.error(), Error::AlreadyInitialized);
    EXPECT_EQ(bad.load(), 0u);
    EXPECT_EQ(errors.load(), 0u);
    const auto s = heap->stats();
    EXPECT_EQ(s.allocs, allocs.load());
    EXPECT_EQ(s.frees, s.allocs);
    EXPECT_EQ(s.used_bytes, 0u);
    EXPECT_TRUE(heap->check_invariants());
}

// Racing first inits: exactly one wins, every other one is AlreadyInitialized.
TEST(LockedHeap, RacingInitsExactlyOneWins) {
    for (int round = 0; round < 20; ++round) {
        mm::LockedHeap<mm::Tlsf<>, std::mutex> heap;
        pv::test::Arena arena(4 << 20);
        std::atomic<int> ok{0}, already{0}, other{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t) {
            threads.emplace_back([&, t] {
                auto r = heap.init(arena.span(size_t(t) << 20, 1 << 20));
                if (r)
                    ++ok;
                else if (r.error() == Error::AlreadyInitialized)
                    ++already;
                else
                    ++other;
            });
        }
        for (auto& th : threads) th.join();
        EXPECT_EQ(ok.load(), 1);
        EXPECT_EQ(already.load(), 3);
        EXPECT_EQ(other.load(), 0);
        EXPECT_EQ(heap.stats().total_bytes, heap.inspect([](const mm::Tlsf<>& a) { return a.total_bytes(); }));
        EXPECT_LE(heap.stats().total_bytes, size_t(1) << 20);
    }
}

}  // namespace
