// The fault path that takes only the faulting vCPU's lock: several vCPU threads
// fault at once on the same and on different pages, race for the same
// intermediate tables, and race against munmap/mprotect (which take every vCPU
// lock); the TLB shootdown of those calls stops the world while vCPUs are blocked
// on their own locks.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <future>
#include <random>
#include <set>
#include <thread>

#include "tests/support/seed.h"
#include "tests/vmm/paging/paging_fixture.h"
#include "vmm/run/world_gate.h"

namespace pv::paging::test {
namespace {

constexpr uint32_t kThreads = 4;
constexpr uint64_t kUserWrite = kPfUser | kPfWrite;

class SharedFaultTest : public PagingTest {
protected:
    void SetUp() override { make_space(AddressSpaceConfig{kThreads, 1, 4096}); }

    // Runs fn(vcpu) on kThreads threads started together.
    template <class Fn>
    static void on_threads(Fn fn) {
        std::atomic<uint32_t> ready{0};
        std::vector<std::thread> threads;
        for (uint32_t v = 0; v < kThreads; ++v)
            threads.emplace_back([&, v] {
                ready.fetch_add(1);
                while (ready.load() < kThreads) std::this_thread::yield();
                fn(v);
            });
        for (auto& t : threads) t.join();
    }

    // Distinct frames behind the pages of [start, start + pages): each mapped once.
    void expect_distinct_frames(uint64_t start, uint64_t pages) {
        std::set<uint64_t> frames;
        for (uint64_t i = 0; i < pages; ++i) {
            auto m = m_as->query(mm::GuestVirtAddr(start + i * kPage));
            ASSERT_TRUE(m.has_value()) << "page " << i;
            frames.insert(m->phys.value());
        }
        EXPECT_EQ(frames.size(), pages) << "no frame is mapped twice";
    }

    uint64_t owned_frames() {
        auto s = m_as->stats();
        uint64_t n = 0;
        for (uint64_t f : s.frames_per_node) n += f;
        return n;
    }
};

TEST_F(SharedFaultTest, AllThreadsFaultingEveryPageMapEachPageOnce) {
    constexpr uint64_t kPages = 512;
    auto a = mmap(0, kPages * kPage, kRW, 0);
    ASSERT_TRUE(a.has_value());
    const uint64_t seed = pv::test::test_seed(0x5f01);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::atomic<uint64_t> bad{0};
    on_threads([&](uint32_t v) {
        std::vector<uint64_t> order(kPages);
        for (uint64_t i = 0; i < kPages; ++i) order[i] = i;
        std::shuffle(order.begin(), order.end(), std::mt19937_64(seed + v));
        for (uint64_t i : order) {
            auto r = m_as->handle_fault(mm::GuestVirtAddr(*a + i * kPage), kUserWrite, v, v % 2);
            if (r.kind != FaultResult::Kind::Mapped && r.kind != FaultResult::Kind::Spurious) bad.fetch_add(1);
        }
    });
    EXPECT_EQ(bad.load(), 0U);
    ASSERT_TRUE(m_as->check_invariants());
    auto s = m_as->stats();
    EXPECT_EQ(s.faults, kThreads * kPages);
    EXPECT_EQ(s.mapped_faults, kPages) << "exactly one winner per page";
    EXPECT_EQ(s.spurious, (kThreads - 1) * kPages);
    EXPECT_EQ(owned_frames(), kPages);
    EXPECT_EQ(m_frames.used(), kPages + s.provider_tables) << "losers returned their frames";
    expect_distinct_frames(*a, kPages);
}

TEST_F(SharedFaultTest, DisjointPagesWithFaultAroundAreAllMappedWithoutLoss) {
    make_space(AddressSpaceConfig{kThreads, 8, 4096});
    constexpr uint64_t kPerThread = 256;
    constexpr uint64_t kStride = (kPerThread + 1) * kPage;  // a hole between areas: fault-around stays inside
    for (uint32_t v = 0; v < kThreads; ++v)
        ASSERT_TRUE(mmap(abi::kMmapBase + v * kStride, kPerThread * kPage, kRW, abi::kMapFixed).has_value());
    on_threads([&](uint32_t v) {
        uint64_t base = abi::kMmapBase + v * kStride;
        for (uint64_t i = 0; i < kPerThread; ++i) {
            auto m = m_as->query(mm::GuestVirtAddr(base + i * kPage));
            if (m) continue;  // fault-around mapped it
            auto r = m_as->handle_fault(mm::GuestVirtAddr(base + i * kPage), kUserWrite, v, 0);
            EXPECT_EQ(r.kind, FaultResult::Kind::Mapped) << "thread " << v << " page " << i;
        }
    });
    ASSERT_TRUE(m_as->check_invariants());
    auto s = m_as->stats();
    EXPECT_EQ(s.mapped_faults, s.faults) << "disjoint pages: nobody loses a race";
    EXPECT_EQ(s.mapped_faults + s.fault_around_pages, kThreads * kPerThread);
    EXPECT_EQ(owned_frames(), kThreads * kPerThread);
    for (uint32_t v = 0; v < kThreads; ++v) expect_distinct_frames(abi::kMmapBase + v * kStride, kPerThread);
}

// Each round maps a fresh 512 GiB slot (no PDPT, PD or PT yet) and every thread
// faults a different page of the same 2 MiB: all race to link the same three
// tables. Exactly three survive; every loser's table went back.
TEST_F(SharedFaultTest, RacesForTheSameIntermediateTablesLeaveOneTable) {
    constexpr uint64_t k512G = 1ULL << 39;
    const uint64_t base = 0x4000'0000'0000;
    const uint64_t tables_before = m_as->stats().provider_tables;  // the root
    for (int round = 0; round < 40; ++round) {
        SCOPED_TRACE(round);
        const uint64_t used_before = m_frames.used();
        auto a = m_as->mmap(Caller{0, 0}, base + (round % 4) * k512G, 16 * kPage, kRW, abi::kMapFixed, 0);
        ASSERT_TRUE(a.has_value());
        on_threads([&](uint32_t v) {
            auto r = m_as->handle_fault(mm::GuestVirtAddr(*a + v * kPage), kUserWrite, v, 0);
            EXPECT_EQ(r.kind, FaultResult::Kind::Mapped);
        });
        ASSERT_TRUE(m_as->check_invariants());
        EXPECT_EQ(m_as->stats().provider_tables, tables_before + 3);
        EXPECT_EQ(m_frames.used(), used_before + kThreads + 3) << "data frames plus one PDPT, PD and PT";
        ASSERT_TRUE(m_as->munmap(Caller{0, 0}, *a, 16 * kPage).has_value());
        EXPECT_EQ(m_as->stats().provider_tables, tables_before);
        EXPECT_EQ(m_frames.used(), used_before);
    }
}

// Faulting threads never stop; vCPU 0's thread munmaps, mprotects and re-maps
// pieces: right after munmap returns a fault there is NoArea, right after
// mprotect(READ) a write is a Protection fault, and the space stays consistent.
TEST_F(SharedFaultTest, FaultsRacingMunmapAndMprotectSeeTheirEffectAtOnce) {
    constexpr uint64_t kPages = 128;
    auto a = mmap(abi::kMmapBase, kPages * kPage, kRW, abi::kMapFixed);
    ASSERT_TRUE(a.has_value());
    const uint64_t seed = pv::test::test_seed(0x5f02);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> oom{0};
    std::vector<std::thread> faulters;
    for (uint32_t v = 1; v < kThreads; ++v)
        faulters.emplace_back([&, v] {
            std::mt19937_64 rng(seed + v);
            while (!stop.load()) {
                uint64_t page = *a + (rng() % kPages) * kPage;
                auto r = m_as->handle_fault(mm::GuestVirtAddr(page), kPfUser | (rng() % 2 ? kPfWrite : 0), v, v % 2);
                if (r.kind == FaultResult::Kind::OutOfMemory) oom.fetch_add(1);
            }
        });
    std::mt19937_64 rng(seed);
    for (int i = 0; i < 300; ++i) {
        uint64_t start = *a + (rng() % (kPages - 8)) * kPage;
        uint64_t len = (1 + rng() % 8) * kPage;
        uint64_t probe = start + (rng() % (len / kPage)) * kPage;
        switch (rng() % 3) {
            case 0: {  // fails (NotMapped) over a hole left by munmap
                if (!m_as->mprotect(Caller{0, 0}, start, len, abi::kProtRead)) break;
                auto r = m_as->handle_fault(mm::GuestVirtAddr(probe), kUserWrite, 0, 0);
                EXPECT_EQ(r.kind, FaultResult::Kind::Segv);
                EXPECT_EQ(r.reason, SegvReason::Protection);
                break;
            }
            case 1: {
                EXPECT_TRUE(m_as->munmap(Caller{0, 0}, start, len).has_value());
                auto r = m_as->handle_fault(mm::GuestVirtAddr(probe), kPfUser, 0, 0);
                EXPECT_EQ(r.kind, FaultResult::Kind::Segv);
                EXPECT_EQ(r.reason, SegvReason::NoArea);
                EXPECT_FALSE(m_as->query(mm::GuestVirtAddr(probe)).has_value());
                break;
            }
            default:
                EXPECT_TRUE(m_as->mmap(Caller{0, 0}, start, len, kRW, abi::kMapFixed, abi::kNodeAny).has_value());
                break;
        }
    }
    stop.store(true);
    for (auto& t : faulters) t.join();
    EXPECT_EQ(oom.load(), 0U);
    EXPECT_TRUE(m_as->check_invariants());
    ASSERT_TRUE(m_as->munmap(Caller{0, 0}, *a, kPages * kPage).has_value());
    EXPECT_EQ(owned_frames(), 0U);
    EXPECT_EQ(m_frames.used(), m_as->stats().provider_tables);
}

// The shootdown deadlock: munmap holds every vCPU lock and stops the world
// (WorldGate); vCPU threads alternate "guest mode" (enter/leave) with faults that
// block on their own lock. A vCPU blocked there is outside guest mode, so the stop
// completes. A deadlock fails the test through the watchdog instead of hanging.
TEST_F(SharedFaultTest, ShootdownWhileVcpusBlockOnTheirLocksDoesNotDeadlock) {
    std::atomic<bool> kicked[kThreads] = {};
    run::WorldGate gate(kThreads, [&](uint32_t v) { kicked[v].store(true); });
    std::atomic<uint64_t> inside_during_stop{0};
    m_as->set_shootdown([&] {
        gate.with_world_stopped([&] {
            for (uint32_t v = 0; v < kThreads; ++v)
                if (gate.inside(v)) inside_during_stop.fetch_add(1);
        });
    });
    constexpr uint64_t kPages = 64;
    auto a = mmap(abi::kMmapBase, kPages * kPage, kRW, abi::kMapFixed);
    ASSERT_TRUE(a.has_value());
    const uint64_t seed = pv::test::test_seed(0x5f03);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::atomic<bool> stop{false};
    std::vector<std::thread> vcpus;
    for (uint32_t v = 1; v < kThreads; ++v)
        vcpus.emplace_back([&, v] {
            std::mt19937_64 rng(seed + v);
            while (!stop.load()) {
                gate.enter(v);
                for (int spin = 0; spin < 64 && !kicked[v].exchange(false); ++spin) std::this_thread::yield();
                gate.leave(v);
                (void)m_as->handle_fault(mm::GuestVirtAddr(*a + (rng() % kPages) * kPage), kUserWrite, v, 0);
            }
        });
    auto work = std::async(std::launch::async, [&] {
        std::mt19937_64 rng(seed);
        for (int i = 0; i < 200; ++i) {
            uint64_t start = *a + (rng() % (kPages - 4)) * kPage;
            // Re-map, touch, unmap: every munmap removes a translation and shoots down.
            (void)m_as->mmap(Caller{0, 0}, start, 4 * kPage, kRW, abi::kMapFixed, abi::kNodeAny);
            (void)m_as->handle_fault(mm::GuestVirtAddr(start), kUserWrite, 0, 0);
            (void)m_as->munmap(Caller{0, 0}, start, 4 * kPage);
        }
    });
    if (work.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
        ADD_FAILURE() << "munmap/mmap did not finish: shootdown deadlock";
        std::_Exit(1);  // the threads are stuck: joining would hang
    }
    stop.store(true);
    for (auto& t : vcpus) t.join();
    EXPECT_GE(gate.stops(), 200U);
    EXPECT_EQ(inside_during_stop.load(), 0U) << "the stop ran while a vCPU was in guest mode";
    EXPECT_TRUE(m_as->check_invariants());
}

// The old single-lock behaviour (serialize_faults) gives the same results.
TEST_F(SharedFaultTest, SerializedFaultsGiveTheSameCounts) {
    make_space(AddressSpaceConfig{kThreads, 1, 4096, true});
    constexpr uint64_t kPages = 128;
    auto a = mmap(0, kPages * kPage, kRW, 0);
    ASSERT_TRUE(a.has_value());
    on_threads([&](uint32_t v) {
        for (uint64_t i = 0; i < kPages; ++i)
            (void)m_as->handle_fault(mm::GuestVirtAddr(*a + i * kPage), kUserWrite, v, 0);
    });
    auto s = m_as->stats();
    EXPECT_EQ(s.mapped_faults, kPages);
    EXPECT_EQ(s.spurious, (kThreads - 1) * kPages);
    expect_distinct_frames(*a, kPages);
}

}  // namespace
}  // namespace pv::paging::test
