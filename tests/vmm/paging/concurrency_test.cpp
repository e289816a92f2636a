// Several vCPU threads faulting and calling into one address space at once.
#include <algorithm>
#include <atomic>
#include <random>
#include <thread>

#include "tests/support/seed.h"
#include "tests/vmm/paging/paging_fixture.h"
#include "vmm/paging/tlb.h"

namespace pv::paging::test {
namespace {

class ConcurrencyTest : public PagingTest {};

TEST_F(ConcurrencyTest, TwoThreadsFaultingTheSameAreaMapEachPageOnce) {
    constexpr uint64_t kPages = 256;
    auto a = mmap(0, kPages * kPage, kRW, 0);
    ASSERT_TRUE(a.has_value());
    uint64_t seed = pv::test::test_seed(0xc0c0);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    auto worker = [&](uint32_t vcpu) {
        std::vector<uint64_t> order(kPages);
        for (uint64_t i = 0; i < kPages; ++i) order[i] = i;
        std::shuffle(order.begin(), order.end(), std::mt19937_64(seed + vcpu));
        for (uint64_t i : order) {
            // Both threads fault the same not-present page: one maps it, the other's is spurious.
            auto r = m_as->handle_fault(mm::GuestVirtAddr(*a + i * kPage + 8 * vcpu), kPfUser | kPfWrite, vcpu, vcpu);
            EXPECT_TRUE(r.kind == FaultResult::Kind::Mapped || r.kind == FaultResult::Kind::Spurious);
            auto m = m_as->query(mm::GuestVirtAddr(*a + i * kPage));
            ASSERT_TRUE(m.has_value());
            uint64_t v = i * 2 + vcpu;
            std::memcpy(m_mem->host_span(m->phys + 8 * vcpu, 8)->data(), &v, 8);
        }
    };
    std::thread t0(worker, 0);
    std::thread t1(worker, 1);
    t0.join();
    t1.join();
    ASSERT_TRUE(m_as->check_invariants());
    auto s = m_as->stats();
    EXPECT_EQ(s.mapped_faults + s.spurious, 2 * kPages);
    EXPECT_EQ(s.mapped_faults, kPages) << "every page mapped exactly once";
    EXPECT_EQ(s.frames_per_node[0] + s.frames_per_node[1], kPages);
    for (uint64_t i = 0; i < kPages; ++i) {
        EXPECT_EQ(read(*a + i * kPage), i * 2) << "no frame was replaced under the other thread";
        EXPECT_EQ(read(*a + i * kPage + 8), i * 2 + 1);
    }
}

TEST_F(ConcurrencyTest, FaultsRacingMprotectAndMunmapStayConsistent) {
    constexpr uint64_t kPages = 128;
    auto a = mmap(abi::kMmapBase, kPages * kPage, kRW, abi::kMapFixed);
    ASSERT_TRUE(a.has_value());
    uint64_t seed = pv::test::test_seed(0xc0c1);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::atomic<bool> stop{false};
    std::thread faulter([&] {
        std::mt19937_64 rng(seed);
        while (!stop.load()) {
            uint64_t page = *a + (rng() % kPages) * kPage;
            auto r = m_as->handle_fault(mm::GuestVirtAddr(page), kPfUser | (rng() % 2 ? kPfWrite : 0), 1, 1);
            EXPECT_NE(r.kind, FaultResult::Kind::OutOfMemory);
        }
    });
    std::mt19937_64 rng(seed + 1);
    for (int i = 0; i < 300; ++i) {
        uint64_t start = *a + (rng() % kPages) * kPage;
        uint64_t len = (1 + rng() % 8) * kPage;
        switch (rng() % 3) {
            case 0: (void)m_as->mprotect(Caller{0, 0}, start, len, rng() % 2 ? abi::kProtRead : kRW); break;
            case 1: ASSERT_TRUE(m_as->munmap(Caller{0, 0}, start, len).has_value()); break;
            default:
                ASSERT_TRUE(m_as->mmap(Caller{0, 0}, start, len, kRW, abi::kMapFixed, abi::kNodeAny).has_value());
                break;
        }
    }
    stop.store(true);
    faulter.join();
    EXPECT_TRUE(m_as->check_invariants());
}

// vCPU 1 runs "in guest" with a cached translation of a page (its TLB); vCPU 0
// munmaps the page. When munmap returns, vCPU 1 must have dropped the cached
// translation (acked the shootdown) or be outside guest mode, and its next
// access is a segmentation fault.
TEST_F(ConcurrencyTest, MunmapReturnsOnlyAfterTheOtherVcpuFlushed) {
    TlbCoordinator tlb(2);
    std::atomic<bool> kick{false};
    m_as->set_shootdown([&] { tlb.shootdown([&](uint32_t v) { kick.store(v == 1 || kick.load()); }); });
    auto a = mmap(0, kPage, kRW, 0);
    ASSERT_TRUE(a.has_value());
    ASSERT_TRUE(write(*a, 1234));
    std::atomic<bool> unmapped{false};
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> stale_uses{0};
    std::atomic<uint64_t> segv_seen{0};
    std::atomic<bool> cached_once{false};
    std::thread vcpu1([&] {
        bool cached = false;
        while (!stop.load()) {
            tlb.begin(1);
            if (uint64_t g = tlb.flush_generation(1)) {
                cached = false;
                tlb.ack(1, g);
            }
            while (!kick.exchange(false) && !stop.load()) {  // guest mode: uses its TLB
                if (cached && unmapped.load()) stale_uses.fetch_add(1);
                if (!cached) break;
            }
            tlb.end(1);
            if (!cached) {  // "TLB miss": walk, fault if needed
                auto m = m_as->query(mm::GuestVirtAddr(*a));
                if (m) {
                    cached = true;
                    cached_once.store(true);
                } else {
                    auto r = m_as->handle_fault(mm::GuestVirtAddr(*a), kPfUser, 1, 1);
                    if (r.kind == FaultResult::Kind::Segv) segv_seen.fetch_add(1);
                }
            }
        }
    });
    while (!cached_once.load()) std::this_thread::yield();
    ASSERT_TRUE(m_as->munmap(Caller{0, 0}, *a, kPage).has_value());
    unmapped.store(true);
    while (segv_seen.load() == 0) std::this_thread::yield();
    stop.store(true);
    vcpu1.join();
    EXPECT_EQ(stale_uses.load(), 0U);
    EXPECT_GE(tlb.shootdowns(), 1U);
}

}  // namespace
}  // namespace pv::paging::test
