// PageTable::install: map a page only where nothing is mapped, safe against
// concurrent installers (compare-and-swap on the entry; losers' tables freed).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "mm/paging/page_table.h"
#include "tests/mm/paging/vector_table_memory.h"
#include "tests/support/seed.h"

namespace {

using mm::Error;
using mm::GuestPhysAddr;
using mm::GuestVirtAddr;
using mm::GuestVirtRange;
using mm::PageSize;
using pv::test::VectorTableMemory;

constexpr uint64_t k4K = 0x1000;
constexpr uint64_t k2M = 0x20'0000;

// VectorTableMemory with alloc/free serialised, for installer threads (the
// PageTable's contract: M itself need not be thread-safe, so the test provides it).
class LockedTableMemory {
public:
    explicit LockedTableMemory(size_t count) : m_mem(count, mm::GuestFrame(0x100), /*strict=*/false) {}
    mm::Result<uint64_t*> table(mm::GuestFrame f) const { return m_mem.table(f); }
    mm::Result<mm::GuestFrame> alloc_table() {
        std::lock_guard g(m_lock);
        return m_mem.alloc_table();
    }
    void free_table(mm::GuestFrame f) {
        std::lock_guard g(m_lock);
        m_mem.free_table(f);
    }
    VectorTableMemory& raw() { return m_mem; }

private:
    std::mutex m_lock;
    VectorTableMemory m_mem;
};
using LockedTable = mm::x86::PageTable<LockedTableMemory>;
using Table = mm::x86::PageTable<VectorTableMemory>;

TEST(PageTableInstall, InstallsOnlyWhereNothingIsMapped) {
    VectorTableMemory mem(64);
    Table pt = Table::try_create(&mem).value();
    const GuestVirtAddr va(0x40'0000'0000);
    ASSERT_TRUE(pt.install(va, GuestPhysAddr(0x5000), PageSize::Size4K, mm::kPermRW).has_value());
    EXPECT_EQ(pt.translate(va)->value(), 0x5000U);
    auto again = pt.install(va, GuestPhysAddr(0x6000), PageSize::Size4K, mm::kPermRW);
    ASSERT_FALSE(again.has_value());
    EXPECT_EQ(again.error(), Error::AlreadyExists);
    EXPECT_EQ(pt.translate(va)->value(), 0x5000U) << "a present entry is never replaced";
    // Under a 2 MiB leaf: AlreadyExists, nothing split or replaced.
    const GuestVirtAddr huge(0x40'0020'0000);
    ASSERT_TRUE(pt.map(huge, GuestPhysAddr(0x4000'0000), PageSize::Size2M, mm::kPermRW).has_value());
    auto under = pt.install(huge + k4K, GuestPhysAddr(0x7000), PageSize::Size4K, mm::kPermRW);
    ASSERT_FALSE(under.has_value());
    EXPECT_EQ(under.error(), Error::AlreadyExists);
    EXPECT_EQ(pt.query(huge + k4K)->size, PageSize::Size2M);
    // A 2 MiB install over a table with a 4 KiB page in it: AlreadyExists.
    auto over = pt.install(GuestVirtAddr(0x40'0000'0000), GuestPhysAddr(0x4020'0000), PageSize::Size2M, mm::kPermRW);
    EXPECT_FALSE(over.has_value());
    EXPECT_FALSE(pt.install(GuestVirtAddr(0x40'0000'0800), GuestPhysAddr(0x5000), PageSize::Size4K, mm::kPermRW))
        << "misaligned: InvalidParam";
    EXPECT_TRUE(pt.check_invariants());
    pt.destroy();
    EXPECT_EQ(mem.live(), 0U);
    EXPECT_EQ(mem.bad_frees(), 0U);
}

TEST(PageTableInstall, NoMemoryChangesNothing) {
    VectorTableMemory mem(64);
    Table pt = Table::try_create(&mem).value();
    for (size_t limit = 1; limit < 4; ++limit) {
        mem.set_limit(limit);  // the root plus limit - 1 of the 3 tables needed
        auto r = pt.install(GuestVirtAddr(0x40'0000'0000), GuestPhysAddr(0x5000), PageSize::Size4K, mm::kPermRW);
        ASSERT_FALSE(r.has_value());
        EXPECT_EQ(r.error(), Error::NoMemory);
        EXPECT_EQ(mem.live(), 1U) << "only the root";
        EXPECT_TRUE(pt.check_invariants());
    }
    mem.set_limit(SIZE_MAX);
    EXPECT_TRUE(pt.install(GuestVirtAddr(0x40'0000'0000), GuestPhysAddr(0x5000), PageSize::Size4K, mm::kPermRW));
    EXPECT_EQ(mem.live(), 4U);
    pt.destroy();
}

// Threads install every page of a region that spans several fresh tables, each
// with its own frame for the page: exactly one wins per page, the winner's frame
// stays, and exactly the tables the region needs remain live (losers' freed).
TEST(PageTableInstall, ConcurrentInstallersHaveOneWinnerPerEntry) {
    const uint64_t seed = pv::test::test_seed(0x1a57);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    constexpr uint32_t kThreads = 4;
    constexpr uint64_t kPages = 4 * 512;  // four page tables under one PD
    for (int round = 0; round < 8; ++round) {
        LockedTableMemory mem(256);
        LockedTable pt = LockedTable::try_create(&mem).value();
        const uint64_t base = 0x40'0000'0000 + static_cast<uint64_t>(round) * k2M * 4;
        std::atomic<uint64_t> wins{0}, losses{0}, errors{0};
        std::vector<std::vector<uint64_t>> won(kThreads);
        std::atomic<uint32_t> ready{0};
        std::vector<std::thread> threads;
        for (uint32_t t = 0; t < kThreads; ++t)
            threads.emplace_back([&, t] {
                std::vector<uint64_t> order(kPages);
                for (uint64_t i = 0; i < kPages; ++i) order[i] = i;
                std::shuffle(order.begin(), order.end(), std::mt19937_64(seed + round * 16 + t));
                ready.fetch_add(1);
                while (ready.load() < kThreads) std::this_thread::yield();
                for (uint64_t i : order) {
                    // Thread t's frame for page i: distinct per (thread, page).
                    GuestPhysAddr pa((1 + t * kPages + i) * k4K);
                    auto r = pt.install(GuestVirtAddr(base + i * k4K), pa, PageSize::Size4K, mm::kPermRW);
                    if (r) {
                        wins.fetch_add(1);
                        won[t].push_back(i);
                    } else if (r.error() == Error::AlreadyExists) {
                        losses.fetch_add(1);
                    } else {
                        errors.fetch_add(1);
                    }
                }
            });
        for (auto& th : threads) th.join();
        EXPECT_EQ(errors.load(), 0U);
        EXPECT_EQ(wins.load(), kPages);
        EXPECT_EQ(losses.load(), (kThreads - 1) * kPages);
        for (uint32_t t = 0; t < kThreads; ++t)
            for (uint64_t i : won[t])
                EXPECT_EQ(pt.translate(GuestVirtAddr(base + i * k4K))->value(), (1 + t * kPages + i) * k4K);
        EXPECT_TRUE(pt.check_invariants());
        EXPECT_EQ(mem.raw().live(), 1U + 1 + 1 + 4) << "root, PDPT, PD and four PTs; losers' tables freed";
        pt.destroy();
        EXPECT_EQ(mem.raw().live(), 0U);
        EXPECT_EQ(mem.raw().bad_frees(), 0U);
    }
}

}  // namespace
