// Unit tests of mm::x86::PageTable over a vector-backed TableMemory.
#include "mm/paging/page_table.h"

#include <gtest/gtest.h>

#include <optional>
#include <random>
#include <vector>

#include "tests/mm/paging/vector_table_memory.h"
#include "tests/support/seed.h"

namespace {

using mm::Error;
using mm::GuestFrame;
using mm::GuestPhysAddr;
using mm::GuestVirtAddr;
using mm::GuestVirtRange;
using mm::PageSize;
using mm::Perm;
using mm::x86::Mapping;
using mm::x86::PageTable;
using pv::test::VectorTableMemory;
using Table = PageTable<VectorTableMemory>;

constexpr uint64_t k4K = 0x1000;
constexpr uint64_t k2M = 0x20'0000;
constexpr uint64_t k1G = 0x4000'0000;
constexpr Perm kRO = Perm::Read;
constexpr Perm kRW = mm::kPermRW;
constexpr Perm kURX = Perm::Read | Perm::Exec | Perm::User;

// The error of a Result, or nothing if it holds a value (so a wrong success fails cleanly).
template <class R>
std::optional<Error> error_of(const R& r) {
    if (r.has_value()) return std::nullopt;
    return r.error();
}
#define EXPECT_ERR(expr, e) EXPECT_EQ(error_of(expr), std::optional<Error>(e))

}  // namespace
namespace mm::x86 {
// Readable failure messages for vectors of mappings.
void PrintTo(const Mapping& m, std::ostream* os);
void PrintTo(const Mapping& m, std::ostream* os) {
    *os << std::hex << "{va 0x" << m.base.value() << " pa 0x" << m.phys.value() << " size 0x" << bytes(m.size)
        << " perm " << int(m.perm) << (m.accessed ? " A" : "") << (m.dirty ? " D" : "") << "}";
}
}  // namespace mm::x86
namespace {

GuestVirtAddr va(uint64_t v) { return GuestVirtAddr(v); }
GuestPhysAddr pa(uint64_t v) { return GuestPhysAddr(v); }
GuestVirtRange vr(uint64_t start, uint64_t size) { return GuestVirtRange::from_start_size(va(start), size); }

std::vector<Mapping> all_mappings(const Table& pt) {
    std::vector<Mapping> out;
    // A Range holds at most 2^64-1 bytes; [0, 2^64-2] still overlaps every page.
    auto whole = GuestVirtRange::from_start_size(va(0), UINT64_MAX);
    EXPECT_TRUE(pt.for_each_mapping(whole, [&](const Mapping& m) {
        out.push_back(m);
        return true;
    }));
    return out;
}

class PageTableTest : public ::testing::Test {
protected:
    VectorTableMemory mem{4096};
    Table pt = Table::try_create(&mem).value();

    void TearDown() override {
        EXPECT_TRUE(pt.check_invariants());
        pt.destroy();
        EXPECT_EQ(mem.live(), 0U);
        EXPECT_EQ(mem.bad_frees(), 0U);
    }
    // Every 4K page of [start, start+size) translates to phys+offset with perm (sampled every `step`).
    void expect_linear(uint64_t start, uint64_t size, uint64_t phys, Perm perm, uint64_t step = k4K) {
        for (uint64_t off = 0; off < size; off += step) {
            auto m = pt.query(va(start + off));
            ASSERT_TRUE(m) << std::hex << start + off;
            EXPECT_EQ(pt.translate(va(start + off + 0x123)).value(), pa(phys + off + 0x123)) << std::hex << start + off;
            EXPECT_EQ(m->perm, perm) << std::hex << start + off;
        }
    }
    void expect_unmapped(uint64_t start, uint64_t size, uint64_t step = k4K) {
        for (uint64_t off = 0; off < size; off += step)
            EXPECT_ERR(pt.query(va(start + off)), Error::NotFound) << std::hex << start + off;
    }
};

TEST_F(PageTableTest, CreateAllocatesOnlyTheRoot) {
    EXPECT_EQ(mem.live(), 1U);
    EXPECT_TRUE(mem.is_live(pt.root()));
    EXPECT_TRUE(all_mappings(pt).empty());
}

TEST_F(PageTableTest, MapQuery4K) {
    ASSERT_TRUE(pt.map(va(0x40'0000), pa(0x1234'5000), PageSize::Size4K, kRW));
    auto m = pt.query(va(0x40'0abc));
    ASSERT_TRUE(m);
    EXPECT_EQ(m->base, va(0x40'0000));
    EXPECT_EQ(m->phys, pa(0x1234'5000));
    EXPECT_EQ(m->size, PageSize::Size4K);
    EXPECT_EQ(m->perm, kRW);
    EXPECT_FALSE(m->accessed);
    EXPECT_FALSE(m->dirty);
    EXPECT_EQ(pt.translate(va(0x40'0abc)).value(), pa(0x1234'5abc));
    EXPECT_ERR(pt.query(va(0x40'1000)), Error::NotFound);
    EXPECT_ERR(pt.query(va(0x3f'f000)), Error::NotFound);
    EXPECT_EQ(mem.live(), 4U);  // PML4, PDPT, PD, PT
    EXPECT_TRUE(pt.check_invariants());
}

TEST_F(PageTableTest, MapQuery2M) {
    ASSERT_TRUE(pt.map(va(0x4060'0000), pa(0x8000'0000), PageSize::Size2M, kURX));
    auto m = pt.query(va(0x4060'0000 + 0x1f'ffff));
    ASSERT_TRUE(m);
    EXPECT_EQ(m->base, va(0x4060'0000));
    EXPECT_EQ(m->size, PageSize::Size2M);
    EXPECT_EQ(m->perm, kURX);
    EXPECT_EQ(pt.translate(va(0x4060'0000 + 0x12'3456)).value(), pa(0x8012'3456));
    EXPECT_ERR(pt.query(va(0x4080'0000)), Error::NotFound);
    EXPECT_EQ(mem.live(), 3U);
}

TEST_F(PageTableTest, MapQuery1G) {
    ASSERT_TRUE(pt.map(va(0x80'4000'0000), pa(0x3'0000'0000), PageSize::Size1G, kRO));
    auto m = pt.query(va(0x80'7fff'ffff));
    ASSERT_TRUE(m);
    EXPECT_EQ(m->base, va(0x80'4000'0000));
    EXPECT_EQ(m->phys, pa(0x3'0000'0000));
    EXPECT_EQ(m->size, PageSize::Size1G);
    EXPECT_EQ(m->perm, kRO);
    EXPECT_ERR(pt.query(va(0x80'0000'0000)), Error::NotFound);
    EXPECT_EQ(mem.live(), 2U);
}

TEST_F(PageTableTest, PermissionsRoundTrip) {
    const Perm perms[] = {kRO, kRW, mm::kPermRX, mm::kPermRWX, Perm::Read | Perm::User, mm::kPermAll};
    uint64_t addr = 0x1000'0000;
    for (Perm p : perms) {
        ASSERT_TRUE(pt.map(va(addr), pa(addr), PageSize::Size4K, p));
        EXPECT_EQ(pt.query(va(addr))->perm, p);
        addr += k4K;
    }
}

TEST_F(PageTableTest, AlreadyExistsAtEachGranularity) {
    ASSERT_TRUE(pt.map(va(k1G), pa(0), PageSize::Size1G, kRW));
    EXPECT_ERR(pt.map(va(k1G), pa(0), PageSize::Size1G, kRW), Error::AlreadyExists);
    EXPECT_ERR(pt.map(va(k1G + k2M), pa(0), PageSize::Size2M, kRW), Error::AlreadyExists);
    EXPECT_ERR(pt.map(va(2 * k1G - k4K), pa(0), PageSize::Size4K, kRW), Error::AlreadyExists);

    ASSERT_TRUE(pt.map(va(4 * k1G + k2M), pa(0), PageSize::Size2M, kRW));
    EXPECT_ERR(pt.map(va(4 * k1G), pa(0), PageSize::Size1G, kRW), Error::AlreadyExists);
    EXPECT_ERR(pt.map(va(4 * k1G + k2M), pa(k2M), PageSize::Size2M, kRW), Error::AlreadyExists);
    EXPECT_ERR(pt.map(va(4 * k1G + k2M + 0x5000), pa(0), PageSize::Size4K, kRW), Error::AlreadyExists);

    ASSERT_TRUE(pt.map(va(8 * k1G + 3 * k2M + k4K), pa(0), PageSize::Size4K, kRW));
    EXPECT_ERR(pt.map(va(8 * k1G), pa(0), PageSize::Size1G, kRW), Error::AlreadyExists);
    EXPECT_ERR(pt.map(va(8 * k1G + 3 * k2M), pa(0), PageSize::Size2M, kRW), Error::AlreadyExists);
    EXPECT_ERR(pt.map(va(8 * k1G + 3 * k2M + k4K), pa(0), PageSize::Size4K, kRW), Error::AlreadyExists);
    // Neighbours are free.
    EXPECT_TRUE(pt.map(va(8 * k1G + 3 * k2M), pa(0), PageSize::Size4K, kRW));
    EXPECT_TRUE(pt.map(va(8 * k1G + 4 * k2M), pa(0), PageSize::Size2M, kRW));
    EXPECT_TRUE(pt.check_invariants());
    EXPECT_EQ(all_mappings(pt).size(), 5U);
}

TEST_F(PageTableTest, InvalidArguments) {
    EXPECT_ERR(pt.map(va(0x1001), pa(0), PageSize::Size4K, kRW), Error::InvalidParam);
    EXPECT_ERR(pt.map(va(0x1000), pa(0x800), PageSize::Size4K, kRW), Error::InvalidParam);
    EXPECT_ERR(pt.map(va(0x1000), pa(0), PageSize::Size2M, kRW), Error::InvalidParam);
    EXPECT_ERR(pt.map(va(k2M), pa(k4K), PageSize::Size2M, kRW), Error::InvalidParam);
    EXPECT_ERR(pt.map(va(k2M), pa(0), PageSize::Size1G, kRW), Error::InvalidParam);
    EXPECT_ERR(pt.map(va(0), pa(0), PageSize::Size4K, Perm::Write), Error::InvalidParam);
    EXPECT_ERR(pt.map(va(0), pa(0), PageSize::Size4K, Perm::None), Error::InvalidParam);
    EXPECT_ERR(pt.map(va(0), pa(0), PageSize::Size4K, static_cast<Perm>(0x11)), Error::InvalidParam);
    EXPECT_ERR(pt.map(va(0), pa(0), static_cast<PageSize>(0x3000), kRW), Error::InvalidParam);
    // Non-canonical virtual addresses.
    EXPECT_ERR(pt.map(va(0x0000'8000'0000'0000), pa(0), PageSize::Size4K, kRW), Error::InvalidParam);
    EXPECT_ERR(pt.map(va(0xffff'7fff'ffff'f000), pa(0), PageSize::Size4K, kRW), Error::InvalidParam);
    EXPECT_ERR(pt.map(va(0x1000'0000'0000'0000), pa(0), PageSize::Size4K, kRW), Error::InvalidParam);
    EXPECT_ERR(pt.query(va(0x0000'8000'0000'0000)), Error::InvalidParam);
    // Physical addresses beyond 52 bits.
    EXPECT_ERR(pt.map(va(0), pa(1ULL << 52), PageSize::Size4K, kRW), Error::InvalidParam);
    EXPECT_ERR(pt.map(va(0), pa(0xffff'ffff'ffff'f000), PageSize::Size4K, kRW), Error::InvalidParam);
    EXPECT_TRUE(pt.map(va(0), pa((1ULL << 52) - k4K), PageSize::Size4K, kRW));
    EXPECT_EQ(pt.translate(va(0xfff)).value(), pa((1ULL << 52) - 1));
    EXPECT_ERR(pt.map_region(vr(k1G, k2M), pa((1ULL << 52) - k4K), kRW, true), Error::InvalidParam);
    // Range arguments.
    EXPECT_ERR(pt.map_region(vr(0x1000, 0x1800), pa(0), kRW, true), Error::InvalidParam);
    EXPECT_ERR(pt.map_region(vr(0x1800, 0x1000), pa(0), kRW, true), Error::InvalidParam);
    EXPECT_ERR(pt.map_region(vr(0x1000, 0x1000), pa(0x10), kRW, true), Error::InvalidParam);
    EXPECT_ERR(pt.map_region(vr(0x0000'7fff'ffff'f000, 0x2000), pa(0), kRW, true), Error::InvalidParam);
    EXPECT_ERR(pt.unmap_region(vr(0x1000, 0x800)), Error::InvalidParam);
    EXPECT_ERR(pt.unmap_region(vr(0x0000'7fff'ffff'f000, 0x2000)), Error::InvalidParam);
    EXPECT_ERR(pt.protect_region(vr(0, k4K), Perm::None), Error::InvalidParam);
    EXPECT_ERR(pt.protect_region(vr(0x10, k4K), kRW), Error::InvalidParam);
    // Empty ranges are no-ops.
    EXPECT_TRUE(pt.map_region(vr(k1G, 0), pa(0), kRW, true));
    EXPECT_TRUE(pt.unmap_region(vr(k1G, 0)));
    EXPECT_TRUE(pt.protect_region(vr(k1G, 0), kRW));
    EXPECT_EQ(all_mappings(pt).size(), 1U);
}

TEST_F(PageTableTest, CanonicalBoundaries) {
    const uint64_t top = 0xffff'ffff'ffff'f000;
    const uint64_t low_top = 0x0000'7fff'ffff'f000;
    const uint64_t high_bottom = 0xffff'8000'0000'0000;
    ASSERT_TRUE(pt.map(va(top), pa(0x5000), PageSize::Size4K, kRW));
    ASSERT_TRUE(pt.map(va(low_top), pa(0x6000), PageSize::Size4K, kRW));
    ASSERT_TRUE(pt.map(va(high_bottom), pa(0x7000), PageSize::Size4K, kRW));
    EXPECT_EQ(pt.translate(va(UINT64_MAX)).value(), pa(0x5fff));
    EXPECT_EQ(pt.translate(va(low_top + 0xfff)).value(), pa(0x6fff));
    EXPECT_EQ(pt.translate(va(high_bottom)).value(), pa(0x7000));
    EXPECT_EQ(pt.query(va(top))->base, va(top));
    EXPECT_EQ(pt.query(va(high_bottom))->base, va(high_bottom));

    auto maps = all_mappings(pt);
    ASSERT_EQ(maps.size(), 3U);
    EXPECT_EQ(maps[0].base, va(low_top));
    EXPECT_EQ(maps[1].base, va(high_bottom));
    EXPECT_EQ(maps[2].base, va(top));

    // Huge pages at the top of the space, and a range ending exactly at 2^64.
    ASSERT_TRUE(pt.unmap_region(vr(top, k4K)));
    ASSERT_TRUE(pt.map_region(vr(0xffff'ffff'c000'0000, k1G), pa(k1G), kRW, true));
    EXPECT_EQ(pt.query(va(UINT64_MAX))->size, PageSize::Size1G);
    EXPECT_EQ(pt.translate(va(UINT64_MAX)).value(), pa(2 * k1G - 1));
    ASSERT_TRUE(pt.unmap_region(vr(top, k4K)));  // splits 1G -> 2M + 4K at the very top
    EXPECT_ERR(pt.query(va(top)), Error::NotFound);
    EXPECT_EQ(pt.translate(va(top - 1)).value(), pa(2 * k1G - k4K - 1));
    EXPECT_EQ(pt.query(va(0xffff'ffff'c000'0000))->size, PageSize::Size2M);
    EXPECT_TRUE(pt.check_invariants());

    // unmap/protect/for_each may span the hole; it is simply skipped.
    auto across = GuestVirtRange::from_inclusive(va(low_top), va(high_bottom + 0xfff)).value();
    ASSERT_TRUE(pt.protect_region(across, kRO));
    EXPECT_EQ(pt.query(va(low_top))->perm, kRO);
    EXPECT_EQ(pt.query(va(high_bottom))->perm, kRO);
    ASSERT_TRUE(pt.unmap_region(across));
    EXPECT_ERR(pt.query(va(low_top)), Error::NotFound);
    EXPECT_ERR(pt.query(va(high_bottom)), Error::NotFound);
    ASSERT_TRUE(pt.unmap_region(vr(0, 0x0000'8000'0000'0000)));
    ASSERT_TRUE(pt.unmap_region(vr(0xffff'8000'0000'0000, 0x0000'8000'0000'0000)));
    EXPECT_TRUE(all_mappings(pt).empty());
    EXPECT_EQ(mem.live(), 1U);
}

TEST_F(PageTableTest, MapRegionChoosesHugePages) {
    // One 4K page, 2M pages up to 1G, a 1G page, 2M pages, then a 4K tail.
    const uint64_t start = k1G - 2 * k2M - k4K;
    const uint64_t size = 2 * k2M + k4K + k1G + 3 * k2M + 2 * k4K;
    ASSERT_TRUE(pt.map_region(vr(start, size), pa(start + 4 * k1G), kRW, true));
    auto maps = all_mappings(pt);
    std::vector<PageSize> sizes;
    for (const auto& m : maps) sizes.push_back(m.size);
    std::vector<PageSize> expect = {PageSize::Size4K, PageSize::Size2M, PageSize::Size2M,
                                    PageSize::Size1G, PageSize::Size2M, PageSize::Size2M,
                                    PageSize::Size2M, PageSize::Size4K, PageSize::Size4K};
    EXPECT_EQ(sizes, expect);
    expect_linear(start, size, start + 4 * k1G, kRW, 0x1000 * 61);
    expect_unmapped(start - k4K, k4K);
    expect_unmapped(start + size, k4K);

    // Without huge pages, or with pa misaligned relative to va, everything is 4K.
    ASSERT_TRUE(pt.map_region(vr(16 * k1G, 2 * k2M), pa(0), kRO, false));
    ASSERT_TRUE(pt.map_region(vr(17 * k1G, 2 * k2M), pa(k4K), kRO, true));
    size_t small = 0;
    ASSERT_TRUE(pt.for_each_mapping(vr(16 * k1G, 2 * k1G), [&](const Mapping& m) {
        small += m.size == PageSize::Size4K;
        return true;
    }));
    EXPECT_EQ(small, 2048U);
    expect_linear(17 * k1G, 2 * k2M, k4K, kRO, 0x1000 * 7);
}

TEST_F(PageTableTest, MapRegionIsAllOrNothing) {
    ASSERT_TRUE(pt.map(va(k1G + 5 * k2M + 3 * k4K), pa(0), PageSize::Size4K, kRW));
    const size_t live = mem.live();
    EXPECT_ERR(pt.map_region(vr(k1G, k1G), pa(0), kRW, true), Error::AlreadyExists);
    EXPECT_ERR(pt.map_region(vr(0, 4 * k1G), pa(0), kRW, false), Error::AlreadyExists);
    EXPECT_EQ(all_mappings(pt).size(), 1U);
    EXPECT_EQ(mem.live(), live);

    // Out of tables half-way: everything mapped so far is undone.
    mem.set_limit(live + 3);
    EXPECT_ERR(pt.map_region(vr(8 * k1G - k2M, 16 * k2M), pa(0), kRW, false), Error::NoMemory);
    EXPECT_EQ(all_mappings(pt).size(), 1U);
    EXPECT_EQ(mem.live(), live);
    EXPECT_TRUE(pt.check_invariants());
    mem.set_limit(SIZE_MAX);
    ASSERT_TRUE(pt.map_region(vr(8 * k1G - k2M, 16 * k2M), pa(0), kRW, false));
    EXPECT_EQ(all_mappings(pt).size(), 1U + 16 * 512);
}

TEST_F(PageTableTest, MapFailureFreesNewIntermediateTables) {
    mem.set_limit(3);  // root + 2: the PT cannot be allocated
    EXPECT_ERR(pt.map(va(0x7000'0000'0000), pa(0), PageSize::Size4K, kRW), Error::NoMemory);
    EXPECT_EQ(mem.live(), 1U);
    EXPECT_TRUE(pt.check_invariants());
    EXPECT_TRUE(pt.map(va(0x7000'0000'0000), pa(0), PageSize::Size2M, kRW));
}

TEST_F(PageTableTest, Split1GInto2MAnd4K) {
    const uint64_t base = 3 * k1G;
    const uint64_t phys = 7 * k1G;
    ASSERT_TRUE(pt.map(va(base), pa(phys), PageSize::Size1G, kRW));
    const uint64_t hole = base + 5 * k2M + 7 * k4K;  // unmap 3 pages inside the 6th 2M piece
    ASSERT_TRUE(pt.unmap_region(vr(hole, 3 * k4K)));
    EXPECT_TRUE(pt.check_invariants());
    expect_unmapped(hole, 3 * k4K);
    expect_linear(base, hole - base, phys, kRW, 0x1000 * 3);
    expect_linear(hole + 3 * k4K, base + k1G - hole - 3 * k4K, phys + (hole + 3 * k4K - base), kRW, 0x1000 * 3);
    // Shapes: 511 2M pages plus 509 4K pages.
    size_t n2m = 0, n4k = 0;
    ASSERT_TRUE(pt.for_each_mapping(vr(base, k1G), [&](const Mapping& m) {
        n2m += m.size == PageSize::Size2M;
        n4k += m.size == PageSize::Size4K;
        return true;
    }));
    EXPECT_EQ(n2m, 511U);
    EXPECT_EQ(n4k, 509U);
    EXPECT_EQ(mem.live(), 4U);  // PML4, PDPT, the PD replacing the 1G page, one PT
}

TEST_F(PageTableTest, Split2MInto4KAcrossTwoPages) {
    ASSERT_TRUE(pt.map_region(vr(k1G, 2 * k2M), pa(0x1'0000'0000), kRW, true));
    // Range from the middle of the first 2M page into the middle of the second.
    ASSERT_TRUE(pt.unmap_region(vr(k1G + k2M - 4 * k4K, 8 * k4K)));
    EXPECT_TRUE(pt.check_invariants());
    expect_linear(k1G, k2M - 4 * k4K, 0x1'0000'0000, kRW);
    expect_unmapped(k1G + k2M - 4 * k4K, 8 * k4K);
    expect_linear(k1G + k2M + 4 * k4K, k2M - 4 * k4K, 0x1'0000'0000 + k2M + 4 * k4K, kRW);
    EXPECT_EQ(all_mappings(pt).size(), 2 * (512U - 4));
}

TEST_F(PageTableTest, SplitKeepsAttributesAndAccessedDirty) {
    ASSERT_TRUE(pt.map(va(k1G), pa(k1G), PageSize::Size1G, kURX));
    // Simulate the hardware walker setting A and D, and an ignored software bit.
    auto pdpt_entry = [&]() -> uint64_t* {
        auto root = mem.words(pt.root());
        auto pdpt = GuestFrame((root[0] & mm::x86::pte::kAddrMask) >> 12);
        return mem.words(pdpt) + 1;
    };
    *pdpt_entry() |= mm::x86::pte::kAccessed | mm::x86::pte::kDirty | (1ULL << 9) | mm::x86::pte::kGlobal;
    ASSERT_TRUE(pt.protect_region(vr(k1G + k2M + k4K, k4K), kRO));
    auto m = pt.query(va(k1G + k2M));
    ASSERT_TRUE(m);
    EXPECT_EQ(m->size, PageSize::Size4K);
    EXPECT_EQ(m->perm, kURX);
    EXPECT_TRUE(m->accessed);
    EXPECT_TRUE(m->dirty);
    EXPECT_EQ(pt.query(va(k1G + k2M + k4K))->perm, kRO);
    EXPECT_EQ(pt.query(va(k1G + 9 * k2M))->size, PageSize::Size2M);
    EXPECT_TRUE(pt.query(va(k1G + 9 * k2M))->dirty);
    // clear_accessed returns the old bits and clears them.
    auto old = pt.clear_accessed(va(k1G + 9 * k2M + 5));
    ASSERT_TRUE(old);
    EXPECT_TRUE(old->accessed && old->dirty);
    auto now = pt.query(va(k1G + 9 * k2M));
    EXPECT_FALSE(now->accessed || now->dirty);
    EXPECT_ERR(pt.clear_accessed(va(0)), Error::NotFound);
    EXPECT_TRUE(pt.check_invariants());
}

TEST_F(PageTableTest, ProtectPartiallyCoveredHugePages) {
    ASSERT_TRUE(pt.map_region(vr(2 * k1G, k1G + 2 * k2M), pa(0), kRW, true));
    // From inside the 1G page into the middle of the first 2M page after it.
    const uint64_t lo = 3 * k1G - k2M - 2 * k4K;
    const uint64_t hi = 3 * k1G + k2M / 2;
    ASSERT_TRUE(pt.protect_region(vr(lo, hi - lo), kURX));
    EXPECT_TRUE(pt.check_invariants());
    expect_linear(2 * k1G, lo - 2 * k1G, 2 * k1G - 2 * k1G, kRW, 0x1000 * 31);
    expect_linear(lo, hi - lo, lo - 2 * k1G, kURX);
    expect_linear(hi, 3 * k1G + 2 * k2M - hi, hi - 2 * k1G, kRW);
    EXPECT_EQ(pt.query(va(2 * k1G))->size, PageSize::Size2M);
    EXPECT_EQ(pt.query(va(3 * k1G + k2M))->size, PageSize::Size2M);
    // Fully covered huge pages keep their size.
    ASSERT_TRUE(pt.protect_region(vr(2 * k1G, k2M), kRO));
    EXPECT_EQ(pt.query(va(2 * k1G))->size, PageSize::Size2M);
    EXPECT_EQ(pt.query(va(2 * k1G))->perm, kRO);
}

TEST_F(PageTableTest, TablesFreedWhenEmpty) {
    ASSERT_TRUE(pt.map(va(0x1000), pa(0), PageSize::Size4K, kRW));
    ASSERT_TRUE(pt.map(va(0x7f00'0000'0000), pa(0), PageSize::Size4K, kRW));
    ASSERT_TRUE(pt.map(va(0xffff'8000'4000'0000), pa(0), PageSize::Size2M, kRW));
    ASSERT_TRUE(pt.map(va(0xffff'ffff'c000'0000), pa(0), PageSize::Size1G, kRW));
    ASSERT_TRUE(pt.map_region(vr(0x10'0000'0000 - k2M, 2 * k2M), pa(0), kRW, false));
    EXPECT_GT(mem.live(), 10U);
    ASSERT_TRUE(pt.unmap_region(vr(0x1000, k4K)));
    ASSERT_TRUE(pt.unmap_region(vr(0x7f00'0000'0000, k4K)));
    ASSERT_TRUE(
        pt.unmap_region(GuestVirtRange::from_inclusive(va(0xffff'8000'0000'0000), GuestVirtAddr::max()).value()));
    ASSERT_TRUE(pt.unmap_region(vr(0x10'0000'0000 - k2M, 2 * k2M)));
    EXPECT_TRUE(all_mappings(pt).empty());
    EXPECT_EQ(mem.live(), 1U);
    // Unmapping holes only is fine.
    EXPECT_TRUE(pt.unmap_region(vr(0, 64 * k1G)));
    EXPECT_EQ(mem.live(), 1U);
}

TEST_F(PageTableTest, NoMemoryDuringSplitLeavesTableUnchanged) {
    ASSERT_TRUE(pt.map(va(k1G), pa(0), PageSize::Size1G, kRW));
    ASSERT_TRUE(pt.map(va(4 * k1G), pa(0), PageSize::Size2M, kRW));
    const auto before = all_mappings(pt);
    const size_t live = mem.live();
    for (size_t extra = 0; extra < 3; ++extra) {
        mem.set_limit(live + extra);
        // Both boundaries inside different 2M pieces of the 1G page: needs PD + 2 PTs.
        EXPECT_ERR(pt.unmap_region(vr(k1G + k2M + k4K, 3 * k2M)), Error::NoMemory);
        EXPECT_ERR(pt.protect_region(vr(k1G + k2M + k4K, 3 * k2M), kRO), Error::NoMemory);
        if (extra == 0) {
            EXPECT_ERR(pt.unmap_region(vr(4 * k1G + k4K, k4K)), Error::NoMemory);
        }
        EXPECT_EQ(all_mappings(pt), before);
        EXPECT_EQ(mem.live(), live);
        EXPECT_TRUE(pt.check_invariants());
    }
    mem.set_limit(live + 3);
    ASSERT_TRUE(pt.unmap_region(vr(k1G + k2M + k4K, 3 * k2M)));
    EXPECT_EQ(mem.live(), live + 3);
    expect_unmapped(k1G + k2M + k4K, 3 * k2M, 0x1000 * 13);
    expect_linear(k1G, k2M + k4K, 0, kRW);
    expect_linear(k1G + 4 * k2M + k4K, k1G - 4 * k2M - k4K, 4 * k2M + k4K, kRW, 0x1000 * 17);
}

TEST_F(PageTableTest, ForEachMappingStopsAndClips) {
    ASSERT_TRUE(pt.map_region(vr(k1G, 8 * k4K), pa(0), kRW, false));
    ASSERT_TRUE(pt.map(va(2 * k1G), pa(0), PageSize::Size1G, kRW));
    std::vector<uint64_t> seen;
    ASSERT_TRUE(pt.for_each_mapping(vr(k1G + 2 * k4K, 3 * k4K), [&](const Mapping& m) {
        seen.push_back(m.base.value());
        return true;
    }));
    EXPECT_EQ(seen, (std::vector<uint64_t>{k1G + 2 * k4K, k1G + 3 * k4K, k1G + 4 * k4K}));
    seen.clear();
    ASSERT_TRUE(pt.for_each_mapping(vr(0, 4 * k1G), [&](const Mapping& m) {
        seen.push_back(m.base.value());
        return seen.size() < 3;
    }));
    EXPECT_EQ(seen.size(), 3U);
    // A range inside a huge page reports the whole page.
    seen.clear();
    ASSERT_TRUE(pt.for_each_mapping(vr(2 * k1G + 5 * k2M, k4K), [&](const Mapping& m) {
        seen.push_back(m.base.value());
        return true;
    }));
    EXPECT_EQ(seen, (std::vector<uint64_t>{2 * k1G}));
    EXPECT_ERR(pt.for_each_mapping(vr(0x0000'7fff'ffff'f000, 0x2000), [](const Mapping&) { return true; }),
               Error::InvalidParam);
}

// ---- adopted and corrupted tables ----------------------------------------------------

class CorruptionTest : public ::testing::Test {
protected:
    VectorTableMemory mem{64};
    Table pt = Table::try_create(&mem).value();
    uint64_t* root() { return mem.words(pt.root()); }
    // The table an entry points to.
    uint64_t* child(uint64_t entry) { return mem.words(GuestFrame((entry & mm::x86::pte::kAddrMask) >> 12)); }
};

TEST_F(CorruptionTest, EntryOutsideTableMemory) {
    ASSERT_TRUE(pt.map(va(0x1000), pa(0), PageSize::Size4K, kRW));
    uint64_t* pdpt = child(root()[0]);
    pdpt[0] = (pdpt[0] & ~mm::x86::pte::kAddrMask) | (0x7'0000'0000ULL);  // far outside the 64 frames
    EXPECT_ERR(pt.query(va(0x1000)), Error::Corrupted);
    EXPECT_ERR(pt.map(va(0x2000), pa(0), PageSize::Size4K, kRW), Error::Corrupted);
    EXPECT_ERR(pt.unmap_region(vr(0, k1G)), Error::Corrupted);
    EXPECT_FALSE(pt.check_invariants());
    // A frame inside the memory but not a live table (strict memory) is refused too.
    pdpt[0] = (pdpt[0] & ~mm::x86::pte::kAddrMask) | ((mem.base().number() + 60) << 12);
    EXPECT_ERR(pt.query(va(0x1000)), Error::Corrupted);
}

TEST_F(CorruptionTest, ReservedBits) {
    ASSERT_TRUE(pt.map(va(0), pa(0), PageSize::Size2M, kRW));
    ASSERT_TRUE(pt.map(va(k1G), pa(k1G), PageSize::Size1G, kRW));
    ASSERT_TRUE(pt.check_invariants());
    uint64_t* pdpt = child(root()[0]);
    uint64_t* pd = child(pdpt[0]);
    pd[0] |= 1ULL << 13;  // reserved in a 2M leaf
    EXPECT_ERR(pt.query(va(0x1000)), Error::Corrupted);
    EXPECT_FALSE(pt.check_invariants());
    pd[0] &= ~(1ULL << 13);
    pdpt[1] |= 1ULL << 29;  // reserved in a 1G leaf
    EXPECT_ERR(pt.query(va(k1G)), Error::Corrupted);
    EXPECT_ERR(pt.protect_region(vr(k1G, k1G), kRO), Error::Corrupted);
    EXPECT_FALSE(pt.check_invariants());
    pdpt[1] &= ~(1ULL << 29);
    root()[0] |= mm::x86::pte::kHuge;  // PS in a PML4E
    EXPECT_ERR(pt.query(va(0)), Error::Corrupted);
    EXPECT_FALSE(pt.check_invariants());
    root()[0] &= ~mm::x86::pte::kHuge;
    EXPECT_TRUE(pt.check_invariants());
    pt.destroy();
    EXPECT_EQ(mem.live(), 0U);
}

// Every entry of the PML4, PDPT and PD points at the next one (shared subtables, no
// loop): 512^3 paths. Whole-tree walks stop at the table-visit budget with Corrupted
// instead of running for hours (found by fuzz_pagetable).
TEST_F(CorruptionTest, SharedSubtablesExhaustTheWalkBudget) {
    ASSERT_TRUE(pt.map(va(0x1000), pa(0x5000), PageSize::Size4K, kRW));
    uint64_t* pdpt = child(root()[0]);
    uint64_t* pd = child(pdpt[0]);
    const uint64_t to_pdpt = root()[0], to_pd = pdpt[0], to_pt = pd[0];
    for (size_t i = 0; i < 256; ++i) {  // the lower half: canonical addresses
        root()[i] = to_pdpt;
    }
    for (size_t i = 0; i < 512; ++i) {
        pdpt[i] = to_pd;
        pd[i] = to_pt;
    }
    size_t seen = 0;
    EXPECT_ERR(pt.for_each_mapping(vr(0, 0x0000'8000'0000'0000), [&seen](const Mapping&) { return ++seen, true; }),
               Error::Corrupted);
    EXPECT_FALSE(pt.check_invariants());
    EXPECT_EQ(pt.query(va(0x1000)).value().phys, pa(0x5000));  // single walks are unaffected
}

TEST_F(CorruptionTest, LoopsAreDetected) {
    ASSERT_TRUE(pt.map(va(0x1000), pa(0), PageSize::Size4K, kRW));
    uint64_t* pdpt = child(root()[0]);
    uint64_t* pd = child(pdpt[0]);
    uint64_t saved_root0 = root()[0];
    uint64_t saved_pd0 = pd[0];
    // Root points at itself.
    root()[1] = (pt.root().number() << 12) | mm::x86::pte::kIntermediate;
    EXPECT_ERR(pt.query(va(k1G * 512 + 0x1000)), Error::Corrupted);
    EXPECT_ERR(pt.map(va(k1G * 512), pa(0), PageSize::Size4K, kRW), Error::Corrupted);
    EXPECT_FALSE(pt.check_invariants());
    root()[1] = 0;
    // PD points back at the PDPT (an ancestor) and at the root.
    pd[5] = (saved_root0 & mm::x86::pte::kAddrMask) | mm::x86::pte::kIntermediate;
    EXPECT_ERR(pt.query(va(5 * k2M)), Error::Corrupted);
    EXPECT_FALSE(pt.check_invariants());
    EXPECT_ERR(pt.unmap_region(vr(5 * k2M, k1G - 5 * k2M)), Error::Corrupted);
    pd[5] = (pt.root().number() << 12) | mm::x86::pte::kIntermediate;
    EXPECT_ERR(pt.query(va(5 * k2M)), Error::Corrupted);
    EXPECT_ERR(pt.for_each_mapping(vr(0, k1G), [](const Mapping&) { return true; }), Error::Corrupted);
    pd[5] = 0;
    EXPECT_EQ(pd[0], saved_pd0);
    EXPECT_TRUE(pt.check_invariants());
    EXPECT_EQ(pt.translate(va(0x1000)).value(), pa(0));
    pt.destroy();
    EXPECT_EQ(mem.live(), 0U);
    EXPECT_EQ(mem.bad_frees(), 0U);
}

TEST_F(CorruptionTest, ForEachTableVisitsEveryTableAndRejectsLoops) {
    ASSERT_TRUE(pt.map(va(0x1000), pa(0), PageSize::Size4K, kRW));
    ASSERT_TRUE(pt.map(va(k1G + 3 * k2M), pa(k2M), PageSize::Size2M, kRW));  // a PD with a 2M leaf: no PT
    auto tables = [&] {
        std::vector<GuestFrame> out;
        auto s = pt.for_each_table([&](GuestFrame f) {
            out.push_back(f);
            return true;
        });
        return s ? std::optional(out) : std::nullopt;
    };
    auto seen = tables();
    ASSERT_TRUE(seen.has_value());
    EXPECT_EQ(seen->size(), mem.live());  // root, PDPT, two PDs, one PT
    EXPECT_EQ(seen->size(), 5U);
    EXPECT_EQ(seen->front(), pt.root());
    for (GuestFrame f : *seen) EXPECT_TRUE(mem.is_live(f));
    size_t visits = 0;  // fn returning false stops the walk
    ASSERT_TRUE(pt.for_each_table([&](GuestFrame) { return ++visits < 2; }));
    EXPECT_EQ(visits, 2U);
    // A PT linked from two PD entries is visited twice.
    uint64_t* pd = child(child(root()[0])[0]);
    pd[7] = pd[0];
    seen = tables();
    ASSERT_TRUE(seen.has_value());
    EXPECT_EQ(seen->size(), 6U);
    pd[7] = 0;
    // A loop back to the root, reserved bits, a table outside table memory: Corrupted.
    root()[1] = (pt.root().number() << 12) | mm::x86::pte::kIntermediate;
    EXPECT_FALSE(tables().has_value());
    root()[1] = 0;
    root()[2] = (uint64_t{0x7777'0000} << 12) | mm::x86::pte::kIntermediate;
    EXPECT_FALSE(tables().has_value());
    root()[2] = root()[0] | mm::x86::pte::kHuge;  // PS in a PML4 entry is reserved
    EXPECT_FALSE(tables().has_value());
    root()[2] = 0;
    EXPECT_TRUE(tables().has_value());
    EXPECT_TRUE(pt.check_invariants());
    pt.destroy();
    EXPECT_EQ(mem.live(), 0U);
}

TEST_F(CorruptionTest, AdoptedRootOutsideMemory) {
    auto bad = Table::adopt(&mem, GuestFrame(0x9999'9999));
    EXPECT_ERR(bad.query(va(0)), Error::Corrupted);
    EXPECT_ERR(bad.map(va(0), pa(0), PageSize::Size4K, kRW), Error::Corrupted);
    EXPECT_FALSE(bad.check_invariants());
    auto same = Table::adopt(&mem, pt.root());
    ASSERT_TRUE(same.map(va(0x5000), pa(0x9000), PageSize::Size4K, kRW));
    EXPECT_EQ(pt.translate(va(0x5000)).value(), pa(0x9000));
    EXPECT_EQ(same.root(), pt.root());
}

TEST_F(CorruptionTest, RandomGarbageNeverCrashes) {
    // Non-strict memory: entries may point at any of the 64 frames, live or not.
    VectorTableMemory loose(64, GuestFrame(0x100), /*strict=*/false);
    auto t = Table::try_create(&loose).value();
    std::mt19937_64 rng(pv::test::test_seed(0x9a7b));
    SCOPED_TRACE(pv::test::seed_trace(pv::test::test_seed(0x9a7b)));
    for (int round = 0; round < 200; ++round) {
        for (size_t f = 0; f < 64; ++f) {
            uint64_t* w = loose.words(f);
            for (size_t i = 0; i < 512; ++i) {
                uint64_t r = rng();
                switch (r % 4) {
                    case 0: w[i] = 0; break;
                    case 1: w[i] = r; break;                                                  // garbage
                    case 2: w[i] = ((0x100 + (r >> 8) % 64) << 12) | (r & 0x1ff) | 1; break;  // inside memory
                    default: w[i] = ((r >> 8) % 0x200 << 12) | 1; break;                      // mostly outside
                }
            }
        }
        for (int q = 0; q < 200; ++q) {
            uint64_t v = rng() & 0x0000'ffff'ffff'f000;
            auto a = mm::x86::from_linear(v);
            auto m = t.query(a);
            if (m) {
                EXPECT_TRUE(m->range().contains(a));
            } else {
                EXPECT_TRUE(m.error() == Error::NotFound || m.error() == Error::Corrupted);
            }
        }
        size_t n = 0;
        auto st = t.for_each_mapping(GuestVirtRange::from_start_size(va(0), UINT64_MAX),
                                     [&](const Mapping&) { return ++n < 100000; });
        EXPECT_TRUE(st || st.error() == Error::Corrupted);
        (void)t.check_invariants();
        auto u = t.unmap_region(vr(mm::x86::from_linear(rng() & 0x0000'ffff'ffe0'0000).value(), k2M + k4K));
        EXPECT_TRUE(u || u.error() == Error::Corrupted || u.error() == Error::NoMemory);
    }
}

}  // namespace
