// Unit tests of the typed page-table entry and the address helpers of mm/paging/pte.h.
#include "mm/paging/pte.h"

#include <gtest/gtest.h>

namespace {

using mm::GuestFrame;
using mm::GuestPhysAddr;
using mm::GuestVirtAddr;
using mm::Perm;
using namespace mm::x86;

TEST(Pte, LevelGeometry) {
    EXPECT_EQ(level_span(Level::Pt), 0x1000U);
    EXPECT_EQ(level_span(Level::Pd), 0x20'0000U);
    EXPECT_EQ(level_span(Level::Pdpt), 0x4000'0000U);
    EXPECT_EQ(level_span(Level::Pml4), 0x80'0000'0000U);
    EXPECT_EQ(level_of(mm::PageSize::Size2M), Level::Pd);
    EXPECT_EQ(page_size_of(Level::Pdpt), mm::PageSize::Size1G);
    const uint64_t lin = (3ULL << 39) | (5ULL << 30) | (7ULL << 21) | (9ULL << 12) | 0x123;
    EXPECT_EQ(table_index(lin, Level::Pml4), 3U);
    EXPECT_EQ(table_index(lin, Level::Pdpt), 5U);
    EXPECT_EQ(table_index(lin, Level::Pd), 7U);
    EXPECT_EQ(table_index(lin, Level::Pt), 9U);
}

TEST(Pte, CanonicalAndLinear) {
    EXPECT_TRUE(is_canonical(GuestVirtAddr(0)));
    EXPECT_TRUE(is_canonical(GuestVirtAddr(0x0000'7fff'ffff'ffff)));
    EXPECT_FALSE(is_canonical(GuestVirtAddr(0x0000'8000'0000'0000)));
    EXPECT_FALSE(is_canonical(GuestVirtAddr(0xffff'7fff'ffff'ffff)));
    EXPECT_TRUE(is_canonical(GuestVirtAddr(0xffff'8000'0000'0000)));
    EXPECT_TRUE(is_canonical(GuestVirtAddr(UINT64_MAX)));
    EXPECT_FALSE(is_canonical(GuestVirtAddr(0x8000'0000'0000'0000)));
    for (uint64_t v : {0ULL, 0x0000'7fff'ffff'f000ULL, 0xffff'8000'0000'0000ULL, 0xffff'ffff'ffff'f000ULL}) {
        EXPECT_EQ(from_linear(to_linear(GuestVirtAddr(v))), GuestVirtAddr(v));
    }
    // The hole disappears: the last lower-half byte and the first upper-half byte are adjacent.
    EXPECT_EQ(to_linear(GuestVirtAddr(0xffff'8000'0000'0000)), to_linear(GuestVirtAddr(0x0000'7fff'ffff'ffff)) + 1);
}

TEST(Pte, PermFlagsRoundTrip) {
    for (uint8_t bits = 0; bits < 16; ++bits) {
        Perm p = static_cast<Perm>(bits) | Perm::Read;
        uint64_t f = perm_to_flags(p);
        EXPECT_TRUE(f & pte::kPresent);
        EXPECT_EQ((f & pte::kWrite) != 0, mm::has(p, Perm::Write));
        EXPECT_EQ((f & pte::kUser) != 0, mm::has(p, Perm::User));
        EXPECT_EQ((f & pte::kNoExec) != 0, !mm::has(p, Perm::Exec));
        EXPECT_EQ(flags_to_perm(f), p);
    }
}

TEST(Pte, LeafAndTableEncoding) {
    auto pt = PtEntry::make_leaf(GuestPhysAddr(0xf'ffff'ffff'f000), mm::kPermRW);
    EXPECT_TRUE(pt.is_leaf());
    EXPECT_FALSE(pt.is_table());
    EXPECT_EQ(pt.phys(), GuestPhysAddr(0xf'ffff'ffff'f000));
    EXPECT_EQ(pt.perm(), mm::kPermRW);
    EXPECT_TRUE(pt.no_exec());
    EXPECT_FALSE(pt.has_reserved_bits());

    auto pd = PdEntry::make_leaf(GuestPhysAddr(0x4020'0000), mm::kPermRX | Perm::User);
    EXPECT_TRUE(pd.is_leaf());
    EXPECT_EQ(pd.raw() & pte::kHuge, pte::kHuge);
    EXPECT_EQ(pd.frame(), GuestFrame(0x40200));
    EXPECT_EQ(pd.page_size(), mm::PageSize::Size2M);

    auto table = PdptEntry::make_table(GuestFrame(0x1234));
    EXPECT_TRUE(table.is_table());
    EXPECT_EQ(table.frame(), GuestFrame(0x1234));
    EXPECT_EQ(table.raw() & 0xfff, pte::kIntermediate);
    EXPECT_FALSE(PdptEntry().is_present());

    EXPECT_EQ(pd.with_perm(Perm::Read).perm(), Perm::Read);
    EXPECT_EQ(pd.with_perm(Perm::Read).frame(), pd.frame());
}

TEST(Pte, ReservedBits) {
    EXPECT_TRUE(Pml4Entry::from_raw(0x1000 | pte::kPresent | pte::kHuge).has_reserved_bits());
    EXPECT_FALSE(Pml4Entry::from_raw(0x1000 | pte::kPresent).has_reserved_bits());
    // Not present: nothing is reserved.
    EXPECT_FALSE(Pml4Entry::from_raw(pte::kHuge).has_reserved_bits());
    auto pd = PdEntry::make_leaf(GuestPhysAddr(0x20'0000), mm::kPermRW);
    EXPECT_TRUE(PdEntry::from_raw(pd.raw() | (1ULL << 13)).has_reserved_bits());
    EXPECT_TRUE(PdEntry::from_raw(pd.raw() | (1ULL << 20)).has_reserved_bits());
    EXPECT_FALSE(PdEntry::from_raw(pd.raw() | pte::kPatHuge).has_reserved_bits());
    auto pdpt = PdptEntry::make_leaf(GuestPhysAddr(0x4000'0000), mm::kPermRW);
    EXPECT_TRUE(PdptEntry::from_raw(pdpt.raw() | (1ULL << 29)).has_reserved_bits());
    EXPECT_FALSE(PdptEntry::from_raw(pdpt.raw() | (1ULL << 30)).has_reserved_bits());  // address bit
    // A PDE that is a table may have any address bits.
    EXPECT_FALSE(PdEntry::make_table(GuestFrame(0x1001)).has_reserved_bits());
}

TEST(Pte, SplitChildKeepsAttributes) {
    const uint64_t attrs = pte::kWrite | pte::kUser | pte::kPwt | pte::kPcd | pte::kAccessed | pte::kDirty |
                           pte::kGlobal | pte::kPatHuge | pte::kNoExec | (1ULL << 9) | (1ULL << 52);
    auto pd = PdEntry::make_leaf(GuestFrame(0x80200), attrs);
    for (size_t i : {0UL, 1UL, 511UL}) {
        PtEntry c = pd.split_child(i);
        EXPECT_TRUE(c.is_leaf());
        EXPECT_EQ(c.frame(), GuestFrame(0x80200 + i));
        // PAT moves from bit 12 to bit 7; everything else is kept.
        EXPECT_EQ(c.attrs(), (attrs & ~pte::kPatHuge) | pte::kPat4K | pte::kPresent);
    }
    auto pdpt = PdptEntry::make_leaf(GuestFrame(0x40000), attrs);
    PdEntry c = pdpt.split_child(3);
    EXPECT_TRUE(c.is_leaf());
    EXPECT_EQ(c.phys(), GuestPhysAddr(0x4000'0000 + 3 * 0x20'0000));
    EXPECT_EQ(c.attrs(), attrs | pte::kPresent | pte::kHuge);
    EXPECT_FALSE(c.has_reserved_bits());
}

TEST(Pte, SlotSetPermKeepsOtherBits) {
    uint64_t slot = PtEntry::make_leaf(GuestPhysAddr(0x5000), mm::kPermRW).raw() | pte::kAccessed | pte::kDirty;
    slot_set_perm(&slot, perm_to_flags(mm::kPermRX | Perm::User));
    auto e = PtEntry::from_raw(slot);
    EXPECT_EQ(e.perm(), mm::kPermRX | Perm::User);
    EXPECT_TRUE(e.accessed() && e.dirty());
    EXPECT_EQ(e.phys(), GuestPhysAddr(0x5000));
    slot_set_perm(&slot, perm_to_flags(Perm::Read));
    EXPECT_EQ(PtEntry::from_raw(slot).perm(), Perm::Read);
}

}  // namespace
