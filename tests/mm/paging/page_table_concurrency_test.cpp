// A reader thread translating addresses while the writer splits huge pages under it
// (protect_region of partial ranges): because a split fills the new table before one
// atomic exchange publishes it, the reader must always see the same translation, never
// NotFound or Corrupted. No tables are freed in this test, so the reader never walks a
// table that is being reused (that needs the caller's TLB-shootdown discipline).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <thread>

#include "mm/paging/page_table.h"
#include "tests/mm/paging/vector_table_memory.h"
#include "tests/support/seed.h"

namespace {

using mm::GuestPhysAddr;
using mm::GuestVirtAddr;
using mm::GuestVirtRange;
using Table = mm::x86::PageTable<pv::test::VectorTableMemory>;

constexpr uint64_t k2M = 0x20'0000;
constexpr uint64_t k1G = 0x4000'0000;
constexpr uint64_t kBase = 0x40'0000'0000;
constexpr uint64_t kPhys = 0x100'0000'0000;
constexpr uint64_t kGigs = 8;

TEST(PageTableConcurrency, ReaderSeesStableTranslationsDuringSplits) {
    const uint64_t seed = pv::test::test_seed(0xc0c0);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    // Non-strict: table() then reads nothing the writer changes.
    pv::test::VectorTableMemory mem(2048, mm::GuestFrame(0x100), /*strict=*/false);
    Table pt = Table::try_create(&mem).value();
    ASSERT_TRUE(pt.map_region(GuestVirtRange::from_start_size(GuestVirtAddr(kBase), kGigs * k1G), GuestPhysAddr(kPhys),
                              mm::kPermRW, true));

    std::atomic<bool> stop{false};
    std::atomic<uint64_t> hot{0};  // offset of the 2M piece the writer splits next
    std::atomic<uint64_t> bad{0};
    std::atomic<uint64_t> reads{0};
    std::thread reader([&] {
        std::mt19937_64 rng(seed ^ 1);
        while (!stop.load(std::memory_order_relaxed)) {
            // Mostly inside the piece being split, sometimes anywhere.
            uint64_t r = rng();
            uint64_t off =
                (r & 7) != 0 ? hot.load(std::memory_order_relaxed) + (r >> 3) % k2M : (r >> 3) % (kGigs * k1G);
            auto pa = pt.translate(GuestVirtAddr(kBase + off));
            if (!pa || pa->value() != kPhys + off) bad.fetch_add(1, std::memory_order_relaxed);
            reads.fetch_add(1, std::memory_order_release);
        }
    });
    std::mt19937_64 rng(seed);
    for (int i = 0; i < 300; ++i) {
        // A few pages at a random place: splits the 1G page, then the 2M page under it.
        uint64_t off = (rng() % (kGigs * k1G / 0x1000)) * 0x1000;
        uint64_t len = std::min<uint64_t>((1 + rng() % 8) * 0x1000, kGigs * k1G - off);
        hot.store(off & ~(k2M - 1), std::memory_order_relaxed);
        // Wait until the reader is running (on the other CPU, if the scheduler allows).
        for (uint64_t seen = reads.load(std::memory_order_acquire); reads.load(std::memory_order_acquire) < seen + 64;)
            std::this_thread::yield();
        mm::Perm p = (i % 2) ? mm::Perm::Read : mm::kPermRW;
        ASSERT_TRUE(pt.protect_region(GuestVirtRange::from_start_size(GuestVirtAddr(kBase + off), len), p));
    }
    stop = true;
    reader.join();
    EXPECT_EQ(bad.load(), 0U);
    EXPECT_TRUE(pt.check_invariants());
    // Splits happened: some 1G pages are now tables of 2M/4K pages.
    EXPECT_GT(mem.live(), 2U + kGigs / 4);
    pt.destroy();
    EXPECT_EQ(mem.live(), 0U);
}

}  // namespace
