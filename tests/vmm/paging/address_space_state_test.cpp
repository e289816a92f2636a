// GuestAddressSpace::save_state / restore_state (snapshots, issue 9): a space
// restored over a copy of guest memory has the same areas, break, mappings and
// data, owns exactly the frames the page table uses, and keeps working; a
// malformed state or a page table that does not match it is refused with a
// one-line Invalid error. No KVM: the fixture's software CPU.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "tests/support/seed.h"
#include "tests/vmm/paging/paging_fixture.h"

namespace pv::paging::test {
namespace {

constexpr uint64_t kAreaBytes = 32;
constexpr uint64_t kHeaderBytes = 24;

// Every leaf of the guest's areas, in address order.
std::vector<mm::x86::Mapping> user_mappings(const GuestAddressSpace& as) {
    std::vector<mm::x86::Mapping> out;
    for (const auto& a : as.areas()) {
        if (a.range.start().value() < abi::kUserBase) continue;
        for (uint64_t page = a.range.start().value(); page <= a.range.last().value();) {
            auto m = as.query(mm::GuestVirtAddr(page));
            if (!m) {
                page += kPage;
                continue;
            }
            out.push_back(*m);
            page = m->base.value() + mm::bytes(m->size);
        }
    }
    return out;
}

uint64_t pages_of(const std::vector<mm::x86::Mapping>& ms) {
    uint64_t n = 0;
    for (const auto& m : ms) n += mm::bytes(m.size) / kPage;
    return n;
}

class StateTest : public PagingTest {
protected:
    // A second guest: a copy of the first one's memory, its own frames, a space adopting the same root.
    void make_copy() {
        m_as2.reset();
        m_frames2 = std::make_unique<FakeFrames>(kFirstFrame, kFrames, 2);
        m_provider2 = std::make_unique<FrameSourceAdapter<FakeFrames>>(*m_frames2, 2, kRam / kPage);
        auto mem = memory::GuestMemory::create(kRam);
        ASSERT_TRUE(mem.has_value());
        m_mem2 = std::make_unique<memory::GuestMemory>(std::move(*mem));
        auto from = m_mem->host_span(mm::GuestPhysAddr(0), kRam);
        auto to = m_mem2->host_span(mm::GuestPhysAddr(0), kRam);
        ASSERT_TRUE(from && to);
        std::memcpy(to->data(), from->data(), kRam);
        HostAccess access2 = [mem = m_mem2.get()](mm::GuestPhysAddr gpa, uint64_t len) {
            return mem->host_span(gpa, len);
        };
        auto as =
            GuestAddressSpace::create(AddressSpaceConfig{2, 1, 4096}, access2, *m_provider2, nullptr, m_as->root());
        ASSERT_TRUE(as.has_value()) << as.error().message;
        m_as2 = std::move(*as);
    }
    // Builds a guest with every kind of area and mapping; returns the address of each datum written.
    std::vector<uint64_t> build_guest() {
        std::vector<uint64_t> at;
        EXPECT_TRUE(m_as->map_linear(mm::GuestVirtRange::from_start_size(mm::GuestVirtAddr(0x4000'0000), 4 * kMiB),
                                     mm::GuestPhysAddr(0), mm::Perm::Read | mm::Perm::Write, true));
        EXPECT_TRUE(m_as->map_guard(mm::GuestVirtRange::from_start_size(mm::GuestVirtAddr(0x5000'0000), kPage)));
        auto small = mmap(0, 40 * kPage, kRW, 0);
        auto huge = mmap(0, 4 * k2M, kRW, abi::kMapHuge);
        auto pop = mmap(0, 8 * kPage, abi::kProtRead, abi::kMapPopulate, 1);
        EXPECT_TRUE(small && huge && pop);
        EXPECT_TRUE(m_as->brk(Caller{0, 0}, abi::kBrkBase + 5 * kPage + 12));
        for (uint64_t i = 0; i < 40; i += 3) at.push_back(*small + i * kPage + 8 * i);
        for (uint64_t i = 0; i < 4; ++i) at.push_back(*huge + i * k2M + 4096 * i);
        for (uint64_t i = 0; i < 5; ++i) at.push_back(abi::kBrkBase + i * kPage);
        uint64_t v = 1;
        for (uint64_t a : at) {
            EXPECT_TRUE(write(a, a ^ 0x5a5a'0000'0000'0000ULL ^ v, uint32_t(v % 2)));
            ++v;
        }
        // Split one huge page (partial munmap) and make part of the small area read-only.
        EXPECT_TRUE(m_as->munmap(Caller{0, 0}, *huge + k2M + 64 * kPage, 2 * kPage));
        EXPECT_TRUE(m_as->mprotect(Caller{0, 0}, *small + 10 * kPage, 5 * kPage, abi::kProtRead));
        std::erase_if(at, [&](uint64_t a) { return a >= *huge + k2M + 64 * kPage && a < *huge + k2M + 66 * kPage; });
        m_huge = *huge;
        return at;
    }
    void TearDown() override {
        if (m_as2) {
            EXPECT_TRUE(m_as2->check_invariants());
            m_as2.reset();
            EXPECT_EQ(m_frames2->bad_frees(), 0U);
            EXPECT_LE(m_frames2->used(), 1U) << "only the adopted root may stay";
        }
        PagingTest::TearDown();
    }

    std::unique_ptr<FakeFrames> m_frames2;
    std::unique_ptr<FrameSourceAdapter<FakeFrames>> m_provider2;
    std::unique_ptr<memory::GuestMemory> m_mem2;
    std::unique_ptr<GuestAddressSpace> m_as2;  // declared last: destroyed before its frames and memory
    uint64_t m_huge = 0;
};

TEST_F(StateTest, RestoredSpaceHasTheSameAreasMappingsDataAndFrames) {
    auto at = build_guest();
    auto state = m_as->save_state();
    ASSERT_NO_FATAL_FAILURE(make_copy());
    ASSERT_TRUE(m_as2->restore_state(state).has_value());
    EXPECT_TRUE(m_as2->check_invariants());
    EXPECT_EQ(m_as2->current_brk(), m_as->current_brk());
    EXPECT_EQ(m_as2->save_state(), state);
    auto a1 = m_as->areas();
    auto a2 = m_as2->areas();
    ASSERT_EQ(a1.size(), a2.size());
    for (size_t i = 0; i < a1.size(); ++i) {
        EXPECT_EQ(a1[i].range, a2[i].range);
        EXPECT_EQ(a1[i].flags, a2[i].flags);
        EXPECT_EQ(a1[i].backend.kind, a2[i].backend.kind);
        EXPECT_EQ(a1[i].backend.node, a2[i].backend.node);
    }
    EXPECT_EQ(user_mappings(*m_as), user_mappings(*m_as2));
    // Exactly the frames the page table uses: its tables and the mapped data pages. The
    // two pages unmapped from a 2 MiB block stay allocated in the first guest (the block
    // is one allocation until its last page goes) but are free in the restored one.
    EXPECT_EQ(m_frames2->used(), pages_of(user_mappings(*m_as)) + m_as->stats().provider_tables);
    EXPECT_EQ(m_frames.used() - m_frames2->used(), 2U);
    EXPECT_EQ(m_as2->stats().frames_per_node, m_as->stats().frames_per_node);
    EXPECT_EQ(m_as2->stats().provider_tables, m_as->stats().provider_tables);
    // The data, read through the restored page table.
    auto* saved_mem = m_mem.get();
    m_mem.swap(m_mem2);  // the fixture's software CPU reads m_mem
    std::swap(m_as, m_as2);
    uint64_t v = 1;
    for (uint64_t a : at) {
        EXPECT_EQ(read(a, 0).value_or(0), a ^ 0x5a5a'0000'0000'0000ULL ^ v) << std::hex << a;
        ++v;
    }
    // ... and the restored space keeps working: new faults, mprotect, munmap of everything.
    EXPECT_TRUE(write(m_huge + 3 * k2M + 100 * kPage, 77));
    EXPECT_EQ(read(m_huge + 3 * k2M + 100 * kPage), 77U);
    EXPECT_TRUE(m_as->munmap(Caller{0, 0}, m_huge, 4 * k2M));
    EXPECT_FALSE(read(m_huge).has_value());
    EXPECT_TRUE(m_as->check_invariants());
    std::swap(m_as, m_as2);
    m_mem.swap(m_mem2);
    EXPECT_EQ(m_mem.get(), saved_mem);
}

TEST_F(StateTest, MalformedStatesAreRefusedWithOneLine) {
    build_guest();
    const auto good = m_as->save_state();
    auto refused = [&](std::vector<std::byte> state, const char* what) {
        ASSERT_NO_FATAL_FAILURE(make_copy());
        auto s = m_as2->restore_state(state);
        ASSERT_FALSE(s.has_value()) << what;
        EXPECT_EQ(s.error().kind, ErrorKind::Invalid) << what;
        EXPECT_EQ(s.error().message.find('\n'), std::string::npos) << what;
        EXPECT_NE(s.error().message.find("address space state"), std::string::npos) << s.error().message;
        m_as2.reset();
    };
    auto patched = [&](size_t offset, uint64_t value, size_t bytes) {
        auto s = good;
        std::memcpy(s.data() + offset, &value, bytes);
        return s;
    };
    const uint64_t count = (good.size() - kHeaderBytes) / kAreaBytes;
    refused({}, "empty");
    refused(std::vector<std::byte>(good.begin(), good.end() - 1), "truncated");
    refused(patched(0, 0x12345678, 4), "magic");
    refused(patched(4, 2, 4), "version");
    refused(patched(8, count + 1, 8), "count");
    refused(patched(8, uint64_t(1) << 40, 8), "huge count");
    refused(patched(16, abi::kBrkLimit + kPage, 8), "break");
    const size_t area = kHeaderBytes + (count - 1) * kAreaBytes;  // the last area: a guest mmap area
    refused(patched(area, 0x1234, 8), "unaligned start");
    refused(patched(area + 8, 0, 8), "empty area");
    refused(patched(area + 8, UINT64_MAX - kPage + 1, 8), "wrapping area");
    refused(patched(area, 0x0000'8000'0000'0000ULL, 8), "non-canonical");
    refused(patched(area + 28, 0xF0, 1), "flags");
    refused(patched(area + 29, 7, 1), "kind");
    refused(patched(area + 29, 2, 1), "guard area in the user range");
    refused(patched(area + 24, 9, 4), "node");
    // Areas that overlap, and a page table whose leaves lie outside the areas.
    {
        auto s = good;
        std::memcpy(s.data() + area, s.data() + area - kAreaBytes, kAreaBytes);
        refused(s, "duplicate area");
    }
    {
        auto s = good;
        s.resize(s.size() - kAreaBytes);
        uint64_t fewer = count - 1;
        std::memcpy(s.data() + 8, &fewer, 8);
        refused(s, "a mapped area missing");
    }
}

TEST_F(StateTest, APageTableThatDoesNotMatchIsRefused) {
    auto at = build_guest();
    const auto state = m_as->save_state();
    // Two leaves mapping one frame: the second claim fails.
    auto m0 = m_as->query(mm::GuestVirtAddr(at[0]));
    auto m1 = m_as->query(mm::GuestVirtAddr(at[1]));
    ASSERT_TRUE(m0 && m1);
    ASSERT_NO_FATAL_FAILURE(make_copy());
    {
        // Patch the copy's PTE of at[1] to at[0]'s frame: find it through a raw walk of the copy.
        auto pte_of = [&](uint64_t gva) -> uint64_t* {
            uint64_t table = m_as->root().number();
            for (int level = 3; level >= 0; --level) {
                auto span = m_mem2->host_span(mm::GuestPhysAddr(table * kPage), kPage);
                auto* entries = reinterpret_cast<uint64_t*>(span->data());
                uint64_t* e = entries + ((gva >> (12 + 9 * level)) & 511);
                if (level == 0) return e;
                table = (*e & mm::x86::pte::kAddrMask) >> 12;
            }
            return nullptr;
        };
        uint64_t* e = pte_of(at[1]);
        ASSERT_NE(e, nullptr);
        *e = (*e & ~mm::x86::pte::kAddrMask) | (m0->phys.value() & mm::x86::pte::kAddrMask);
    }
    auto s = m_as2->restore_state(state);
    ASSERT_FALSE(s.has_value());
    EXPECT_EQ(s.error().kind, ErrorKind::Invalid);
    EXPECT_NE(s.error().message.find("already exists"), std::string::npos) << s.error().message;
    m_as2.reset();
    // Restoring twice into one space is refused.
    ASSERT_NO_FATAL_FAILURE(make_copy());
    ASSERT_TRUE(m_as2->restore_state(state).has_value());
    auto again = m_as2->restore_state(state);
    ASSERT_FALSE(again.has_value());
    EXPECT_NE(again.error().message.find("already has areas"), std::string::npos) << again.error().message;
}

// Random guests: any sequence of calls and touches saves and restores to the same
// mappings and frame counts.
TEST_F(StateTest, RandomGuestsRoundTrip) {
    uint64_t seed = pv::test::test_seed(0x5a7e);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    for (int round = 0; round < 6; ++round) {
        SCOPED_TRACE("round " + std::to_string(round));
        std::vector<uint64_t> areas;
        for (int op = 0; op < 60; ++op) {
            switch (rng() % 5) {
                case 0: {
                    uint64_t len = (1 + rng() % 16) * (rng() % 3 == 0 ? k2M : kPage);
                    uint64_t flags = (rng() % 2 ? abi::kMapHuge : 0) | (rng() % 4 == 0 ? abi::kMapPopulate : 0);
                    if (auto r = mmap(0, len, kRW, flags, rng() % 3 == 0 ? 1 : abi::kNodeAny)) areas.push_back(*r);
                    break;
                }
                case 1:
                case 2:
                    if (!areas.empty())
                        (void)write(areas[rng() % areas.size()] + (rng() % 64) * kPage, rng(), rng() % 2);
                    break;
                case 3:
                    if (!areas.empty())
                        (void)m_as->munmap(Caller{0, 0}, areas[rng() % areas.size()] + (rng() % 8) * kPage,
                                           (1 + rng() % 8) * kPage);
                    break;
                default:
                    if (!areas.empty())
                        (void)m_as->mprotect(Caller{0, 0}, areas[rng() % areas.size()] + (rng() % 8) * kPage,
                                             (1 + rng() % 4) * kPage, rng() % 2 ? abi::kProtRead : kRW);
                    break;
            }
        }
        auto state = m_as->save_state();
        ASSERT_NO_FATAL_FAILURE(make_copy());
        auto s = m_as2->restore_state(state);
        ASSERT_TRUE(s.has_value()) << s.error().message;
        EXPECT_EQ(user_mappings(*m_as), user_mappings(*m_as2));
        EXPECT_EQ(m_frames2->used(), pages_of(user_mappings(*m_as)) + m_as->stats().provider_tables);
        EXPECT_EQ(m_as2->stats().provider_tables, m_as->stats().provider_tables);
        EXPECT_EQ(m_as2->save_state(), state);
        EXPECT_TRUE(m_as2->check_invariants());
        m_as2.reset();
        EXPECT_LE(m_frames2->used(), 1U);
        // A fresh first guest for the next round.
        make_space(AddressSpaceConfig{2, 1, 4096});
        ASSERT_EQ(m_frames.used(), 1U);  // its root
    }
}

}  // namespace
}  // namespace pv::paging::test
