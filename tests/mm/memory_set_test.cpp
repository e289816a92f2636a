// MemorySet: the seed crate's scenarios, the seed defects (each fixed and
// tested), backend failures, node-pool exhaustion and the top of the space.
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

#include "tests/mm/memory_set_mock.h"

namespace {

using namespace pv::test;
using mm::Error;

constexpr std::uint64_t kMax = 0x10000;  // the seed's MAX_ADDR: 16 pages

class MemorySetTest : public ::testing::Test {
protected:
    MemorySetTest()
        : m_storage(64), m_pt(0, kMax / kPage), m_set(std::move(MockSet::try_create(m_storage.span()).value())) {}

    void expect_ok() {
        EXPECT_TRUE(m_set.check_invariants());
        EXPECT_TRUE(set_matches_table(m_set, m_pt));
    }
    static auto set_flags(std::uint8_t f) {
        return [f](std::uint8_t) { return mm::FlagsUpdate<std::uint8_t>::to(f); };
    }

    SetStorage m_storage;
    MockPageTable m_pt;
    MockSet m_set;
};

TEST_F(MemorySetTest, SeedMapUnmap) {
    for (std::uint64_t s = 0; s < kMax; s += 0x2000) ASSERT_TRUE(m_set.map(area(s, 0x1000, 1), m_pt, false));
    for (std::uint64_t s = 0x1000; s < kMax; s += 0x2000) ASSERT_TRUE(m_set.map(area(s, 0x1000, 2), m_pt, false));
    EXPECT_EQ(m_set.size(), 16U);
    for (auto f : m_pt.flags) EXPECT_TRUE(f == 1 || f == 2);
    expect_ok();

    const MockArea* a = m_set.find(Addr(0x4100));
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->start().value(), 0x4000U);
    EXPECT_EQ(a->size(), 0x1000U);
    EXPECT_EQ(a->last().value(), 0x4fffU);
    EXPECT_EQ(a->flags(), 1);

    // [0x4000, 0x8000) is already mapped.
    auto r = m_set.map(area(0x4000, 0x4000, 3), m_pt, false);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), Error::AlreadyExists);
    EXPECT_EQ(m_set.size(), 16U);
    expect_ok();
    // Unmap the overlapped areas first: 4 areas become 1.
    ASSERT_TRUE(m_set.map(area(0x4000, 0x4000, 3), m_pt, true));
    EXPECT_EQ(m_set.size(), 13U);
    expect_ok();
    for (std::uint64_t p = 4; p < 8; ++p) EXPECT_EQ(m_pt.flags[p], 3);
    a = m_set.find(Addr(0x7fff));
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->start().value(), 0x4000U);
    EXPECT_EQ(a->size(), 0x4000U);

    // Overlapping two areas partially: [0x3800.. is not page aligned for the
    // mock, so use [0x3000, 0x5000): shrinks [0x4000,0x8000) and replaces 0x3000.
    ASSERT_TRUE(m_set.map(area(0x3000, 0x2000, 4), m_pt, true));
    EXPECT_EQ(m_set.size(), 13U);
    expect_ok();
    EXPECT_EQ(m_set.find(Addr(0x5000))->start().value(), 0x5000U);

    // Unmap the middle, then everything (including unmapped ranges).
    ASSERT_TRUE(m_set.unmap(Addr(0x4000), 0x8000, m_pt));
    EXPECT_EQ(m_set.size(), 8U);
    expect_ok();
    for (std::uint64_t p = 4; p < 12; ++p) EXPECT_EQ(m_pt.flags[p], 0);
    ASSERT_TRUE(m_set.unmap(Addr(0), kMax * 2, m_pt));
    EXPECT_TRUE(m_set.is_empty());
    expect_ok();
    for (auto f : m_pt.flags) EXPECT_EQ(f, 0);
}

TEST_F(MemorySetTest, SeedUnmapSplit) {
    // Areas of 3 pages every 4 pages: [0,3) [4,7) [8,11) [12,15) (in pages).
    for (std::uint64_t s = 0; s < kMax; s += 0x4000) ASSERT_TRUE(m_set.map(area(s, 0x3000, 1), m_pt, false));
    EXPECT_EQ(m_set.size(), 4U);
    // Shrink right: unmap [s+2, s+4) pages (covers the trailing page and the gap).
    for (std::uint64_t s = 0; s < kMax; s += 0x4000) ASSERT_TRUE(m_set.unmap(Addr(s + 0x2000), 0x2000, m_pt));
    EXPECT_EQ(m_set.size(), 4U);
    expect_ok();
    for (const MockArea& a : m_set) EXPECT_EQ(a.size(), 0x2000U);
    // Shrink left: unmap the first page of each.
    for (std::uint64_t s = 0; s < kMax; s += 0x4000) ASSERT_TRUE(m_set.unmap(Addr(s), 0x1000, m_pt));
    EXPECT_EQ(m_set.size(), 4U);
    expect_ok();
    for (const MockArea& a : m_set) EXPECT_EQ(a.start().value() % 0x4000, 0x1000U);
    // Remap [0,16) pages fully (with overlap), then split one area in the middle.
    ASSERT_TRUE(m_set.map(area(0, kMax, 2), m_pt, true));
    EXPECT_EQ(m_set.size(), 1U);
    ASSERT_TRUE(m_set.unmap(Addr(0x3000), 0x2000, m_pt));
    EXPECT_EQ(m_set.size(), 2U);
    expect_ok();
    EXPECT_EQ(m_set.find(Addr(0x2fff))->size(), 0x3000U);
    EXPECT_EQ(m_set.find(Addr(0x5000))->size(), kMax - 0x5000);
    // Split again, then one unmap spanning three areas partially.
    ASSERT_TRUE(m_set.unmap(Addr(0x8000), 0x1000, m_pt));
    EXPECT_EQ(m_set.size(), 3U);
    ASSERT_TRUE(m_set.unmap(Addr(0x2000), 0x8000, m_pt));  // [2,10): shrinks [0,3), removes [5,8), shrinks [9,16)
    EXPECT_EQ(m_set.size(), 2U);
    expect_ok();
    EXPECT_EQ(m_set.find(Addr(0))->size(), 0x2000U);
    EXPECT_EQ(m_set.find(Addr(0xa000))->start().value(), 0xa000U);
    // Unmapping a range with no area in it is fine and changes nothing.
    ASSERT_TRUE(m_set.unmap(Addr(0x3000), 0x1000, m_pt));
    EXPECT_EQ(m_set.size(), 2U);
    expect_ok();
}

TEST_F(MemorySetTest, SeedProtect) {
    for (std::uint64_t s = 0; s < kMax; s += 0x2000) ASSERT_TRUE(m_set.map(area(s, 0x1000, 7), m_pt, false));
    EXPECT_EQ(m_set.size(), 8U);
    // Whole-range protect changes flags, no splits.
    ASSERT_TRUE(m_set.protect(Addr(0), kMax, set_flags(1), m_pt));
    EXPECT_EQ(m_set.size(), 8U);
    expect_ok();
    for (std::uint64_t p = 0; p < 16; p += 2) EXPECT_EQ(m_pt.flags[p], 1);

    ASSERT_TRUE(m_set.map(area(0x1000, 0x5000, 7), m_pt, true));  // [1,6) pages over [2] and [4]
    EXPECT_EQ(m_set.size(), 7U);
    // Middle of one area -> 3 areas.
    ASSERT_TRUE(m_set.protect(Addr(0x2000), 0x2000, set_flags(3), m_pt));
    EXPECT_EQ(m_set.size(), 9U);
    expect_ok();
    EXPECT_EQ(m_set.find(Addr(0x1000))->size(), 0x1000U);
    EXPECT_EQ(m_set.find(Addr(0x2000))->flags(), 3);
    EXPECT_EQ(m_set.find(Addr(0x4000))->size(), 0x2000U);
    // Across areas: [5,9) pages: splits [4,6) and [8,9) is whole; [6] is a gap.
    ASSERT_TRUE(m_set.protect(Addr(0x5000), 0x4000, set_flags(5), m_pt));
    EXPECT_EQ(m_set.size(), 10U);
    expect_ok();
    // "No change" for flags 3: only the others change, nothing splits there.
    auto only_not_3 = [](std::uint8_t old) {
        return old == 3 ? mm::FlagsUpdate<std::uint8_t>::keep() : mm::FlagsUpdate<std::uint8_t>::to(2);
    };
    ASSERT_TRUE(m_set.protect(Addr(0x2000), 0x3000, only_not_3, m_pt));  // [2,4) keeps 3, [4,5) -> 2
    EXPECT_EQ(m_set.size(), 10U);
    EXPECT_EQ(m_pt.flags[2], 3);
    EXPECT_EQ(m_pt.flags[3], 3);
    EXPECT_EQ(m_pt.flags[4], 2);
    expect_ok();
    // std::optional works as the update result too.
    ASSERT_TRUE(m_set.protect(
        Addr(0), 0x1000, [](std::uint8_t) { return std::optional<std::uint8_t>(6); }, m_pt));
    EXPECT_EQ(m_pt.flags[0], 6);
    expect_ok();
}

TEST_F(MemorySetTest, IterationIsInAddressOrder) {
    for (std::uint64_t s : {0x9000U, 0x1000U, 0x5000U, 0x3000U})
        ASSERT_TRUE(m_set.map(area(s, 0x1000, 1), m_pt, false));
    std::uint64_t prev = 0;
    std::size_t n = 0;
    for (const MockArea& a : m_set) {
        EXPECT_GT(a.start().value(), prev);
        prev = a.start().value();
        ++n;
    }
    EXPECT_EQ(n, 4U);
    EXPECT_TRUE(m_set.overlaps(AddrRange::from_start_size(Addr(0x2000), 0x1001)));
    EXPECT_FALSE(m_set.overlaps(AddrRange::from_start_size(Addr(0x2000), 0x1000)));
    EXPECT_FALSE(m_set.overlaps(AddrRange::from_start_size(Addr(0x3000), 0)));
    EXPECT_EQ(m_set.find(Addr(0x2fff)), nullptr);
    EXPECT_EQ(m_set.find(Addr(0x3fff))->start().value(), 0x3000U);
}

TEST_F(MemorySetTest, BadParametersAreErrorsAndChangeNothing) {
    ASSERT_TRUE(m_set.map(area(0x1000, 0x2000, 1), m_pt, false));
    auto before = snapshot(m_set);
    EXPECT_EQ(m_set.map(area(0x1000, 0, 1), m_pt, false).error(), Error::InvalidParam);
    EXPECT_EQ(m_set.map(area(0x8000, 0, 1), m_pt, true).error(), Error::InvalidParam);
    EXPECT_EQ(m_set.unmap(Addr(0x1000), 0, m_pt).error(), Error::InvalidParam);
    EXPECT_EQ(m_set.protect(Addr(0x1000), 0, set_flags(2), m_pt).error(), Error::InvalidParam);
    EXPECT_EQ(m_set.unmap(Addr(UINT64_MAX - 0xfff), 0x2000, m_pt).error(), Error::Overflow);
    EXPECT_EQ(m_set.protect(Addr(0x1000), UINT64_MAX, set_flags(2), m_pt).error(), Error::Overflow);
    EXPECT_EQ(MockArea::try_create(Addr(UINT64_MAX), 2, 1, MockBackend{}).error(), Error::Overflow);
    EXPECT_TRUE(MockArea::try_create(Addr(UINT64_MAX), 1, 1, MockBackend{}));
    auto limit = AddrRange::from_start_size(Addr(0), kMax);
    EXPECT_EQ(m_set.find_free_area(Addr(0), 0, limit, kPage).error(), Error::InvalidParam);
    EXPECT_EQ(m_set.find_free_area(Addr(0), kPage, limit, 0).error(), Error::InvalidParam);
    EXPECT_EQ(m_set.find_free_area(Addr(0), kPage, limit, 0x3000).error(), Error::InvalidParam);
    EXPECT_EQ(m_set.find_free_area(Addr(0), kPage, AddrRange(), kPage).error(), Error::InvalidParam);
    EXPECT_EQ(m_set.find_free_area(Addr(0), kMax + 1, limit, kPage).error(), Error::NoMemory);
    EXPECT_EQ(snapshot(m_set), before);
    expect_ok();
    std::byte tiny[8];
    EXPECT_EQ(MockSet::try_create(std::span<std::byte>(tiny)).error(), Error::InvalidParam);
}

TEST_F(MemorySetTest, FindFreeAreaHintAndAlignment) {
    // Areas (pages): [1,3) [4,5) [8,9) [12,16). Gaps: [0,1) [3,4) [5,8) [9,12).
    ASSERT_TRUE(m_set.map(area(0x1000, 0x2000, 1), m_pt, false));
    ASSERT_TRUE(m_set.map(area(0x4000, 0x1000, 1), m_pt, false));
    ASSERT_TRUE(m_set.map(area(0x8000, 0x1000, 1), m_pt, false));
    ASSERT_TRUE(m_set.map(area(0xc000, 0x4000, 1), m_pt, false));
    auto limit = AddrRange::from_start_size(Addr(0), kMax);
    auto find = [&](std::uint64_t hint, std::uint64_t size, std::uint64_t align, AddrRange lim) {
        auto r = m_set.find_free_area(Addr(hint), size, lim, align);
        return r ? r->value() : ~std::uint64_t{0};
    };
    EXPECT_EQ(find(0, 0x1000, kPage, limit), 0x0U);
    EXPECT_EQ(find(0x1800, 0x1000, kPage, limit), 0x3000U);  // hint inside an area
    EXPECT_EQ(find(0x5800, 0x1000, kPage, limit), 0x6000U);  // unaligned hint in a gap
    EXPECT_EQ(find(0x5800, 0x1000, 1, limit), 0x5800U);      // byte alignment
    EXPECT_EQ(find(0x3000, 0x2000, kPage, limit), 0x5000U);  // gap at the hint too small
    EXPECT_EQ(find(0x6000, 0x3000, kPage, limit), 0x9000U);
    EXPECT_EQ(find(0x9800, 0x3000, kPage, limit), 0x5000U);        // nothing above: wraps below the hint
    EXPECT_EQ(find(0, 0x3000, 0x4000, limit), ~std::uint64_t{0});  // [5,8) and [9,12) hold no 4-page-aligned 3 pages
    EXPECT_EQ(find(0, 0x2000, 0x2000, limit), 0x6000U);            // [5,8) holds an aligned [6,8)
    EXPECT_EQ(find(0, 0x1000, 0x8000, limit), 0x0U);
    EXPECT_EQ(find(0x1000, 0x1000, 0x8000, limit), 0x0U);  // only 0 and 0x8000 aligned; 0x8000 is taken: wrap
    // Limits: the answer never leaves them.
    auto mid = AddrRange::from_start_size(Addr(0x5800), 0x2000);
    EXPECT_EQ(find(0, 0x1000, kPage, mid), 0x6000U);  // hint below the limit starts at limit.start
    EXPECT_EQ(find(0, 0x2000, kPage, mid), ~std::uint64_t{0});
    EXPECT_EQ(find(0, 0x2000, 1, mid), 0x5800U);
    EXPECT_EQ(find(0xf000, 0x1000, kPage, mid), 0x6000U);  // hint above the limit
    auto beyond = AddrRange::from_start_size(Addr(0x10000), 0x3000);
    EXPECT_EQ(find(0, 0x3000, kPage, beyond), 0x10000U);
    auto top = AddrRange::from_inclusive(Addr(kPage), Addr::max()).value();  // a Range holds < 2^64 bytes
    EXPECT_EQ(find(0xd000, 0x1000, kPage, top), kMax);
    EXPECT_EQ(find(0xd000, UINT64_MAX - kMax + 1, kPage, top), kMax);  // ends exactly at 2^64
    EXPECT_EQ(find(0xd000, UINT64_MAX - kMax + 2, 1, top), ~std::uint64_t{0});
    expect_ok();
}

TEST_F(MemorySetTest, MergeAdjacentJoinsOnlyCompatibleAreas) {
    ASSERT_TRUE(m_set.map(MockArea(Addr(0x0000), 0x2000, 1, MockBackend{100, 0, nullptr}), m_pt, false));
    ASSERT_TRUE(m_set.map(MockArea(Addr(0x2000), 0x1000, 1, MockBackend{100 + 0x2000, 0, nullptr}), m_pt, false));
    ASSERT_TRUE(m_set.map(MockArea(Addr(0x3000), 0x1000, 1, MockBackend{999, 0, nullptr}), m_pt, false));  // not linear
    ASSERT_TRUE(m_set.map(MockArea(Addr(0x4000), 0x1000, 2, MockBackend{999 + 0x1000, 0, nullptr}), m_pt, false));
    ASSERT_TRUE(m_set.map(MockArea(Addr(0x5000), 0x1000, 2, MockBackend{999 + 0x2000, 1, nullptr}), m_pt, false));
    ASSERT_TRUE(m_set.map(MockArea(Addr(0x7000), 0x1000, 2, MockBackend{999 + 0x4000, 1, nullptr}), m_pt, false));
    EXPECT_EQ(m_set.merge_adjacent(AddrRange::from_start_size(Addr(0x3000), 0x1000)), 0U);  // 0x3000|0x4000: flags
    EXPECT_EQ(m_set.merge_adjacent(AddrRange::from_start_size(Addr(0x2800), 0x800)), 0U);   // boundary 0x3000: backend
    EXPECT_EQ(m_set.merge_adjacent(AddrRange::from_start_size(Addr(0x1000), 0x1000)), 1U);  // boundary 0x2000
    EXPECT_EQ(m_set.merge_adjacent(), 0U);  // node differs at 0x5000, gap before 0x7000
    EXPECT_EQ(m_set.size(), 5U);
    EXPECT_EQ(m_set.find(Addr(0x2fff))->size(), 0x3000U);
    expect_ok();
    // The merged area still unmaps and splits with the right offsets.
    ASSERT_TRUE(m_set.unmap(Addr(0x1000), 0x1000, m_pt));
    EXPECT_EQ(m_set.find(Addr(0x2000))->backend().pos, 100U + 0x2000);
    expect_ok();
}

// Seed defect 1: a backend failure keeps the set equal to what is mapped.
TEST_F(MemorySetTest, UnmapFailureKeepsFailedAndLaterAreas) {
    Injector inj;
    for (std::uint64_t s = 0; s < 0x6000; s += 0x2000) ASSERT_TRUE(m_set.map(area(s, 0x1000, 1, &inj), m_pt, false));
    inj.countdown = 1;  // the second area's unmap fails
    auto r = m_set.unmap(Addr(0), 0x6000, m_pt);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), Error::BadState);
    EXPECT_EQ(m_set.size(), 2U);
    EXPECT_EQ(m_set.find(Addr(0)), nullptr);
    EXPECT_NE(m_set.find(Addr(0x2000)), nullptr);
    EXPECT_NE(m_set.find(Addr(0x4000)), nullptr);
    expect_ok();
    inj.countdown = 0;  // split of an area: nothing may change
    auto before = snapshot(m_set);
    EXPECT_FALSE(m_set.protect(Addr(0x2000), 0x1000, set_flags(5), m_pt));
    EXPECT_EQ(snapshot(m_set), before);
    expect_ok();
    inj.countdown = 0;
    EXPECT_FALSE(m_set.map(area(0x8000, 0x1000, 1, &inj), m_pt, false));
    EXPECT_EQ(snapshot(m_set), before);
    inj.countdown = 1;  // map with unmap_overlap: unmap succeeds, the map fails
    EXPECT_FALSE(m_set.map(area(0x2000, 0x1000, 9, &inj), m_pt, true));
    EXPECT_EQ(m_set.find(Addr(0x2000)), nullptr);
    expect_ok();
    inj.countdown = 0;
    EXPECT_FALSE(m_set.clear(m_pt));
    EXPECT_EQ(m_set.size(), 1U);
    expect_ok();
    ASSERT_TRUE(m_set.clear(m_pt));
    EXPECT_TRUE(m_set.is_empty());
    expect_ok();
}

TEST_F(MemorySetTest, ProtectFailureMidwayIsPrecise) {
    Injector inj;
    ASSERT_TRUE(m_set.map(area(0x0000, 0x3000, 1, &inj), m_pt, false));
    ASSERT_TRUE(m_set.map(area(0x4000, 0x3000, 1, &inj), m_pt, false));
    ASSERT_TRUE(m_set.map(area(0x8000, 0x3000, 1, &inj), m_pt, false));
    inj.countdown = 1;
    EXPECT_EQ(m_set.protect(Addr(0x1000), 0x9000, set_flags(4), m_pt).error(), Error::BadState);
    // The first area was split and protected; the second and third are untouched.
    EXPECT_EQ(m_set.size(), 4U);
    EXPECT_EQ(m_pt.flags[1], 4);
    EXPECT_EQ(m_pt.flags[4], 1);
    EXPECT_EQ(m_set.find(Addr(0x4000))->size(), 0x3000U);
    expect_ok();
}

// Node-pool exhaustion: NoMemory, nothing changed, and exactly enough works.
TEST(MemorySetPool, ExhaustionChangesNothing) {
    SetStorage storage(3);
    MockPageTable pt(0, 16);
    auto set = std::move(MockSet::try_create(storage.span()).value());
    EXPECT_EQ(set.capacity(), 3U);
    ASSERT_TRUE(set.map(area(0x0000, 0x4000, 1), pt, false));
    ASSERT_TRUE(set.map(area(0x5000, 0x4000, 1), pt, false));
    auto upd = [](std::uint8_t) { return mm::FlagsUpdate<std::uint8_t>::to(2); };
    // One free node: protecting the middle needs two.
    auto before = snapshot(set);
    EXPECT_EQ(set.protect(Addr(0x1000), 0x1000, upd, pt).error(), Error::NoMemory);
    EXPECT_EQ(set.map(area(0x1000, 0x1000, 3), pt, true).error(), Error::NoMemory);  // split + insert
    EXPECT_EQ(snapshot(set), before);
    EXPECT_TRUE(set_matches_table(set, pt));
    // Protect spanning both areas' inner ends needs two.
    EXPECT_EQ(set.protect(Addr(0x3000), 0x3000, upd, pt).error(), Error::NoMemory);
    EXPECT_EQ(snapshot(set), before);
    ASSERT_TRUE(set.unmap(Addr(0x1000), 0x1000, pt));  // split uses the last node
    EXPECT_EQ(set.free_nodes(), 0U);
    before = snapshot(set);
    EXPECT_EQ(set.unmap(Addr(0x6000), 0x1000, pt).error(), Error::NoMemory);
    EXPECT_EQ(set.map(area(0xe000, 0x1000, 3), pt, false).error(), Error::NoMemory);
    EXPECT_EQ(set.protect(Addr(0x2000), 0x1000, upd, pt).error(), Error::NoMemory);  // front of [2,4)
    EXPECT_EQ(snapshot(set), before);
    EXPECT_TRUE(set_matches_table(set, pt));
    // Replacing a whole area reuses its node; shrinking needs none.
    ASSERT_TRUE(set.map(area(0x5000, 0x4000, 4), pt, true));
    ASSERT_TRUE(set.unmap(Addr(0x5000), 0x1000, pt));
    ASSERT_TRUE(set.protect(Addr(0x0000), 0x1000, upd, pt));
    EXPECT_TRUE(set.check_invariants());
    EXPECT_TRUE(set_matches_table(set, pt));
}

// Seed defect 4: areas may end exactly at 2^64.
TEST(MemorySetTop, AreasEndingAt2To64) {
    const std::uint64_t base = UINT64_MAX - 16 * kPage + 1;
    SetStorage storage(16);
    MockPageTable pt(base, 16);
    auto set = std::move(MockSet::try_create(storage.span()).value());
    auto upd = [](std::uint8_t) { return mm::FlagsUpdate<std::uint8_t>::to(2); };
    ASSERT_TRUE(set.map(area(base + 8 * kPage, 8 * kPage, 1), pt, false));
    EXPECT_TRUE(set.find(Addr::max())->range().ends_at_top());
    EXPECT_TRUE(set.overlaps(AddrRange::from_inclusive(Addr::max(), Addr::max()).value()));
    auto all = AddrRange::from_inclusive(Addr(base), Addr::max()).value();
    EXPECT_EQ(set.find_free_area(Addr(base + 9 * kPage), kPage, all, kPage)->value(), base);
    EXPECT_EQ(set.find_free_area(Addr(base), 8 * kPage, all, kPage)->value(), base);
    EXPECT_EQ(set.find_free_area(Addr(base), 9 * kPage, all, kPage).error(), Error::NoMemory);
    ASSERT_TRUE(set.protect(Addr(UINT64_MAX - kPage + 1), kPage, upd, pt));
    EXPECT_EQ(set.size(), 2U);
    ASSERT_TRUE(set.unmap(Addr(base + 12 * kPage), 2 * kPage, pt));
    EXPECT_EQ(set.size(), 3U);
    EXPECT_TRUE(set.check_invariants());
    EXPECT_TRUE(set_matches_table(set, pt));
    EXPECT_EQ(set.find_free_area(Addr(base + 9 * kPage), 2 * kPage, all, kPage)->value(), base + 12 * kPage);
    EXPECT_EQ(set.find_free_area(Addr(base + 13 * kPage), 2 * kPage, all, kPage)->value(), base);
    ASSERT_TRUE(set.map(area(base, 16 * kPage, 3), pt, true));  // replaces everything, up to 2^64
    EXPECT_EQ(set.size(), 1U);
    EXPECT_EQ(set.find(Addr(base))->last(), Addr::max());
    EXPECT_EQ(set.unmap(Addr(UINT64_MAX), 2, pt).error(), Error::Overflow);
    ASSERT_TRUE(set.unmap(Addr(base), 16 * kPage, pt));
    EXPECT_TRUE(set.is_empty());
    EXPECT_EQ(set.find_free_area(Addr(0), 16 * kPage, all, kPage)->value(), base);
    EXPECT_TRUE(set_matches_table(set, pt));
}

TEST(MemorySetMove, MoveTransfersAreasAndStorage) {
    SetStorage storage(4);
    MockPageTable pt(0, 16);
    auto a = std::move(MockSet::try_create(storage.span()).value());
    ASSERT_TRUE(a.map(area(0x1000, 0x1000, 1), pt, false));
    MockSet b = std::move(a);
    EXPECT_EQ(b.size(), 1U);
    EXPECT_EQ(b.capacity(), 4U);
    EXPECT_TRUE(b.check_invariants());
    EXPECT_TRUE(set_matches_table(b, pt));
    ASSERT_TRUE(b.clear(pt));
}

// The index on its own: gap enumeration against a brute-force list, and
// check_invariants() really detects corrupted augmentation, heights and order.
struct PlainArea {
    mm::GuestVirtRange r;
    Addr start() const { return r.start(); }
    Addr last() const { return r.last(); }
    std::uint64_t size() const { return r.size(); }
};
using Tree = mm::GapTree<PlainArea>;
using TreeNode = Tree::Node;

TEST(GapTree, GapsAndInvariantChecks) {
    std::vector<std::uint64_t> words(200 * sizeof(TreeNode) / 8 + 1);
    mm::NodePool<TreeNode> pool({reinterpret_cast<std::byte*>(words.data()), words.size() * 8});
    ASSERT_GE(pool.capacity(), 200U);
    Tree tree;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> areas;  // [start, last]
    for (std::uint64_t i = 0; i < 100; ++i) {
        std::uint64_t start = (i * 37 % 100) * 0x10000 + (i % 7) * 0x1000;  // scrambled insertion order
        std::uint64_t size = 0x1000 * (1 + i % 5);
        tree.insert(pool.create(PlainArea{mm::GuestVirtRange::from_start_size(Addr(start), size)}));
        areas.emplace_back(start, start + size - 1);
        ASSERT_TRUE(tree.check_invariants());
    }
    std::sort(areas.begin(), areas.end());
    for (std::uint64_t need : {1ULL, 0x8000ULL, 0xc000ULL, 0xf000ULL}) {
        std::vector<std::pair<std::uint64_t, std::uint64_t>> expect, got;
        std::uint64_t free_from = 0;
        for (auto [s, l] : areas) {
            if (s > free_from && s - free_from >= need) expect.emplace_back(free_from, s - 1);
            free_from = l + 1;
        }
        expect.emplace_back(free_from, UINT64_MAX);
        tree.for_each_gap(0, UINT64_MAX, need, [&](std::uint64_t gs, std::uint64_t gl) {
            got.emplace_back(gs, gl);
            return false;
        });
        EXPECT_EQ(got, expect) << "need " << need;
    }
    TreeNode* n = tree.find_le(0x350000);
    ASSERT_NE(n, nullptr);
    n->max_gap += 1;
    EXPECT_FALSE(tree.check_invariants());
    n->max_gap -= 1;
    n->height += 1;
    EXPECT_FALSE(tree.check_invariants());
    n->height -= 1;
    n->sub_last += 1;
    EXPECT_FALSE(tree.check_invariants());
    n->sub_last -= 1;
    ASSERT_TRUE(tree.check_invariants());
    auto saved = n->area;
    n->area.r = mm::GuestVirtRange::from_start_size(n->next->area.start(), 1);  // overlaps its successor
    EXPECT_FALSE(tree.check_invariants());
    n->area = saved;
    ASSERT_TRUE(tree.check_invariants());
    while (TreeNode* f = tree.first()) {
        tree.erase(f);
        pool.destroy(f);
        ASSERT_TRUE(tree.check_invariants());
    }
    EXPECT_EQ(pool.in_use(), 0U);
}

}  // namespace
