// Every MemError code of the guest memory calls, and that a refused call leaves
// the areas, the page table and the frames exactly as they were.
#include "tests/vmm/paging/paging_fixture.h"

namespace pv::paging::test {
namespace {

using abi::MemError;

struct Snapshot {
    std::vector<std::tuple<uint64_t, uint64_t, uint8_t>> areas;
    std::vector<std::pair<uint64_t, uint64_t>> leaves;
    uint64_t frames;
    uint64_t brk;
    bool operator==(const Snapshot&) const = default;
};

class BadInputTest : public PagingTest {
protected:
    void SetUp() override {
        PagingTest::SetUp();
        m_existing = *mmap(abi::kMmapBase + 16 * kPage, 8 * kPage, kRW, abi::kMapFixed | abi::kMapPopulate);
        ASSERT_TRUE(m_as->brk(Caller{}, abi::kBrkBase + 3 * kPage).has_value());
        ASSERT_TRUE(write(abi::kBrkBase, 1));
    }
    Snapshot snapshot() {
        Snapshot s;
        for (const auto& a : m_as->areas())
            s.areas.emplace_back(a.range.start().value(), a.range.size(), static_cast<uint8_t>(a.flags));
        for (uint64_t p = abi::kBrkBase; p < abi::kBrkBase + 4 * kPage; p += kPage)
            if (auto m = m_as->query(mm::GuestVirtAddr(p))) s.leaves.emplace_back(p, m->phys.value());
        for (uint64_t p = m_existing; p < m_existing + 8 * kPage; p += kPage)
            if (auto m = m_as->query(mm::GuestVirtAddr(p))) s.leaves.emplace_back(p, m->phys.value());
        s.frames = m_frames.used();
        s.brk = m_as->current_brk();
        return s;
    }
    uint64_t m_existing = 0;
};

struct Case {
    const char* what;
    std::function<MemResult(GuestAddressSpace&)> call;
    MemError expected;
};

TEST_F(BadInputTest, EveryErrorCodeLeavesEverythingUnchanged) {
    constexpr uint64_t kTopPage = UINT64_MAX & ~(kPage - 1);
    const uint64_t e = m_existing;
    Caller c;
    std::vector<Case> cases = {
        {"mmap unaligned hint", [&](auto& as) { return as.mmap(c, abi::kMmapBase + 1, kPage, kRW, 0, 0); },
         MemError::Invalid},
        {"mmap unaligned fixed", [&](auto& as) { return as.mmap(c, e + 8, kPage, kRW, abi::kMapFixed, 0); },
         MemError::Invalid},
        {"mmap zero length", [&](auto& as) { return as.mmap(c, 0, 0, kRW, 0, 0); }, MemError::Invalid},
        {"mmap fixed zero length", [&](auto& as) { return as.mmap(c, e, 0, kRW, abi::kMapFixed, 0); },
         MemError::Invalid},
        {"mmap bad prot", [&](auto& as) { return as.mmap(c, 0, kPage, 8, 0, 0); }, MemError::Invalid},
        {"mmap bad flags", [&](auto& as) { return as.mmap(c, 0, kPage, kRW, 1U << 9, 0); }, MemError::Invalid},
        {"mmap bad node", [&](auto& as) { return as.mmap(c, 0, kPage, kRW, 0, 2); }, MemError::Invalid},
        {"mmap huge node", [&](auto& as) { return as.mmap(c, 0, kPage, kRW, 0, 1ULL << 40); }, MemError::Invalid},
        {"mmap length overflow", [&](auto& as) { return as.mmap(c, 0, UINT64_MAX, kRW, 0, 0); }, MemError::Overflow},
        {"mmap fixed wraps", [&](auto& as) { return as.mmap(c, kTopPage, 2 * kPage, kRW, abi::kMapFixed, 0); },
         MemError::Overflow},
        {"mmap fixed over kernel structures",
         [&](auto& as) { return as.mmap(c, 0x20'0000, kPage, kRW, abi::kMapFixed, 0); }, MemError::OutOfRange},
        {"mmap fixed at 0", [&](auto& as) { return as.mmap(c, 0, kPage, kRW, abi::kMapFixed, 0); },
         MemError::OutOfRange},
        {"mmap fixed in brk region",
         [&](auto& as) { return as.mmap(c, abi::kBrkBase + 64 * kPage, kPage, kRW, abi::kMapFixed, 0); },
         MemError::OutOfRange},
        {"mmap fixed across user top",
         [&](auto& as) { return as.mmap(c, abi::kUserTop - kPage, 2 * kPage, kRW, abi::kMapFixed, 0); },
         MemError::OutOfRange},
        {"mmap fixed upper half",
         [&](auto& as) { return as.mmap(c, 0xFFFF'8000'0000'0000, kPage, kRW, abi::kMapFixed, 0); },
         MemError::OutOfRange},
        {"mmap noreplace", [&](auto& as) { return as.mmap(c, e + kPage, kPage, kRW, abi::kMapNoReplace, 0); },
         MemError::Exists},
        {"mmap fixed noreplace",
         [&](auto& as) { return as.mmap(c, e - kPage, 2 * kPage, kRW, abi::kMapFixed | abi::kMapNoReplace, 0); },
         MemError::Exists},
        {"mmap larger than the range", [&](auto& as) { return as.mmap(c, 0, 1ULL << 47, kRW, 0, 0); },
         MemError::NoMemory},
        {"munmap unaligned", [&](auto& as) { return as.munmap(c, e + 1, kPage); }, MemError::Invalid},
        {"munmap zero length", [&](auto& as) { return as.munmap(c, e, 0); }, MemError::Invalid},
        {"munmap wraps", [&](auto& as) { return as.munmap(c, kTopPage, 2 * kPage); }, MemError::Overflow},
        {"munmap length overflow", [&](auto& as) { return as.munmap(c, e, UINT64_MAX - 5); }, MemError::Overflow},
        {"munmap kernel structures", [&](auto& as) { return as.munmap(c, 0x1000, kPage); }, MemError::OutOfRange},
        {"munmap below the user range", [&](auto& as) { return as.munmap(c, abi::kBrkBase - kPage, 2 * kPage); },
         MemError::OutOfRange},
        {"munmap across user top", [&](auto& as) { return as.munmap(c, abi::kUserTop - kPage, 2 * kPage); },
         MemError::OutOfRange},
        {"mprotect bad prot", [&](auto& as) { return as.mprotect(c, e, kPage, 0x10); }, MemError::Invalid},
        {"mprotect unaligned", [&](auto& as) { return as.mprotect(c, e + 4, kPage, 1); }, MemError::Invalid},
        {"mprotect zero length", [&](auto& as) { return as.mprotect(c, e, 0, 1); }, MemError::Invalid},
        {"mprotect wraps", [&](auto& as) { return as.mprotect(c, kTopPage, 2 * kPage, 1); }, MemError::Overflow},
        {"mprotect kernel structures", [&](auto& as) { return as.mprotect(c, 0x10'0000, kPage, 1); },
         MemError::OutOfRange},
        {"mprotect over a hole", [&](auto& as) { return as.mprotect(c, e, 9 * kPage, abi::kProtRead); },
         MemError::NotMapped},
        {"mprotect hole before", [&](auto& as) { return as.mprotect(c, e - kPage, 2 * kPage, abi::kProtRead); },
         MemError::NotMapped},
        {"brk below base", [&](auto& as) { return as.brk(c, abi::kBrkBase - 1); }, MemError::Invalid},
        {"brk beyond limit", [&](auto& as) { return as.brk(c, abi::kBrkLimit + kPage); }, MemError::NoMemory},
    };
    for (const Case& k : cases) {
        SCOPED_TRACE(k.what);
        Snapshot before = snapshot();
        MemResult r = k.call(*m_as);
        ASSERT_FALSE(r.has_value());
        EXPECT_EQ(r.error(), k.expected);
        EXPECT_EQ(to_abi(r), static_cast<int64_t>(k.expected));
        EXPECT_TRUE(m_as->check_invariants());
        EXPECT_TRUE(snapshot() == before);
    }
}

class MmapLimitsTest : public PagingTest {};

TEST_F(MmapLimitsTest, AreaTableFullIsNoMemoryAndChangesNothing) {
    make_space(AddressSpaceConfig{1, 1, 3});
    m_as->set_shootdown([] {});
    for (uint64_t i = 0; i < 3; ++i)
        ASSERT_TRUE(mmap(abi::kMmapBase + i * 4 * kPage, kPage, kRW, abi::kMapFixed | abi::kMapPopulate));
    auto r = mmap(0, kPage, kRW, 0);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), abi::MemError::NoMemory);
    ASSERT_TRUE(m_as->munmap(Caller{}, abi::kMmapBase + 4 * kPage, kPage).has_value());
    auto big = mmap(abi::kMmapBase + 16 * kPage, 3 * kPage, kRW, abi::kMapFixed);
    ASSERT_TRUE(big.has_value());
    // Splitting the 3-page area in the middle needs a fourth node.
    uint64_t used = m_frames.used();
    auto s = m_as->munmap(Caller{}, *big + kPage, kPage);
    ASSERT_FALSE(s.has_value());
    EXPECT_EQ(s.error(), abi::MemError::NoMemory);
    EXPECT_EQ(m_as->areas().size(), 3U);
    EXPECT_EQ(m_frames.used(), used);
    auto p = m_as->mprotect(Caller{}, *big + kPage, kPage, abi::kProtRead);
    ASSERT_FALSE(p.has_value());
    EXPECT_EQ(p.error(), abi::MemError::NoMemory);
    EXPECT_EQ(m_as->areas()[2].flags, mm::Perm::User | mm::kPermRW);
}

TEST_F(MmapLimitsTest, FixedMmapReplacesAndHintsAreHonouredWhenFree) {
    auto a = mmap(abi::kMmapBase + 64 * kPage, 4 * kPage, kRW, 0);
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(*a, abi::kMmapBase + 64 * kPage) << "a free hint is used as is";
    auto b = mmap(*a, 2 * kPage, kRW, 0);
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(*b, *a + 4 * kPage) << "a taken hint gives the next free range";
    ASSERT_TRUE(write(*a + kPage, 11));
    uint64_t used = m_frames.used();
    auto f = mmap(*a, 2 * kPage, abi::kProtRead, abi::kMapFixed);
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(*f, *a);
    EXPECT_EQ(read(*a + kPage), 0U) << "fixed replaces the old contents";
    EXPECT_LE(m_frames.used(), used);
    EXPECT_EQ(mmap(abi::kMmapBase + 8 * kPage, 2 * k2M, kRW, abi::kMapHuge).value_or(1) % k2M, 0U);
}

}  // namespace
}  // namespace pv::paging::test
