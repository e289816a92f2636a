// GuestAddressSpace without KVM: lazy and eager mapping, the fault decision,
// mprotect/munmap/brk, huge pages, OOM, fault-around, frame accounting.
#include <cstring>

#include "tests/vmm/paging/paging_fixture.h"
#include "vmm/x86/table_pool.h"

namespace pv::paging::test {
namespace {

using Kind = FaultResult::Kind;

TEST_F(PagingTest, LazyMappingFaultsOncePerTouchedPage) {
    auto a = mmap(0, 64 * kPage, kRW, 0);
    ASSERT_TRUE(a.has_value());
    EXPECT_GE(*a, abi::kMmapBase);
    EXPECT_EQ(m_frames.used(), m_as->stats().provider_tables) << "only the root table before a touch";
    for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(write(*a + i * 3 * kPage + 8, i + 100));
    EXPECT_EQ(m_as->stats().faults, 10U);
    EXPECT_EQ(m_as->stats().mapped_faults, 10U);
    for (uint64_t i = 0; i < 10; ++i) EXPECT_EQ(read(*a + i * 3 * kPage + 8), i + 100);
    EXPECT_EQ(m_as->stats().faults, 10U) << "mapped pages do not fault again";
    EXPECT_EQ(read(*a + kPage), 0U) << "fresh pages are zero";
    EXPECT_TRUE(m_as->check_invariants());
}

TEST_F(PagingTest, FramesAreZeroedBeforeMapping) {
    // Dirty every frame the fake will hand out next (ascending: nothing was freed yet).
    uint64_t first_free = kFirstFrame + m_frames.used();
    auto span = m_mem->host_span(mm::GuestPhysAddr(first_free * kPage), (kFirstFrame + kFrames - first_free) * kPage);
    ASSERT_TRUE(span.has_value());
    std::memset(span->data(), 0xAB, span->size());
    auto a = mmap(0, 4 * kPage, kRW, 0);
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(read(*a + 16), 0U);
    auto b = mmap(0, 4 * kPage, kRW, abi::kMapPopulate);
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(read(*b + 3 * kPage + 8), 0U);
}

TEST_F(PagingTest, PopulateMapsEverythingAtOnce) {
    auto a = mmap(0, 16 * kPage, kRW, abi::kMapPopulate);
    ASSERT_TRUE(a.has_value());
    for (uint64_t i = 0; i < 16; ++i) EXPECT_TRUE(m_as->query(mm::GuestVirtAddr(*a + i * kPage)).has_value());
    EXPECT_EQ(m_frames.used() - m_as->stats().provider_tables, 16U);
    for (uint64_t i = 0; i < 16; ++i) ASSERT_TRUE(write(*a + i * kPage, i));
    EXPECT_EQ(m_as->stats().faults, 0U);
}

TEST_F(PagingTest, MprotectReadOnlyThenWriteIsSegvAtThatAddress) {
    auto a = mmap(0, 8 * kPage, kRW, 0);
    ASSERT_TRUE(a.has_value());
    ASSERT_TRUE(write(*a + 2 * kPage, 42));
    ASSERT_TRUE(m_as->mprotect(Caller{}, *a, 4 * kPage, abi::kProtRead).has_value());
    uint64_t v = 7;
    auto r = access(*a + 2 * kPage + 24, AccessKind::Write, &v);
    EXPECT_EQ(r.kind, Kind::Segv);
    EXPECT_EQ(r.addr.value(), *a + 2 * kPage + 24);
    EXPECT_EQ(r.access, AccessKind::Write);
    EXPECT_EQ(r.reason, SegvReason::Protection);
    EXPECT_EQ(read(*a + 2 * kPage), 42U) << "mprotect keeps the contents";
    EXPECT_TRUE(write(*a + 5 * kPage, 1)) << "the rest stays writable";
    // A write to a not-yet-present page of the read-only part is refused too.
    EXPECT_EQ(access(*a + kPage, AccessKind::Write, &v).kind, Kind::Segv);
    ASSERT_EQ(m_as->areas().size(), 2U) << "the areas were updated, not just the page table";
    EXPECT_EQ(m_as->areas()[0].flags, mm::Perm::User | mm::Perm::Read);
    ASSERT_TRUE(m_as->mprotect(Caller{}, *a, 4 * kPage, kRW).has_value());
    EXPECT_TRUE(write(*a + 2 * kPage, 43));
    EXPECT_EQ(m_as->areas().size(), 1U) << "equal neighbours merge again";
}

TEST_F(PagingTest, ExecOnNxAreaIsSegv) {
    auto a = mmap(0, 2 * kPage, kRW, abi::kMapPopulate);
    ASSERT_TRUE(a.has_value());
    uint64_t v = 0;
    auto r = access(*a + 0x10, AccessKind::Exec, &v);
    EXPECT_EQ(r.kind, Kind::Segv);
    EXPECT_EQ(r.access, AccessKind::Exec);
    EXPECT_EQ(r.reason, SegvReason::Protection);
    auto x = mmap(0, 2 * kPage, abi::kProtRead | abi::kProtExec, 0);
    ASSERT_TRUE(x.has_value());
    EXPECT_NE(access(*x, AccessKind::Exec, &v).kind, Kind::Segv);
    EXPECT_EQ(access(*x, AccessKind::Write, &v).kind, Kind::Segv);
}

TEST_F(PagingTest, MunmapThenAccessIsSegvAndFreesFrames) {
    auto a = mmap(0, 8 * kPage, kRW, abi::kMapPopulate);
    ASSERT_TRUE(a.has_value());
    uint64_t before = m_frames.used();
    uint64_t shootdowns = m_shootdowns;
    ASSERT_TRUE(m_as->munmap(Caller{}, *a + 2 * kPage, 3 * kPage).has_value());
    EXPECT_GT(m_shootdowns, shootdowns) << "removing translations shoots down";
    EXPECT_EQ(m_frames.used(), before - 3);
    auto r = access(*a + 3 * kPage, AccessKind::Read, nullptr);
    EXPECT_EQ(r.kind, Kind::Segv);
    EXPECT_EQ(r.reason, SegvReason::NoArea);
    EXPECT_TRUE(read(*a + 5 * kPage).has_value());
    EXPECT_EQ(m_as->areas().size(), 2U);
}

TEST_F(PagingTest, ShootdownRunsBeforeFramesAreReturned) {
    auto a = mmap(0, 4 * kPage, kRW, abi::kMapPopulate);
    ASSERT_TRUE(a.has_value());
    uint64_t used_at_shootdown = 0;
    m_as->set_shootdown([&] { used_at_shootdown = m_frames.used(); });
    uint64_t before = m_frames.used();
    ASSERT_TRUE(m_as->munmap(Caller{}, *a, 4 * kPage).has_value());
    EXPECT_EQ(used_at_shootdown, before) << "frames must stay allocated until the TLBs are clean";
    EXPECT_LT(m_frames.used(), before);
}

TEST_F(PagingTest, BrkGrowsAndShrinks) {
    Caller c;
    EXPECT_EQ(*m_as->brk(c, 0), abi::kBrkBase);
    ASSERT_EQ(*m_as->brk(c, abi::kBrkBase + 10 * kPage + 100), abi::kBrkBase + 10 * kPage + 100);
    for (uint64_t i = 0; i <= 10; ++i) ASSERT_TRUE(write(abi::kBrkBase + i * kPage, i + 1));
    uint64_t used = m_frames.used();
    ASSERT_EQ(*m_as->brk(c, abi::kBrkBase + 4 * kPage), abi::kBrkBase + 4 * kPage);
    EXPECT_EQ(m_frames.used(), used - 7) << "shrinking frees the frames of the dropped pages";
    EXPECT_EQ(access(abi::kBrkBase + 4 * kPage, AccessKind::Read, nullptr).kind, Kind::Segv);
    EXPECT_EQ(read(abi::kBrkBase + 3 * kPage), 4U);
    ASSERT_TRUE(m_as->brk(c, abi::kBrkBase + 6 * kPage).has_value());
    EXPECT_EQ(read(abi::kBrkBase + 5 * kPage), 0U) << "regrown heap is zero";
    EXPECT_EQ(m_as->areas().size(), 1U);
    EXPECT_EQ(m_as->brk(c, abi::kBrkBase - 1).error(), abi::MemError::Invalid);
    EXPECT_EQ(m_as->brk(c, abi::kBrkLimit + 1).error(), abi::MemError::NoMemory);
    EXPECT_EQ(*m_as->brk(c, 0), abi::kBrkBase + 6 * kPage) << "failed calls leave the break";
    ASSERT_TRUE(m_as->brk(c, abi::kBrkBase).has_value());
    EXPECT_TRUE(m_as->areas().empty());
}

TEST_F(PagingTest, HugePagesMapWhereAlignedAndSplitOnPartialMunmap) {
    auto a = mmap(0, 4 * kMiB, kRW, abi::kMapHuge);
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(*a % k2M, 0U) << "huge mappings are 2 MiB aligned";
    ASSERT_TRUE(write(*a + 5 * kPage, 55));
    auto m = m_as->query(mm::GuestVirtAddr(*a));
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->size, mm::PageSize::Size2M);
    EXPECT_EQ(m_as->stats().huge_faults, 1U);
    uint64_t data_frames = m_frames.used() - m_as->stats().provider_tables;
    ASSERT_TRUE(m_as->munmap(Caller{}, *a + 8 * kPage, 4 * kPage).has_value());
    m = m_as->query(mm::GuestVirtAddr(*a));
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->size, mm::PageSize::Size4K) << "split";
    EXPECT_EQ(read(*a + 5 * kPage), 55U) << "the split keeps the data";
    EXPECT_EQ(access(*a + 9 * kPage, AccessKind::Read, nullptr).kind, Kind::Segv);
    EXPECT_EQ(m_frames.used() - m_as->stats().provider_tables, data_frames)
        << "a split block is returned whole, once its last page goes";
    EXPECT_EQ(m_as->stats().frames_per_node[0], 512U - 4U);
    ASSERT_TRUE(m_as->munmap(Caller{}, *a, k2M).has_value());
    EXPECT_EQ(m_as->stats().frames_per_node[0], 0U);
    EXPECT_TRUE(m_as->check_invariants());
}

TEST_F(PagingTest, HugePopulateAndPartialMprotectSplits) {
    auto a = mmap(0, 2 * k2M, kRW, abi::kMapHuge | abi::kMapPopulate);
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(m_as->query(mm::GuestVirtAddr(*a + k2M))->size, mm::PageSize::Size2M);
    ASSERT_TRUE(write(*a + k2M + 0x1000, 9));
    ASSERT_TRUE(m_as->mprotect(Caller{}, *a + k2M, kPage, abi::kProtRead).has_value());
    EXPECT_EQ(m_as->query(mm::GuestVirtAddr(*a + k2M))->size, mm::PageSize::Size4K);
    EXPECT_FALSE(write(*a + k2M, 1));
    EXPECT_TRUE(write(*a + k2M + kPage, 10));
    EXPECT_EQ(m_as->areas().size(), 3U);
}

TEST_F(PagingTest, HugeFallsBackToSmallPagesWithoutContiguousFrames) {
    m_frames.allow_contiguous(false);
    auto a = mmap(0, k2M, kRW, abi::kMapHuge);
    ASSERT_TRUE(a.has_value());
    ASSERT_TRUE(write(*a, 1));
    EXPECT_EQ(m_as->query(mm::GuestVirtAddr(*a))->size, mm::PageSize::Size4K);
    EXPECT_EQ(m_as->stats().huge_faults, 0U);
}

TEST_F(PagingTest, OutOfMemoryFailsPopulateCleanlyAndFaultsReportIt) {
    auto warm = mmap(0, kPage, kRW, abi::kMapPopulate);  // page tables for the mmap range exist now
    ASSERT_TRUE(warm.has_value());
    m_frames.set_quota(m_frames.used() + 10);
    uint64_t used = m_frames.used();
    auto areas = m_as->areas().size();
    auto r = mmap(0, 20 * kPage, kRW, abi::kMapPopulate);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), abi::MemError::NoMemory);
    EXPECT_EQ(to_abi(r), -4);
    EXPECT_EQ(m_frames.used(), used) << "a failed populate returns every frame";
    EXPECT_EQ(m_as->areas().size(), areas);
    EXPECT_TRUE(m_as->check_invariants());
    auto lazy = mmap(0, 20 * kPage, kRW, 0);
    ASSERT_TRUE(lazy.has_value());
    uint64_t touched = 0;
    FaultResult last;
    for (; touched < 20; ++touched) {
        uint64_t v = 1;
        last = access(*lazy + touched * kPage, AccessKind::Write, &v, 0, 1);
        if (last.kind == Kind::OutOfMemory) break;
    }
    EXPECT_LT(touched, 20U);
    EXPECT_EQ(last.kind, Kind::OutOfMemory);
    EXPECT_EQ(last.node, 1U) << "the vCPU's node";
    EXPECT_EQ(m_as->stats().oom, 1U);
}

TEST_F(PagingTest, SpuriousFaultKeepsTheFrame) {
    auto a = mmap(0, 2 * kPage, kRW, 0);
    ASSERT_TRUE(a.has_value());
    ASSERT_TRUE(write(*a + 8, 0xfeed));
    auto before = m_as->query(mm::GuestVirtAddr(*a));
    ASSERT_TRUE(before.has_value());
    for (uint64_t ec : {kPfUser | kPfPresent | kPfWrite, kPfUser | kPfWrite, kPfUser, uint64_t{0}}) {
        auto r = m_as->handle_fault(mm::GuestVirtAddr(*a + 8), ec, 1, 1);
        EXPECT_EQ(r.kind, Kind::Spurious);
    }
    auto after = m_as->query(mm::GuestVirtAddr(*a));
    ASSERT_TRUE(after.has_value());
    EXPECT_EQ(after->phys, before->phys) << "a spurious fault never replaces the frame (the axmm bug)";
    EXPECT_EQ(read(*a + 8), 0xfeedU);
    EXPECT_EQ(m_as->stats().spurious, 4U);
}

TEST_F(PagingTest, FaultAroundMapsAheadOnlyWhenSequential) {
    make_space(AddressSpaceConfig{2, 8, 4096});
    m_as->set_shootdown([this] { ++m_shootdowns; });
    auto a = mmap(0, 20 * kPage, kRW, 0);
    ASSERT_TRUE(a.has_value());
    for (uint64_t i = 0; i < 20; ++i) ASSERT_TRUE(write(*a + i * kPage, i));
    // Fault at 0 (1 page, not sequential yet), 1 (+7 -> pages 1..8), 9 (+7 -> 9..16), 17 (+2: area end).
    auto s = m_as->stats();
    EXPECT_EQ(s.faults, 4U);
    EXPECT_EQ(s.fault_around_pages, 16U);
    for (uint64_t i = 0; i < 20; ++i) EXPECT_EQ(read(*a + i * kPage), i);
    EXPECT_EQ(m_as->query(mm::GuestVirtAddr(*a + 20 * kPage)).has_value(), false) << "never beyond the area";
    // Random order: no fault-around.
    auto b = mmap(0, 20 * kPage, kRW, 0);
    ASSERT_TRUE(b.has_value());
    for (uint64_t i : {5, 2, 9, 14, 0}) ASSERT_TRUE(write(*b + i * kPage, i));
    EXPECT_EQ(m_as->stats().fault_around_pages, 16U);
    // Fault-around skips present pages and never replaces them.
    auto c = mmap(0, 8 * kPage, kRW, 0);
    ASSERT_TRUE(write(*c + 3 * kPage, 33));
    auto frame3 = m_as->query(mm::GuestVirtAddr(*c + 3 * kPage))->phys;
    ASSERT_TRUE(write(*c, 1));
    ASSERT_TRUE(write(*c + kPage, 2));
    EXPECT_EQ(m_as->query(mm::GuestVirtAddr(*c + 3 * kPage))->phys, frame3);
    EXPECT_EQ(read(*c + 3 * kPage), 33U);
}

TEST_F(PagingTest, FaultAroundPrefaultsTheWindowFramesInRunsBeforeZeroingThem) {
    make_space(AddressSpaceConfig{2, 16, 4096});
    m_as->set_shootdown([] {});
    std::vector<std::pair<uint64_t, uint64_t>> calls;  // (gpa, len)
    m_as->set_host_prefault([&](mm::GuestPhysAddr gpa, uint64_t len) { calls.emplace_back(gpa.value(), len); });
    auto a = mmap(0, 64 * kPage, kRW, 0);
    ASSERT_TRUE(a.has_value());
    // Dirty frames the window will reuse: they must still read as zero.
    auto dirty = mmap(0, 64 * kPage, kRW, 0);
    ASSERT_TRUE(dirty.has_value());
    for (uint64_t i = 0; i < 64; ++i) ASSERT_TRUE(write(*dirty + i * kPage, 0xdead));
    ASSERT_TRUE(m_as->munmap(Caller{0, 0}, *dirty, 64 * kPage));
    calls.clear();
    const uint64_t before = m_as->stats().fault_around_pages;
    ASSERT_TRUE(write(*a, 1));  // first fault: one page, no window
    EXPECT_TRUE(calls.empty());
    ASSERT_TRUE(write(*a + kPage, 2));  // sequential: this page + 15 more
    EXPECT_EQ(m_as->stats().fault_around_pages - before, 15U);
    uint64_t covered = 0;
    for (auto [gpa, len] : calls) {
        EXPECT_EQ(gpa % kPage, 0U);
        EXPECT_EQ(len % kPage, 0U);
        covered += len / kPage;
    }
    EXPECT_EQ(covered, 15U) << "every window frame, once";
    // Each window page is backed by a frame inside a prefaulted run.
    for (uint64_t i = 2; i < 17; ++i) {
        auto m = m_as->query(mm::GuestVirtAddr(*a + i * kPage));
        ASSERT_TRUE(m.has_value());
        bool inside = false;
        for (auto [gpa, len] : calls) inside = inside || (m->phys.value() >= gpa && m->phys.value() < gpa + len);
        EXPECT_TRUE(inside) << i;
        EXPECT_EQ(read(*a + i * kPage + 8), 0U) << "zeroed after the prefault";
    }
}

TEST_F(PagingTest, FaultAroundIsPerVcpu) {
    make_space(AddressSpaceConfig{2, 4, 4096});
    m_as->set_shootdown([] {});
    auto a = mmap(0, 64 * kPage, kRW, 0);
    ASSERT_TRUE(a.has_value());
    // Interleaved sequential streams on two vCPUs are each detected.
    ASSERT_TRUE(write(*a, 1, 0));
    ASSERT_TRUE(write(*a + 32 * kPage, 1, 1));
    ASSERT_TRUE(write(*a + kPage, 1, 0));
    ASSERT_TRUE(write(*a + 33 * kPage, 1, 1));
    EXPECT_EQ(m_as->stats().fault_around_pages, 6U);
}

TEST_F(PagingTest, NodePlacementAndAccounting) {
    auto a = mmap(0, 4 * kPage, kRW, 0);                     // first touch: the vCPU's node
    auto b = mmap(0, 4 * kPage, kRW, abi::kMapPopulate, 1);  // explicit node
    ASSERT_TRUE(a.has_value() && b.has_value());
    uint64_t v = 1;
    ASSERT_NE(access(*a, AccessKind::Write, &v, 1, 1).kind, Kind::Segv);
    ASSERT_NE(access(*a + kPage, AccessKind::Write, &v, 0, 0).kind, Kind::Segv);
    EXPECT_EQ(m_frames.node_of(mm::GuestFrame::containing(m_as->query(mm::GuestVirtAddr(*a))->phys)), 1U);
    EXPECT_EQ(m_frames.node_of(mm::GuestFrame::containing(m_as->query(mm::GuestVirtAddr(*a + kPage))->phys)), 0U);
    auto s = m_as->stats();
    ASSERT_EQ(s.frames_per_node.size(), 2U);
    EXPECT_EQ(s.frames_per_node[0], 1U);
    EXPECT_EQ(s.frames_per_node[1], 5U);
}

TEST_F(PagingTest, ProtNoneKeepsDataAndRefusesEveryAccess) {
    auto a = mmap(0, 2 * kPage, kRW, 0);
    ASSERT_TRUE(write(*a, 77));
    ASSERT_TRUE(m_as->mprotect(Caller{}, *a, 2 * kPage, 0).has_value());
    EXPECT_EQ(access(*a, AccessKind::Read, nullptr).kind, Kind::Segv);
    EXPECT_EQ(access(*a + kPage, AccessKind::Read, nullptr).kind, Kind::Segv);
    auto m = m_as->query(mm::GuestVirtAddr(*a));
    ASSERT_TRUE(m.has_value());
    EXPECT_FALSE(mm::has(m->perm, mm::Perm::User)) << "present but supervisor-only";
    ASSERT_TRUE(m_as->mprotect(Caller{}, *a, 2 * kPage, abi::kProtRead).has_value());
    EXPECT_EQ(read(*a), 77U);
}

TEST_F(PagingTest, SupervisorAreasRefuseUserAccessAndGuardsRefuseAll) {
    auto lin = mm::GuestVirtRange::from_start_size(mm::GuestVirtAddr(0x4000'0000), 4 * kPage);
    ASSERT_TRUE(m_as->map_linear(lin, mm::GuestPhysAddr(0x10'0000), mm::kPermRW, false).has_value());
    auto guard = mm::GuestVirtRange::from_start_size(mm::GuestVirtAddr(0x4001'0000), kPage);
    ASSERT_TRUE(m_as->map_guard(guard).has_value());
    auto r = m_as->handle_fault(mm::GuestVirtAddr(0x4000'0010), kPfUser | kPfPresent, 0, 0);
    EXPECT_EQ(r.kind, Kind::Segv);
    EXPECT_EQ(r.reason, SegvReason::Protection);
    EXPECT_EQ(m_as->handle_fault(mm::GuestVirtAddr(0x4000'0010), kPfWrite, 0, 0).kind, Kind::Spurious);
    EXPECT_EQ(m_as->handle_fault(mm::GuestVirtAddr(0x4001'0000), 0, 0, 0).reason, SegvReason::Protection);
    EXPECT_EQ(m_as->handle_fault(mm::GuestVirtAddr(0x10), kPfUser, 0, 0).reason, SegvReason::NoArea);
    EXPECT_EQ(m_as->handle_fault(mm::GuestVirtAddr(0x4000'0010), kPfReserved | kPfPresent, 0, 0).reason,
              SegvReason::BadEntry);
    // VMM areas may not enter the user range; guest calls may not leave it.
    auto in_user = mm::GuestVirtRange::from_start_size(mm::GuestVirtAddr(abi::kMmapBase), kPage);
    EXPECT_EQ(m_as->map_guard(in_user).error(), mm::Error::OutOfRange);
    EXPECT_EQ(m_as->munmap(Caller{}, 0x4000'0000, 4 * kPage).error(), abi::MemError::OutOfRange);
    EXPECT_EQ(m_as->query(mm::GuestVirtAddr(0x4000'1010))->phys.value(), 0x10'1000U);
    ASSERT_TRUE(m_as->unmap_vmm_area(lin).has_value());
    ASSERT_TRUE(m_as->unmap_vmm_area(guard).has_value());
    EXPECT_EQ(m_frames.used(), m_as->stats().provider_tables) << "linear frames are not owned";
}

TEST_F(PagingTest, AdoptsBootTablesAndGrowsBeyondThePool) {
    m_as.reset();
    x86::TablePool pool(*m_mem);
    auto boot = mm::x86::PageTable<x86::TablePool>::try_create(&pool);
    ASSERT_TRUE(boot.has_value());
    ASSERT_TRUE(
        boot->map(mm::GuestVirtAddr(0x1000), mm::GuestPhysAddr(0x1000), mm::PageSize::Size4K, mm::kPermRW).has_value());
    auto as = GuestAddressSpace::create(AddressSpaceConfig{}, access(), m_provider, &pool, boot->root());
    ASSERT_TRUE(as.has_value());
    m_as = std::move(*as);
    m_as->set_shootdown([] {});
    EXPECT_EQ(m_as->root(), boot->root());
    auto a = mmap(0, 8 * kPage, kRW, 0);
    ASSERT_TRUE(a.has_value());
    ASSERT_TRUE(write(*a, 5));
    EXPECT_EQ(m_as->stats().provider_tables, 0U) << "the boot pool is used first";
    EXPECT_EQ(m_as->query(mm::GuestVirtAddr(0x1000))->phys.value(), 0x1000U) << "boot mappings stay";
    EXPECT_TRUE(m_as->check_invariants());
    // Exhaust the pool: tables then come from the frame provider.
    std::vector<mm::GuestFrame> taken;
    while (auto f = pool.alloc_table()) taken.push_back(*f);
    auto far = m_as->mmap(Caller{}, 0x7000'0000'0000, kPage, kRW, abi::kMapFixed | abi::kMapPopulate, 0);
    ASSERT_TRUE(far.has_value());
    EXPECT_GT(m_as->stats().provider_tables, 0U);
    EXPECT_EQ(read(0x7000'0000'0000), 0U);
    ASSERT_TRUE(m_as->munmap(Caller{}, 0x7000'0000'0000, kPage).has_value());
    ASSERT_TRUE(m_as->munmap(Caller{}, *a, 8 * kPage).has_value());
    EXPECT_EQ(m_as->stats().provider_tables, 0U) << "emptied tables are returned";
    for (auto f : taken) pool.free_table(f);
    m_as.reset();
    EXPECT_EQ(m_frames.used(), 0U);
}

TEST_F(PagingTest, CorruptTableEntryNeverLeavesGuestRam) {
    auto a = mmap(0, kPage, kRW, abi::kMapPopulate);
    ASSERT_TRUE(a.has_value());
    // Point the PML4 entry of the user range at a frame far outside guest RAM.
    auto root = m_mem->host_span(m_as->root().start_address(), kPage);
    ASSERT_TRUE(root.has_value());
    auto* pml4 = reinterpret_cast<uint64_t*>(root->data());
    size_t idx = (*a >> 39) & 511;
    uint64_t saved = pml4[idx];
    pml4[idx] = (0x40'0000'0000ULL & ~0xFFFULL) | 0x7;
    auto r = m_as->handle_fault(mm::GuestVirtAddr(*a), kPfUser | kPfWrite, 0, 0);
    EXPECT_EQ(r.kind, Kind::Segv);
    EXPECT_EQ(r.reason, SegvReason::BadEntry);
    EXPECT_FALSE(m_as->check_invariants());
    pml4[idx] = saved;
    EXPECT_TRUE(m_as->check_invariants());
}

}  // namespace
}  // namespace pv::paging::test
